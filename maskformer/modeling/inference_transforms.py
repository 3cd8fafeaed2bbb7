"""Inference transforms: functions that make a built model compute the same outputs faster.

Each changes a built model in place (load its weights first: folded layers have other state-dict
keys); what each replaces and changes: docs/architecture.md#where-the-inference-transforms-plug-in.

Shapes: Q queries, K classes, L decoder layers, C and E the channels before and after the mask
projection, h x w the mask logits' size, H x W the output.
"""

from __future__ import annotations

import copy
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from torch import Tensor, nn

from ..config import ConfigValueError
from .pixel_decoder import BasePixelDecoder
from .postprocessing import (
    PostProcessing,
    instance_inference,
    kept_queries,
    masks_at_output,
    paint_segments,
    semantic_inference,
)
from .resample import MapResampler, resized_argmax
from .transformer_predictor import TransformerPredictor

__all__ = [
    "BandedPostProcessing",
    "MaskProjectionFolded",
    "fold_frozen_batchnorm",
    "fold_mask_projection",
    "optimize_for_inference",
    "check_semantic_output",
    "optimize_from_config",
]

# Elements of one band of resampled maps: 4 MB in float32, small enough to stay in cache.
BAND_ELEMENTS = 1 << 20
SEMANTIC_OUTPUTS = ("scores", "labels", "low_res_labels")


def optimize_for_inference(
    model: nn.Module,
    *,
    fold_batchnorm: bool = True,
    fold_projection: bool = True,
    channels_last: bool = True,
    banded_postprocessing: bool = True,
    semantic_output: str = "scores",
) -> nn.Module:
    """Apply the inference transforms to `model` in place (those that do not apply are skipped)
    and return it.

    Args:
        channels_last: 4-D weights in channels-last (NHWC) memory order, in which oneDNN and
            cuDNN run the ResNet's convolutions faster.
        banded_postprocessing: replace the model's `PostProcessing` by `BandedPostProcessing`
            with this `semantic_output`.
    """
    if semantic_output != "scores" and not banded_postprocessing:
        raise ValueError(
            f"semantic_output='{semantic_output}' is computed by BandedPostProcessing; "
            "banded_postprocessing=False gives the plain model's 'sem_seg' scores only"
        )
    if fold_batchnorm:
        fold_frozen_batchnorm(model)
    if fold_projection:
        fold_mask_projection(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    postprocessing = getattr(model, "postprocessing", None)
    if banded_postprocessing and isinstance(postprocessing, PostProcessing):
        model.postprocessing = BandedPostProcessing(
            **postprocessing.options(), semantic_output=semantic_output
        )
    return model


def optimize_from_config(model: nn.Module, cfg, **overrides) -> nn.Module:
    """`optimize_for_inference` as MODEL.MASK_FORMER.TEST (OPTIMIZE, SEMANTIC_OUTPUT) says;
    `overrides` take precedence. Raises `ConfigValueError` as `check_semantic_output`."""
    semantic_output = check_semantic_output(cfg)
    if not cfg.MODEL.MASK_FORMER.TEST.OPTIMIZE:
        return model
    return optimize_for_inference(model, **{"semantic_output": semantic_output, **overrides})


def check_semantic_output(cfg) -> str:
    """MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT, refused if the model cannot give it."""
    test = cfg.MODEL.MASK_FORMER.TEST
    value = test.SEMANTIC_OUTPUT
    if value not in SEMANTIC_OUTPUTS:
        raise ConfigValueError(
            f"MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT is '{value}'; expected one of "
            f"{', '.join(SEMANTIC_OUTPUTS)}"
        )
    if value != "scores" and not test.OPTIMIZE:
        raise ConfigValueError(
            f"MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT '{value}' is computed by the inference "
            "transforms; it needs MODEL.MASK_FORMER.TEST.OPTIMIZE True (it is False)"
        )
    return value


def fold_frozen_batchnorm(model: nn.Module) -> int:
    """Replace every Detectron2 `Conv2d` with a `FrozenBatchNorm2d` by one convolution:
    `conv(x, W) * s + t` is `conv(x, W * s) + t` without a second pass over every activation.
    Returns the number of layers replaced.
    """
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is Conv2d and isinstance(child.norm, FrozenBatchNorm2d):
                setattr(parent, name, _folded_conv(child))
                count += 1
    return count


def _folded_conv(conv: Conv2d) -> Conv2d:
    scale = conv.norm.weight * (conv.norm.running_var + conv.norm.eps).rsqrt()
    shift = conv.norm.bias - conv.norm.running_mean * scale
    folded = copy.deepcopy(conv)
    folded.norm = None
    with torch.no_grad():
        folded.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1))
        folded.bias = nn.Parameter(shift if conv.bias is None else conv.bias * scale + shift)
    return folded


