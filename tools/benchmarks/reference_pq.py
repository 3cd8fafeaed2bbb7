"""panopticapi's `pq_compute` in the calling process: the reference PQ that the benchmarks and
tests compare ours with.

`pq_compute` starts one worker process per CPU of the machine and never closes its pool; run in
this process, it starts none, and its timing is that of one core.
"""

from __future__ import annotations

import contextlib
import io
from typing import Dict


def panopticapi_pq(gt_json: str, pred_json: str, gt_folder: str, pred_folder: str) -> Dict:
    """panopticapi's `pq_compute` results ("All", "Things", "Stuff", "per_class"), computed
    in this process, its printing silenced."""
    import panopticapi.evaluation as pq_module

    original = pq_module.pq_compute_multi_core

    def in_this_process(matched_annotations, gt_folder, pred_folder, categories):
        return pq_module.pq_compute_single_core(
            0, list(matched_annotations), gt_folder, pred_folder, categories
        )

    # `pq_compute` looks `pq_compute_multi_core` up in its module when it is called.
    pq_module.pq_compute_multi_core = in_this_process
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return pq_module.pq_compute(gt_json, pred_json, gt_folder, pred_folder)
    finally:
        pq_module.pq_compute_multi_core = original
