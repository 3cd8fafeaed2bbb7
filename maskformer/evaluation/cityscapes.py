"""Detectron2's CityscapesSemSegEvaluator, made to run with current NumPy.

The evaluation itself is cityscapesscripts' `evalPixelLevelSemanticLabeling`, which calls
`np.in1d`; NumPy 2.4 removed it (`np.isin` replaces it). Its module gets a NumPy stand-in that
adds `in1d` back; nothing else is changed, and nothing outside that module sees it.
"""

from __future__ import annotations

import numpy as np
from detectron2.evaluation import CityscapesSemSegEvaluator as _D2CityscapesSemSegEvaluator

__all__ = ["CityscapesSemSegEvaluator"]


class _NumpyWithIn1d:
    """`numpy`, plus `in1d` for code written before NumPy 2.4."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def in1d(ar1, ar2, assume_unique=False, invert=False):
        # in1d flattened its first argument; isin keeps its shape.
        return np.isin(np.ravel(ar1), ar2, assume_unique=assume_unique, invert=invert)


def _patch_cityscapes_scripts() -> None:
    import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as cityscapes_eval

    if not hasattr(cityscapes_eval.np, "in1d"):
        cityscapes_eval.np = _NumpyWithIn1d()


class CityscapesSemSegEvaluator(_D2CityscapesSemSegEvaluator):
    def evaluate(self):
        _patch_cityscapes_scripts()
        return super().evaluate()