class MaskProjectionFolded(nn.Module):
    """A `TransformerPredictor` fed with the pixel decoder's features before its last, linear
    convolution (`projection`, C -> E), folded into the mask embeddings: L*Q*C*k*k multiply-adds
    per pixel instead of E*C*k*k + L*Q*E (inference, L = 1, Q = 100 < E = 256: about 60% fewer).
    """

    def __init__(self, predictor: TransformerPredictor, projection: nn.Conv2d):
        super().__init__()
        self.predictor = predictor
        self.projection = projection

    def forward(self, x: Tensor, features: Tensor) -> Dict[str, object]:
        """As `TransformerPredictor.forward`, with `features` (B, C, H, W) the projection's
        input instead of the per-pixel embeddings."""
        hs = self.predictor.decode(x)
        masks = folded_mask_logits(self.predictor.mask_embed(hs), features, self.projection)
        return self.predictor.predictions(hs, masks)


def folded_mask_logits(mask_embed: Tensor, features: Tensor, projection: nn.Conv2d) -> Tensor:
    """(L, B, Q, H, W) mask logits einsum("lbqe,behw->lbqhw", mask_embed, projection(features))
    as one convolution per image; mask_embed (L, B, Q, E), features (B, C, H, W) the input of
    `projection`, a convolution C -> E with bias."""
    n, b, q, _ = mask_embed.shape
    c, k = projection.in_channels, projection.kernel_size
    kernels = torch.einsum("lbqe,ecij->blqcij", mask_embed, projection.weight)
    bias = torch.einsum("lbqe,e->blq", mask_embed, projection.bias)
    kernels, bias = kernels.reshape(b, n * q, c, *k), bias.reshape(b, n * q)
    # One convolution per image: folding the batch into the channels (one grouped convolution)
    # gives a (1, B * C, H, W) view whose strides oneDNN does not take for channels-last, even
    # for B = 1, so it copied the features to NCHW first (measured: 56 + 9 ms instead of 38 ms).
    geometry = (projection.stride, projection.padding, projection.dilation)
    outs = [F.conv2d(features[i : i + 1], kernels[i], bias[i], *geometry) for i in range(b)]
    out = outs[0] if b == 1 else torch.cat(outs)
    return out.view(b, n, q, *out.shape[-2:]).transpose(0, 1)


def fold_mask_projection(model: nn.Module) -> bool:
    """Move a `BasePixelDecoder`'s last convolution into `MaskProjectionFolded`, if it is plain
    (bias, no norm or activation) and folding is cheaper at inference. Returns whether it folded."""
    head = getattr(model, "sem_seg_head", None)
    decoder = getattr(head, "pixel_decoder", None)
    predictor = getattr(head, "predictor", None)
    if not (isinstance(decoder, BasePixelDecoder) and isinstance(predictor, TransformerPredictor)):
        return False
    projection = decoder.mask_features
    plain = (
        isinstance(projection, nn.Conv2d)
        and projection.bias is not None
        and getattr(projection, "norm", None) is None
        and getattr(projection, "activation", None) is None
    )
    if not plain:
        return False
    q = predictor.query_embed.num_embeddings
    c, e = projection.in_channels, projection.out_channels
    taps = projection.kernel_size[0] * projection.kernel_size[1]
    if q * c * taps >= e * c * taps + q * e:  # one decoder layer's logits at inference
        return False
    head.predictor = MaskProjectionFolded(predictor, projection)
    decoder.mask_features = nn.Identity()
    return True


