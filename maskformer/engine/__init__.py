"""Training-loop pieces used by train_net.py: exact resume, AMP on any device, evaluation per
dataset."""

from .amp import AMPTrainer, amp_precision
from .evaluation import EvaluatedOn, evaluated_on
from .hooks import StepSeedHook

__all__ = ["AMPTrainer", "EvaluatedOn", "StepSeedHook", "amp_precision", "evaluated_on"]
