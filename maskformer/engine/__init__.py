"""Training-loop pieces used by train_net.py: atomic checkpoints, exact resume, AMP anywhere."""

from .amp import AMPTrainer
from .checkpoint import TrainingCheckpointer
from .hooks import StepSeedHook

__all__ = ["AMPTrainer", "StepSeedHook", "TrainingCheckpointer"]
