"""Mixed-precision training on any device."""

from __future__ import annotations

import time
from typing import Optional

import torch
from detectron2.engine import SimpleTrainer

from ..config import ConfigValueError
from ..utils.bfloat16 import check_cpu_bfloat16

__all__ = ["AMPTrainer", "amp_precision"]

_PRECISIONS = {"": None, "float16": torch.float16, "bfloat16": torch.bfloat16}


def amp_precision(name: str, device_type: str) -> Optional[torch.dtype]:
    """The dtype named by SOLVER.AMP.PRECISION ("" for the device's default: None).

    Raises:
        ConfigValueError: an unknown name, or bfloat16 (also by default) on a CPU without
            bfloat16 instructions (`maskformer.utils.bfloat16`).
    """
    if name not in _PRECISIONS:
        raise ConfigValueError(
            f"SOLVER.AMP.PRECISION is {name!r}; expected one of {sorted(_PRECISIONS)}"
        )
    if device_type == "cpu" and _PRECISIONS[name] in (None, torch.bfloat16):
        check_cpu_bfloat16("SOLVER.AMP (bfloat16 on the CPU)")
    return _PRECISIONS[name]


class AMPTrainer(SimpleTrainer):
    """SimpleTrainer under `torch.autocast` in float16 (with loss scaling) or bfloat16, on CUDA
    or the CPU (Detectron2's AMPTrainer is CUDA-only)."""

    def __init__(
        self,
        model,
        data_loader,
        optimizer,
        *,
        device_type: str,
        precision: Optional[torch.dtype] = None,
        **kwargs,
    ):
        """
        Args:
            precision: torch.float16 or torch.bfloat16; None: float16 on CUDA, bfloat16 on the
                CPU (where float16 arithmetic is slow on most processors).
        """
        super().__init__(model, data_loader, optimizer, **kwargs)
        self.device_type = device_type
        if precision is None:
            precision = torch.float16 if device_type == "cuda" else torch.bfloat16
        if precision not in (torch.float16, torch.bfloat16):
            raise ValueError(f"AMP precision must be float16 or bfloat16, got {precision}")
        self.precision = precision
        # bfloat16 has float32's range: no loss scaling needed; float16 needs it.
        self.grad_scaler = torch.amp.GradScaler(device_type, enabled=precision == torch.float16)

    def run_step(self):
        assert self.model.training, "[AMPTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        with torch.autocast(device_type=self.device_type, dtype=self.precision):
            loss_dict = self.model(data)
            losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        self.grad_scaler.scale(losses).backward()
        self.after_backward()
        self._write_metrics(loss_dict, data_time)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def state_dict(self):
        ret = super().state_dict()
        ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
