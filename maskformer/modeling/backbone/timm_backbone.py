"""Any timm model that gives feature maps, as a Detectron2 backbone with `res2`..`res5` outputs.

Feature maps are named by stride (stride 2**k -> "res{k}"), so MaskFormer's pixel decoders work
unchanged; a single-scale model (a plain ViT) gets Detectron2's ViTDet `SimpleFeaturePyramid`.
The MODEL.TIMM keys: docs/configs.md. Nothing is downloaded.
"""

from __future__ import annotations

import ast
import difflib
import logging
import math
import os
from typing import Any, Dict, List, Optional, Sequence

import timm
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.vit import SimpleFeaturePyramid
from torch import Tensor, nn

__all__ = [
    "TimmBackbone",
    "TimmSimpleFeaturePyramid",
    "build_timm_backbone",
    "create_timm_features",
    "parse_timm_kwargs",
]

logger = logging.getLogger(__name__)

# The strides MaskFormer's pixel decoders expect, res2..res5.
_PYRAMID_STRIDES = (4, 8, 16, 32)

# What timm raises for a model or arguments it cannot serve.
_TIMM_ERRORS = (RuntimeError, AssertionError, NotImplementedError, TypeError, KeyError, IndexError)


def parse_timm_kwargs(items: Sequence[str]) -> Dict[str, Any]:
    """["img_size=512", "drop_path_rate=0.1"] -> {"img_size": 512, "drop_path_rate": 0.1}:
    values are Python literals, or else strings."""
    kwargs: Dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(
                f"MODEL.TIMM.KWARGS entry '{item}' is not of the form name=value "
                "(e.g. 'drop_path_rate=0.1')"
            )
        try:
            kwargs[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            kwargs[key.strip()] = value.strip()
    return kwargs


def _refusal(name: str, reason: str) -> ValueError:
    names = [n for n in timm.list_models() if n != name]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    hint = f"; close names: {close}" if close else "; see timm.list_models()"
    return ValueError(f"MODEL.TIMM.NAME '{name}' cannot serve as a backbone: {reason}{hint}")


def _default_out_indices(feature_info: Sequence[Dict[str, Any]]) -> List[int]:
    """Indices into a timm model's `feature_info` of the features of stride 4, 8, 16, 32 (the
    last one of each stride); for a single-scale model, its last one."""
    reductions = [f["reduction"] for f in feature_info]
    if len(set(reductions)) == 1:
        return [len(reductions) - 1]
    by_stride = {r: i for i, r in enumerate(reductions) if r in _PYRAMID_STRIDES}
    return [by_stride[r] for r in sorted(by_stride)]


def create_timm_features(
    name: str,
    *,
    in_chans: int = 3,
    out_indices: Sequence[int] = (),
    pretrained_weights: str = "",
    model_kwargs: Optional[Dict[str, Any]] = None,
) -> nn.Module:
    """`timm.create_model(name, features_only=True, ...)`, with errors that say what to change.

    Args:
        out_indices: timm feature indices; empty for the stride 4..32 stages (or, for a
            single-scale model, its last block).
        pretrained_weights: a local weight file in the full model's layout ("" for random
            weights).
    """
    kwargs = dict(model_kwargs or {}, features_only=True, in_chans=in_chans, pretrained=False)
    if pretrained_weights:
        if not os.path.isfile(pretrained_weights):
            raise FileNotFoundError(
                f"MODEL.TIMM.PRETRAINED_WEIGHTS '{pretrained_weights}' does not exist"
            )
        # timm's loader, from this file only: it applies the model's own checkpoint filter
        # (e.g. position-embedding resizing) and adapts the first convolution to in_chans.
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": pretrained_weights})
    if not timm.is_model(name):
        raise _refusal(name, "timm has no model of that name")

    def create(indices: Sequence[int]) -> nn.Module:
        extra = {"out_indices": tuple(indices)} if indices else {}
        try:
            return timm.create_model(name, **kwargs, **extra)
        except _TIMM_ERRORS as e:
            raise _refusal(name, f"timm cannot create it with features_only=True ({e})") from e

    if not out_indices:
        # timm's default indices vary by family (a ViT's: its last 3 blocks): read what the
        # model can give from a plain instance, then ask for the stride 4..32 ones.
        plain = {k: v for k, v in kwargs.items() if k not in ("features_only", "pretrained")}
        plain.pop("pretrained_cfg_overlay", None)
        try:
            info = getattr(timm.create_model(name, **plain), "feature_info", None)
        except _TIMM_ERRORS as e:
            raise _refusal(name, f"timm cannot create it ({e})") from e
        if not info:
            raise _refusal(name, "timm declares no feature maps for it (feature_info is empty)")
        out_indices = _default_out_indices(info)
    model = create(out_indices)
    if pretrained_weights:
        adapted = f", first convolution adapted to {in_chans} channels" if in_chans != 3 else ""
        logger.info(f"Loaded timm '{name}' weights from {pretrained_weights}{adapted}")
    return model


def _stride_name(stride: int) -> str:
    return f"res{int(round(math.log2(stride)))}"


class TimmBackbone(Backbone):
    """A timm `features_only` model whose feature maps are named by stride ("res2" = stride 4).

    Input (B, C, H, W), H and W multiples of `size_divisibility`; output {"res{k}": (B, C_k,
    H / 2**k, W / 2**k)}. `name`: the timm model name, for messages.
    """

    def __init__(self, features: nn.Module, *, name: str = ""):
        super().__init__()
        self.features = features
        info = features.feature_info
        strides, channels = info.reduction(), info.channels()
        odd = [s for s in strides if s & (s - 1)]
        if odd:
            raise ValueError(
                f"timm model '{name}' gives features of stride {odd}, not a power of 2 (a ViT "
                "with 14 px patches?); the pixel decoders need strides 4..32: for a ViT add "
                "'patch_size=16' to MODEL.TIMM.KWARGS (timm resamples pretrained patch weights)"
            )
        names = [_stride_name(s) for s in strides]
        if len(set(names)) != len(names):
            raise ValueError(
                f"timm model '{name}' gives several features of one stride (strides {strides} for "
                f"out_indices {list(info.out_indices)}); choose one per stride in "
                "MODEL.TIMM.OUT_INDICES"
            )
        self._out_features = names
        self._out_feature_strides = dict(zip(names, strides))
        self._out_feature_channels = dict(zip(names, channels))
        self._size_divisibility = max(strides)

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        return dict(zip(self._out_features, self.features(x)))


class TimmSimpleFeaturePyramid(SimpleFeaturePyramid):
    """Detectron2's ViTDet `SimpleFeaturePyramid` with its outputs named res2..res5 (not p2..p5).

    The pyramid layers are new (randomly initialised): they train even when the backbone's
    pretrained part (`net`) is frozen (`maskformer.modeling.backbone.freeze_backbone`).
    """

    def __init__(self, net: Backbone, *, out_channels: int, norm: str = "LN"):
        (in_feature,) = net.output_shape()
        stride = net.output_shape()[in_feature].stride
        super().__init__(
            net,
            in_feature,
            out_channels,
            scale_factors=[stride / s for s in _PYRAMID_STRIDES],
            norm=norm,
        )
        # SimpleFeaturePyramid names its outputs by `_out_features`.
        rename = {p: _stride_name(s) for p, s in self._out_feature_strides.items()}
        self._out_features = [rename[p] for p in self._out_features]
        self._out_feature_strides = {rename[p]: s for p, s in self._out_feature_strides.items()}
        self._out_feature_channels = {rename[p]: c for p, c in self._out_feature_channels.items()}

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility


def _timm_backbone_args(cfg, input_shape: ShapeSpec) -> Dict[str, Any]:
    t = cfg.MODEL.TIMM
    if not t.NAME:
        raise ValueError("MODEL.BACKBONE.NAME is build_timm_backbone but MODEL.TIMM.NAME is empty")
    return {
        "name": t.NAME,
        "in_chans": input_shape.channels,
        "out_indices": list(t.OUT_INDICES),
        "pretrained_weights": t.PRETRAINED_WEIGHTS,
        "model_kwargs": parse_timm_kwargs(t.KWARGS),
        "pyramid_channels": t.PYRAMID_CHANNELS,
        "pyramid_norm": t.PYRAMID_NORM,
    }


@BACKBONE_REGISTRY.register()
@configurable(from_config=_timm_backbone_args)
def build_timm_backbone(
    *,
    name: str,
    in_chans: int = 3,
    out_indices: Sequence[int] = (),
    pretrained_weights: str = "",
    model_kwargs: Optional[Dict[str, Any]] = None,
    pyramid_channels: int = 256,
    pyramid_norm: str = "LN",
) -> Backbone:
    """`MODEL.BACKBONE.NAME: build_timm_backbone`: `TimmBackbone` for a multi-scale timm
    model, `TimmSimpleFeaturePyramid` (of `pyramid_channels`, `pyramid_norm`) around a
    single-scale one (a ViT). Other arguments: `create_timm_features`."""
    features = create_timm_features(
        name,
        in_chans=in_chans,
        out_indices=out_indices,
        pretrained_weights=pretrained_weights,
        model_kwargs=model_kwargs,
    )
    backbone = TimmBackbone(features, name=name)
    if len(backbone.output_shape()) == 1:
        return TimmSimpleFeaturePyramid(backbone, out_channels=pyramid_channels, norm=pyramid_norm)
    return backbone
