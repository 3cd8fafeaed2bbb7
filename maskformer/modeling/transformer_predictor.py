"""Transformer predictor (paper Sec. 3.3, "transformer module" and "segmentation module").

N learned queries attend to an image feature through a DETR decoder; each decoder output becomes
a class prediction over K + 1 (the last is "no object") and a mask embedding whose dot product
with the per-pixel embeddings gives the mask logits.

Shapes: B images, Q queries, K classes, L decoder layers, C hidden dim, E mask-embedding dim,
H x W the per-pixel embedding size (stride 4).
"""

from __future__ import annotations

from typing import Dict, Optional

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d
from torch import Tensor, nn

from .layers import MLP, PositionEmbeddingSine, Transformer


class TransformerPredictor(nn.Module):
    @configurable
    def __init__(
        self,
        in_channels: int,
        mask_classification: bool = True,
        *,
        num_classes: int,
        hidden_dim: int,
        num_queries: int,
        nheads: int,
        dropout: float,
        dim_feedforward: int,
        enc_layers: int,
        dec_layers: int,
        pre_norm: bool,
        deep_supervision: bool,
        mask_dim: int,
        enforce_input_project: bool,
    ):
        """
        Args:
            in_channels: channels of the feature the decoder attends to.
            mask_classification: predict a class per query; False gives per-query masks only
                (the per-pixel baseline+, where query i is class i).
            num_classes: K, not counting "no object".
            hidden_dim, nheads, dropout, dim_feedforward, enc_layers, dec_layers, pre_norm:
                the transformer's shape.
            num_queries: Q.
            deep_supervision: also return every intermediate layer's predictions.
            mask_dim: E, channels of the per-pixel embeddings.
            enforce_input_project: add the 1x1 input projection even if in_channels == hidden_dim.
        """
        super().__init__()
        self.mask_classification = mask_classification
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.transformer = Transformer(
            d_model=hidden_dim,
            nhead=nheads,
            num_encoder_layers=enc_layers,
            num_decoder_layers=dec_layers,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            normalize_before=pre_norm,
            return_intermediate_dec=deep_supervision,
        )
        self.num_queries = num_queries
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        if in_channels != hidden_dim or enforce_input_project:
            self.input_proj = Conv2d(in_channels, hidden_dim, kernel_size=1)
            weight_init.c2_xavier_fill(self.input_proj)
        else:
            self.input_proj = nn.Identity()
        self.aux_loss = deep_supervision
        # Fold the pixel decoder's last convolution into the mask embeddings when cheaper
        # (`mask_logits`); False computes the official order (FLOP counts of the architecture).
        self.fold_mask_projection = True
        if mask_classification:
            self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    @classmethod
    def from_config(cls, cfg, in_channels: int, mask_classification: bool = True):
        mf = cfg.MODEL.MASK_FORMER
        return {
            "in_channels": in_channels,
            "mask_classification": mask_classification,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "hidden_dim": mf.HIDDEN_DIM,
            "num_queries": mf.NUM_OBJECT_QUERIES,
            "nheads": mf.NHEADS,
            "dropout": mf.DROPOUT,
            "dim_feedforward": mf.DIM_FEEDFORWARD,
            "enc_layers": mf.ENC_LAYERS,
            "dec_layers": mf.DEC_LAYERS,
            "pre_norm": mf.PRE_NORM,
            "deep_supervision": mf.DEEP_SUPERVISION,
            "mask_dim": cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
            "enforce_input_project": mf.ENFORCE_INPUT_PROJ,
        }

    def forward(
        self, x: Tensor, mask_features: Tensor, mask_projection: Optional[nn.Conv2d] = None
    ) -> Dict[str, object]:
        """
        Args:
            x: (B, in_channels, h, w) the feature to attend to.
            mask_features: (B, E, H, W) per-pixel embeddings; or, if `mask_projection` is given,
                the (B, C, H, W) features that this convolution maps to them.
            mask_projection: a plain convolution (bias, no norm or activation) C -> E. Giving
                it instead of applying it lets the mask logits be computed the cheaper way
                (`mask_logits`).
        Returns:
            dict with "pred_masks" (B, Q, H, W) mask logits, "pred_logits" (B, Q, K + 1) class
            logits if `mask_classification`, and, when training with deep supervision,
            "aux_outputs": a list of L - 1 such dicts for the earlier decoder layers.
        """
        pos = self.pe_layer(x)
        hs, _ = self.transformer(self.input_proj(x), self.query_embed.weight, pos)  # (L,B,Q,C)
        if not (self.aux_loss and self.training):
            # Intermediate layers only feed the auxiliary losses.
            hs = hs[-1:]
        masks = mask_logits(
            self.mask_embed(hs), mask_features, mask_projection, fold=self.fold_mask_projection
        )
        layers = [{"pred_masks": m} for m in masks]
        if self.mask_classification:
            for layer, logits in zip(layers, self.class_embed(hs)):
                layer["pred_logits"] = logits
        out: Dict[str, object] = dict(layers[-1])
        if len(layers) > 1:
            out["aux_outputs"] = layers[:-1]
        return out


def mask_logits(
    mask_embed: Tensor,
    features: Tensor,
    projection: Optional[nn.Conv2d] = None,
    fold: bool = True,
) -> Tensor:
    """Mask logits: dot products of mask embeddings with per-pixel embeddings.

    Args:
        mask_embed: (L, B, Q, E) mask embeddings.
        features: (B, E, H, W) per-pixel embeddings, or the (B, C, H, W) input of `projection`.
        projection: None, or a convolution C -> E with bias and no norm or activation, to apply
            to `features` first.
        fold: allow the folded computation below (False: always project, then multiply).
    Returns:
        (L, B, Q, H, W) = einsum("lbqe,behw->lbqhw", mask_embed, projection(features)).

    The projection is linear, so the dot products can go inside it: one convolution of
    `features` with L*Q kernels `sum_e embed[e] * W[e]` (and biases `embed . b`) gives the same
    logits. That costs L*Q*C*k*k per pixel instead of E*C*k*k + L*Q*E, so it is used when
    cheaper: at inference (L = 1, Q = 100 < E = 256) it saves about 60% of the multiply-adds of
    the last pixel-decoder convolution and the product together.
    """
    if projection is not None:
        n, b, q, e = mask_embed.shape
        c, k = projection.in_channels, projection.kernel_size
        # Only a plain linear convolution folds (a Detectron2 Conv2d may carry a norm or an
        # activation).
        linear = getattr(projection, "norm", None) is None and (
            getattr(projection, "activation", None) is None
        )
        cheaper = n * q * c * k[0] * k[1] < e * c * k[0] * k[1] + n * q * e
        if not (fold and linear and cheaper and projection.bias is not None):
            features = projection(features)
        else:
            kernels = torch.einsum("lbqe,ecij->blqcij", mask_embed, projection.weight)
            bias = torch.einsum("lbqe,e->blq", mask_embed, projection.bias)
            h, w = features.shape[-2:]
            # One grouped convolution for the batch: image i's features meet image i's kernels.
            out = F.conv2d(
                features.reshape(1, b * c, h, w),
                kernels.reshape(b * n * q, c, *k),
                bias.reshape(-1),
                projection.stride,
                projection.padding,
                projection.dilation,
                groups=b,
            )
            return out.view(b, n, q, *out.shape[-2:]).transpose(0, 1)
    # One einsum for all layers: (L, B, Q, E) x (B, E, H, W) -> (L, B, Q, H, W).
    return torch.einsum("lbqe,behw->lbqhw", mask_embed, features)
