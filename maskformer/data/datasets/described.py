"""Datasets registered by a description file (`<name>.json` in `datasets_dir()`), so that every
process knows them (GETTING_STARTED.md, "2. Register it (once)").

A semantic description (paths absolute; "colors", "ignore_label", "image_ext" optional):

    {"format": "maskformer-dataset-v1", "name": "shapes_train", "type": "semantic",
     "images": "/data/shapes/images/training", "labels": "/data/shapes/labels/training",
     "classes": ["background", "disc"], "colors": [[120, 120, 120], [220, 40, 40]],
     "ignore_label": 255, "image_ext": null}

A panoptic one ("semantic_labels", "instances_json" optional; categories as in COCO):

    {"format": "maskformer-dataset-v1", "name": "shapes_pan_val", "type": "panoptic",
     "images": "...", "panoptic_masks": "...", "panoptic_json": "...json",
     "categories": [{"id": 11, "name": "disc", "isthing": 1, "color": [220, 40, 40]}, ...]}
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any, Dict, List, Optional

from detectron2.data import DatasetCatalog

from ...utils.file_io import write_text_atomically
from .custom import register_sem_seg_folder
from .panoptic import check_categories, is_rgb, register_coco_panoptic_folder

__all__ = [
    "FORMAT",
    "DatasetDescriptionError",
    "datasets_dir",
    "read_description",
    "register_described_datasets",
    "register_description",
    "write_description",
]

logger = logging.getLogger(__name__)

FORMAT = "maskformer-dataset-v1"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# type -> (required keys, optional keys)
_KEYS = {
    "semantic": (("images", "labels", "classes"), ("colors", "ignore_label", "image_ext")),
    "panoptic": (
        ("images", "panoptic_masks", "panoptic_json", "categories"),
        ("semantic_labels", "instances_json"),
    ),
}
_PATH_KEYS = "images labels panoptic_masks panoptic_json semantic_labels instances_json".split()


class DatasetDescriptionError(ValueError):
    """A dataset description file is not valid; the message names the file and the key."""


def datasets_dir() -> str:
    """Where descriptions are read and written: $MASKFORMER_DATASETS_DIR, or the default."""
    configured = os.getenv("MASKFORMER_DATASETS_DIR")
    if configured:
        return os.path.expanduser(configured)
    config_home = os.getenv("XDG_CONFIG_HOME") or os.path.join("~", ".config")
    return os.path.join(os.path.expanduser(config_home), "maskformer", "datasets")


def _check(description: Any, source: str) -> Dict[str, Any]:
    """The description, validated; DatasetDescriptionError naming `source` and the key."""

    def fail(key: str, problem: str) -> DatasetDescriptionError:
        return DatasetDescriptionError(f"{source}: key '{key}': {problem}")

    if not isinstance(description, dict):
        raise DatasetDescriptionError(f"{source}: expected a JSON object, got {description!r}")
    if description.get("format") != FORMAT:
        raise fail("format", f'must be "{FORMAT}" (got {description.get("format")!r})')
    name = description.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise fail("name", f"must be letters, digits, '_', '.', '-' (got {name!r})")
    kind = description.get("type")
    if kind not in _KEYS:
        raise fail("type", f"must be one of {', '.join(map(repr, _KEYS))} (got {kind!r})")
    required, optional = _KEYS[kind]
    for key in required:
        if key not in description:
            raise fail(key, f"missing (a {kind} description needs {', '.join(required)})")
    unknown = set(description) - set(required) - set(optional) - {"format", "name", "type"}
    if unknown:
        raise fail(
            sorted(unknown)[0],
            f"not a key of {kind} descriptions (those are {', '.join(required + optional)})",
        )
    for key in _PATH_KEYS:
        value = description.get(key)
        if key in description and value is not None:
            if not isinstance(value, str) or not os.path.isabs(value):
                raise fail(key, f"must be an absolute path (got {value!r})")
    if kind == "semantic":
        classes = description["classes"]
        if (
            not isinstance(classes, list)
            or not classes
            or not all(isinstance(c, str) and c for c in classes)
        ):
            raise fail("classes", f"must be a non-empty list of class names (got {classes!r})")
        if len(set(classes)) != len(classes):
            raise fail("classes", "lists a class name twice")
        colors = description.get("colors")
        if colors is not None and (
            not isinstance(colors, list)
            or len(colors) != len(classes)
            or not all(map(is_rgb, colors))
        ):
            raise fail("colors", f"must be one [R, G, B] (0..255) per class ({len(classes)})")
        ignore = description.get("ignore_label", 255)
        if not isinstance(ignore, int) or isinstance(ignore, bool) or ignore < len(classes):
            raise fail(
                "ignore_label",
                f"must be an integer label value >= the number of classes ({len(classes)}), "
                f"got {ignore!r}",
            )
        image_ext = description.get("image_ext")
        if image_ext is not None and not isinstance(image_ext, str):
            raise fail("image_ext", 'must be an extension such as "jpg", or null (any)')
    else:
        categories = description["categories"]
        if not isinstance(categories, list) or not categories:
            raise fail("categories", "must be a non-empty list of COCO categories")
        try:
            check_categories(categories, source)  # "<source>: categories[i]: ..."
        except ValueError as e:
            raise DatasetDescriptionError(str(e)) from None
    return description


def read_description(path: str) -> Dict[str, Any]:
    """Read and validate a description file. Raises DatasetDescriptionError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            description = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetDescriptionError(f"{path}: not valid JSON: {e}") from None
    except OSError as e:
        raise DatasetDescriptionError(f"{path}: cannot be read: {e}") from None
    description = _check(description, path)
    expected = description["name"] + ".json"
    if os.path.basename(path) != expected:
        raise DatasetDescriptionError(
            f"{path}: key 'name': '{description['name']}' does not match the file name (a "
            f"description of dataset '{description['name']}' is named {expected})"
        )
    return description


