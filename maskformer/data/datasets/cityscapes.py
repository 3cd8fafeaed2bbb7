"""Cityscapes through Detectron2's registrations: `cityscapes_fine_sem_seg_{train,val,test}` (19
classes) and `cityscapes_fine_panoptic_{train,val}` (the same classes, 8 of them things).

Re-registered under a given root (layout: datasets/README.md) with loaders that say what is
missing and which cityscapesscripts command makes it, instead of failing deep inside Detectron2;
the semantic metadata gains the Cityscapes colours.
"""

from __future__ import annotations

import glob
import os
from typing import Callable, Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.cityscapes import load_cityscapes_semantic

from .custom import unregister
from .panoptic import load_panoptic_json

__all__ = [
    "CITYSCAPES_COLORS",
    "load_cityscapes_panoptic",
    "register_cityscapes_panoptic",
    "register_cityscapes_sem_seg",
]

# RGB colours of the 19 evaluated classes, in train-id order (road ... bicycle), as in
# cityscapesscripts' label table.
CITYSCAPES_COLORS = [
    [128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153],
    [153, 153, 153], [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152],
    [70, 130, 180], [220, 20, 60], [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100],
    [0, 80, 100], [0, 0, 230], [119, 11, 32],
]  # fmt: skip


def _how_to_prepare(base: str, *commands: str) -> str:
    made = " and ".join(f"`CITYSCAPES_DATASET={base} {c}`" for c in commands)
    return (
        f"Expected Cityscapes in {base}: leftImg8bit/ and gtFine/ from "
        f"leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip, then {made} "
        "(cityscapesscripts; datasets/README.md)."
    )


def _reregister(name: str, load: Callable[[str, Dict], List[Dict]], **paths) -> None:
    """Replace Detectron2's loader of `name` by `load(name, metadata)`, keeping the metadata
    Detectron2 gives the dataset, with `paths` added."""
    meta = MetadataCatalog.get(name).as_dict()
    meta.pop("name")
    meta.update(paths)
    unregister(name)
    DatasetCatalog.register(name, lambda: load(name, meta))
    MetadataCatalog.get(name).set(**meta)


def _load(name: str, meta: Dict, how_to_prepare: str) -> List[Dict]:
    image_dir, gt_dir = meta["image_dir"], meta["gt_dir"]
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
    """Point `cityscapes_fine_sem_seg_{train,val,test}` at `root` (normally $DETECTRON2_DATASETS),
    with `stuff_colors` added to their metadata."""
    base = os.path.join(root, "cityscapes")
    how = _how_to_prepare(base, "csCreateTrainIdLabelImgs")
    for split in ("train", "val", "test"):
        _reregister(
            f"cityscapes_fine_sem_seg_{split}",
            lambda name, meta: _load(name, meta, how),
            image_dir=os.path.join(base, "leftImg8bit", split),
            gt_dir=os.path.join(base, "gtFine", split),
            stuff_colors=CITYSCAPES_COLORS,
        )


def load_cityscapes_panoptic(
    image_dir: str, gt_dir: str, panoptic_root: str, panoptic_json: str, metadata: Dict
) -> List[Dict]:
    """Dataset dicts of a split converted by cityscapesscripts' createPanopticImgs.

    The dicts of Detectron2's `load_cityscapes_panoptic` (segments_info with contiguous ids,
    which are the train ids), plus "height", "width" and "isthing"; each image's files are named
    by its image id ("<city>_<sequence>_<frame>") rather than found by editing the image path,
    which goes wrong under a root whose path has a "." or "leftImg8bit" in it.
    `metadata` as for `load_panoptic_json`.
    """
    dicts = load_panoptic_json(panoptic_json, image_dir, panoptic_root, metadata)
    for d in dicts:
        image_id = d["image_id"]
        city = image_id.split("_")[0]
        # The JSON's image file names are the label names with "_gtFine" left in.
        d["file_name"] = os.path.join(image_dir, city, f"{image_id}_leftImg8bit.png")
        d["sem_seg_file_name"] = os.path.join(gt_dir, city, f"{image_id}_gtFine_labelTrainIds.png")
    return dicts


def _load_panoptic(name: str, meta: Dict, how_to_prepare: str) -> List[Dict]:
    image_dir, json_file = meta["image_root"], meta["panoptic_json"]
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(
            f"Dataset '{name}': image directory {image_dir} does not exist. {how_to_prepare}"
        )
    if not os.path.isfile(json_file):
        raise FileNotFoundError(
            f"Dataset '{name}': panoptic JSON {json_file} does not exist; make it with "
            f"cityscapesscripts' createPanopticImgs. {how_to_prepare}"
        )
    dicts = load_cityscapes_panoptic(
        image_dir, meta["gt_dir"], meta["panoptic_root"], json_file, meta
    )
    for key, what in (
        ("file_name", "image(s)"),
        ("pan_seg_file_name", "panoptic PNG(s), made by createPanopticImgs"),
        ("sem_seg_file_name", "train-id map(s), made by createTrainIdLabelImgs"),
    ):
        missing = [d[key] for d in dicts if not os.path.isfile(d[key])]
        if missing:
            raise FileNotFoundError(
                f"Dataset '{name}': {len(missing)} of the {len(dicts)} {what} listed by "
                f"{json_file} do not exist, e.g. {missing[0]}. {how_to_prepare}"
            )
    return dicts


def register_cityscapes_panoptic(root: str) -> None:
    """Point `cityscapes_fine_panoptic_{train,val}` at `root` (normally $DETECTRON2_DATASETS)."""
    base = os.path.join(root, "cityscapes")
    how = _how_to_prepare(
        base, "csCreateTrainIdLabelImgs", "csCreatePanopticImgs --set-names train val"
    )
    for split in ("train", "val"):
        _reregister(
            f"cityscapes_fine_panoptic_{split}",
            lambda name, meta: _load_panoptic(name, meta, how),
            image_root=os.path.join(base, "leftImg8bit", split),
            gt_dir=os.path.join(base, "gtFine", split),
            panoptic_root=os.path.join(base, "gtFine", f"cityscapes_panoptic_{split}"),
            panoptic_json=os.path.join(base, "gtFine", f"cityscapes_panoptic_{split}.json"),
        )
