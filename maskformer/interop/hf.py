"""Hugging Face `MaskFormerForInstanceSegmentation` <-> MaskFormer (official layout) conversion of
weights and configs, without a `transformers` install (tools/convert_hf_maskformer.py).

HF spells its weights two ways: files (`model.safetensors` on the hub, and what `save_pretrained`
writes) use `out_proj`, `fc1`, `fc2` in the transformer decoder, while the modules of
transformers >= 5 use `o_proj`, `mlp.fc1`, `mlp.fc2`. Both are read; we write the file spelling,
which every transformers version loads.

HF's ResNet variant is the torchvision ResNet (stride in the 3x3 conv, 7x7 stem), i.e.
Detectron2's `build_resnet_backbone` with `STRIDE_IN_1X1: False`, `STEM_TYPE: "basic"`, as in
the official MaskFormer configs; its BatchNorm in eval mode computes what FrozenBN computes.
HF's Swin variant (`maskformer-swin`) is the official D2SwinTransformer. What HF's model cannot
express raises `UnsupportedConversionError`, naming it (the tool's --help lists it).
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

__all__ = [
    "UnsupportedConversionError",
    "hf_config_from_maskformer_cfg",
    "hf_to_maskformer",
    "is_hf_maskformer_state_dict",
    "maskformer_cfg_from_hf_config",
    "maskformer_to_hf",
]

_HF_PREFIXES = ("model.pixel_level_module.", "model.transformer_module.", "class_predictor.")


class UnsupportedConversionError(ValueError):
    """The model (or config) uses something the other implementation cannot express."""


def is_hf_maskformer_state_dict(keys: Iterable[str]) -> bool:
    """Whether the keys are those of an HF `MaskFormerForInstanceSegmentation`."""
    return any(k.startswith(_HF_PREFIXES) for k in keys)


# ---------------------------------------------------------------------------------------------
# Name rules: (ours, HF) key prefixes. "{a}", "{b}", "{c}" stand for integers; the rest of the
# key (".weight", ".bias", ".running_mean", ...) is kept.
# ---------------------------------------------------------------------------------------------

_PD = "sem_seg_head.pixel_decoder."
_TR = "sem_seg_head.predictor.transformer.decoder."
_HF_PD = "model.pixel_level_module.decoder."
_HF_TR = "model.transformer_module.decoder."
_HF_ENC = "model.pixel_level_module.encoder."
_HF_SWIN = _HF_ENC + "model."
_SWIN_BLOCK = "backbone.layers.{a}.blocks.{b}."
_HF_SWIN_BLOCK = _HF_SWIN + "encoder.layers.{a}.blocks.{b}."
_RES_BLOCK = "backbone.res{a}.{b}."
_HF_RES_BLOCK = _HF_ENC + "encoder.stages.{a}.layers.{b}."

_HEAD_RULES = [
    (_PD + "mask_features.", _HF_PD + "mask_projection."),
    ("sem_seg_head.predictor.query_embed.", "model.transformer_module.queries_embedder."),
    ("sem_seg_head.predictor.input_proj.", "model.transformer_module.input_projection."),
    ("sem_seg_head.predictor.class_embed.", "class_predictor."),
    ("sem_seg_head.predictor.mask_embed.layers.{a}.", "mask_embedder.{a}.0."),
    (_TR + "norm.", _HF_TR + "layernorm."),
    (_TR + "layers.{a}.self_attn.out_proj.", _HF_TR + "layers.{a}.self_attn.out_proj."),
    (_TR + "layers.{a}.multihead_attn.out_proj.", _HF_TR + "layers.{a}.encoder_attn.out_proj."),
    (_TR + "layers.{a}.linear1.", _HF_TR + "layers.{a}.fc1."),
    (_TR + "layers.{a}.linear2.", _HF_TR + "layers.{a}.fc2."),
    (_TR + "layers.{a}.norm1.", _HF_TR + "layers.{a}.self_attn_layer_norm."),
    (_TR + "layers.{a}.norm2.", _HF_TR + "layers.{a}.encoder_attn_layer_norm."),
    (_TR + "layers.{a}.norm3.", _HF_TR + "layers.{a}.final_layer_norm."),
    ("criterion.empty_weight", "criterion.empty_weight"),
]

_SWIN_RULES = [
    ("backbone.patch_embed.proj.", _HF_SWIN + "embeddings.patch_embeddings.projection."),
    ("backbone.patch_embed.norm.", _HF_SWIN + "embeddings.norm."),
    (_SWIN_BLOCK + "norm1.", _HF_SWIN_BLOCK + "layernorm_before."),
    (_SWIN_BLOCK + "norm2.", _HF_SWIN_BLOCK + "layernorm_after."),
    (_SWIN_BLOCK + "attn.relative_position_", _HF_SWIN_BLOCK + "attention.self.relative_position_"),
    (_SWIN_BLOCK + "attn.proj.", _HF_SWIN_BLOCK + "attention.output.dense."),
    (_SWIN_BLOCK + "mlp.fc1.", _HF_SWIN_BLOCK + "intermediate.dense."),
    (_SWIN_BLOCK + "mlp.fc2.", _HF_SWIN_BLOCK + "output.dense."),
    ("backbone.layers.{a}.downsample.", _HF_SWIN + "encoder.layers.{a}.downsample."),
    ("backbone.norm{a}.", _HF_ENC + "hidden_states_norms.{a}."),
]

# Integers differ: our res2 is HF's stage 0 and our conv1 its layer 0.
_RES = {"a": 2, "c": 1}
_RESNET_RULES = [
    ("backbone.stem.conv1.norm.", _HF_ENC + "embedder.embedder.normalization."),
    ("backbone.stem.conv1.", _HF_ENC + "embedder.embedder.convolution."),
    (_RES_BLOCK + "shortcut.norm.", _HF_RES_BLOCK + "shortcut.normalization.", _RES),
    (_RES_BLOCK + "shortcut.", _HF_RES_BLOCK + "shortcut.convolution.", _RES),
    (_RES_BLOCK + "conv{c}.norm.", _HF_RES_BLOCK + "layer.{c}.normalization.", _RES),
    (_RES_BLOCK + "conv{c}.", _HF_RES_BLOCK + "layer.{c}.convolution.", _RES),
]

# Packed q/k/v of ours <-> three projections of HF: (ours, HF, HF names of q, k, v).
_FUSED = [
    (
        _TR + "layers.{a}.self_attn.in_proj_{wb}",
        _HF_TR + "layers.{a}.self_attn.{part}.{wb}",
        ("q_proj", "k_proj", "v_proj"),
    ),
    (
        _TR + "layers.{a}.multihead_attn.in_proj_{wb}",
        _HF_TR + "layers.{a}.encoder_attn.{part}.{wb}",
        ("q_proj", "k_proj", "v_proj"),
    ),
    (
        _SWIN_BLOCK + "attn.qkv.{wb}",
        _HF_SWIN_BLOCK + "attention.self.{part}.{wb}",
        ("query", "key", "value"),
    ),
]

# transformers >= 5 module names -> file names (see the module docstring).
_HF_MODULE_SPELLING = [
    (re.compile(r"(decoder\.layers\.\d+\.(?:self_attn|encoder_attn))\.o_proj\."), r"\1.out_proj."),
    (re.compile(r"(decoder\.layers\.\d+)\.mlp\.(fc[12])\."), r"\1.\2."),
]

# The Swin classifier's final norm: HF's MaskFormer carries it unused (we use norm0..3).
_HF_UNUSED = _HF_SWIN + "layernorm."


def _compile(template: str, full: bool = False, parts: Tuple[str, ...] = ()) -> re.Pattern:
    pieces = re.split(r"\{(\w+)\}", template)
    regex = ""
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            regex += re.escape(piece)
        elif piece == "wb":
            regex += "(?P<wb>weight|bias)"
        elif piece == "part":
            regex += "(?P<part>" + "|".join(parts) + ")"
        else:
            regex += f"(?P<{piece}>\\d+)"
    return re.compile("^" + regex + ("$" if full else ""))


class _Renamer:
    """Prefix rules in one direction. A rule is (ours, HF) or (ours, HF, offsets), the offsets
    being ours minus HF's integers per placeholder."""

    def __init__(self, rules, to_hf: bool):
        self._rules = []
        for ours, hf, *offsets in rules:
            src, dst = (ours, hf) if to_hf else (hf, ours)
            shift = {k: (-v if to_hf else v) for k, v in (offsets[0] if offsets else {}).items()}
            self._rules.append((_compile(src), dst, shift))

    def __call__(self, key: str) -> Optional[str]:
        for pattern, dst, shift in self._rules:
            m = pattern.match(key)
            if m:
                ints = {k: int(v) + shift.get(k, 0) for k, v in m.groupdict().items()}
                return dst.format(**ints) + key[m.end() :]
        return None


