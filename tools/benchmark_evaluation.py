#!/usr/bin/env python
"""Milliseconds per image of the evaluators, beside Detectron2's SemSegEvaluator and
panopticapi's pq_compute, on the same synthetic predictions (the model excluded), with a check
that the numbers are the same; and the memory our semantic evaluator keeps over many images.

    python tools/benchmark_evaluation.py            # 512x512, 150 classes; 480x640, 133 cats

Semantic: per image, Detectron2 gets (K, H, W) scores ("sem_seg"); ours gets the same scores,
and separately their argmax as "sem_seg_labels" (what a model gives when it does not keep the
score tensor), interleaved image by image. Both read the same ground-truth PNGs. `evaluate()`
is timed once and spread over the images; neither writes files then (our report is timed
apart, once).

Panoptic: panopticapi's `pq_compute` on one core, given the prediction PNGs already written,
against our PanopticEvaluator (no worker thread) on the id maps in memory, once reading and
decoding each ground-truth PNG itself as panopticapi does, once given the ground truth as the
test loader's workers decode it (TEST.PANOPTIC_EVAL_GT_IN_LOADER): then the decoding is not the
main process's work, but receiving the decoded map from a worker is (timed apart, as the main
process's CPU time per image through a one-worker DataLoader). Rounds interleave all of them;
medians. The metrics are compared with panopticapi's: All / Things / Stuff and per category.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pickle
import resource
import statistics
import sys
import tempfile
import time
from typing import Dict, List

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data.build import trivial_batch_collator  # noqa: E402
from detectron2.data.common import MapDataset  # noqa: E402
from detectron2.evaluation import SemSegEvaluator  # noqa: E402

from maskformer.data.build import WithPanopticGroundTruth  # noqa: E402
from maskformer.data.io import load_sem_seg_label, panoptic_ids_to_rgb  # noqa: E402
from maskformer.evaluation import PanopticEvaluator, SemanticEvaluator, pq_summary  # noqa: E402
from maskformer.evaluation.panoptic_evaluation import bounded_pq_workers  # noqa: E402

IGNORE = 255


def _ground_truth(rng, size: int, classes: int) -> np.ndarray:
    """(size, size) uint8 blocky labels with 5% ignored pixels."""
    blocks = rng.integers(0, classes, (size // 32 + 1, size // 32 + 1))
    gt = blocks.repeat(32, 0).repeat(32, 1)[:size, :size].astype(np.uint8)
    gt[rng.random((size, size)) < 0.05] = IGNORE
    return gt


def _scores(gt: np.ndarray, classes: int, seed: int) -> torch.Tensor:
    """(K, H, W) float32 scores whose argmax agrees with `gt` on ~70% of its labelled pixels."""
    rng = np.random.default_rng(seed)
    h, w = gt.shape
    scores = torch.rand(classes, h, w, generator=torch.Generator().manual_seed(seed))
    rows, cols = np.nonzero((rng.random((h, w)) < 0.7) & (gt != IGNORE))
    at = [torch.from_numpy(a.astype(np.int64)) for a in (gt[rows, cols], rows, cols)]
    scores[at[0], at[1], at[2]] += 1.0
    return scores


def bench_semantic(root: str, images: int, size: int, classes: int) -> Dict[str, float]:
    rng = np.random.default_rng(0)
    name = "benchmark_evaluation_sem_seg"
    records, gts = [], []
    for i in range(images):
        gts.append(_ground_truth(rng, size, classes))
        path = os.path.join(root, f"sem_{i}.png")
        Image.fromarray(gts[-1]).save(path)
        records.append({"file_name": f"img_{i}.jpg", "sem_seg_file_name": path})
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(
        stuff_classes=[f"c{i}" for i in range(classes)], ignore_label=IGNORE
    )
    # No output folder: timing the metrics, not the writing of files.
    d2 = SemSegEvaluator(name, output_dir=None, sem_seg_loading_fn=load_sem_seg_label)
    from_scores = SemanticEvaluator(name)
    from_labels = SemanticEvaluator(name)
    times: Dict[str, List[float]] = {"d2": [], "scores": [], "labels": []}
    for e in (d2, from_scores, from_labels):
        e.reset()
    for i, record in enumerate(records):
        scores = _scores(gts[i], classes, seed=i)  # one (K, H, W) tensor at a time
        labels = scores.argmax(0)  # the model's work, not the evaluator's
        for key, evaluator, output in (
            ("d2", d2, {"sem_seg": scores}),
            ("scores", from_scores, {"sem_seg": scores}),
            ("labels", from_labels, {"sem_seg_labels": labels}),
        ):
            start = time.perf_counter()
            evaluator.process([record], [output])
            times[key].append(time.perf_counter() - start)
    d2_kept = len(pickle.dumps(d2._predictions))
    results = {}
    for key, evaluator in (("d2", d2), ("scores", from_scores), ("labels", from_labels)):
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            results[key] = evaluator.evaluate()["sem_seg"]
        results[key + "_evaluate_s"] = time.perf_counter() - start
    # The report, written once per evaluation.
    from_labels._output_dir = os.path.join(root, "report")
    start = time.perf_counter()
    from_labels.evaluate()
    report_s = time.perf_counter() - start
    names = ("mIoU", "fwIoU", "mACC", "pACC", "IoU", "ACC")
    shared = [k for k in results["d2"] if k.split("-")[0] in names]
    diff = max(
        abs(results[o][k] - results["d2"][k])
        for o in ("scores", "labels")
        for k in shared
        if not np.isnan(results["d2"][k])
    )
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)
    ms = {
        k: 1000 * (statistics.median(times[k]) + results[k + "_evaluate_s"] / images) for k in times
    }
    return {
        "d2_ms": ms["d2"],
        "scores_ms": ms["scores"],
        "labels_ms": ms["labels"],
        "max_abs_diff": diff,
        "d2_kept_mb_per_image": d2_kept / images / 1e6,
        "report_s": report_s,
    }


def _panoptic_case(rng, h: int, w: int, segments: int, things: List[int], stuff: List[int]):
    """GT ids + segments (stuff blocks, thing rectangles, some crowds, VOID) and a prediction
    (shifted / relabelled / missed segments plus extras), both as id maps + segments."""
    ids = np.zeros((h, w), np.int64)
    new = iter(rng.choice(np.arange(1, 1 << 24), size=segments + 8, replace=False).tolist())
    gt_segments = []
    n_stuff = max(1, segments // 5)
    edges = np.linspace(0, w, n_stuff + 1).astype(int)
    for left, right in zip(edges[:-1], edges[1:]):
        i = next(new)
        ids[:, left:right] = i
        gt_segments.append({"id": i, "category_id": int(rng.choice(stuff)), "iscrowd": 0})
    for _ in range(segments - n_stuff):
        y, x = rng.integers(0, h - 20), rng.integers(0, w - 20)
        i = next(new)
        ids[y : y + rng.integers(10, 80), x : x + rng.integers(10, 80)] = i
        crowd = int(rng.random() < 0.05)
        gt_segments.append({"id": i, "category_id": int(rng.choice(things)), "iscrowd": crowd})
    ids[rng.random((h, w)) < 0.02] = 0
    for s in gt_segments:
        s["area"] = int((ids == s["id"]).sum())
    gt_segments = [s for s in gt_segments if s["area"] > 0]

    pred = np.zeros_like(ids)
    pred_segments = []
    for k, s in enumerate(gt_segments, start=1):
        if rng.random() < 0.1:
            continue
        mask = np.roll(ids == s["id"], int(rng.integers(-4, 5)), axis=int(rng.integers(0, 2)))
        c = s["category_id"]
        if rng.random() < 0.1:
            c = int(rng.choice(things if c in things else stuff))
        pred[mask] = k
        pred_segments.append({"id": k, "category_id": c})
    for k in range(len(gt_segments) + 1, len(gt_segments) + 4):
        y, x = rng.integers(0, h - 20), rng.integers(0, w - 20)
        pred[y : y + 15, x : x + 15] = k
        pred_segments.append({"id": k, "category_id": int(rng.choice(things))})
    present = set(np.unique(pred).tolist())
    pred_segments = [s for s in pred_segments if s["id"] in present]
    return ids, gt_segments, pred, pred_segments


def _no_image(record: Dict) -> Dict:
    """A test mapper's output without the image: what is left to time is the ground truth."""
    return {"image_id": record["image_id"]}


