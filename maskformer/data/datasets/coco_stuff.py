"""COCO-Stuff semantic segmentation, 171 classes (contiguous ids 0..170, 255 = unlabelled):
`coco_2017_{train,test}_stuff_10k_sem_seg` (COCO-Stuff-10K v1.0) and
`coco_2017_{train,val}_stuff_sem_seg` (COCO-Stuff-164K); layouts: datasets/README.md.
"""

from __future__ import annotations

import os

from .coco_stuff_categories import (
    COCO_STUFF_CLASSES,
    COCO_STUFF_COLORS,
    COCO_STUFF_ID_TO_CONTIGUOUS,
)
from .custom import register_sem_seg_folder, unregister

__all__ = ["register_coco_stuff_sem_seg"]


def _register(name: str, image_root: str, sem_seg_root: str, how_to_prepare: str) -> None:
    unregister(name)
    register_sem_seg_folder(
        name,
        image_root,
        sem_seg_root,
        COCO_STUFF_CLASSES,
        colors=COCO_STUFF_COLORS,
        ignore_label=255,
        how_to_prepare=how_to_prepare,
        # SemSegEvaluator's JSON then carries COCO category ids, as COCO tools expect.
        dataset_id_to_contiguous_id=COCO_STUFF_ID_TO_CONTIGUOUS,
    )


def register_coco_stuff_sem_seg(root: str) -> None:
    """Register COCO-Stuff-10K and COCO-Stuff-164K under `root` (normally $DETECTRON2_DATASETS)."""
    coco = os.path.join(root, "coco")
    base_10k = os.path.join(coco, "coco_stuff_10k")
    how_10k = (
        f"Expected COCO-Stuff-10K v1.0 in {base_10k} (images/, annotations/ and imageLists/ from "
        "cocostuff-10k-v1.0.zip), then run `python datasets/prepare_coco_stuff_10k_sem_seg.py` "
        "to write images_detectron2/ and annotations_detectron2/ (datasets/README.md)."
    )
    for split in ("train", "test"):
        _register(
            f"coco_2017_{split}_stuff_10k_sem_seg",
            os.path.join(base_10k, "images_detectron2", split),
            os.path.join(base_10k, "annotations_detectron2", split),
            how_10k,
        )
    how_164k = (
        f"Expected the COCO 2017 images in {coco}/{{train2017,val2017}} and "
        f"stuffthingmaps_trainval2017.zip unzipped into {coco}, then run "
        "`python datasets/prepare_coco_stuff_164k_sem_seg.py` to write "
        "stuffthingmaps_detectron2/ (datasets/README.md)."
    )
    for split in ("train", "val"):
        _register(
            f"coco_2017_{split}_stuff_sem_seg",
            os.path.join(coco, f"{split}2017"),
            os.path.join(coco, "stuffthingmaps_detectron2", f"{split}2017"),
            how_164k,
        )
