"""Datasets in the COCO panoptic format: loading and registration (COCO, ADE20K, generated data).

On disk: images; one RGB PNG per image whose pixel colour encodes a segment id
(R + 256 G + 256^2 B, 0 = void); a JSON listing per image the segments ("segments_info": id,
category_id, iscrowd, ...) and the categories. Optionally a semantic label map per image
(contiguous class per pixel, 255 = void) and a COCO instances JSON of the thing segments (for AP).
"""

from __future__ import annotations

import json
import os
from typing import Callable, Dict, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.file_io import PathManager

from .custom import default_colors

__all__ = [
    "load_panoptic_json",
    "panoptic_metadata",
    "read_panoptic_categories",
    "register_coco_panoptic_folder",
    "register_panoptic",
]


def load_panoptic_json(
    json_file: str,
    image_root: str,
    panoptic_root: str,
    metadata: Dict,
    *,
    sem_seg_root: Optional[str] = None,
    image_ext: str = ".jpg",
) -> List[Dict]:
    """Detectron2 dataset dicts of a COCO-panoptic JSON.

    Like Detectron2's `load_coco_panoptic_json`, plus: image ids are kept as they are (ADE20K's
    are strings), "height"/"width" and the image file name come from the JSON's images (the
    PNG's name with `image_ext` if an image is not listed), "sem_seg_file_name" is added when
    `sem_seg_root` is given, and an unknown category names the file, image, segment and id.

    Args:
        metadata: with "thing_dataset_id_to_contiguous_id" and "stuff_dataset_id_to_contiguous_id"
            (a category in both is a thing).
        sem_seg_root: semantic label maps, named like the PNGs.
    Returns:
        dicts with "file_name", "image_id", "pan_seg_file_name", "segments_info" (category_id
        contiguous, "isthing" added), maybe "height", "width", "sem_seg_file_name".
    """
    things = metadata["thing_dataset_id_to_contiguous_id"]
    stuff = metadata["stuff_dataset_id_to_contiguous_id"]
    with PathManager.open(json_file) as f:
        data = json.load(f)
    images = {im["id"]: im for im in data.get("images", [])}
    dicts = []
    for ann in data["annotations"]:
        segments = []
        for seg in ann["segments_info"]:
            cat = seg["category_id"]
            if cat == 0 and cat not in things and cat not in stuff:
                raise ValueError(
                    f"{json_file}: image {ann['image_id']!r} ({ann['file_name']}), segment "
                    f"{seg['id']} has category_id 0, which COCO panoptic reserves for void "
                    "(unlabelled pixels are segment id 0, with no segments_info entry); give "
                    "its class an id from 1 up, or drop the segment to leave it unlabelled"
                )
            if cat not in things and cat not in stuff:
                known = sorted({*things, *stuff})
                raise ValueError(
                    f"{json_file}: image {ann['image_id']!r} ({ann['file_name']}), segment "
                    f"{seg['id']} has category_id {cat}, which the dataset's metadata does not "
                    f"know (its {len(known)} category ids are {known[:10]}"
                    f"{', ...' if len(known) > 10 else ''})"
                )
            isthing = cat in things
            contiguous = things[cat] if isthing else stuff[cat]
            segments.append({**seg, "category_id": contiguous, "isthing": isthing})
        image = images.get(ann["image_id"], {})
        image_file = image.get("file_name") or os.path.splitext(ann["file_name"])[0] + image_ext
        d = {
            "file_name": os.path.join(image_root, image_file),
            "image_id": ann["image_id"],
            "pan_seg_file_name": os.path.join(panoptic_root, ann["file_name"]),
            "segments_info": segments,
        }
        if image.get("height") and image.get("width"):
            d["height"], d["width"] = image["height"], image["width"]
        if sem_seg_root is not None:
            d["sem_seg_file_name"] = os.path.join(sem_seg_root, ann["file_name"])
        dicts.append(d)
    return dicts


def _load_checked(
    name: str, paths: Dict[str, Optional[str]], metadata: Dict, hint: str, prepare
) -> List[Dict]:
    if prepare is not None:
        prepare()
    for what, path in paths.items():
        if path is None:
            continue
        exists = os.path.isfile(path) if path.endswith(".json") else os.path.isdir(path)
        if not exists:
            raise FileNotFoundError(
                f"Dataset '{name}': {what} {path} does not exist. {hint} DETECTRON2_DATASETS is "
                f"'{os.getenv('DETECTRON2_DATASETS', 'datasets')}'."
            )
    return load_panoptic_json(
        paths["panoptic JSON"],
        paths["image directory"],
        paths["panoptic PNG directory"],
        metadata,
        sem_seg_root=paths["semantic label directory"],
    )


