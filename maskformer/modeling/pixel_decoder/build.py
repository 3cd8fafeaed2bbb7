"""Registry of pixel decoders: backbone features -> per-pixel embeddings."""

from __future__ import annotations

from typing import Dict

from detectron2.layers import ShapeSpec
from detectron2.utils.registry import Registry
from torch import nn

PIXEL_DECODER_REGISTRY = Registry("PIXEL_DECODER")
PIXEL_DECODER_REGISTRY.__doc__ = """
Pixel decoders of MaskFormer, selected by `MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME`, built as
`cls(cfg, input_shape)`; forward as `BasePixelDecoder.forward`.
"""


def build_pixel_decoder(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    name = cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME
    if name not in PIXEL_DECODER_REGISTRY:
        available = sorted(k for k, _ in PIXEL_DECODER_REGISTRY)
        raise KeyError(
            f"MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME is '{name}', which is not a registered pixel "
            f"decoder; available: {available}"
        )
    return PIXEL_DECODER_REGISTRY.get(name)(cfg, input_shape)
