"""Loading weights safely into MaskFormer: official model-zoo pickles, Detectron2 `.pth` files,
Hugging Face MaskFormer weights and converted ImageNet backbones.

`MaskFormerCheckpointer` is a drop-in for Detectron2's `DetectionCheckpointer` (trainer, resume,
`--eval-only`). Compared with it, it:

- reads `.pkl` with an unpickler that admits only plain containers and numpy arrays, and every
  other file with `torch.load(weights_only=True)`: a checkpoint that would run code is refused;
- accepts both layouts of the official checkpoints (pixel-decoder keys directly under
  `sem_seg_head.`, as published, or under `sem_seg_head.pixel_decoder.`), telling them apart by
  key names, never by version metadata, and Hugging Face `MaskFormerForInstanceSegmentation`
  weights (`.safetensors`, `.bin`);
- reads and checks everything before it touches the model: an unreadable, truncated or unsafe
  file, a file without weights, or weights of another architecture raise `CheckpointError`
  naming the file, and the model keeps its weights;
- lists skipped weights by name (shape mismatches, e.g. another number of classes or queries;
  missing; unexpected) and, with `strict=True`, raises instead of loading any of them;
- writes checkpoints and the `last_checkpoint` tag atomically (temporary name, then rename), so
  a run killed while saving never leaves a truncated file under the real name.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import importlib
import io
import logging
import os
import pickle
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts
from torch import Tensor, nn

from .interop.hf import hf_to_maskformer, is_hf_maskformer_state_dict
from .modeling.backbone.input_channels import adapt_input_convs, rgb_shaped
from .utils.file_io import write_atomically

__all__ = [
    "CheckpointDownloadError",
    "CheckpointError",
    "CheckpointMismatchError",
    "LoadReport",
    "MaskFormerCheckpointer",
    "UnsafeCheckpointError",
    "UntrainedModelError",
    "check_trained",
    "read_checkpoint",
    "read_pickle",
]

logger = logging.getLogger(__name__)


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


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------


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


def _torch_load(path_or_file, name: str) -> Any:
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

    `.pkl`: a dict with "model" (Detectron2's model-zoo format; unlike Detectron2, also without
    "__author__") is returned as is; a flat name -> array dict is a Caffe2/Detectron1 file and is
    marked for Detectron2's name matching, as Detectron2 does. `.safetensors`: a flat state dict.
    Anything else: `torch.load` with `weights_only=True`; a flat state dict is wrapped as
    `{"model": ...}`.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file '{path}' does not exist")
    if path.endswith(".pkl"):
        data = read_pickle(path)
        if not isinstance(data, dict):
            raise CheckpointError(
                f"{path}: not a checkpoint: expected a dict of weights, got {type(data).__name__}"
            )
        if "model" in data:
            return data
        if "blobs" in data:  # Detectron1 detection models
            data = data["blobs"]
        data = {k: v for k, v in data.items() if not str(k).endswith("_momentum")}
        return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
    if path.endswith(".safetensors"):
        return {"model": _read_safetensors(path)}
    data = _torch_load(path, path)
    if isinstance(data, dict) and "model_state" in data and path.endswith(".pyth"):
        # pycls checkpoints, as Detectron2 reads them.
        return {"model": data["model_state"], "__author__": "pycls", "matching_heuristics": True}
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path}: not a checkpoint: expected a dict of weights, got {type(data).__name__}"
        )
    return data if "model" in data else {"model": data}


# ---------------------------------------------------------------------------------------------
# Checking a state dict against a model
# ---------------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    """What loading a checkpoint into a model did (or, in strict mode, would have done)."""

    path: str
    layout: str  # "maskformer", "maskformer-v1", "huggingface", or "name-matched (<author>)"
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    shape_mismatches: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(
        default_factory=list
    )

    def summary(self) -> str:
        lines = [f"{self.path} ({self.layout} layout): {len(self.loaded)} tensors match the model"]
        for key, ckpt, model in self.shape_mismatches:
            lines.append(f"  shape mismatch, not loaded: {key}: {ckpt} in file, {model} in model")
        if self.missing:
            lines.append(f"  missing in file ({len(self.missing)}): {_preview(self.missing)}")
        if self.unexpected:
            lines.append(f"  not in model ({len(self.unexpected)}): {_preview(self.unexpected)}")
        return "\n".join(lines)


def _preview(keys: List[str], n: int = 12) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


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
            f"{path}: not a checkpoint: entries that are not numeric arrays: {_preview(bad, 5)}"
        )
    if not out:
        raise CheckpointError(f"{path}: the checkpoint contains no weights")
    return out


def _component(key: str) -> str:
    return key.split(".", 1)[0]


def _rename_v1_pixel_decoder(
    state: Dict[str, Tensor], model_state: Mapping[str, Tensor], path: str
) -> bool:
    """Move v1 keys `sem_seg_head.X` (X not the predictor) to `sem_seg_head.pixel_decoder.X`.

    The published checkpoints name the pixel decoder's parameters directly under
    `sem_seg_head.`; the official code renames them only when the state dict's version metadata
    says so, which plain pickles do not carry. Key names tell the layouts apart reliably.
    Returns whether anything was renamed.
    """
    prefix, decoder = "sem_seg_head.", "sem_seg_head.pixel_decoder."
    if not any(k.startswith(decoder) for k in model_state):
        return False  # another head: its keys are what they are
    v1 = [
        k
        for k in state
        if k.startswith(prefix)
        and not k.startswith(("sem_seg_head.predictor.", decoder))
        and k not in model_state
    ]
    if not v1:
        return False
    v2 = [k for k in state if k.startswith(decoder)]
    if v2:
        raise CheckpointError(
            f"{path}: mixes two layouts of the pixel decoder: {v1[0]} (published layout) and "
            f"{v2[0]} (current layout); refusing to guess"
        )
    for k in v1:
        state[decoder + k[len(prefix) :]] = state.pop(k)
    return True


def _benign_missing(key: str) -> bool:
    # BatchNorm recreates a missing counter itself; it is no weight.
    return key.endswith("num_batches_tracked")


def match_state_dict(
    checkpoint: Dict[str, Any], model: nn.Module, path: str
) -> Tuple[Dict[str, Tensor], LoadReport]:
    """Bring a read checkpoint's weights into the model's naming and compare them with it.

    Converts numpy arrays, strips a DistributedDataParallel `module.` prefix, converts Hugging
    Face names, renames the published pixel-decoder layout, and applies Detectron2's name
    matching for files that ask for it (converted ImageNet backbones). Nothing is loaded.

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
    if _rename_v1_pixel_decoder(state, model_state, path):
        layout = "maskformer-v1" if layout == "maskformer" else layout
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
    _check_architecture(report, state, model_state, path)
    if metadata is not None and layout == "maskformer":
        # Module versions saved by torch (e.g. BatchNorm's) still describe these names.
        state = collections.OrderedDict(state)
        state._metadata = metadata  # type: ignore[attr-defined]
    return state, report


