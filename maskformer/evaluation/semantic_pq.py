"""Panoptic quality of semantic segmentation, treating every class as stuff. Pure functions.

In each image, the pixels of class k in the ground truth form one segment and the pixels
predicted as k form one segment. They match when their IoU exceeds 0.5, with the prediction's
pixels on unlabelled ground truth left out of the union, as in the COCO panoptic evaluation. An
unmatched prediction is not a false positive when more than half of it lies on unlabelled
pixels. Then, per class, PQ = sum of matched IoUs / (TP + FP/2 + FN/2) = SQ x RQ, and the overall
numbers average the classes that occur (TP + FP + FN > 0).

Shapes: K classes, H x W an image.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

__all__ = ["stuff_pq_counts", "summarize_pq"]


def stuff_pq_counts(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_label: int
) -> np.ndarray:
    """Per-class matching counts of one image.

    Args:
        pred: (H, W) predicted class ids in [0, K); negative for "no prediction".
        gt: (H, W) ground-truth class ids in [0, K), or `ignore_label` for unlabelled pixels.
    Returns:
        (K, 4) float64 columns: TP, FP, FN, sum of the IoUs of the TPs.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    k = num_classes
    gt = gt.astype(np.int64).ravel()
    pred = pred.astype(np.int64).ravel()
    void = gt == ignore_label
    bad = ~void & ((gt < 0) | (gt >= k))
    if bad.any():
        raise ValueError(
            f"ground-truth values {np.unique(gt[bad])[:10].tolist()} are neither classes "
            f"[0, {k}) nor the ignore label {ignore_label}"
        )
    if (pred >= k).any():
        raise ValueError(f"predicted class ids must be < {k}, got {int(pred.max())}")
    gt_area = np.bincount(gt[~void], minlength=k)
    has_pred = pred >= 0
    pred_area = np.bincount(pred[has_pred], minlength=k)
    same = ~void & has_pred & (gt == pred)
    intersection = np.bincount(pred[same], minlength=k)
    pred_on_void = np.bincount(pred[void & has_pred], minlength=k)

    counts = np.zeros((k, 4), dtype=np.float64)
    union = pred_area + gt_area - intersection - pred_on_void
    iou = np.divide(intersection, union, out=np.zeros(k), where=union > 0)
    matched = (gt_area > 0) & (pred_area > 0) & (iou > 0.5)
    counts[matched, 0] = 1
    counts[matched, 3] = iou[matched]
    # A prediction mostly on unlabelled pixels is not penalised.
    mostly_void = pred_on_void > 0.5 * pred_area
    counts[(pred_area > 0) & ~matched & ~mostly_void, 1] = 1
    counts[(gt_area > 0) & ~matched, 2] = 1
    return counts


def summarize_pq(counts: np.ndarray, class_names: Sequence[str]) -> Dict[str, object]:
    """PQ, SQ, RQ (in [0, 1]) overall and per class from summed `stuff_pq_counts`.

    Returns {"PQ", "SQ", "RQ", "n": classes averaged, "per_class": [{"name", "PQ", "SQ", "RQ",
    "TP", "FP", "FN"}] for the classes that occur}.
    """
    tp, fp, fn, iou = counts.T
    denominator = tp + 0.5 * fp + 0.5 * fn
    occurs = denominator > 0
    pq = np.divide(iou, denominator, out=np.zeros_like(iou), where=occurs)
    sq = np.divide(iou, tp, out=np.zeros_like(iou), where=tp > 0)
    rq = np.divide(tp, denominator, out=np.zeros_like(iou), where=occurs)
    per_class: List[Dict[str, object]] = [
        {
            "name": class_names[c],
            "PQ": float(pq[c]),
            "SQ": float(sq[c]),
            "RQ": float(rq[c]),
            "TP": int(tp[c]),
            "FP": int(fp[c]),
            "FN": int(fn[c]),
        }
        for c in np.flatnonzero(occurs)
    ]
    n = int(occurs.sum())
    return {
        "PQ": float(pq[occurs].mean()) if n else 0.0,
        "SQ": float(sq[occurs].mean()) if n else 0.0,
        "RQ": float(rq[occurs].mean()) if n else 0.0,
        "n": n,
        "per_class": per_class,
    }
