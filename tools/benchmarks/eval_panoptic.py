#!/usr/bin/env python
"""Milliseconds per image of our PanopticEvaluator beside panopticapi's pq_compute, on the same
synthetic predictions (the model excluded), with a check that the metrics are the same.

    python tools/benchmarks/eval_panoptic.py       # 20 images of 480x640, 40 segments, 133 cats

panopticapi's `pq_compute` runs on one core, given the prediction PNGs already written. Ours
runs on the id maps in memory (no worker thread), once reading and decoding each ground-truth
PNG itself as panopticapi does, once given the ground truth as the test loader's workers decode
it for panoptic output (`maskformer.data.build_test_loader`): then the decoding is not the main
process's work, but receiving the decoded map from a worker is (timed apart, as the main
process's CPU time per image through a one-worker DataLoader). Rounds interleave all of them;
medians. The metrics are compared with panopticapi's: PQ, SQ, RQ of All / Things / Stuff and
of every category.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", type=int, default=20, help="images per round (default 20)")
    p.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    p.add_argument("--segments", type=int, default=40, help="ground-truth segments per image")
    p.add_argument("--categories", type=int, default=133, help="categories (default 133)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    return p.parse_args(argv)


def no_image(record: Dict) -> Dict:
    """A test mapper's output without the image: what is left to time is the ground truth."""
    return {"image_id": record["image_id"]}


def transfer_cpu_ms(records: List[Dict], mapper) -> float:
    """Main-process CPU ms per image to receive `mapper(record)` from one DataLoader worker
    (CPU time: the wait for the worker is not counted)."""
    from detectron2.data.build import trivial_batch_collator
    from detectron2.data.common import MapDataset
    from torch.utils.data import DataLoader

    dataset = MapDataset(records, mapper)
    loader = DataLoader(dataset, batch_size=1, num_workers=1, collate_fn=trivial_batch_collator)
    iterator = iter(loader)
    next(iterator)  # the worker has started
    start = time.process_time()
    n = sum(1 for _ in iterator)
    return 1000 * (time.process_time() - start) / max(n, 1)


def max_abs_diff(res: Dict, evaluator, reference: Dict, cats: List[Dict]) -> float:
    """Largest difference from panopticapi's `reference` in PQ points (0..100): PQ, SQ, RQ of
    All / Things / Stuff and of every category that occurs."""
    from maskformer.evaluation import pq_summary

    groups = (("", "All"), ("_th", "Things"), ("_st", "Stuff"))
    diffs = [
        abs(res[k + short] - 100 * reference[group][k.lower()])
        for short, group in groups
        for k in ("PQ", "SQ", "RQ")
    ]
    is_thing = np.array([c["isthing"] == 1 for c in cats])
    per_class = pq_summary(evaluator._stats, is_thing)["per_class"]
    diffs += [
        abs(100 * per_class[k][i] - 100 * reference["per_class"][c["id"]][k.lower()])
        for i, c in enumerate(cats)
        if per_class["occurs"][i]
        for k in ("PQ", "SQ", "RQ")
    ]
    return max(diffs)


def bench(case: Dict, rounds: int) -> Dict[str, float]:
    """Per-image ms of each way to evaluate, and their metrics' largest differences."""
    from maskformer.data.build import WithPanopticGroundTruth
    from maskformer.evaluation import PanopticEvaluator
    from tools.benchmarks.reference_pq import panopticapi_pq

    files, records = case["files"], case["records"]

    def evaluate(evaluator, inputs):
        evaluator.reset()
        for x, prediction in zip(inputs, case["predictions"]):
            evaluator.process([x], [prediction])
        return evaluator.evaluate()["panoptic_seg"]

    from_files = PanopticEvaluator("benchmark_eval_panoptic", num_workers=0)
    from_loader = PanopticEvaluator("benchmark_eval_panoptic", num_workers=0)
    plain_inputs = [{"image_id": r["image_id"], "file_name": "image.jpg"} for r in records]
    with_gt = WithPanopticGroundTruth(no_image)
    times = {k: [] for k in ("pq", "files", "decode", "loader", "send")}

    def clock(key, fn):
        start = time.perf_counter()
        result = fn()
        times[key].append(time.perf_counter() - start)
        return result

    for _ in range(rounds):
        pq_files = (files["gt.json"], files["pred.json"], files["gt"], files["pred"])
        reference = clock("pq", lambda: panopticapi_pq(*pq_files))  # noqa: B023
        res_files = clock("files", lambda: evaluate(from_files, plain_inputs))
        # What the loader's workers do, then what the main process does with it.
        loader_inputs = clock("decode", lambda: [with_gt(r) for r in records])
        res_loader = clock("loader", lambda: evaluate(from_loader, loader_inputs))  # noqa: B023
        sent = transfer_cpu_ms(records, with_gt) - transfer_cpu_ms(records, no_image)
        times["send"].append(sent * len(records) / 1000)
    ms = {k: 1000 * statistics.median(v) / len(records) for k, v in times.items()}
    return {
        "pq_compute_ms": ms["pq"],
        "ours_ms": ms["files"],
        "loader_ms": ms["loader"],
        "loader_send_ms": max(ms["send"], 0.0),
        "loader_decode_ms": ms["decode"],
        "max_abs_diff": max_abs_diff(res_files, from_files, reference, case["cats"]),
        "loader_max_abs_diff": max_abs_diff(res_loader, from_loader, reference, case["cats"]),
        "segments_per_image": statistics.mean(len(r["segments_info"]) for r in records),
    }


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    args = parse_args(argv)
    import torch
    from detectron2.data import MetadataCatalog

    from tools.benchmarks.common import machine_line, markdown_table
    from tools.benchmarks.panoptic_case import write_dataset

    with tempfile.TemporaryDirectory() as root:
        case = write_dataset(
            root, images=args.images, size=args.size, segments=args.segments,
            categories=args.categories, dataset_name="benchmark_eval_panoptic",
        )  # fmt: skip
        res = bench(case, args.rounds)
    MetadataCatalog.remove("benchmark_eval_panoptic")
    pq, diff, loader_diff = res["pq_compute_ms"], res["max_abs_diff"], res["loader_max_abs_diff"]
    rows = [
        ("panopticapi `pq_compute`, 1 core, prediction PNGs already written", pq, None),
        ("`PanopticEvaluator` reading each GT PNG itself", res["ours_ms"], diff),
        ("`PanopticEvaluator` on GT decoded by the test loader (main process, `process()`)",
         res["loader_ms"], loader_diff),
        ("the same plus receiving that GT from a loader worker (main-process CPU)",
         res["loader_ms"] + res["loader_send_ms"], loader_diff),
    ]  # fmt: skip
    print(machine_line(torch.device("cpu")))
    h, w = args.size
    print(
        f"{args.images} images of {h}x{w}, {res['segments_per_image']:.0f} segments, "
        f"{args.categories} categories; {args.rounds} rounds"
    )
    table = [
        [what, f"{ms:.2f}"] + (["reference"] * 2 if d is None else [f"{pq / ms:.1f}x", f"{d:.1e}"])
        for what, ms, d in rows
    ]
    decoding = "the test loader's GT decoding, per image (in its workers)"
    table.append([decoding, f"{res['loader_decode_ms']:.2f}", "", ""])
    print(
        markdown_table(
            ["evaluation", "ms / image", "speed-up", "max abs diff of the metrics"], table
        )
    )
    return res


if __name__ == "__main__":
    main()
