#!/usr/bin/env python
"""Speed and memory of a MaskFormer config on synthetic data (random weights, fixed seed).

Prints, for one config: parameters; inference seconds per image (batch 1, median after warm-up)
with its backbone / head / rest split; training seconds per iteration (forward, loss, backward,
optimizer step with the config's gradient clipping), with the time spent in the matcher; and
peak memory (process RSS, or CUDA peak allocation on a GPU).

    python tools/benchmark.py --config-file configs/ade20k/maskformer_R50.yaml --threads 2

Inference runs before training, so the first peak RSS is the inference peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from typing import Callable, Dict, List

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import BitMasks, Instances  # noqa: E402

from maskformer import get_maskformer_cfg  # noqa: E402
from maskformer.solver import build_optimizer  # noqa: E402


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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides")
    return p.parse_args(argv)


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


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
    """A random image and, for training, a partition into 4-7 segments of distinct classes."""
    image = torch.from_numpy(rng.integers(0, 256, (3, size, size), dtype=np.uint8)).float()
    sample = {"image": image, "height": size, "width": size}
    if with_gt:
        n = int(rng.integers(4, 8))
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


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def main(argv=None) -> Dict[str, float]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cfg = get_maskformer_cfg(args.config_file, ["MODEL.DEVICE", args.device, *args.opts])
    device = torch.device(args.device)
    model = build_model(cfg)
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    n_params = sum(p.numel() for p in model.parameters())
    res: Dict[str, float] = {"params": n_params}
    print(f"config: {args.config_file}")
    print(f"input: {args.size}x{args.size}, device: {device}, threads: {torch.get_num_threads()}")
    print(f"parameters: {n_params:,}")

    backbone_t = Timer(model.backbone, device)
    head_t = Timer(model.sem_seg_head, device)
    model.eval()
    sample = synthetic_sample(args.size, num_classes, rng, with_gt=False)
    times: List[float] = []
    split: List[List[float]] = []
    with torch.no_grad():
        for i in range(args.warmup + args.infer_iters):
            backbone_t.total = head_t.total = 0.0
            t = timed(lambda: model([sample]), device)
            if i >= args.warmup:
                times.append(t)
                split.append([backbone_t.total, head_t.total, t - backbone_t.total - head_t.total])
    res["infer_s"] = statistics.median(times)
    for j, key in enumerate(["infer_backbone_s", "infer_head_s", "infer_rest_s"]):
        res[key] = statistics.median(s[j] for s in split)
    res["infer_peak_gb"] = peak_memory_gb(device)
    print(
        f"inference: {res['infer_s']:.3f} s/img (median of {args.infer_iters}; backbone "
        f"{res['infer_backbone_s']:.3f} / head {res['infer_head_s']:.3f} / post-processing and "
        f"rest {res['infer_rest_s']:.3f}); peak memory {res['infer_peak_gb']:.2f} GB"
    )

    if not args.skip_train:
        model.train()
        optimizer = build_optimizer(cfg, model)
        matcher_t = Timer(model.criterion.matcher, device)
        batch = [synthetic_sample(args.size, num_classes, rng, True) for _ in range(args.batch)]

        def step():
            losses = model(batch)
            optimizer.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            optimizer.step()

        times, matcher = [], []
        for i in range(args.train_warmup + args.train_iters):
            matcher_t.total = 0.0
            t = timed(step, device)
            if i >= args.train_warmup:
                times.append(t)
                matcher.append(matcher_t.total)
        res["train_s"] = statistics.median(times)
        res["matcher_ms"] = 1000 * statistics.median(matcher)
        res["train_peak_gb"] = peak_memory_gb(device)
        print(
            f"training: {res['train_s']:.3f} s/iter at batch {args.batch} (median of "
            f"{args.train_iters}); matcher {res['matcher_ms']:.1f} ms/iter; "
            f"peak memory {res['train_peak_gb']:.2f} GB"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
