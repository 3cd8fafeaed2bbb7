"""MaskFormerHead: pixel decoder + transformer predictor, a Detectron2 sem-seg head."""

from __future__ import annotations

from typing import Dict, List

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from torch import Tensor, nn

from .pixel_decoder import build_pixel_decoder
from .transformer_predictor import TransformerPredictor


@SEM_SEG_HEADS_REGISTRY.register()
class MaskFormerHead(nn.Module):
    """The paper's pixel-level module and transformer module together, as a Detectron2 sem-seg
    head: backbone features -> pixel decoder -> per-pixel embeddings (and extra features) ->
    transformer predictor -> class and mask logits of every query."""

    @configurable
    def __init__(
        self,
        *,
        pixel_decoder: nn.Module,
        predictor: nn.Module,
        transformer_in_feature: str,
    ):
        """`transformer_in_feature`: the feature the predictor attends to, among the backbone
        features and the pixel decoder's extra features."""
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor
        self.transformer_in_feature = transformer_in_feature

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Every loader (Detectron2's DetectionCheckpointer and DefaultPredictor, plain
        # load_state_dict) passes through here, so the published layout is renamed here.
        rename_published_pixel_decoder_keys(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        in_channels = predictor_in_channels(cfg, input_shape)
        return {
            "pixel_decoder": build_pixel_decoder(cfg, input_shape),
            "predictor": TransformerPredictor(cfg, in_channels, mask_classification=True),
            "transformer_in_feature": cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE,
        }

    def forward(self, features: Dict[str, Tensor]) -> Dict[str, object]:
        """features: backbone features by name. Returns the predictor's output dict."""
        mask_features, extra = self.pixel_decoder(features)
        x = attended_feature(self.transformer_in_feature, features, extra)
        return self.predictor(x, mask_features)


def rename_published_pixel_decoder_keys(state_dict: Dict[str, Tensor], prefix: str) -> List[str]:
    """Rename, in place, the published layout `{prefix}X` to `{prefix}pixel_decoder.X`, for every
    loader; returns the renamed keys (old names), and refuses a mix of both layouts.

    The published checkpoints name the pixel decoder's tensors directly under the head
    (`sem_seg_head.adapter_1.weight`) without the version metadata by which the official code
    renames them: every key under `prefix` outside `pixel_decoder.` and `predictor.` is one.
    """
    children = (prefix + "pixel_decoder.", prefix + "predictor.")
    published = [k for k in state_dict if k.startswith(prefix) and not k.startswith(children)]
    if not published:
        return []
    current = [k for k in state_dict if k.startswith(prefix + "pixel_decoder.")]
    if current:
        raise ValueError(
            f"mixes two layouts of the pixel decoder: {published[0]} (published layout) and "
            f"{current[0]} (current layout); refusing to guess"
        )
    for old in published:
        state_dict[prefix + "pixel_decoder." + old[len(prefix) :]] = state_dict.pop(old)
    return published


def predictor_in_channels(cfg, input_shape: Dict[str, ShapeSpec]) -> int:
    """Channels of the feature named by MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE."""
    in_feature = cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE
    if in_feature == "transformer_encoder":
        # Produced by TransformerEncoderPixelDecoder at the decoder's width.
        return cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM
    if in_feature in input_shape:
        return input_shape[in_feature].channels
    raise KeyError(
        f"MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE is '{in_feature}'; expected one of the "
        f"backbone features {sorted(input_shape)} or 'transformer_encoder'"
    )


def attended_feature(name: str, features: Dict[str, Tensor], extra: Dict[str, Tensor]) -> Tensor:
    """The feature the predictor attends to: a pixel-decoder output or a backbone feature."""
    x = extra[name] if name in extra else features.get(name)
    if x is None:
        raise KeyError(
            f"Feature '{name}' (MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE) was not produced; "
            f"available: {sorted(features) + sorted(extra)}. 'transformer_encoder' needs "
            "PIXEL_DECODER_NAME: TransformerEncoderPixelDecoder."
        )
    return x
