#!/usr/bin/env python
"""Whole-image against sliding-window semantic inference: speed and memory.

    python tools/benchmarks/sliding_window.py --threads 2 \\
        --config-file configs/cityscapes/maskformer_R101_sliding_window.yaml \\
        --opts MODEL.RESNETS.DEPTH 50

Part 1, the config's model on a --size input (default 1024 x 2048, Cityscapes at its own size):
seconds per image (median of --repeats after one warm-up; the paths timed in turns, image by
image, in one process, so that a busy machine slows them alike), the process's peak RSS during
inference and its growth over the RSS before it (Linux: the peak is restarted after the model
is built), and the peak tensor memory of one profiled inference (torch.profiler's memory
timeline: what the inference's tensors hold, free of the libraries and allocator caches that RSS
counts), for the whole image and for the config's windows (MODEL.MASK_FORMER.TEST.SLIDING_WINDOW)
at 1 and at TEST.IMS_PER_BATCH windows per call, semantic output "scores" and "labels".

Part 2, memory on large inputs (--large, after the test resize) with a small model (the config
with --small-opts: ResNet-18, width 32, 8 queries by default), semantic output "labels": the
windows against one window alone and the whole image (--whole-large), beside the sizes of the
labels, of the score strip and of the (K, H, W) scores (computed from their shapes).

Random weights (the computation, hence speed and memory, does not depend on them), random
images, the model transformed for inference as --eval-only runs it. Each memory figure comes from
a process of its own, so that peak RSS belongs to it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Dict, List, Tuple

# torch, Detectron2 and maskformer are imported after the arguments are parsed: --help answers
# at once.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

DEFAULT_CONFIG = "configs/cityscapes/maskformer_R101_sliding_window.yaml"
SMALL_OPTS = [
    "MODEL.RESNETS.DEPTH", "18",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "MODEL.RESNETS.NORM", "BN",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32",
    "MODEL.SEM_SEG_HEAD.MASK_DIM", "32",
    "MODEL.MASK_FORMER.HIDDEN_DIM", "32",
    "MODEL.MASK_FORMER.NHEADS", "4",
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD", "64",
    "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "8",
    "MODEL.MASK_FORMER.DEC_LAYERS", "3",
]  # fmt: skip
GIB = 2**30


def parse_args(argv=None) -> argparse.Namespace:
    return get_parser().parse_args(argv)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", default=DEFAULT_CONFIG)
    p.add_argument("--opts", nargs="*", default=[], help="KEY VALUE config overrides")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--size", type=int, nargs=2, default=[1024, 2048], metavar=("H", "W"))
    p.add_argument("--repeats", type=int, default=3, help="timed images after one warm-up")
    p.add_argument(
        "--large",
        nargs="*",
        default=["4000x6000", "10000x10000"],
        metavar="HxW",
        help="part 2 input sizes (none: skip part 2)",
    )
    p.add_argument("--small-opts", nargs="*", default=SMALL_OPTS, help="part 2: the small model")
    p.add_argument(
        "--whole-large",
        nargs="*",
        default=["4000x6000"],
        metavar="HxW",
        help="part 2: also the whole image at these sizes, for comparison",
    )
    p.add_argument("--skip-speed", action="store_true", help="part 2 only")
    p.add_argument("--measure", help=argparse.SUPPRESS)  # one measurement, in a child process
    return p


def _status_gib(field: str) -> float:
    with open("/proc/self/status") as f:
        kib = next(int(ln.split()[1]) for ln in f if ln.startswith(field + ":"))
    return kib * 1024 / GIB


def reset_peak_rss() -> float:
    """The current RSS; the peak (Linux's VmHWM) restarts from it, so that the peak read after
    inference is the inference's, not the model building's."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_gib("VmRSS")


def peak_rss() -> float:
    return _status_gib("VmHWM")


def peak_tensor_gib(run) -> float:
    """Peak bytes of the tensors alive during `run()` (created in it), from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as p:
        run()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "timeline.json")
        with warnings.catch_warnings():  # deprecated for CUDA; the only CPU tensor timeline
            warnings.simplefilter("ignore")
            p.export_memory_timeline(path, device="cpu")
        with open(path) as f:
            _, sizes = json.load(f)  # times, then bytes per category at each time
    return max(sum(s) for s in sizes) / GIB


def build(spec: Dict, windows: bool, per_call: int):
    """The model as --eval-only builds it (engine.launch.load_for_evaluation; windows are
    averaged from scores), seeded so that every path has the same weights."""
    import torch
    from detectron2.modeling import build_model

    from maskformer import get_maskformer_cfg
    from maskformer.modeling.inference_transforms import optimize_from_config
    from maskformer.modeling.sliding_window import sliding_window_from_config

    opts = list(spec["opts"]) + ["MODEL.DEVICE", "cpu", "TEST.IMS_PER_BATCH", str(per_call)]
    if not windows:
        opts += ["MODEL.MASK_FORMER.TEST.SLIDING_WINDOW.SIZE", "[]"]
        opts += ["MODEL.MASK_FORMER.TEST.SLIDING_WINDOW.STRIDE", "[]"]
    cfg = get_maskformer_cfg(spec["config"], opts)
    output = spec["semantic_output"]
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    optimize_from_config(model, cfg, semantic_output="scores" if windows else output)
    return sliding_window_from_config(model, cfg, semantic_output=output)


def measure(spec: Dict) -> Dict:
    """Figures in this process. spec: config, opts, threads, size, semantic_output, and "paths",
    a list of [windows (bool), windows per call]. One path: its memory (peak RSS and tensors of
    one inference). Several: seconds per image of each, timed in turns, image by image, so that
    a busy machine slows them alike (median of "repeats" after one warm-up round)."""
    import torch

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    models = [build(spec, windows, k) for windows, k in spec["paths"]]
    h, w = spec["size"]
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
    inputs = [{"image": image, "height": h, "width": w}]

    def run(model):
        with torch.no_grad():
            model(inputs)

    if len(models) > 1:
        times: List[List[float]] = [[] for _ in models]
        for _ in range(spec["repeats"] + 1):
            for model, t in zip(models, times):
                start = time.perf_counter()
                run(model)
                t.append(time.perf_counter() - start)
        return {"seconds": [statistics.median(t[1:]) for t in times]}
    before = reset_peak_rss()
    run(models[0])
    result = {"rss_before": before, "rss_peak": peak_rss()}
    result["tensor_peak"] = peak_tensor_gib(lambda: run(models[0]))
    return result


def run_child(spec: Dict) -> Dict:
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--measure", json.dumps(spec)],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        sys.exit(f"measurement {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def speed_table(args, base: Dict) -> None:
    from maskformer import get_maskformer_cfg
    from maskformer.modeling.sliding_window import window_grid

    cfg = get_maskformer_cfg(args.config_file, args.opts)
    window = cfg.MODEL.MASK_FORMER.TEST.SLIDING_WINDOW
    if not window.SIZE:
        sys.exit(f"{args.config_file}: MODEL.MASK_FORMER.TEST.SLIDING_WINDOW.SIZE is not set")
    grid = window_grid(tuple(args.size), tuple(window.SIZE), tuple(window.STRIDE))
    n = len(grid.rows) * len(grid.cols)
    h, w = args.size
    print(f"\n{args.config_file} {' '.join(args.opts)}, {h} x {w} input, random weights")
    print("| inference | output | s/image | peak RSS | RSS growth | peak tensors |")
    print("|---|---|---|---|---|---|")
    paths = [[False, 1]] + [[True, k] for k in sorted({1, cfg.TEST.IMS_PER_BATCH})]
    names = ["whole image"] + [
        f"{n} windows {window.SIZE[0]}x{window.SIZE[1]}, stride {window.STRIDE[0]}x"
        f"{window.STRIDE[1]}, {k} per call"
        for _, k in paths[1:]
    ]
    for output in ("scores", "labels"):
        spec = {**base, "size": args.size, "semantic_output": output, "repeats": args.repeats}
        seconds = run_child({**spec, "paths": paths})["seconds"]
        for name, path, t in zip(names, paths, seconds):
            r = run_child({**spec, "paths": [path]})
            print(
                f"| {name} | {output} | {t:.2f} | {r['rss_peak']:.2f} GiB | "
                f"{r['rss_peak'] - r['rss_before']:.2f} GiB | {r['tensor_peak']:.2f} GiB |",
                flush=True,
            )


def memory_table(args, base: Dict) -> None:
    from maskformer import get_maskformer_cfg
    from maskformer.modeling.sliding_window import window_grid

    cfg = get_maskformer_cfg(args.config_file, [*args.opts, *args.small_opts])
    window = tuple(cfg.MODEL.MASK_FORMER.TEST.SLIDING_WINDOW.SIZE)
    stride = tuple(cfg.MODEL.MASK_FORMER.TEST.SLIDING_WINDOW.STRIDE)
    k = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    small = {**base, "opts": [*args.opts, *args.small_opts], "semantic_output": "labels"}
    print(f"\nSmall model ({' '.join(args.small_opts)}), K = {k}, semantic output labels")
    print("| input | windows | RSS growth | peak tensors | labels | score strip | "
          "(K, H, W) scores |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")

    def size_of(text: str) -> Tuple[int, int]:
        h, w = text.lower().split("x")
        return int(h), int(w)

    # (size, in windows): one window alone (what a window costs), the whole image at
    # --whole-large sizes, and the windows at --large sizes.
    runs = [(window, False)] + [(size_of(s), False) for s in args.whole_large]
    runs += [(size_of(s), True) for s in args.large]
    for (h, w), windows in runs:
        r = run_child({**small, "size": [h, w], "paths": [[windows, 1]]})
        grid = window_grid((h, w), window, stride)
        n = len(grid.rows) * len(grid.cols) if windows else 0
        strip = k * grid.size[0] * w * 4 if windows else 0  # a (K, h, W) float32 strip
        print(
            f"| {h} x {w} | {n or 'whole image'} | {r['rss_peak'] - r['rss_before']:.2f} GiB | "
            f"{r['tensor_peak']:.2f} GiB | "
            f"{h * w * 8 / GIB:.2f} GiB | {strip / GIB:.2f} GiB | {k * h * w * 4 / GIB:.2f} GiB |",
            flush=True,
        )


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return
    import torch

    from tools.benchmarks.common import machine_line

    if args.threads:
        torch.set_num_threads(args.threads)
    base = {"config": args.config_file, "opts": args.opts, "threads": args.threads}
    print(machine_line(torch.device("cpu")))
    if not args.skip_speed:
        speed_table(args, base)
    if args.large:
        memory_table(args, base)


if __name__ == "__main__":
    main()
