"""Reading checkpoint files safely, without a model: `.pkl` through an unpickler that admits only
plain containers and numpy arrays, `.safetensors`, and everything else through
`torch.load(weights_only=True)`."""

from __future__ import annotations

import codecs
import collections
import importlib
import io
import os
import pickle
from typing import Any, Dict, Tuple

import numpy as np
import torch
from torch import Tensor

from .errors import CheckpointError, UnsafeCheckpointError

__all__ = ["read_checkpoint", "read_pickle", "torch_load"]


def _bytes_no_args(*args):
    # Protocol <= 2 pickles written by Python 3 spell an empty bytes object as `bytes()`.
    if args:
        raise pickle.UnpicklingError("bytes() with arguments is not allowed in a checkpoint")
    return b""


def _latin1_encode(text, encoding="utf-8"):
    # Protocol <= 2 pickles written by Python 3 spell bytes (numpy's raw array data) as
    # `_codecs.encode(str, "latin1")`; no other codec is needed, so no other is allowed.
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("only _codecs.encode(str, 'latin1') is allowed")
    return codecs.encode(text, "latin1")


def _numpy_globals() -> Dict[Tuple[str, str], Any]:
    """The globals numpy array and dtype pickles reference, for numpy 1.x and 2.x writers."""
    core = importlib.import_module("numpy._core" if hasattr(np, "_core") else "numpy.core")
    reconstruct = core.multiarray._reconstruct
    frombuffer = core.numeric._frombuffer  # protocol 5 arrays
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return allowed


_SAFE_GLOBALS: Dict[Tuple[str, str], Any] = {
    **_numpy_globals(),
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "bytes"): _bytes_no_args,
    ("__builtin__", "bytes"): _bytes_no_args,
    ("_codecs", "encode"): _latin1_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; refuses every other import."""

    def find_class(self, module: str, name: str):
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            hint = ""
            if module.startswith("torch"):
                hint = (
                    " It holds torch objects pickled with plain pickle (as the official "
                    "convert-pretrained-swin-model-to-d2.py writes them); convert the original "
                    ".pth again with tools/convert-pretrained-swin-model-to-d2.py, which writes "
                    "numpy arrays."
                )
            raise UnsafeCheckpointError(
                f"refused to load '{module}.{name}': a .pkl checkpoint may only contain plain "
                "containers and numpy arrays, because unpickling anything else can run code." + hint
            ) from None

    def persistent_load(self, pid):
        raise UnsafeCheckpointError("refused a persistent id: not a plain .pkl checkpoint")


def read_pickle(path: str) -> Any:
    """Unpickle `path` (latin-1 strings, as Detectron2 does) admitting only plain data.

    Raises:
        UnsafeCheckpointError: the pickle references a class or function that is not allowed.
        CheckpointError: the file is truncated, corrupt or not a pickle.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f"{path}: {e}") from None
    except Exception as e:  # garbage makes pickle raise many types
        what = "truncated" if isinstance(e, EOFError) else "corrupt or not a pickle"
        raise CheckpointError(f"{path}: cannot read the .pkl checkpoint ({what}): {e}") from e


def torch_load(path_or_file, name: str) -> Any:
    """`torch.load(weights_only=True)` with errors that say what is wrong with which file."""
    try:
        return torch.load(path_or_file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        refused = [ln for ln in lines if "GLOBAL" in ln or "Unsupported global" in ln]
        if refused:
            raise UnsafeCheckpointError(
                f"{name}: refused: the file asks to import code, and loading it could run it "
                f"(torch.load(weights_only=True): {refused[0]})"
            ) from None
        detail = lines[-2] if len(lines) > 1 else str(e)
        raise CheckpointError(f"{name}: not a PyTorch checkpoint, or corrupt ({detail})") from e
    except Exception as e:  # torch raises many types on garbage (RuntimeError, KeyError, ...)
        raise CheckpointError(
            f"{name}: not a PyTorch checkpoint, or truncated or corrupt ({type(e).__name__}: {e})"
        ) from e


def _read_safetensors(path: str) -> Dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read the safetensors file: {e}") from e


def read_checkpoint(path: str) -> Dict[str, Any]:
    """Read a checkpoint file into `{"model": state dict, ...}`, safely, without a model.

    A `.pkl` with "model" (Detectron2's model-zoo format; unlike Detectron2, also without
    "__author__") is returned as is; a flat `.pkl` is a Caffe2/Detectron1 file and is marked for
    Detectron2's name matching, as Detectron2 does. Another flat state dict is wrapped.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file '{path}' does not exist")
    if path.endswith(".safetensors"):
        return {"model": _read_safetensors(path)}
    data = read_pickle(path) if path.endswith(".pkl") else torch_load(path, path)
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path}: not a checkpoint: expected a dict of weights, got {type(data).__name__}"
        )
    if path.endswith(".pkl") and "model" not in data:
        if "blobs" in data:  # Detectron1 detection models
            data = data["blobs"]
        data = {k: v for k, v in data.items() if not str(k).endswith("_momentum")}
        return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
    if "model_state" in data and path.endswith(".pyth"):
        # pycls checkpoints, as Detectron2 reads them.
        return {"model": data["model_state"], "__author__": "pycls", "matching_heuristics": True}
    return data if "model" in data else {"model": data}
