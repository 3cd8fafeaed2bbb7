"""Training and evaluation with Detectron2's engine, as `train_net.py` runs them: the set-up checks
and launch (`launch`), the trainer (`trainer`), mixed precision on any device (`amp`), exact
resume and evaluation overlays (`hooks`), evaluation per dataset (`evaluation`)."""

from .amp import AMPTrainer, amp_precision
from .evaluation import EvaluatedOn, evaluated_on
from .hooks import (
    EvalImagesHook,
    PeriodicCheckpointer,
    StepSeedHook,
    without_duplicate_final_checkpoint,
)
from .launch import (
    SetupError,
    build_config,
    check_config,
    check_datasets,
    check_model_weights,
    device_note,
    launch_checked,
    load_for_evaluation,
    prepare,
    set_cpu_threads,
)
from .trainer import Trainer

__all__ = [
    "AMPTrainer",
    "EvalImagesHook",
    "EvaluatedOn",
    "PeriodicCheckpointer",
    "SetupError",
    "StepSeedHook",
    "Trainer",
    "amp_precision",
    "build_config",
    "check_config",
    "check_datasets",
    "check_model_weights",
    "device_note",
    "evaluated_on",
    "launch_checked",
    "load_for_evaluation",
    "prepare",
    "set_cpu_threads",
    "without_duplicate_final_checkpoint",
]
