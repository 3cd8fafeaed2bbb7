"""Semantic segmentation metrics from a confusion matrix: a drop-in for Detectron2's
SemSegEvaluator with the same numbers, and the tables and plots of `reports`.

Shapes: K classes, H x W an image; confusion matrices are (K, K) [gt class, predicted class].
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator

from ..data.io import read_label_map
from ..modeling.postprocessing import semantic_labels
from . import reports
from .gather import gather_on_main

__all__ = [
    "SemanticEvaluator",
    "boundary_counts",
    "confusion_matrix",
    "semantic_metrics",
]

logger = logging.getLogger(__name__)


def confusion_matrix(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_label: int, file_name: str = "?"
) -> np.ndarray:
    """(K, K) int64 pixel counts [gt class, predicted class] of one image.

    Args:
        pred: (H, W) predicted class ids in [0, K).
        gt: (H, W) ground-truth class ids in [0, K), or `ignore_label` (left out).
        file_name: the ground-truth file, named in errors.
    Raises:
        ValueError: sizes differ, a ground-truth value is neither a class nor the ignore label,
            or a predicted id is not a class.
    """
    k = num_classes
    if pred.shape != gt.shape:
        raise ValueError(
            f"{file_name}: ground truth is {gt.shape[0]} x {gt.shape[1]} but the prediction is "
            f"{pred.shape[0]} x {pred.shape[1]}; the model must predict at the input's height "
            "and width"
        )
    gt = gt.astype(np.int64, copy=False)
    ignored = gt == ignore_label
    bad = ~ignored & ((gt < 0) | (gt >= k))
    if bad.any():
        values = np.unique(gt[bad])
        raise ValueError(
            f"{file_name}: ground-truth value(s) {values[:10].tolist()} are neither a class in "
            f"[0, {k}) ({k} classes) nor the ignore label {ignore_label}"
        )
    pred = pred.astype(np.int64, copy=False)
    if pred.size and (pred.min() < 0 or pred.max() >= k):
        raise ValueError(
            f"{file_name}: predicted class ids span [{pred.min()}, {pred.max()}]; expected ids in "
            f"[0, {k})"
        )
    # Ignored pixels go to one extra bin that is dropped: cheaper than selecting the others.
    index = np.where(ignored, k * k, gt * k + pred)
    return np.bincount(index.ravel(), minlength=k * k + 1)[: k * k].reshape(k, k)


def _boundary(mask: np.ndarray, width: int) -> np.ndarray:
    """(H, W) bool: the pixels of `mask` within `width` pixels of its outside (the image border
    counts as outside)."""
    import cv2

    padded = np.pad(mask.astype(np.uint8), 1)
    inner = cv2.erode(padded, np.ones((2 * width + 1, 2 * width + 1), np.uint8))[1:-1, 1:-1]
    return mask & (inner == 0)


def boundary_counts(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_label: int
) -> np.ndarray:
    """(K, 2) int64 per class: intersection and union of the ground-truth and predicted boundary
    regions (Boundary IoU, Cheng et al. 2021: the pixels within 2% of the image diagonal of
    each mask's contour), over the pixels whose ground truth is not ignored.

    Args:
        pred, gt: (H, W) class ids, as in `confusion_matrix` (already checked there).
    """
    h, w = gt.shape
    width = max(1, int(round(0.02 * np.hypot(h, w))))
    counts = np.zeros((num_classes, 2), np.int64)
    labelled = gt != ignore_label
    for c in np.union1d(np.unique(gt[labelled]), np.unique(pred[labelled])):
        g = _boundary(gt == c, width) & labelled
        p = _boundary(pred == c, width) & labelled
        counts[c] = (g & p).sum(), (g | p).sum()
    return counts


def semantic_metrics(conf: np.ndarray) -> Dict[str, np.ndarray]:
    """Per-class and overall metrics of a (K, K) [gt, pred] confusion matrix, by Detectron2's
    SemSegEvaluator's rules: a class absent from the ground truth has no accuracy and no IoU
    (NaN) and is left out of the means.

    Returns float64 arrays: "IoU", "ACC" (recall), "Precision", "Dice" (the F1-score,
    2 P R / (P + R)) of shape (K,), and scalars "mIoU", "fwIoU", "mACC", "pACC", "mDice", all in
    [0, 1].
    """
    k = conf.shape[0]
    tp = conf.diagonal().astype(float)
    pos_gt = conf.sum(axis=1).astype(float)
    pos_pred = conf.sum(axis=0).astype(float)
    acc = np.full(k, np.nan)
    iou = np.full(k, np.nan)
    dice = np.full(k, np.nan)
    precision = np.full(k, np.nan)
    acc_valid = pos_gt > 0
    acc[acc_valid] = tp[acc_valid] / pos_gt[acc_valid]
    union = pos_gt + pos_pred - tp
    iou_valid = acc_valid & (union > 0)
    iou[iou_valid] = tp[iou_valid] / union[iou_valid]
    dice[acc_valid] = 2 * tp[acc_valid] / (pos_gt[acc_valid] + pos_pred[acc_valid])
    precision_valid = acc_valid & (pos_pred > 0)
    precision[precision_valid] = tp[precision_valid] / pos_pred[precision_valid]
    class_weights = pos_gt / np.sum(pos_gt)
    # The same operations, in the same order, as Detectron2: identical floats.
    return {
        "IoU": iou,
        "ACC": acc,
        "Precision": precision,
        "Dice": dice,
        "mIoU": np.sum(iou[iou_valid]) / np.sum(iou_valid),
        "fwIoU": np.sum(iou[iou_valid] * class_weights[iou_valid]),
        "mACC": np.sum(acc[acc_valid]) / np.sum(acc_valid),
        "pACC": np.sum(tp) / np.sum(pos_gt),
        "mDice": np.sum(dice[acc_valid]) / np.sum(acc_valid),
    }


class SemanticEvaluator(DatasetEvaluator):
    """Detectron2's SemSegEvaluator's numbers and result keys, plus mDice, optional Boundary
    IoU, and a report (table, plots, metrics.json) in `output_dir`."""

    def __init__(
        self,
        dataset_name: str,
        *,
        distributed: bool = True,
        output_dir: Optional[str] = None,
        boundary_iou: bool = False,
        write_predictions_json: bool = False,
        label_loader: Callable[[str], np.ndarray] = read_label_map,
    ):
        """
        Args:
            distributed: sum the confusion matrices of all processes (results on rank 0 only).
            boundary_iou: also compute per-class Boundary IoU (one erosion per class per image).
            write_predictions_json: keep every image's RLEs and write `sem_seg_predictions.json`
                (COCO-Stuff results format).
            label_loader: file name -> (H, W) integer label map.
        """
        meta = MetadataCatalog.get(dataset_name)
        self._dataset_name = dataset_name
        self._class_names = list(meta.stuff_classes)
        self._num_classes = len(self._class_names)
        self._ignore_label = meta.ignore_label
        self._distributed = distributed
        self._output_dir = output_dir
        self._boundary_iou = boundary_iou
        self._write_json = write_predictions_json
        self._load = label_loader
        self._gt_file = {
            d["file_name"]: d["sem_seg_file_name"] for d in DatasetCatalog.get(dataset_name)
        }
        c2d = meta.get("stuff_dataset_id_to_contiguous_id")
        self._dataset_id = {v: k for k, v in c2d.items()} if c2d else None
        self.reset()

    def reset(self):
        k = self._num_classes
        self._conf = np.zeros((k, k), np.int64)
        self._boundary = np.zeros((k, 2), np.int64)
        self._predictions: List[Dict] = []

    def process(self, inputs, outputs):
        for input, output in zip(inputs, outputs):
            pred = semantic_labels(output).to("cpu", torch.int64).numpy()
            gt_file = self._gt_file.get(input["file_name"])
            if gt_file is None:
                raise KeyError(
                    f"{input['file_name']} is not an image of dataset '{self._dataset_name}' "
                    "(no ground truth for it)"
                )
            gt = self._load(gt_file)
            if gt.ndim != 2:
                raise ValueError(
                    f"Semantic label file {gt_file} has shape {gt.shape}; expected a "
                    "single-channel (H, W) label map"
                )
            k, ignore = self._num_classes, self._ignore_label
            self._conf += confusion_matrix(pred, gt, k, ignore, gt_file)
            if self._boundary_iou:
                self._boundary += boundary_counts(pred, gt, k, ignore)
            if self._write_json:
                self._predictions.extend(self._encode_json(pred, input["file_name"]))

    def _encode_json(self, pred: np.ndarray, file_name: str) -> List[Dict]:
        """One COCO-Stuff result (RLE) per class predicted in the image."""
        import pycocotools.mask as mask_util

        results = []
        for label in np.unique(pred):
            label = int(label)
            mask = np.asfortranarray((pred == label)[:, :, None].astype(np.uint8))
            rle = mask_util.encode(mask)[0]
            rle["counts"] = rle["counts"].decode("utf-8")
            category = self._dataset_id[label] if self._dataset_id else label
            results.append({"file_name": file_name, "category_id": category, "segmentation": rle})
        return results

    def evaluate(self):
        conf, boundary, predictions = self._conf, self._boundary, self._predictions
        if self._distributed:
            gathered = gather_on_main((conf, boundary), predictions)
            if gathered is None:
                return None
            (conf, boundary), predictions = gathered
        m = semantic_metrics(conf)
        res: Dict[str, float] = {"mIoU": 100 * m["mIoU"], "fwIoU": 100 * m["fwIoU"]}
        for i, name in enumerate(self._class_names):
            res[f"IoU-{name}"] = 100 * m["IoU"][i]
        res["mACC"] = 100 * m["mACC"]
        res["pACC"] = 100 * m["pACC"]
        for i, name in enumerate(self._class_names):
            res[f"ACC-{name}"] = 100 * m["ACC"][i]
        res["mDice"] = 100 * m["mDice"]
        per_class = {k: m[k] for k in ("IoU", "ACC", "Precision", "Dice")}
        if self._boundary_iou:
            inter, union = boundary[:, 0].astype(float), boundary[:, 1].astype(float)
            b_iou = np.divide(inter, union, out=np.full(len(inter), np.nan), where=union > 0)
            valid = ~np.isnan(b_iou) & ~np.isnan(m["IoU"])
            res["mBoundaryIoU"] = 100 * float(np.mean(b_iou[valid])) if valid.any() else np.nan
            for i, name in enumerate(self._class_names):
                res[f"BoundaryIoU-{name}"] = 100 * b_iou[i]
            per_class["BoundaryIoU"] = b_iou
        summary = {k: v for k, v in res.items() if "-" not in k}
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            if self._write_json:
                with open(os.path.join(self._output_dir, "sem_seg_predictions.json"), "w") as f:
                    json.dump(predictions, f)
            reports.write_report(
                self._output_dir,
                task="sem_seg",
                summary=summary,
                class_names=self._class_names,
                per_class={k: 100 * v for k, v in per_class.items()},
                support=conf.sum(axis=1),
                confusion=conf,
                sort_by="IoU",
            )
        names, iou = self._class_names, 100 * m["IoU"]
        reports.log_summary(logger, self._dataset_name, "sem_seg", summary, names, iou, "IoU")
        return OrderedDict({"sem_seg": res})
