#!/usr/bin/env python
"""Convert ADE20K-150 (SceneParsing) labels to Detectron2's convention.

ADE20K stores 0 for "unlabelled" and 1..150 for the classes. Detectron2's `ade20k_sem_seg_*`
datasets expect 0..149 for the classes and 255 for unlabelled (a 255 already in a source file
stays 255). Reads
    $DETECTRON2_DATASETS/ADEChallengeData2016/annotations/{training,validation}/*.png
and writes
    $DETECTRON2_DATASETS/ADEChallengeData2016/annotations_detectron2/{training,validation}/*.png
Re-running skips files already converted; each file is written to a temporary name first.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

# maskformer (and so torch) is imported where it is used, after the arguments are parsed:
# --help and argument errors answer at once.


def convert(name: str, src_dir: str, dst_dir: str) -> None:
    from maskformer.data.io import read_label_map
    from maskformer.data.preparation import save_image

    src = os.path.join(src_dir, name)
    label = read_label_map(src)
    if label.ndim != 2:
        raise ValueError(f"{src}: expected a single-channel label map, got shape {label.shape}")
    out = label.astype(np.int32) - 1
    # 0 (unlabelled) and an existing 255 (already "ignore" in files edited by other tools; it
    # would otherwise become 254, a class id no model has) are both the ignore label.
    out[(label == 0) | (label == 255)] = 255
    save_image(out.astype(np.uint8), os.path.join(dst_dir, name))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root",
        help="the ADEChallengeData2016 directory (default: under $DETECTRON2_DATASETS, or "
        "./datasets)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    from maskformer.data.preparation import convert_png_folder, datasets_root

    args.root = args.root or os.path.join(datasets_root(), "ADEChallengeData2016")
    for split in ("training", "validation"):
        src_dir = os.path.join(args.root, "annotations", split)
        dst_dir = os.path.join(args.root, "annotations_detectron2", split)
        if not os.path.isdir(src_dir):
            print(
                f"error: {src_dir} does not exist; unzip ADEChallengeData2016.zip into "
                f"{os.path.dirname(os.path.normpath(args.root)) or '.'} first",
                file=sys.stderr,
            )
            return 1
        convert_png_folder(convert, src_dir, dst_dir, desc=split, workers=args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
