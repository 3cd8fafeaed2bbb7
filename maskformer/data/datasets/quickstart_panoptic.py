"""A generated COCO-panoptic dataset: textured shapes (things) on a wall and a floor (stuff).

Panoptic, semantic and instance segmentation without downloading anything, in COCO's layout
(datasets/README.md, "COCO panoptic and instances") under one root, with the semantic maps in
`panoptic_semseg_{split}2017/`. As in COCO, category ids are not contiguous and the things come
first (contiguous ids 0..4, then the two stuff classes 5, 6). About one shape in seven is a crowd
region; a thin void band separates touching segments. Generated once under
`quickstart_root(_VERSION)` and registered as `quickstart_panoptic_{train,val}`; tests write
small datasets with `write_panoptic_split` and register them with `register_quickstart_panoptic`.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util

from ..io import panoptic_ids_to_rgb, save_image_atomically
from .panoptic import panoptic_metadata, register_panoptic
from .quickstart import _clutter, _finish, _paint_shape, _shape_mask, quickstart_root, write_once

__all__ = [
    "QUICKSTART_PANOPTIC_CATEGORIES",
    "quickstart_panoptic_metadata",
    "register_quickstart_panoptic",
    "write_panoptic_split",
]

QUICKSTART_PANOPTIC_CATEGORIES: List[Dict] = [
    {"id": 11, "name": "disc", "isthing": 1, "color": [220, 40, 40]},
    {"id": 12, "name": "square", "isthing": 1, "color": [40, 180, 60]},
    {"id": 13, "name": "triangle", "isthing": 1, "color": [50, 80, 220]},
    {"id": 15, "name": "ring", "isthing": 1, "color": [230, 200, 30]},
    {"id": 17, "name": "cross", "isthing": 1, "color": [200, 60, 200]},
    {"id": 21, "name": "wall", "isthing": 0, "color": [120, 120, 120]},
    {"id": 22, "name": "floor", "isthing": 0, "color": [150, 110, 70]},
]
_WALL, _FLOOR = 21, 22
# thing category id -> shape class of the semantic quickstart's drawing code
_SHAPES = {11: 1, 12: 2, 13: 3, 15: 4, 17: 5}
_CROWD_PROBABILITY = 0.15
_VERSION = "quickstart-panoptic-v2"
# split -> (number of images, seed)
_SPLITS = {"train": (300, 11), "val": (50, 12)}


def quickstart_panoptic_metadata() -> Dict:
    """Metadata in the COCO convention: things first, a stuff map covering all classes."""
    return panoptic_metadata(QUICKSTART_PANOPTIC_CATEGORIES)


def _sample(
    h: int, w: int, rng: np.random.Generator
) -> Tuple[np.ndarray, np.ndarray, List[Tuple[int, int]]]:
    """An RGB uint8 image, its (H, W) map of segment indices (-1 = void) and, per segment index,
    (category id, iscrowd)."""
    img = _clutter(h, w, rng)
    horizon = int(rng.uniform(0.35, 0.65) * h)
    img[horizon:] *= np.array([1.0, 0.75, 0.5], np.float32)  # a brown floor under a grey wall
    segment = np.zeros((h, w), np.int64)
    segment[horizon:] = 1
    segments = [(_WALL, 0), (_FLOOR, 0)]
    thing_ids = list(_SHAPES)
    for _ in range(int(rng.integers(2, 6))):
        category = thing_ids[int(rng.integers(len(thing_ids)))]
        mask = _shape_mask(_SHAPES[category], h, w, rng)
        _paint_shape(img, _SHAPES[category], mask, rng)
        segment[mask] = len(segments)  # later shapes occlude earlier ones
        segments.append((category, int(rng.random() < _CROWD_PROBABILITY)))
    img, edges = _finish(img, segment, rng)
    segment[edges] = -1
    return img, segment, segments


def write_panoptic_split(
    root: str, split: str, count: int, seed: int, size_range: Tuple[int, int] = (150, 220)
) -> None:
    """Write `count` images of split `split` ("train", "val", ...) in the layout above."""
    rng = np.random.default_rng(seed)
    dirs = {
        "image": os.path.join(root, f"{split}2017"),
        "panoptic": os.path.join(root, f"panoptic_{split}2017"),
        "semantic": os.path.join(root, f"panoptic_semseg_{split}2017"),
        "annotations": os.path.join(root, "annotations"),
    }
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    contiguous = quickstart_panoptic_metadata()["stuff_dataset_id_to_contiguous_id"]
    images, annotations, instances = [], [], []
    for i in range(count):
        h, w = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, 2))
        img, segment, segments = _sample(h, w, rng)
        image_id, stem = i + 1, f"{i + 1:012d}"
        pan_ids = np.zeros((h, w), np.int64)
        semantic = np.full((h, w), 255, np.uint8)
        segments_info = []
        for k, (category, iscrowd) in enumerate(segments):
            mask = segment == k
            if not mask.any():  # painted over entirely
                continue
            segment_id = 1000 * (k + 1) + category
            pan_ids[mask] = segment_id
            semantic[mask] = contiguous[category]  # crowd regions keep their class
            info = {
                "id": segment_id,
                "category_id": category,
                "iscrowd": iscrowd,
                "area": int(mask.sum()),
                "bbox": list(cv2.boundingRect(mask.astype(np.uint8))),
            }
            segments_info.append(info)
            if category in _SHAPES:  # a thing
                rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                instances.append(
                    dict(info, id=len(instances) + 1, image_id=image_id, segmentation=rle)
                )
        save_image_atomically(img, os.path.join(dirs["image"], stem + ".jpg"))
        save_image_atomically(
            panoptic_ids_to_rgb(pan_ids), os.path.join(dirs["panoptic"], stem + ".png")
        )
        cv2.imwrite(os.path.join(dirs["semantic"], stem + ".png"), semantic)
        images.append({"id": image_id, "file_name": stem + ".jpg", "height": h, "width": w})
        annotations.append(
            {"image_id": image_id, "file_name": stem + ".png", "segments_info": segments_info}
        )
    categories = [dict(c, supercategory="shape") for c in QUICKSTART_PANOPTIC_CATEGORIES]
    things = [c for c in categories if c["isthing"]]
    for kind, anns, cats in (
        ("panoptic", annotations, categories),
        ("instances", instances, things),
    ):
        with open(os.path.join(dirs["annotations"], f"{kind}_{split}2017.json"), "w") as f:
            json.dump({"images": images, "annotations": anns, "categories": cats}, f)


def _write_default(directory: str) -> None:
    for split, (count, seed) in _SPLITS.items():
        write_panoptic_split(directory, split, count, seed)


def register_quickstart_panoptic(
    prefix: str = "quickstart_panoptic", root: Optional[str] = None
) -> None:
    """Register `{prefix}_{train,val}` (evaluator_type "coco_panoptic_seg": PQ, mIoU and AP).

    Args:
        prefix: dataset name prefix.
        root: a directory written by `write_panoptic_split` (both splits); None: the default
            dataset, generated on first use.
    """
    prepare = None
    if root is None:
        root = quickstart_root(_VERSION)
        prepare = lambda: write_once(root, _write_default)  # noqa: E731
    metadata = quickstart_panoptic_metadata()
    for split in ("train", "val"):
        register_panoptic(
            f"{prefix}_{split}",
            metadata,
            image_root=os.path.join(root, f"{split}2017"),
            panoptic_root=os.path.join(root, f"panoptic_{split}2017"),
            panoptic_json=os.path.join(root, "annotations", f"panoptic_{split}2017.json"),
            sem_seg_root=os.path.join(root, f"panoptic_semseg_{split}2017"),
            instances_json=os.path.join(root, "annotations", f"instances_{split}2017.json"),
            prepare=prepare,
        )
