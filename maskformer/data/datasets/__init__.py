"""Dataset registrations; importing this module registers them in Detectron2's catalog."""

from .ade20k import register_ade20k_sem_seg
from .custom import register_sem_seg_folder
from .quickstart import register_quickstart

register_ade20k_sem_seg()
register_quickstart()

__all__ = ["register_sem_seg_folder"]
