from .build import EVALUATORS, EvaluationOptions, build_evaluator, evaluation_options
from .panoptic_evaluation import BoundedCOCOPanopticEvaluator, pq_compute_multi_core

__all__ = [
    "EVALUATORS",
    "BoundedCOCOPanopticEvaluator",
    "EvaluationOptions",
    "build_evaluator",
    "evaluation_options",
    "pq_compute_multi_core",
]
