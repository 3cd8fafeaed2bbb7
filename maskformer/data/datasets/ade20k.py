"""ADE20K-150 (SceneParsing): `ade20k_sem_seg_{train,val}` (Detectron2's registrations, with
loaders that say what to do when the data is missing and the benchmark's colours added) and
`ade20k_panoptic_{train,val}` (the same 150 classes, 100 of them things, in the COCO panoptic
format made by `datasets/prepare_ade20k_pan_seg.py`); layout: datasets/README.md.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg

from ..preparation import datasets_root
from .ade20k_categories import ADE20K_150_CATEGORIES, ADE20K_150_CLASSES, ADE20K_150_COLORS
from .panoptic import register_panoptic

__all__ = ["ade20k_panoptic_metadata", "register_ade20k_panoptic", "register_ade20k_sem_seg"]


def _load_ade20k(name: str, image_root: str, sem_seg_root: str) -> List[Dict]:
    for path in (image_root, sem_seg_root):
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"Dataset '{name}': directory {path} does not exist. Expected ADE20K under "
                "$DETECTRON2_DATASETS/ADEChallengeData2016 (images/ from ADEChallengeData2016.zip; "
                "annotations_detectron2/ made by `python datasets/prepare_ade20k_sem_seg.py`). "
                f"DETECTRON2_DATASETS is '{os.getenv('DETECTRON2_DATASETS', 'datasets')}'."
            )
    return load_sem_seg(sem_seg_root, image_root, gt_ext="png", image_ext="jpg")


def register_ade20k_sem_seg() -> None:
    for name in ("ade20k_sem_seg_train", "ade20k_sem_seg_val"):
        meta = MetadataCatalog.get(name)
        meta.set(stuff_colors=[c[:] for c in ADE20K_150_COLORS])
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        DatasetCatalog.register(
            name, lambda n=name, i=meta.image_root, s=meta.sem_seg_root: _load_ade20k(n, i, s)
        )


def ade20k_panoptic_metadata() -> Dict:
    """Metadata of ADE20K panoptic: dataset category id = contiguous id = position in the table.

    Things keep their scattered contiguous ids, so `thing_classes` lists all 150 names (the
    visualiser indexes it by contiguous id); the stuff map covers all 150 classes so that
    SemSegEvaluator can map every label.
    """
    return {
        "thing_classes": list(ADE20K_150_CLASSES),
        "thing_colors": [c[:] for c in ADE20K_150_COLORS],
        "stuff_classes": list(ADE20K_150_CLASSES),
        "stuff_colors": [c[:] for c in ADE20K_150_COLORS],
        "thing_dataset_id_to_contiguous_id": {
            i: i for i, (_, _, thing) in enumerate(ADE20K_150_CATEGORIES) if thing
        },
        "stuff_dataset_id_to_contiguous_id": {i: i for i in range(len(ADE20K_150_CATEGORIES))},
    }


def register_ade20k_panoptic(root: Optional[str] = None, prefix: str = "ade20k_panoptic") -> None:
    """Register `{prefix}_{train,val}` from `root`/ADEChallengeData2016 (default root:
    $DETECTRON2_DATASETS)."""
    root = os.path.join(root or datasets_root(), "ADEChallengeData2016")
    metadata = ade20k_panoptic_metadata()
    for split, folder in (("train", "training"), ("val", "validation")):
        register_panoptic(
            f"{prefix}_{split}",
            metadata,
            image_root=os.path.join(root, "images", folder),
            panoptic_root=os.path.join(root, f"ade20k_panoptic_{split}"),
            panoptic_json=os.path.join(root, f"ade20k_panoptic_{split}.json"),
            sem_seg_root=os.path.join(root, "annotations_detectron2", folder),
            evaluator_type="ade20k_panoptic_seg",
            missing_hint=(
                "Expected ADEChallengeData2016 (images/ and annotations/ from "
                "ADEChallengeData2016.zip, annotations_instance/ from the challenge's instance "
                "annotations) under $DETECTRON2_DATASETS, converted by "
                "`python datasets/prepare_ade20k_sem_seg.py` and "
                "`python datasets/prepare_ade20k_pan_seg.py`."
            ),
        )
