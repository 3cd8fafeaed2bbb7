#!/usr/bin/env python
"""ADE20K panoptic annotations (COCO panoptic format) for `ade20k_panoptic_{train,val}`.

Combines the SceneParsing semantic labels with the instance annotations of the challenge's
instance segmentation track. Reads, under $DETECTRON2_DATASETS/ADEChallengeData2016,
    images/{training,validation}/*.jpg
    annotations/{training,validation}/*.png            0 = other, 1..150 = class
    annotations_instance/{training,validation}/*.png   R = instance class 1..100 (0: none),
                                                       G = instance number (0: none)
and writes
    ade20k_panoptic_{train,val}/*.png                  segment ids as RGB, 0 = void
    ade20k_panoptic_{train,val}.json                   images, annotations, the 150 categories

Categories keep their SceneParsing index (0..149) as id; instance class k is the k-th thing class
in index order (as in the official `ade20k_instance_catid_mapping.txt`). Each stuff class present
in the semantic map is one segment; each instance is one segment, painted over the stuff (the two
annotations overlap a little). Pixels of a thing class that belong to no instance are void. Areas
and boxes are measured on the final map, and a stuff segment covered entirely by instances is
dropped, so the JSON and the PNG always agree. Segment ids encode the category's colour (nearby
colours for further instances, chosen reproducibly).

A split whose JSON exists is skipped; files are written under temporary names first.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import zlib
from typing import Dict, List, Sequence, Tuple

import numpy as np

# maskformer (and so torch) is imported where it is used, after the arguments are parsed:
# --help and argument errors answer at once.
SPLITS = {"train": "training", "val": "validation"}


class SegmentIds:
    """Unique segment ids whose RGB colour is the category's colour, or near it when taken (as
    panopticapi's IdGenerator does, but reproducibly from `seed`)."""

    def __init__(self, seed: int):
        self.taken = {0}
        self.rng = np.random.default_rng(seed)

    def __call__(self, color: Sequence[int]) -> int:
        rgb = np.asarray(color, np.int64)
        while True:
            segment_id = int(rgb[0] + 256 * rgb[1] + 256 * 256 * rgb[2])
            if segment_id not in self.taken:
                self.taken.add(segment_id)
                return segment_id
            rgb = np.clip(np.asarray(color) + self.rng.integers(-30, 31, 3), 0, 255)


def _bbox(mask: np.ndarray) -> List[int]:
    ys, xs = np.nonzero(mask)
    x, y = int(xs.min()), int(ys.min())
    return [x, y, int(xs.max()) - x + 1, int(ys.max()) - y + 1]


def ade20k_to_panoptic(
    semantic: np.ndarray, instance: np.ndarray, name: str
) -> Tuple[np.ndarray, List[Dict]]:
    """One image's panoptic segmentation.

    Args:
        semantic: (H, W) uint8 SceneParsing labels, 0 = other, c + 1 = class c.
        instance: (H, W, 3) uint8 instance annotation: R = instance class 1..100, G = number.
        name: the image's name, for errors and the segment-id colours.
    Returns:
        (H, W) int64 segment ids (0 = void) and the segments_info list.
    """
    from maskformer.data.datasets.ade20k_categories import (
        ADE20K_150_CATEGORIES,
        ADE20K_150_THING_IDS,
    )

    if instance.ndim != 3 or instance.shape[:2] != semantic.shape:
        raise ValueError(
            f"{name}: instance annotation of shape {instance.shape} does not match the semantic "
            f"map of shape {semantic.shape}"
        )
    ids = SegmentIds(zlib.crc32(name.encode()))
    pan = np.zeros(semantic.shape, np.int64)
    category_of: Dict[int, int] = {}
    for label in np.unique(semantic):
        category = int(label) - 1
        if category < 0 or ADE20K_150_CATEGORIES[category][2]:  # "other", or a thing
            continue
        segment_id = ids(ADE20K_150_CATEGORIES[category][1])
        pan[semantic == label] = segment_id
        category_of[segment_id] = category
    for number in np.unique(instance[..., 1]):
        if number == 0:
            continue
        mask = instance[..., 1] == number
        classes = np.unique(instance[..., 0][mask])
        if len(classes) != 1 or not 1 <= classes[0] <= len(ADE20K_150_THING_IDS):
            raise ValueError(
                f"{name}: instance {number} has instance class(es) {classes.tolist()}; expected "
                f"one class in 1..{len(ADE20K_150_THING_IDS)}"
            )
        category = ADE20K_150_THING_IDS[int(classes[0]) - 1]
        segment_id = ids(ADE20K_150_CATEGORIES[category][1])
        pan[mask] = segment_id
        category_of[segment_id] = category
    segments_info = []
    for segment_id, category in category_of.items():
        mask = pan == segment_id
        if not mask.any():  # a stuff region covered by instances entirely
            continue
        segments_info.append(
            {
                "id": segment_id,
                "category_id": category,
                "area": int(mask.sum()),
                "bbox": _bbox(mask),
                "iscrowd": 0,
            }
        )
    return pan, segments_info


