#!/usr/bin/env python
"""Prepare ADE20K-Full (ADE20K_2021_17_01) for semantic segmentation with 847 classes.

Reads the dataset as unzipped from ADE20K_2021_17_01.zip:
    $DETECTRON2_DATASETS/ADE20K_2021_17_01/index_ade20k.pkl
    $DETECTRON2_DATASETS/ADE20K_2021_17_01/images/ADE/{training,validation}/<scene>/.../X.jpg
                                                                             .../X_seg.png
and writes
    .../ADE20K_2021_17_01/images_detectron2/{training,validation}/X.jpg
    .../ADE20K_2021_17_01/annotations_detectron2/{training,validation}/X.tif
The label maps are uint16 TIFFs of contiguous ids 0..846 (maskformer's ADE20K-Full table), 65535
for every pixel of another class or unlabelled. The split is taken from the file name
(ADE_val_* -> validation, everything else -> training).

Images and labels keep their original resolution: images are copied byte for byte. The official
MaskFormer script instead shrinks both so that the short side is at most 512 (and re-encodes the
JPEG); `--max-short-side 512` reproduces that. Re-running skips finished files; the resolution
setting is recorded and a re-run with another one is refused.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pickle
import sys
from typing import List, Optional, Tuple

import cv2
import numpy as np
from PIL import Image

# maskformer (and so torch) is imported where it is used, after the arguments are parsed:
# --help and argument errors answer at once.
SETTINGS_FILE = "prepare_settings.json"


@functools.cache
def _lookup() -> np.ndarray:
    """ADE id -> contiguous id, for every value a *_seg.png can encode (R // 10 * 256 + G <
    2**16)."""
    from maskformer.data.datasets.ade20k_full import ADE20K_FULL_IGNORE_LABEL
    from maskformer.data.datasets.ade20k_full_categories import ADE20K_FULL_ID_TO_CONTIGUOUS

    lookup = np.full(2**16, ADE20K_FULL_IGNORE_LABEL, dtype=np.uint16)
    for ade_id, contiguous in ADE20K_FULL_ID_TO_CONTIGUOUS.items():
        lookup[ade_id] = contiguous
    return lookup


def decode_classes(seg_rgb: np.ndarray) -> np.ndarray:
    """ADE20K `*_seg.png` (H, W, 3) -> (H, W) ADE class ids: R / 10 * 256 + G (0 = unlabelled)."""
    r = seg_rgb[..., 0].astype(np.int32)
    g = seg_rgb[..., 1].astype(np.int32)
    return r // 10 * 256 + g


def to_contiguous(ade_ids: np.ndarray) -> np.ndarray:
    """ADE class ids -> uint16 contiguous ids, 65535 outside the 847 classes."""
    return _lookup()[ade_ids]


def shrunk_size(h: int, w: int, max_short_side: Optional[int]) -> Tuple[int, int]:
    """(h, w) with the short side reduced to `max_short_side` (never enlarged), as officially."""
    if max_short_side is None or min(h, w) <= max_short_side:
        return h, w
    if h <= w:
        return max_short_side, round(w / h * max_short_side)
    return round(h / w * max_short_side), max_short_side


def convert_one(job: Tuple[str, str, str, str], max_short_side: Optional[int]) -> None:
    """Write the image and label map of one ADE20K image."""
    from maskformer.data.preparation import copy_file, save_image

    image_src, seg_src, image_dst, label_dst = job
    with Image.open(seg_src) as seg:
        seg_rgb = np.asarray(seg.convert("RGB"))
    with Image.open(image_src) as im:
        w, h = im.size
        if (h, w) != seg_rgb.shape[:2]:
            raise ValueError(
                f"{seg_src} is {seg_rgb.shape[1]}x{seg_rgb.shape[0]} but {image_src} is {w}x{h}"
            )
        new_h, new_w = shrunk_size(h, w, max_short_side)
        if (new_h, new_w) == (h, w):
            image = None
        else:
            image = cv2.resize(
                np.asarray(im.convert("RGB")), (new_w, new_h), interpolation=cv2.INTER_LINEAR
            )
    label = to_contiguous(decode_classes(seg_rgb))
    if image is None:
        copy_file(image_src, image_dst)
    else:
        label = cv2.resize(label, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
        save_image(image, image_dst)
    save_image(label, label_dst)


def _resolve_folder(root: str, folder: str) -> str:
    """Index folders read "ADE20K_2021_17_01/images/ADE/...": relative to the root's parent."""
    first = folder.replace("\\", "/").split("/", 1)[0]
    if first == os.path.basename(os.path.normpath(root)):
        return os.path.join(os.path.dirname(os.path.normpath(root)), folder)
    return os.path.join(root, folder)


