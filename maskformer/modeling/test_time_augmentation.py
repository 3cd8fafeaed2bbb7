"""Test-time augmentation for semantic segmentation: multi-scale and horizontal flip (TEST.AUG).

The model's per-class scores of every copy, already at the original resolution, are un-flipped
and averaged.
"""

from __future__ import annotations

from typing import Callable, Dict, List

import torch
from detectron2.config import configurable
from detectron2.data.transforms import HFlipTransform
from detectron2.modeling import DatasetMapperTTA
from torch import Tensor, nn

__all__ = ["SemanticSegmentorWithTTA"]


class SemanticSegmentorWithTTA(nn.Module):
    """Wraps a semantic segmentation model; same call interface, averaged predictions."""

    @configurable
    def __init__(self, *, model: nn.Module, tta_mapper: Callable[[Dict], List[Dict]]):
        """
        Args:
            model: inputs [{"image", "height", "width"}] -> [{"sem_seg": (K, height, width)}].
            tta_mapper: a test input dict -> its augmented copies with their "transforms"
                (Detectron2's `DatasetMapperTTA`).
        """
        super().__init__()
        self.model = model
        self.tta_mapper = tta_mapper

    @classmethod
    def from_config(cls, cfg, model: nn.Module):
        return {"model": model, "tta_mapper": DatasetMapperTTA(cfg)}

    def forward(self, batched_inputs: List[Dict]) -> List[Dict[str, Tensor]]:
        return [self._predict_one(x) for x in batched_inputs]

    @torch.no_grad()
    def _predict_one(self, inputs: Dict) -> Dict[str, Tensor]:
        if "image" not in inputs:
            raise KeyError(
                "SemanticSegmentorWithTTA needs the loaded 'image' in each input dict (the "
                "output of Detectron2's test DatasetMapper)"
            )
        inputs = dict(inputs)
        # DatasetMapperTTA resizes relative to the original size; the model outputs at it.
        inputs.setdefault("height", inputs["image"].shape[-2])
        inputs.setdefault("width", inputs["image"].shape[-1])
        total = None
        augmented = self.tta_mapper(inputs)
        # One copy at a time: batching copies of different sizes would pad them, and padding
        # changes MaskFormer's attention.
        for aug in augmented:
            output = self.model([aug])[0]
            if "sem_seg" not in output:
                raise KeyError(
                    "test-time augmentation averages 'sem_seg' scores; the model gave "
                    f"{sorted(output)} (MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT must be 'scores')"
                )
            scores = output["sem_seg"].float()
            if any(isinstance(t, HFlipTransform) for t in aug["transforms"].transforms):
                scores = scores.flip(dims=[-1])
            total = scores if total is None else total + scores
        return {"sem_seg": total / len(augmented)}
