"""Reading and writing images and label maps, with errors that name the file."""

from __future__ import annotations

import os

import cv2
import numpy as np
from detectron2.data import detection_utils as utils
from detectron2.utils.file_io import PathManager
from PIL import Image, UnidentifiedImageError

from ..utils.file_io import write_atomically

__all__ = [
    "DETECTRON2_FORMATS",
    "display_rgb",
    "is_multichannel_format",
    "load_sem_seg_label",
    "panoptic_ids_to_rgb",
    "read_image",
    "read_multichannel_image",
    "read_label_map",
    "rgb_to_panoptic_ids",
    "save_image_atomically",
]

# PIL modes of more than 8 bits per pixel (16-bit PNG/TIFF greyscale opens as "I;16" or "I").
# PIL's conversion to RGB clips them at 255 instead of scaling: such an image would read as
# almost all white.
_HIGH_BIT_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


# INPUT.FORMAT values Detectron2 converts images to. Any other value names the channels of a
# multi-channel image read as stored, one letter per channel ("RGBN": red, green, blue,
# near-infrared; "RGBD": colour and depth).
DETECTRON2_FORMATS = ("BGR", "RGB", "L", "YUV-BT.601")


def is_multichannel_format(image_format: str) -> bool:
    """Whether INPUT.FORMAT names the channels of a multi-channel image (not a Detectron2
    colour format): such images are read as stored by `read_multichannel_image`."""
    return image_format not in DETECTRON2_FORMATS


def read_multichannel_image(file_name: str, num_channels: int) -> np.ndarray:
    """(H, W, C) image with its channels in the file's order and its stored dtype, from a `.npy`
    array or anything OpenCV reads unchanged (a multi-page TIFF: one band per page). OpenCV
    reads a fourth channel that a TIFF marks as alpha premultiplied: keep 4 bands as pages or in
    a .npy file instead.

    Raises:
        FileNotFoundError: the file does not exist.
        OSError: it cannot be read as an image.
        ValueError: it has another number of channels than `num_channels` (len(INPUT.FORMAT)).
    """
    if not os.path.isfile(file_name):
        raise FileNotFoundError(f"Image file not found: {file_name}")
    if file_name.lower().endswith(".npy"):
        try:
            image = np.load(file_name, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise OSError(f"Cannot read image {file_name}: {e}") from e
    else:
        ok, pages = cv2.imreadmulti(file_name, flags=cv2.IMREAD_UNCHANGED)
        if not ok or not pages:
            raise OSError(f"Cannot read image {file_name}: not an image OpenCV can read")
        pages = [p if p.ndim == 3 else p[:, :, None] for p in pages]
        pages = [p[:, :, [2, 1, 0, *range(3, p.shape[2])]] if p.shape[2] in (3, 4) else p
                 for p in pages]  # fmt: skip
        if len({p.shape[:2] for p in pages}) != 1:
            raise OSError(f"Cannot read image {file_name}: its pages differ in size")
        image = np.concatenate(pages, axis=2)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] != num_channels:
        raise ValueError(
            f"Image {file_name} has shape {image.shape}; INPUT.FORMAT asks for (H, W, "
            f"{num_channels}) (one letter per channel)"
        )
    return image


def display_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 for drawing, from the first three channels of an (H, W, C) image of any
    dtype (a single channel as grey): uint8 as is, other integers scaled from their dtype's
    range, floats from the min..max of the three drawn channels."""
    rgb = image[:, :, :3] if image.shape[2] >= 3 else np.repeat(image[:, :, :1], 3, axis=2)
    if rgb.dtype == np.uint8:
        return np.ascontiguousarray(rgb)
    values = rgb.astype(np.float64)
    if np.issubdtype(rgb.dtype, np.integer):
        info = np.iinfo(rgb.dtype)
        low, high = float(info.min), float(info.max)
    else:
        low, high = float(values.min()), float(values.max())
    scaled = (values - low) / max(high - low, 1e-12) * 255.0
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def read_image(file_name: str, image_format: str) -> np.ndarray:
    """(H, W, C) image in `image_format`: for a Detectron2 format, uint8 as Detectron2's
    `read_image` (EXIF orientation applied; 16-bit greyscale scaled, not clipped); otherwise
    `read_multichannel_image`. Raises FileNotFoundError or OSError naming the file."""
    if is_multichannel_format(image_format):
        return read_multichannel_image(file_name, len(image_format))
    try:
        with PathManager.open(file_name, "rb") as f, Image.open(f) as image:
            # Detectron2's own EXIF handling, so that training and the demo read images alike.
            image = utils._apply_exif_orientation(image)
            if image.mode in _HIGH_BIT_DEPTH_MODES:  # scaled to 8 bits: 65535 -> 255
                values = np.clip(np.asarray(image).astype(np.float32) / 257.0 + 0.5, 0, 255)
                image = Image.fromarray(values.astype(np.uint8), "L")
            return utils.convert_PIL_to_numpy(image, image_format)
    except FileNotFoundError:
        raise FileNotFoundError(f"Image file not found: {file_name}") from None
    except UnidentifiedImageError:
        raise OSError(
            f"Cannot read image {file_name}: not an image, or in a format PIL cannot read"
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
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


def save_image_atomically(rgb: np.ndarray, path: str, jpeg_quality: int = 95) -> None:
    """Write an (H, W, 3) uint8 RGB image in the format its extension names (OpenCV's), with
    `write_atomically`. Raises OSError naming `path`."""
    ext = os.path.splitext(path)[1]
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if ext.lower() in (".jpg", ".jpeg") else []
    try:
        # Encoded in memory: the temporary name does not end in the extension OpenCV reads.
        ok, encoded = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]), params)
    except cv2.error:  # no encoder for the extension
        ok = False
    if not ok:
        raise OSError(f"Cannot write image {path}: OpenCV cannot encode a '{ext}' file")
    try:
        write_atomically(path, encoded.tofile)
    except OSError as e:
        raise OSError(f"Cannot write image {path}: {e}") from e
