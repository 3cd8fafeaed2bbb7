"""MaskFormer model parts; importing this registers them in Detectron2's registries."""

from .criterion import SetCriterion
from .mask_former_head import MaskFormerHead
from .matcher import HungarianMatcher
from .meta_arch import MaskFormer
from .pixel_decoder import (
    PIXEL_DECODER_REGISTRY,
    BasePixelDecoder,
    TransformerEncoderPixelDecoder,
    build_pixel_decoder,
)
from .postprocessing import instance_inference, panoptic_inference, semantic_inference
from .transformer_predictor import TransformerPredictor

__all__ = [
    "PIXEL_DECODER_REGISTRY",
    "BasePixelDecoder",
    "HungarianMatcher",
    "MaskFormer",
    "MaskFormerHead",
    "SetCriterion",
    "TransformerEncoderPixelDecoder",
    "TransformerPredictor",
    "build_pixel_decoder",
    "instance_inference",
    "panoptic_inference",
    "semantic_inference",
]
