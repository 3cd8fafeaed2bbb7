"""Training targets of mask classification: label maps -> (classes, binary masks). Pure functions.

Shapes: T targets, H x W the (augmented, padded) image size.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ["check_semantic_labels", "semantic_targets"]


def check_semantic_labels(
    sem_seg: np.ndarray, num_classes: int, ignore_label: int, file_name: str
) -> None:
    """Raise if a label is neither in [0, num_classes) nor the ignore label.

    Caught here, on the file's full label map, such a value would otherwise become a mask of a
    non-existent class: silent garbage on the CPU, a device-side assert on a GPU.
    """
    values = np.unique(sem_seg)
    bad = values[((values < 0) | (values >= num_classes)) & (values != ignore_label)]
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:10]) + (", ..." if bad.size > 10 else "")
        raise ValueError(
            f"{file_name}: label value(s) {shown} outside the class range [0, {num_classes}) and "
            f"not the ignore label {ignore_label}. Check MODEL.SEM_SEG_HEAD.NUM_CLASSES and the "
            "dataset's label conversion (e.g. datasets/prepare_ade20k_sem_seg.py)."
        )


def semantic_targets(sem_seg: np.ndarray, ignore_label: int) -> Tuple[np.ndarray, np.ndarray]:
    """One binary mask per class present in a semantic label map.

    Args:
        sem_seg: (H, W) integer label map.
        ignore_label: value of unlabelled pixels; it gets no mask.
    Returns:
        classes: (T,) int64, sorted; masks: (T, H, W) bool, disjoint.
    """
    classes = np.unique(sem_seg)
    classes = classes[classes != ignore_label].astype(np.int64)
    masks = sem_seg[None] == classes[:, None, None]
    return classes, masks.reshape(len(classes), *sem_seg.shape)
