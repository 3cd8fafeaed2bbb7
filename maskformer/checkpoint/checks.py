"""What loading a checkpoint did to a model (`LoadReport`), and the two refusals built on it:
weights of another architecture (`check_architecture`), and weights that would leave tensors of
a model random where it must be trained (`check_trained`: evaluation, inference)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Mapping, Tuple

from torch import Tensor

from .errors import CheckpointError, UntrainedModelError

__all__ = ["LoadReport", "check_architecture", "check_trained"]


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
            lines.append(f"  missing in file ({len(self.missing)}): {preview(self.missing)}")
        if self.unexpected:
            lines.append(f"  not in model ({len(self.unexpected)}): {preview(self.unexpected)}")
        return "\n".join(lines)


def preview(keys: List[str], n: int = 12) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def _component(key: str) -> str:
    return key.split(".", 1)[0]


def check_architecture(
    report: LoadReport, state: Mapping[str, Tensor], model_state: Mapping[str, Tensor], path: str
) -> None:
    """Refuse weights of another architecture: nothing, or a whole component, fails to match."""
    if not report.loaded:
        raise CheckpointError(
            f"{path}: none of its {len(state)} weights fits this model: it is a checkpoint for "
            f"another architecture (file has e.g. {preview(list(state), 3)}; the model has "
            f"e.g. {preview(list(model_state), 3)})"
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
            f"{preview([k for k in state if _component(k) == comp], 2)}; the model has "
            f"e.g. {preview([k for k in model_state if _component(k) == comp], 2)})"
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
    """Refuse weights that leave a tensor of the model missing or of another shape: the model
    would give the numbers of a partly random network.

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
