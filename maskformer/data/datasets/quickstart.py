"""A generated semantic-segmentation dataset for trying MaskFormer without downloading anything.

Randomly coloured shapes of five classes, each with its own texture, on a cluttered background,
with a thin "ignore" band along every object boundary (as in PASCAL VOC). Written once in the
ADE20K layout under `quickstart_root()` (GETTING_STARTED.md) and registered as
`quickstart_sem_seg_{train,val}`; tests use `write_shapes_split` for small datasets of the kind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable, Tuple

import cv2
import numpy as np

from ..io import save_image_atomically
from .custom import register_sem_seg_folder

__all__ = [
    "QUICKSTART_CLASSES",
    "QUICKSTART_COLORS",
    "generate_quickstart_dataset",
    "quickstart_root",
    "register_quickstart",
]

QUICKSTART_CLASSES = ["background", "disc", "square", "triangle", "ring", "cross"]
QUICKSTART_COLORS = [
    [120, 120, 120],
    [220, 40, 40],
    [40, 180, 60],
    [50, 80, 220],
    [230, 200, 30],
    [200, 60, 200],
]
IGNORE_LABEL = 255
_VERSION = "quickstart-v3"
# split -> (folder name, number of images, seed)
_SPLITS = {"train": ("training", 400, 1), "val": ("validation", 60, 2)}


def quickstart_root(version: str = _VERSION) -> str:
    cache = os.path.expanduser(os.getenv("MASKFORMER_CACHE", "~/.cache/maskformer"))
    return os.path.join(cache, version)


def _clutter(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Low-saturation smooth noise with scattered strokes and specks: the background class."""
    field = rng.uniform(60, 200, (h // 16 + 2, w // 16 + 2, 3)).astype(np.float32)
    img = cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC)
    grey = img.mean(axis=2, keepdims=True)
    img = 0.7 * grey + 0.3 * img  # mostly grey
    for _ in range(int(rng.integers(5, 15))):
        p1 = tuple(int(v) for v in rng.integers(0, [w, h]))
        p2 = tuple(int(v) for v in rng.integers(0, [w, h]))
        cv2.line(
            img, p1, p2, tuple(float(v) for v in rng.uniform(40, 220, 3)), int(rng.integers(1, 3))
        )
    img += rng.normal(0, 8, img.shape).astype(np.float32)
    return img


def _shape_mask(cls: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    size = int(rng.integers(min(h, w) // 7, min(h, w) // 3))
    cy, cx = (int(v) for v in rng.integers([size // 2, size // 2], [h - size // 2, w - size // 2]))
    mask = np.zeros((h, w), np.uint8)
    r = size // 2
    if cls == 1:  # disc
        cv2.circle(mask, (cx, cy), r, 1, -1)
    elif cls == 2:  # square, rotated
        box = cv2.boxPoints(((cx, cy), (size, size), float(rng.uniform(0, 90))))
        cv2.fillPoly(mask, [box.astype(np.int32)], 1)
    elif cls == 3:  # triangle
        angle = rng.uniform(0, 2 * np.pi)
        pts = [
            (cx + r * np.cos(angle + k * 2 * np.pi / 3), cy + r * np.sin(angle + k * 2 * np.pi / 3))
            for k in range(3)
        ]
        cv2.fillPoly(mask, [np.array(pts, np.int32)], 1)
    elif cls == 4:  # ring
        cv2.circle(mask, (cx, cy), r, 1, max(2, r // 3))
    else:  # cross
        t = max(2, size // 5)
        mask[max(cy - r, 0) : cy + r, max(cx - t, 0) : cx + t] = 1
        mask[max(cy - t, 0) : cy + t, max(cx - r, 0) : cx + r] = 1
    return mask.astype(bool)


def _texture(cls: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A brightness pattern characteristic of the class, in [0.55, 1.0]."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    period = float(rng.uniform(6, 10))
    if cls in (1, 4):  # disc, ring: plain (their shapes differ: filled vs hollow)
        pattern = np.ones((h, w), bool)
    elif cls == 2:  # square: diagonal stripes
        pattern = np.sin((xx + yy) / period * 2 * np.pi) > 0
    elif cls == 3:  # triangle: checker
        pattern = (np.floor(xx / period) + np.floor(yy / period)) % 2 == 0
    else:  # cross: horizontal stripes
        pattern = np.sin(yy / period * 2 * np.pi) > 0
    return np.where(pattern, 1.0, 0.55).astype(np.float32)


def _paint_shape(img: np.ndarray, cls: int, mask: np.ndarray, rng: np.random.Generator) -> None:
    """Paint `mask` of the float image in any colour and the texture of shape class `cls`."""
    h, w = mask.shape
    # Any hue for any class: classes differ by shape and texture, not by colour.
    hue = rng.integers(0, 180)
    hsv = np.uint8([[[hue, rng.integers(150, 256), rng.integers(170, 256)]]])
    color = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    paint = color[None, None] * _texture(cls, h, w, rng)[..., None]
    img[mask] = paint[mask]


def _finish(
    img: np.ndarray, regions: np.ndarray, rng: np.random.Generator
) -> Tuple[np.ndarray, np.ndarray]:
    """The float image with noise as uint8, and the boundary pixels (H, W) of the `regions` map:
    ambiguous after anti-aliasing and resizing, so the label maps leave them unlabelled."""
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    return img, cv2.morphologyEx(regions.astype(np.uint8), cv2.MORPH_GRADIENT, kernel) > 0


def _sample(h: int, w: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """An RGB uint8 image and its uint8 label map (0 = background, 255 = ignore)."""
    img = _clutter(h, w, rng)
    label = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(2, 6))):
        cls = int(rng.integers(1, len(QUICKSTART_CLASSES)))
        mask = _shape_mask(cls, h, w, rng)
        _paint_shape(img, cls, mask, rng)
        label[mask] = cls
    img, edges = _finish(img, label, rng)
    label[edges] = IGNORE_LABEL
    return img, label


def write_shapes_split(
    root: str, folder: str, count: int, seed: int, size_range: Tuple[int, int] = (150, 220)
) -> None:
    """Write `count` images and label maps under `root/{images,annotations_detectron2}/folder`."""
    rng = np.random.default_rng(seed)
    img_dir = os.path.join(root, "images", folder)
    gt_dir = os.path.join(root, "annotations_detectron2", folder)
    os.makedirs(img_dir)
    os.makedirs(gt_dir)
    for i in range(count):
        h, w = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, 2))
        img, label = _sample(h, w, rng)
        name = f"quickstart_{folder}_{i:05d}"
        save_image_atomically(img, os.path.join(img_dir, name + ".jpg"))
        cv2.imwrite(os.path.join(gt_dir, name + ".png"), label)


def write_once(root: str, write: Callable[[str], None]) -> str:
    """Run `write(directory)` to create `root` unless it exists already; returns `root`.

    Written to a temporary sibling directory and renamed into place, so an interrupted run
    leaves nothing half-written and concurrent processes (e.g. 2 training ranks) do not clash.
    """
    if os.path.isdir(root):
        return root
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".generating-", dir=parent)
    try:
        write(tmp)
        try:
            os.rename(tmp, root)
        except OSError:
            if not os.path.isdir(root):  # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def generate_quickstart_dataset(root: str) -> str:
    """Write the dataset under `root` unless it is there already; returns `root`."""

    def write(directory: str) -> None:
        for folder, count, seed in _SPLITS.values():
            write_shapes_split(directory, folder, count, seed)

    return write_once(root, write)


def register_quickstart() -> None:
    root = quickstart_root()
    for split, (folder, _, _) in _SPLITS.items():
        name = f"quickstart_sem_seg_{split}"
        register_sem_seg_folder(
            name,
            os.path.join(root, "images", folder),
            os.path.join(root, "annotations_detectron2", folder),
            QUICKSTART_CLASSES,
            colors=QUICKSTART_COLORS,
            ignore_label=IGNORE_LABEL,
            prepare=lambda: generate_quickstart_dataset(root),
        )
