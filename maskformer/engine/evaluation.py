"""Evaluation on a given dataset: the model post-processes for that dataset's classes."""

from __future__ import annotations

from typing import Dict, List

from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..modeling.meta_arch import MaskFormer

__all__ = ["EvaluatedOn", "evaluated_on"]


class EvaluatedOn(nn.Module):
    """A MaskFormer called with `dataset_name=`: it post-processes for the thing and stuff
    classes of the dataset it is evaluated on (several test datasets may differ)."""

    def __init__(self, model: nn.Module, dataset_name: str):
        super().__init__()
        self.model = model
        self.dataset_name = dataset_name
        self.train(model.training)  # so that evaluation restores the model's own mode

    def forward(self, batched_inputs: List[Dict]) -> List[Dict]:
        return self.model(batched_inputs, dataset_name=self.dataset_name)


def evaluated_on(model: nn.Module, dataset_name: str) -> nn.Module:
    """`EvaluatedOn(model, dataset_name)` for a MaskFormer (possibly in DDP); other models, whose
    outputs do not depend on the dataset's classes, as they are."""
    module = model.module if isinstance(model, DistributedDataParallel) else model
    return EvaluatedOn(model, dataset_name) if isinstance(module, MaskFormer) else model
