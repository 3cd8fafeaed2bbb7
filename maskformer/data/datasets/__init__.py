"""Dataset registrations; importing this module registers them in Detectron2's catalog."""

from .ade20k import register_ade20k_panoptic, register_ade20k_sem_seg
from .coco import register_coco_panoptic_with_sem_seg
from .custom import register_sem_seg_folder
from .panoptic import load_panoptic_json, register_panoptic
from .quickstart import register_quickstart
from .quickstart_panoptic import register_quickstart_panoptic

register_ade20k_sem_seg()
register_ade20k_panoptic()
register_coco_panoptic_with_sem_seg()
register_quickstart()
register_quickstart_panoptic()

__all__ = ["load_panoptic_json", "register_panoptic", "register_sem_seg_folder"]
