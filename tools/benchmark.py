#!/usr/bin/env python
"""Speed and memory of a MaskFormer config on synthetic data (random weights, fixed seed).

Prints, for one config: parameters; inference seconds per image of the model as the predictor,
the demo and --eval-only run it (with the inference transforms unless
MODEL.MASK_FORMER.TEST.OPTIMIZE False) (batch 1 unless --infer-batch,
median after warm-up) with its backbone / head / rest split, and images per second; training
seconds per iteration (forward, loss, backward, optimizer step with the config's gradient
clipping) and images per second, with the time spent in the matcher; the memory the training
step keeps for the backward pass (saved tensors); and peak memory (process RSS on the CPU, where
inference runs first so the first figure is the inference peak; CUDA peak allocation per phase on
a GPU). With --step-memory, also the peak tensor memory of one profiled training step and its part
beyond the parameters and optimizer state: on the CPU the counterpart of CUDA's peak allocation,
free of the libraries and allocator caches that RSS counts.

    python tools/benchmark.py --config-file configs/ade20k/maskformer_R50.yaml --threads 2

On a GPU (figures per precision; --precision applies autocast to inference and training, with
loss scaling for fp16; the matcher and losses stay fp32):

    python tools/benchmark.py --config-file configs/ade20k/maskformer_R50.yaml --device cuda \
        --infer-batch 1 16 --batch 16 --precision bf16

Large outputs (--output-size: the network input stays --size, the outputs are requested at
H x W, as for a photograph evaluated at its full resolution); with --agreement, the share of
pixels whose label equals that of the exact semantic inference (computed band by band), which
is what MODEL.MASK_FORMER.TEST.SEM_SEG_LOW_RES_LABELS approximates:

    python tools/benchmark.py --config-file configs/ade20k/maskformer_R50.yaml --skip-train \
        --output-size 4000 6000 --agreement \
        --opts MODEL.MASK_FORMER.TEST.SEM_SEG_LOW_RES_LABELS True

The deployment paths run as the predictor runs them: MODEL.MASK_FORMER.TEST.PRECISION bfloat16
and TEST.COMPILE True through --opts, an exported ONNX file with --backend onnxruntime FILE
(tools/export_model.py --format onnx --dynamic). --paths times several paths built from the same
weights in one process, interleaved image by image (so that their ratios hold on a busy machine),
with each one's label agreement with the plain model (OPTIMIZE False, the reference); with
--compare-official PATH also the official implementation (the `mask_former` package of a
facebookresearch/MaskFormer checkout, given the same weights), and each path's speed-up over it:

    python tools/benchmark.py --config-file configs/ade20k/maskformer_R50.yaml --threads 2 \
        --paths plain optimized compiled bf16 onnxruntime --infer-batch 1 8 \
        --compare-official ~/MaskFormer

Peak RSS is that of the process, so it belongs to a path when --paths names one path only.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import warnings
from typing import Callable, Dict, List

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import BitMasks, Instances  # noqa: E402

from maskformer import get_maskformer_cfg  # noqa: E402
from maskformer.checkpoint import MaskFormerCheckpointer  # noqa: E402
from maskformer.data.io import read_image  # noqa: E402
from maskformer.export import MaskFormerLogits, OnnxRuntimeMaskFormer, export_onnx  # noqa: E402
from maskformer.modeling.inference_transforms import (  # noqa: E402
    BandedPostProcessing,
    optimize_from_config,
)
from maskformer.modeling.network_transforms import network_transforms_from_config  # noqa: E402
from maskformer.predictor import MaskFormerPredictor  # noqa: E402
from maskformer.solver import build_optimizer  # noqa: E402
from maskformer.utils import write_text_atomically  # noqa: E402

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# --paths: config overrides of each of our inference paths ("onnxruntime": exported first).
PATHS = {
    "plain": ["MODEL.MASK_FORMER.TEST.OPTIMIZE", False],
    "optimized": [],
    "compiled": ["MODEL.MASK_FORMER.TEST.COMPILE", True],
    "bf16": ["MODEL.MASK_FORMER.TEST.PRECISION", "bfloat16"],
    "bf16-compiled": [
        "MODEL.MASK_FORMER.TEST.PRECISION",
        "bfloat16",
        "MODEL.MASK_FORMER.TEST.COMPILE",
        True,
    ],
    "onnxruntime": [],
    # "sem_seg_labels" instead of the (K, H, W) scores: what a deployed segmenter returns.
    "labels": ["MODEL.MASK_FORMER.TEST.SEM_SEG_LABELS_ONLY", True],
    "bf16-labels": [
        "MODEL.MASK_FORMER.TEST.PRECISION",
        "bfloat16",
        "MODEL.MASK_FORMER.TEST.SEM_SEG_LABELS_ONLY",
        True,
    ],
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--size", type=int, default=512, help="square input size (default 512)")
    p.add_argument("--batch", type=int, default=2, help="training batch size (default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--infer-iters", type=int, default=10)
    p.add_argument("--train-iters", type=int, default=7)
    p.add_argument("--train-warmup", type=int, default=3)
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-infer", action="store_true")
    p.add_argument(
        "--infer-batch", type=int, nargs="+", default=[1], help="inference batch sizes (default 1)"
    )
    p.add_argument(
        "--precision",
        choices=sorted(PRECISIONS),
        default="fp32",
        help="autocast dtype of inference and training (default fp32: no autocast)",
    )
    p.add_argument(
        "--output-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="inference outputs at this size (default: the input size)",
    )
    p.add_argument(
        "--agreement",
        action="store_true",
        help="also report the share of pixels labelled as by the exact semantic inference",
    )
    p.add_argument(
        "--step-memory",
        action="store_true",
        help="also profile one training step's tensor memory (torch.profiler; slow)",
    )
    p.add_argument(
        "--backend",
        nargs=2,
        metavar=("onnxruntime", "FILE"),
        help="inference with this exported network (tools/export_model.py --dynamic) instead",
    )
    p.add_argument(
        "--paths",
        nargs="+",
        choices=sorted(PATHS) + ["official"],
        help="time these inference paths interleaved (module docstring); implies --skip-train",
    )
    p.add_argument(
        "--images",
        nargs="+",
        metavar="FILE",
        help="with --paths: instead of timing, the label agreement of each path with the plain "
        "model on these images (run as the predictor runs them; load trained weights with "
        "--opts MODEL.WEIGHTS)",
    )
    p.add_argument(
        "--compare-official",
        metavar="PATH",
        help="checkout of facebookresearch/MaskFormer: add its model to --paths",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides")
    return p.parse_args(argv)


def peak_memory_gb(device: torch.device) -> float:
    """CUDA: peak allocation since the last `reset_peak_memory`; CPU: peak RSS of the process."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


