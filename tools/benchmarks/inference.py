#!/usr/bin/env python
"""Inference speed and memory of a config: random weights, synthetic images, fixed seed.

The model runs as the predictor, the demo and --eval-only run it: with the inference transforms
(unless --opts MODEL.MASK_FORMER.TEST.OPTIMIZE False) and the deployment options of the config
(TEST.PRECISION, TEST.COMPILE). Prints seconds per image (median after warm-up) at each batch
size with its backbone / head / rest split, images per second, and peak memory (CUDA peak
allocation; on the CPU the peak RSS of the process).

    python tools/benchmarks/inference.py --config-file configs/ade20k/maskformer_R50.yaml

--precision runs the whole model under autocast (post-processing included; TEST.PRECISION is
the deployment option, network only). --output-size asks for outputs at H x W from a --size
input, as for a photograph evaluated at its full resolution; --semantic-output chooses what
the semantic output is.
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
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes (default 1)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument(
        "--semantic-output",
        choices=["scores", "labels", "low_res_labels"],
        default="scores",
        help='"sem_seg" scores (default), their argmax only, or labels combined at the mask '
        "resolution (an approximation)",
    )
    p.add_argument("--output-size", type=int, nargs=2, metavar=("H", "W"))
    add_run_options(p, warmup=2, iters=10)
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    args = parse_args(argv)
    import statistics

    import torch
    from detectron2.modeling import build_model

    from maskformer.modeling.inference_transforms import optimize_from_config
    from maskformer.modeling.network_transforms import network_transforms_from_config
    from tools.benchmarks import common

    cfg, rng, device = common.start(args)
    cfg = common.with_semantic_output(cfg, args.semantic_output)
    model = build_model(cfg).eval()
    res: Dict[str, float] = {"params": sum(p.numel() for p in model.parameters())}
    network_transforms_from_config(optimize_from_config(model, cfg), cfg)
    backbone_t = common.ModuleTimer(model.backbone, device)
    head_t = common.ModuleTimer(model.sem_seg_head, device)
    dtype = common.AUTOCAST[args.precision]
    out_size = args.output_size or (args.size, args.size)
    print(common.machine_line(device))
    print(
        f"config: {args.config_file}; input {args.size}x{args.size}, output "
        f"{out_size[0]}x{out_size[1]}, {args.precision}, semantic output {args.semantic_output}; "
        f"{res['params']:,} parameters"
    )
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    for b in args.batch:
        samples = [
            common.synthetic_sample((args.size, args.size), num_classes, rng, with_gt=False)
            for _ in range(b)
        ]
        for s in samples:
            s["height"], s["width"] = out_size
        split = []  # per timed call: total, backbone, head seconds
        common.reset_peak_memory(device)
        with torch.no_grad(), common.autocast(device, dtype):
            for i in range(args.warmup + args.iters):
                backbone_t.total = head_t.total = 0.0
                total = common.timed(lambda: model(samples), device)  # noqa: B023
                if i >= args.warmup:
                    split.append([total, backbone_t.total, head_t.total])
        key = f"b{b}"
        for j, part in enumerate(["s", "backbone_s", "head_s"]):
            res[f"{key}_{part}"] = statistics.median(x[j] / b for x in split)
        res[f"{key}_rest_s"] = statistics.median((x[0] - x[1] - x[2]) / b for x in split)
        res[f"{key}_img_per_s"] = 1 / res[f"{key}_s"]
        res[f"{key}_peak_gb"] = common.peak_memory_mb(device) / 1024
        print(
            f"batch {b}: {res[f'{key}_s']:.3f} s/img (median of {args.iters}; backbone "
            f"{res[f'{key}_backbone_s']:.3f} / head {res[f'{key}_head_s']:.3f} / post-processing "
            f"and rest {res[f'{key}_rest_s']:.3f}) = {res[f'{key}_img_per_s']:.2f} img/s; peak "
            f"memory {res[f'{key}_peak_gb']:.2f} GB"
        )
    common.write_json(args.json, res)
    return res


if __name__ == "__main__":
    main()
