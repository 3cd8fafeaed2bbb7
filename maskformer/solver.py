"""Optimizer of the official recipe: parameter groups, AdamW/SGD, full-model gradient clipping."""

from __future__ import annotations

from typing import Any, Dict, List, Type

import torch
from detectron2.solver import get_default_optimizer_params
from detectron2.solver.build import maybe_add_gradient_clipping, reduce_param_groups
from torch import nn

__all__ = ["build_optimizer", "optimizer_param_groups", "with_full_model_gradient_clipping"]

# Position tables and tokens (Swin, timm ViTs) are offsets, not weights to shrink.
_NO_DECAY_PARAM_NAMES = (
    "relative_position_bias_table",
    "absolute_pos_embed",
    "pos_embed",
    "cls_token",
    "reg_token",
)


def optimizer_param_groups(
    model: nn.Module,
    *,
    base_lr: float,
    weight_decay: float,
    weight_decay_norm: float,
    weight_decay_embed: float,
    backbone_multiplier: float,
) -> List[Dict[str, Any]]:
    """Parameter groups with the official MaskFormer rules.

    - LR x `backbone_multiplier` for parameters whose qualified name contains "backbone";
    - weight decay `weight_decay_norm` for normalisation layers (BN, GN, LN, ...),
      `weight_decay_embed` for nn.Embedding (the queries), 0 for Swin position tables,
      `weight_decay` otherwise.
    """
    groups = get_default_optimizer_params(
        model,
        base_lr=base_lr,
        weight_decay=weight_decay,
        weight_decay_norm=weight_decay_norm,
        lr_factor_func=lambda name: backbone_multiplier if "backbone" in name else 1.0,
        overrides={name: {"weight_decay": 0.0} for name in _NO_DECAY_PARAM_NAMES},
    )
    # Detectron2's helper knows normalisation layers but not embeddings: move those out.
    embeddings = {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    split = []
    for g in groups:
        for p in g["params"]:
            hyper = {k: v for k, v in g.items() if k != "params"}
            if id(p) in embeddings:
                hyper["weight_decay"] = weight_decay_embed
            split.append({"params": [p], **hyper})
    return reduce_param_groups(split)


def with_full_model_gradient_clipping(
    optim_cls: Type[torch.optim.Optimizer], max_norm: float, norm_type: float = 2.0
) -> Type[torch.optim.Optimizer]:
    """A subclass of `optim_cls` whose step first clips the norm of *all* gradients together.

    Detectron2's own clipping works per parameter; the official recipe clips the global norm.
    Under AMP, GradScaler unscales the gradients before calling `step`, so the norm is a true one.
    """

    class FullModelGradientClippingOptimizer(optim_cls):
        def step(self, closure=None):
            params = [p for group in self.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)
            return super().step(closure=closure)

    FullModelGradientClippingOptimizer.__name__ = f"{optim_cls.__name__}WithFullModelClipping"
    return FullModelGradientClippingOptimizer


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """Build the optimizer from `cfg.SOLVER` (OPTIMIZER, BASE_LR, weight decays, clipping)."""
    s = cfg.SOLVER
    params = optimizer_param_groups(
        model,
        base_lr=s.BASE_LR,
        weight_decay=s.WEIGHT_DECAY,
        weight_decay_norm=s.WEIGHT_DECAY_NORM,
        weight_decay_embed=s.WEIGHT_DECAY_EMBED,
        backbone_multiplier=s.BACKBONE_MULTIPLIER,
    )
    name = s.OPTIMIZER.upper()
    if name == "SGD":
        optim_cls, kwargs = torch.optim.SGD, {"momentum": s.MOMENTUM}
    elif name == "ADAMW":
        optim_cls, kwargs = torch.optim.AdamW, {}
    else:
        raise ValueError(f"SOLVER.OPTIMIZER is '{s.OPTIMIZER}'; expected 'ADAMW' or 'SGD'")

    clip = s.CLIP_GRADIENTS
    if clip.ENABLED and clip.CLIP_TYPE == "full_model":
        optim_cls = with_full_model_gradient_clipping(optim_cls, clip.CLIP_VALUE, clip.NORM_TYPE)
        return optim_cls(params, s.BASE_LR, **kwargs)
    # "value" / "norm" (per parameter) clipping, or none: Detectron2's wrapper.
    return maybe_add_gradient_clipping(cfg, optim_cls)(params, s.BASE_LR, **kwargs)
