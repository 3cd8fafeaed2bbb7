"""Training hooks."""

from __future__ import annotations

import numpy as np
import torch
from detectron2.engine import HookBase
from detectron2.utils import comm

__all__ = ["StepSeedHook"]


class StepSeedHook(HookBase):
    """Seed torch's generator from (seed, iteration, rank) before every step.

    Dropout draws then depend only on the iteration, not on how many steps this process ran
    before, so a run resumed from a checkpoint repeats the uninterrupted run's steps exactly.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)

    def before_step(self):
        seq = np.random.SeedSequence([self.seed, self.trainer.iter, comm.get_rank()])
        torch.manual_seed(int(seq.generate_state(1)[0]))