def _fpn_table(levels: int) -> Dict[str, str]:
    """Our `layer_L` / `adapter_i` / `layer_i` (i = 1 is the finest level) -> HF's `fpn.stem` /
    `fpn.layers.t` (t = 0 is the coarsest lateral level), for L levels."""
    table = {f"layer_{levels}.": "fpn.stem.0.", f"layer_{levels}.norm.": "fpn.stem.1."}
    for i in range(1, levels):
        t = levels - 1 - i
        table[f"adapter_{i}."] = f"fpn.layers.{t}.proj.0."
        table[f"adapter_{i}.norm."] = f"fpn.layers.{t}.proj.1."
        table[f"layer_{i}."] = f"fpn.layers.{t}.block.0."
        table[f"layer_{i}.norm."] = f"fpn.layers.{t}.block.1."
    return {_PD + k + wb: _HF_PD + v + wb for k, v in table.items() for wb in ("weight", "bias")}


def _fpn_levels(keys: Iterable[str], hf: bool) -> int:
    if hf:
        found = [re.match(re.escape(_HF_PD) + r"fpn\.layers\.(\d+)\.", k) for k in keys]
        return max((int(m.group(1)) for m in found if m), default=-1) + 2
    found = [re.match(re.escape(_PD) + r"layer_(\d+)\.", k) for k in keys]
    return max((int(m.group(1)) for m in found if m), default=0)


