"""MaskFormer as a Detectron2 extension.

Importing the package registers the `MaskFormer` meta-architecture, the `MaskFormerHead` and
per-pixel baseline sem-seg heads, the pixel decoders, the `D2SwinTransformer` backbone and the
datasets in Detectron2's registries.
"""

from . import data, modeling  # noqa: F401  (registration)
from .checkpoint import MaskFormerCheckpointer
from .config import add_maskformer_config, get_maskformer_cfg, merge_config_file

__all__ = [
    "MaskFormerCheckpointer",
    "add_maskformer_config",
    "get_maskformer_cfg",
    "merge_config_file",
]
