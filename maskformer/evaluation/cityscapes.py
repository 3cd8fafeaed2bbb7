"""Detectron2's Cityscapes evaluators, made to run with current NumPy.

The evaluations themselves are cityscapesscripts' `evalPixelLevelSemanticLabeling` and
`evalInstanceLevelSemanticLabeling`, which call `np.in1d`; NumPy 2.4 removed it (`np.isin`
replaces it). While our evaluators run, those modules alone see a NumPy with `in1d`. The instance
evaluation's debugging dump `matches.json`, which fails on NumPy integers, is not written.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
from detectron2.evaluation import CityscapesInstanceEvaluator as _D2CityscapesInstanceEvaluator
from detectron2.evaluation import CityscapesSemSegEvaluator as _D2CityscapesSemSegEvaluator

__all__ = ["CityscapesInstanceEvaluator", "CityscapesSemSegEvaluator"]


class _NumpyWithIn1d:
    """`numpy`, plus `in1d` for code written before NumPy 2.4."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def in1d(ar1, ar2, assume_unique=False, invert=False):
        # in1d flattened its first argument; isin keeps its shape.
        return np.isin(np.ravel(ar1), ar2, assume_unique=assume_unique, invert=invert)


@contextlib.contextmanager
def _on_current_numpy(module) -> Iterator[None]:
    """Within the block, the cityscapesscripts `module` sees a NumPy with `in1d`."""
    original = module.np
    if not hasattr(original, "in1d"):
        module.np = _NumpyWithIn1d()
    try:
        yield
    finally:
        module.np = original


@contextlib.contextmanager
def _pixel_evaluation() -> Iterator[None]:
    import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as cityscapes_eval

    with _on_current_numpy(cityscapes_eval):
        yield


@contextlib.contextmanager
def _instance_evaluation_without_matches_file() -> Iterator[None]:
    import cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling as cityscapes_eval

    write = cityscapes_eval.writeDict2JSON

    def write_except_matches(data, path):
        if path != "matches.json":
            write(data, path)

    cityscapes_eval.writeDict2JSON = write_except_matches
    try:
        with _on_current_numpy(cityscapes_eval):
            yield
    finally:
        cityscapes_eval.writeDict2JSON = write


class CityscapesSemSegEvaluator(_D2CityscapesSemSegEvaluator):
    def evaluate(self):
        with _pixel_evaluation():
            return super().evaluate()


class CityscapesInstanceEvaluator(_D2CityscapesInstanceEvaluator):
    """Mask AP and AP50 ("segm") by cityscapesscripts, over the 8 thing classes, against
    the `*_gtFine_instanceIds.png` of the dataset's `gt_dir`. Predicted classes are contiguous
    ids that index the metadata's `thing_classes` (names of Cityscapes labels)."""

    def evaluate(self):
        with _instance_evaluation_without_matches_file():
            return super().evaluate()
