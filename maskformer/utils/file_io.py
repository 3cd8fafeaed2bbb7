"""Writing files so that an interrupted process never leaves a half-written one."""

from __future__ import annotations

import os
from typing import Callable

__all__ = ["write_atomically", "write_bytes_atomically", "write_text_atomically"]


def write_atomically(path: str, write: Callable[[str], None]) -> None:
    """`write(tmp)` then rename `tmp` to `path` (atomic on POSIX file systems).

    A process killed while writing leaves at most `path + ".tmp"`, never a truncated file under
    the real name. The temporary name ends in ".tmp", not in the data extension, so a loader that
    globs "*.png" never lists it, and a re-run overwrites it.
    """
    tmp = path + ".tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_bytes_atomically(path: str, data: bytes) -> None:
    """`data` as the whole content of `path`, written as `write_atomically` does."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    write_atomically(path, write)


def write_text_atomically(path: str, text: str) -> None:
    """`text` as the whole content of `path`, written as `write_atomically` does."""
    write_bytes_atomically(path, text.encode("utf-8"))
