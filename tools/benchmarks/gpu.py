#!/usr/bin/env python
"""GPU acceptance run: one table of training and inference speed and memory, with the
published figures to beat beside them (random weights, synthetic images, fixed seed).

    python tools/benchmarks/gpu.py [--json FILE]

Rows: ADE20K R50 and Swin-T at 512x512, a training step at batch 2 in float32 and in AMP float16
(GradScaler; the matcher and losses stay float32), and inference at batch 1 and 8 in float32,
float16 (network under autocast) and float32 channels-last; COCO panoptic R50 at 800x1333,
inference and a training step at batch 1 (float32). Each row: milliseconds per step (training)
or per image (inference), images per second, the peak CUDA allocation of the phase, its checks,
and the published figure. Checks: every step's loss is finite; on one fixed batch the float16
loss is within 1% of the float32 loss; the inference rows give their labels' agreement and
largest score difference with float32 at the same batch. Exits 1 if a check fails.

--reduced runs the same rows with small widths and depths and 64-pixel images, on the CPU by
default: a check that the script works (the test suite runs it), not a measurement.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

COLUMNS = ["model", "phase", "precision", "batch", "input", "ms", "images/s", "peak MiB", "checks",
           "published"]  # fmt: skip


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--reduced", action="store_true", help="small models and images (module doc)")
    p.add_argument("--device", help="default: cuda; with --reduced, cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json", metavar="FILE", help="also write the rows to this JSON file")
    return p.parse_args(argv)


def render(r: Dict) -> List[str]:
    judged = {True: " ok", False: " FAILED", None: ""}
    checks = "; ".join(c["text"] + judged[c["ok"]] for c in r["checks"])
    return [r["model"], r["phase"], r["precision"], str(r["batch"]), r["input"], f"{r['ms']:.1f}",
            f"{r['images_per_s']:.1f}", f"{r['peak_mib']:.0f}", checks, r["published"]]  # fmt: skip


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    args = parse_args(argv)
    import torch

    from tools.benchmarks import common
    from tools.benchmarks.gpu_rows import FULL, MODELS, REDUCED, model_rows

    device = torch.device(args.device or ("cpu" if args.reduced else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu.py: no CUDA device here; --reduced runs the small version on the CPU")
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = REDUCED if args.reduced else FULL
    rows = [
        r
        for name in MODELS
        for r in model_rows(name, settings, reduced=args.reduced, device=device)
    ]
    mode = "REDUCED (small models, not a measurement)" if args.reduced else "full"
    memory = "CUDA peak allocation of the row" if device.type == "cuda" else "process peak RSS"
    print(f"{common.machine_line(device)}; mode: {mode}; random weights; peak MiB: {memory}")
    print(common.markdown_table(COLUMNS, [render(r) for r in rows]))
    failed = [f"{r['model']} {r['phase']} {r['precision']}: {c['name']}"
              for r in rows for c in r["checks"] if c["ok"] is False]  # fmt: skip
    print("checks: " + ("FAILED " + "; ".join(failed) if failed else "all passed"))
    result = {"machine": common.machine_line(device), "reduced": args.reduced, "rows": rows}
    common.write_json(args.json, result)
    if failed:
        sys.exit(1)
    return result


if __name__ == "__main__":
    main()