class SavedTensors:
    """Bytes of the distinct storages autograd keeps for the backward pass, other than the
    model's parameters: the activations (and derived weights) a training step holds."""

    def __init__(self, model: torch.nn.Module):
        self.storages: Dict[int, int] = {}
        self._params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in self._params:
            self.storages[s.data_ptr()] = s.nbytes()
        return t

    @property
    def gb(self) -> float:
        return sum(self.storages.values()) / 2**30


def step_tensor_memory_gb(step: Callable[[], None], device: torch.device) -> float:
    """Peak bytes held by tensors on `device` during one call of `step`, from the profiler's
    memory timeline: the CPU counterpart of CUDA's peak allocation, without the libraries and
    allocator caches that RSS includes."""
    from torch.profiler import ProfilerActivity, profile

    if not hasattr(profile, "export_memory_timeline"):
        sys.exit("--step-memory needs torch.profiler.profile.export_memory_timeline (torch >= 2.1)")

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(
        activities=activities, profile_memory=True, record_shapes=True, with_stack=True
    ) as p:
        step()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "timeline.json")
        dev = f"cuda:{device.index or 0}" if device.type == "cuda" else "cpu"
        # Deprecated for CUDA's own snapshots, which do not cover the CPU; still the only
        # allocation timeline of CPU tensors.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            p.export_memory_timeline(path, device=dev)
        with open(path) as f:
            _, sizes = json.load(f)  # times, then bytes per category at each time
    return max(sum(s) for s in sizes) / 2**30


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Accumulates the wall time a module's forward takes (via hooks)."""

    def __init__(self, module: torch.nn.Module, device: torch.device):
        self.total = 0.0
        self._device = device
        module.register_forward_pre_hook(self._start)
        module.register_forward_hook(self._stop)

    def _start(self, *_):
        sync(self._device)
        self._t0 = time.perf_counter()

    def _stop(self, *_):
        sync(self._device)
        self.total += time.perf_counter() - self._t0


