"""Fixed sine position encoding of a 2-D feature map (the DETR encoding)."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn


class PositionEmbeddingSine(nn.Module):
    """Sine/cosine encoding of the (y, x) position of every pixel: `num_pos_feats` channels for
    y, then as many for x. With `normalize`, positions are scaled to (0, 2*pi] so the encoding
    does not depend on the feature map size."""

    def __init__(
        self,
        num_pos_feats: int = 64,
        temperature: float = 10000.0,
        normalize: bool = False,
        scale: Optional[float] = None,
    ):
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("PositionEmbeddingSine: `scale` is only used with normalize=True")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """x: (B, C, H, W), only its shape, device and dtype used; mask: optional (B, H, W) bool,
        True at padded pixels. Returns (B, 2 * num_pos_feats, H, W) in x's dtype."""
        b, _, h, w = x.shape
        if mask is None:
            # Positions are 1..H and 1..W: the cumulative sum of an all-valid mask.
            y_embed = torch.arange(1, h + 1, device=x.device, dtype=torch.float32)
            x_embed = torch.arange(1, w + 1, device=x.device, dtype=torch.float32)
            y_embed = y_embed.view(1, h, 1).expand(b, h, w)
            x_embed = x_embed.view(1, 1, w).expand(b, h, w)
        else:
            not_mask = (~mask).to(torch.float32)
            y_embed = not_mask.cumsum(1)
            x_embed = not_mask.cumsum(2)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale

        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (
            2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats
        )
        pos_x = x_embed[:, :, :, None] / dim_t
        pos_y = y_embed[:, :, :, None] / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2).to(x.dtype)