def register_description(description: Dict[str, Any]) -> None:
    """Register the dataset a (validated) description describes."""
    d = description
    if d["type"] == "semantic":
        register_sem_seg_folder(
            d["name"],
            d["images"],
            d["labels"],
            d["classes"],
            colors=d.get("colors"),
            ignore_label=d.get("ignore_label", 255),
            image_ext=d.get("image_ext"),
        )
    else:
        register_coco_panoptic_folder(
            d["name"],
            d["images"],
            d["panoptic_masks"],
            d["panoptic_json"],
            categories=d["categories"],
            sem_seg_root=d.get("semantic_labels"),
            instances_json=d.get("instances_json"),
        )


def write_description(description: Dict[str, Any], directory: Optional[str] = None) -> str:
    """Validate `description` and write it to `directory` (default `datasets_dir()`) as
    `<name>.json`, atomically. Returns the path."""
    directory = directory or datasets_dir()
    path = os.path.join(directory, f"{description.get('name')}.json")
    _check(description, f"description of '{description.get('name')}'")
    os.makedirs(directory, exist_ok=True)
    write_text_atomically(path, json.dumps(description, indent=2) + "\n")
    return path


def _register_broken(name: str, error: DatasetDescriptionError) -> None:
    def load() -> List[Dict]:
        raise DatasetDescriptionError(f"Dataset '{name}' cannot be loaded: {error}")

    DatasetCatalog.register(name, load)


def register_described_datasets(directory: Optional[str] = None) -> List[str]:
    """Register the dataset of every `*.json` description in `directory` (default
    `datasets_dir()`) that is not registered yet. Returns their names.

    A description that cannot be used is reported in a warning naming the file and the key;
    its dataset name (the file name) is then registered to raise that error when loaded.
    """
    directory = directory or datasets_dir()
    if not os.path.isdir(directory):
        return []
    registered = []
    for entry in sorted(os.listdir(directory)):
        name, ext = os.path.splitext(entry)
        if ext != ".json":
            continue
        path = os.path.join(directory, entry)
        if name in DatasetCatalog.list():
            logger.warning(
                f"{path}: dataset '{name}' is registered already (built in, or by another "
                "description); this description is not used"
            )
            continue
        try:
            register_description(read_description(path))
        except ValueError as e:  # DatasetDescriptionError, or the registration's own
            error = e if isinstance(e, DatasetDescriptionError) else DatasetDescriptionError(str(e))
            logger.warning(f"Dataset description not used: {error}")
            if NAME_PATTERN.match(name) and name not in DatasetCatalog.list():
                _register_broken(name, error)
            continue
        registered.append(name)
    return registered