def _check_architecture(
    report: LoadReport, state: Mapping[str, Tensor], model_state: Mapping[str, Tensor], path: str
) -> None:
    """Refuse weights of another architecture: nothing, or a whole component, fails to match."""
    if not report.loaded:
        raise CheckpointError(
            f"{path}: none of its {len(state)} weights fits this model: it is a checkpoint for "
            f"another architecture (file has e.g. {_preview(list(state), 3)}; the model has "
            f"e.g. {_preview(list(model_state), 3)})"
        )
    loaded_components = {_component(k) for k in report.loaded}
    model_components = {_component(k) for k in model_state}
    for comp in sorted({_component(k) for k in state} & model_components - loaded_components):
        n = sum(1 for k in state if _component(k) == comp)
        if n < 2:  # a lone buffer (e.g. criterion.empty_weight of another class count)
            continue
        raise CheckpointError(
            f"{path}: none of its {n} '{comp}' weights fits the model's '{comp}': the "
            f"checkpoint is for another {comp} architecture (file has e.g. "
            f"{_preview([k for k in state if _component(k) == comp], 2)}; the model has "
            f"e.g. {_preview([k for k in model_state if _component(k) == comp], 2)})"
        )


# Tensor name fragment -> the config key that sets its shape or existence (first match wins).
_CONFIG_KEY_OF_TENSOR = (
    ("class_embed", "MODEL.SEM_SEG_HEAD.NUM_CLASSES"),
    ("query_embed", "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES"),
    ("predictor.weight", "MODEL.SEM_SEG_HEAD.NUM_CLASSES"),
    ("predictor.bias", "MODEL.SEM_SEG_HEAD.NUM_CLASSES"),
    ("decoder.layers", "MODEL.MASK_FORMER.DEC_LAYERS"),
    ("encoder.layers", "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS"),
    ("linear1", "MODEL.MASK_FORMER.DIM_FEEDFORWARD"),
    ("mask_embed", "MODEL.SEM_SEG_HEAD.MASK_DIM"),
    ("mask_features", "MODEL.SEM_SEG_HEAD.MASK_DIM"),
    ("pixel_decoder", "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME or CONVS_DIM"),
    ("predictor.", "MODEL.MASK_FORMER.HIDDEN_DIM"),
    ("backbone.", "MODEL.BACKBONE.NAME / MODEL.RESNETS.* / MODEL.SWIN.*"),
)


