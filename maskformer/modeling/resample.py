"""Bilinear resampling of low-resolution maps to the output grid, one band of rows at a time, so
that consumers reducing over channels never hold a (C, H, W) tensor at the output resolution.

Rows go through "taps" (output row i is `sum_t w[i, t] * x[idx[i, t]]`, the upsample-crop-resize
chain folded into one table), columns through `F.interpolate` on the band.

Shapes: C channels (queries or classes), h x w the low resolution, H x W the output.
"""

from __future__ import annotations

from typing import Iterator, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["MapResampler", "bilinear_taps", "chain_taps", "nearest_resize", "resized_argmax"]

Taps = Tuple[Tensor, Tensor]  # (n_out, T) int64 source indices, (n_out, T) float32 weights


def bilinear_taps(in_size: int, out_size: int) -> Taps:
    """(out_size, 2) indices and weights of 1-D `F.interpolate(mode="bilinear",
    align_corners=False)`: output i reads input `(i + 0.5) * in_size / out_size - 0.5`, clamped
    at 0, between its two neighbours."""
    dst = torch.arange(out_size)
    if in_size == out_size:
        return torch.stack([dst, dst], 1), torch.tensor([[1.0, 0.0]]).expand(out_size, 2)
    # float32 throughout, as PyTorch computes the source position for float inputs.
    scale = torch.tensor(float(in_size), dtype=torch.float32) / out_size
    src = ((dst.float() + 0.5) * scale - 0.5).clamp(min=0)
    i0 = src.long()
    i1 = torch.where(i0 < in_size - 1, i0 + 1, i0)
    l1 = (src - i0).clamp(0, 1)
    return torch.stack([i0, i1], 1), torch.stack([1 - l1, l1], 1)


def chain_taps(first: Taps, second: Taps) -> Taps:
    """Taps of applying `first`, then `second` (whose indices address `first`'s outputs)."""
    idx1, w1 = first
    idx2, w2 = second
    idx = idx1[idx2]  # (n_out, T2, T1)
    w = w2[..., None] * w1[idx2]
    return idx.flatten(1), w.flatten(1)


class MapResampler:
    """The official inference-time geometry of mask logits, as a band-by-band computation: (h, w)
    maps upsampled to the padded batch size, cropped to the image size and, if the output size
    differs, resized to it (bilinear, align_corners=False)."""

    def __init__(
        self,
        low_size: Tuple[int, int],
        padded_size: Tuple[int, int],
        image_size: Tuple[int, int],
        output_size: Tuple[int, int],
    ):
        """`image_size`: the image's region of `padded_size`, from the top left."""
        self.padded_size = tuple(int(s) for s in padded_size)
        self.image_size = tuple(int(s) for s in image_size)
        self.output_size = tuple(int(s) for s in output_size)
        rows = bilinear_taps(low_size[0], self.padded_size[0])
        rows = (rows[0][: self.image_size[0]], rows[1][: self.image_size[0]])
        if self.output_size[0] != self.image_size[0]:
            rows = chain_taps(rows, bilinear_taps(self.image_size[0], self.output_size[0]))
        self._row_taps = rows

    def columns(self, band: Tensor) -> Tensor:
        """(C, r, w) -> (C, r, W): the column half of the geometry (rows are left as they are)."""
        r = band.shape[1]
        x = F.interpolate(band[None], size=(r, self.padded_size[1]), mode="bilinear")[0]
        x = x[..., : self.image_size[1]]
        if self.output_size[1] != self.image_size[1]:
            return F.interpolate(x[None], size=(r, self.output_size[1]), mode="bilinear")[0]
        return x.contiguous()

    def band_rows(self, channels: int, max_elements: int) -> int:
        """Rows per band so that a (C, rows, W) band holds at most `max_elements` (at least 1)."""
        return max(1, max_elements // max(1, channels * self.output_size[1]))

    def bands(self, x: Tensor, rows: int) -> Iterator[Tuple[int, int, Tensor]]:
        """Yield (r0, r1, band): rows r0:r1 of the resampled (C, H, W) maps of x (C, h, w), as a
        new tensor, `rows` rows per band."""
        # Rows are gathered band by band: index_select on a channels-last (strided) x would
        # copy all of x for every band.
        x = x.contiguous()
        idx, w = (t.to(x.device) for t in self._row_taps)
        w = w.to(x.dtype)
        height = self.output_size[0]
        for r0 in range(0, height, rows):
            r1 = min(r0 + rows, height)
            i, wt = idx[r0:r1], w[r0:r1]
            band = x.index_select(1, i[:, 0]) * wt[:, 0].view(1, -1, 1)
            for t in range(1, i.shape[1]):
                band.addcmul_(x.index_select(1, i[:, t]), wt[:, t].view(1, -1, 1))
            yield r0, r1, self.columns(band)


def resized_argmax(
    scores: Tensor, size: Tuple[int, int], max_chunk_bytes: int = 64 << 20
) -> Tensor:
    """(H, W) int64 `F.interpolate(scores[None], size, mode="bilinear").argmax(1)[0]` of (K, h, w)
    scores, a band of at most `max_chunk_bytes` resized scores at a time (never all of them)."""
    low = tuple(scores.shape[-2:])
    # No padding and no crop: the resampler's geometry reduces to the one resize.
    resampler = MapResampler(low, low, low, size)
    rows = resampler.band_rows(scores.shape[0], max_chunk_bytes // scores.element_size())
    labels = torch.empty(tuple(size), dtype=torch.int64, device=scores.device)
    for r0, r1, band in resampler.bands(scores, rows):
        labels[r0:r1] = band.argmax(0)
    return labels


def _nearest_indices(in_size: int, out_size: int, device) -> Tensor:
    """Source index of each output index for a centred nearest-neighbour resize (as PIL's and
    OpenCV's INTER_NEAREST_EXACT): floor((dst + 0.5) * in / out)."""
    src = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * (in_size / out_size)).floor()
    return src.long().clamp(max=in_size - 1).to(device)


def nearest_resize(x: Tensor, size: Tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of the last two dimensions of `x` (any dtype) to `size`."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    rows = _nearest_indices(x.shape[-2], size[0], x.device)
    cols = _nearest_indices(x.shape[-1], size[1], x.device)
    return x[..., rows, :][..., cols]
