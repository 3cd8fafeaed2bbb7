"""Drawing predictions with Detectron2's Visualizer: class names and colours from a dataset's
metadata, one task per overlay, and large images at a bounded cost.

Detectron2's Visualizer renders at the image's full size, at about 140 bytes and 0.5 s (2 CPU
cores) per megapixel; above `max_draw_pixels` the annotations are drawn at a reduced size and
laid over the full-resolution image (`draw_overlay`).
"""

from __future__ import annotations

import math
from typing import Callable, Tuple

import cv2
import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.utils.video_visualizer import VideoVisualizer
from detectron2.utils.visualizer import ColorMode, VisImage, Visualizer

from .data.datasets.custom import default_colors
from .predictor import Prediction

__all__ = [
    "TASKS",
    "draw_overlay",
    "draw_video_frame",
    "drawing_metadata",
    "drawing_size",
    "task_of",
]

# Richest first: panoptic has stuff and things, instance things only, semantic classes only.
TASKS = ("panoptic", "instance", "semantic")
_FIELDS = {"panoptic": "panoptic", "instance": "instances", "semantic": "semantic"}


def drawing_metadata(dataset_name: str, num_classes: int) -> Metadata:
    """Class names and colours of a registered dataset, indexed by the model's class ids.

    `stuff_classes` / `stuff_colors` name every contiguous id (panoptic registrations list all
    classes there), so they serve things too, whatever order a dataset lists its things in.

    Raises:
        ValueError: the dataset has no `stuff_classes`, or not `num_classes` of them.
    """
    meta = MetadataCatalog.get(dataset_name)
    classes = meta.get("stuff_classes")
    if not classes:
        raise ValueError(
            f"Dataset '{dataset_name}' (DATASETS.TEST[0]) has no 'stuff_classes' in its metadata: "
            "the demo takes class names and colours from there. Is it registered? (see "
            "GETTING_STARTED.md, tools/register_dataset.py)"
        )
    if len(classes) != num_classes:
        raise ValueError(
            f"Dataset '{dataset_name}' (DATASETS.TEST[0]) has {len(classes)} classes but the model "
            f"has MODEL.SEM_SEG_HEAD.NUM_CLASSES = {num_classes}: set DATASETS.TEST to the "
            "dataset the model was trained for"
        )
    colors = [list(c) for c in meta.get("stuff_colors") or default_colors(len(classes))]
    return Metadata(
        name=dataset_name,
        stuff_classes=list(classes),
        stuff_colors=colors,
        thing_classes=list(classes),
        thing_colors=colors,
    )


def task_of(prediction: Prediction, task: str) -> object:
    """The output of `prediction` that `task` draws; ValueError if the model did not produce it."""
    if task not in TASKS:
        raise ValueError(f"Unknown task '{task}'; one of {', '.join(TASKS)}")
    value = getattr(prediction, _FIELDS[task])
    if value is None:
        raise ValueError(f"The model produced no {task} output")
    return value


def _draw(visualizer: Visualizer, prediction: Prediction, task: str) -> VisImage:
    output = task_of(prediction, task)
    if task == "semantic":
        return visualizer.draw_sem_seg(output)
    if task == "panoptic":
        ids, segments_info = output
        return visualizer.draw_panoptic_seg(ids, segments_info)
    return visualizer.draw_instance_predictions(output)


def drawing_size(height: int, width: int, max_draw_pixels: int) -> Tuple[int, int]:
    """The size annotations are drawn at: the image's, or scaled to about `max_draw_pixels`."""
    if height * width <= max_draw_pixels:
        return height, width
    scale = math.sqrt(max_draw_pixels / (height * width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _lay_over(image: np.ndarray, draw: Callable[[np.ndarray], np.ndarray], size) -> np.ndarray:
    """What `draw` would make of `image`, with `draw` run at `size` only.

    Drawing is alpha compositing, linear in the background: drawn(bg) = A + T * bg per pixel and
    channel. Drawing once on black gives A, once on white A + 255 T; both are resized to the
    image and applied to it.
    """
    h, w = size
    state = np.random.get_state()  # the same random colours in both drawings
    on_black = draw(np.zeros((h, w, 3), np.uint8))
    np.random.set_state(state)
    on_white = draw(np.full((h, w, 3), 255, np.uint8))
    height, width = image.shape[:2]
    on_black = cv2.resize(on_black, (width, height), interpolation=cv2.INTER_LINEAR)
    on_white = cv2.resize(on_white, (width, height), interpolation=cv2.INTER_LINEAR)
    out = np.empty_like(image)
    rows = max(1, (32 << 20) // (width * 3 * 4))  # float32 bands of about 32 MB
    for r in range(0, height, rows):
        a = on_black[r : r + rows].astype(np.float32)
        t = (on_white[r : r + rows].astype(np.float32) - a) / 255.0
        out[r : r + rows] = np.clip(a + t * image[r : r + rows] + 0.5, 0, 255).astype(np.uint8)
    return out


def draw_overlay(
    image: np.ndarray, prediction: Prediction, task: str, metadata: Metadata
) -> np.ndarray:
    """Draw one task's output over the image with Detectron2's Visualizer (class colours).

    Args:
        image: (H, W, 3) uint8 RGB.
        prediction: at the image's size, or at a smaller one (`drawing_size`).
        task: one of TASKS.
        metadata: from `drawing_metadata`.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    output = task_of(prediction, task)
    if task == "panoptic":
        size = tuple(output[0].shape)
    elif task == "instance":
        size = tuple(output.image_size)
    else:
        size = tuple(output.shape)

    def draw(background: np.ndarray) -> np.ndarray:
        vis = Visualizer(background, metadata, instance_mode=ColorMode.SEGMENTATION)
        return _draw(vis, prediction, task).get_image()

    if size == image.shape[:2]:
        return draw(image)
    return _lay_over(image, draw, size)


def draw_video_frame(
    visualizer: VideoVisualizer, frame: np.ndarray, prediction: Prediction, task: str
) -> np.ndarray:
    """One task's output drawn on an RGB video frame by `visualizer` (colours kept per object)."""
    output = task_of(prediction, task)
    if task == "semantic":
        vis = visualizer.draw_sem_seg(frame, output)
    elif task == "panoptic":
        vis = visualizer.draw_panoptic_seg_predictions(frame, *output)
    else:
        vis = visualizer.draw_instance_predictions(frame, output)
    return vis.get_image()
