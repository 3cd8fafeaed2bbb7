"""Sliding-window semantic inference: a built model run on overlapping windows of each image, its
class scores averaged where windows overlap (mmsegmentation's "slide" test mode). The grid, the
averaging, the output size and the memory: docs/sliding_window.md#what-is-computed.

Shapes: K classes, C image channels, H x W the image (after the test resize), h x w a window (the
window size, or the image's where that is smaller), Ho x Wo the output.
"""

from __future__ import annotations

from typing import Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ConfigValueError
from .inference_transforms import BAND_ELEMENTS
from .resample import MapResampler, bilinear_taps, chain_taps

__all__ = [
    "SlidingWindowInference",
    "WindowGrid",
    "averaged_rows",
    "check_sliding_window",
    "coverage",
    "resized_labels",
    "sliding_window_from_config",
    "window_grid",
    "window_starts",
]

# What the wrapper can give; "low_res_labels" combines one image's low-resolution masks, which
# windows do not have.
SEMANTIC_OUTPUTS = ("scores", "labels")
_KEY = "MODEL.MASK_FORMER.TEST.SLIDING_WINDOW"

Size = Tuple[int, int]


def window_starts(length: int, window: int, stride: int) -> List[int]:
    """Offsets of the windows along one dimension: `stride` apart from 0, the last one moved
    back to end at `length` (0 alone if `window` >= `length`), strictly increasing."""
    if window < 1 or not 1 <= stride <= window:
        raise ValueError(f"window {window} and stride {stride}: expected 1 <= stride <= window")
    last = max(length - window, 0)
    return [min(i * stride, last) for i in range(-(-last // stride) + 1)]


class WindowGrid(NamedTuple):
    """The windows of one image: every (row, col) start pair, each window `size` (h, w)."""

    rows: List[int]
    cols: List[int]
    size: Size


def window_grid(image_size: Size, window_size: Size, stride: Size) -> WindowGrid:
    """The windows covering an (H, W) image: `window_starts` along each dimension, a window
    being `window_size` or, along a dimension where the image is shorter, the image's size."""
    size = (min(window_size[0], image_size[0]), min(window_size[1], image_size[1]))
    rows = window_starts(image_size[0], window_size[0], stride[0])
    cols = window_starts(image_size[1], window_size[1], stride[1])
    return WindowGrid(rows, cols, size)


def coverage(length: int, starts: Sequence[int], window: int) -> Tensor:
    """(length,) float32: the number of windows `window` long starting at `starts` that cover
    each position. Windows form a grid, so pixel (y, x) is covered rows[y] * cols[x] times."""
    count = torch.zeros(length)
    for s in starts:
        count[s : s + window] += 1
    return count


def averaged_rows(
    window_scores: Iterable[Tuple[int, int, Tensor]], grid: WindowGrid, image_size: Size
) -> Iterator[Tuple[int, Tensor]]:
    """The average of the (y, x, (K, h, w) scores) of every window of `grid` (row-major), as
    (r0, (K, r1 - r0, W) averaged scores of image rows r0:r1), consecutive from row 0 to H, each
    band as soon as no later window covers it (a new tensor: drop it before asking for the next).
    Sums are held in one (K, h, W) strip of the current window-row."""
    height, width = image_size
    h, w = grid.size
    row_count = coverage(height, grid.rows, h)
    col_count = coverage(width, grid.cols, w)
    windows = iter(window_scores)
    strip: Optional[Tensor] = None  # sums of image rows y : y + h
    for i, y in enumerate(grid.rows):
        for expected in grid.cols:
            wy, x, scores = next(windows)
            if (wy, x) != (y, expected):
                raise ValueError(f"window ({wy}, {x}) out of order; expected ({y}, {expected})")
            if strip is None:
                strip = scores.new_zeros((scores.shape[0], h, width))
            strip[:, :, x : x + w] += scores
        # Later window-rows start at the next row start: the rows above it are final.
        end = grid.rows[i + 1] if i + 1 < len(grid.rows) else height
        counts = (row_count[y:end, None] * col_count).to(strip)
        if end == height:  # the last window-row: the strip itself becomes the last band
            yield y, strip.div_(counts)
            return
        yield y, strip[:, : end - y] / counts
        # The rows below `end` carry their sums to the next window-row's strip.
        carried = strip[:, end - y :].clone()
        strip[:, : carried.shape[1]] = carried
        strip[:, carried.shape[1] :] = 0
        del carried


def _resize_row_taps(height: int, out_height: int) -> Tuple[Tensor, Tensor]:
    # The rows of `resized_argmax`'s resampler (no padding, no crop: the identity taps, chained
    # with the resize), so that its labels come out bit for bit.
    taps = bilinear_taps(height, height)
    return taps if out_height == height else chain_taps(taps, bilinear_taps(height, out_height))


def resized_labels(
    bands: Iterable[Tuple[int, Tensor]],
    image_size: Size,
    output_size: Size,
    band_elements: int = BAND_ELEMENTS,
) -> Tensor:
    """(Ho, Wo) int64 labels of (K, H, W) scores given as `averaged_rows`' bands: bit for bit
    `resized_argmax(scores, output_size)`, holding only the rows an output row still needs;
    at most `band_elements` resized scores at a time."""
    height, width = image_size
    out_h, out_w = output_size
    labels: Optional[Tensor] = None
    if (out_h, out_w) == (height, width):
        for r0, band in bands:
            if labels is None:
                labels = torch.empty((height, width), dtype=torch.int64, device=band.device)
            labels[r0 : r0 + band.shape[1]] = band.argmax(0)
            del band  # before the next band is computed
        return labels
    columns = MapResampler(image_size, image_size, image_size, output_size).columns
    idx, weights = _resize_row_taps(height, out_h)  # (Ho, T); rows non-decreasing in Ho
    last_needed = idx.max(1).values
    buffer: Optional[Tensor] = None  # scores of rows b0 : b0 + buffer.shape[1]
    b0 = done = 0
    for r0, band in bands:
        if labels is None:
            labels = torch.empty((out_h, out_w), dtype=torch.int64, device=band.device)
            idx, weights = idx.to(band.device), weights.to(band.device, band.dtype)
            last_needed = last_needed.to(band.device)
        buffer = band if buffer is None else torch.cat([buffer, band], 1)
        end = r0 + band.shape[1]
        ready = int((last_needed < end).sum())  # output rows whose taps have all arrived
        step = max(1, band_elements // max(1, band.shape[0] * out_w))
        for o0 in range(done, ready, step):
            o1 = min(o0 + step, ready)
            i, wt = idx[o0:o1] - b0, weights[o0:o1]
            rows = buffer.index_select(1, i[:, 0]) * wt[:, 0].view(1, -1, 1)
            for t in range(1, i.shape[1]):
                rows.addcmul_(buffer.index_select(1, i[:, t]), wt[:, t].view(1, -1, 1))
            labels[o0:o1] = columns(rows).argmax(0)
        done = ready
        if done < out_h:  # rows above the next output row's first tap are no longer needed
            keep = min(int(idx[done].min()), end)  # (rows not received yet: at the next band)
            buffer, b0 = buffer[:, keep - b0 :].clone(), keep  # a copy: the band can go
        del band
    return labels


class SlidingWindowInference(nn.Module):
    """Wraps a semantic segmentation model; same call interface and output keys, outputs averaged
    over overlapping windows of each image."""

    def __init__(
        self,
        model: nn.Module,
        *,
        window_size: Size,
        stride: Size,
        windows_per_batch: int = 1,
        semantic_output: str = "scores",
    ):
        """
        Args:
            model: inputs [{"image", "height", "width"}] -> [{"sem_seg": (K, height, width)}].
            stride: (rows, cols) between window starts, each from 1 to the window's.
            semantic_output: "scores" ("sem_seg" (K, Ho, Wo)) or "labels" ("sem_seg_labels"
                (Ho, Wo) int64, their argmax).
        """
        super().__init__()
        if (
            len(window_size) != 2
            or len(stride) != 2
            or not all(1 <= int(s) <= int(w) for s, w in zip(stride, window_size))
        ):
            raise ValueError(
                f"window_size {tuple(window_size)} and stride {tuple(stride)}: expected (h, w) "
                "pairs with 1 <= stride <= window_size"
            )
        if windows_per_batch < 1:
            raise ValueError(f"windows_per_batch must be at least 1, got {windows_per_batch}")
        if semantic_output not in SEMANTIC_OUTPUTS:
            raise ValueError(
                f"semantic_output is '{semantic_output}'; expected one of {SEMANTIC_OUTPUTS}"
            )
        self.model = model
        self.window_size = tuple(int(x) for x in window_size)
        self.stride = tuple(int(x) for x in stride)
        self.windows_per_batch = windows_per_batch
        self.semantic_output = semantic_output
        self.train(model.training)  # so that evaluation restores the model's own mode

    def extra_repr(self) -> str:
        return (
            f"window_size={self.window_size}, stride={self.stride}, "
            f"windows_per_batch={self.windows_per_batch}, semantic_output={self.semantic_output}"
        )

    def forward(self, batched_inputs: List[Dict]) -> List[Dict[str, Tensor]]:
        return [self.predict_one(x) for x in batched_inputs]

    @torch.no_grad()
    def predict_one(self, inputs: Dict) -> Dict[str, Tensor]:
        """One input dict ("image" (C, H, W), optional "height", "width": the output size) ->
        {"sem_seg": (K, Ho, Wo)} or {"sem_seg_labels": (Ho, Wo)}."""
        if "image" not in inputs:
            raise KeyError(
                "SlidingWindowInference needs the loaded 'image' in each input dict (the output "
                f"of Detectron2's test DatasetMapper); got keys {sorted(inputs)}"
            )
        image = inputs["image"]
        image_size = tuple(image.shape[-2:])
        output_size = (inputs.get("height", image_size[0]), inputs.get("width", image_size[1]))
        grid = window_grid(image_size, self.window_size, self.stride)
        bands = averaged_rows(self.window_scores(image, grid), grid, image_size)
        if self.semantic_output == "labels":
            return {"sem_seg_labels": resized_labels(bands, image_size, output_size)}
        scores: Optional[Tensor] = None
        for r0, band in bands:
            if scores is None:
                scores = band.new_empty((band.shape[0], *image_size))
            scores[:, r0 : r0 + band.shape[1]] = band
            del band  # before the next band is computed
        if tuple(output_size) != image_size:  # as the plain model resizes its scores
            scores = F.interpolate(scores[None], output_size, mode="bilinear", align_corners=False)
            scores = scores[0]
        return {"sem_seg": scores}

    def window_scores(self, image: Tensor, grid: WindowGrid) -> Iterator[Tuple[int, int, Tensor]]:
        """(y, x, (K, h, w) scores) of every window of `grid`, row by row, the model run on
        `windows_per_batch` windows at a time."""
        h, w = grid.size
        corners = [(y, x) for y in grid.rows for x in grid.cols]
        for start in range(0, len(corners), self.windows_per_batch):
            batch = corners[start : start + self.windows_per_batch]
            inputs = [
                {"image": image[:, y : y + h, x : x + w], "height": h, "width": w} for y, x in batch
            ]
            for (y, x), output in zip(batch, self.model(inputs)):
                if "sem_seg" not in output:
                    raise KeyError(
                        "sliding-window inference averages the windows' 'sem_seg' scores; the "
                        f"model gave {sorted(output)} (build it with semantic output 'scores')"
                    )
                yield y, x, output["sem_seg"].float()


def check_sliding_window(cfg) -> Optional[Tuple[Size, Size]]:
    """MODEL.MASK_FORMER.TEST.SLIDING_WINDOW's (SIZE, STRIDE), or None if SIZE is [] (off);
    raises `ConfigValueError` for invalid keys or outputs windows cannot give."""
    test = cfg.MODEL.MASK_FORMER.TEST
    size, stride = list(test.SLIDING_WINDOW.SIZE), list(test.SLIDING_WINDOW.STRIDE)
    if not size:
        if stride:
            raise ConfigValueError(
                f"{_KEY}.STRIDE is {stride} but {_KEY}.SIZE is [] (sliding window off); set "
                "SIZE [h, w] too, or STRIDE []"
            )
        return None

    def pair(v) -> bool:
        return len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in v)

    if not pair(size) or min(size) < 1:
        raise ConfigValueError(
            f"{_KEY}.SIZE is {size}; expected [h, w], two positive integers (the window), or [] "
            "(off)"
        )
    if not pair(stride) or not all(1 <= s <= w for s, w in zip(stride, size)):
        suggested = [max(1, round(x * 2 / 3)) for x in size]
        raise ConfigValueError(
            f"{_KEY}.STRIDE is {stride}; expected [h, w] between window starts, each from 1 to "
            f"the window's {size} (e.g. 2/3 of it: {suggested})"
        )
    on = [k for k in ("PANOPTIC_ON", "INSTANCE_ON") if test[k]]
    if on:
        flags = " and ".join(f"MODEL.MASK_FORMER.TEST.{k}" for k in on)
        raise ConfigValueError(
            f"{_KEY}.SIZE {size} averages semantic scores over windows; panoptic and instance "
            f"outputs cannot be merged across windows: set {flags} False, or SIZE [] (off)"
        )
    if test.SEMANTIC_OUTPUT == "low_res_labels":
        raise ConfigValueError(
            f"{_KEY}.SIZE {size} averages the windows' scores; MODEL.MASK_FORMER.TEST."
            "SEMANTIC_OUTPUT 'low_res_labels' has none: set it to 'labels' (exact, and the "
            "windows bound its memory) or 'scores'"
        )
    return (size[0], size[1]), (stride[0], stride[1])


def sliding_window_from_config(model: nn.Module, cfg, *, semantic_output: str) -> nn.Module:
    """`model` in a `SlidingWindowInference` as MODEL.MASK_FORMER.TEST.SLIDING_WINDOW says, with
    TEST.IMS_PER_BATCH windows per call; `model` itself if SIZE is [] or it already is one.
    `model` must give "sem_seg" scores. Raises `ConfigValueError` as `check_sliding_window`."""
    options = check_sliding_window(cfg)
    if options is None or isinstance(model, SlidingWindowInference):
        return model
    window_size, stride = options
    return SlidingWindowInference(
        model,
        window_size=window_size,
        stride=stride,
        windows_per_batch=cfg.TEST.IMS_PER_BATCH,
        semantic_output=semantic_output,
    )
