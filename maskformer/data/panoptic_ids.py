"""Panoptic segment id maps: reading a COCO panoptic PNG, and the compact form in which the test
loader hands the ground truth to the panoptic evaluator.

A segment id is R + 256 G + 256^2 B, so ids lie in [0, 2^24) (0: VOID). An image holds a few
dozen of them: `compact_ids` stores the map as a small integer code per pixel plus the id of
each code, a quarter of the uint32 map, and the histogram of two such maps is the per-image
work of panoptic quality.

Shapes: H x W the image, N the codes of a map.
"""

from __future__ import annotations

import threading
from typing import NamedTuple, Sequence

import cv2
import numpy as np
from detectron2.utils.file_io import PathManager

from .io import read_label_map

__all__ = ["ID_LIMIT", "CompactIds", "compact_ids", "read_panoptic_ids"]

ID_LIMIT = 1 << 24  # ids a COCO panoptic PNG can hold
_SMALL = 256  # ids below this are their own codes (uint8), as a model's 1, 2, ... are
_local = threading.local()

# A PNG's IHDR chunk: bit depth and colour type at these byte offsets of the file.
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_BIT_DEPTH, _PNG_COLOUR_TYPE = 24, 25
_PNG_RGB, _PNG_RGBA = 2, 6


class CompactIds(NamedTuple):
    """A segment id map as `ids[index]`: (H, W) codes and the (N,) id of each code."""

    index: np.ndarray  # (H, W) uint8 (uint16, int32 when more codes are needed)
    ids: np.ndarray  # (N,) int64 segment id of each code; a code no pixel has may repeat one


def read_panoptic_ids(file_name: str) -> np.ndarray:
    """(H, W) uint32 segment ids R + 256 G + 256^2 B of a COCO panoptic PNG.

    An 8-bit RGB(A) PNG (every COCO panoptic PNG) is decoded by OpenCV, faster than PIL; any
    other file is read by PIL as panopticapi reads it. Raises FileNotFoundError, OSError (not
    readable) or ValueError (not 8-bit RGB), naming the file.
    """
    try:
        with PathManager.open(file_name, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"Label file not found: {file_name}") from None
    if (
        data[:8] == _PNG_SIGNATURE
        and len(data) > _PNG_COLOUR_TYPE
        and data[_PNG_BIT_DEPTH] == 8
        and data[_PNG_COLOUR_TYPE] in (_PNG_RGB, _PNG_RGBA)
    ):
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if bgr is None:
            raise OSError(f"Cannot read label file {file_name}: a corrupt or truncated PNG")
        # RGBA bytes read as one little-endian uint32 are R + 256 G + 256^2 B + 2^24 A.
        code = cv2.COLOR_BGR2RGBA if bgr.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
        ids = cv2.cvtColor(bgr, code).view(np.uint32)[..., 0]
        ids &= ID_LIMIT - 1
        return ids
    rgb = read_label_map(file_name)
    if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.dtype != np.uint8:
        raise ValueError(
            f"{file_name}: a panoptic PNG must be 8-bit RGB (segment id = R + 256 G + 256^2 B), "
            f"but it reads as an array of shape {rgb.shape} and dtype {rgb.dtype}"
        )
    ids = rgb[..., 2].astype(np.uint32)
    ids <<= 8
    ids |= rgb[..., 1]
    ids <<= 8
    ids |= rgb[..., 0]
    return ids


def _code_table(dtype) -> np.ndarray:
    """This thread's (2^24,) id -> code table of `dtype`, all 0 between uses.

    np.zeros maps untouched pages lazily: the few pages written and read are all that is
    resident, not 16 or 32 MB."""
    tables = _local.__dict__.setdefault("tables", {})
    key = np.dtype(dtype).name
    if key not in tables:
        tables[key] = np.zeros(ID_LIMIT, dtype)
    return tables[key]


def _index_dtype(codes: int):
    for dtype in (np.uint8, np.uint16):
        if codes <= np.iinfo(dtype).max + 1:
            return dtype
    return np.int32


def compact_ids(
    ids: np.ndarray, listed: Sequence[int] = (), what: str = "segment ids"
) -> CompactIds:
    """`ids` as codes: `compact.ids[compact.index]` equals `ids` pixel for pixel.

    Ids in [0, 256) are their own codes (a model's 1, 2, ...: one cast, no lookup). Larger ids
    get codes from a table: 1 for id 0, then 2, 3, ... for `listed` (the segments the image's
    annotation lists, in order), then the other ids present, looked for only if there are any
    (code 0 stays unused).

    Args:
        ids: (H, W) integer segment ids in [0, 2^24).
        listed: ids expected in the map (others are found, more slowly); they need not occur.
        what: named in errors.
    Raises:
        ValueError: ids that are not integers or not in [0, 2^24), or more than 65534 listed.
    """
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{what}: expected integer segment ids, got dtype {ids.dtype}")
    if ids.size == 0:
        return CompactIds(np.zeros(ids.shape, np.uint8), np.zeros(1, np.int64))
    # Unsigned ids (a decoded PNG's) cannot be negative: one pass fewer.
    low = int(ids.min()) if np.issubdtype(ids.dtype, np.signedinteger) else 0
    high = int(ids.max())
    if low < 0 or high >= ID_LIMIT:
        raise ValueError(f"{what}: segment ids must be in [0, 2^24), got {low}..{high}")
    if high < _SMALL:
        return CompactIds(ids.astype(np.uint8), np.arange(high + 1, dtype=np.int64))

    listed = np.asarray(listed, np.int64).reshape(-1)
    table_dtype = _index_dtype(len(listed) + 2)
    if table_dtype == np.int32:
        raise ValueError(f"{what}: {len(listed)} listed segments; at most 65534 are supported")
    # A listed id outside the PNG range cannot occur: its code stays unused.
    in_range = (listed >= 0) & (listed < ID_LIMIT)
    table = _code_table(table_dtype)
    table[0] = 1
    table[listed[in_range]] = np.arange(2, len(listed) + 2)[in_range]
    try:
        index = np.take(table, ids)
    finally:
        table[0] = 0
        table[listed[in_range]] = 0
    values = np.concatenate([[0, 0], listed])
    if index.min() == 0:  # ids not listed (an annotation that misses a segment of its PNG)
        unlisted = index == 0
        others, inverse = np.unique(ids[unlisted], return_inverse=True)
        index = index.astype(_index_dtype(len(values) + len(others)), copy=False)
        index[unlisted] = len(values) + inverse
        values = np.concatenate([values, others])
    return CompactIds(index, values)
