"""Inference transforms: functions that make a built model compute the same outputs faster.

The model's own code is the plain computation (the paper's, in the official implementation's
order). Each transform here takes a built model, changes it in place and says what it changes:

- `fold_frozen_batchnorm`: float rounding only (conv + frozen norm become one convolution).
- `fold_mask_projection`: float rounding only (the pixel decoder's last convolution is folded
  into the mask embeddings).
- `to_channels_last`: float rounding only (convolution weights in NHWC memory order).
- `BandedPostProcessing`: outputs computed a band of rows at a time, without (Q, H, W) or
  (K, H, W) intermediates. `semantic_output="scores"`: float rounding only; "labels": the
  output, "sem_seg_labels" (H, W) instead of "sem_seg" (K, H, W), labels equal to the scores'
  argmax; "low_res_labels": an approximation (opt-in only), labels combined at the mask
  resolution and then resized.

`optimize_for_inference(model)` applies the exact ones (all but the approximation) and returns
the model; `optimize_from_config(model, cfg)` does as MODEL.MASK_FORMER.TEST.OPTIMIZE,
SEM_SEG_LABELS_ONLY and SEM_SEG_LOW_RES_LABELS say. Transform a model after loading its
weights: folded layers have other state-dict keys, so a transformed model's state dict is not a
checkpoint. Tests keep every transform equal to the plain model
(tests/modeling/test_inference_transforms.py).

Shapes: Q queries, K classes, L decoder layers, C and E the channels before and after the mask
projection, h x w the mask logits' size, H x W the output.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from torch import Tensor, nn

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
    "optimize_from_config",
    "to_channels_last",
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
    """Apply the inference transforms to `model` (in place) and return it.

    Args:
        model: a MaskFormer, or any model (the transforms that do not apply are skipped).
        fold_batchnorm: `fold_frozen_batchnorm`.
        fold_projection: `fold_mask_projection`.
        channels_last: `to_channels_last`.
        banded_postprocessing: replace the model's `PostProcessing` by `BandedPostProcessing`.
        semantic_output: the semantic output of `BandedPostProcessing`: "scores" ("sem_seg"),
            "labels" ("sem_seg_labels", exact), "low_res_labels" ("sem_seg_labels",
            approximate).
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
        to_channels_last(model)
    postprocessing = getattr(model, "postprocessing", None)
    if banded_postprocessing and isinstance(postprocessing, PostProcessing):
        model.postprocessing = BandedPostProcessing(
            **postprocessing.options(), semantic_output=semantic_output
        )
    return model


def optimize_from_config(model: nn.Module, cfg, **overrides) -> nn.Module:
    """`optimize_for_inference` as the config says: nothing if MODEL.MASK_FORMER.TEST.OPTIMIZE
    is False; else every exact transform, with "sem_seg_labels" instead of "sem_seg" if
    TEST.SEM_SEG_LABELS_ONLY (exact) or TEST.SEM_SEG_LOW_RES_LABELS (approximate).

    Args:
        overrides: `optimize_for_inference` arguments that take precedence over the config's.
    """
    test = cfg.MODEL.MASK_FORMER.TEST
    semantic_output = "scores"
    if test.SEM_SEG_LOW_RES_LABELS:
        semantic_output = "low_res_labels"
    elif test.SEM_SEG_LABELS_ONLY:
        semantic_output = "labels"
    if not test.OPTIMIZE:
        if semantic_output != "scores":
            raise ValueError(
                "MODEL.MASK_FORMER.TEST.SEM_SEG_LABELS_ONLY / SEM_SEG_LOW_RES_LABELS are inference "
                "transforms; they need MODEL.MASK_FORMER.TEST.OPTIMIZE True (it is False)"
            )
        return model
    return optimize_for_inference(model, **{"semantic_output": semantic_output, **overrides})


# Frozen batch norm -----------------------------------------------------------------------------


def fold_frozen_batchnorm(model: nn.Module) -> int:
    """Replace every Detectron2 `Conv2d` with a `FrozenBatchNorm2d` by one convolution.

    Such a layer computes `conv(x, W) * s + t` with a fixed per-channel scale s and shift t: a
    second pass over every activation. `conv(x, W * s) + t` is the same function in one pass.
    Changes float rounding only. Returns the number of layers replaced.
    """
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is Conv2d and isinstance(child.norm, FrozenBatchNorm2d):
                setattr(parent, name, _folded_conv(child))
                count += 1
    return count


