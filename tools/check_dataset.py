#!/usr/bin/env python
"""Check a registered dataset before training on it.

    python tools/check_dataset.py my_train my_val [--workers 4] [--max-listed 50]
    python tools/check_dataset.py my_train --class-weights   # also suggest per-class weights

Reads every image and label file as training would and reports, naming each file: unreadable
files, label values outside the classes (other than the ignore label), images without labels and
labels without images, size mismatches between an image and its labels, panoptic segments
without a class; then the pixels and images per class. Exit status 1 if it found errors.
With --class-weights it also prints MODEL.MASK_FORMER.CLASS_WEIGHTS by median frequency
balancing: w_c = median(f) / f_c, f_c = pixels of class c / labelled pixels of the images
containing c (a class found in no image gets 0).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:
    from maskformer.data.check import DatasetReport

# maskformer (and so torch) is imported after the arguments are parsed: --help and argument
# errors answer at once.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("names", nargs="+", metavar="NAME", help="registered dataset names")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="threads")
    p.add_argument("--max-listed", type=int, default=50, help="findings listed per level")
    p.add_argument(
        "--class-weights",
        action="store_true",
        help="print suggested MODEL.MASK_FORMER.CLASS_WEIGHTS (median frequency balancing)",
    )
    return p


def class_weights_line(report: DatasetReport) -> str:
    """The suggested weights as a config line (median frequency balancing)."""
    from maskformer.modeling.class_weights import median_frequency_weights

    weights = median_frequency_weights(report.pixels, report.present_pixels)
    values = ", ".join(f"{w:.4g}" for w in weights)
    return f"MODEL.MASK_FORMER.CLASS_WEIGHTS: [{values}]"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Returns the exit status: 0 clean, 1 errors found, 2 unknown dataset."""
    args = get_parser().parse_args(argv)
    from maskformer.data.check import check_dataset, format_report
    from maskformer.data.datasets import register_described_datasets

    register_described_datasets()  # yours, by name

    status = 0
    for name in args.names:
        try:
            report = check_dataset(name, workers=args.workers)
        except KeyError as e:
            print(f"check_dataset: error: {e.args[0]}", file=sys.stderr)
            status = 2
            continue
        print(format_report(report, args.max_listed))
        if args.class_weights and report.pixels is not None:
            print(f"{name}: suggested weights (median frequency balancing):")
            print("  " + class_weights_line(report))
        if report.errors:
            status = max(status, 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
