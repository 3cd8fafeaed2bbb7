"""Data loading for MaskFormer: mappers, target building, resumable loaders, datasets."""

from . import datasets  # noqa: F401  (registration)
from .build import (
    MAPPERS,
    build_test_loader,
    build_test_mapper,
    build_train_loader,
    build_train_mapper,
)
from .dataset_mapper import (
    DETRPanopticDatasetMapper,
    MaskFormerDatasetMapper,
    MaskFormerPanopticDatasetMapper,
    MaskFormerSemanticDatasetMapper,
    PanopticTargetBuilder,
    SemanticTargetBuilder,
)
from .io import load_sem_seg_label, read_image, read_label_map

__all__ = [
    "MAPPERS",
    "DETRPanopticDatasetMapper",
    "MaskFormerDatasetMapper",
    "MaskFormerPanopticDatasetMapper",
    "MaskFormerSemanticDatasetMapper",
    "PanopticTargetBuilder",
    "SemanticTargetBuilder",
    "build_test_loader",
    "build_test_mapper",
    "build_train_loader",
    "build_train_mapper",
    "load_sem_seg_label",
    "read_image",
    "read_label_map",
]
