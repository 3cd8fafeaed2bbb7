"""Dataset registrations; importing this module registers the built-in datasets in Detectron2's
catalog.

Datasets are looked for under $DETECTRON2_DATASETS (default: ./datasets), as in Detectron2;
datasets/README.md describes the expected layouts. Your own datasets, described by
`tools/register_dataset.py` in $MASKFORMER_DATASETS_DIR (default ~/.config/maskformer/datasets),
are registered by an explicit `register_described_datasets()` (described.py), which
`train_net.py`, the demo and the tools call; importing reads no file of yours.
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
