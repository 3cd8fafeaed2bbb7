"""Training-loop pieces used by train_net.py: atomic checkpoints, exact resume, AMP anywhere,
evaluation per dataset."""

from .amp import AMPTrainer
from .checkpoint import TrainingCheckpointer
from .evaluation import post_processing_for
from .hooks import StepSeedHook

__all__ = ["AMPTrainer", "StepSeedHook", "TrainingCheckpointer", "post_processing_for"]