def list_jobs(root: str) -> List[Tuple[str, str, str, str]]:
    """(image, *_seg.png, output image, output label) for every image of the index."""
    index_file = os.path.join(root, "index_ade20k.pkl")
    with open(index_file, "rb") as f:
        index = pickle.load(f)
    for key in ("folder", "filename"):
        if key not in index:
            raise KeyError(f"{index_file} has no '{key}' list; is it ADE20K_2021_17_01's index?")
    jobs = []
    for folder, file_name in zip(index["folder"], index["filename"]):
        split = "validation" if file_name.startswith("ADE_val_") else "training"
        stem = os.path.splitext(file_name)[0]
        src = os.path.join(_resolve_folder(root, folder), file_name)
        jobs.append(
            (
                src,
                os.path.join(os.path.dirname(src), stem + "_seg.png"),
                os.path.join(root, "images_detectron2", split, file_name),
                os.path.join(root, "annotations_detectron2", split, stem + ".tif"),
            )
        )
    return jobs


def _check_settings(root: str, max_short_side: Optional[int]) -> Optional[str]:
    """Record the resolution setting; an error message if earlier outputs used another one."""
    from maskformer.data.preparation import write_atomically

    path = os.path.join(root, "annotations_detectron2", SETTINGS_FILE)
    settings = {"max_short_side": max_short_side}
    if os.path.exists(path):
        with open(path) as f:
            before = json.load(f)
        if before != settings:
            return (
                f"{path} says the existing outputs were made with {before}, this run asks for "
                f"{settings}. Re-run with the same --max-short-side, or delete images_detectron2/"
                " and annotations_detectron2/ first."
            )
        return None
    os.makedirs(os.path.dirname(path), exist_ok=True)

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(settings, f)

    write_atomically(path, write)
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root",
        help="the ADE20K_2021_17_01 directory (default: under $DETECTRON2_DATASETS, or ./datasets)",
    )
    parser.add_argument(
        "--max-short-side",
        type=int,
        default=None,
        help="shrink images and labels whose short side is longer than this (official: 512); "
        "default: keep the original resolution",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    from maskformer.data.preparation import datasets_root, process_all

    args.root = args.root or os.path.join(datasets_root(), "ADE20K_2021_17_01")
    if not os.path.isfile(os.path.join(args.root, "index_ade20k.pkl")):
        print(
            f"error: {args.root}/index_ade20k.pkl does not exist; unzip ADE20K_2021_17_01.zip "
            f"into {os.path.dirname(os.path.normpath(args.root)) or '.'} first",
            file=sys.stderr,
        )
        return 1
    error = _check_settings(args.root, args.max_short_side)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    jobs = list_jobs(args.root)
    for split in ("training", "validation"):
        os.makedirs(os.path.join(args.root, "images_detectron2", split), exist_ok=True)
        os.makedirs(os.path.join(args.root, "annotations_detectron2", split), exist_ok=True)
    # The label is written last, so an existing label means the image is there too.
    todo = [job for job in jobs if not os.path.exists(job[3])]
    print(f"ADE20K-Full: {len(jobs)} images, {len(jobs) - len(todo)} already converted")
    process_all(
        functools.partial(convert_one, max_short_side=args.max_short_side),
        todo,
        desc="ADE20K-Full",
        workers=args.workers,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
