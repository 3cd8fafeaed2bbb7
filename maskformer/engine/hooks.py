"""Training hooks: per-step seeds (exact resume), periodic checkpoints without a duplicate of the
final one, and evaluation overlays for TensorBoard."""

from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.engine import HookBase, hooks
from detectron2.evaluation import inference_context
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

from ..data.datasets.custom import default_colors
from ..data.io import read_image, read_label_map, rgb_to_panoptic_ids
from ..evaluation.reports import overlay_panels
from ..modeling.postprocessing import semantic_labels
from .evaluation import evaluated_on

__all__ = [
    "EvalImagesHook",
    "PeriodicCheckpointer",
    "StepSeedHook",
    "without_duplicate_final_checkpoint",
]


class StepSeedHook(HookBase):
    """Seed torch's generator from (seed, iteration, rank) before every step, so that a resumed
    run draws the dropout of the uninterrupted run."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def before_step(self):
        seq = np.random.SeedSequence([self.seed, self.trainer.iter, comm.get_rank()])
        torch.manual_seed(int(seq.generate_state(1)[0]))


class PeriodicCheckpointer(hooks.PeriodicCheckpointer):
    """Detectron2's `PeriodicCheckpointer`, except that the last iteration writes only
    `model_final.pth`: when MAX_ITER is a multiple of CHECKPOINT_PERIOD, Detectron2 also writes
    `model_{MAX_ITER - 1:07d}.pth`, a second copy of the same weights."""

    def step(self, iteration: int, **kwargs) -> None:
        if self.max_iter is not None and int(iteration) >= self.max_iter - 1:
            self.checkpointer.save(
                f"{self.file_prefix}_final", **{"iteration": int(iteration), **kwargs}
            )
            return
        super().step(iteration, **kwargs)


def without_duplicate_final_checkpoint(trainer_hooks: list) -> list:
    """`trainer_hooks` with Detectron2's PeriodicCheckpointer replaced by ours (same period,
    checkpointer and file prefix)."""
    out = []
    for h in trainer_hooks:
        if type(h) is hooks.PeriodicCheckpointer:
            h = PeriodicCheckpointer(
                h.checkpointer, h.period, max_iter=h.max_iter, max_to_keep=h.max_to_keep,
                file_prefix=h.file_prefix,
            )  # fmt: skip
        out.append(h)
    return out


def _segment_classes(ids: np.ndarray, segments: Sequence[Dict]) -> np.ndarray:
    """(H, W) class ids of an (H, W) panoptic id map whose segments' "category_id" `segments`
    lists by "id" (-1 where no segment is listed: unlabeled or no prediction). Ids may be as
    large as COCO's RGB-coded ones."""
    present, index = np.unique(ids, return_inverse=True)
    category = {s["id"]: s["category_id"] for s in segments}
    return np.array([category.get(int(i), -1) for i in present])[index].reshape(ids.shape)


def _predicted_classes(output: Dict) -> np.ndarray:
    """(H, W) class ids of a model output: semantic if there, else panoptic (-1: no segment)."""
    if "sem_seg_labels" in output or "sem_seg" in output:
        return semantic_labels(output).cpu().numpy()
    ids, segments = output["panoptic_seg"]
    return _segment_classes(ids.cpu().numpy(), segments)


def _ground_truth_classes(record: Dict) -> Optional[np.ndarray]:
    """(H, W) ground-truth class ids of a dataset record (-1 / ignore label: none), if any."""
    if "sem_seg_file_name" in record:
        return read_label_map(record["sem_seg_file_name"]).astype(np.int64)
    if "pan_seg_file_name" in record:
        ids = rgb_to_panoptic_ids(read_label_map(record["pan_seg_file_name"]))
        return _segment_classes(ids, record["segments_info"])
    return None


class EvalImagesHook(HookBase):
    """Image | prediction | ground truth of a few test images, to TensorBoard (through the
    event storage) whenever the evaluation hook evaluates: every `eval_period` iterations
    (0: never) and after training."""

    def __init__(
        self,
        *,
        eval_period: int,
        dataset_name: str,
        records: Sequence[Dict],
        mapper: Callable[[Dict], Dict],
    ):
        """
        Args:
            records: the dataset dicts of the images to draw.
            mapper: dataset dict -> model input, as the test loader maps them.
        """
        self._period = eval_period
        self._dataset_name = dataset_name
        self._records = list(records)
        self._mapper = mapper
        meta = MetadataCatalog.get(dataset_name)
        classes = meta.get("stuff_classes") or []
        self._colors = meta.get("stuff_colors") or default_colors(len(classes))

    def _write_images(self) -> None:
        model = self.trainer.model
        model = model.module if isinstance(model, DistributedDataParallel) else model
        storage = self.trainer.storage
        evaluated = evaluated_on(model, self._dataset_name)
        with inference_context(model), torch.no_grad():
            for record in self._records:
                output = evaluated([self._mapper(dict(record))])[0]
                panels = overlay_panels(
                    read_image(record["file_name"], "RGB"),
                    _predicted_classes(output),
                    _ground_truth_classes(record),
                    self._colors,
                )
                name = os.path.splitext(os.path.basename(record["file_name"]))[0]
                storage.put_image(
                    f"{self._dataset_name}/{name} (image | prediction | ground truth)",
                    torch.from_numpy(panels).permute(2, 0, 1).contiguous(),
                )

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if (
            self._period > 0
            and next_iter % self._period == 0
            and next_iter != self.trainer.max_iter
        ):
            self._write_images()

    def after_train(self):
        if self.trainer.iter + 1 >= self.trainer.max_iter:  # as EvalHook's final evaluation
            self._write_images()
