"""Training targets of mask classification: label maps -> (classes, binary masks). Pure functions.

Shapes: T targets, H x W the (augmented, padded) image size.
"""

from __future__ import annotations

from typing import Collection, Dict, List, Sequence, Tuple

import numpy as np

__all__ = [
    "check_panoptic_labels",
    "check_semantic_labels",
    "panoptic_targets",
    "semantic_targets",
]


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
        raise ValueError(
            f"{file_name}: label value(s) {_shown(bad)} outside the class range "
            f"[0, {num_classes}) and not the ignore label {ignore_label}. Check "
            "MODEL.SEM_SEG_HEAD.NUM_CLASSES and the dataset's label conversion (e.g. "
            "datasets/prepare_ade20k_sem_seg.py)."
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


def _shown(values) -> str:
    values = sorted(int(v) for v in values)
    return ", ".join(str(v) for v in values[:10]) + (", ..." if len(values) > 10 else "")


def check_panoptic_labels(
    pan_ids: np.ndarray,
    segments_info: Sequence[Dict],
    class_ids: Collection[int],
    file_name: str,
) -> None:
    """Raise unless the PNG's ids and `segments_info` match and every class is known.

    Checked on the file's full map: an id missing from `segments_info` would silently become
    void, a listed id missing from the PNG means the wrong PNG or JSON, and an unknown class would
    become a mask of a non-existent class (garbage on the CPU, a device-side assert on a GPU).

    Args:
        pan_ids: (H, W) segment ids, 0 = void.
        segments_info: dicts with "id" and "category_id" (contiguous).
        class_ids: the contiguous class ids the dataset's metadata and the model both know.
    """
    listed = [int(s["id"]) for s in segments_info]
    if len(set(listed)) != len(listed):
        dup = {i for i in listed if listed.count(i) > 1}
        raise ValueError(f"{file_name}: segments_info lists segment id(s) {_shown(dup)} twice")
    in_png = set(np.unique(pan_ids).tolist()) - {0}
    unlisted = in_png - set(listed)
    if unlisted:
        raise ValueError(
            f"{file_name}: segment id(s) {_shown(unlisted)} occur in the PNG but not in its "
            f"segments_info (which lists {_shown(listed)}); the PNG and the JSON do not match"
        )
    absent = set(listed) - in_png
    if absent:
        raise ValueError(
            f"{file_name}: segments_info lists segment id(s) {_shown(absent)} that do not occur in "
            "the PNG; the PNG and the JSON do not match"
        )
    class_ids = set(class_ids)
    for s in segments_info:
        if int(s["category_id"]) not in class_ids:
            raise ValueError(
                f"{file_name}: segment {s['id']} has category_id {s['category_id']}, which is not "
                f"one of the {len(class_ids)} classes of the dataset's metadata and the model "
                f"(contiguous ids {_shown(class_ids)}). Check MODEL.SEM_SEG_HEAD.NUM_CLASSES and "
                "the dataset's thing/stuff_dataset_id_to_contiguous_id."
            )


def panoptic_targets(
    pan_ids: np.ndarray, segments_info: Sequence[Dict]
) -> Tuple[np.ndarray, np.ndarray]:
    """One binary mask per non-crowd segment that is still in the (augmented) map.

    Crowd regions get no mask (the loss then treats them as background of every mask, as the
    official implementation does); a segment cropped away entirely gets none either, since an
    empty target mask can only teach the model to predict nothing.

    Args:
        pan_ids: (H, W) segment ids, 0 = void.
        segments_info: dicts with "id", "category_id" (contiguous) and "iscrowd".
    Returns:
        classes: (T,) int64, in segments_info order; masks: (T, H, W) bool, disjoint.
    """
    classes: List[int] = []
    masks: List[np.ndarray] = []
    for s in segments_info:
        if s.get("iscrowd", 0):
            continue
        mask = pan_ids == s["id"]
        if mask.any():
            classes.append(int(s["category_id"]))
            masks.append(mask)
    if not masks:
        return np.zeros((0,), np.int64), np.zeros((0, *pan_ids.shape), bool)
    return np.asarray(classes, np.int64), np.stack(masks)
