#!/usr/bin/env python
"""Inference paths of one config compared with each other, and with the official code.

Each path (tools/benchmarks/paths.py) is built from the same random weights as the predictor
builds it, and the paths are timed interleaved, one call of each per round (so that their
ratios hold on a busy machine); medians after warm-up. Prints each path's seconds per image and
images per second at each batch size, its speed-up over the official model when that runs, and
its label agreement and largest score difference with the plain model (the reference) and the
official one, then the peak memory of the process (that of the path when --paths names one).

    python tools/benchmarks/deployment.py --config-file configs/ade20k/maskformer_R50.yaml \\
        --threads 2 --paths plain optimized compiled bf16 onnxruntime --batch 1 8 \\
        --compare-official ~/MaskFormer

--compare-official CHECKOUT adds the official model (facebookresearch/MaskFormer's `mask_former`
package, given the same weights). With random weights one class wins nearly every pixel, so
label agreement here says little beyond "equal"; tools/benchmarks/label_agreement.py measures
it with trained weights on images.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.benchmarks.options import add_run_options  # noqa: E402
from tools.benchmarks.paths import PATHS  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument(
        "--paths",
        nargs="+",
        choices=[*PATHS, "official"],
        default=["plain", "optimized"],
        help="paths to time (default: plain optimized)",
    )
    p.add_argument("--compare-official", metavar="CHECKOUT", help="add the official model")
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes (default 1)")
    p.add_argument("--size", type=int, default=512, help="square input side (default 512)")
    add_run_options(p, warmup=2, iters=10)
    args = p.parse_args(argv)
    if args.compare_official and "official" not in args.paths:
        args.paths.insert(0, "official")
    if "official" in args.paths and not args.compare_official:
        p.error("--paths official needs --compare-official CHECKOUT")
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    args = parse_args(argv)
    import statistics
    import tempfile

    import torch
    from detectron2.modeling import build_model

    from tools.benchmarks import common

    cfg, rng, device = common.start(args)
    plain = build_model(cfg).eval()
    models = {}
    workdir = tempfile.TemporaryDirectory()
    for name in args.paths:
        if name == "official":
            from tools.benchmarks.official import official_model

            models[name] = official_model(args.compare_official, cfg, plain.state_dict())
        else:
            models[name] = common.path_model(
                plain, cfg, name, workdir=workdir.name, example_size=args.size
            )
    del plain  # each path has its own copy: a one-path run's peak memory is that path's
    references = [r for r in ("plain", "official") if r in models]
    print(common.machine_line(device))
    print(
        f"config: {args.config_file}; input {args.size}x{args.size}; paths "
        f"{', '.join(args.paths)} (interleaved)"
    )
    res: Dict[str, float] = {}
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    for b in args.batch:
        size = (args.size, args.size)
        samples = [common.synthetic_sample(size, num_classes, rng, with_gt=False) for _ in range(b)]
        times = {name: [] for name in models}
        with torch.no_grad():
            for i in range(args.warmup + args.iters):
                for name, model in models.items():
                    t = common.timed(lambda: model(samples), device)  # noqa: B023
                    if i >= args.warmup:
                        times[name].append(t / b)
            outputs = {name: model(samples)[0] for name, model in models.items()}
        for name in models:
            key = f"{name}_b{b}"
            res[f"{key}_s"] = statistics.median(times[name])
            res[f"{key}_img_per_s"] = 1 / res[f"{key}_s"]
            line = f"{name:>14} batch {b}: {res[f'{key}_s']:.3f} s/img, "
            line += f"{res[f'{key}_img_per_s']:.2f} img/s"
            if "official" in models:
                res[f"{key}_speedup_over_official"] = res[f"official_b{b}_s"] / res[f"{key}_s"]
                line += f", {res[f'{key}_speedup_over_official']:.2f}x the official"
            for ref in references:
                if ref != name:
                    line += _compare(res, f"{key}_{ref}", outputs[name], outputs[ref], ref)
            print(line)
    res["peak_gb"] = common.peak_memory_mb(device) / 1024
    print(f"peak memory {res['peak_gb']:.2f} GB (the process: that of the path when it is alone)")
    workdir.cleanup()
    common.write_json(args.json, res)
    return res


def _compare(res: Dict[str, float], key: str, got: Dict, want: Dict, ref: str) -> str:
    """Label agreement (and, where both give scores, the largest score difference) of one
    image's outputs `got` with the reference path's `want`; recorded in `res` under `key`."""
    from maskformer.modeling.postprocessing import semantic_labels

    agree = float((semantic_labels(got).cpu() == semantic_labels(want).cpu()).double().mean())
    res[f"{key}_agreement"] = agree
    text = f", labels = {ref}'s at {agree:.4%}"
    if "sem_seg" in got and "sem_seg" in want:
        diff = float((got["sem_seg"].float() - want["sem_seg"].float()).abs().max())
        res[f"{key}_max_score_diff"] = diff
        text += f" (scores within {diff:.1e})"
    return text


if __name__ == "__main__":
    main()
