"""Panoptic quality (PQ, SQ, RQ for all / thing / stuff categories and per category) from the
predicted id maps in memory: the same numbers as panopticapi's `pq_compute`, without writing
the predictions as PNGs and reading them back.

One joint histogram (`bincount`) of (ground-truth segment, predicted segment) pixel pairs per
image gives every intersection; panopticapi's rules are then applied to it: ground-truth areas
from the JSON, predicted areas from the map, id 0 VOID; a pair of the same category, the ground
truth not a crowd, matches when IoU > 0.5 (the prediction's pixels on VOID left out of the
union); an unmatched prediction is no false positive when more than half of it lies on VOID or
on a crowd segment of its category (the last listed, as panopticapi does); unmatched non-crowd
ground truth is a false negative.

Shapes: C categories, G / P ground-truth / predicted segments of an image, H x W the image.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from PIL import Image

from ..data.io import panoptic_ids_to_rgb, read_label_map
from . import reports

__all__ = ["PanopticEvaluator", "panoptic_png_ids", "pq_image_stats", "pq_summary"]

logger = logging.getLogger(__name__)

_ID_LIMIT = 1 << 24  # ids a COCO panoptic PNG can hold (R + 256 G + 256^2 B)
_UNKNOWN, _VOID = 0, 1  # histogram rows/columns before the segments'
_local = threading.local()


def _id_table() -> np.ndarray:
    """This thread's segment id -> histogram index table, all _UNKNOWN between uses.

    np.zeros maps untouched pages lazily: the few written and read pages are all that is
    resident, not 32 MB."""
    if not hasattr(_local, "table"):
        _local.table = np.zeros(_ID_LIMIT, np.uint16)
    return _local.table


def panoptic_png_ids(file_name: str) -> np.ndarray:
    """(H, W) uint32 segment ids R + 256 G + 256^2 B of a COCO panoptic PNG."""
    rgb = read_label_map(file_name)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(
            f"{file_name}: a panoptic PNG must be RGB (segment id = R + 256 G + 256^2 B), but it "
            f"reads as an array of shape {rgb.shape}"
        )
    # In place on one uint32 array: a third of the time of int64 arithmetic.
    ids = rgb[..., 2].astype(np.uint32)
    ids <<= 8
    ids |= rgb[..., 1]
    ids <<= 8
    ids |= rgb[..., 0]
    return ids


def _indices(ids: np.ndarray, known: np.ndarray, what: str) -> np.ndarray:
    """(H, W) int64 histogram index of each pixel: _VOID for id 0 (unless listed), 2 + i for
    `known[i]`, _UNKNOWN otherwise."""
    signed = np.issubdtype(ids.dtype, np.signedinteger)
    if ids.size and ((signed and ids.min() < 0) or ids.max() >= _ID_LIMIT):
        raise ValueError(f"{what}: segment ids must be in [0, 2^24), got {ids.min()}..{ids.max()}")
    if len(known) + 2 > np.iinfo(np.uint16).max:
        raise ValueError(f"{what}: {len(known)} segments; at most 65533 are supported")
    table = _id_table()
    table[0] = _VOID
    table[known] = np.arange(2, len(known) + 2)
    try:
        return table[ids].astype(np.int64)
    finally:
        table[0] = _UNKNOWN
        table[known] = _UNKNOWN


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
        ValueError: where panopticapi raises (predicted ids missing from `pred_segments` or
            listed without a pixel, unknown categories) and on differing sizes.
    """
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(
            f"{image}: ground truth is {gt_ids.shape} but the prediction is {pred_ids.shape}"
        )
    column = {c: i for i, c in enumerate(category_ids)}
    g, p = len(gt_segments), len(pred_segments)
    pred_known = np.array([s["id"] for s in pred_segments], np.int64)
    gt_index = _indices(gt_ids, np.array([s["id"] for s in gt_segments], np.int64), image)
    pred_index = _indices(pred_ids, pred_known, image + " (prediction)")
    hist = np.bincount(
        (gt_index * (p + 2) + pred_index).ravel(), minlength=(g + 2) * (p + 2)
    ).reshape(g + 2, p + 2)

    if hist[:, _UNKNOWN].any():
        listed = set(pred_known.tolist()) | {0}
        extra = sorted(set(np.unique(pred_ids).tolist()) - listed)
        raise ValueError(f"{image}: predicted segment ids {extra[:10]} are not in segments_info")
    pred_area = hist[:, 2:].sum(axis=0)
    if (pred_area == 0).any():
        raise ValueError(
            f"{image}: segments_info lists segment ids {pred_known[pred_area == 0].tolist()} that "
            "have no pixel in the predicted map"
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

    It keeps per image nothing but the summed per-category counts; with `write_predictions` the
    predicted maps go to `output_dir/panoptic_seg_predictions/*.png` as they come, and their
    segments to `panoptic_seg_predictions.json` (COCO panoptic results format).
    """

    def __init__(
        self,
        dataset_name: str,
        *,
        output_dir: Optional[str] = None,
        num_workers: int = 0,
        write_predictions: bool = False,
        distributed: bool = True,
    ):
        """
        Args:
            dataset_name: a registered dataset whose metadata has "panoptic_json",
                "panoptic_root" and Detectron2's contiguous-id maps of things and stuff.
            num_workers: threads computing PQ while the model runs (at most 2 images each
                waiting); 0: in `process`.
            write_predictions: write the prediction PNGs + JSON (for a server submission).
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

    def _image_stats(self, image_id, pred_ids: np.ndarray, segments: List[Dict]) -> np.ndarray:
        ann = self._gt[image_id]
        gt_file = os.path.join(self._gt_root, ann["file_name"])
        gt_ids = panoptic_png_ids(gt_file)
        return pq_image_stats(
            gt_ids, ann["segments_info"], pred_ids, segments, self._category_ids, gt_file
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
            if self._num_workers == 0:
                self._stats += self._image_stats(image_id, pred_ids, segments)
                continue
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._num_workers, "panoptic-eval")
            self._pending.append(self._pool.submit(self._image_stats, image_id, pred_ids, segments))
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
            comm.synchronize()
            gathered = comm.all_gather((stats, num_images, annotations))
            if not comm.is_main_process():
                return None
            stats = sum(g[0] for g in gathered)
            num_images = sum(g[1] for g in gathered)
            annotations = list(itertools.chain.from_iterable(g[2] for g in gathered))
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
