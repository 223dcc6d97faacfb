"""Atomic file output: a reader never sees a half-written file."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text"]


def _umask():
    """The process umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no way to read it without setting it elsewhere
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temporary path next to ``path`` and move it into place on success.

    The temporary file lives in the destination folder so that the final
    ``os.replace`` is atomic on POSIX file systems. If the body raises, the
    temporary file is removed and ``path`` is left as it was. The file ends up
    with the permissions the process umask gives a new file (``0644`` under the
    usual umask ``022``), not the private ``0600`` of a temporary file.

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

    Raises
    ------
    IsADirectoryError
        If ``path`` is an existing folder.
    NotADirectoryError
        If a file stands where one of its parent folders should be.
    """
    path = Path(path)
    # mkdir and os.replace would fail with bare "[Errno 17] File exists" / "Is a directory"
    # naming a temporary file; say which path is in the way instead.
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; give the name of a file to write", str(path))
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise NotADirectoryError(errno.ENOTDIR, f"cannot create it: {blocker} is a file, not a folder", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=(suffix if suffix is not None else path.suffix) + ".part",
        dir=path.parent,
    )
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp makes the file 0600; the result gets the mode open() would give it.
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())
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
