"""Panoptic quality (PQ, SQ, RQ for all / thing / stuff categories and per category) from the
predicted id maps in memory: the same numbers as panopticapi's `pq_compute`, without writing
the predictions as PNGs and reading them back.

One joint histogram of (ground-truth segment, predicted segment) pixel pairs per image gives
every intersection, to which panopticapi's matching rules are applied (see `pq_compact_stats`).

Shapes: C categories, G / P ground-truth / predicted segments of an image, H x W the image.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Mapping, Optional, Sequence

import cv2
import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from PIL import Image

from ..data.io import panoptic_ids_to_rgb
from ..data.panoptic_ids import ID_LIMIT, CompactIds, compact_ids, read_panoptic_ids
from . import reports
from .gather import gather_on_main

__all__ = ["PanopticEvaluator", "pq_compact_stats", "pq_image_stats", "pq_summary"]

logger = logging.getLogger(__name__)

_UNKNOWN, _VOID = 0, 1  # histogram rows/columns before the segments'


def _code_histogram(a: np.ndarray, codes_a: int, b: np.ndarray, codes_b: int) -> np.ndarray:
    """(codes_a, codes_b) int64 number of pixels of each pair of codes of two (H, W) code maps."""
    if a.dtype == b.dtype == np.uint8 and 0 < a.size < ID_LIMIT:
        # OpenCV counts uint8 pairs faster than bincount counts their joint int64 index; its
        # float32 counts are exact below 2^24 pixels.
        a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
        counts = cv2.calcHist([a, b], [0, 1], None, [codes_a, codes_b], [0, codes_a, 0, codes_b])
        return counts.astype(np.int64)
    joint = a.astype(np.intp) * codes_b + b
    return np.bincount(joint.ravel(), minlength=codes_a * codes_b).reshape(codes_a, codes_b)


def _rows(ids: np.ndarray, known: Sequence[int]) -> np.ndarray:
    """(N,) int64 histogram row of the segment ids `ids`: _VOID for 0 (unless listed), 2 + i
    for `known[i]` (the last one if repeated), _UNKNOWN otherwise."""
    row = {0: _VOID}
    row.update((k, 2 + i) for i, k in enumerate(known))
    return np.array([row.get(i, _UNKNOWN) for i in ids.tolist()], np.int64)


def pq_image_stats(
    gt_ids: np.ndarray,
    gt_segments: Sequence[Mapping],
    pred_ids: np.ndarray,
    pred_segments: Sequence[Mapping],
    category_ids: Sequence[int],
    image: str = "?",
) -> np.ndarray:
    """(C, 4) float64 per category of `category_ids`: TP, FP, FN, sum of the TPs' IoUs.

    Args:
        gt_ids, pred_ids: (H, W) segment ids (0: VOID).
        gt_segments: the image's COCO panoptic "segments_info": "id", "category_id", "iscrowd",
            "area".
        pred_segments: "id", "category_id" (dataset category ids) of the predicted segments.
        image: named in errors.
    Raises:
        ValueError: where panopticapi raises, on differing sizes and on ids outside [0, 2^24).
    """
    gt = compact_ids(gt_ids, [s["id"] for s in gt_segments], image)
    return pq_compact_stats(gt, gt_segments, pred_ids, pred_segments, category_ids, image)


def pq_compact_stats(
    gt: CompactIds,
    gt_segments: Sequence[Mapping],
    pred_ids: np.ndarray,
    pred_segments: Sequence[Mapping],
    category_ids: Sequence[int],
    image: str = "?",
) -> np.ndarray:
    """`pq_image_stats` with the ground-truth ids in compact form (`compact_ids`, as the test
    loader gives them): the same (C, 4) TP, FP, FN, IoU sum, and the same errors.

    As panopticapi: ground-truth areas come from the JSON, id 0 is VOID; a pair of the same
    category, the ground truth not a crowd, matches when IoU > 0.5 (the prediction's pixels on VOID
    left out of the union); an unmatched prediction is no false positive when more than half of it
    lies on VOID or on a crowd segment of its category (the last listed).
    """
    if gt.index.shape != pred_ids.shape:
        raise ValueError(
            f"{image}: ground truth is {gt.index.shape} but the prediction is {pred_ids.shape}"
        )
    column = {c: i for i, c in enumerate(category_ids)}
    g, p = len(gt_segments), len(pred_segments)
    pred_known = [s["id"] for s in pred_segments]
    pred = compact_ids(pred_ids, pred_known, image + " (prediction)")
    codes = _code_histogram(gt.index, len(gt.ids), pred.index, len(pred.ids))
    # Codes to histogram rows / columns: sums over the few codes, not over the pixels.
    rows = _rows(gt.ids, [s["id"] for s in gt_segments])
    cols = _rows(pred.ids, pred_known)
    hist = np.bincount(
        (rows[:, None] * (p + 2) + cols[None, :]).ravel(),
        weights=codes.ravel(),
        minlength=(g + 2) * (p + 2),
    )
    hist = hist.astype(np.int64).reshape(g + 2, p + 2)

    if hist[:, _UNKNOWN].any():
        present = codes.sum(axis=0) > 0
        extra = sorted(set(pred.ids[present & (cols == _UNKNOWN)].tolist()))
        raise ValueError(f"{image}: predicted segment ids {extra[:10]} are not in segments_info")
    pred_area = hist[:, 2:].sum(axis=0)
    if (pred_area == 0).any():
        raise ValueError(
            f"{image}: segments_info lists segment ids "
            f"{np.array(pred_known, np.int64)[pred_area == 0].tolist()} that have no pixel in "
            "the predicted map"
        )
    for s in itertools.chain(gt_segments, pred_segments):
        if s["category_id"] not in column:
            raise ValueError(
                f"{image}: segment {s['id']} has category {s['category_id']}, which is not one "
                f"of the dataset's {len(column)} categories"
            )
    gt_col = np.array([column[s["category_id"]] for s in gt_segments], np.int64)
    pred_col = np.array([column[s["category_id"]] for s in pred_segments], np.int64)
    gt_area = np.array([s["area"] for s in gt_segments], np.float64)
    crowd = np.array([s.get("iscrowd", 0) == 1 for s in gt_segments], bool)

    intersection = hist[2:, 2:]  # (G, P)
    on_void = hist[_VOID, 2:]  # (P,)
    candidate = (gt_col[:, None] == pred_col[None, :]) & ~crowd[:, None] & (intersection > 0)
    union = gt_area[:, None] + pred_area[None, :] - intersection - on_void[None, :]
    iou = np.divide(intersection, union, out=np.zeros((g, p)), where=candidate)
    match = iou > 0.5
    rows, cols = np.nonzero(match)

    c = len(category_ids)
    stats = np.zeros((c, 4), np.float64)
    stats[:, 0] = np.bincount(gt_col[rows], minlength=c)
    stats[:, 3] = np.bincount(gt_col[rows], weights=iou[rows, cols], minlength=c)
    gt_matched, pred_matched = match.any(axis=1), match.any(axis=0)
    stats[:, 2] = np.bincount(gt_col[~gt_matched & ~crowd], minlength=c)
    crowd_of = {gt_col[i]: i for i in np.flatnonzero(crowd & ~gt_matched)}  # the last one wins
    for j in np.flatnonzero(~pred_matched):
        ignored = on_void[j]
        if pred_col[j] in crowd_of:
            ignored += intersection[crowd_of[pred_col[j]], j]
        if ignored / pred_area[j] <= 0.5:
            stats[pred_col[j], 1] += 1
    return stats


def pq_summary(stats: np.ndarray, is_thing: np.ndarray) -> Dict[str, Dict[str, float]]:
    """PQ, SQ, RQ (in [0, 1]) and the number of categories averaged, for "All", "Things",
    "Stuff", from summed (C, 4) `pq_image_stats`, as panopticapi's `pq_average`: categories
    without TP, FP or FN are left out (NaN where none is left)."""
    tp, fp, fn, iou = stats.T
    occurs = tp + fp + fn > 0
    denominator = tp + 0.5 * fp + 0.5 * fn
    pq = np.divide(iou, denominator, out=np.zeros_like(iou), where=occurs)
    sq = np.divide(iou, tp, out=np.zeros_like(iou), where=tp > 0)
    rq = np.divide(tp, denominator, out=np.zeros_like(iou), where=occurs)
    result = {}
    for name, subset in (
        ("All", occurs),
        ("Things", occurs & is_thing),
        ("Stuff", occurs & ~is_thing),
    ):
        n = int(subset.sum())
        result[name] = {
            k: float(np.sum(v[subset]) / n) if n else float("nan")
            for k, v in (("pq", pq), ("sq", sq), ("rq", rq))
        }
        result[name]["n"] = n
    result["per_class"] = {"PQ": pq, "SQ": sq, "RQ": rq, "occurs": occurs}
    return result


class PanopticEvaluator(DatasetEvaluator):
    """PQ / SQ / RQ (results keys of Detectron2's COCOPanopticEvaluator), computed image by
    image in memory, plus a per-category report in `output_dir`.

    The ground-truth map is the input's "pan_seg_gt" (decoded by the test loader's workers), or
    else the PNG the JSON names; segments, crowds and areas come from the JSON.
    """

    def __init__(
        self,
        dataset_name: str,
        *,
        output_dir: Optional[str] = None,
        num_workers: int = 4,
        write_predictions: bool = False,
        distributed: bool = True,
    ):
        """
        Args:
            dataset_name: a registered dataset whose metadata has "panoptic_json",
                "panoptic_root" and Detectron2's contiguous-id maps of things and stuff.
            num_workers: threads computing PQ while the model runs (at most 2 images each
                waiting); 0: in `process`.
            write_predictions: write the prediction PNGs + JSON (COCO panoptic results format).
        """
        meta = MetadataCatalog.get(dataset_name)
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._gt_root = meta.panoptic_root
        with open(meta.panoptic_json) as f:
            gt = json.load(f)
        self._categories = gt["categories"]
        self._category_ids = [c["id"] for c in self._categories]
        self._gt = {a["image_id"]: a for a in gt["annotations"]}
        self._thing_id = {
            v: k for k, v in meta.get("thing_dataset_id_to_contiguous_id", {}).items()
        }
        self._stuff_id = {
            v: k for k, v in meta.get("stuff_dataset_id_to_contiguous_id", {}).items()
        }
        self._num_workers = max(0, int(num_workers))
        self._write = write_predictions and output_dir is not None
        self._pool: Optional[ThreadPoolExecutor] = None
        self.reset()

    def reset(self):
        self._stats = np.zeros((len(self._category_ids), 4), np.float64)
        self._num_images = 0
        self._pending: collections.deque = collections.deque()
        self._annotations: List[Dict] = []

    def _dataset_category(self, segment: Mapping) -> Dict:
        """A predicted segment with its contiguous category id mapped to the dataset's."""
        segment = dict(segment)
        isthing = segment.pop("isthing", None)
        if isthing is not None:  # else the model gave dataset ids already
            table = self._thing_id if isthing else self._stuff_id
            segment["category_id"] = table[segment["category_id"]]
        return segment

    def _image_stats(
        self, image_id, gt: Optional[CompactIds], pred_ids: np.ndarray, segments: List[Dict]
    ) -> np.ndarray:
        ann = self._gt[image_id]
        gt_file = os.path.join(self._gt_root, ann["file_name"])
        if gt is None:
            listed = [s["id"] for s in ann["segments_info"]]
            gt = compact_ids(read_panoptic_ids(gt_file), listed, gt_file)
        return pq_compact_stats(
            gt, ann["segments_info"], pred_ids, segments, self._category_ids, gt_file
        )

    def process(self, inputs, outputs):
        for input, output in zip(inputs, outputs):
            pred_ids, segments_info = output["panoptic_seg"]
            if segments_info is None:
                raise ValueError(
                    "PanopticEvaluator needs the model's segments_info (one dict per segment "
                    "id); the output has a label-divisor map without it"
                )
            pred_ids = pred_ids.cpu().numpy()
            segments = [self._dataset_category(s) for s in segments_info]
            image_id = input["image_id"]
            if image_id not in self._gt:
                raise KeyError(
                    f"Image id {image_id} ({input.get('file_name')}) is not in the panoptic "
                    f"ground truth of '{self._dataset_name}'"
                )
            if self._write:
                self._write_prediction(input, pred_ids, segments)
            self._num_images += 1
            job = (image_id, input.get("pan_seg_gt"), pred_ids, segments)
            if self._num_workers == 0:
                self._stats += self._image_stats(*job)
                continue
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._num_workers, "panoptic-eval")
            self._pending.append(self._pool.submit(self._image_stats, *job))
            while len(self._pending) > 2 * self._num_workers:  # bounded memory
                self._stats += self._pending.popleft().result()

    def _write_prediction(self, input, pred_ids: np.ndarray, segments: List[Dict]) -> None:
        folder = os.path.join(self._output_dir, "panoptic_seg_predictions")
        os.makedirs(folder, exist_ok=True)
        name = os.path.splitext(os.path.basename(input["file_name"]))[0] + ".png"
        Image.fromarray(panoptic_ids_to_rgb(pred_ids)).save(os.path.join(folder, name))
        self._annotations.append(
            {"image_id": input["image_id"], "file_name": name, "segments_info": segments}
        )

    def _drain(self) -> None:
        try:
            while self._pending:
                self._stats += self._pending.popleft().result()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def evaluate(self):
        self._drain()
        stats, num_images, annotations = self._stats, self._num_images, self._annotations
        if self._distributed:
            gathered = gather_on_main((stats, num_images), annotations)
            if gathered is None:
                return None
            (stats, num_images), annotations = gathered
        if num_images < len(self._gt):
            logger.warning(
                f"{self._dataset_name}: PQ of {num_images} of the {len(self._gt)} images in "
                "its ground truth"
            )
        is_thing = np.array([c.get("isthing", 0) == 1 for c in self._categories], bool)
        pq = pq_summary(stats, is_thing)
        res = {}
        for short, name in (("", "All"), ("_th", "Things"), ("_st", "Stuff")):
            for k in ("PQ", "SQ", "RQ"):
                res[k + short] = 100 * pq[name][k.lower()]
        names = [c["name"] for c in self._categories]
        per_class = pq["per_class"]
        occurs = per_class["occurs"]
        table = {k: np.where(occurs, 100 * per_class[k], np.nan) for k in ("PQ", "SQ", "RQ")}
        if self._output_dir:
            if self._write:
                with open(
                    os.path.join(self._output_dir, "panoptic_seg_predictions.json"), "w"
                ) as f:
                    json.dump({"annotations": annotations, "categories": self._categories}, f)
            reports.write_report(
                self._output_dir,
                task="panoptic_seg",
                summary=res,
                class_names=names,
                per_class={**table, "TP": stats[:, 0], "FP": stats[:, 1], "FN": stats[:, 2]},
                support=stats[:, 0] + stats[:, 2],
                sort_by="PQ",
            )
        reports.log_summary(
            logger, self._dataset_name, "panoptic_seg", res, names, table["PQ"], "PQ"
        )
        return OrderedDict({"panoptic_seg": res})
