"""Per-class loss weights (`MODEL.MASK_FORMER.CLASS_WEIGHTS`, docs/configs.md) for imbalanced
data: a rare class is both paid more for and preferred more when queries are assigned."""

from __future__ import annotations

import os
from typing import List, Optional, Sequence, Union

import numpy as np

__all__ = ["median_frequency_weights", "read_class_weights"]


def read_class_weights(
    value: Union[None, str, Sequence[float]], num_classes: int
) -> Optional[List[float]]:
    """K class weights from a config value: None / [] (all 1: returns None), a list of K
    numbers, or the path of a text file of K whitespace-separated numbers. Raises ValueError
    (count not K, a weight negative or not finite) or FileNotFoundError."""
    if value is None or len(value) == 0:
        return None
    source = "MODEL.MASK_FORMER.CLASS_WEIGHTS"
    if isinstance(value, str):
        if not os.path.isfile(value):
            raise FileNotFoundError(f"{source} file '{value}' does not exist")
        with open(value, encoding="utf-8") as f:
            text = f.read()
        source = f"{source} file '{value}'"
        try:
            weights = [float(x) for x in text.split()]
        except ValueError as e:
            raise ValueError(f"{source}: {e}; expected K numbers separated by spaces") from None
    else:
        weights = [float(x) for x in value]
    if len(weights) != num_classes:
        raise ValueError(
            f"{source} has {len(weights)} weights but the model has {num_classes} classes "
            "(MODEL.SEM_SEG_HEAD.NUM_CLASSES); give one weight per class"
        )
    bad = [(i, w) for i, w in enumerate(weights) if not np.isfinite(w) or w < 0]
    if bad:
        raise ValueError(f"{source}: weights must be finite and >= 0; got (class, weight) {bad}")
    return weights


def median_frequency_weights(class_pixels: np.ndarray, present_pixels: np.ndarray) -> np.ndarray:
    """Median frequency balancing (Eigen and Fergus, ICCV 2015): w_c = median(f) / f_c with
    f_c = pixels of class c / pixels of the images where c appears.

    class_pixels, present_pixels (K,): labelled pixels of each class, and of all images that
    contain it. Returns (K,) float64 weights; a class that appears nowhere gets 0 (it cannot be
    learned), and the median is over the classes that appear.
    """
    class_pixels = np.asarray(class_pixels, np.float64)
    present_pixels = np.asarray(present_pixels, np.float64)
    seen = (class_pixels > 0) & (present_pixels > 0)
    freq = np.zeros_like(class_pixels)
    freq[seen] = class_pixels[seen] / present_pixels[seen]
    weights = np.zeros_like(class_pixels)
    if seen.any():
        weights[seen] = np.median(freq[seen]) / freq[seen]
    return weights
