"""Backbones MaskFormer adds to Detectron2's BACKBONE_REGISTRY (ResNets come from Detectron2)."""

from .swin import D2SwinTransformer

__all__ = ["D2SwinTransformer"]
