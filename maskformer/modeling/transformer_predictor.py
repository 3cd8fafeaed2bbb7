"""Transformer predictor (paper Sec. 3.3, "transformer module" and "segmentation module").

Shapes: B images, Q queries, K classes, L decoder layers, C hidden dim, E mask-embedding dim,
H x W the per-pixel embedding size (stride 4).
"""

from __future__ import annotations

from typing import Dict

import fvcore.nn.weight_init as weight_init
import torch
from detectron2.config import configurable
from detectron2.layers import Conv2d
from torch import Tensor, nn

from .layers import MLP, PositionEmbeddingSine, Transformer


class TransformerPredictor(nn.Module):
    """Q learned queries decode an image feature through a DETR decoder into per-query class
    logits over K + 1 (the last is "no object") and mask embeddings; the mask logits are their
    dot products with the per-pixel embeddings."""

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
            deep_supervision: also return every intermediate layer's predictions.
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
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        if in_channels != hidden_dim or enforce_input_project:
            self.input_proj = Conv2d(in_channels, hidden_dim, kernel_size=1)
            weight_init.c2_xavier_fill(self.input_proj)
        else:
            self.input_proj = nn.Identity()
        self.aux_loss = deep_supervision
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

    def forward(self, x: Tensor, mask_features: Tensor) -> Dict[str, object]:
        """x: (B, in_channels, h, w) the feature to attend to; mask_features: (B, E, H, W).
        Returns "pred_masks" (B, Q, H, W), "pred_logits" (B, Q, K + 1) if `mask_classification`,
        and, when training with deep supervision, "aux_outputs": L - 1 such dicts."""
        hs = self.decode(x)
        # One einsum for all layers: (L, B, Q, E) x (B, E, H, W) -> (L, B, Q, H, W).
        masks = torch.einsum("lbqe,behw->lbqhw", self.mask_embed(hs), mask_features)
        return self.predictions(hs, masks)

    def decode(self, x: Tensor) -> Tensor:
        """(B, in_channels, h, w) feature -> (L, B, Q, C) decoder outputs of the layers whose
        predictions are used (only the last one unless training with deep supervision)."""
        pos = self.pe_layer(x)
        hs, _ = self.transformer(self.input_proj(x), self.query_embed.weight, pos)  # (L,B,Q,C)
        if not (self.aux_loss and self.training):
            # Intermediate layers only feed the auxiliary losses.
            hs = hs[-1:]
        return hs

    def predictions(self, hs: Tensor, masks: Tensor) -> Dict[str, object]:
        """The output dict (`forward`) from the decoder outputs (L, B, Q, C) and their mask
        logits (L, B, Q, H, W)."""
        layers = [{"pred_masks": m} for m in masks]
        if self.mask_classification:
            for layer, logits in zip(layers, self.class_embed(hs)):
                layer["pred_logits"] = logits
        out: Dict[str, object] = dict(layers[-1])
        if len(layers) > 1:
            out["aux_outputs"] = layers[:-1]
        return out
