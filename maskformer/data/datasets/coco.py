"""COCO panoptic: Detectron2's built-in `coco_2017_{train,val}_panoptic`, plus their
`_with_sem_seg` variants (semantic maps for training and mIoU), as Mask2Former names them;
layout: datasets/README.md.
"""

from __future__ import annotations

import os
from typing import Dict

from detectron2.data import MetadataCatalog
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from .panoptic import panoptic_metadata, register_panoptic

__all__ = ["coco_panoptic_metadata", "register_coco_panoptic_with_sem_seg"]

_SPLITS = ("train", "val")


def coco_panoptic_metadata() -> Dict:
    """COCO panoptic metadata, 133 classes: `panoptic_metadata` of Detectron2's categories (80
    things first, contiguous ids 0..132)."""
    return panoptic_metadata(COCO_CATEGORIES)


def register_coco_panoptic_with_sem_seg() -> None:
    """Register `coco_2017_{train,val}_panoptic_with_sem_seg` next to the built-in datasets,
    and give the built-ins the 80 thing names COCOEvaluator needs for instance AP."""
    metadata = coco_panoptic_metadata()
    for split in _SPLITS:
        builtin = MetadataCatalog.get(f"coco_2017_{split}_panoptic")
        # Detectron2 lists all 133 names as thing_classes (a visualiser convention); the 80
        # things come first, so the shorter list names the same contiguous ids.
        if len(builtin.get("thing_classes", [])) != len(metadata["thing_classes"]):
            for key in ("thing_classes", "thing_colors"):
                delattr(builtin, key)
                builtin.set(**{key: metadata[key]})
        sem_seg_root = os.path.join(
            os.path.dirname(builtin.panoptic_root), f"panoptic_semseg_{split}2017"
        )
        register_panoptic(
            f"coco_2017_{split}_panoptic_with_sem_seg",
            metadata,
            image_root=builtin.image_root,
            panoptic_root=builtin.panoptic_root,
            panoptic_json=builtin.panoptic_json,
            sem_seg_root=sem_seg_root,
            instances_json=builtin.get("json_file"),
            missing_hint=(
                "Expected COCO 2017 with its panoptic annotations under $DETECTRON2_DATASETS/coco "
                "and semantic maps made by "
                "`python datasets/prepare_coco_semantic_annos_from_panoptic_annos.py`."
            ),
        )