def _config_key_of(tensor: str) -> str:
    for fragment, key in _CONFIG_KEY_OF_TENSOR:
        if fragment in tensor:
            return key
    return "MODEL.META_ARCHITECTURE / MODEL.SEM_SEG_HEAD.NAME"


def _needs_training(key: str) -> bool:
    # The criterion's buffer is a loss constant the config sets, unused at inference.
    return not key.startswith("criterion.")


def check_trained(report: LoadReport) -> None:
    """Refuse weights that leave a tensor of the model missing or of another shape.

    Evaluating or running such a model would give the numbers of a partly random network.

    Raises:
        UntrainedModelError: one line naming the file, the tensors with their shapes in the
            file and in the model, and the config keys that likely differ.
    """
    mismatched = [m for m in report.shape_mismatches if _needs_training(m[0])]
    missing = [k for k in report.missing if _needs_training(k)]
    if not mismatched and not missing:
        return
    shown = [f"{k} {tuple(f)} in file, {tuple(m)} in model" for k, f, m in mismatched[:4]]
    shown += [f"{k} missing in file" for k in missing[: max(0, 4 - len(shown))]]
    more = len(mismatched) + len(missing) - len(shown)
    keys = sorted({_config_key_of(k) for k in [m[0] for m in mismatched] + missing})
    raise UntrainedModelError(
        f"{report.path}: not trained weights for this config: {len(mismatched) + len(missing)} "
        f"tensors of the model would keep random values ({'; '.join(shown)}"
        f"{f'; ... {more} more' if more > 0 else ''}). Likely config key: {', '.join(keys)}; "
        "pass the config the weights were trained with (or fine-tune: train without --eval-only)"
    )


# ---------------------------------------------------------------------------------------------
# The checkpointer
# ---------------------------------------------------------------------------------------------


