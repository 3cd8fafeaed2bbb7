"""Importing this module registers the built-in datasets, under $DETECTRON2_DATASETS
(datasets/README.md). Described datasets of your own are registered by an explicit
`register_described_datasets()` (described.py); importing reads no file of yours.
"""

from ..preparation import datasets_root
from .ade20k import register_ade20k_panoptic, register_ade20k_sem_seg
from .ade20k_full import register_ade20k_full_sem_seg
from .cityscapes import register_cityscapes_panoptic, register_cityscapes_sem_seg
from .coco import register_coco_panoptic_with_sem_seg
from .coco_stuff import register_coco_stuff_sem_seg
from .custom import read_class_list, register_sem_seg_folder
from .described import register_described_datasets
from .mapillary_vistas import register_mapillary_vistas_sem_seg
from .panoptic import (
    load_panoptic_json,
    panoptic_metadata,
    register_coco_panoptic_folder,
    register_panoptic,
)
from .quickstart import register_quickstart
from .quickstart_panoptic import register_quickstart_panoptic


def register_all(root: str) -> None:
    """Register the built-in semantic datasets and Cityscapes panoptic that live under `root`."""
    register_ade20k_full_sem_seg(root)
    register_coco_stuff_sem_seg(root)
    register_mapillary_vistas_sem_seg(root)
    register_cityscapes_sem_seg(root)
    register_cityscapes_panoptic(root)


register_ade20k_sem_seg()
register_all(datasets_root())
register_ade20k_panoptic()
register_coco_panoptic_with_sem_seg()
register_quickstart()
register_quickstart_panoptic()

__all__ = [
    "load_panoptic_json",
    "panoptic_metadata",
    "read_class_list",
    "register_all",
    "register_coco_panoptic_folder",
    "register_described_datasets",
    "register_panoptic",
    "register_sem_seg_folder",
]