def synthetic_sample(size: int, num_classes: int, rng: np.random.Generator, with_gt: bool) -> Dict:
    """A random image and, for training, a partition into 4-7 segments of distinct classes
    (at most `num_classes`)."""
    image = torch.from_numpy(rng.integers(0, 256, (3, size, size), dtype=np.uint8)).float()
    sample = {"image": image, "height": size, "width": size}
    if with_gt:
        n = min(int(rng.integers(4, 8)), num_classes)
        seeds = rng.integers(0, size, (n, 2))
        yy, xx = np.mgrid[:size, :size]
        dist = (yy[None] - seeds[:, :1, None]) ** 2 + (xx[None] - seeds[:, 1:, None]) ** 2
        owner = dist.argmin(0)
        masks = torch.from_numpy(np.stack([owner == i for i in range(n)]))
        inst = Instances((size, size))
        inst.gt_classes = torch.from_numpy(rng.choice(num_classes, n, replace=False)).long()
        inst.gt_masks = BitMasks(masks)
        sample["instances"] = inst
    return sample


@torch.no_grad()
def exact_labels(model: torch.nn.Module, sample: Dict) -> torch.Tensor:
    """(H, W) labels of the model's exact semantic inference at the sample's output size, band by
    band (the (K, H, W) scores of a large output need not fit in memory)."""
    images = model.preprocess_image([sample])
    out = model.sem_seg_head(model.backbone(images.tensor))
    exact = BandedPostProcessing(**model.postprocessing.options(), semantic_output="labels")
    result = exact(
        out["pred_logits"][0].float(),
        out["pred_masks"][0].float(),
        tuple(images.tensor.shape[-2:]),
        tuple(images.image_sizes[0]),
        (sample["height"], sample["width"]),
        None,
    )
    return result["sem_seg_labels"]


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def onnxruntime_model(backend: List[str], cfg) -> torch.nn.Module:
    """--backend onnxruntime FILE: the file run by `OnnxRuntimeMaskFormer` as the predictor runs
    it (`optimize_from_config` sets its post-processing)."""
    name, path = backend
    if name != "onnxruntime":
        sys.exit(f"--backend {name} {path}: the only exported backend is onnxruntime")
    return optimize_from_config(OnnxRuntimeMaskFormer.from_config(cfg, path), cfg)


def official_model(checkout: str, cfg, state_dict: Dict[str, torch.Tensor]) -> torch.nn.Module:
    """The official MaskFormer of the `mask_former` package in `checkout`, with `state_dict`
    (our plain model's: the two share their state-dict layout), in eval mode.

    The official package registers a MaskFormer meta-architecture, heads and (in a full checkout)
    the Swin backbone under our names, so it is imported and built while Detectron2's registries
    hold Detectron2's own entries only, then ours are put back.
    """
    from detectron2.modeling import (
        BACKBONE_REGISTRY,
        META_ARCH_REGISTRY,
        SEM_SEG_HEADS_REGISTRY,
        build_model,
    )

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
        official_cfg.defrost()
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
        sys.exit(f"--compare-official: the official model lacks weights for {missing[:5]}")
    return model.eval()


