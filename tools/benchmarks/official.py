"""The official MaskFormer (the `mask_former` package of a facebookresearch/MaskFormer checkout)
built from our config and given our weights, to be measured beside ours."""

from __future__ import annotations

import collections
import os
import sys
from typing import Dict

import torch
from detectron2.modeling import (
    BACKBONE_REGISTRY,
    META_ARCH_REGISTRY,
    SEM_SEG_HEADS_REGISTRY,
    build_model,
)


def official_model(checkout: str, cfg, state_dict: Dict[str, torch.Tensor]) -> torch.nn.Module:
    """The official model of `cfg` with `state_dict` (our plain model's: the two share their
    state-dict layout), in eval mode.

    The official package registers its meta-architecture, heads and (in a full checkout) the
    Swin backbone under our names, so it is imported and built while Detectron2's registries
    hold Detectron2's own entries only; then ours are put back.
    """
    registries = [META_ARCH_REGISTRY, SEM_SEG_HEADS_REGISTRY, BACKBONE_REGISTRY]
    ours = [dict(r._obj_map) for r in registries]  # fvcore's Registry has no removal API
    try:
        for r, entries in zip(registries, ours):
            r._obj_map = {k: v for k, v in entries.items() if v.__module__.startswith("detectron2")}
        sys.path.insert(0, os.path.abspath(os.path.expanduser(checkout)))
        try:
            import mask_former  # noqa: F401
        except ImportError as e:
            sys.exit(f"--compare-official {checkout}: no importable mask_former package ({e})")
        official_cfg = cfg.clone()
        official_cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_INFERENCE_METHOD = "probabilistic"
        model = build_model(official_cfg)
    finally:
        for r, entries in zip(registries, ours):
            r._obj_map = entries
    # Our keys are the official head's current (version 2) layout; without the version its
    # loader would rename them from the legacy one.
    metadata = dict(getattr(state_dict, "_metadata", {}))
    metadata["sem_seg_head"] = {**metadata.get("sem_seg_head", {}), "version": 2}
    state_dict = collections.OrderedDict(state_dict)
    state_dict._metadata = metadata
    result = model.load_state_dict(state_dict, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("criterion.")]
    if missing:
        sys.exit(
            f"--compare-official {checkout}: the official model lacks weights for {missing[:5]}"
        )
    return model.eval()
