"""ADE20K-Full semantic segmentation, `ade20k_full_sem_seg_{train,val}`: 847 classes, 16-bit
TIFF labels (ignore label 65535); layout: datasets/README.md.
"""

from __future__ import annotations

import os

from .ade20k_full_categories import ADE20K_FULL_CLASSES
from .custom import register_sem_seg_folder, unregister

__all__ = ["ADE20K_FULL_IGNORE_LABEL", "register_ade20k_full_sem_seg"]

# The 847 classes do not fit in 8 bits, so labels are uint16 and "unlabelled" is the top value.
ADE20K_FULL_IGNORE_LABEL = 65535


def register_ade20k_full_sem_seg(root: str) -> None:
    """Register the two splits under `root` (normally $DETECTRON2_DATASETS)."""
    base = os.path.join(root, "ADE20K_2021_17_01")
    how_to_prepare = (
        f"Expected ADE20K-Full in {base} (unzip ADE20K_2021_17_01.zip into {root}), then run "
        "`python datasets/prepare_ade20k_full_sem_seg.py` to write images_detectron2/ and "
        "annotations_detectron2/ (datasets/README.md)."
    )
    for split, folder in (("train", "training"), ("val", "validation")):
        name = f"ade20k_full_sem_seg_{split}"
        unregister(name)
        register_sem_seg_folder(
            name,
            os.path.join(base, "images_detectron2", folder),
            os.path.join(base, "annotations_detectron2", folder),
            ADE20K_FULL_CLASSES,
            ignore_label=ADE20K_FULL_IGNORE_LABEL,
            gt_ext="tif",
            how_to_prepare=how_to_prepare,
        )
