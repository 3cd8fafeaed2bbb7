"""From Q (class, mask) pairs to semantic, panoptic and instance outputs (paper Sec. 3.4).

Pure functions of one image's predictions. Shapes: Q queries, K classes (the K + 1-th logit is
"no object"), H x W the mask size (the output size for the `*_banded` variants, which take the
low-resolution mask logits and a `MapResampler` and never hold (Q, H, W) or (K, H, W)
intermediates), D detections.
"""

from __future__ import annotations

from typing import Collection, Dict, List, Optional, Tuple

import torch
from detectron2.structures import Boxes, Instances
from torch import Tensor

from .resample import MapResampler

__all__ = [
    "SemSegLabels",
    "instance_inference",
    "mask_boxes",
    "panoptic_inference",
    "panoptic_inference_banded",
    "semantic_inference",
    "semantic_inference_banded",
    "semantic_labels_low_res",
]

# Elements of one band of resampled maps: 4 MB in float32, small enough to stay in cache.
BAND_ELEMENTS = 1 << 20


def semantic_inference(mask_cls: Tensor, mask_pred: Tensor) -> Tensor:
    """Per-class score map: `sum_q p_q(c) * sigmoid(m_q)`.

    Args:
        mask_cls: (Q, K + 1) class logits.
        mask_pred: (Q, H, W) mask logits.
    Returns:
        (K, H, W) scores (not normalised; argmax over K gives the label map).
    """
    probs = mask_cls.softmax(-1)[:, :-1]
    masks = mask_pred.sigmoid()
    q, h, w = masks.shape
    # A (K, Q) x (Q, HW) matrix product; the same as einsum("qc,qhw->chw") without its overhead.
    return (probs.T @ masks.reshape(q, h * w)).reshape(-1, h, w)


