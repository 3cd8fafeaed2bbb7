"""Evaluators chosen by the `evaluator_type` of the dataset being evaluated and by the outputs the
model produces (MODEL.MASK_FORMER.TEST.{SEMANTIC_ON, PANOPTIC_ON, INSTANCE_ON})."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator, DatasetEvaluators
from detectron2.utils import comm

from ..config import ConfigValueError
from ..modeling.inference_transforms import check_semantic_output
from .cityscapes import CityscapesInstanceEvaluator, CityscapesSemSegEvaluator
from .instance import InstanceEvaluator
from .panoptic import PanopticEvaluator
from .semantic import SemanticEvaluator

__all__ = [
    "EVALUATORS",
    "EvaluationOptions",
    "build_evaluator",
    "evaluation_options",
    "evaluation_semantic_output",
    "reads_semantic_labels",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationOptions:
    """Which model outputs exist to be evaluated, and how."""

    semantic: bool = True  # "sem_seg"
    panoptic: bool = False  # "panoptic_seg"
    instance: bool = False  # "instances"
    semantic_json: bool = False  # write the per-image RLEs (sem_seg_predictions.json)
    boundary_iou: bool = False  # per-class Boundary IoU too
    panoptic_predictions: bool = False  # write the panoptic prediction PNGs + JSON


def _semantic(dataset_name: str, output_dir: Optional[str], options: EvaluationOptions):
    return SemanticEvaluator(
        dataset_name,
        output_dir=output_dir,
        boundary_iou=options.boundary_iou,
        write_predictions_json=options.semantic_json,
    )


def _instance(dataset_name: str, output_dir: Optional[str]) -> DatasetEvaluator:
    # Boxes are the masks' bounding boxes, so box AP means something too.
    return InstanceEvaluator(
        dataset_name, tasks=("bbox", "segm"), distributed=True, output_dir=output_dir
    )


def _sem_seg(dataset_name, output_dir, options: EvaluationOptions) -> List[DatasetEvaluator]:
    return [_semantic(dataset_name, output_dir, options)] if options.semantic else []


def _panoptic_seg(
    dataset_name, output_dir, options: EvaluationOptions, *, cityscapes: bool = False
) -> List[DatasetEvaluator]:
    """PQ; mIoU if the dataset has semantic maps; AP if it has a COCO instances JSON.

    Cityscapes: mIoU on the train-id maps (the Cityscapes script's IoU wherever every class
    occurs in the ground truth, as in val), PQ, and mask AP by the Cityscapes script."""
    meta = MetadataCatalog.get(dataset_name)
    evaluators: List[DatasetEvaluator] = []
    if options.semantic and (cityscapes or meta.get("sem_seg_root")):
        evaluators.append(_semantic(dataset_name, output_dir, options))
    if options.panoptic:
        write = options.panoptic_predictions
        evaluators.append(
            PanopticEvaluator(dataset_name, output_dir=output_dir, write_predictions=write)
        )
    if options.instance:
        if cityscapes:
            _require_cityscapes_scripts(dataset_name)
            evaluators.append(CityscapesInstanceEvaluator(dataset_name))
        elif meta.get("json_file"):
            evaluators.append(_instance(dataset_name, output_dir))
        else:
            logger.warning(
                f"Dataset '{dataset_name}' has no COCO instances JSON (metadata 'json_file'): "
                "instance output is not evaluated"
            )
    return evaluators


def _coco_instances(dataset_name, output_dir, options: EvaluationOptions) -> List[DatasetEvaluator]:
    return [_instance(dataset_name, output_dir)] if options.instance else []


def _require_cityscapes_scripts(dataset_name: str) -> None:
    """Refuse what Detectron2's Cityscapes evaluators cannot do, before the model runs."""
    try:
        import cityscapesscripts  # noqa: F401  (the Cityscapes evaluators run its evaluation)
    except ImportError:
        raise ImportError(
            f"Evaluating '{dataset_name}' needs the Cityscapes scripts: pip install "
            "cityscapesscripts (or pip install -e '.[cityscapes]')"
        ) from None
    if comm.get_world_size() > comm.get_local_size():
        raise RuntimeError(
            "Detectron2's Cityscapes evaluators work on a single machine only (they write "
            "predictions to a local temporary directory); evaluate with --num-machines 1"
        )


