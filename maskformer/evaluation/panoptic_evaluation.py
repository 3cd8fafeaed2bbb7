"""Panoptic quality with a bounded number of worker processes.

panopticapi's `pq_compute` starts one process per CPU of the machine (64 on a large server, for
a handful of images or beside 8 training processes) and never closes its pool: the workers live
until the pool happens to be garbage-collected. This computes the same statistics with at most
`num_workers` processes (and no more than CPUs), closed and joined before it returns (1: no
process at all).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from typing import Dict, Iterator, List, Optional, Tuple

from detectron2.evaluation import COCOPanopticEvaluator

__all__ = ["BoundedCOCOPanopticEvaluator", "bounded_pq_workers", "pq_compute_multi_core"]


def pq_compute_multi_core(
    matched_annotations: List[Tuple[Dict, Dict]],
    gt_folder: str,
    pred_folder: str,
    categories: Dict[int, Dict],
    *,
    num_workers: int,
):
    """panopticapi's `pq_compute_multi_core` with at most `num_workers` processes.

    Returns the summed `panopticapi.evaluation.PQStat` over all images.
    """
    from panopticapi.evaluation import PQStat, pq_compute_single_core

    n = max(1, min(num_workers, len(matched_annotations), os.cpu_count() or 1))
    pq_stat = PQStat()
    if n == 1:
        pq_stat += pq_compute_single_core(
            0, matched_annotations, gt_folder, pred_folder, categories
        )
        return pq_stat
    chunks = [matched_annotations[i::n] for i in range(n)]  # per-image sums: any split will do
    with multiprocessing.Pool(processes=n) as pool:
        results = [
            pool.apply_async(pq_compute_single_core, (i, chunk, gt_folder, pred_folder, categories))
            for i, chunk in enumerate(chunks)
        ]
        for r in results:
            pq_stat += r.get()
        pool.close()
        pool.join()
    return pq_stat


@contextlib.contextmanager
def bounded_pq_workers(num_workers: int) -> Iterator[None]:
    """Within the block, panopticapi's `pq_compute` uses at most `num_workers` processes.

    `pq_compute` looks up `pq_compute_multi_core` in its module when called, so replacing that
    name for the duration of the block bounds every caller, Detectron2's evaluator included.
    """
    import panopticapi.evaluation as pq_module

    original = pq_module.pq_compute_multi_core

    def bounded(matched, gt_folder, pred_folder, categories):
        return pq_compute_multi_core(
            list(matched), gt_folder, pred_folder, categories, num_workers=num_workers
        )

    pq_module.pq_compute_multi_core = bounded
    try:
        yield
    finally:
        pq_module.pq_compute_multi_core = original


class BoundedCOCOPanopticEvaluator(COCOPanopticEvaluator):
    """Detectron2's COCOPanopticEvaluator (PQ, SQ, RQ via panopticapi), with at most
    `num_workers` worker processes, none of them left running afterwards."""

    def __init__(self, dataset_name: str, output_dir: Optional[str] = None, *, num_workers: int):
        super().__init__(dataset_name, output_dir)
        self._num_workers = num_workers

    def evaluate(self):
        with bounded_pq_workers(self._num_workers):
            return super().evaluate()
