"""Reading images and label maps, with errors that name the file."""

from __future__ import annotations

import numpy as np
from detectron2.data import detection_utils as utils
from detectron2.utils.file_io import PathManager
from PIL import Image, UnidentifiedImageError

__all__ = ["read_image", "read_label_map", "load_sem_seg_label"]


def read_image(file_name: str, image_format: str) -> np.ndarray:
    """(H, W, C) uint8 image in `image_format` ("RGB", "BGR", ...), EXIF orientation applied."""
    try:
        return utils.read_image(file_name, format=image_format)
    except FileNotFoundError:
        raise FileNotFoundError(f"Image file not found: {file_name}") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        # PIL reports truncated and corrupt files as OSError/SyntaxError.
        raise OSError(f"Cannot read image {file_name}: {e}") from e


def read_label_map(file_name: str) -> np.ndarray:
    """A label image (PNG/TIFF, 8 or 16 bit, or RGB for panoptic ids) as a numpy array.

    No EXIF rotation and no colour conversion: label values are data, not colours.
    """
    try:
        with PathManager.open(file_name, "rb") as f, Image.open(f) as im:
            return np.array(im)
    except FileNotFoundError:
        raise FileNotFoundError(f"Label file not found: {file_name}") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise OSError(f"Cannot read label file {file_name}: {e}") from e


def load_sem_seg_label(file_name: str, dtype=int) -> np.ndarray:
    """`sem_seg_loading_fn` for Detectron2's SemSegEvaluator (8- and 16-bit labels, numpy 2)."""
    label = read_label_map(file_name)
    if label.ndim != 2:
        raise ValueError(
            f"Semantic label file {file_name} has shape {label.shape}; expected a single-channel "
            "(H, W) label map"
        )
    return label.astype(dtype)