def image_agreement(args, cfg, models: Dict[str, torch.nn.Module], reference) -> Dict[str, float]:
    """--images: per path, the share of pixels labelled as by the reference path (mean and
    worst over the images), each image run through `MaskFormerPredictor` at its own size."""
    if reference is None:
        sys.exit("--images needs the plain path (the reference) in --paths")
    predictors = {
        name: MaskFormerPredictor(
            model,
            min_size_test=cfg.INPUT.MIN_SIZE_TEST,
            max_size_test=cfg.INPUT.MAX_SIZE_TEST,
            input_format=cfg.INPUT.FORMAT,
        )
        for name, model in models.items()
    }
    agreement: Dict[str, List[float]] = {name: [] for name in models if name != reference}
    for path in args.images:
        image = read_image(path, "RGB")
        want = predictors[reference](image).semantic
        for name in agreement:
            got = predictors[name](image).semantic
            agreement[name].append(float((got == want).double().mean()))
    res: Dict[str, float] = {}
    for name, values in agreement.items():
        res[f"{name}_agreement_mean"] = statistics.mean(values)
        res[f"{name}_agreement_min"] = min(values)
        print(
            f"{name:>14}: labels = {reference}'s at {res[f'{name}_agreement_mean']:.4%} of the "
            f"pixels (mean of {len(values)} images; worst {res[f'{name}_agreement_min']:.4%})"
        )
    if args.json:
        write_text_atomically(args.json, json.dumps(res, indent=2))
    return res


def compare_paths(args, cfg) -> Dict[str, float]:
    """--paths: each path built from one model's weights (random, or MODEL.WEIGHTS with
    --images), timed interleaved (one call of each per round), with label agreement against the
    plain model."""
    import copy

    plain = build_model(cfg)
    if args.images:  # label agreement on images means something with trained weights
        MaskFormerCheckpointer(plain).load(cfg.MODEL.WEIGHTS)
    paths = list(args.paths or ["plain", "optimized"])
    if args.compare_official and "official" not in paths:
        paths.insert(0, "official")
    if "official" in paths and not args.compare_official:
        sys.exit("--paths official needs --compare-official PATH")
    device = torch.device(args.device)
    models: Dict[str, torch.nn.Module] = {}
    tmp = tempfile.TemporaryDirectory()
    for name in paths:
        if name == "official":
            models[name] = official_model(args.compare_official, cfg, plain.state_dict())
            continue
        path_cfg = cfg.clone()
        path_cfg.defrost()
        path_cfg.merge_from_list(PATHS[name])
        model = copy.deepcopy(plain).eval()
        optimize_from_config(model, path_cfg)
        if name == "onnxruntime":
            onnx_file = os.path.join(tmp.name, "network.onnx")
            example = torch.rand(1, 3, args.size, args.size) * 255
            export_onnx(MaskFormerLogits(copy.deepcopy(plain)), example, onnx_file, dynamic=True)
            model = onnxruntime_model(["onnxruntime", onnx_file], path_cfg)
        network_transforms_from_config(model, path_cfg)
        models[name] = model.eval()
    del plain  # each path has its own copy; the peak RSS is of the paths' models only
    reference = "plain" if "plain" in paths else None
    if args.images:
        return image_agreement(args, cfg, models, reference)
    res: Dict[str, float] = {}
    print(
        f"config: {args.config_file}; input {args.size}x{args.size}; threads "
        f"{torch.get_num_threads()}; paths {', '.join(paths)} (interleaved)"
    )
    rng = np.random.default_rng(args.seed)
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    for b in args.infer_batch:
        samples = [synthetic_sample(args.size, num_classes, rng, with_gt=False) for _ in range(b)]
        times: Dict[str, List[float]] = {name: [] for name in paths}
        labels: Dict[str, torch.Tensor] = {}
        scores: Dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for i in range(args.warmup + args.infer_iters):
                for name in paths:
                    t = timed(lambda: models[name](samples), device)  # noqa: B023
                    if i >= args.warmup:
                        times[name].append(t / b)
            for name in paths:
                out = models[name](samples)[0]
                label = (
                    out["sem_seg_labels"] if "sem_seg_labels" in out else out["sem_seg"].argmax(0)
                )
                labels[name] = label.cpu()
                if "sem_seg" in out:
                    scores[name] = out["sem_seg"].float().cpu()
        for name in paths:
            key = f"{name}_b{b}"
            res[f"{key}_s"] = statistics.median(times[name])
            res[f"{key}_img_per_s"] = 1 / res[f"{key}_s"]
            line = f"{name:>14} batch {b}: {res[f'{key}_s']:.3f} s/img, "
            line += f"{res[f'{key}_img_per_s']:.2f} img/s"
            if "official" in paths:
                ratio = res[f"official_b{b}_s"] / res[f"{key}_s"]
                res[f"{key}_speedup_over_official"] = ratio
                line += f", {ratio:.2f}x the official"
            for ref in [reference, "official" if "official" in paths else None]:
                if ref and ref != name:
                    agree = float((labels[name] == labels[ref]).double().mean())
                    res[f"{key}_agreement_{ref}"] = agree
                    line += f", labels = {ref}'s at {agree:.4%}"
                    if name in scores and ref in scores:
                        diff = float((scores[name] - scores[ref]).abs().max())
                        res[f"{key}_max_score_diff_{ref}"] = diff
                        line += f" (scores within {diff:.1e})"
            print(line)
    res["peak_rss_gb"] = peak_memory_gb(device)
    print(
        f"peak RSS {res['peak_rss_gb']:.2f} GB (the process: that of the path when --paths "
        "names one)"
    )
    tmp.cleanup()
    if args.json:
        write_text_atomically(args.json, json.dumps(res, indent=2))
    return res


