#!/usr/bin/env python
"""Semantic label maps from COCO panoptic annotations, for `coco_2017_*_panoptic_with_sem_seg`.

Reads, for each split,
    $DETECTRON2_DATASETS/coco/annotations/panoptic_{train,val}2017.json
    $DETECTRON2_DATASETS/coco/panoptic_{train,val}2017/*.png
and writes single-channel PNGs of the same names to
    $DETECTRON2_DATASETS/coco/panoptic_semseg_{train,val}2017/
Each pixel gets the contiguous id of its segment's category: things first, then stuff, each in
increasing category id, which for COCO is Detectron2's order (COCO_CATEGORIES, 0..132). Crowd
regions keep their category; void (segment id 0) becomes 255. Re-running skips the maps already
written; each is written under a temporary name first.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from typing import Dict, List, Sequence

import numpy as np

# maskformer (and so torch) is imported where it is used, after the arguments are parsed:
# --help and argument errors answer at once.
IGNORE_LABEL = 255


def contiguous_ids(categories: Sequence[Dict]) -> Dict[int, int]:
    """Category id -> contiguous id: things first, then stuff, each by increasing id."""
    ordered = sorted(categories, key=lambda c: (not c["isthing"], c["id"]))
    if len(ordered) > IGNORE_LABEL:
        raise ValueError(f"{len(ordered)} categories do not fit 8-bit labels with 255 = void")
    return {c["id"]: i for i, c in enumerate(ordered)}


def panoptic_to_semantic(
    pan_ids: np.ndarray, segments_info: Sequence[Dict], id_map: Dict[int, int], file_name: str
) -> np.ndarray:
    """(H, W) segment ids -> (H, W) uint8 contiguous class ids, 255 where void."""
    semantic = np.full(pan_ids.shape, IGNORE_LABEL, np.uint8)
    listed = {0}
    for seg in segments_info:
        semantic[pan_ids == seg["id"]] = id_map[seg["category_id"]]
        listed.add(seg["id"])
    unlisted = set(np.unique(pan_ids).tolist()) - listed
    if unlisted:
        raise ValueError(
            f"{file_name}: segment id(s) {sorted(unlisted)[:10]} occur in the PNG but not in its "
            "segments_info"
        )
    return semantic


def _convert(annotation: Dict, panoptic_dir: str, out_dir: str, id_map: Dict[int, int]) -> None:
    from maskformer.data.io import read_label_map, rgb_to_panoptic_ids
    from maskformer.data.preparation import save_image

    src = os.path.join(panoptic_dir, annotation["file_name"])
    pan_ids = rgb_to_panoptic_ids(read_label_map(src), src)
    semantic = panoptic_to_semantic(pan_ids, annotation["segments_info"], id_map, src)
    save_image(semantic, os.path.join(out_dir, annotation["file_name"]))


def convert_split(json_file: str, panoptic_dir: str, out_dir: str, workers: int = 1) -> int:
    """Write the semantic map of every annotation in `json_file` that is not written yet.

    Returns the number of maps written.
    """
    from maskformer.data.preparation import process_all

    with open(json_file) as f:
        data = json.load(f)
    id_map = contiguous_ids(data["categories"])
    os.makedirs(out_dir, exist_ok=True)
    todo: List[Dict] = [
        a for a in data["annotations"] if not os.path.exists(os.path.join(out_dir, a["file_name"]))
    ]
    name = os.path.basename(out_dir)
    print(f"{name}: {len(data['annotations'])} images, {len(data['annotations']) - len(todo)} done")
    convert = functools.partial(_convert, panoptic_dir=panoptic_dir, out_dir=out_dir, id_map=id_map)
    process_all(convert, todo, desc=name, workers=workers)
    return len(todo)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--root",
        help="the COCO directory (default: $DETECTRON2_DATASETS/coco, or ./datasets/coco)",
    )
    parser.add_argument("--splits", nargs="+", default=["val2017", "train2017"])
    parser.add_argument(
        "--workers", type=int, default=min(8, os.cpu_count() or 1), help="processes (default: 8)"
    )
    args = parser.parse_args(argv)
    from maskformer.data.preparation import datasets_root

    args.root = args.root or os.path.join(datasets_root(), "coco")
    for split in args.splits:
        json_file = os.path.join(args.root, "annotations", f"panoptic_{split}.json")
        panoptic_dir = os.path.join(args.root, f"panoptic_{split}")
        for path in (json_file, panoptic_dir):
            if not os.path.exists(path):
                print(
                    f"error: {path} does not exist; unzip COCO's panoptic annotations "
                    f"(panoptic_annotations_trainval2017.zip and the PNG zips inside) into "
                    f"{args.root}",
                    file=sys.stderr,
                )
                return 1
        convert_split(
            json_file,
            panoptic_dir,
            os.path.join(args.root, f"panoptic_semseg_{split}"),
            args.workers,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
