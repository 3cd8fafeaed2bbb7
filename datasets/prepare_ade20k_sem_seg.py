#!/usr/bin/env python
"""Convert ADE20K-150 (SceneParsing) labels to Detectron2's convention.

ADE20K stores 0 for "unlabelled" and 1..150 for the classes. Detectron2's `ade20k_sem_seg_*`
datasets expect 0..149 for the classes and 255 for unlabelled. Reads
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
from PIL import Image
from tqdm import tqdm


def convert(src: str, dst: str) -> None:
    label = np.asarray(Image.open(src))
    if label.ndim != 2:
        raise ValueError(f"{src}: expected a single-channel label map, got shape {label.shape}")
    out = label.astype(np.int32) - 1  # 0 (unlabelled) -> -1
    out[out < 0] = 255
    tmp = dst + ".tmp.png"
    Image.fromarray(out.astype(np.uint8)).save(tmp)
    os.replace(tmp, dst)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--root",
        default=os.path.join(os.getenv("DETECTRON2_DATASETS", "datasets"), "ADEChallengeData2016"),
        help="the ADEChallengeData2016 directory (default: under $DETECTRON2_DATASETS)",
    )
    args = parser.parse_args(argv)
    for split in ("training", "validation"):
        src_dir = os.path.join(args.root, "annotations", split)
        dst_dir = os.path.join(args.root, "annotations_detectron2", split)
        if not os.path.isdir(src_dir):
            print(
                f"error: {src_dir} does not exist; unzip ADEChallengeData2016.zip into "
                f"{os.path.dirname(args.root) or '.'} first",
                file=sys.stderr,
            )
            return 1
        os.makedirs(dst_dir, exist_ok=True)
        names = sorted(n for n in os.listdir(src_dir) if n.endswith(".png"))
        todo = [n for n in names if not os.path.exists(os.path.join(dst_dir, n))]
        print(f"{split}: {len(names)} label maps, {len(names) - len(todo)} already converted")
        for name in tqdm(todo, desc=split, unit="img"):
            convert(os.path.join(src_dir, name), os.path.join(dst_dir, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
