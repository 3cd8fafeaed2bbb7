"""Frozen backbones (`MODEL.BACKBONE.FREEZE`): no gradients, eval-mode normalisation, no
optimizer state, for any backbone (ResNet, Swin, timm, a foundation model kept as it is)."""

from __future__ import annotations

from detectron2.modeling.backbone.vit import SimpleFeaturePyramid
from torch import nn

__all__ = ["freeze_", "freeze_backbone", "is_frozen"]


def _stay_in_eval(module: nn.Module, mode: bool = True) -> nn.Module:
    # `nn.Module.train` sets `training` on each child by calling the child's own `train`;
    # answering every call with eval keeps BatchNorm statistics and dropout off in model.train().
    return nn.Module.train(module, False)


def freeze_(module: nn.Module) -> nn.Module:
    """Freeze `module` in place and return it: `requires_grad=False` (so the optimizer and DDP
    leave its parameters out), and eval mode whatever `train()` its parents receive."""
    module.requires_grad_(False)
    for m in module.modules():
        # An instance attribute shadows nn.Module.train for this module only.
        m.train = _stay_in_eval.__get__(m)  # type: ignore[method-assign]
    module.train(False)
    return module


def is_frozen(module: nn.Module) -> bool:
    """Whether `freeze_` was applied to `module`."""
    return getattr(module.train, "__func__", None) is _stay_in_eval


def freeze_backbone(backbone: nn.Module) -> nn.Module:
    """Freeze the pretrained part of a backbone: all of it, or, for a ViTDet-style
    `SimpleFeaturePyramid`, the network it adapts (its pyramid layers are new and must train)."""
    freeze_(backbone.net if isinstance(backbone, SimpleFeaturePyramid) else backbone)
    return backbone