class BandedPostProcessing(PostProcessing):
    """`PostProcessing` a band of output rows at a time: per band, the mask logits are resampled
    (`MapResampler`), passed through the sigmoid and combined while in cache, so the (Q, H, W)
    upsampled masks never exist. `semantic_output`: as MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT
    (docs/deployment.md); `band_elements`: at most this many resampled values in one band.
    """

    def __init__(
        self, *, semantic_output: str = "scores", band_elements: int = BAND_ELEMENTS, **options
    ):
        super().__init__(**options)
        if semantic_output not in SEMANTIC_OUTPUTS:
            raise ValueError(
                f"semantic_output is '{semantic_output}'; expected one of {SEMANTIC_OUTPUTS}"
            )
        self.semantic_output = semantic_output
        self.band_elements = band_elements

    def extra_repr(self) -> str:
        return f"semantic_output={self.semantic_output}, " + super().extra_repr()

    def forward(
        self,
        mask_cls: Tensor,
        mask_logits: Tensor,
        padded_size: Tuple[int, int],
        image_size: Tuple[int, int],
        output_size: Tuple[int, int],
        thing_ids: Optional[Sequence[int]],
    ) -> Dict[str, object]:
        to_output = MapResampler(mask_logits.shape[-2:], padded_size, image_size, output_size)
        result: Dict[str, object] = {}
        if self.semantic_on:
            result.update(self.semantic(mask_cls, mask_logits, to_output))
        if self.panoptic_on:
            result["panoptic_seg"] = panoptic_inference_banded(
                mask_cls,
                mask_logits,
                to_output,
                thing_ids or (),
                self.object_mask_threshold,
                self.overlap_threshold,
                self.band_elements,
            )
        if self.instance_on:
            # The binary masks of the detections at the output size are the result itself.
            masks = masks_at_output(mask_logits, padded_size, image_size, output_size)
            result["instances"] = instance_inference(
                mask_cls,
                masks,
                max_detections=self.detections_per_image,
                candidate_classes=thing_ids,
                score_threshold=self.instance_score_threshold,
            )
        return result

    def semantic(
        self, mask_cls: Tensor, mask_logits: Tensor, to_output: MapResampler
    ) -> Dict[str, Tensor]:
        if self.semantic_output == "low_res_labels":
            return {"sem_seg_labels": semantic_labels_low_res(mask_cls, mask_logits, to_output)}
        labels_only = self.semantic_output == "labels"
        key = "sem_seg_labels" if labels_only else "sem_seg"
        args = (mask_cls, mask_logits, to_output, self.band_elements)
        # Resizing the combined scores to the image's own size is the identity, so combining
        # at the output size is then the same computation (and labels need no (K, H, W) scores).
        same_size = tuple(to_output.output_size) == tuple(to_output.image_size)
        if self.sem_seg_postprocess_before_inference or same_size:
            return {key: semantic_inference_banded(*args, labels_only=labels_only)}
        # Combined at the image size, then the K score maps resized (the official default).
        image_size, output_size = to_output.image_size, to_output.output_size
        at_image = MapResampler(mask_logits.shape[-2:], to_output.padded_size, *[image_size] * 2)
        scores = semantic_inference_banded(mask_cls, mask_logits, at_image, self.band_elements)
        if labels_only:
            return {key: resized_argmax(scores, output_size)}
        scores = F.interpolate(scores[None], output_size, mode="bilinear", align_corners=False)
        return {key: scores[0]}


