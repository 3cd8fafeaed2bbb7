"""Training-loop pieces used by train_net.py: exact resume, AMP on any device, evaluation per
dataset."""

from .amp import AMPTrainer, amp_precision
from .evaluation import post_processing_for
from .hooks import EvalImagesHook, StepSeedHook

__all__ = ["AMPTrainer", "EvalImagesHook", "StepSeedHook", "amp_precision", "post_processing_for"]
