"""Checkpoints that are never half-written."""

from __future__ import annotations

import os

import torch
from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["TrainingCheckpointer"]


def _atomic_write(path: str, write) -> None:
    """Write `path` through `write(file)` to a temporary name, then rename it into place.

    A process killed mid-write leaves at most a stray temporary file, never a truncated
    checkpoint under the real name (rename is atomic on POSIX file systems).
    """
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class TrainingCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer whose `save` and `last_checkpoint` tag are written atomically."""

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        _atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        path = os.path.join(self.save_dir, "last_checkpoint")
        _atomic_write(path, lambda f: f.write(last_filename_basename.encode()))
