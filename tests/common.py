"""Tiny configs and synthetic inputs shared by the tests."""

from __future__ import annotations

import math
import os
import subprocess
import time
from pathlib import Path
from typing import List, Optional

import torch
from detectron2.structures import BitMasks, Instances

from maskformer import get_maskformer_cfg

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO_ROOT, "configs")
FIXTURES_DIR = os.path.join(REPO_ROOT, "tests", "fixtures")


def tiny_cfg(*opts, config_file: Optional[str] = None):
    """A MaskFormer config small enough for CPU tests: ResNet-18, width 32, 8 queries, K = 5.

    `config_file` is relative to configs/ (default: the ADE20K R50 recipe, then shrunk).
    """
    path = os.path.join(CONFIG_DIR, config_file or "ade20k/maskformer_R50.yaml")
    cfg = get_maskformer_cfg(
        path,
        [
            "MODEL.DEVICE",
            "cpu",
            "MODEL.WEIGHTS",
            "",
            "MODEL.RESNETS.DEPTH",
            18,
            "MODEL.RESNETS.RES2_OUT_CHANNELS",
            64,
            "MODEL.RESNETS.NORM",
            "BN",
            "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
            5,
            "MODEL.SEM_SEG_HEAD.CONVS_DIM",
            32,
            "MODEL.SEM_SEG_HEAD.MASK_DIM",
            32,
            "MODEL.MASK_FORMER.HIDDEN_DIM",
            32,
            "MODEL.MASK_FORMER.NHEADS",
            4,
            "MODEL.MASK_FORMER.DIM_FEEDFORWARD",
            64,
            "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES",
            8,
            "MODEL.MASK_FORMER.DEC_LAYERS",
            3,
            *opts,
        ],
    )
    return cfg


# Appended to `tiny_cfg` options: a 4-stage Swin of width 32 instead of the ResNet-18.
TINY_SWIN_OPTS = [
    "MODEL.BACKBONE.NAME",
    "D2SwinTransformer",
    "MODEL.SWIN.EMBED_DIM",
    32,
    "MODEL.SWIN.DEPTHS",
    [2, 2, 2, 2],
    "MODEL.SWIN.NUM_HEADS",
    [1, 2, 4, 8],
    "MODEL.SWIN.WINDOW_SIZE",
    7,
]


def sample(h: int, w: int, classes: List[int], seed: int = 0) -> dict:
    """A random image with one horizontal band per class (the bands tile the image)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, h, w), generator=g).float()
    out = {"image": image, "height": h, "width": w}
    inst = Instances((h, w))
    masks = torch.zeros(len(classes), h, w, dtype=torch.bool)
    for i in range(len(classes)):
        masks[i, i * h // len(classes) : (i + 1) * h // len(classes)] = True
    inst.gt_classes = torch.tensor(classes, dtype=torch.int64)
    inst.gt_masks = BitMasks(masks)
    out["instances"] = inst
    return out


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Overwrite every floating-point parameter and buffer with well-scaled random values.

    Default initialisations leave many tensors constant (norm weights 1, biases 0, BatchNorm
    statistics 0/1, Swin bias tables 0); comparisons between implementations would then not see
    a swapped or transposed tensor. Matrices get N(0, 1/fan_in), norm weights and variances
    U(0.5, 1.5), biases and means N(0, 0.2^2).
    """
    g = torch.Generator().manual_seed(seed)
    new = {}
    for name, v in module.state_dict().items():
        if not v.is_floating_point():
            new[name] = v
        elif "relative_position_bias_table" in name:
            new[name] = torch.randn(v.shape, generator=g)
        elif v.dim() >= 2:
            new[name] = torch.randn(v.shape, generator=g) / math.sqrt(v[0].numel())
        elif name.endswith(("weight", "running_var")):
            new[name] = torch.rand(v.shape, generator=g) + 0.5
        else:
            new[name] = torch.randn(v.shape, generator=g) * 0.2
    module.load_state_dict(new)
    return module


def cfg_opts(overrides: dict) -> list:
    """{"KEY": value} -> ["KEY", value, ...] for `get_maskformer_cfg` / `tiny_cfg`."""
    return [x for kv in overrides.items() for x in kv]


def assert_same_labels(labels: torch.Tensor, scores: torch.Tensor, tol: float) -> None:
    """`labels` (H, W) are the argmax of the reference `scores` (K, H, W) at every pixel where
    that argmax is decided: where its two best scores differ by more than `tol`, the scores'
    float rounding between implementations or thread counts."""
    top2 = scores.topk(2, dim=0).values
    decided = (top2[0] - top2[1]) > 2 * tol
    assert torch.equal(labels[decided], scores.argmax(0)[decided])


def wait_for_first_checkpoint(proc: subprocess.Popen, output_dir: Path, timeout: float = 300):
    """Return once the training run `proc` has tagged a checkpoint in `output_dir`; fail if it
    exits first or takes longer than `timeout` seconds."""
    deadline = time.time() + timeout
    while not (output_dir / "last_checkpoint").exists():
        assert proc.poll() is None, "training exited before its first checkpoint"
        assert time.time() < deadline, f"no checkpoint after {timeout:.0f} s"
        time.sleep(0.02)
