"""Cityscapes semantic segmentation (19 classes) through Detectron2's `cityscapes_fine_sem_seg_*`.

Detectron2 registers these datasets and evaluates them with `CityscapesSemSegEvaluator`
(`evaluator_type: cityscapes_sem_seg`). This re-registers them under a given root with a loader
that says what is missing instead of failing deep inside Detectron2, and adds the Cityscapes
colours to their metadata. Layout (the official zips, plus cityscapesscripts' train-id maps):
    <root>/cityscapes/leftImg8bit/{train,val,test}/<city>/*_leftImg8bit.png
    <root>/cityscapes/gtFine/{train,val,test}/<city>/*_gtFine_{labelIds,labelTrainIds,
        instanceIds}.png, *_gtFine_polygons.json
"""

from __future__ import annotations

import glob
import os
from typing import Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.cityscapes import load_cityscapes_semantic

from .custom import unregister

__all__ = ["CITYSCAPES_COLORS", "register_cityscapes_sem_seg"]

# RGB colours of the 19 evaluated classes, in train-id order (road ... bicycle), as in
# cityscapesscripts' label table.
CITYSCAPES_COLORS = [
    [128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153],
    [153, 153, 153], [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152],
    [70, 130, 180], [220, 20, 60], [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100],
    [0, 80, 100], [0, 0, 230], [119, 11, 32],
]  # fmt: skip


def _load(name: str, image_dir: str, gt_dir: str, how_to_prepare: str) -> List[Dict]:
    for what, path in (("image", image_dir), ("ground-truth", gt_dir)):
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"Dataset '{name}': {what} directory {path} does not exist. {how_to_prepare}"
            )
    if not glob.glob(os.path.join(gt_dir, "*", "*_gtFine_labelTrainIds.png")):
        raise FileNotFoundError(
            f"Dataset '{name}': no *_gtFine_labelTrainIds.png under {gt_dir}. {how_to_prepare}"
        )
    return load_cityscapes_semantic(image_dir, gt_dir)


def register_cityscapes_sem_seg(root: str) -> None:
    """Point `cityscapes_fine_sem_seg_{train,val,test}` at `root` (normally $DETECTRON2_DATASETS).

    Keeps the metadata Detectron2 gives these datasets (classes, ignore label 255, evaluator
    type), with the directories under `root` and `stuff_colors` added.
    """
    base = os.path.join(root, "cityscapes")
    how_to_prepare = (
        f"Expected Cityscapes in {base}: leftImg8bit/ and gtFine/ from "
        "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip, then the train-id label maps "
        "made by cityscapesscripts: "
        f"`CITYSCAPES_DATASET={base} csCreateTrainIdLabelImgs` (datasets/README.md)."
    )
    for split in ("train", "val", "test"):
        name = f"cityscapes_fine_sem_seg_{split}"
        meta = MetadataCatalog.get(name).as_dict()
        meta.pop("name")
        image_dir = os.path.join(base, "leftImg8bit", split)
        gt_dir = os.path.join(base, "gtFine", split)
        meta.update(image_dir=image_dir, gt_dir=gt_dir, stuff_colors=CITYSCAPES_COLORS)
        unregister(name)
        DatasetCatalog.register(
            name, lambda n=name, i=image_dir, g=gt_dir: _load(n, i, g, how_to_prepare)
        )
        MetadataCatalog.get(name).set(**meta)
