"""Reading and writing images and label maps, with errors that name the file."""

from __future__ import annotations

import numpy as np
from detectron2.data import detection_utils as utils
from detectron2.utils.file_io import PathManager
from PIL import Image, UnidentifiedImageError

__all__ = [
    "load_sem_seg_label",
    "panoptic_ids_to_rgb",
    "read_image",
    "read_label_map",
    "rgb_to_panoptic_ids",
]


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


def rgb_to_panoptic_ids(rgb: np.ndarray, file_name: str = "panoptic map") -> np.ndarray:
    """(H, W, 3) uint8 COCO-panoptic PNG pixels -> (H, W) int64 segment ids R + 256 G + 256^2 B."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(
            f"{file_name}: a panoptic PNG must be RGB (segment id = R + 256 G + 256^2 B), but it "
            f"reads as an array of shape {rgb.shape}"
        )
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def panoptic_ids_to_rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) segment ids in [0, 2^24) -> (H, W, 3) uint8 COCO-panoptic PNG pixels."""
    ids = np.asarray(ids, np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 1 << 24):
        raise ValueError(f"panoptic ids must be in [0, 2^24), got {ids.min()}..{ids.max()}")
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
