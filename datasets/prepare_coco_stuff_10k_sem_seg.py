#!/usr/bin/env python
"""Prepare COCO-Stuff-10K (v1.0) for semantic segmentation with 171 classes.

Reads the contents of cocostuff-10k-v1.0.zip:
    $DETECTRON2_DATASETS/coco/coco_stuff_10k/imageLists/{train,test}.txt
    $DETECTRON2_DATASETS/coco/coco_stuff_10k/images/<name>.jpg
    $DETECTRON2_DATASETS/coco/coco_stuff_10k/annotations/<name>.mat
and writes
    .../coco_stuff_10k/images_detectron2/{train,test}/<name>.jpg       (copies)
    .../coco_stuff_10k/annotations_detectron2/{train,test}/<name>.png  (uint8 labels)

In v1.0 the label map `S` holds 1-based indices into 172 names: 1 is "unlabeled", 2..81 the 80
things and 82..172 the 91 stuff classes, both in COCO id order. So label = S - 2 gives the
contiguous ids 0..170 of maskformer's COCO-Stuff table, and "unlabeled" becomes 255.
The .mat files are read with scipy; MATLAB v7.3 (HDF5) files need h5py (`pip install h5py`).
Re-running skips finished files.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Tuple

import numpy as np
import scipy.io
from PIL import Image

# maskformer (and so torch) is imported where it is used, after the arguments are parsed:
# --help and argument errors answer at once.
SPLITS = ("train", "test")
IGNORE_LABEL = 255


def read_mat_labels(path: str) -> np.ndarray:
    """The (H, W) label map `S` of a COCO-Stuff-10K .mat file (MATLAB v5 or v7.3)."""
    try:
        return np.asarray(scipy.io.loadmat(path, variable_names=["S"])["S"])
    except NotImplementedError:  # scipy: "Please use HDF reader for matlab v7.3 files"
        pass
    except KeyError:
        raise KeyError(f"{path} has no variable 'S' (the label map)") from None
    try:
        import h5py
    except ImportError:
        raise ImportError(
            f"{path} is a MATLAB v7.3 (HDF5) file; reading it needs h5py: pip install h5py"
        ) from None
    with h5py.File(path, "r") as f:
        if "S" not in f:
            raise KeyError(f"{path} has no variable 'S' (the label map)")
        # HDF5 stores MATLAB's column-major arrays transposed.
        return np.asarray(f["S"]).T


def to_contiguous(s: np.ndarray, path: str) -> np.ndarray:
    """v1.0 label indices (1 = unlabeled, 2..172 = classes) -> uint8 ids 0..170, 255."""
    from maskformer.data.datasets.coco_stuff_categories import COCO_STUFF_CLASSES

    s = s.astype(np.int64)
    num_classes = len(COCO_STUFF_CLASSES)
    bad = np.unique(s[(s < 0) | (s > num_classes + 1)])
    if bad.size:
        raise ValueError(
            f"{path}: label values {bad[:10].tolist()} are outside 0..{num_classes + 1}; "
            "expected COCO-Stuff-10K v1.0 annotations (1 = unlabeled, 2..172 = classes)"
        )
    label = s - 2
    label[label < 0] = IGNORE_LABEL  # 1 = unlabeled (0 does not occur; treated alike)
    return label.astype(np.uint8)


def convert_one(job: Tuple[str, str, str, str]) -> None:
    from maskformer.data.preparation import copy_file, save_image

    image_src, mat_src, image_dst, label_dst = job
    label = to_contiguous(read_mat_labels(mat_src), mat_src)
    with Image.open(image_src) as im:
        w, h = im.size
    if label.shape != (h, w):
        raise ValueError(
            f"{mat_src} is {label.shape[1]}x{label.shape[0]} but {image_src} is {w}x{h}"
        )
    copy_file(image_src, image_dst)
    save_image(label, label_dst)  # last: its existence marks the pair as done


def list_jobs(root: str, split: str) -> List[Tuple[str, str, str, str]]:
    list_file = os.path.join(root, "imageLists", f"{split}.txt")
    with open(list_file) as f:
        names = [line.strip() for line in f if line.strip()]
    return [
        (
            os.path.join(root, "images", name + ".jpg"),
            os.path.join(root, "annotations", name + ".mat"),
            os.path.join(root, "images_detectron2", split, name + ".jpg"),
            os.path.join(root, "annotations_detectron2", split, name + ".png"),
        )
        for name in names
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root",
        help="the coco_stuff_10k directory (default: $DETECTRON2_DATASETS/coco/coco_stuff_10k, "
        "or ./datasets/coco/coco_stuff_10k)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    from maskformer.data.preparation import datasets_root, process_all

    args.root = args.root or os.path.join(datasets_root(), "coco", "coco_stuff_10k")
    for sub in ("imageLists", "images", "annotations"):
        if not os.path.isdir(os.path.join(args.root, sub)):
            print(
                f"error: {os.path.join(args.root, sub)} does not exist; unzip "
                f"cocostuff-10k-v1.0.zip into {args.root} first",
                file=sys.stderr,
            )
            return 1
    for split in SPLITS:
        jobs = list_jobs(args.root, split)
        os.makedirs(os.path.join(args.root, "images_detectron2", split), exist_ok=True)
        os.makedirs(os.path.join(args.root, "annotations_detectron2", split), exist_ok=True)
        todo = [job for job in jobs if not os.path.exists(job[3])]
        print(f"{split}: {len(jobs)} images, {len(jobs) - len(todo)} already converted")
        process_all(convert_one, todo, desc=split, workers=args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