def _backbone_kind(keys: Iterable[str], hf: bool) -> str:
    keys = list(keys)
    swin, resnet = (
        (_HF_SWIN + "embeddings.", _HF_ENC + "embedder.")
        if hf
        else ("backbone.patch_embed.", "backbone.stem.")
    )
    if any(k.startswith(swin) for k in keys):
        return "swin"
    if any(k.startswith(resnet) for k in keys):
        return "resnet"
    raise UnsupportedConversionError(
        "cannot tell the backbone: expected Swin (patch embedding) or ResNet (stem) weights"
    )


def _unknown_error(keys: List[str], what: str) -> UnsupportedConversionError:
    return UnsupportedConversionError(
        f"{len(keys)} weights {what}: {', '.join(keys[:8])}" + (" ..." if len(keys) > 8 else "")
    )


def hf_to_maskformer(state: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """HF `MaskFormerForInstanceSegmentation` state dict (either spelling) -> ours, without the
    BatchNorm counters and the unused Swin classifier norm.

    Raises:
        UnsupportedConversionError: a key no rule knows (another HF model or version).
    """
    renamed = {}
    for key, value in state.items():
        for pattern, repl in _HF_MODULE_SPELLING:
            key = pattern.sub(repl, key)
        renamed[key] = value
    kind = _backbone_kind(renamed, hf=True)
    rename = _Renamer(_HEAD_RULES + (_SWIN_RULES if kind == "swin" else _RESNET_RULES), False)
    fpn = {hf: ours for ours, hf in _fpn_table(_fpn_levels(renamed, hf=True)).items()}
    fused = [(_compile(hf, True, parts), ours, parts) for ours, hf, parts in _FUSED]

    out: Dict[str, Tensor] = {}
    pending: Dict[str, Tuple[Tuple[str, ...], Dict[str, Tensor]]] = {}  # ours -> (q, k, v names)
    unknown = []
    for key, value in renamed.items():
        if key.startswith(_HF_UNUSED) or key.endswith("num_batches_tracked"):
            continue
        new = fpn.get(key) or rename(key)
        if new is not None:
            out[new] = value
            continue
        for pattern, ours, parts in fused:
            m = pattern.match(key)
            if m:
                g = m.groupdict()
                target = ours.format(**{k: v for k, v in g.items() if k != "part"})
                pending.setdefault(target, (parts, {}))[1][g["part"]] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise _unknown_error(unknown, "of the Hugging Face model have no MaskFormer counterpart")
    for target, (order, parts) in pending.items():
        missing = [p for p in order if p not in parts]
        if missing:
            raise UnsupportedConversionError(f"{target}: the {missing} projections are missing")
        out[target] = torch.cat([parts[p] for p in order], dim=0)
    return out


def maskformer_to_hf(state: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Our state dict -> HF `MaskFormerForInstanceSegmentation` (file spelling), with the BatchNorm
    counters and the unused Swin classifier norm (the identity) that HF expects.

    Raises:
        UnsupportedConversionError: weights HF's model has no place for.
    """
    kind = _backbone_kind(state, hf=False)
    rename = _Renamer(_HEAD_RULES + (_SWIN_RULES if kind == "swin" else _RESNET_RULES), True)
    fpn = _fpn_table(_fpn_levels(state, hf=False))
    fused = [(_compile(ours, True), hf, parts) for ours, hf, parts in _FUSED]
    out: Dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        new = fpn.get(key) or rename(key)
        if new is not None:
            out[new] = value
            continue
        for pattern, hf, parts in fused:
            m = pattern.match(key)
            if m:
                for part, chunk in zip(parts, value.chunk(3, dim=0)):
                    out[hf.format(part=part, **m.groupdict())] = chunk.clone()
                break
        else:
            unknown.append(key)
    if unknown:
        raise _unknown_error(unknown, "cannot be expressed in HF MaskFormerForInstanceSegmentation")
    if kind == "resnet":
        for key in [k for k in out if k.endswith(".normalization.running_var")]:
            out.setdefault(key[: -len("running_var")] + "num_batches_tracked", torch.tensor(0))
    else:
        norms = [_HF_ENC + f"hidden_states_norms.{i}.weight" for i in range(4)]
        if not all(k in out for k in norms):
            raise UnsupportedConversionError(
                "HF's Swin needs the norms of all four stages (backbone.norm0..3): "
                "MODEL.SWIN.OUT_FEATURES must be res2..res5"
            )
        width = out[norms[-1]].shape[0]
        out[_HF_UNUSED + "weight"] = torch.ones(width)
        out[_HF_UNUSED + "bias"] = torch.zeros(width)
    return out


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------

# Depths of Detectron2's ResNets by block type.
_D2_RESNET_DEPTHS = {
    ("basic", (2, 2, 2, 2)): 18,
    ("basic", (3, 4, 6, 3)): 34,
    ("bottleneck", (3, 4, 6, 3)): 50,
    ("bottleneck", (3, 4, 23, 3)): 101,
    ("bottleneck", (3, 8, 36, 3)): 152,
}
_STAGES = ["stage1", "stage2", "stage3", "stage4"]
_FEATURES = ["res2", "res3", "res4", "res5"]
# HF's image processor normalises RGB with the ImageNet mean/std (on a 0-1 scale).
_IMAGENET_MEAN = [123.675, 116.28, 103.53]
_IMAGENET_STD = [58.395, 57.12, 57.375]


def _unmet(*checks: Tuple[bool, str]) -> List[str]:
    """The messages of the checks whose condition is False."""
    return [message for ok, message in checks if not ok]


def maskformer_cfg_from_hf_config(hf: Mapping[str, Any]) -> Dict[str, Any]:
    """Config overrides ("MODEL.SWIN.EMBED_DIM" -> 96, ...) for our model matching an HF one.

    Args:
        hf: an HF `MaskFormerConfig` as a dict (`config.json`, or `config.to_dict()`).
    Raises:
        UnsupportedConversionError: listing everything our model cannot express.
    """
    if hf.get("model_type") != "maskformer":
        raise UnsupportedConversionError(
            f"expected an HF config with model_type 'maskformer', got {hf.get('model_type')!r}"
        )
    bb, dec = hf["backbone_config"], hf["decoder_config"]
    num_labels = len(hf["id2label"]) if hf.get("id2label") else hf.get("num_labels")
    out: Dict[str, Any] = {
        "MODEL.META_ARCHITECTURE": "MaskFormer",
        "MODEL.PIXEL_MEAN": list(_IMAGENET_MEAN),
        "MODEL.PIXEL_STD": list(_IMAGENET_STD),
        "INPUT.FORMAT": "RGB",
        "MODEL.SEM_SEG_HEAD.NAME": "MaskFormerHead",
        "MODEL.SEM_SEG_HEAD.IN_FEATURES": list(_FEATURES),
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES": int(num_labels),
        "MODEL.SEM_SEG_HEAD.CONVS_DIM": hf.get("fpn_feature_size", 256),
        "MODEL.SEM_SEG_HEAD.MASK_DIM": hf.get("mask_feature_size", 256),
        "MODEL.SEM_SEG_HEAD.NORM": "GN",
        "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME": "BasePixelDecoder",
        "MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE": "res5",
        "MODEL.MASK_FORMER.ENFORCE_INPUT_PROJ": False,
        "MODEL.MASK_FORMER.ENC_LAYERS": 0,
        "MODEL.MASK_FORMER.PRE_NORM": False,
        "MODEL.MASK_FORMER.HIDDEN_DIM": dec.get("d_model", 256),
        "MODEL.MASK_FORMER.DEC_LAYERS": dec.get("decoder_layers", 6),
        "MODEL.MASK_FORMER.NHEADS": dec.get("decoder_attention_heads", 8),
        "MODEL.MASK_FORMER.DIM_FEEDFORWARD": dec.get("decoder_ffn_dim", 2048),
        "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES": dec.get("num_queries", 100),
        "MODEL.MASK_FORMER.DROPOUT": dec.get("dropout", 0.1),
        "MODEL.MASK_FORMER.NO_OBJECT_WEIGHT": hf.get("no_object_weight", 0.1),
        "MODEL.MASK_FORMER.DICE_WEIGHT": hf.get("dice_weight", 1.0),
        "MODEL.MASK_FORMER.MASK_WEIGHT": hf.get("mask_weight", 20.0),
    }
    features = bb.get("out_features") or list(_STAGES)
    problems = _unmet(
        (dec.get("activation_function", "relu") == "relu", "decoder activation"),
        (list(features) == _STAGES, f"backbone out_features {features}"),
    )
    kind = bb.get("model_type")
    if kind in ("swin", "maskformer-swin"):
        problems += _unmet(
            (not bb.get("use_absolute_embeddings"), "Swin absolute embeddings"),
            (bb.get("hidden_act", "gelu") == "gelu", "Swin activation"),
            (bb.get("layer_norm_eps", 1e-5) == 1e-5, "Swin LayerNorm eps"),
        )
        size = bb.get("image_size", 224)
        out.update(
            {
                "MODEL.BACKBONE.NAME": "D2SwinTransformer",
                "MODEL.SWIN.EMBED_DIM": bb.get("embed_dim", 96),
                "MODEL.SWIN.DEPTHS": list(bb.get("depths", [2, 2, 6, 2])),
                "MODEL.SWIN.NUM_HEADS": list(bb.get("num_heads", [3, 6, 12, 24])),
                "MODEL.SWIN.WINDOW_SIZE": bb.get("window_size", 7),
                "MODEL.SWIN.PATCH_SIZE": bb.get("patch_size", 4),
                "MODEL.SWIN.MLP_RATIO": float(bb.get("mlp_ratio", 4.0)),
                "MODEL.SWIN.QKV_BIAS": bb.get("qkv_bias", True),
                "MODEL.SWIN.PRETRAIN_IMG_SIZE": size if isinstance(size, int) else size[0],
                "MODEL.SWIN.DROP_RATE": bb.get("hidden_dropout_prob", 0.0),
                "MODEL.SWIN.ATTN_DROP_RATE": bb.get("attention_probs_dropout_prob", 0.0),
                "MODEL.SWIN.DROP_PATH_RATE": bb.get("drop_path_rate", 0.1),
                "MODEL.SWIN.APE": False,
                "MODEL.SWIN.PATCH_NORM": True,
                "MODEL.SWIN.OUT_FEATURES": list(_FEATURES),
            }
        )
    elif kind == "resnet":
        layer_type = bb.get("layer_type", "bottleneck")
        depths = tuple(bb.get("depths", (3, 4, 6, 3)))
        widths = list(bb.get("hidden_sizes", [256, 512, 1024, 2048]))
        depth = _D2_RESNET_DEPTHS.get((layer_type, depths))
        problems += _unmet(
            (depth is not None, f"ResNet {layer_type} depths {list(depths)}"),
            (widths == [widths[0] * 2**i for i in range(4)], f"ResNet widths {widths}"),
            (
                layer_type == "bottleneck" or widths[0] == 64,
                "basic-block ResNet wider than 64 in stage 1 (Detectron2's R18/R34 are 64)",
            ),
            (not bb.get("downsample_in_first_stage"), "downsample_in_first_stage"),
            (bb.get("hidden_act", "relu") == "relu", "ResNet activation"),
        )
        # Detectron2's bottleneck width; HF's is a quarter of the block width.
        bottleneck = widths[0] // 4 if layer_type == "bottleneck" else 64
        out.update(
            {
                "MODEL.BACKBONE.NAME": "build_resnet_backbone",
                "MODEL.RESNETS.DEPTH": depth,
                "MODEL.RESNETS.STEM_TYPE": "basic",
                "MODEL.RESNETS.STEM_OUT_CHANNELS": bb.get("embedding_size", 64),
                "MODEL.RESNETS.RES2_OUT_CHANNELS": widths[0],
                "MODEL.RESNETS.NUM_GROUPS": 1,
                "MODEL.RESNETS.WIDTH_PER_GROUP": bottleneck,
                "MODEL.RESNETS.STRIDE_IN_1X1": bool(bb.get("downsample_in_bottleneck", False)),
                "MODEL.RESNETS.RES5_DILATION": 1,
                "MODEL.RESNETS.NORM": "FrozenBN",
                "MODEL.RESNETS.OUT_FEATURES": list(_FEATURES),
            }
        )
    else:
        problems.append(f"backbone model_type {kind!r} (expected maskformer-swin, swin or resnet)")
    if problems:
        raise UnsupportedConversionError(
            "the Hugging Face config uses what MaskFormer here cannot express: "
            + "; ".join(problems)
        )
    return out


def hf_config_from_maskformer_cfg(cfg, class_names: Optional[List[str]] = None) -> Dict[str, Any]:
    """An HF `MaskFormerConfig` (as the dict of `config.json`) for the model `cfg` builds.

    Args:
        class_names: K names for HF's `id2label` (default "LABEL_i").
    Raises:
        UnsupportedConversionError: listing everything HF's model cannot express.
    """
    m, mf, head = cfg.MODEL, cfg.MODEL.MASK_FORMER, cfg.MODEL.SEM_SEG_HEAD
    problems = _unmet(
        (m.META_ARCHITECTURE == "MaskFormer", f"META_ARCHITECTURE {m.META_ARCHITECTURE}"),
        (
            head.PIXEL_DECODER_NAME == "BasePixelDecoder",
            f"pixel decoder {head.PIXEL_DECODER_NAME} (HF has only the FPN one)",
        ),
        (head.NORM == "GN", f"SEM_SEG_HEAD.NORM {head.NORM!r} (HF: GroupNorm(32))"),
        (list(head.IN_FEATURES) == _FEATURES, f"SEM_SEG_HEAD.IN_FEATURES {list(head.IN_FEATURES)}"),
        (
            mf.TRANSFORMER_IN_FEATURE == "res5",
            f"TRANSFORMER_IN_FEATURE {mf.TRANSFORMER_IN_FEATURE}",
        ),
        (mf.ENC_LAYERS == 0, "MASK_FORMER.ENC_LAYERS > 0 (HF has no predictor encoder)"),
        (not mf.PRE_NORM, "MASK_FORMER.PRE_NORM (HF is post-norm)"),
        (
            list(m.PIXEL_MEAN) == _IMAGENET_MEAN and list(m.PIXEL_STD) == _IMAGENET_STD,
            "PIXEL_MEAN/STD other than ImageNet RGB (set them in HF's image processor)",
        ),
    )
    name = m.BACKBONE.NAME
    if name == "D2SwinTransformer":
        s = m.SWIN
        problems += _unmet(
            (not s.APE, "SWIN.APE"),
            (s.PATCH_NORM, "SWIN.PATCH_NORM False"),
            (s.QK_SCALE is None, "SWIN.QK_SCALE"),
            (list(s.OUT_FEATURES) == _FEATURES, f"SWIN.OUT_FEATURES {list(s.OUT_FEATURES)}"),
        )
        embed_dim, n_stages = s.EMBED_DIM, len(s.DEPTHS)
        top_channels = embed_dim * 2 ** (n_stages - 1)
        backbone = {
            "model_type": "maskformer-swin",
            "image_size": s.PRETRAIN_IMG_SIZE,
            "patch_size": s.PATCH_SIZE,
            "num_channels": 3,
            "embed_dim": embed_dim,
            "depths": list(s.DEPTHS),
            "num_heads": list(s.NUM_HEADS),
            "window_size": s.WINDOW_SIZE,
            "mlp_ratio": s.MLP_RATIO,
            "qkv_bias": s.QKV_BIAS,
            "hidden_dropout_prob": s.DROP_RATE,
            "attention_probs_dropout_prob": s.ATTN_DROP_RATE,
            "drop_path_rate": s.DROP_PATH_RATE,
            "hidden_act": "gelu",
            "use_absolute_embeddings": False,
            "layer_norm_eps": 1e-5,
            "out_features": list(_STAGES),
        }
    elif name in ("build_resnet_backbone", "build_resnet_deeplab_backbone"):
        r = m.RESNETS
        bottleneck = r.DEPTH >= 50
        problems += _unmet(
            (
                name == "build_resnet_backbone" and r.STEM_TYPE == "basic",
                "the DeepLab ResNet stem (R101c)",
            ),
            (r.NUM_GROUPS == 1, "grouped ResNet (ResNeXt)"),
            (r.RES5_DILATION == 1, "RESNETS.RES5_DILATION"),
            (not any(r.DEFORM_ON_PER_STAGE), "deformable convolutions"),
            (list(r.OUT_FEATURES) == _FEATURES, f"RESNETS.OUT_FEATURES {list(r.OUT_FEATURES)}"),
            (
                not bottleneck or r.WIDTH_PER_GROUP * 4 == r.RES2_OUT_CHANNELS,
                "a bottleneck width other than a quarter of the block width",
            ),
        )
        depths = {v: k[1] for k, v in _D2_RESNET_DEPTHS.items()}[r.DEPTH]
        top_channels = r.RES2_OUT_CHANNELS * 8
        backbone = {
            "model_type": "resnet",
            "num_channels": 3,
            "embedding_size": r.STEM_OUT_CHANNELS,
            "hidden_sizes": [r.RES2_OUT_CHANNELS * 2**i for i in range(4)],
            "depths": list(depths),
            "layer_type": "bottleneck" if bottleneck else "basic",
            "hidden_act": "relu",
            "downsample_in_first_stage": False,
            "downsample_in_bottleneck": bool(r.STRIDE_IN_1X1),
            "out_features": list(_STAGES),
        }
    else:
        raise UnsupportedConversionError(f"backbone {name}: HF MaskFormer has Swin and ResNet only")
    if mf.ENFORCE_INPUT_PROJ and top_channels == mf.HIDDEN_DIM:
        problems.append("ENFORCE_INPUT_PROJ with equal widths (HF projects only when they differ)")
    if problems:
        raise UnsupportedConversionError(
            "HF MaskFormerForInstanceSegmentation cannot express: " + "; ".join(problems)
        )
    k = head.NUM_CLASSES
    names = class_names or [f"LABEL_{i}" for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for NUM_CLASSES = {k}")
    return {
        "model_type": "maskformer",
        "architectures": ["MaskFormerForInstanceSegmentation"],
        "id2label": {str(i): n for i, n in enumerate(names)},
        "label2id": {n: i for i, n in enumerate(names)},
        "fpn_feature_size": head.CONVS_DIM,
        "mask_feature_size": head.MASK_DIM,
        "no_object_weight": mf.NO_OBJECT_WEIGHT,
        "dice_weight": mf.DICE_WEIGHT,
        "mask_weight": mf.MASK_WEIGHT,
        "cross_entropy_weight": 1.0,
        "use_auxiliary_loss": False,
        "backbone_config": backbone,
        "decoder_config": {
            "model_type": "detr",
            "d_model": mf.HIDDEN_DIM,
            "decoder_layers": mf.DEC_LAYERS,
            "decoder_attention_heads": mf.NHEADS,
            "encoder_attention_heads": mf.NHEADS,
            "decoder_ffn_dim": mf.DIM_FEEDFORWARD,
            "num_queries": mf.NUM_OBJECT_QUERIES,
            "dropout": mf.DROPOUT,
            "activation_function": "relu",
            "auxiliary_loss": False,
        },
    }
