"""Swin Transformer (Liu et al., ICCV 2021) as a Detectron2 backbone.

The output of stage i, before patch merging and after its own LayerNorm `norm{i}`, is the
feature `res{i + 2}` (stride 4 * 2**i). Module and parameter names follow the official MaskFormer
checkpoints, so official and converted ImageNet weights load by name.

Shapes: B images, H x W a stage's token grid, C its width, w the window size, N = w * w tokens per
window, nW windows per image, nH attention heads.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from timm.layers import DropPath, Mlp
from torch import Tensor, nn

__all__ = ["D2SwinTransformer", "PatchEmbed", "PatchMerging", "SwinBlock", "WindowAttention"]


def window_partition(x: Tensor, window_size: int) -> Tensor:
    """(B, H, W, C) with H, W multiples of w -> (B * nW, N, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


def window_reverse(windows: Tensor, window_size: int, h: int, w: int) -> Tensor:
    """Inverse of `window_partition`: (B * nW, N, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window_size, w // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def relative_position_index(window_size: int) -> Tensor:
    """(N, N) int64: index into the (2w - 1)^2 table of relative offsets for each token pair."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    ).flatten(1)  # (2, N)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (N, N, 2), in [-w+1, w-1]
    rel = rel + (window_size - 1)
    return rel[..., 0] * (2 * window_size - 1) + rel[..., 1]


def shifted_window_mask(h: int, w: int, window_size: int, shift: int, device) -> Tensor:
    """(nW, N, N) additive mask for attention in cyclically shifted windows of an h x w grid.

    After the shift, a window at the bottom/right border holds tokens from up to four regions
    that are not neighbours in the image; tokens may only attend to tokens of their own region.
    """
    region = torch.zeros(1, h, w, 1, device=device)
    bounds = (slice(0, -window_size), slice(-window_size, -shift), slice(-shift, None))
    label = 0
    for hs in bounds:
        for ws in bounds:
            region[:, hs, ws, :] = label
            label += 1
    region = window_partition(region, window_size).squeeze(-1)  # (nW, N)
    different = region[:, None, :] != region[:, :, None]
    # -100, not -inf, as in the official implementation: exp(-100) underflows to 0 in fp32 while
    # a window of only masked pairs cannot produce NaN.
    return torch.zeros(different.shape, device=device).masked_fill(different, -100.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention within a window, with a learned relative position bias."""

    def __init__(
        self,
        dim: int,
        window_size: int,
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: Optional[float] = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"Swin stage width {dim} is not divisible by its {num_heads} heads")
        self.num_heads = num_heads
        self.scale = qk_scale if qk_scale is not None else (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # Persistent although it is a constant: the official checkpoints carry it.
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """x: (B * nW, N, C); mask: (nW, N, N) additive, or None. Returns (B * nW, N, C)."""
        bw, n, c = x.shape
        qkv = self.qkv(x).view(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B * nW, nH, N, C / nH)
        # Explicit matmuls rather than scaled_dot_product_attention: FLOP counters see them.
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.num_heads, n, n) + mask[None, :, None]
            attn = attn.view(bw, self.num_heads, n, n)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj_drop(self.proj(x))


class SwinBlock(nn.Module):
    """(Shifted-)window attention and an MLP, each pre-norm with a residual connection."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        qk_scale: Optional[float],
        drop: float,
        attn_drop: float,
        drop_path: float,
    ):
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size {shift_size} must be in [0, window_size={window_size})")
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(
            dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, drop
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)

    def forward(self, x: Tensor, hw: Tuple[int, int], mask: Optional[Tensor]) -> Tensor:
        """x: (B, H * W, C) tokens of an (H, W) = `hw` grid; mask: the stage's shifted-window mask
        for the padded grid (used if this block shifts)."""
        h, w = hw
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        # Pad after the norm so padded tokens are exact zeros, as in the official implementation.
        pad_b = (self.window_size - h % self.window_size) % self.window_size
        pad_r = (self.window_size - w % self.window_size) % self.window_size
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        else:
            mask = None
        x = self.attn(window_partition(x, self.window_size), mask)
        x = window_reverse(x, self.window_size, hp, wp)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = x[:, :h, :w, :].reshape(b, h * w, c)
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens concatenated (4C), normalised, projected to 2C."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor, hw: Tuple[int, int]) -> Tensor:
        """(B, H * W, C) -> (B, ceil(H / 2) * ceil(W / 2), 2C)."""
        h, w = hw
        b, _, c = x.shape
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
        # Order (0,0), (1,0), (0,1), (1,1) of (row, col) offsets: the checkpoints' channel order.
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class SwinStage(nn.Module):
    """`depth` blocks alternating regular and shifted windows, then optional patch merging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        qk_scale: Optional[float],
        drop: float,
        attn_drop: float,
        drop_path: Sequence[float],
        downsample: bool,
        use_checkpoint: bool,
    ):
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            SwinBlock(
                dim,
                num_heads,
                window_size,
                shift_size=0 if i % 2 == 0 else self.shift_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop=drop,
                attn_drop=attn_drop,
                drop_path=drop_path[i],
            )
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor, hw: Tuple[int, int]) -> Tuple[Tensor, Tensor, Tuple[int, int]]:
        """(B, H * W, C) -> (stage output (B, H * W, C), next stage input, its (H', W'))."""
        h, w = hw
        # Rounded up without negative operands: an exported ONNX graph divides integers by
        # truncation, so -(-h // k) there rounds down (the mask then has too few windows).
        hp = (h + self.window_size - 1) // self.window_size * self.window_size
        wp = (w + self.window_size - 1) // self.window_size * self.window_size
        mask = None
        if len(self.blocks) > 1:  # only odd blocks shift
            mask = shifted_window_mask(hp, wp, self.window_size, self.shift_size, x.device)
            mask = mask.to(x.dtype)
        for blk in self.blocks:
            if self.use_checkpoint and torch.is_grad_enabled():
                # Recompute activations in the backward pass: memory for compute.
                x = torch.utils.checkpoint.checkpoint(blk, x, hw, mask, use_reentrant=False)
            else:
                x = blk(x, hw, mask)
        if self.downsample is None:
            return x, x, hw
        return x, self.downsample(x, hw), ((h + 1) // 2, (w + 1) // 2)


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> C channels (a strided conv), optionally LayerNorm-ed."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, norm: bool):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if norm else None

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W), any H, W -> (B, C, ceil(H / p), ceil(W / p))."""
        h, w = x.shape[-2:]
        p = self.patch_size
        x = self.proj(F.pad(x, (0, (p - w % p) % p, 0, (p - h % p) % p)))
        if self.norm is not None:
            x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x


@BACKBONE_REGISTRY.register()
class D2SwinTransformer(Backbone):
    """Swin Transformer returning the per-stage features `res2`..`res5` (strides 4 to 32), of
    any input size: padded internally and cropped back, `res{i + 2}` is ceil(H / 4 / 2**i) x
    ceil(W / 4 / 2**i)."""

    @configurable
    def __init__(
        self,
        *,
        in_chans: int = 3,
        pretrain_img_size: int = 224,
        patch_size: int = 4,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: Optional[float] = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.3,
        ape: bool = False,
        patch_norm: bool = True,
        out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
        use_checkpoint: bool = False,
    ):
        """
        Args:
            pretrain_img_size: image size of the pre-training; sets the grid of the absolute
                position embedding (only with `ape`, a learned absolute position embedding).
            embed_dim: C of the first stage; stage i has C * 2**i channels.
            qk_scale: attention scale; None for head_dim ** -0.5.
            drop_path_rate: stochastic depth of the last block; it grows linearly from 0.
            use_checkpoint: gradient checkpointing of every block (less memory, ~1 extra forward).
        """
        super().__init__()
        num_stages = len(depths)
        if len(num_heads) != num_stages:
            raise ValueError(
                f"MODEL.SWIN.NUM_HEADS {list(num_heads)} must have one entry per stage of "
                f"MODEL.SWIN.DEPTHS {list(depths)}"
            )
        names = [f"res{i + 2}" for i in range(num_stages)]
        unknown = [f for f in out_features if f not in names]
        if unknown:
            raise ValueError(
                f"MODEL.SWIN.OUT_FEATURES has {unknown}; this Swin has the features {names}"
            )
        self.num_features = [int(embed_dim * 2**i) for i in range(num_stages)]
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, patch_norm)
        if ape:
            grid = pretrain_img_size // patch_size
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, grid, grid))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        else:
            self.absolute_pos_embed = None
        self.pos_drop = nn.Dropout(drop_rate)

        # On the CPU whatever the default device: these are Python numbers (also when the model is
        # built on the "meta" device, to check weights against it without memory).
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.layers = nn.ModuleList(
            SwinStage(
                dim=self.num_features[i],
                depth=depths[i],
                num_heads=num_heads[i],
                window_size=window_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=dpr[sum(depths[:i]) : sum(depths[: i + 1])],
                downsample=i < num_stages - 1,
                use_checkpoint=use_checkpoint,
            )
            for i in range(num_stages)
        )
        self._out_features = [n for n in names if n in out_features]
        self._out_feature_channels = {n: self.num_features[i] for i, n in enumerate(names)}
        self._out_feature_strides = {n: patch_size * 2**i for i, n in enumerate(names)}
        self._stage_of = {n: i for i, n in enumerate(names)}
        for name in self._out_features:
            i = self._stage_of[name]
            self.add_module(f"norm{i}", nn.LayerNorm(self.num_features[i]))
        # Layers keep PyTorch's default initialisation, as in the official D2SwinTransformer:
        # the backbone starts from ImageNet weights (MODEL.WEIGHTS).

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        s = cfg.MODEL.SWIN
        return {
            "in_chans": input_shape.channels,
            "pretrain_img_size": s.PRETRAIN_IMG_SIZE,
            "patch_size": s.PATCH_SIZE,
            "embed_dim": s.EMBED_DIM,
            "depths": list(s.DEPTHS),
            "num_heads": list(s.NUM_HEADS),
            "window_size": s.WINDOW_SIZE,
            "mlp_ratio": s.MLP_RATIO,
            "qkv_bias": s.QKV_BIAS,
            "qk_scale": s.QK_SCALE,
            "drop_rate": s.DROP_RATE,
            "attn_drop_rate": s.ATTN_DROP_RATE,
            "drop_path_rate": s.DROP_PATH_RATE,
            "ape": s.APE,
            "patch_norm": s.PATCH_NORM,
            "out_features": list(s.OUT_FEATURES),
            "use_checkpoint": s.USE_CHECKPOINT,
        }

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """x: (B, C_in, H, W), any H, W. Returns {"res{i+2}": (B, C_i, H_i, W_i)}."""
        if x.dim() != 4:
            raise ValueError(f"D2SwinTransformer takes (B, C, H, W) input; got {tuple(x.shape)}")
        x = self.patch_embed(x)
        hw = (x.shape[2], x.shape[3])
        if self.absolute_pos_embed is not None:
            x = x + F.interpolate(self.absolute_pos_embed, size=hw, mode="bicubic")
        x = self.pos_drop(x.flatten(2).transpose(1, 2))

        outs: Dict[str, Tensor] = {}
        last = max(self._stage_of[n] for n in self._out_features)
        for i, stage in enumerate(self.layers[: last + 1]):
            out, x, next_hw = stage(x, hw)
            name = f"res{i + 2}"
            if name in self._out_features:
                out = getattr(self, f"norm{i}")(out)
                outs[name] = out.view(-1, *hw, out.shape[-1]).permute(0, 3, 1, 2).contiguous()
            hw = next_hw
        return outs

    @property
    def size_divisibility(self) -> int:
        # Not required (the backbone pads internally), but padding the batch to the coarsest
        # stride keeps every level aligned with the image, as the pixel decoder assumes.
        return self._out_feature_strides[f"res{len(self.layers) + 1}"]
