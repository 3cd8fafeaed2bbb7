"""Evaluation batches that never change a result: images of one size per batch.

A batch pads every image to the largest one, and the padding changes a smaller image's output
(it enters the convolutions near the border and the transformer's attention, which is not
masked, as in the official code): `tools/benchmarks/batch_agreement.py` measures by how much.
Images of one size need no padding, so their outputs are the ones each would get alone, and the
metric is the same for every TEST.IMS_PER_BATCH.
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, Iterator, List, Tuple

__all__ = ["SameSizeBatches"]


class SameSizeBatches:
    """Regroups a stream of one-image batches into batches of up to `batch_size` images of one
    size ("image" tensors of equal (H, W)), in order of completion; leftovers at the end."""

    def __init__(self, loader: Iterable[List[Dict]], batch_size: int):
        if batch_size < 1:
            raise ValueError(f"TEST.IMS_PER_BATCH must be at least 1, got {batch_size}")
        self.loader = loader
        self.batch_size = batch_size

    def __len__(self) -> int:
        # Batches if all images had one size (progress and ETA logging only).
        return math.ceil(len(self.loader) / self.batch_size)

    def __iter__(self) -> Iterator[List[Dict]]:
        pending: Dict[Tuple[int, int], List[Dict]] = {}
        for batch in self.loader:
            for item in batch:
                size = tuple(item["image"].shape[-2:])
                group = pending.setdefault(size, [])
                group.append(item)
                if len(group) == self.batch_size:
                    yield pending.pop(size)
        yield from pending.values()