def register_panoptic(
    name: str,
    metadata: Dict,
    *,
    image_root: str,
    panoptic_root: str,
    panoptic_json: str,
    sem_seg_root: Optional[str] = None,
    instances_json: Optional[str] = None,
    evaluator_type: str = "coco_panoptic_seg",
    missing_hint: str = "",
    prepare: Optional[Callable[[], None]] = None,
) -> None:
    """Register a COCO-panoptic-format dataset, with the metadata every MaskFormer mapper and
    evaluator reads.

    Args:
        metadata: class names/colours and the thing/stuff id maps. For semantic evaluation the
            stuff map must cover every class (SemSegEvaluator maps every label through it).
        instances_json: COCO instances JSON of the things (enables instance AP); its category ids
            must map to contiguous thing ids 0..T-1, as COCOEvaluator requires.
        evaluator_type: a key of `maskformer.evaluation.EVALUATORS`.
        missing_hint: what to do when the files are missing, for the error message.
        prepare: called before every load, e.g. to generate the data once.
    """
    paths = {
        "image directory": image_root,
        "panoptic PNG directory": panoptic_root,
        "panoptic JSON": panoptic_json,
        "semantic label directory": sem_seg_root,
    }
    DatasetCatalog.register(
        name, lambda: _load_checked(name, paths, metadata, missing_hint, prepare)
    )
    extra = {"sem_seg_root": sem_seg_root} if sem_seg_root else {}
    if instances_json:
        extra["json_file"] = instances_json
    MetadataCatalog.get(name).set(
        image_root=image_root,
        panoptic_root=panoptic_root,
        panoptic_json=panoptic_json,
        evaluator_type=evaluator_type,
        ignore_label=255,
        label_divisor=1000,
        **extra,
        **metadata,
    )


def read_panoptic_categories(json_file: str) -> List[Dict]:
    """The "categories" of a COCO-panoptic JSON, checked by `check_categories`."""
    try:
        with PathManager.open(json_file) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{json_file}: not a JSON file ({e})") from None
    categories = data.get("categories") if isinstance(data, dict) else None
    if not categories or not isinstance(categories, list):
        raise ValueError(f"{json_file}: no 'categories' list, as COCO panoptic JSONs have")
    check_categories(categories, json_file)
    return categories


def is_rgb(color) -> bool:
    """Whether `color` is a JSON colour [R, G, B] of integers in 0..255."""
    return (
        isinstance(color, list)
        and len(color) == 3
        and all(isinstance(v, int) and 0 <= v <= 255 for v in color)
    )


def check_categories(categories: Sequence[Dict], source: str) -> None:
    """ValueError naming `source` and the entry unless every category is well formed."""
    seen = set()
    for i, c in enumerate(categories):
        where = f"{source}: categories[{i}]"
        if not isinstance(c, dict):
            raise ValueError(f"{where}: expected an object with id, name, isthing, got {c!r}")
        checks = (
            ("id", lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
            ("name", lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
            ("isthing", lambda v: v in (0, 1), "0 or 1"),
        )
        for key, valid, what in checks:
            if not valid(c.get(key)):
                raise ValueError(f"{where}: '{key}' must be {what} (got {c.get(key)!r})")
        color = c.get("color")
        if color is not None and not is_rgb(color):
            raise ValueError(f"{where}: 'color' must be [R, G, B] in 0..255 (got {color!r})")
        if c["id"] == 0:
            raise ValueError(
                f"{where}: category id 0 ('{c['name']}') is reserved for void by the COCO "
                "panoptic format (segment id 0 marks unlabelled pixels); number the categories "
                "from 1 (in the JSON's categories and in every segments_info). ADE20K panoptic, "
                "whose ids start at 0, is registered built in (ade20k_panoptic_train/val)"
            )
        if c["id"] in seen:
            raise ValueError(f"{where}: category id {c['id']} appears twice")
        seen.add(c["id"])


def panoptic_metadata(categories: Sequence[Dict]) -> Dict:
    """Metadata of a COCO-panoptic dataset from its categories (id, name, isthing, color).

    Contiguous ids: things first, then stuff, each by increasing category id (the order of
    datasets/prepare_coco_semantic_annos_from_panoptic_annos.py, and COCO's), so that thing ids
    are 0..T-1 as COCOEvaluator needs. `stuff_classes` / `stuff_colors` list all classes in
    contiguous order; `thing_classes` / `thing_colors` the things.
    """
    ordered = sorted(categories, key=lambda c: (not c["isthing"], c["id"]))
    fallback = default_colors(len(ordered))
    colors = [list(c.get("color") or fallback[i]) for i, c in enumerate(ordered)]
    things = [i for i, c in enumerate(ordered) if c["isthing"]]
    return {
        "thing_classes": [ordered[i]["name"] for i in things],
        "thing_colors": [colors[i] for i in things],
        "stuff_classes": [c["name"] for c in ordered],
        "stuff_colors": colors,
        "thing_dataset_id_to_contiguous_id": {ordered[i]["id"]: i for i in things},
        "stuff_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(ordered)},
    }


def register_coco_panoptic_folder(
    name: str,
    image_root: str,
    panoptic_root: str,
    panoptic_json: str,
    *,
    categories: Optional[Sequence[Dict]] = None,
    sem_seg_root: Optional[str] = None,
    instances_json: Optional[str] = None,
) -> None:
    """Register your own data in the COCO panoptic format (module docstring): PQ; mIoU with
    `sem_seg_root`, whose label maps hold the contiguous ids of `panoptic_metadata`; AP with
    `instances_json`. `categories` (id, name, isthing, color): default the JSON's, read now."""
    if categories is None:
        categories = read_panoptic_categories(panoptic_json)
    check_categories(categories, f"dataset '{name}'")
    register_panoptic(
        name,
        panoptic_metadata(categories),
        image_root=image_root,
        panoptic_root=panoptic_root,
        panoptic_json=panoptic_json,
        sem_seg_root=sem_seg_root,
        instances_json=instances_json,
    )
