"""Training-loop pieces used by train_net.py: exact resume, AMP on any device."""

from .amp import AMPTrainer
from .hooks import StepSeedHook

__all__ = ["AMPTrainer", "StepSeedHook"]
