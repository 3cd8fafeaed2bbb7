#!/usr/bin/env python
"""Milliseconds per image of our semantic evaluator beside Detectron2's SemSegEvaluator, on the
same synthetic predictions (the model excluded), with a check that the metrics are the same;
and the memory our evaluator keeps over many images.

    python tools/benchmarks/eval_semantic.py            # 20 images of 512x512, 150 classes

Per image, Detectron2 gets (K, H, W) scores ("sem_seg"); ours gets the same scores, and
separately their argmax as "sem_seg_labels" (what `--eval-only` gives it), interleaved image by
image. All read the same ground-truth PNGs. `evaluate()` is timed once and spread over the
images; none writes files then (our report, tables and plots, is timed apart, once).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import pickle
import resource
import statistics
import sys
import tempfile
import time
from typing import Dict, Optional, Sequence

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

IGNORE = 255


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", type=int, default=20, help="images timed (default 20)")
    p.add_argument("--size", type=int, default=512, help="square image side (default 512)")
    p.add_argument("--classes", type=int, default=150, help="classes (default 150)")
    p.add_argument("--memory-images", type=int, default=2000, help="images of the memory run")
    return p.parse_args(argv)


def ground_truth(rng, size: int, classes: int):
    """(size, size) uint8 blocky labels with 5% ignored pixels."""
    blocks = rng.integers(0, classes, (size // 32 + 1, size // 32 + 1))
    gt = blocks.repeat(32, 0).repeat(32, 1)[:size, :size].astype(np.uint8)
    gt[rng.random((size, size)) < 0.05] = IGNORE
    return gt


def scores_for(gt, classes: int, seed: int):
    """(K, H, W) float32 scores whose argmax agrees with `gt` on ~70% of its labelled pixels."""
    import torch

    rng = np.random.default_rng(seed)
    h, w = gt.shape
    scores = torch.rand(classes, h, w, generator=torch.Generator().manual_seed(seed))
    rows, cols = np.nonzero((rng.random((h, w)) < 0.7) & (gt != IGNORE))
    at = [torch.from_numpy(a.astype(np.int64)) for a in (gt[rows, cols], rows, cols)]
    scores[at[0], at[1], at[2]] += 1.0
    return scores


def register(name: str, records, classes: int) -> None:
    from detectron2.data import DatasetCatalog, MetadataCatalog

    DatasetCatalog.register(name, lambda: records)
    meta = MetadataCatalog.get(name)
    meta.set(stuff_classes=[f"c{i}" for i in range(classes)], ignore_label=IGNORE)


def unregister(name: str) -> None:
    from detectron2.data import DatasetCatalog, MetadataCatalog

    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def bench_speed(root: str, images: int, size: int, classes: int) -> Dict[str, float]:
    from detectron2.evaluation import SemSegEvaluator

    from maskformer.data.io import load_sem_seg_label
    from maskformer.evaluation import SemanticEvaluator

    rng = np.random.default_rng(0)
    name, records, gts = "benchmark_eval_semantic", [], []
    for i in range(images):
        gts.append(ground_truth(rng, size, classes))
        Image.fromarray(gts[-1]).save(os.path.join(root, f"sem_{i}.png"))
        records.append(
            {"file_name": f"{i}.jpg", "sem_seg_file_name": os.path.join(root, f"sem_{i}.png")}
        )
    register(name, records, classes)
    evaluators = {
        "d2": SemSegEvaluator(name, output_dir=None, sem_seg_loading_fn=load_sem_seg_label),
        "scores": SemanticEvaluator(name),
        "labels": SemanticEvaluator(name),
    }
    times = {key: [] for key in evaluators}
    for e in evaluators.values():
        e.reset()
    for i, record in enumerate(records):
        scores = scores_for(gts[i], classes, seed=i)  # one (K, H, W) tensor at a time
        outputs = {"d2": {"sem_seg": scores}, "scores": {"sem_seg": scores}}
        outputs["labels"] = {"sem_seg_labels": scores.argmax(0)}  # the model's work
        for key, evaluator in evaluators.items():
            start = time.perf_counter()
            evaluator.process([record], [outputs[key]])
            times[key].append(time.perf_counter() - start)
    res = {"d2_kept_mb_per_image": len(pickle.dumps(evaluators["d2"]._predictions)) / images / 1e6}
    metrics = {}
    for key, evaluator in evaluators.items():
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            metrics[key] = evaluator.evaluate()["sem_seg"]
        evaluate_s = time.perf_counter() - start
        res[f"{key}_ms"] = 1000 * (statistics.median(times[key]) + evaluate_s / images)
    evaluators["labels"]._output_dir = os.path.join(root, "report")
    start = time.perf_counter()
    evaluators["labels"].evaluate()
    res["report_s"] = time.perf_counter() - start
    unregister(name)
    names = ("mIoU", "fwIoU", "mACC", "pACC", "IoU", "ACC")
    res["max_abs_diff"] = max(
        abs(metrics[ours][k] - metrics["d2"][k])
        for ours in ("scores", "labels")
        for k in metrics["d2"]
        if k.split("-")[0] in names and not np.isnan(metrics["d2"][k])
    )
    return res


def bench_memory(root: str, images: int, size: int, classes: int) -> Dict[str, float]:
    """Our evaluator over `images` images (8 distinct ones, cycled): the bytes of its state
    after 10 images and after all, and the growth of the process's peak RSS."""
    from maskformer.evaluation import SemanticEvaluator

    rng = np.random.default_rng(2)
    distinct = []
    for i in range(8):
        gt = ground_truth(rng, size, classes)
        Image.fromarray(gt).save(os.path.join(root, f"mem_{i}.png"))
        labels = scores_for(gt, classes, seed=100 + i).argmax(0)
        distinct.append((os.path.join(root, f"mem_{i}.png"), labels))
    name = "benchmark_eval_semantic_memory"
    records = [
        {"file_name": f"{i}.jpg", "sem_seg_file_name": distinct[i % 8][0]} for i in range(images)
    ]
    register(name, records, classes)
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
    unregister(name)
    return {
        "kept_bytes_after_10": kept.get(10, kept[images]),
        "kept_bytes_after_all": kept[images],
        "peak_rss_growth_mb": (rss_after - rss_before) / 1024,
    }


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    args = parse_args(argv)
    import torch

    from tools.benchmarks.common import machine_line, markdown_table

    with tempfile.TemporaryDirectory() as root:
        res = bench_speed(root, args.images, args.size, args.classes)
        res.update(bench_memory(root, args.memory_images, args.size, args.classes))
    d2, diff = res["d2_ms"], f"{res['max_abs_diff']:.1e}"
    rows = [
        ('Detectron2 `SemSegEvaluator`, "sem_seg" scores', d2, "reference", "reference"),
        (
            '`SemanticEvaluator`, "sem_seg" scores (their argmax included)',
            res["scores_ms"],
            None,
            diff,
        ),
        ('`SemanticEvaluator`, "sem_seg_labels"', res["labels_ms"], None, diff),
    ]
    print(machine_line(torch.device("cpu")))
    print(f"{args.images} images of {args.size}x{args.size}, {args.classes} classes")
    table = [
        [what, f"{ms:.2f}", speed_up or f"{d2 / ms:.1f}x", shown]
        for what, ms, speed_up, shown in rows
    ]
    print(
        markdown_table(
            ["evaluation", "ms / image", "speed-up", "max abs diff of the metrics"], table
        )
    )
    print(
        f"Memory: SemanticEvaluator keeps {res['kept_bytes_after_10']} bytes after 10 images and "
        f"{res['kept_bytes_after_all']} after {args.memory_images}; peak RSS grew "
        f"{res['peak_rss_growth_mb']:.1f} MB. Detectron2's keeps "
        f"{res['d2_kept_mb_per_image']:.2f} MB of RLEs per image."
    )
    print(f"Writing the semantic report (tables, plots): {res['report_s']:.1f} s per evaluation.")
    return res


if __name__ == "__main__":
    main()