def _transfer_cpu_ms(records: List[Dict], mapper) -> float:
    """Main-process CPU ms per image to receive `mapper(record)` from one DataLoader worker
    (CPU time: the wait for the worker is not counted)."""
    loader = DataLoader(
        MapDataset(records, mapper), batch_size=1, num_workers=1, collate_fn=trivial_batch_collator
    )
    iterator = iter(loader)
    next(iterator)  # the worker has started
    start = time.process_time()
    n = sum(1 for _ in iterator)
    return 1000 * (time.process_time() - start) / max(n, 1)


def bench_panoptic(
    root: str, images: int, h: int, w: int, segments: int, categories: int, rounds: int
) -> Dict[str, float]:
    rng = np.random.default_rng(1)
    num_things = categories * 80 // 133
    cats = [
        {"id": c, "name": f"cat{c}", "isthing": int(c <= num_things), "color": [0, 0, 0]}
        for c in range(1, categories + 1)
    ]
    things = [c["id"] for c in cats if c["isthing"]]
    stuff = [c["id"] for c in cats if not c["isthing"]]
    for d in ("gt", "pred"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    gt_anns, pred_anns, predictions = [], [], []
    for i in range(images):
        case = _panoptic_case(rng, h, w, segments, things, stuff)
        gt_ids, gt_segments, pred, pred_segments = case
        file_name = f"{i:06d}.png"
        Image.fromarray(panoptic_ids_to_rgb(gt_ids)).save(os.path.join(root, "gt", file_name))
        Image.fromarray(panoptic_ids_to_rgb(pred)).save(os.path.join(root, "pred", file_name))
        gt_anns.append({"image_id": i, "file_name": file_name, "segments_info": gt_segments})
        pred_anns.append({"image_id": i, "file_name": file_name, "segments_info": pred_segments})
        # A model's map: int32 ids 1, 2, ... (maskformer.modeling.postprocessing).
        predictions.append((i, torch.from_numpy(pred.astype(np.int32)), pred_segments))
    for kind, anns in (("gt", gt_anns), ("pred", pred_anns)):
        with open(os.path.join(root, kind + ".json"), "w") as f:
            json.dump({"annotations": anns, "categories": cats, "images": []}, f)
    name = "benchmark_evaluation_panoptic"
    MetadataCatalog.get(name).set(
        panoptic_json=os.path.join(root, "gt.json"), panoptic_root=os.path.join(root, "gt")
    )
    # The dataset dicts the test loader maps (Detectron2's COCO panoptic fields).
    records = [
        {
            "image_id": a["image_id"],
            "pan_seg_file_name": os.path.join(root, "gt", a["file_name"]),
            "segments_info": a["segments_info"],
        }
        for a in gt_anns
    ]
    from panopticapi.evaluation import pq_compute

    def evaluate(evaluator, inputs):
        evaluator.reset()
        for input, (_, pred, segs) in zip(inputs, predictions):
            evaluator.process([input], [{"panoptic_seg": (pred, segs)}])
        return evaluator.evaluate()["panoptic_seg"]

    from_files = PanopticEvaluator(name, num_workers=0)
    from_loader = PanopticEvaluator(name, num_workers=0)
    plain_inputs = [
        {"image_id": r["image_id"], "file_name": f"{i}.jpg"} for i, r in enumerate(records)
    ]
    with_gt, without_gt = WithPanopticGroundTruth(_no_image), _no_image
    times: Dict[str, List[float]] = {k: [] for k in ("pq", "files", "decode", "loader", "send")}
    for _ in range(rounds):
        start = time.perf_counter()
        with bounded_pq_workers(1), contextlib.redirect_stdout(io.StringIO()):
            reference = pq_compute(
                os.path.join(root, "gt.json"),
                os.path.join(root, "pred.json"),
                os.path.join(root, "gt"),
                os.path.join(root, "pred"),
            )
        times["pq"].append(time.perf_counter() - start)
        start = time.perf_counter()
        res_files = evaluate(from_files, plain_inputs)
        times["files"].append(time.perf_counter() - start)
        start = time.perf_counter()
        loader_inputs = [with_gt(r) for r in records]  # in the loader's workers
        times["decode"].append(time.perf_counter() - start)
        start = time.perf_counter()
        res_loader = evaluate(from_loader, loader_inputs)
        times["loader"].append(time.perf_counter() - start)
        sent = _transfer_cpu_ms(records, with_gt) - _transfer_cpu_ms(records, without_gt)
        times["send"].append(sent * images / 1000)
    MetadataCatalog.remove(name)

    is_thing = np.array([c["isthing"] == 1 for c in cats])
    category_ids = [c["id"] for c in cats]

    def max_abs_diff(res, evaluator) -> float:
        """In PQ points (0..100): All / Things / Stuff, and every category that occurs."""
        summary = max(
            abs(res[k + short] - 100 * reference[group][k.lower()])
            for short, group in (("", "All"), ("_th", "Things"), ("_st", "Stuff"))
            for k in ("PQ", "SQ", "RQ")
        )
        per_class = pq_summary(evaluator._stats, is_thing)["per_class"]
        per_category = max(
            abs(100 * per_class[k][i] - 100 * reference["per_class"][c][k.lower()])
            for i, c in enumerate(category_ids)
            if per_class["occurs"][i]
            for k in ("PQ", "SQ", "RQ")
        )
        return max(summary, per_category)

    ms = {k: 1000 * statistics.median(v) / images for k, v in times.items()}
    return {
        "pq_compute_ms": ms["pq"],
        "ours_ms": ms["files"],
        "loader_ms": ms["loader"],
        "loader_send_ms": max(ms["send"], 0.0),
        "loader_decode_ms": ms["decode"],
        "max_abs_diff": max_abs_diff(res_files, from_files),
        "loader_max_abs_diff": max_abs_diff(res_loader, from_loader),
        "segments_per_image": statistics.mean(len(a["segments_info"]) for a in gt_anns),
    }


def bench_memory(root: str, images: int, size: int, classes: int) -> Dict[str, float]:
    """Our semantic evaluator over `images` images (8 distinct ones, cycled): what it keeps
    after 10 and after all, and the growth of the process's peak RSS."""
    rng = np.random.default_rng(2)
    distinct = []
    for i in range(8):
        gt = _ground_truth(rng, size, classes)
        path = os.path.join(root, f"mem_{i}.png")
        Image.fromarray(gt).save(path)
        distinct.append((path, _scores(gt, classes, seed=100 + i).argmax(0)))
    records = [
        {"file_name": f"m{i}.jpg", "sem_seg_file_name": distinct[i % 8][0]} for i in range(images)
    ]
    name = "benchmark_evaluation_memory"
    DatasetCatalog.register(name, lambda: records)
    meta = MetadataCatalog.get(name)
    meta.set(stuff_classes=[f"c{i}" for i in range(classes)], ignore_label=IGNORE)
    evaluator = SemanticEvaluator(name)
    evaluator.reset()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kept = {}
    for i, record in enumerate(records, start=1):
        evaluator.process([record], [{"sem_seg_labels": distinct[(i - 1) % 8][1]}])
        if i in (10, images):
            state = (evaluator._conf, evaluator._boundary, evaluator._predictions)
            kept[i] = len(pickle.dumps(state))
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)
    return {
        "kept_bytes_after_10": kept.get(10, kept[images]),
        "kept_bytes_after_all": kept[images],
        "peak_rss_growth_mb": (rss_after - rss_before) / 1024,
    }


