"""Backbones MaskFormer adds to Detectron2's BACKBONE_REGISTRY (ResNets come from Detectron2)."""

from .freeze import freeze_, freeze_backbone
from .swin import D2SwinTransformer
from .timm_backbone import TimmBackbone, TimmSimpleFeaturePyramid, build_timm_backbone

__all__ = [
    "D2SwinTransformer",
    "TimmBackbone",
    "TimmSimpleFeaturePyramid",
    "build_timm_backbone",
    "freeze_",
    "freeze_backbone",
]
