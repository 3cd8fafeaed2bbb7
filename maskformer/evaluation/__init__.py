from .build import (
    EVALUATORS,
    EvaluationOptions,
    build_evaluator,
    evaluation_options,
    evaluation_semantic_output,
    reads_semantic_labels,
)
from .instance import InstanceEvaluator
from .panoptic import PanopticEvaluator, pq_compact_stats, pq_image_stats, pq_summary
from .semantic import SemanticEvaluator, confusion_matrix, semantic_metrics

__all__ = [
    "EVALUATORS",
    "EvaluationOptions",
    "InstanceEvaluator",
    "PanopticEvaluator",
    "SemanticEvaluator",
    "build_evaluator",
    "confusion_matrix",
    "evaluation_options",
    "evaluation_semantic_output",
    "pq_compact_stats",
    "pq_image_stats",
    "pq_summary",
    "reads_semantic_labels",
    "semantic_metrics",
]