def main(argv=None) -> Dict[str, Dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", type=int, default=20, help="images per semantic/panoptic run")
    p.add_argument("--size", type=int, default=512, help="semantic: square image side")
    p.add_argument("--classes", type=int, default=150, help="semantic: classes")
    p.add_argument("--pan-size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    p.add_argument("--segments", type=int, default=40, help="panoptic: segments per image")
    p.add_argument("--categories", type=int, default=133, help="panoptic: categories")
    p.add_argument("--rounds", type=int, default=3, help="panoptic: alternating rounds")
    p.add_argument("--memory-images", type=int, default=2000, help="images of the memory run")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as root:
        for d in ("sem", "pan"):
            os.makedirs(os.path.join(root, d))
        sem = bench_semantic(os.path.join(root, "sem"), args.images, args.size, args.classes)
        pan = bench_panoptic(
            os.path.join(root, "pan"),
            args.images,
            *args.pan_size,
            args.segments,
            args.categories,
            args.rounds,
        )
        mem = bench_memory(os.path.join(root, "sem"), args.memory_images, args.size, args.classes)
    h, w = args.pan_size
    d2, pq = sem["d2_ms"], pan["pq_compute_ms"]
    semantic = f"{args.size}x{args.size}, {args.classes} classes"
    panoptic = f"{h}x{w}, {pan['segments_per_image']:.0f} segments, {args.categories} categories"
    rows = [
        (f"Detectron2 SemSegEvaluator, scores, {semantic}", d2, d2, None),
        ("SemanticEvaluator, scores (argmax included)", sem["scores_ms"], d2, sem["max_abs_diff"]),
        ("SemanticEvaluator, sem_seg_labels", sem["labels_ms"], d2, sem["max_abs_diff"]),
        (f"panopticapi pq_compute, 1 core, {panoptic}", pq, pq, None),
        ("PanopticEvaluator, reads the GT PNGs", pan["ours_ms"], pq, pan["max_abs_diff"]),
        (
            "PanopticEvaluator, GT decoded by the test loader (main process: process())",
            pan["loader_ms"],
            pq,
            pan["loader_max_abs_diff"],
        ),
        (
            "  + receiving that GT from a loader worker (main-process CPU)",
            pan["loader_ms"] + pan["loader_send_ms"],
            pq,
            pan["loader_max_abs_diff"],
        ),
        ("the test loader's GT decoding (in its workers)", pan["loader_decode_ms"], None, None),
    ]
    print(f"torch threads: {torch.get_num_threads()}; {args.images} images per run")
    print("| evaluation | ms / image | speed-up | max abs diff of the metrics |")
    print("|---|---:|---:|---:|")
    for what, ms, reference, diff in rows:
        shown = "-" if diff is None else f"{diff:.1e}"
        shown = "reference" if ms == reference else shown
        speed_up = "-" if reference is None else f"{reference / ms:.1f}x"
        print(f"| {what} | {ms:.2f} | {speed_up} | {shown} |")
    print(
        f"Memory: SemanticEvaluator keeps {mem['kept_bytes_after_10']} bytes after 10 images and "
        f"{mem['kept_bytes_after_all']} after {args.memory_images}; peak RSS grew "
        f"{mem['peak_rss_growth_mb']:.1f} MB. Detectron2's keeps "
        f"{sem['d2_kept_mb_per_image']:.2f} MB of RLEs per image."
    )
    print(f"Writing the semantic report (tables, plots): {sem['report_s']:.1f} s per evaluation.")
    return {"semantic": sem, "panoptic": pan, "memory": mem}


if __name__ == "__main__":
    main()
