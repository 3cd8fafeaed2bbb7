"""Per-pixel classification baselines of the paper (Sec. 4, "PerPixelBaseline" and "+").

Detectron2 sem-seg heads for `SemanticSegmentor`, trained with a per-pixel cross-entropy. They
share MaskFormer's pixel decoder, so the comparison isolates per-pixel versus mask classification.

Shapes: B images, K classes, E mask-embedding dim, H x W the input size (h x w = H/4 x W/4).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import fvcore.nn.weight_init as weight_init
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from torch import Tensor, nn

from .mask_former_head import (
    attended_feature,
    predictor_in_channels,
    rename_published_pixel_decoder_keys,
)
from .pixel_decoder import build_pixel_decoder
from .transformer_predictor import TransformerPredictor

__all__ = ["PerPixelBaselineHead", "PerPixelBaselinePlusHead"]

# The pixel decoder's per-pixel embeddings are at stride 4.
_COMMON_STRIDE = 4


def ignore_value_of(cfg) -> int:
    """The training dataset's registered ignore label, as the training mapper uses it (it pads
    the labels with it); MODEL.SEM_SEG_HEAD.IGNORE_VALUE for a dataset that declares none."""
    if len(cfg.DATASETS.TRAIN):
        return MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).get(
            "ignore_label", cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
        )
    return cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE


def _upsample(logits: Tensor) -> Tensor:
    return F.interpolate(logits, scale_factor=_COMMON_STRIDE, mode="bilinear", align_corners=False)


@SEM_SEG_HEADS_REGISTRY.register()
class PerPixelBaselineHead(nn.Module):
    """Pixel decoder + 1x1 conv classifier, trained with per-pixel cross-entropy."""

    @configurable
    def __init__(
        self,
        *,
        pixel_decoder: nn.Module,
        predictor: nn.Module,
        ignore_value: int,
        loss_weight: float = 1.0,
    ):
        """
        Args:
            pixel_decoder: backbone features -> (per-pixel embeddings (B, E, h, w), extras).
            predictor: per-pixel embeddings (B, E, h, w) -> class logits (B, K, h, w).
            ignore_value: label of unlabelled pixels, excluded from the loss.
        """
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor
        self.ignore_value = ignore_value
        self.loss_weight = loss_weight

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Published checkpoints name the pixel decoder directly under the head, as MaskFormerHead.
        rename_published_pixel_decoder_keys(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        predictor = Conv2d(
            cfg.MODEL.SEM_SEG_HEAD.MASK_DIM, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, kernel_size=1
        )
        weight_init.c2_msra_fill(predictor)
        return {
            "pixel_decoder": build_pixel_decoder(cfg, input_shape),
            "predictor": predictor,
            "ignore_value": ignore_value_of(cfg),
            "loss_weight": cfg.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT,
        }

    def layers(self, features: Dict[str, Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Class logits (B, K, h, w) and those of earlier layers for deep supervision."""
        mask_features, _ = self.pixel_decoder(features)
        return self.predictor(mask_features), []

    def forward(
        self, features: Dict[str, Tensor], targets: Optional[Tensor] = None
    ) -> Tuple[Optional[Tensor], Dict[str, Tensor]]:
        """targets: (B, H, W) int64 labels (training only), H x W the padded input size. Returns
        (None, losses) in training; (logits (B, K, 4h, 4w), {}) at inference."""
        logits, aux_logits = self.layers(features)
        if not self.training:
            return _upsample(logits), {}
        losses = {"loss_sem_seg": self.loss(logits, targets)}
        for i, aux in enumerate(aux_logits):
            losses[f"loss_sem_seg_{i}"] = self.loss(aux, targets)
        return None, losses

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Weighted cross-entropy of (B, K, h, w) logits against (B, H, W) labels."""
        if targets is None:
            raise ValueError(
                f"{type(self).__name__} needs 'sem_seg' labels in training; use a mapper that "
                "provides them (INPUT.DATASET_MAPPER_NAME: mask_former_semantic)"
            )
        logits = _upsample(logits.float())
        # 4 x the stride-4 size covers the input (the stem rounds up); crop to the labels.
        logits = logits[..., : targets.shape[-2], : targets.shape[-1]]
        loss = F.cross_entropy(logits, targets, ignore_index=self.ignore_value, reduction="sum")
        # The mean over labelled pixels, as cross_entropy's "mean", but 0 instead of NaN for a
        # batch without any (a crop can fall entirely on unlabelled pixels).
        num_labelled = (targets != self.ignore_value).sum().clamp(min=1)
        return loss / num_labelled * self.loss_weight


@SEM_SEG_HEADS_REGISTRY.register()
class PerPixelBaselinePlusHead(PerPixelBaselineHead):
    """Pixel decoder + transformer predictor with one query per class (no class prediction): query
    k's mask logits are the logits of class k, every decoder layer with its own cross-entropy."""

    @configurable
    def __init__(
        self,
        *,
        pixel_decoder: nn.Module,
        predictor: nn.Module,
        transformer_in_feature: str,
        ignore_value: int,
        loss_weight: float = 1.0,
    ):
        """`predictor`: a `TransformerPredictor(mask_classification=False)` with K queries,
        attending to the feature `transformer_in_feature`; the rest as `PerPixelBaselineHead`."""
        super().__init__(
            pixel_decoder=pixel_decoder,
            predictor=predictor,
            ignore_value=ignore_value,
            loss_weight=loss_weight,
        )
        self.transformer_in_feature = transformer_in_feature

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
        num_queries = cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES
        if num_queries != num_classes:
            raise ValueError(
                f"PerPixelBaselinePlusHead: MODEL.MASK_FORMER.NUM_OBJECT_QUERIES is {num_queries} "
                f"but must equal MODEL.SEM_SEG_HEAD.NUM_CLASSES ({num_classes}): query k predicts "
                "the logits of class k"
            )
        in_channels = predictor_in_channels(cfg, input_shape)
        return {
            "pixel_decoder": build_pixel_decoder(cfg, input_shape),
            "predictor": TransformerPredictor(cfg, in_channels, mask_classification=False),
            "transformer_in_feature": cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE,
            "ignore_value": ignore_value_of(cfg),
            "loss_weight": cfg.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT,
        }

    def layers(self, features: Dict[str, Tensor]) -> Tuple[Tensor, List[Tensor]]:
        mask_features, extra = self.pixel_decoder(features)
        x = attended_feature(self.transformer_in_feature, features, extra)
        out = self.predictor(x, mask_features)
        return out["pred_masks"], [aux["pred_masks"] for aux in out.get("aux_outputs", [])]
