"""Shared plumbing of the dataset preparation scripts in `datasets/`.

Conventions every script follows: inputs and outputs live under $DETECTRON2_DATASETS (default
./datasets), overridable with `--root`; a file is written under a temporary name and renamed
into place, so an interrupted run never leaves a truncated file under its final name; a re-run
skips every output that exists already; progress is shown with tqdm.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import shutil
from typing import Callable, Iterable, List, Sequence, TypeVar

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..utils.file_io import write_atomically

__all__ = [
    "convert_png_folder",
    "copy_file",
    "datasets_root",
    "process_all",
    "save_image",
    "write_atomically",
]

T = TypeVar("T")
R = TypeVar("R")

# Output format by extension: PIL must be told, since temporary names end in ".tmp".
_FORMATS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".jpg": "JPEG", ".jpeg": "JPEG"}


def datasets_root() -> str:
    """$DETECTRON2_DATASETS, or "datasets" as in Detectron2."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def save_image(array: np.ndarray, path: str) -> None:
    """Save a label map or image losslessly where the format allows (uint16 -> 16-bit TIFF/PNG)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in _FORMATS:
        raise ValueError(f"{path}: unsupported extension '{ext}'; use one of {sorted(_FORMATS)}")
    write_atomically(path, lambda tmp: Image.fromarray(array).save(tmp, format=_FORMATS[ext]))


def copy_file(src: str, dst: str) -> None:
    write_atomically(dst, lambda tmp: shutil.copyfile(src, tmp))


def process_all(
    fn: Callable[[T], R], items: Sequence[T], *, desc: str, workers: int = 1
) -> List[R]:
    """`[fn(item) for item in items]` with a progress bar, in `workers` processes if > 1.

    `fn` must be picklable (a module-level function or a functools.partial of one).
    """
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in tqdm(items, desc=desc, unit="img")]
    # fork: the scripts' job functions live in __main__, which spawn could not re-import.
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        done: Iterable[R] = pool.imap(fn, items, chunksize=8)
        return list(tqdm(done, total=len(items), desc=desc, unit="img"))


def convert_png_folder(
    convert: Callable[..., None], src_dir: str, dst_dir: str, *, desc: str, workers: int = 1
) -> None:
    """`convert(name, src_dir=src_dir, dst_dir=dst_dir)` for every .png of `src_dir` that has no
    output of the same name in `dst_dir` yet (created if needed), with a progress bar.

    `convert` must be picklable (a module-level function), as for `process_all`.
    """
    os.makedirs(dst_dir, exist_ok=True)
    names = sorted(n for n in os.listdir(src_dir) if n.endswith(".png"))
    todo = [n for n in names if not os.path.exists(os.path.join(dst_dir, n))]
    print(f"{desc}: {len(names)} label maps, {len(names) - len(todo)} already converted")
    job = functools.partial(convert, src_dir=src_dir, dst_dir=dst_dir)
    process_all(job, todo, desc=desc, workers=workers)
