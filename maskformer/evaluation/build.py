"""Evaluators chosen by the `evaluator_type` of the dataset being evaluated."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator, DatasetEvaluators, SemSegEvaluator
from detectron2.utils import comm

from ..data.io import load_sem_seg_label
from .cityscapes import CityscapesSemSegEvaluator

__all__ = ["EVALUATORS", "build_evaluator"]


def _sem_seg(dataset_name: str, output_dir: Optional[str]) -> List[DatasetEvaluator]:
    # Our label loader reads 16-bit maps and works with numpy 2 (Detectron2's default does not).
    return [
        SemSegEvaluator(
            dataset_name,
            distributed=True,
            output_dir=output_dir,
            sem_seg_loading_fn=load_sem_seg_label,
        )
    ]


def _cityscapes_sem_seg(dataset_name: str, output_dir: Optional[str]) -> List[DatasetEvaluator]:
    try:
        import cityscapesscripts  # noqa: F401  (CityscapesSemSegEvaluator runs its evaluation)
    except ImportError:
        raise ImportError(
            f"Evaluating '{dataset_name}' needs the Cityscapes scripts: pip install "
            "cityscapesscripts (or pip install -e '.[cityscapes]')"
        ) from None
    if comm.get_world_size() > comm.get_local_size():
        raise RuntimeError(
            "CityscapesSemSegEvaluator works on a single machine only (it writes predictions to "
            "a local temporary directory); evaluate with --num-machines 1"
        )
    return [CityscapesSemSegEvaluator(dataset_name)]


# evaluator_type -> function(dataset_name, output_dir) -> evaluators
EVALUATORS: Dict[str, Callable[[str, Optional[str]], List[DatasetEvaluator]]] = {
    "sem_seg": _sem_seg,
    "cityscapes_sem_seg": _cityscapes_sem_seg,
}


def build_evaluator(dataset_name: str, output_dir: Optional[str] = None) -> DatasetEvaluator:
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type")
    if evaluator_type not in EVALUATORS:
        raise NotImplementedError(
            f"Dataset '{dataset_name}' has evaluator_type '{evaluator_type}'; MaskFormer knows "
            f"{sorted(EVALUATORS)}"
        )
    evaluators = EVALUATORS[evaluator_type](dataset_name, output_dir)
    return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)