class MaskFormerCheckpointer(DetectionCheckpointer):
    """`DetectionCheckpointer` that loads MaskFormer weights safely and in any published layout.

    Usage, as Detectron2's::

        MaskFormerCheckpointer(model, cfg.OUTPUT_DIR, optimizer=opt).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        MaskFormerCheckpointer(model, strict=True).load("model_final_d8dbeb.pkl")  # evaluation

    `MODEL.WEIGHTS` may be: an official model-zoo `.pkl` in either layout; a Detectron2 `.pth`
    (with or without the `{"model": ...}` wrapper); a Hugging Face MaskFormer `.safetensors` or
    `.bin`; an ImageNet backbone converted by `tools/convert-torchvision-to-d2.py` or
    `tools/convert-pretrained-swin-model-to-d2.py` (matched to `backbone.*` by name).

    After each load, `last_report` (a `LoadReport`) says which tensors were loaded and which
    were skipped, and why.
    """

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
            model: the model to load into (a DDP wrapper is unwrapped).
            save_dir: where `save` writes and `resume_or_load` looks for the last checkpoint.
            strict: raise `CheckpointMismatchError`, loading nothing, if any weight of the model
                is missing from the file, or the file has weights the model lacks or of another
                shape. Otherwise those are skipped and listed in a warning.
            require_trained: raise `UntrainedModelError` (`check_trained`), loading nothing, if
                the file leaves a tensor of the model missing or of another shape (evaluation,
                inference).
            save_to_disk: write checkpoints (default: only on the main process).
            checkpointables: other objects with `state_dict` / `load_state_dict` (optimizer,
                scheduler, ...), saved and resumed alongside the model.
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
        if path and "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(f"Checkpoint file '{path}' (MODEL.WEIGHTS?) does not exist")
        if path and "://" in path:
            download(path)
        return super().load(path, *args, **kwargs)

    def _torch_load(self, f):
        data = _torch_load(f, str(f))
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
        state, report = match_state_dict(checkpoint, self.model, filename)
        self.last_report = report
        if self.strict and (report.missing or report.unexpected or report.shape_mismatches):
            raise CheckpointMismatchError(
                "Strict loading refused, nothing was loaded:\n" + report.summary()
            )
        if self.require_trained:
            check_trained(report)
        logger.info(report.summary())
        checkpoint["model"] = state
        # Names are final now; Detectron2 must not match them again. Its loader skips (and
        # lists by name) the shape mismatches and unexpected keys the report holds.
        checkpoint.pop("matching_heuristics", None)
        return checkpoint


def download(url: str) -> str:
    """The local copy of `url`, downloaded once and cached by Detectron2's PathManager.

    A failure is one `CheckpointDownloadError` naming the URL and the reason, instead of the
    download library's progress bar, log line and traceback.
    """
    from detectron2.utils.file_io import PathManager

    plain = url.split("?", 1)[0]  # Detectron2's "?matching_heuristics=True" is no part of it
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stderr(chatter), contextlib.redirect_stdout(chatter):
            return PathManager.get_local_path(plain)
    except Exception as e:  # URLError, HTTPError, ssl and socket errors, handler errors
        reason = getattr(e, "reason", None) or e
        raise CheckpointDownloadError(url, " ".join(str(reason).split())) from None


# ---------------------------------------------------------------------------------------------
# Detectron2's own loader
# ---------------------------------------------------------------------------------------------

_detectron2_load_file = DetectionCheckpointer._load_file


def _load_file_reading_unsigned_model_zoo_pickles(self, filename: str) -> Dict[str, Any]:
    """`DetectionCheckpointer._load_file`, which also reads model-zoo pickles lacking "__author__".

    Detectron2 takes a `.pkl` without "__author__" for a Caffe2 blob dict, wraps its "model"
    entry as if it were one weight and fails ("Unsupported type found in checkpoint! model:
    <class 'dict'>"): such a file cannot be loaded by `DefaultPredictor` or
    `DetectionCheckpointer` at all. Here a `.pkl` whose "model" entry is a dict is read as the
    model-zoo file it is (the heads rename the published pixel-decoder names themselves); every
    other file is read by Detectron2 as before, so nothing Detectron2 loads changes.
    """
    if filename.endswith(".pkl"):
        try:
            data = read_pickle(filename)
        except UnsafeCheckpointError:
            data = None  # Detectron2's unrestricted reader decides, as it always did
        if isinstance(data, dict) and isinstance(data.get("model"), Mapping):
            if "__author__" not in data:
                self.logger.info(f"{filename}: a model-zoo file without '__author__'")
                data["__author__"] = "unknown"
            return data
    return _detectron2_load_file(self, filename)


if DetectionCheckpointer._load_file is _detectron2_load_file:
    DetectionCheckpointer._load_file = _load_file_reading_unsigned_model_zoo_pickles