def semantic_inference_banded(
    mask_cls: Tensor,
    mask_logits: Tensor,
    resampler: MapResampler,
    band_elements: int = BAND_ELEMENTS,
) -> Tensor:
    """`semantic_inference` of the mask logits resampled by `resampler`, one band of rows at a
    time: per band, resample, sigmoid and combine while the band is in cache; the (Q, H, W)
    upsampled masks never exist.

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


class SemSegLabels:
    """The "sem_seg" output of low-resolution semantic inference (`semantic_labels_low_res`).

    Stands for (K, H, W) scores that are never built, by their per-pixel maximum. Detectron2's
    SemSegEvaluator, demo and Visualizer use "sem_seg" only through `sem_seg.argmax(dim=0)`, which
    this answers with the label map; code that needs the scores themselves (test-time
    augmentation, saving probabilities) needs the default inference instead.

    Attributes:
        labels: (H, W) int64, the argmax over the K classes.
        scores: (H, W) float, the maximum over the K classes.
        num_classes: K.
    """

    def __init__(self, labels: Tensor, scores: Tensor, num_classes: int):
        self.labels = labels
        self.scores = scores
        self.num_classes = num_classes

    @property
    def shape(self) -> Tuple[int, int, int]:
        """(K, H, W), the shape of the scores this stands for."""
        return (self.num_classes, *self.labels.shape)

    @property
    def device(self) -> torch.device:
        return self.labels.device

    def argmax(self, dim: int = 0) -> Tensor:
        if dim not in (0, -3):
            raise ValueError(f"SemSegLabels holds the argmax over classes (dim 0) only; got {dim}")
        return self.labels

    def to(self, *args, **kwargs) -> SemSegLabels:
        """Moves both maps (tensor.to arguments; a dtype applies to `scores` only)."""
        return SemSegLabels(
            self.labels.to(*args, **kwargs).long(),
            self.scores.to(*args, **kwargs),
            self.num_classes,
        )

    def __repr__(self) -> str:
        return f"SemSegLabels(num_classes={self.num_classes}, size={tuple(self.labels.shape)})"


def semantic_labels_low_res(
    mask_cls: Tensor,
    mask_logits: Tensor,
    resampler: MapResampler,
    band_elements: int = BAND_ELEMENTS,
) -> SemSegLabels:
    """Semantic labels for very large outputs: combine at the mask resolution, then resize.

    The class scores are combined from the low-resolution masks (`semantic_inference` at
    h x w), then resampled to the output band by band and reduced to their argmax and maximum,
    so memory is O(K * h * w + H * W + band_elements) whatever K and H x W are. The default path
    instead combines the masks after upsampling them (sigmoid, then combine, at full resolution);
    as the sigmoid does not commute with the resize the two differ near class boundaries.

    Args:
        mask_cls: (Q, K + 1) class logits.
        mask_logits: (Q, h, w) low-resolution mask logits.
        resampler: their geometry to the output (H, W).
        band_elements: at most this many resampled score values at a time.
    """
    scores = semantic_inference(mask_cls, mask_logits)  # (K, h, w)
    k = scores.shape[0]
    height, width = resampler.output_size
    labels = torch.empty((height, width), dtype=torch.int64, device=scores.device)
    best = scores.new_empty((height, width))
    for r0, r1, band in resampler.bands(scores, resampler.band_rows(k, band_elements)):
        best[r0:r1], labels[r0:r1] = band.max(0)
    return SemSegLabels(labels, best, k)


def _kept_queries(mask_cls: Tensor, object_mask_threshold: float) -> Tuple[Tensor, Tensor, Tensor]:
    """Queries whose best class is a real one with probability above the threshold.

    Returns (keep (Q,) bool, their scores (Q',), their classes (Q',)).
    """
    scores, labels = mask_cls.softmax(-1).max(-1)
    keep = labels.ne(mask_cls.shape[-1] - 1) & (scores > object_mask_threshold)
    return keep, scores[keep], labels[keep]


def _paint_segments(
    owner: Tensor,
    original_area: Tensor,
    classes: Tensor,
    thing_ids: Collection[int],
    overlap_threshold: float,
) -> Tuple[Tensor, List[Dict[str, object]]]:
    """Turn the owner map of the kept queries into segments, visiting queries in order.

    Args:
        owner: (H, W) int64, the kept query (index into `classes`) owning each pixel.
        original_area: (Q',) pixels where each kept query's mask probability is >= 0.5.
        classes: (Q',) their classes.
    """
    visible_area = torch.bincount(owner.flatten(), minlength=len(classes)).tolist()
    original_area = original_area.tolist()
    thing_ids = set(thing_ids)
    # Segment id of each kept query (0: dropped); pixels are painted once, through this table.
    segment_of = [0] * len(classes)
    segments_info: List[Dict[str, object]] = []
    stuff_segment: Dict[int, int] = {}
    for k, pred_class in enumerate(classes.tolist()):
        is_thing = pred_class in thing_ids
        mask_area, full_area = visible_area[k], original_area[k]
        if mask_area == 0 or full_area == 0:
            continue
        if mask_area / full_area < overlap_threshold:
            continue
        if not is_thing and pred_class in stuff_segment:
            segment_of[k] = stuff_segment[pred_class]
            continue
        segment_of[k] = len(segments_info) + 1
        segments_info.append({"id": segment_of[k], "isthing": is_thing, "category_id": pred_class})
        if not is_thing:
            stuff_segment[pred_class] = segment_of[k]
    table = torch.tensor(segment_of, dtype=torch.int32, device=owner.device)
    return table[owner], segments_info


def panoptic_inference(
    mask_cls: Tensor,
    mask_pred: Tensor,
    thing_ids: Collection[int],
    object_mask_threshold: float,
    overlap_threshold: float,
) -> Tuple[Tensor, List[Dict[str, object]]]:
    """Panoptic segmentation of one image, as the official MaskFormer defines it.

    A query is kept if its best class is not "no object" and its probability exceeds
    `object_mask_threshold`. Each pixel goes to the kept query maximising p_q * sigmoid(m_q).
    Queries are then visited in order; one whose visible area is less than `overlap_threshold`
    times its own mask area (sigmoid >= 0.5) is dropped. All queries of one stuff class form one
    segment; each thing query forms its own.

    Args:
        mask_cls: (Q, K + 1) class logits.
        mask_pred: (Q, H, W) mask logits at the output resolution.
        thing_ids: contiguous ids (in [0, K)) of the thing classes; the rest are stuff.
        object_mask_threshold: minimum class probability of a kept query.
        overlap_threshold: minimum visible / own area of a kept segment.
    Returns:
        panoptic_seg: (H, W) int32, 0 = void, segments numbered from 1.
        segments_info: one dict per segment id in the map: "id", "isthing", "category_id".
    """
    keep, scores, classes = _kept_queries(mask_cls, object_mask_threshold)
    h, w = mask_pred.shape[-2:]
    if not bool(keep.any()):
        return torch.zeros((h, w), dtype=torch.int32, device=mask_pred.device), []
    probs = mask_pred[keep].sigmoid()
    owner = (scores.view(-1, 1, 1) * probs).argmax(0)
    original_area = (probs >= 0.5).flatten(1).sum(1)
    return _paint_segments(owner, original_area, classes, thing_ids, overlap_threshold)


def panoptic_inference_banded(
    mask_cls: Tensor,
    mask_logits: Tensor,
    resampler: MapResampler,
    thing_ids: Collection[int],
    object_mask_threshold: float,
    overlap_threshold: float,
    band_elements: int = BAND_ELEMENTS,
) -> Tuple[Tensor, List[Dict[str, object]]]:
    """`panoptic_inference` of the mask logits resampled by `resampler`, one band of rows at a
    time (only the kept queries are resampled); same arguments and result, except `mask_logits`
    (Q, h, w) at low resolution."""
    keep, scores, classes = _kept_queries(mask_cls, object_mask_threshold)
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
    return _paint_segments(owner, original_area, classes, thing_ids, overlap_threshold)


def mask_boxes(masks: Tensor) -> Tensor:
    """Tight boxes of binary masks, as Detectron2's `BitMasks.get_bounding_boxes` computes them,
    without its per-mask loop (and host syncs on a GPU).

    Args:
        masks: (D, H, W) bool.
    Returns:
        (D, 4) float XYXY boxes, right and bottom exclusive; zeros for an empty mask.
    """
    d, h, w = masks.shape
    cols, rows = masks.any(1), masks.any(2)  # (D, W), (D, H)
    xs = torch.arange(w, device=masks.device).expand(d, w)
    ys = torch.arange(h, device=masks.device).expand(d, h)
    boxes = torch.stack(
        [
            torch.where(cols, xs, w).amin(1),
            torch.where(rows, ys, h).amin(1),
            torch.where(cols, xs + 1, 0).amax(1),
            torch.where(rows, ys + 1, 0).amax(1),
        ],
        dim=1,
    ).float()
    return boxes * cols.any(1, keepdim=True)


def instance_inference(
    mask_cls: Tensor,
    mask_pred: Tensor,
    *,
    max_detections: int,
    candidate_classes: Optional[Collection[int]] = None,
    score_threshold: float = 0.0,
) -> Instances:
    """Instance segmentation of one image: the best (query, class) pairs, as Mask2Former does.

    Every (query, class) pair is a candidate, so one query can give several detections of
    different classes. The `max_detections` pairs of highest class probability are kept; a
    detection's mask is its query's mask logit > 0, and its score is the class probability times
    the mean mask probability inside that mask. Boxes are the masks' bounding boxes.

    Args:
        mask_cls: (Q, K + 1) class logits.
        mask_pred: (Q, H, W) mask logits at the output resolution.
        max_detections: top-k over the Q x (number of candidate classes) pairs.
        candidate_classes: contiguous ids that can be instances (the thing classes); None: all K.
        score_threshold: detections scoring at most this are dropped (after the top-k).
    Returns:
        Instances of image size (H, W), highest score first, with pred_masks (D, H, W) bool,
        pred_boxes Boxes (D, 4) XYXY (zeros for an empty mask), scores (D,), pred_classes (D,)
        int64.
    """
    num_classes = mask_cls.shape[1] - 1
    device = mask_cls.device
    if candidate_classes is None:
        classes = torch.arange(num_classes, device=device)
    else:
        classes = torch.as_tensor(sorted(candidate_classes), dtype=torch.int64, device=device)
    result = Instances(tuple(mask_pred.shape[-2:]))
    probs = mask_cls.softmax(-1)[:, classes]  # (Q, C): "no object" dropped after the softmax
    k = min(max_detections, probs.numel())
    if k == 0:
        result.pred_masks = mask_pred.new_zeros((0, *mask_pred.shape[-2:]), dtype=torch.bool)
        result.pred_boxes = Boxes(mask_pred.new_zeros((0, 4)))
        result.scores = mask_pred.new_zeros((0,))
        result.pred_classes = classes[:0]
        return result
    class_scores, flat = probs.flatten().topk(k)
    queries = flat // classes.numel()
    labels = classes[flat % classes.numel()]

    # Masks and their mean probabilities once per distinct query: with Q = 100 queries at image
    # resolution, per-detection copies would cost up to k full-size float maps.
    unique_queries, which = queries.unique(return_inverse=True)
    logits = mask_pred[unique_queries]
    binary = logits > 0
    inside = (logits.sigmoid() * binary).flatten(1).sum(1)
    mask_scores = inside / (binary.flatten(1).sum(1) + 1e-6)
    scores = class_scores * mask_scores[which]
    keep = (scores > score_threshold).nonzero().flatten()
    keep = keep[scores[keep].argsort(descending=True, stable=True)]

    masks = binary[which[keep]]
    result.pred_masks = masks
    result.pred_boxes = Boxes(mask_boxes(masks))
    result.scores = scores[keep]
    result.pred_classes = labels[keep]
    return result
