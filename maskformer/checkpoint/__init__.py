"""Loading weights safely into MaskFormer in any published layout, and saving checkpoints
atomically (docs/weights.md says what is read and how the package is split)."""

from .checkpointer import MaskFormerCheckpointer, check_weights, checked_state_dict
from .checks import LoadReport, check_trained
from .download import download
from .errors import (
    CheckpointDownloadError,
    CheckpointError,
    CheckpointMismatchError,
    UnsafeCheckpointError,
    UntrainedModelError,
)
from .files import read_checkpoint, read_pickle
from .layouts import match_state_dict

__all__ = [
    "CheckpointDownloadError",
    "CheckpointError",
    "CheckpointMismatchError",
    "LoadReport",
    "MaskFormerCheckpointer",
    "UnsafeCheckpointError",
    "UntrainedModelError",
    "check_trained",
    "check_weights",
    "checked_state_dict",
    "download",
    "match_state_dict",
    "read_checkpoint",
    "read_pickle",
]