def semantic_inference_banded(
    mask_cls: Tensor,
    mask_logits: Tensor,
    resampler: MapResampler,
    band_elements: int = BAND_ELEMENTS,
    labels_only: bool = False,
) -> Tensor:
    """`semantic_inference` of the mask logits (Q, h, w) resampled by `resampler`, a band of
    rows at a time; mask_cls (Q, K + 1). Returns (K, H, W) scores, or with `labels_only` their
    (H, W) int64 argmax without the scores.
    """
    probs_t = mask_cls.softmax(-1)[:, :-1].T.contiguous()  # (K, Q)
    (q, k), (height, width) = (len(mask_logits), len(probs_t)), resampler.output_size
    if labels_only:
        out = torch.empty((height, width), dtype=torch.int64, device=mask_logits.device)
    else:
        out = mask_logits.new_empty((k, height * width))
    # Without autograd or a tracing FLOP counter, each band's scores are written in place.
    in_place = not (torch.is_grad_enabled() or torch.jit.is_tracing() or labels_only)
    rows = resampler.band_rows(max(q, k), band_elements)
    for r0, r1, band in resampler.bands(mask_logits, rows):
        probs = band.sigmoid_().view(q, -1)
        if in_place:
            torch.mm(probs_t, probs, out=out[:, r0 * width : r1 * width])
        elif labels_only:
            # (pixels, K): argmax along contiguous memory; over the leading K of (K, pixels) it
            # was a strided reduction that cost more than the product (measured 0.4 s / image
            # at 512x512, 150 classes).
            out[r0:r1] = (probs.T @ probs_t.T).argmax(1).view(r1 - r0, width)
        else:
            out[:, r0 * width : r1 * width] = probs_t @ probs
    return out if labels_only else out.view(k, height, width)


def semantic_labels_low_res(
    mask_cls: Tensor,
    mask_logits: Tensor,
    resampler: MapResampler,
    band_elements: int = BAND_ELEMENTS,
) -> Tensor:
    """(H, W) int64 labels: the (K, h, w) scores of the low-resolution masks resampled band by
    band and reduced to their argmax. An approximation: the sigmoid does not commute with the
    resize, so near class boundaries it differs from combining the upsampled masks."""
    scores = semantic_inference(mask_cls, mask_logits)  # (K, h, w)
    height, width = resampler.output_size
    labels = torch.empty((height, width), dtype=torch.int64, device=scores.device)
    for r0, r1, band in resampler.bands(scores, resampler.band_rows(len(scores), band_elements)):
        labels[r0:r1] = band.argmax(0)
    return labels


def panoptic_inference_banded(
    mask_cls: Tensor,
    mask_logits: Tensor,
    resampler: MapResampler,
    thing_ids: Sequence[int],
    object_mask_threshold: float,
    overlap_threshold: float,
    band_elements: int = BAND_ELEMENTS,
) -> Tuple[Tensor, list]:
    """`panoptic_inference` of the mask logits (Q, h, w) resampled by `resampler`, a band of
    rows at a time (only the kept queries)."""
    keep, scores, classes = kept_queries(mask_cls, object_mask_threshold)
    height, width = resampler.output_size
    if not bool(keep.any()):
        return torch.zeros((height, width), dtype=torch.int32, device=mask_logits.device), []
    logits = mask_logits[keep]
    owner = torch.empty((height, width), dtype=torch.int64, device=logits.device)
    original_area = torch.zeros(len(classes), dtype=torch.int64, device=logits.device)
    weights = scores.view(-1, 1, 1)
    for r0, r1, band in resampler.bands(logits, resampler.band_rows(len(classes), band_elements)):
        probs = band.sigmoid_()
        original_area += (probs >= 0.5).flatten(1).sum(1)
        owner[r0:r1] = (probs * weights).argmax(0)
    return paint_segments(owner, original_area, classes, thing_ids, overlap_threshold)
