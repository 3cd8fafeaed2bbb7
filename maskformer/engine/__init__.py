"""Training-loop pieces used by train_net.py: exact resume, AMP on any device, evaluation per
dataset."""

from .amp import AMPTrainer, amp_precision
from .checkpoint_hook import PeriodicCheckpointer, without_duplicate_final_checkpoint
from .evaluation import EvaluatedOn, evaluated_on
from .hooks import EvalImagesHook, StepSeedHook

__all__ = [
    "AMPTrainer",
    "EvalImagesHook",
    "EvaluatedOn",
    "PeriodicCheckpointer",
    "StepSeedHook",
    "amp_precision",
    "evaluated_on",
    "without_duplicate_final_checkpoint",
]
