"""FPN-style pixel decoders (paper Sec. 3.3, "pixel-level module").

From the coarsest feature (res5, `layer_4`) to the finest (res2): each finer level adds its 1x1
`adapter_i` projection to the nearest-upsampled running output before a 3x3 `layer_i`; i = 1 is
res2 and i = 4 is res5, as in the official checkpoints.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import fvcore.nn.weight_init as weight_init
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from torch import Tensor, nn

from ..layers import PositionEmbeddingSine, TransformerEncoderOnly
from .build import PIXEL_DECODER_REGISTRY


@PIXEL_DECODER_REGISTRY.register()
class BasePixelDecoder(nn.Module):
    """The paper's pixel decoder: a light FPN over the backbone features whose finest output,
    through a last 3x3 convolution (`mask_features`), gives the per-pixel embeddings."""

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        conv_dim: int,
        mask_dim: int,
        norm: str = "GN",
        top_in_channels: Optional[int] = None,
    ):
        """
        Args:
            input_shape: shapes of the backbone features to use, any order.
            norm: normalisation of the FPN convs ("" for none, then the convs have a bias).
            top_in_channels: channels entering `layer_4`; default: those of the coarsest feature.
        """
        super().__init__()
        shapes = sorted(input_shape.items(), key=lambda kv: kv[1].stride)
        self.in_features = [k for k, _ in shapes]
        channels = [v.channels for _, v in shapes]
        if top_in_channels is None:
            top_in_channels = channels[-1]
        use_bias = norm == ""

        def conv(in_ch: int, k: int, relu: bool) -> Conv2d:
            layer = Conv2d(
                in_ch,
                conv_dim,
                kernel_size=k,
                padding=k // 2,
                bias=use_bias,
                norm=get_norm(norm, conv_dim),
                activation=F.relu if relu else None,
            )
            weight_init.c2_xavier_fill(layer)
            return layer

        # Registered in the official order (adapter_1, layer_1, ..., layer_4) so that the state
        # dict lists keys as the published checkpoints do; forward looks them up by name, so
        # that a transform replacing one (fold_frozen_batchnorm) is the one that runs.
        for i, in_ch in enumerate(channels[:-1], start=1):
            self.add_module(f"adapter_{i}", conv(in_ch, 1, relu=False))
            self.add_module(f"layer_{i}", conv(conv_dim, 3, relu=True))
        self.add_module(f"layer_{len(channels)}", conv(top_in_channels, 3, relu=True))

        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=3, padding=1)
        weight_init.c2_xavier_fill(self.mask_features)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        return {
            "input_shape": {
                k: v for k, v in input_shape.items() if k in cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES
            },
            "conv_dim": cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM,
            "mask_dim": cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
            "norm": cfg.MODEL.SEM_SEG_HEAD.NORM,
        }

    def _top(self, x: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Process the coarsest feature; returns its output and any named extra features."""
        return getattr(self, f"layer_{len(self.in_features)}")(x), {}

    def forward(self, features: Dict[str, Tensor]) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Backbone features by name -> per-pixel embeddings (B, mask_dim, H4, W4) at the finest
        stride, and named extra features (e.g. "transformer_encoder"), possibly none."""
        y, extra = self._top(features[self.in_features[-1]])
        for i in range(len(self.in_features) - 1, 0, -1):  # coarse to fine
            cur = getattr(self, f"adapter_{i}")(features[self.in_features[i - 1]])
            y = getattr(self, f"layer_{i}")(
                cur + F.interpolate(y, size=cur.shape[-2:], mode="nearest")
            )
        return self.mask_features(y), extra


@PIXEL_DECODER_REGISTRY.register()
class TransformerEncoderPixelDecoder(BasePixelDecoder):
    """`BasePixelDecoder` whose coarsest level first goes through a transformer encoder, whose
    output is also the extra feature "transformer_encoder" (the paper's "+6 Enc" models)."""

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        transformer_dropout: float,
        transformer_nheads: int,
        transformer_dim_feedforward: int,
        transformer_enc_layers: int,
        transformer_pre_norm: bool,
        conv_dim: int,
        mask_dim: int,
        norm: str = "GN",
    ):
        super().__init__(
            input_shape, conv_dim=conv_dim, mask_dim=mask_dim, norm=norm, top_in_channels=conv_dim
        )
        top_channels = max(input_shape.values(), key=lambda s: s.stride).channels
        self.input_proj = Conv2d(top_channels, conv_dim, kernel_size=1)
        weight_init.c2_xavier_fill(self.input_proj)
        self.transformer = TransformerEncoderOnly(
            d_model=conv_dim,
            nhead=transformer_nheads,
            num_encoder_layers=transformer_enc_layers,
            dim_feedforward=transformer_dim_feedforward,
            dropout=transformer_dropout,
            normalize_before=transformer_pre_norm,
        )
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        ret["transformer_dropout"] = cfg.MODEL.MASK_FORMER.DROPOUT
        ret["transformer_nheads"] = cfg.MODEL.MASK_FORMER.NHEADS
        ret["transformer_dim_feedforward"] = cfg.MODEL.MASK_FORMER.DIM_FEEDFORWARD
        ret["transformer_enc_layers"] = cfg.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS
        ret["transformer_pre_norm"] = cfg.MODEL.MASK_FORMER.PRE_NORM
        return ret

    def _top(self, x: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        encoded = self.transformer(self.input_proj(x), self.pe_layer(x))
        return getattr(self, f"layer_{len(self.in_features)}")(encoded), {
            "transformer_encoder": encoded
        }
