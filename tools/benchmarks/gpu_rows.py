"""The rows of tools/benchmarks/gpu.py: what each model is measured on, the published figures
beside them, and the measurements (common.py's timing and memory)."""

from __future__ import annotations

import copy
import math
import os
import statistics
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from detectron2.modeling import build_model
from torch import nn

from maskformer.modeling.inference_transforms import optimize_for_inference
from maskformer.modeling.network_transforms import run_in_precision
from maskformer.solver import build_optimizer
from tools.benchmarks import common

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = {  # name: config file
    "ADE20K R50": "configs/ade20k/maskformer_R50.yaml",
    "ADE20K Swin-T": "configs/ade20k/swin/maskformer_swin_tiny.yaml",
    "COCO panoptic R50": "configs/coco-panoptic/maskformer_panoptic_R50.yaml",
}
# Published figures, with their source. Official: MaskFormer MODEL_ZOO.md, training memory per
# V100 (ADE20K 2 images per GPU, COCO 1). mmseg: mmsegmentation configs/maskformer (V100).
ANCHORS = {
    ("ADE20K R50", "train"): "official 4334 MB/GPU; mmseg 3.29 GB",
    ("ADE20K Swin-T", "train"): "official 5292 MB/GPU; mmseg 3.73 GB",
    ("COCO panoptic R50", "train"): "official 22634 MB/GPU",
    ("ADE20K R50", "infer"): "mmseg 42.2 img/s (V100, batch 1, fp32)",
    ("ADE20K Swin-T", "infer"): "mmseg 40.5 img/s (V100, batch 1, fp32)",
}
# Sizes, inference batch sizes, timed steps.
FULL = {"ade": (512, 512), "coco": (800, 1333), "batches": (1, 8), "warmup": 5, "iters": 20}
REDUCED = {"ade": (64, 64), "coco": (64, 96), "batches": (1, 2), "warmup": 0, "iters": 1}
# --reduced: the same architectures, narrow and shallow.
REDUCED_OPTS = {
    "": ["MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
         "MODEL.SEM_SEG_HEAD.CONVS_DIM", 32, "MODEL.SEM_SEG_HEAD.MASK_DIM", 32,
         "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 1, "MODEL.MASK_FORMER.HIDDEN_DIM", 32,
         "MODEL.MASK_FORMER.NHEADS", 4, "MODEL.MASK_FORMER.DIM_FEEDFORWARD", 64,
         "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 8, "MODEL.MASK_FORMER.DEC_LAYERS", 3],
    "Swin-T": ["MODEL.SWIN.EMBED_DIM", 32, "MODEL.SWIN.DEPTHS", [2, 2, 2, 2],
               "MODEL.SWIN.NUM_HEADS", [1, 2, 4, 8]],
}  # fmt: skip
# Rows by model: ADE20K (False) and COCO (True).
PRECISIONS = {
    False: {"train": ["fp32", "fp16"], "infer": ["fp32", "fp16", "fp32 channels-last"]},
    True: {"train": ["fp32"], "infer": ["fp32"]},
}
LOSS_TOLERANCE = 0.01  # float16 against float32 on one batch, relative


def check(name: str, value: float, fmt: str, ok: Optional[bool] = None) -> Dict:
    """One figure of a row's checks; `ok` None: reported, not judged."""
    return {"name": name, "value": value, "ok": ok, "text": f"{name} {value:{fmt}}"}


def loss_checks(losses: List[float], ratio: Optional[float] = None) -> List[Dict]:
    """A training row's checks: every loss finite; the float16 / float32 loss `ratio` on the
    fixed batch within LOSS_TOLERANCE of 1."""
    finite = sum(math.isfinite(x) for x in losses)
    checks = [check("finite losses", finite / len(losses), ".0%", finite == len(losses))]
    if ratio is not None:
        checks.append(check("fp16/fp32 loss", ratio, ".4f", abs(ratio - 1) <= LOSS_TOLERANCE))
    return checks


def build(name: str, reduced: bool, device: torch.device) -> Tuple[object, nn.Module]:
    """`name`'s config and its model (fixed seed, random weights) on `device`."""
    opts = ["MODEL.WEIGHTS", ""]
    if reduced:
        opts += REDUCED_OPTS[""] + (REDUCED_OPTS["Swin-T"] if name.endswith("Swin-T") else [])
    cfg = common.load_cfg(os.path.join(REPO_ROOT, MODELS[name]), device=device.type, opts=opts)
    torch.manual_seed(0)
    return cfg, build_model(cfg)


def fixed_batch_loss(model: nn.Module, batch: List[Dict], precision: str) -> float:
    """The total loss of `model` (in training mode) on `batch` under `precision`."""
    torch.manual_seed(0)  # the same dropout masks for every precision
    device = next(model.parameters()).device
    with torch.no_grad(), common.autocast(device, common.AUTOCAST[precision]):
        return float(sum(model(batch).values()))


def train_row(
    name: str, precision: str, batch: List[Dict], *, timing: Dict, reduced: bool, device
) -> Dict:
    """Steps from the initial weights (so that the peak memory is of this model alone); in
    float16, first the fixed-batch loss against float32."""
    cfg, model = build(name, reduced, device)
    ratio = None
    if precision == "fp16":
        model.train()
        ratio = fixed_batch_loss(model, batch, "fp16") / fixed_batch_loss(model, batch, "fp32")
    optimizer = build_optimizer(cfg, model)
    step = common.training_step(model.train(), optimizer, batch, dtype=common.AUTOCAST[precision])
    losses = []
    common.reset_peak_memory(device)
    times = common.timings(lambda: losses.append(float(step())), device, **timing)
    ms = 1000 * statistics.median(times)
    return row(name, "train", precision, batch, ms, len(batch) * 1000 / ms,
               common.peak_memory_mb(device), loss_checks(losses, ratio))  # fmt: skip


def inference_variant(model: nn.Module, precision: str) -> nn.Module:
    """The exact inference transforms, without channels-last unless named; "fp16": the network
    under autocast in float16 (the post-processing stays float32)."""
    optimize_for_inference(model, channels_last=precision.endswith("channels-last"))
    return run_in_precision(model, torch.float16 if precision == "fp16" else None).eval()


def infer_row(
    name: str,
    precision: str,
    model: nn.Module,
    samples: List[Dict],
    *,
    reference: Optional[torch.Tensor],
    timing: Dict,
    device: torch.device,
) -> Tuple[Dict, Optional[torch.Tensor]]:
    """The row of `model` on `samples`, and the (K, H, W) "sem_seg" scores of the first image
    (on the CPU; None without semantic output); with a `reference` (the float32 row's scores),
    the labels' agreement with it and the largest score difference."""
    common.reset_peak_memory(device)
    with torch.no_grad():
        times = common.timings(lambda: model(samples), device, **timing)
        out = model(samples)[0]
    scores = out["sem_seg"].float().cpu() if "sem_seg" in out else None
    checks = []
    if scores is not None and reference is not None:
        agree = float((scores.argmax(0) == reference.argmax(0)).double().mean())
        diff = float((scores - reference).abs().max())
        checks = [check("labels = fp32's at", agree, ".4%"), check("scores within", diff, ".1e")]
    ms = 1000 * statistics.median(times) / len(samples)
    result = row(name, "infer", precision, samples, ms, 1000 / ms,
                 common.peak_memory_mb(device), checks)  # fmt: skip
    return result, scores


def model_rows(name: str, settings: Dict, *, reduced: bool, device: torch.device) -> List[Dict]:
    """ADE20K: training in both precisions, inference in the three variants at each batch
    size; COCO: training and inference at batch 1, float32. `settings`: FULL or REDUCED."""
    coco = name.startswith("COCO")
    size = settings["coco" if coco else "ade"]
    timing = {k: settings[k] for k in ("warmup", "iters")}
    cfg, plain = build(name, reduced, torch.device("cpu"))  # copied to the device per variant
    classes, rng = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, np.random.default_rng(0)
    batch = [
        common.synthetic_sample(size, classes, rng, with_gt=True) for _ in range(1 if coco else 2)
    ]
    rows = [
        train_row(name, p, batch, timing=timing, reduced=reduced, device=device)
        for p in PRECISIONS[coco]["train"]
    ]
    for b in settings["batches"][:1] if coco else settings["batches"]:
        samples = [common.synthetic_sample(size, classes, rng, with_gt=False) for _ in range(b)]
        reference = None
        for precision in PRECISIONS[coco]["infer"]:
            model = inference_variant(copy.deepcopy(plain).to(device), precision)
            result, scores = infer_row(
                name, precision, model, samples, reference=reference, timing=timing, device=device
            )
            rows.append(result)
            reference = scores if reference is None else reference
            del model  # before the next variant's peak memory
    return rows


def row(
    name: str,
    phase: str,
    precision: str,
    inputs: List[Dict],
    ms: float,
    img_per_s: float,
    peak_mib: float,
    checks: List[Dict],
) -> Dict:
    """One row of the table, as written to the JSON file."""
    # The published inference figures are at batch 1.
    published = precision == "fp32" and (phase == "train" or len(inputs) == 1)
    anchor = ANCHORS.get((name, phase), "") if published else ""
    h, w = inputs[0]["image"].shape[-2:]
    return {"model": name, "phase": phase, "precision": precision, "batch": len(inputs),
            "input": f"{h}x{w}", "ms": ms, "images_per_s": img_per_s,
            "peak_mib": peak_mib, "checks": checks, "published": anchor}  # fmt: skip
