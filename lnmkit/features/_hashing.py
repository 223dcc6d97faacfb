"""Stable short hashes of extraction parameters and weights files."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = ["params_hash", "file_fingerprint"]


def params_hash(params, length=10):
    """Hex digest of a JSON-serialisable parameter dict (key order does not matter).

    Parameters
    ----------
    params : dict
    length : int, default=10
        Number of hex characters kept.

    Returns
    -------
    str
    """
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_fingerprint(path):
    """Identify a (possibly multi-GB) weights file cheaply: name, size and sampled bytes.

    The first and last MiB are hashed together with the size, so replacing the
    file with another checkpoint changes the fingerprint without reading it whole.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    str
        ``"<file name>:<size>:<sha256 prefix>"``.
    """
    path = Path(path)
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(-(1 << 20), os.SEEK_END)
            digest.update(fh.read(1 << 20))
    return f"{path.name}:{size}:{digest.hexdigest()[:16]}"
