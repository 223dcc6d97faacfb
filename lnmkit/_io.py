"""Atomic file output: a reader never sees a half-written file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text"]


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temporary path next to ``path`` and move it into place on success.

    The temporary file lives in the destination folder so that the final
    ``os.replace`` is atomic on POSIX file systems. If the body raises, the
    temporary file is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : str or path-like
        Final destination.
    suffix : str, optional
        Suffix of the temporary file (some writers pick the format from it);
        defaults to the suffix of ``path``.

    Yields
    ------
    pathlib.Path
        Where the caller writes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=(suffix if suffix is not None else path.suffix) + ".part",
        dir=path.parent,
    )
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path, text, encoding="utf-8"):
    """Write ``text`` to ``path`` atomically.

    Parameters
    ----------
    path : str or path-like
        Destination file.
    text : str
        Content.
    encoding : str, default="utf-8"
        Text encoding.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
