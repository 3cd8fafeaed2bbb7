"""The command-line options every timing script takes. Imports nothing heavy, so that --help
answers before torch is imported."""

from __future__ import annotations

import argparse


def add_run_options(p: argparse.ArgumentParser, *, warmup: int, iters: int) -> None:
    """--threads, --device, --warmup, --iters, --seed, --json and --opts (last: it takes the
    rest of the command line)."""
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=warmup)
    p.add_argument("--iters", type=int, default=iters)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="also write the figures to this JSON file")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config KEY VALUE pairs")
