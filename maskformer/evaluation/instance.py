"""COCO AP of instance output: Detectron2's COCOEvaluator, with the AP computed by
faster-coco-eval when it is installed (the same numbers as pycocotools, several times faster
on large datasets), by pycocotools otherwise."""

from __future__ import annotations

import contextlib
from typing import Iterator

from detectron2.evaluation import COCOEvaluator
from detectron2.evaluation import coco_evaluation as _coco_evaluation

__all__ = ["InstanceEvaluator", "faster_coco_eval_available"]


def faster_coco_eval_available() -> bool:
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _faster_cocoeval() -> Iterator[None]:
    """Within the block, Detectron2's "fast implementation" of COCOeval is faster-coco-eval's.

    Detectron2 looks up `COCOeval_opt` in its module at evaluation time; its own is a C++
    extension that pip-installed Detectron2 often lacks (then pycocotools' is used)."""
    from faster_coco_eval import COCOeval_faster

    original = _coco_evaluation.COCOeval_opt
    _coco_evaluation.COCOeval_opt = COCOeval_faster
    try:
        yield
    finally:
        _coco_evaluation.COCOeval_opt = original


class InstanceEvaluator(COCOEvaluator):
    """COCOEvaluator (box and mask AP, same results keys) using faster-coco-eval if installed."""

    def _eval_predictions(self, predictions, img_ids=None):
        if not faster_coco_eval_available():
            return super()._eval_predictions(predictions, img_ids)
        use_fast_impl = self._use_fast_impl
        self._use_fast_impl = True
        try:
            with _faster_cocoeval():
                return super()._eval_predictions(predictions, img_ids)
        finally:
            self._use_fast_impl = use_fast_impl
