"""Evaluation on a given dataset: the model post-processes for that dataset's classes."""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..modeling.meta_arch import thing_ids_of

__all__ = ["post_processing_for"]


@contextlib.contextmanager
def post_processing_for(model: nn.Module, dataset_name: str) -> Iterator[None]:
    """Within the block, `model` post-processes for the dataset `dataset_name`.

    Which classes are things (one panoptic segment per instance, instance output) and which are
    stuff (one merged segment) is a property of the dataset being evaluated; several test datasets
    may differ. Models without `thing_ids` are left alone.
    """
    module = model.module if isinstance(model, DistributedDataParallel) else model
    if not hasattr(module, "thing_ids"):
        yield
        return
    previous = module.thing_ids
    module.thing_ids = thing_ids_of(dataset_name)
    try:
        yield
    finally:
        module.thing_ids = previous
