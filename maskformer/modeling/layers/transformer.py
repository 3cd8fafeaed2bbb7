"""DETR-style transformer blocks, with the parameter names of the official checkpoints.

Sequences are laid out (S, B, C) as nn.MultiheadAttention expects by default. Positional
encodings are added to queries and keys at every layer, never to values.
"""

from __future__ import annotations

import copy
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "MLP",
    "Transformer",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "TransformerEncoderOnly",
]


def _with_pos(x: Tensor, pos: Optional[Tensor]) -> Tensor:
    return x if pos is None else x + pos


class TransformerEncoderLayer(nn.Module):
    """Self-attention and FFN, each with a residual connection and LayerNorm."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        normalize_before: bool = False,
    ):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.normalize_before = normalize_before

    def _ffn(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def forward(self, src: Tensor, pos: Optional[Tensor] = None) -> Tensor:
        """src, pos: (HW, B, C)."""
        if self.normalize_before:
            x = self.norm1(src)
            q = k = _with_pos(x, pos)
            src = src + self.dropout1(self.self_attn(q, k, x, need_weights=False)[0])
            return src + self.dropout2(self._ffn(self.norm2(src)))
        q = k = _with_pos(src, pos)
        src = self.norm1(src + self.dropout1(self.self_attn(q, k, src, need_weights=False)[0]))
        return self.norm2(src + self.dropout2(self._ffn(src)))


class TransformerDecoderLayer(nn.Module):
    """Self-attention among queries, cross-attention to the image, FFN; residual + LayerNorm."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        normalize_before: bool = False,
    ):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.normalize_before = normalize_before

    def _ffn(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        pos: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
    ) -> Tensor:
        """tgt, query_pos: (Q, B, C); memory, pos: (HW, B, C)."""
        if self.normalize_before:
            x = self.norm1(tgt)
            q = k = _with_pos(x, query_pos)
            tgt = tgt + self.dropout1(self.self_attn(q, k, x, need_weights=False)[0])
            x = self.norm2(tgt)
            attn = self.multihead_attn(
                _with_pos(x, query_pos), _with_pos(memory, pos), memory, need_weights=False
            )[0]
            tgt = tgt + self.dropout2(attn)
            return tgt + self.dropout3(self._ffn(self.norm3(tgt)))
        q = k = _with_pos(tgt, query_pos)
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, tgt, need_weights=False)[0]))
        attn = self.multihead_attn(
            _with_pos(tgt, query_pos), _with_pos(memory, pos), memory, need_weights=False
        )[0]
        tgt = self.norm2(tgt + self.dropout2(attn))
        return self.norm3(tgt + self.dropout3(self._ffn(tgt)))


def _clones(layer: nn.Module, n: int) -> nn.ModuleList:
    return nn.ModuleList(copy.deepcopy(layer) for _ in range(n))


class TransformerEncoder(nn.Module):
    def __init__(self, layer: TransformerEncoderLayer, num_layers: int, norm: Optional[nn.Module]):
        super().__init__()
        self.layers = _clones(layer, num_layers)
        self.norm = norm

    def forward(self, src: Tensor, pos: Optional[Tensor] = None) -> Tensor:
        for layer in self.layers:
            src = layer(src, pos=pos)
        return src if self.norm is None else self.norm(src)


class TransformerDecoder(nn.Module):
    """Decoder layers followed by a shared LayerNorm; with `return_intermediate`, the normalised
    output of every layer is returned (deep supervision), otherwise only the last one."""

    def __init__(
        self,
        layer: TransformerDecoderLayer,
        num_layers: int,
        norm: nn.Module,
        return_intermediate: bool = False,
    ):
        super().__init__()
        self.layers = _clones(layer, num_layers)
        self.norm = norm
        self.return_intermediate = return_intermediate

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        pos: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
    ) -> Tensor:
        """Returns (L, Q, B, C), L = num_layers with `return_intermediate`, else 1."""
        intermediate: List[Tensor] = []
        for layer in self.layers:
            tgt = layer(tgt, memory, pos=pos, query_pos=query_pos)
            if self.return_intermediate:
                intermediate.append(self.norm(tgt))
        if self.return_intermediate:
            return torch.stack(intermediate)
        return self.norm(tgt).unsqueeze(0)


def _reset_parameters(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class Transformer(nn.Module):
    """Encoder (possibly with zero layers) + decoder over a set of learned queries."""

    def __init__(
        self,
        d_model: int = 512,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        normalize_before: bool = False,
        return_intermediate_dec: bool = False,
    ):
        super().__init__()
        enc_layer = TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout, normalize_before
        )
        # Post-norm layers end in a LayerNorm already; pre-norm ones need a final one.
        enc_norm = nn.LayerNorm(d_model) if normalize_before else None
        self.encoder = TransformerEncoder(enc_layer, num_encoder_layers, enc_norm)
        dec_layer = TransformerDecoderLayer(
            d_model, nhead, dim_feedforward, dropout, normalize_before
        )
        self.decoder = TransformerDecoder(
            dec_layer, num_decoder_layers, nn.LayerNorm(d_model), return_intermediate_dec
        )
        _reset_parameters(self)

    def forward(self, src: Tensor, query_embed: Tensor, pos_embed: Tensor) -> Tuple[Tensor, Tensor]:
        """src, pos_embed: (B, C, H, W) image features and their position encoding; query_embed:
        (Q, C) learned query positions. Returns decoder outputs (L, B, Q, C) and the encoder
        output (B, C, H, W)."""
        b, c, h, w = src.shape
        src = src.flatten(2).permute(2, 0, 1)
        pos_embed = pos_embed.flatten(2).permute(2, 0, 1)
        query_embed = query_embed.unsqueeze(1).expand(-1, b, -1)
        memory = self.encoder(src, pos=pos_embed)
        tgt = torch.zeros_like(query_embed)
        hs = self.decoder(tgt, memory, pos=pos_embed, query_pos=query_embed)
        return hs.transpose(1, 2), memory.permute(1, 2, 0).reshape(b, c, h, w)


class TransformerEncoderOnly(nn.Module):
    """The encoder half of `Transformer`, applied to a feature map."""

    def __init__(
        self,
        d_model: int = 512,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        normalize_before: bool = False,
    ):
        super().__init__()
        enc_layer = TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout, normalize_before
        )
        enc_norm = nn.LayerNorm(d_model) if normalize_before else None
        self.encoder = TransformerEncoder(enc_layer, num_encoder_layers, enc_norm)
        _reset_parameters(self)

    def forward(self, src: Tensor, pos_embed: Tensor) -> Tensor:
        """src, pos_embed: (B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = src.shape
        src = src.flatten(2).permute(2, 0, 1)
        pos_embed = pos_embed.flatten(2).permute(2, 0, 1)
        memory = self.encoder(src, pos=pos_embed)
        return memory.permute(1, 2, 0).reshape(b, c, h, w)


class MLP(nn.Module):
    """`num_layers` Linear layers with ReLU between them (not after the last)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x
