"""An evaluator's state from every process, on the main one (Detectron2's `comm`)."""

from __future__ import annotations

import itertools
from typing import List, Optional, Tuple

from detectron2.utils import comm

__all__ = ["gather_on_main"]


def gather_on_main(sums: Tuple, items: List) -> Optional[Tuple[Tuple, List]]:
    """(sums, items) of all processes on the main process: each of `sums` (arrays or numbers)
    added over the processes, the `items` lists concatenated in rank order; None on the others."""
    comm.synchronize()
    gathered = comm.all_gather((sums, items))
    if not comm.is_main_process():
        return None
    totals = tuple(sum(g[0][i] for g in gathered) for i in range(len(sums)))
    return totals, list(itertools.chain.from_iterable(g[1] for g in gathered))
