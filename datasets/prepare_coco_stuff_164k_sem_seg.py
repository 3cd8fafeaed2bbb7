#!/usr/bin/env python
"""Prepare COCO-Stuff-164K for semantic segmentation with 171 classes.

Reads the stuff+thing maps of stuffthingmaps_trainval2017.zip:
    $DETECTRON2_DATASETS/coco/stuffthingmaps_trainval2017/{train2017,val2017}/*.png
whose values are COCO category id - 1 (0..181; 255 = unlabeled), and writes
    $DETECTRON2_DATASETS/coco/stuffthingmaps_detectron2/{train2017,val2017}/*.png
with the contiguous ids 0..170 of maskformer's COCO-Stuff table (255 = unlabeled, also for the
11 COCO thing ids that were never annotated). The images stay in coco/{train2017,val2017}.
Re-running skips finished files.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import numpy as np

# maskformer (and so torch) is imported where it is used, after the arguments are parsed:
# --help and argument errors answer at once.
SPLITS = ("train2017", "val2017")
IGNORE_LABEL = 255


@functools.cache
def _lookup() -> np.ndarray:
    """stuffthingmaps value (COCO id - 1) -> contiguous id."""
    from maskformer.data.datasets.coco_stuff_categories import COCO_STUFF_ID_TO_CONTIGUOUS

    lookup = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    for coco_id, contiguous in COCO_STUFF_ID_TO_CONTIGUOUS.items():
        lookup[coco_id - 1] = contiguous
    return lookup


def convert_one(name: str, src_dir: str, dst_dir: str) -> None:
    from maskformer.data.io import read_label_map
    from maskformer.data.preparation import save_image

    src = os.path.join(src_dir, name)
    label = read_label_map(src)
    if label.ndim != 2 or label.dtype != np.uint8:
        raise ValueError(
            f"{src}: expected an 8-bit single-channel label map, got {label.dtype} "
            f"of shape {label.shape}"
        )
    save_image(_lookup()[label], os.path.join(dst_dir, name))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root",
        help="the coco directory (default: $DETECTRON2_DATASETS/coco, or ./datasets/coco)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    from maskformer.data.preparation import convert_png_folder, datasets_root

    args.root = args.root or os.path.join(datasets_root(), "coco")
    for split in SPLITS:
        src_dir = os.path.join(args.root, "stuffthingmaps_trainval2017", split)
        dst_dir = os.path.join(args.root, "stuffthingmaps_detectron2", split)
        if not os.path.isdir(src_dir):
            print(
                f"error: {src_dir} does not exist; unzip stuffthingmaps_trainval2017.zip into "
                f"{os.path.join(args.root, 'stuffthingmaps_trainval2017')} first",
                file=sys.stderr,
            )
            return 1
        convert_png_folder(convert_one, src_dir, dst_dir, desc=split, workers=args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
