"""From Q (class, mask) pairs to semantic, panoptic and instance outputs (paper Sec. 3.4).

Pure functions of one image's predictions. Shapes: Q queries, K classes (the K + 1-th logit is
"no object"), H x W the mask size, D detections.
"""

from __future__ import annotations

from typing import Collection, Dict, List, Optional, Tuple

import torch
from detectron2.structures import Boxes, Instances
from torch import Tensor

__all__ = ["instance_inference", "mask_boxes", "panoptic_inference", "semantic_inference"]


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
    scores, labels = mask_cls.softmax(-1).max(-1)
    num_classes = mask_cls.shape[-1] - 1
    keep = labels.ne(num_classes) & (scores > object_mask_threshold)
    cur_scores = scores[keep]
    cur_classes = labels[keep]
    cur_masks = mask_pred[keep].sigmoid()
    h, w = mask_pred.shape[-2:]
    panoptic_seg = torch.zeros((h, w), dtype=torch.int32, device=mask_pred.device)
    segments_info: List[Dict[str, object]] = []
    if cur_masks.shape[0] == 0:
        return panoptic_seg, segments_info

    owner = (cur_scores.view(-1, 1, 1) * cur_masks).argmax(0)
    thing_ids = set(thing_ids)
    stuff_segment: Dict[int, int] = {}
    current_id = 0
    for k in range(cur_classes.shape[0]):
        pred_class = int(cur_classes[k])
        is_thing = pred_class in thing_ids
        visible = owner == k
        mask_area = int(visible.sum())
        original_area = int((cur_masks[k] >= 0.5).sum())
        if mask_area == 0 or original_area == 0:
            continue
        if mask_area / original_area < overlap_threshold:
            continue
        if not is_thing and pred_class in stuff_segment:
            panoptic_seg[visible] = stuff_segment[pred_class]
            continue
        current_id += 1
        panoptic_seg[visible] = current_id
        segments_info.append({"id": current_id, "isthing": is_thing, "category_id": pred_class})
        if not is_thing:
            stuff_segment[pred_class] = current_id
    return panoptic_seg, segments_info


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