def _folded_conv(conv: Conv2d) -> Conv2d:
    norm = conv.norm
    scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
    shift = norm.bias - norm.running_mean * scale
    folded = Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        activation=conv.activation,
    )
    with torch.no_grad():
        folded.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1))
        bias = shift if conv.bias is None else conv.bias * scale + shift
        folded.bias = nn.Parameter(bias.to(conv.weight.dtype))
    return folded


# Mask projection -------------------------------------------------------------------------------


class MaskProjectionFolded(nn.Module):
    """A `TransformerPredictor` whose mask logits are computed from the pixel decoder's features
    before its last convolution (`projection`, C -> E), with that convolution folded into the
    mask embeddings.

    The projection is linear, so the dot products of the mask embeddings with its output can go
    inside it: one convolution of the features with L*Q kernels `sum_e embed[e] * W[e]` (and
    biases `embed . b`) gives the same logits. That costs L*Q*C*k*k per pixel instead of
    E*C*k*k + L*Q*E: at inference (L = 1, Q = 100 < E = 256) about 60% fewer multiply-adds for
    the last pixel-decoder convolution and the product together. Float rounding only.
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
    """einsum("lbqe,behw->lbqhw", mask_embed, projection(features)) as one grouped convolution.

    Args:
        mask_embed: (L, B, Q, E) mask embeddings.
        features: (B, C, H, W) the input of `projection`, a convolution C -> E with bias.
    Returns:
        (L, B, Q, H, W) mask logits.
    """
    n, b, q, _ = mask_embed.shape
    c, k = projection.in_channels, projection.kernel_size
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


def fold_mask_projection(model: nn.Module) -> bool:
    """Make `model.sem_seg_head` compute its mask logits with `MaskProjectionFolded`, when the
    head is a `BasePixelDecoder` (or subclass) + `TransformerPredictor` pair, the decoder's last
    convolution is plain (bias, no norm or activation) and folding is cheaper at inference.

    The convolution moves from the pixel decoder (whose `mask_features` becomes an identity, so
    that it returns the convolution's input) to the predictor. Returns whether it folded.
    """
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


# Memory order ----------------------------------------------------------------------------------


def to_channels_last(model: nn.Module) -> nn.Module:
    """Convolution weights (every 4-D parameter and buffer) in channels-last (NHWC) memory order.

    Convolutions with channels-last weights run in that order (oneDNN on the CPU, cuDNN), which
    is faster for the ResNet's; linear layers are untouched. Float rounding only.
    """
    return model.to(memory_format=torch.channels_last)


# Band-wise post-processing ---------------------------------------------------------------------


class BandedPostProcessing(PostProcessing):
    """`PostProcessing` computed a band of output rows at a time: per band, the mask logits are
    resampled (`MapResampler`, the official upsample-crop-resize chain), passed through the
    sigmoid and combined while in cache; the (Q, H, W) upsampled masks never exist, and with
    labels-only output neither do (K, H, W) scores.

    Semantic output (`semantic_output`):
        "scores": "sem_seg" (K, H, W), equal to the plain model's up to float rounding.
        "labels": only "sem_seg_labels" (H, W) int64, the argmax of those scores.
        "low_res_labels": only "sem_seg_labels", combined at the mask resolution and then
            resized (`semantic_labels_low_res`): an approximation for outputs too large for
            (K, H, W) scores, which differs from the exact labels near class boundaries.
    Panoptic output is the plain model's; instance output is the plain model's computation.
    """

    def __init__(
        self, *, semantic_output: str = "scores", band_elements: int = BAND_ELEMENTS, **options
    ):
        """
        Args:
            semantic_output: "scores", "labels" or "low_res_labels" (class docstring).
            band_elements: at most this many resampled values in one band.
            options: `PostProcessing`'s.
        """
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
        """As `PostProcessing.forward`; "sem_seg_labels" instead of "sem_seg" unless
        `semantic_output` is "scores"."""
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
        """{"sem_seg": (K, H, W)} or {"sem_seg_labels": (H, W)} of one image."""
        labels = self.semantic_output != "scores"
        if self.semantic_output == "low_res_labels":
            return {"sem_seg_labels": semantic_labels_low_res(mask_cls, mask_logits, to_output)}
        if self.sem_seg_postprocess_before_inference:
            if labels:
                return {
                    "sem_seg_labels": semantic_labels_banded(
                        mask_cls, mask_logits, to_output, self.band_elements
                    )
                }
            return {
                "sem_seg": semantic_inference_banded(
                    mask_cls, mask_logits, to_output, self.band_elements
                )
            }
        # Combined at the image size, then the K score maps resized (the official default).
        image_size, output_size = to_output.image_size, to_output.output_size
        at_image = MapResampler(
            mask_logits.shape[-2:], to_output.padded_size, image_size, image_size
        )
        scores = semantic_inference_banded(mask_cls, mask_logits, at_image, self.band_elements)
        if labels:
            return {"sem_seg_labels": resized_argmax(scores, output_size)}
        if tuple(output_size) != tuple(image_size):
            scores = F.interpolate(
                scores[None], size=output_size, mode="bilinear", align_corners=False
            )[0]
        return {"sem_seg": scores}


def semantic_inference_banded(
    mask_cls: Tensor,
    mask_logits: Tensor,
    resampler: MapResampler,
    band_elements: int = BAND_ELEMENTS,
) -> Tensor:
    """`semantic_inference` of the mask logits resampled by `resampler`, one band of rows at a
    time.

    Args:
        mask_cls: (Q, K + 1) class logits.
        mask_logits: (Q, h, w) low-resolution mask logits.
        resampler: their geometry to the output (H, W).
        band_elements: at most this many resampled mask values at a time.
    Returns:
        (K, H, W) scores, equal to `semantic_inference(mask_cls, resampled logits)` up to float
        rounding.
    """
    probs_t = mask_cls.softmax(-1)[:, :-1].T.contiguous()  # (K, Q)
    q = mask_logits.shape[0]
    height, width = resampler.output_size
    out = mask_logits.new_empty((probs_t.shape[0], height * width))
    # Without autograd each band's product is written in place (mm's out= has no gradient, and
    # FLOP counters tracing the model do not know it).
    needs_grad = torch.is_grad_enabled() and (mask_cls.requires_grad or mask_logits.requires_grad)
    in_place = not (needs_grad or torch.jit.is_tracing())
    for r0, r1, band in resampler.bands(mask_logits, resampler.band_rows(q, band_elements)):
        probs = band.sigmoid_().view(q, -1)
        if in_place:
            torch.mm(probs_t, probs, out=out[:, r0 * width : r1 * width])
        else:
            out[:, r0 * width : r1 * width] = probs_t @ probs
    return out.view(-1, height, width)


def semantic_labels_banded(
    mask_cls: Tensor,
    mask_logits: Tensor,
    resampler: MapResampler,
    band_elements: int = BAND_ELEMENTS,
) -> Tensor:
    """(H, W) int64 argmax over K of `semantic_inference_banded`, without its (K, H, W) result:
    each band's scores are reduced to labels at once."""
    probs_t = mask_cls.softmax(-1)[:, :-1].T.contiguous()  # (K, Q)
    q, k = mask_logits.shape[0], probs_t.shape[0]
    height, width = resampler.output_size
    labels = torch.empty((height, width), dtype=torch.int64, device=mask_logits.device)
    rows = resampler.band_rows(max(q, k), band_elements)
    for r0, r1, band in resampler.bands(mask_logits, rows):
        scores = probs_t @ band.sigmoid_().view(q, -1)
        labels[r0:r1] = scores.view(k, r1 - r0, width).argmax(0)
    return labels


def semantic_labels_low_res(
    mask_cls: Tensor,
    mask_logits: Tensor,
    resampler: MapResampler,
    band_elements: int = BAND_ELEMENTS,
) -> Tensor:
    """Semantic labels for very large outputs: combine at the mask resolution, then resize.

    The class scores are combined from the low-resolution masks (`semantic_inference` at
    h x w), then resampled to the output band by band and reduced to their argmax, so memory is
    O(K * h * w + H * W + band_elements) whatever K and H x W are. The exact computation
    combines the masks after upsampling them; as the sigmoid does not commute with the resize,
    the two differ near class boundaries (an approximation).

    Args:
        mask_cls: (Q, K + 1) class logits.
        mask_logits: (Q, h, w) low-resolution mask logits.
        resampler: their geometry to the output (H, W).
        band_elements: at most this many resampled score values at a time.
    Returns:
        (H, W) int64 labels.
    """
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
    """`panoptic_inference` of the mask logits resampled by `resampler`, one band of rows at a
    time (only the kept queries are resampled); same arguments and result, except `mask_logits`
    (Q, h, w) at low resolution."""
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
