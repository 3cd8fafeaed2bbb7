#!/usr/bin/env python
"""Training step time and memory of a config: random weights, synthetic images, fixed seed.

A step is forward, loss, backward and the optimizer step with the config's gradient clipping;
--precision runs it under autocast (float16 with loss scaling; the matcher and the losses stay
float32). Prints seconds per step (median after warm-up), images per second, the time spent in
the matcher, the memory autograd keeps for the backward pass (saved tensors), and peak memory
(CUDA peak allocation; on the CPU the peak RSS of the process). --step-memory adds the peak
tensor memory of one profiled step and its part beyond the parameters and optimizer state: on
the CPU the counterpart of CUDA's peak allocation, without the libraries and allocator caches
that RSS counts.

    python tools/benchmarks/training.py --config-file configs/ade20k/maskformer_R50.yaml --threads 2

--compare-official CHECKOUT measures the official model (facebookresearch/MaskFormer's
`mask_former` package, given the same initial weights and data) instead of ours.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.benchmarks.options import add_run_options  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--size", type=int, default=512, help="square input side (default 512)")
    p.add_argument("--batch", type=int, default=2, help="images per step (default 2)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--step-memory", action="store_true", help="profile one step (slow)")
    p.add_argument("--compare-official", metavar="CHECKOUT", help="measure the official model")
    add_run_options(p, warmup=3, iters=7)
    return p.parse_args(argv)


class SavedTensors:
    """Bytes of the distinct storages autograd keeps for the backward pass, other than the
    model's parameters: the activations (and derived weights) a training step holds."""

    def __init__(self, model):
        self.storages: Dict[int, int] = {}
        self._params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(self, t):
        s = t.untyped_storage()
        if s.data_ptr() not in self._params:
            self.storages[s.data_ptr()] = s.nbytes()
        return t


def step_tensor_memory_gb(step, device) -> float:
    """Peak GiB held by tensors on `device` during one call of `step`, from the profiler's
    memory timeline."""
    import json
    import tempfile
    import warnings

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
        # Deprecated for CUDA's own snapshots, which do not cover the CPU; still the only
        # allocation timeline of CPU tensors.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            p.export_memory_timeline(
                path, device=f"cuda:{device.index or 0}" if device.type == "cuda" else "cpu"
            )
        with open(path) as f:
            _, sizes = json.load(f)  # times, then bytes per category at each time
    return max(sum(s) for s in sizes) / 2**30


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    args = parse_args(argv)
    import statistics

    import torch
    from detectron2.modeling import build_model

    from maskformer.solver import build_optimizer
    from tools.benchmarks import common

    cfg, rng, device = common.start(args)
    model = build_model(cfg)
    if args.compare_official:
        from tools.benchmarks.official import official_model

        model = official_model(args.compare_official, cfg, model.state_dict())
    model.train()
    optimizer = build_optimizer(cfg, model)
    matcher_t = common.ModuleTimer(model.criterion.matcher, device)
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    size = (args.size, args.size)
    batch = [
        common.synthetic_sample(size, num_classes, rng, with_gt=True) for _ in range(args.batch)
    ]
    dtype = common.AUTOCAST[args.precision]
    step = common.training_step(model, optimizer, batch, dtype=dtype)
    print(common.machine_line(device))
    who = f"the official model ({args.compare_official})" if args.compare_official else "ours"
    print(f"config: {args.config_file}; {who}; input {args.size}x{args.size}, {args.precision}")

    common.reset_peak_memory(device)
    times, matcher = [], []
    for i in range(args.warmup + args.iters):
        matcher_t.total = 0.0
        t = common.timed(step, device)
        if i >= args.warmup:
            times.append(t)
            matcher.append(matcher_t.total)
    res = {"s": statistics.median(times), "matcher_ms": 1000 * statistics.median(matcher)}
    res["img_per_s"] = args.batch / res["s"]
    res["peak_gb"] = common.peak_memory_mb(device) / 1024
    if args.step_memory:
        state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
        kept = sum(t.numel() * t.element_size() for t in [*model.parameters(), *state])
        res["step_tensor_gb"] = step_tensor_memory_gb(step, device)
        res["step_extra_gb"] = res["step_tensor_gb"] - kept / 2**30
        print(
            f"step tensor memory (profiler): peak {res['step_tensor_gb']:.2f} GB, of which "
            f"{res['step_extra_gb']:.2f} GB beyond the parameters and optimizer state "
            "(activations, gradients, temporaries)"
        )
    # After the peak is read: this pass's bookkeeping would otherwise add to it.
    saved = SavedTensors(model)
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
        with common.autocast(device, dtype):
            model(batch)  # its losses are dropped at once: the saved tensors are what is counted
    res["saved_gb"] = sum(saved.storages.values()) / 2**30
    print(
        f"training: {res['s']:.3f} s/iter at batch {args.batch} (median of {args.iters}) = "
        f"{res['img_per_s']:.2f} img/s; matcher {res['matcher_ms']:.1f} ms/iter; activations "
        f"saved for backward {res['saved_gb']:.2f} GB; peak memory {res['peak_gb']:.2f} GB"
    )
    common.write_json(args.json, res)
    return res


if __name__ == "__main__":
    main()