def _convert(
    stem: str, image_dir: str, semantic_dir: str, instance_dir: str, out_dir: str
) -> Tuple[Dict, Dict]:
    from maskformer.data.io import panoptic_ids_to_rgb, read_label_map
    from maskformer.data.preparation import save_image

    image_file = os.path.join(image_dir, stem + ".jpg")
    semantic = read_label_map(os.path.join(semantic_dir, stem + ".png"))
    instance = read_label_map(os.path.join(instance_dir, stem + ".png"))
    pan, segments_info = ade20k_to_panoptic(semantic, instance, image_file)
    save_image(panoptic_ids_to_rgb(pan), os.path.join(out_dir, stem + ".png"))
    height, width = semantic.shape
    image = {"id": stem, "file_name": stem + ".jpg", "width": width, "height": height}
    annotation = {"image_id": stem, "file_name": stem + ".png", "segments_info": segments_info}
    return image, annotation


def convert_split(root: str, split: str, workers: int = 1) -> bool:
    """Write `ade20k_panoptic_{split}/` and its JSON under `root`; False if already done."""
    from maskformer.data.datasets.ade20k_categories import ADE20K_150_CATEGORIES
    from maskformer.data.preparation import process_all
    from maskformer.utils import write_text_atomically

    folder = SPLITS[split]
    json_file = os.path.join(root, f"ade20k_panoptic_{split}.json")
    if os.path.exists(json_file):
        print(f"{split}: {json_file} exists, skipping")
        return False
    image_dir = os.path.join(root, "images", folder)
    out_dir = os.path.join(root, f"ade20k_panoptic_{split}")
    os.makedirs(out_dir, exist_ok=True)
    stems = sorted(os.path.splitext(n)[0] for n in os.listdir(image_dir) if n.endswith(".jpg"))
    convert = functools.partial(
        _convert,
        image_dir=image_dir,
        semantic_dir=os.path.join(root, "annotations", folder),
        instance_dir=os.path.join(root, "annotations_instance", folder),
        out_dir=out_dir,
    )
    results = process_all(convert, stems, desc=split, workers=workers)
    categories = [
        {"id": i, "name": name, "isthing": int(thing), "color": list(color)}
        for i, (name, color, thing) in enumerate(ADE20K_150_CATEGORIES)
    ]
    data = {
        "images": [image for image, _ in results],
        "annotations": [annotation for _, annotation in results],
        "categories": categories,
    }
    write_text_atomically(json_file, json.dumps(data))
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--root",
        help="the ADEChallengeData2016 directory (default: under $DETECTRON2_DATASETS, or "
        "./datasets)",
    )
    parser.add_argument(
        "--workers", type=int, default=min(8, os.cpu_count() or 1), help="processes (default: 8)"
    )
    args = parser.parse_args(argv)
    from maskformer.data.preparation import datasets_root

    args.root = args.root or os.path.join(datasets_root(), "ADEChallengeData2016")
    for split, folder in SPLITS.items():
        for sub in ("images", "annotations", "annotations_instance"):
            path = os.path.join(args.root, sub, folder)
            if not os.path.isdir(path):
                print(
                    f"error: {path} does not exist; unzip ADEChallengeData2016.zip and the "
                    f"instance annotations (annotations_instance.tar) into {args.root}",
                    file=sys.stderr,
                )
                return 1
        convert_split(args.root, split, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
