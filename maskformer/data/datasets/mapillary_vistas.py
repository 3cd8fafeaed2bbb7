"""Mapillary Vistas v1.2 semantic segmentation, `mapillary_vistas_sem_seg_{train,val}`: 65
classes, ignore label 65, the dataset as distributed (layout: datasets/README.md).
"""

from __future__ import annotations

import os

from .custom import register_sem_seg_folder, unregister
from .mapillary_vistas_categories import (
    MAPILLARY_VISTAS_CLASSES,
    MAPILLARY_VISTAS_COLORS,
    MAPILLARY_VISTAS_IGNORE_LABEL,
)

__all__ = ["register_mapillary_vistas_sem_seg"]


def register_mapillary_vistas_sem_seg(root: str) -> None:
    """Register the two splits under `root` (normally $DETECTRON2_DATASETS)."""
    base = os.path.join(root, "mapillary_vistas")
    how_to_prepare = (
        f"Expected Mapillary Vistas v1.2 in {base} (training/ and validation/ from the official "
        "zip, each with images/ and labels/); no preparation script is needed "
        "(datasets/README.md)."
    )
    for split, folder in (("train", "training"), ("val", "validation")):
        name = f"mapillary_vistas_sem_seg_{split}"
        unregister(name)
        register_sem_seg_folder(
            name,
            os.path.join(base, folder, "images"),
            os.path.join(base, folder, "labels"),
            MAPILLARY_VISTAS_CLASSES,
            colors=MAPILLARY_VISTAS_COLORS,
            ignore_label=MAPILLARY_VISTAS_IGNORE_LABEL,
            how_to_prepare=how_to_prepare,
        )
