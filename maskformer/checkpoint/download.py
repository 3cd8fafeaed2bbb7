"""Weights named by URL (MODEL.WEIGHTS "https://...", "detectron2://..."), downloaded once."""

from __future__ import annotations

import contextlib
import io

from .errors import CheckpointDownloadError

__all__ = ["download"]


def download(url: str) -> str:
    """The local copy of `url`, downloaded once and cached by Detectron2's PathManager.

    A failure is one `CheckpointDownloadError` naming the URL and the reason, instead of the
    download library's progress bar, log line and traceback.
    """
    from detectron2.utils.file_io import PathManager

    plain = url.split("?", 1)[0]  # Detectron2's "?matching_heuristics=True" is no part of it
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stderr(chatter), contextlib.redirect_stdout(chatter):
            return PathManager.get_local_path(plain)
    except Exception as e:  # URLError, HTTPError, ssl and socket errors, handler errors
        reason = getattr(e, "reason", None) or e
        raise CheckpointDownloadError(url, " ".join(str(reason).split())) from None
