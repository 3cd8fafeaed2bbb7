"""Hand-built panoptic datasets in the real on-disk formats, shared by the panoptic tests."""

from __future__ import annotations

import json
import os
from typing import Dict, List, Sequence

import numpy as np
from PIL import Image

from maskformer.data.io import panoptic_ids_to_rgb

# COCO-style categories: ids not contiguous, things first (contiguous 0, 1), then stuff (2, 3).
CATEGORIES = [
    {"id": 3, "name": "cat", "isthing": 1, "color": [200, 0, 0]},
    {"id": 7, "name": "dog", "isthing": 1, "color": [0, 200, 0]},
    {"id": 20, "name": "wall", "isthing": 0, "color": [90, 90, 90]},
    {"id": 31, "name": "floor", "isthing": 0, "color": [140, 90, 40]},
]
METADATA = {
    "thing_classes": ["cat", "dog"],
    "stuff_classes": ["cat", "dog", "wall", "floor"],
    "thing_dataset_id_to_contiguous_id": {3: 0, 7: 1},
    "stuff_dataset_id_to_contiguous_id": {3: 0, 7: 1, 20: 2, 31: 3},
}


def coordinate_image(h: int, w: int) -> np.ndarray:
    """An RGB image whose pixel (y, x) is (x, y, 77): after a crop or flip, each output pixel
    says where it came from (stored losslessly)."""
    yy, xx = np.mgrid[:h, :w]
    return np.stack([xx, yy, np.full_like(xx, 77)], axis=-1).astype(np.uint8)


def scene(h: int = 40, w: int = 60):
    """(H, W) segment ids and the segments: wall over floor, a cat, a dog, a crowd of cats."""
    ids = np.zeros((h, w), np.int64)
    ids[: h // 2] = 1000  # wall
    ids[h // 2 :] = 2000  # floor
    ids[5:15, 5:20] = 11  # cat
    ids[25:35, 40:55] = 12  # dog
    ids[22:30, 10:18] = 13  # crowd of cats
    ids[h // 2, :] = 0  # a void line between wall and floor
    segments = [
        {"id": 1000, "category_id": 20, "iscrowd": 0},
        {"id": 2000, "category_id": 31, "iscrowd": 0},
        {"id": 11, "category_id": 3, "iscrowd": 0},
        {"id": 12, "category_id": 7, "iscrowd": 0},
        {"id": 13, "category_id": 3, "iscrowd": 1},
    ]
    return ids, segments


def write_coco_panoptic(
    root: str,
    split: str,
    images: Sequence[np.ndarray],
    id_maps: Sequence[np.ndarray],
    segments: Sequence[List[Dict]],
    categories: Sequence[Dict] = CATEGORIES,
) -> None:
    """COCO's layout: {split}2017/*.jpg (here PNG data, lossless), panoptic_{split}2017/*.png,
    annotations/panoptic_{split}2017.json."""
    for d in (f"{split}2017", f"panoptic_{split}2017", "annotations"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    json_images, annotations = [], []
    for i, (image, ids, segs) in enumerate(zip(images, id_maps, segments)):
        stem = f"{i + 1:012d}"
        # PIL reads files by content: a PNG named .jpg keeps the pixel values exact.
        Image.fromarray(image).save(os.path.join(root, f"{split}2017", stem + ".jpg"), "PNG")
        Image.fromarray(panoptic_ids_to_rgb(ids)).save(
            os.path.join(root, f"panoptic_{split}2017", stem + ".png")
        )
        h, w = ids.shape
        json_images.append({"id": i + 1, "file_name": stem + ".jpg", "height": h, "width": w})
        annotations.append({"image_id": i + 1, "file_name": stem + ".png", "segments_info": segs})
    with open(os.path.join(root, "annotations", f"panoptic_{split}2017.json"), "w") as f:
        json.dump(
            {"images": json_images, "annotations": annotations, "categories": list(categories)}, f
        )


def child_pids() -> List[int]:
    """Live child processes of this process (from /proc; Linux)."""
    pids = []
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{task}/children") as f:
            pids += [int(p) for p in f.read().split()]
    return pids
