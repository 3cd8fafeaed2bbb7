"""Register your own semantic segmentation data: a folder of images, a folder of label maps."""

from __future__ import annotations

import colorsys
import logging
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

__all__ = [
    "IMAGE_EXTENSIONS",
    "default_colors",
    "pair_sem_seg_files",
    "read_class_list",
    "register_sem_seg_folder",
    "unregister",
]

logger = logging.getLogger(__name__)

# Image files looked for when a dataset does not name one extension (lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".npy")


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


def read_class_list(path: str) -> List[str]:
    """Class names from a text file: one per line, in label-value order (line 1 is label 0).

    Blank lines and lines starting with "#" are skipped; names may contain spaces.

    Raises:
        ValueError: naming the file (and line), if it lists no class or a name twice.
    """
    names: List[str] = []
    first_line: Dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            name = line.strip()
            if not name or name.startswith("#"):
                continue
            if name in first_line:
                raise ValueError(
                    f"{path}, line {number}: class '{name}' is listed already (line "
                    f"{first_line[name]}); each line names one class, in label order"
                )
            first_line[name] = number
            names.append(name)
    if not names:
        raise ValueError(f"{path}: no class names (one per line, label 0 first)")
    return names


def files_under(root: str, extensions: Tuple[str, ...]) -> List[str]:
    """The files under `root` (recursively, sorted) whose lower-cased names end in `extensions`."""
    found = []
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        found += [
            os.path.join(directory, f) for f in sorted(files) if f.lower().endswith(extensions)
        ]
    return found


def _files_by_stem(root: str, extensions: Tuple[str, ...]) -> Dict[str, str]:
    """Relative path without extension -> path, for the files under `root` (recursively)."""
    found: Dict[str, str] = {}
    for path in files_under(root, extensions):
        # a.jpg and a.png: the first in sorted order
        found.setdefault(os.path.splitext(os.path.relpath(path, root))[0], path)
    return found


def pair_sem_seg_files(
    image_root: str, sem_seg_root: str, image_ext: Optional[str] = None, gt_ext: str = "png"
) -> Tuple[List[Tuple[str, str]], List[str], List[str]]:
    """Pair images and label maps by their path relative to the two folders (searched
    recursively), without extension. `image_ext` None: any of IMAGE_EXTENSIONS, in any case.

    Returns:
        (image, label map) pairs sorted by name; images without a label map; label maps
        without an image.
    """
    image_exts = IMAGE_EXTENSIONS if image_ext is None else ("." + image_ext.lstrip(".").lower(),)
    images = _files_by_stem(image_root, image_exts)
    labels = _files_by_stem(sem_seg_root, ("." + gt_ext.lstrip(".").lower(),))
    pairs = [(images[k], labels[k]) for k in sorted(images) if k in labels]
    return (
        pairs,
        [images[k] for k in sorted(images) if k not in labels],
        [labels[k] for k in sorted(labels) if k not in images],
    )


def _load_folder(name, image_root, sem_seg_root, image_ext, gt_ext, prepare, how_to_prepare):
    if prepare is not None:
        prepare()
    for what, path in (("image", image_root), ("label", sem_seg_root)):
        if not os.path.isdir(path):
            message = f"Dataset '{name}': {what} directory {path} does not exist."
            raise FileNotFoundError(f"{message} {how_to_prepare}" if how_to_prepare else message)
    pairs, unlabelled, orphans = pair_sem_seg_files(image_root, sem_seg_root, image_ext, gt_ext)
    # An empty dataset would only fail later, far from its cause (an empty data loader, or an
    # evaluation of nothing).
    if not pairs and not unlabelled:
        wanted = ", ".join(IMAGE_EXTENSIONS)
        if image_ext is not None:
            wanted = f".{image_ext.lstrip('.')}, the image_ext given; None takes any of {wanted}"
        raise FileNotFoundError(f"Dataset '{name}': no image file ({wanted}) in {image_root}")
    if not pairs:
        examples = f"e.g. image {unlabelled[0]}" + (f", label map {orphans[0]}" if orphans else "")
        raise FileNotFoundError(
            f"Dataset '{name}': none of the {len(unlabelled)} images in {image_root} has a label "
            f"map of the same relative name and extension .{gt_ext.lstrip('.')} in "
            f"{sem_seg_root} ({examples})"
        )
    if unlabelled or orphans:
        logger.warning(
            f"Dataset '{name}': {len(unlabelled)} images without a label map and {len(orphans)} "
            "label maps without an image are left out (tools/check_dataset.py lists them)"
        )
    return [{"file_name": i, "sem_seg_file_name": g} for i, g in pairs]


def register_sem_seg_folder(
    name: str,
    image_root: str,
    sem_seg_root: str,
    classes: Sequence[str],
    *,
    colors: Optional[Sequence[Sequence[int]]] = None,
    ignore_label: int = 255,
    image_ext: Optional[str] = None,
    gt_ext: str = "png",
    evaluator_type: str = "sem_seg",
    prepare: Optional[Callable[[], None]] = None,
    how_to_prepare: str = "",
    dataset_id_to_contiguous_id: Optional[Dict[int, int]] = None,
) -> None:
    """Register a semantic segmentation dataset stored as two parallel folders, with the
    metadata the mappers, evaluators and visualiser read.

    Images and single-channel label maps (values: indices into `classes`, or `ignore_label`)
    are paired by `pair_sem_seg_files`; unpaired files are left out with a warning, and loading
    raises FileNotFoundError, naming the folder, if no image has a label map.

    Args:
        colors: RGB colour per class for drawing (default: `default_colors`).
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
