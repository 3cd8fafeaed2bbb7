"""`MaskFormerCheckpointer`: Detectron2's `DetectionCheckpointer`, loading safely in any published
layout, checking before it touches the model, and writing checkpoints atomically."""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, Optional, Tuple

import torch
from detectron2.checkpoint import DetectionCheckpointer
from torch import Tensor, nn

from ..utils.file_io import write_atomically
from .checks import LoadReport, check_trained
from .download import download
from .errors import CheckpointError, CheckpointMismatchError
from .files import read_checkpoint, torch_load
from .layouts import match_state_dict

__all__ = ["MaskFormerCheckpointer", "check_weights", "checked_state_dict"]

logger = logging.getLogger(__name__)


def checked_state_dict(
    checkpoint: Dict[str, Any],
    model: nn.Module,
    path: str,
    *,
    strict: bool = False,
    require_trained: bool = False,
) -> Tuple[Dict[str, Tensor], LoadReport]:
    """`match_state_dict`, then the refusals the loader was asked for (`MaskFormerCheckpointer`'s
    `strict`, `require_trained`); nothing is loaded."""
    state, report = match_state_dict(checkpoint, model, path)
    if strict and (report.missing or report.unexpected or report.shape_mismatches):
        raise CheckpointMismatchError(
            "Strict loading refused, nothing was loaded:\n" + report.summary()
        )
    if require_trained:
        check_trained(report)
    return state, report


def _local_file(path: str) -> str:
    """The local file of `path`, downloading a URL first."""
    if "://" in path:
        return download(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file '{path}' (MODEL.WEIGHTS?) does not exist")
    return path


def check_weights(
    path: str, model: nn.Module, *, strict: bool = False, require_trained: bool = False
) -> LoadReport:
    """Check the weights file (or URL) `path` against `model` as `MaskFormerCheckpointer.load`
    would, loading nothing: `model` may live on the "meta" device.

    Raises:
        FileNotFoundError, CheckpointError (and its subclasses): as the loader would.
    """
    checkpoint = read_checkpoint(_local_file(path))
    if "matching_heuristics=True" in path.partition("?")[2]:  # Detectron2's URL query
        checkpoint["matching_heuristics"] = True
    return checked_state_dict(
        checkpoint, model, path, strict=strict, require_trained=require_trained
    )[1]


class MaskFormerCheckpointer(DetectionCheckpointer):
    """`DetectionCheckpointer` that loads MaskFormer weights safely and in any published layout
    (docs/weights.md). After each load, `last_report` (a `LoadReport`) says which tensors were
    loaded and which were skipped, and why."""

    def __init__(
        self,
        model: nn.Module,
        save_dir: str = "",
        *,
        strict: bool = False,
        require_trained: bool = False,
        save_to_disk: Optional[bool] = None,
        **checkpointables: Any,
    ):
        """
        Args:
            strict: raise `CheckpointMismatchError`, loading nothing, unless every tensor of the
                model and the file match by name and shape; otherwise skip and list them.
            require_trained: raise `UntrainedModelError`, loading nothing, if the file leaves a
                tensor of the model random (evaluation, inference).
            save_to_disk, checkpointables: as Detectron2's `Checkpointer`.
        """
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.strict = strict
        self.require_trained = require_trained
        self.last_report: Optional[LoadReport] = None

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        write_atomically(save_file, lambda tmp: torch.save(data, tmp))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        path = os.path.join(self.save_dir, "last_checkpoint")

        def write(tmp: str) -> None:
            with open(tmp, "w") as f:
                f.write(last_filename_basename)

        write_atomically(path, write)

    def load(self, path: str, *args, **kwargs):
        if path:
            _local_file(path)  # Detectron2's loader then finds the download in its cache
        return super().load(path, *args, **kwargs)

    def _torch_load(self, f):
        data = torch_load(f, str(f))
        if not isinstance(data, dict):
            raise CheckpointError(
                f"{f}: not a checkpoint: expected a dict of weights, got {type(data).__name__}"
            )
        return data

    def _load_file(self, filename: str) -> Dict[str, Any]:
        """Read and check the whole file; the model is untouched until this returns."""
        if filename.endswith((".pkl", ".safetensors", ".pyth")):
            checkpoint = read_checkpoint(filename)
        else:
            # Detectron2's path (the "model" wrapper, `?matching_heuristics=True` URL queries);
            # the file itself is read by our `_torch_load`.
            checkpoint = super()._load_file(filename)
        state, report = checked_state_dict(
            checkpoint,
            self.model,
            filename,
            strict=self.strict,
            require_trained=self.require_trained,
        )
        self.last_report = report
        logger.info(report.summary())
        checkpoint["model"] = state
        # Names are final now; Detectron2 must not match them again. Its loader skips (and
        # lists by name) the shape mismatches and unexpected keys the report holds.
        checkpoint.pop("matching_heuristics", None)
        return checkpoint
