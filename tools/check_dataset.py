#!/usr/bin/env python
"""Check a registered dataset before training on it.

    python tools/check_dataset.py my_train my_val [--workers 4] [--max-listed 50]

Reads every image and label file as training would and reports, naming each file: unreadable
files, label values outside the classes (other than the ignore label), images without labels and
labels without images, size mismatches between an image and its labels, panoptic segments
without a class; then the pixels and images per class. Exit status 1 if it found errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import maskformer  # noqa: E402, F401  (registers the datasets, yours included)
from maskformer.data.check import check_dataset, format_report  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("names", nargs="+", metavar="NAME", help="registered dataset names")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="threads")
    p.add_argument("--max-listed", type=int, default=50, help="findings listed per level")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Returns the exit status: 0 clean, 1 errors found, 2 unknown dataset."""
    args = get_parser().parse_args(argv)
    status = 0
    for name in args.names:
        try:
            report = check_dataset(name, workers=args.workers)
        except KeyError as e:
            print(f"check_dataset: error: {e.args[0]}", file=sys.stderr)
            status = 2
            continue
        print(format_report(report, args.max_listed))
        if report.errors:
            status = max(status, 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
