"""Pretrained 3-channel first convolutions for inputs of C != 3 channels (multispectral, depth),
adapted by timm's `adapt_input_conv` as timm adapts its own weights (the rule: docs/configs.md).
"""

from __future__ import annotations

import logging
from typing import Dict, List, Mapping

from timm.models import adapt_input_conv
from torch import Tensor

__all__ = ["adapt_input_convs", "rgb_shaped"]

logger = logging.getLogger(__name__)


def adapt_input_convs(
    state: Dict[str, Tensor], model_state: Mapping[str, Tensor], path: str = "checkpoint"
) -> List[str]:
    """Adapt, in place, every convolution weight of `state` (the checkpoint's weights, in the
    model's names) pretrained on 3 input channels whose counterpart in `model_state` takes
    C != 3 (same output channels and kernel). Returns the adapted keys (each also logged)."""
    adapted = []
    for key, value in state.items():
        target = model_state.get(key)
        if target is None or value.dim() != 4 or target.dim() != 4:
            continue
        c_file, c_model = value.shape[1], target.shape[1]
        same_kernel = value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]
        if c_file == 3 and c_model != 3 and same_kernel:
            state[key] = adapt_input_conv(c_model, value).to(value.dtype)
            adapted.append(key)
            logger.info(
                f"{path}: {key} was pretrained on 3 input channels; adapted to the model's "
                f"{c_model} (RGB filters repeated R, G, B, ..., scaled by 3/{c_model}; one "
                "channel: their sum)"
            )
    return adapted


def rgb_shaped(model_state: Mapping[str, Tensor], in_channels: int) -> Dict[str, Tensor]:
    """`model_state` with every convolution weight taking `in_channels` != 3 inputs shown as
    taking 3 (shape only, on the meta device), for name matching by shape (Detectron2's
    `align_and_update_state_dicts`), which would otherwise drop an RGB first convolution
    before `adapt_input_convs` sees it."""
    if in_channels == 3:
        return dict(model_state)
    out = dict(model_state)
    for key, v in model_state.items():
        if v.dim() == 4 and v.shape[1] == in_channels:
            out[key] = v.new_empty((v.shape[0], 3, *v.shape[2:]), device="meta")
    return out
