"""MaskFormer model parts; importing this registers them in Detectron2's registries."""

from .backbone import D2SwinTransformer
from .criterion import SetCriterion
from .mask_former_head import MaskFormerHead
from .matcher import HungarianMatcher
from .meta_arch import MaskFormer
from .per_pixel_baseline import PerPixelBaselineHead, PerPixelBaselinePlusHead
from .pixel_decoder import (
    PIXEL_DECODER_REGISTRY,
    BasePixelDecoder,
    TransformerEncoderPixelDecoder,
    build_pixel_decoder,
)
from .postprocessing import instance_inference, panoptic_inference, semantic_inference
from .sliding_window import SlidingWindowInference, sliding_window_from_config
from .test_time_augmentation import SemanticSegmentorWithTTA
from .transformer_predictor import TransformerPredictor

__all__ = [
    "D2SwinTransformer",
    "PIXEL_DECODER_REGISTRY",
    "BasePixelDecoder",
    "HungarianMatcher",
    "MaskFormer",
    "MaskFormerHead",
    "PerPixelBaselineHead",
    "PerPixelBaselinePlusHead",
    "SemanticSegmentorWithTTA",
    "SetCriterion",
    "SlidingWindowInference",
    "TransformerEncoderPixelDecoder",
    "TransformerPredictor",
    "build_pixel_decoder",
    "instance_inference",
    "panoptic_inference",
    "semantic_inference",
    "sliding_window_from_config",
]
