"""Bringing a read checkpoint's weights into a model's names (layout translation): numpy arrays to
tensors, DistributedDataParallel's `module.` prefix, Hugging Face MaskFormer names, Detectron2's
name matching for converted ImageNet backbones, the published pixel-decoder layout, and RGB first
convolutions into models of other input channels."""

from __future__ import annotations

import collections
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np
import torch
from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts
from torch import Tensor, nn

from ..interop.hf import hf_to_maskformer, is_hf_maskformer_state_dict
from ..modeling.backbone.input_channels import adapt_input_convs, rgb_shaped
from ..modeling.mask_former_head import rename_published_pixel_decoder_keys
from .checks import LoadReport, check_architecture, preview
from .errors import CheckpointError

__all__ = ["match_state_dict"]


def _to_tensors(state: Mapping, path: str) -> Dict[str, Tensor]:
    """Check that every entry is a numeric array and convert numpy arrays to tensors."""
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{path}: not a checkpoint: 'model' should map names to arrays, "
            f"got {type(state).__name__}"
        )
    out: Dict[str, Tensor] = {}
    bad: List[str] = []
    for k, v in state.items():
        if isinstance(v, np.ndarray) and v.dtype.kind in "biuf":
            # Native byte order and C order: torch.from_numpy needs both.
            v = torch.from_numpy(v.astype(v.dtype.newbyteorder("="), order="C", copy=False))
        if not isinstance(k, str) or not isinstance(v, Tensor):
            dtype = getattr(v, "dtype", None)
            bad.append(f"{k!r} ({type(v).__name__}{'' if dtype is None else f' of {dtype}'})")
            continue
        out[k] = v
    if bad:
        raise CheckpointError(
            f"{path}: not a checkpoint: entries that are not numeric arrays: {preview(bad, 5)}"
        )
    if not out:
        raise CheckpointError(f"{path}: the checkpoint contains no weights")
    return out


def _benign_missing(key: str) -> bool:
    # BatchNorm recreates a missing counter itself; it is no weight.
    return key.endswith("num_batches_tracked")


def match_state_dict(
    checkpoint: Dict[str, Any], model: nn.Module, path: str
) -> Tuple[Dict[str, Tensor], LoadReport]:
    """Bring a read checkpoint's weights into the model's naming (module docstring) and compare
    them with it. Nothing is loaded.

    Returns:
        the state dict in the model's names (all of it: the loader skips mismatched shapes), and
        the report.
    Raises:
        CheckpointError: the file's weights are not for this architecture.
    """
    metadata = getattr(checkpoint["model"], "_metadata", None)
    state = _to_tensors(checkpoint["model"], path)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    model_state = model.state_dict()

    layout = "maskformer"
    if checkpoint.get("matching_heuristics", False):
        author = checkpoint.get("__author__", "unknown")
        layout = f"name-matched ({author})"
        try:
            # Shapes as if the model took RGB, so that an RGB first convolution is matched
            # (and adapted below) when the model takes another number of channels.
            in_channels = len(getattr(model, "pixel_mean", (0, 0, 0)))
            state = align_and_update_state_dicts(
                rgb_shaped(model_state, in_channels), state, c2_conversion=author == "Caffe2"
            )
        except ValueError as e:  # one file key matching several model keys
            raise CheckpointError(f"{path}: cannot match its names to the model: {e}") from e
    elif is_hf_maskformer_state_dict(state):
        try:
            state = hf_to_maskformer(state)
        except ValueError as e:
            raise CheckpointError(f"{path}: {e}") from None
        layout = "huggingface"
    if any(k.startswith("sem_seg_head.pixel_decoder.") for k in model_state):
        try:
            if rename_published_pixel_decoder_keys(state, "sem_seg_head."):
                layout = "maskformer-v1" if layout == "maskformer" else layout
        except ValueError as e:
            raise CheckpointError(f"{path}: {e}") from None
    # RGB-pretrained first convolutions into a model of C != 3 input channels (logged).
    adapt_input_convs(state, model_state, path)

    report = LoadReport(path=path, layout=layout)
    for k, v in state.items():
        if k not in model_state:
            report.unexpected.append(k)
        elif tuple(v.shape) != tuple(model_state[k].shape):
            report.shape_mismatches.append((k, tuple(v.shape), tuple(model_state[k].shape)))
        else:
            report.loaded.append(k)
    report.missing = [k for k in model_state if k not in state and not _benign_missing(k)]
    check_architecture(report, state, model_state, path)
    if metadata is not None and layout == "maskformer":
        # Module versions saved by torch (e.g. BatchNorm's) still describe these names.
        state = collections.OrderedDict(state)
        state._metadata = metadata  # type: ignore[attr-defined]
    return state, report
