"""ImageNet classifiers -> Detectron2 backbone-initialisation files: `{"model": {name: numpy
array}, "__author__": ..., "matching_heuristics": True}`, names without the `backbone.` prefix
(matched by suffix at loading), classifier heads dropped. `pickle.dump` the result: plain data
only, which `MaskFormerCheckpointer` reads without running code.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Mapping

import numpy as np
from torch import Tensor

__all__ = ["swin_imagenet_to_d2", "torchvision_resnet_to_d2"]


def _numpy(v: Tensor) -> np.ndarray:
    return v.detach().cpu().numpy()


def torchvision_resnet_to_d2(state: Mapping[str, Tensor]) -> Dict[str, Any]:
    """A torchvision ResNet-{18,34,50,101,152} state dict -> Detectron2 ResNet names. Use with
    `RESNETS.STRIDE_IN_1X1: False` (torchvision strides in the 3x3 conv) and RGB ImageNet
    `PIXEL_MEAN`/`PIXEL_STD`.

    Raises:
        ValueError: the state dict is not a torchvision ResNet's.
    """
    if "conv1.weight" not in state or "layer1.0.conv1.weight" not in state:
        raise ValueError(
            "not a torchvision ResNet state dict: expected 'conv1.weight' and "
            f"'layer1.0.conv1.weight', got e.g. {list(state)[:4]}"
        )
    out = {}
    for key, value in state.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        new = key if key.startswith("layer") else "stem." + key
        new = re.sub(r"^layer(\d)", lambda m: f"res{int(m.group(1)) + 1}", new)
        new = re.sub(r"\bbn(\d)\.", r"conv\1.norm.", new)
        new = new.replace("downsample.0.", "shortcut.").replace("downsample.1.", "shortcut.norm.")
        out[new] = _numpy(value)
    return {"model": out, "__author__": "torchvision", "matching_heuristics": True}


def swin_imagenet_to_d2(checkpoint: Mapping[str, Any]) -> Dict[str, Any]:
    """An official Swin ImageNet checkpoint (`{"model": state dict}` or the state dict) ->
    Detectron2 names for `D2SwinTransformer`.

    The names already match (`patch_embed.*`, `layers.{i}.*`); dropped are the classifier
    `head.*`, the final `norm.*` (MaskFormer normalises each stage with its own `norm{i}`, which
    starts from scratch) and the `attn_mask` buffers (recomputed for every input size).

    Raises:
        ValueError: the checkpoint is not a Swin Transformer's.
    """
    state = checkpoint.get("model", checkpoint)
    if "patch_embed.proj.weight" not in state:
        raise ValueError(
            "not a Swin Transformer checkpoint: expected 'patch_embed.proj.weight', got e.g. "
            f"{list(state)[:4]}"
        )
    out = {
        k: _numpy(v)
        for k, v in state.items()
        if not k.startswith(("head.", "norm.")) and not k.endswith("attn_mask")
    }
    return {"model": out, "__author__": "third_party", "matching_heuristics": True}
