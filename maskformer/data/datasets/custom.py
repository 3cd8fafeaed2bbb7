"""Register your own semantic segmentation data: a folder of images, a folder of label maps."""

from __future__ import annotations

import colorsys
import os
from typing import Callable, Dict, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg

__all__ = ["default_colors", "register_sem_seg_folder", "unregister"]


def default_colors(n: int) -> List[List[int]]:
    """`n` well-separated RGB colours (golden-ratio hues) for classes without a palette."""
    colors = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.95)
        colors.append([int(255 * r), int(255 * g), int(255 * b)])
    return colors


def unregister(name: str) -> None:
    """Remove `name` from both catalogs, so that it can be registered again (e.g. elsewhere)."""
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)


def _load_folder(name, image_root, sem_seg_root, image_ext, gt_ext, prepare, how_to_prepare):
    if prepare is not None:
        prepare()
    for what, path in (("image", image_root), ("label", sem_seg_root)):
        if not os.path.isdir(path):
            message = f"Dataset '{name}': {what} directory {path} does not exist."
            raise FileNotFoundError(f"{message} {how_to_prepare}" if how_to_prepare else message)
    return load_sem_seg(sem_seg_root, image_root, gt_ext=gt_ext, image_ext=image_ext)


def register_sem_seg_folder(
    name: str,
    image_root: str,
    sem_seg_root: str,
    classes: Sequence[str],
    *,
    colors: Optional[Sequence[Sequence[int]]] = None,
    ignore_label: int = 255,
    image_ext: str = "jpg",
    gt_ext: str = "png",
    evaluator_type: str = "sem_seg",
    prepare: Optional[Callable[[], None]] = None,
    how_to_prepare: str = "",
    dataset_id_to_contiguous_id: Optional[Dict[int, int]] = None,
) -> None:
    """Register a semantic segmentation dataset stored as two parallel folders.

    `image_root/a/b.jpg` is paired with `sem_seg_root/a/b.png`: a single-channel label map whose
    values are class indices into `classes` (0 .. K-1) or `ignore_label`. The dataset is then
    usable as `DATASETS.TRAIN/TEST: ("name",)` with `MODEL.SEM_SEG_HEAD.NUM_CLASSES: K`; its
    metadata has every key the mappers, evaluators and visualiser read.

    Args:
        name: dataset name for Detectron2's catalogs.
        image_root, sem_seg_root: the two folders.
        classes: class names, in label-value order.
        colors: RGB colour per class for drawing (default: distinct generated colours).
        ignore_label: label value of unlabelled pixels.
        image_ext, gt_ext: file extensions of images and label maps.
        evaluator_type: how `train_net.py` evaluates it ("sem_seg").
        prepare: called before every load of the file list, e.g. to generate the data once.
        how_to_prepare: appended to the error raised when a directory is missing: where the data
            is expected and which script makes it.
        dataset_id_to_contiguous_id: the dataset's own class ids -> label values, for datasets
            whose official ids are not 0..K-1 (SemSegEvaluator writes the dataset ids into its
            JSON predictions).
    """
    classes = list(classes)
    colors = [list(c) for c in colors] if colors is not None else default_colors(len(classes))
    if len(colors) != len(classes):
        raise ValueError(f"Dataset '{name}': {len(classes)} classes but {len(colors)} colours")
    DatasetCatalog.register(
        name,
        lambda: _load_folder(
            name, image_root, sem_seg_root, image_ext, gt_ext, prepare, how_to_prepare.strip()
        ),
    )
    if dataset_id_to_contiguous_id is not None:
        MetadataCatalog.get(name).set(
            stuff_dataset_id_to_contiguous_id=dict(dataset_id_to_contiguous_id)
        )
    MetadataCatalog.get(name).set(
        stuff_classes=classes,
        stuff_colors=colors,
        ignore_label=ignore_label,
        evaluator_type=evaluator_type,
        image_root=image_root,
        sem_seg_root=sem_seg_root,
    )