def main(argv=None) -> Dict[str, float]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cfg = get_maskformer_cfg(args.config_file, ["MODEL.DEVICE", args.device, *args.opts])
    device = torch.device(args.device)
    if args.paths or args.compare_official:
        return compare_paths(args, cfg)
    model = build_model(cfg)
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    n_params = sum(p.numel() for p in model.parameters())
    # Training (below) runs on a fresh plain model: the transforms are for inference.
    if args.backend:
        model = onnxruntime_model(args.backend, cfg)
    else:
        network_transforms_from_config(optimize_from_config(model, cfg), cfg)
    res: Dict[str, float] = {"params": n_params}
    print(f"config: {args.config_file}")
    out_size = "x".join(map(str, args.output_size)) if args.output_size else "the input size"
    print(
        f"input: {args.size}x{args.size}, output: {out_size}, device: {device}, "
        f"threads: {torch.get_num_threads()}"
    )
    print(f"parameters: {n_params:,}")

    # The ONNX Runtime path has no separate backbone and head.
    backbone_t = Timer(getattr(model, "backbone", torch.nn.Identity()), device)
    head_t = Timer(getattr(model, "sem_seg_head", torch.nn.Identity()), device)
    dtype = PRECISIONS[args.precision]

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    print(f"precision: {args.precision}")
    model.eval()
    for b in args.infer_batch:
        # Drawn even with --skip-infer, so that the training data stay the same.
        samples = [synthetic_sample(args.size, num_classes, rng, with_gt=False) for _ in range(b)]
        if args.skip_infer:
            continue
        if args.output_size:
            for s in samples:
                s["height"], s["width"] = args.output_size
        reset_peak_memory(device)
        times: List[float] = []
        split: List[List[float]] = []
        with torch.no_grad(), autocast():
            for i in range(args.warmup + args.infer_iters):
                backbone_t.total = head_t.total = 0.0
                t = timed(lambda: model(samples), device)  # noqa: B023
                if i >= args.warmup:
                    rest = t - backbone_t.total - head_t.total
                    times.append(t / b)
                    split.append([backbone_t.total / b, head_t.total / b, rest / b])
        key = "infer" if b == 1 else f"infer_b{b}"
        res[f"{key}_s"] = statistics.median(times)
        for j, part in enumerate(["backbone", "head", "rest"]):
            res[f"{key}_{part}_s"] = statistics.median(x[j] for x in split)
        res[f"{key}_img_per_s"] = 1 / res[f"{key}_s"]
        res[f"{key}_peak_gb"] = peak_memory_gb(device)
        if args.agreement and b == 1:
            with torch.no_grad(), autocast():
                out = model(samples)[0]
            labels = out["sem_seg_labels"] if "sem_seg_labels" in out else out["sem_seg"].argmax(0)
            labels = labels.cpu()
            exact = exact_labels(model, samples[0]).cpu()
            res["label_agreement"] = float((labels == exact).double().mean())
            print(
                f"labels equal to the exact semantic inference's at {res['label_agreement']:.4%} "
                f"of {labels.numel():,} pixels"
            )
        print(
            f"inference: {res[f'{key}_s']:.3f} s/img at batch {b} (median of "
            f"{args.infer_iters}; backbone {res[f'{key}_backbone_s']:.3f} / head "
            f"{res[f'{key}_head_s']:.3f} / post-processing and rest {res[f'{key}_rest_s']:.3f}) "
            f"= {res[f'{key}_img_per_s']:.2f} img/s; peak memory {res[f'{key}_peak_gb']:.2f} GB"
        )

    if not args.skip_train:
        del model
        torch.manual_seed(args.seed)
        model = build_model(cfg)
        model.train()
        optimizer = build_optimizer(cfg, model)
        matcher_t = Timer(model.criterion.matcher, device)
        batch = [synthetic_sample(args.size, num_classes, rng, True) for _ in range(args.batch)]

        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

        def step():
            with autocast():
                losses = model(batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(sum(losses.values())).backward()
            scaler.step(optimizer)
            scaler.update()

        reset_peak_memory(device)
        times, matcher = [], []
        for i in range(args.train_warmup + args.train_iters):
            matcher_t.total = 0.0
            t = timed(step, device)
            if i >= args.train_warmup:
                times.append(t)
                matcher.append(matcher_t.total)
        res["train_s"] = statistics.median(times)
        res["train_img_per_s"] = args.batch / res["train_s"]
        res["matcher_ms"] = 1000 * statistics.median(matcher)
        res["train_peak_gb"] = peak_memory_gb(device)
        if args.step_memory:
            tensors = sum(p.numel() * p.element_size() for p in model.parameters())
            tensors += sum(
                v.numel() * v.element_size()
                for state in optimizer.state.values()
                for v in state.values()
                if torch.is_tensor(v)
            )
            res["train_step_tensor_gb"] = step_tensor_memory_gb(step, device)
            res["train_step_extra_gb"] = res["train_step_tensor_gb"] - tensors / 2**30
            print(
                f"training step tensor memory (profiler): peak {res['train_step_tensor_gb']:.2f} GB"
                f", of which {res['train_step_extra_gb']:.2f} GB beyond the parameters and "
                "optimizer state (activations, gradients, temporaries)"
            )
        # After the peak is read: this pass's bookkeeping would otherwise add to it.
        saved = SavedTensors(model)
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t), autocast():
            losses = model(batch)
        del losses
        res["train_saved_gb"] = saved.gb
        print(
            f"training: {res['train_s']:.3f} s/iter at batch {args.batch} (median of "
            f"{args.train_iters}) = {res['train_img_per_s']:.2f} img/s; matcher "
            f"{res['matcher_ms']:.1f} ms/iter; activations saved for backward "
            f"{res['train_saved_gb']:.2f} GB; peak memory {res['train_peak_gb']:.2f} GB"
        )
    if args.json:
        write_text_atomically(args.json, json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
