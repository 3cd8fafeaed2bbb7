"""The errors of loading weights: each names the file and what is wrong with it."""

from __future__ import annotations

__all__ = [
    "CheckpointDownloadError",
    "CheckpointError",
    "CheckpointMismatchError",
    "UnsafeCheckpointError",
    "UntrainedModelError",
]


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used: unreadable, not a checkpoint, or not for this model."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint file asks to import or call something other than plain data."""


class CheckpointMismatchError(CheckpointError):
    """Strict loading found weights that are missing, unexpected or of another shape."""


class CheckpointDownloadError(CheckpointError):
    """MODEL.WEIGHTS is a URL that cannot be downloaded (offline, moved, no permission)."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"{url}: cannot download the weights ({reason})")
        self.url = url


class UntrainedModelError(CheckpointError, ValueError):
    """MODEL.WEIGHTS is empty or leaves tensors of the model with random values."""
