"""Mixed-precision training on any device."""

from __future__ import annotations

import time

import torch
from detectron2.engine import SimpleTrainer

__all__ = ["AMPTrainer"]


class AMPTrainer(SimpleTrainer):
    """SimpleTrainer under `torch.autocast`, on CUDA (float16 + GradScaler) or CPU (bfloat16).

    Detectron2's AMPTrainer is CUDA-only. The matcher and losses switch autocast off themselves,
    so they stay in float32 either way.
    """

    def __init__(self, model, data_loader, optimizer, *, device_type: str, **kwargs):
        super().__init__(model, data_loader, optimizer, **kwargs)
        self.device_type = device_type
        # bfloat16 has float32's range: no loss scaling needed; float16 needs it.
        self.precision = torch.float16 if device_type == "cuda" else torch.bfloat16
        self.grad_scaler = torch.amp.GradScaler(device_type, enabled=device_type == "cuda")

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
