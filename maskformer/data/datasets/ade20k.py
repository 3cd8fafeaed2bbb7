"""ADE20K-150 semantic segmentation (SceneParsing, `ADEChallengeData2016`).

Detectron2 registers `ade20k_sem_seg_{train,val}` itself; this replaces their loaders with ones
that say what to do when the data is missing, instead of failing on an empty directory listing,
and adds the benchmark's colours to their metadata.
"""

from __future__ import annotations

import os
from typing import Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg

from .ade20k_categories import ADE20K_150_COLORS

__all__ = ["register_ade20k_sem_seg"]


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
