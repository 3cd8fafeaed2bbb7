"""Deployment transforms of the network part of a built model (its backbone and head).

Each changes `backbone` and `sem_seg_head` in place (docs/deployment.md); apply them last (after
`optimize_from_config`, which looks inside the head) and after loading weights (the wrapped
modules have other state-dict keys).
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Optional

import torch
from torch import nn

from ..config import ConfigValueError
from ..utils.bfloat16 import check_cpu_bfloat16

__all__ = [
    "PRECISIONS",
    "Autocast",
    "compile_network",
    "cpp_compiler",
    "inference_precision",
    "network_transforms_from_config",
    "run_in_precision",
]

logger = logging.getLogger(__name__)

# MODEL.MASK_FORMER.TEST.PRECISION -> autocast dtype (None: no autocast).
PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}


class Autocast(nn.Module):
    """`module` run under `torch.autocast(dtype)` on the device of its first tensor argument;
    outputs are returned as computed (float32 or `dtype`)."""

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.module = module
        self.dtype = dtype

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}"

    def forward(self, x, *args, **kwargs):
        device = x.device.type if torch.is_tensor(x) else next(iter(x.values())).device.type
        with torch.autocast(device, dtype=self.dtype):
            return self.module(x, *args, **kwargs)


def run_in_precision(model: nn.Module, dtype: Optional[torch.dtype]) -> nn.Module:
    """Run `model.backbone` and `model.sem_seg_head` under autocast in `dtype` (in place);
    None: leave the model as it is. Returns the model."""
    if dtype is None:
        return model
    model.backbone = Autocast(model.backbone, dtype)
    model.sem_seg_head = Autocast(model.sem_seg_head, dtype)
    return model


def cpp_compiler() -> Optional[str]:
    """Path of the C++ compiler inductor's CPU backend would call ($CXX, default g++), or None."""
    return shutil.which(os.environ.get("CXX", "g++"))


def compile_network(model: nn.Module) -> bool:
    """Compile `model.backbone` and `model.sem_seg_head` with `torch.compile` (in place), at the
    first call and again for each new input shape. On a CPU inductor needs a C++ compiler;
    without one the model is left uncompiled and one warning says so. Returns whether it
    compiled.
    """
    needs_cpp = any(p.device.type == "cpu" for p in model.parameters())
    if needs_cpp and cpp_compiler() is None:
        logger.warning(
            "MODEL.MASK_FORMER.TEST.COMPILE: no C++ compiler found ($CXX or g++ on PATH, which "
            "torch.compile needs on the CPU); the network runs uncompiled"
        )
        return False
    # Freezing makes the weights constants of the graph, so that inductor prepacks them for
    # oneDNN and fuses convolution epilogues (measured at 512x512 R50: 7% faster in bf16, 3% in
    # float32; without it compiling gained nothing). Hence weights loaded after compiling are
    # not seen: compile last.
    options = {"freezing": True}
    model.backbone = torch.compile(model.backbone, options=options)
    model.sem_seg_head = torch.compile(model.sem_seg_head, options=options)
    return True


def inference_precision(cfg, device_type: str) -> Optional[torch.dtype]:
    """The autocast dtype of MODEL.MASK_FORMER.TEST.PRECISION for a model on `device_type`;
    `ConfigValueError` for an unknown value or bfloat16 on a CPU without bfloat16 instructions."""
    name = cfg.MODEL.MASK_FORMER.TEST.PRECISION
    if name not in PRECISIONS:
        raise ConfigValueError(
            f"MODEL.MASK_FORMER.TEST.PRECISION is '{name}'; expected one of {sorted(PRECISIONS)}"
        )
    if PRECISIONS[name] == torch.bfloat16 and device_type == "cpu":
        check_cpu_bfloat16("MODEL.MASK_FORMER.TEST.PRECISION")
    return PRECISIONS[name]


def network_transforms_from_config(model: nn.Module, cfg) -> nn.Module:
    """`run_in_precision` and `compile_network` as MODEL.MASK_FORMER.TEST.PRECISION and
    TEST.COMPILE say."""
    device_type = next(model.parameters()).device.type
    run_in_precision(model, inference_precision(cfg, device_type))
    if cfg.MODEL.MASK_FORMER.TEST.COMPILE:
        compile_network(model)
    return model