def _cityscapes_sem_seg(dataset_name, output_dir, options: EvaluationOptions):
    if not options.semantic:
        return []
    _require_cityscapes_scripts(dataset_name)
    return [CityscapesSemSegEvaluator(dataset_name)]


# evaluator_type -> function(dataset_name, output_dir, options) -> the evaluators that apply
EVALUATORS: Dict[str, Callable[[str, Optional[str], EvaluationOptions], List[DatasetEvaluator]]] = {
    "sem_seg": _sem_seg,
    "cityscapes_sem_seg": _cityscapes_sem_seg,
    "cityscapes_panoptic_seg": functools.partial(_panoptic_seg, cityscapes=True),
    "coco_panoptic_seg": _panoptic_seg,
    "ade20k_panoptic_seg": _panoptic_seg,
    "coco": _coco_instances,
}


def build_evaluator(
    dataset_name: str, output_dir: Optional[str] = None, options: Optional[EvaluationOptions] = None
) -> DatasetEvaluator:
    """The evaluators of `dataset_name` for the outputs in `options`, as one evaluator.

    Raises if none applies: an evaluation that evaluates nothing is a configuration mistake.
    """
    options = options or EvaluationOptions()
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type")
    if evaluator_type not in EVALUATORS:
        raise NotImplementedError(
            f"Dataset '{dataset_name}' has evaluator_type '{evaluator_type}'; MaskFormer knows "
            f"{sorted(EVALUATORS)}"
        )
    evaluators = EVALUATORS[evaluator_type](dataset_name, output_dir, options)
    if not evaluators:
        outputs = [k for k in ("semantic", "panoptic", "instance") if getattr(options, k)]
        raise ValueError(
            f"Nothing to evaluate on dataset '{dataset_name}' (evaluator_type "
            f"'{evaluator_type}'): the model outputs {outputs or 'nothing'} "
            "(MODEL.MASK_FORMER.TEST.{SEMANTIC_ON, PANOPTIC_ON, INSTANCE_ON}) and the dataset "
            "has no ground truth for them"
        )
    return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)


def reads_semantic_labels(dataset_name: str) -> bool:
    """Whether the evaluators of `dataset_name` can read the semantic output as "sem_seg_labels"
    (ours can; Detectron2's Cityscapes evaluator takes the argmax of "sem_seg" scores)."""
    return MetadataCatalog.get(dataset_name).get("evaluator_type") != "cityscapes_sem_seg"


def evaluation_semantic_output(cfg) -> str:
    """The semantic output (a SEMANTIC_OUTPUT value) the model gives when evaluated on
    cfg.DATASETS.TEST: "scores" becomes "labels" where no consumer reads scores.

    Raises:
        ConfigValueError: labels asked for where TEST.AUG or an evaluator reads scores.
    """
    test = cfg.MODEL.MASK_FORMER.TEST
    requested = check_semantic_output(cfg)
    if not test.SEMANTIC_ON:
        return requested
    score_readers = [
        f"the evaluator of dataset '{name}' (evaluator_type "
        f"'{MetadataCatalog.get(name).get('evaluator_type')}')"
        for name in cfg.DATASETS.TEST
        if not reads_semantic_labels(name)
    ]
    if cfg.TEST.AUG.ENABLED:
        score_readers.insert(0, "test-time augmentation (TEST.AUG.ENABLED True)")
    if requested == "scores":
        return "labels" if test.OPTIMIZE and not score_readers else "scores"
    if score_readers:
        raise ConfigValueError(
            f"MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT is '{requested}', but "
            f"{score_readers[0]} reads the 'sem_seg' scores; set it to 'scores'"
        )
    return requested


def evaluation_options(cfg) -> EvaluationOptions:
    """The evaluation options a config implies."""
    test = cfg.MODEL.MASK_FORMER.TEST
    return EvaluationOptions(
        semantic=test.SEMANTIC_ON,
        panoptic=test.PANOPTIC_ON,
        instance=test.INSTANCE_ON,
        semantic_json=cfg.TEST.EVAL_SEM_SEG_JSON,
        boundary_iou=cfg.TEST.EVAL_BOUNDARY_IOU,
        panoptic_predictions=cfg.TEST.EVAL_PANOPTIC_PREDICTIONS,
    )
