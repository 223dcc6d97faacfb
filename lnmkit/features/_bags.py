"""Feature bags: one HDF5 file per slide with tile features and coordinates.

Layout (readable by CLAM and TRIDENT, which read ``f["features"][:]`` and
``f["coords"][:]``)::

    features  float32 (N, D)   chunks (min(N, 1024), D)
    coords    int64   (N, 2)   level-0 top-left (x, y); attrs patch_size,
                               patch_size_level0, patch_level, target_magnification,
                               level0_magnification, overlap, name
    root attrs: encoder, encoder_version, dim, mpp, tile_size, tile_size_level0,
                slide_id, patient_id, lnmkit_version, params_hash, ...

:func:`read_bag` also reads bags written by TRIDENT or CLAM as they are
(features of shape (1, N, D), attributes on ``coords`` only).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lnmkit._io import atomic_path
from lnmkit._version import __version__
from lnmkit.exceptions import FeatureBagError

__all__ = ["FeatureBag", "read_bag", "write_bag"]

_CHUNK_ROWS = 1024
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".joblib")


@dataclass
class FeatureBag:
    """Tile features of one slide.

    Parameters
    ----------
    features : ndarray of shape (n_tiles, dim), dtype float32
    coords : ndarray of shape (n_tiles, 2), dtype int64
        Level-0 top-left ``(x, y)`` of each tile.
    attrs : dict
        How the bag was made (encoder, encoder_version, dim, mpp, tile_size,
        tile_size_level0, slide_id, patient_id, lnmkit_version, params_hash ...).
    """

    features: np.ndarray
    coords: np.ndarray
    attrs: dict = field(default_factory=dict)

    def __post_init__(self):
        self.features = np.asarray(self.features, dtype=np.float32)
        self.coords = np.asarray(self.coords, dtype=np.int64)
        if self.features.ndim != 2:
            raise FeatureBagError(f"FeatureBag: features must be 2-D (n_tiles, dim); got shape "
                                  f"{self.features.shape} instead.")
        if self.coords.shape != (len(self.features), 2):
            raise FeatureBagError(f"FeatureBag: coords must have shape ({len(self.features)}, 2) to "
                                  f"match features; got {self.coords.shape} instead.")
        self.attrs = dict(self.attrs)

    @property
    def slide_id(self):
        """str or None: the slide identifier from ``attrs``."""
        return self.attrs.get("slide_id")

    @property
    def patient_id(self):
        """str or None: the patient identifier from ``attrs``."""
        return self.attrs.get("patient_id")

    @property
    def n_tiles(self) -> int:
        """int: number of tiles (rows)."""
        return len(self.features)

    @property
    def dim(self) -> int:
        """int: feature length (columns)."""
        return self.features.shape[1]

    def __len__(self):
        return self.n_tiles

    def __repr__(self):
        return (f"<FeatureBag {self.slide_id!r} (patient {self.patient_id!r}): {self.n_tiles} tiles x "
                f"{self.dim} features, encoder {self.attrs.get('encoder')!r}>")

    def _repr_html_(self):
        rows = [("slide", self.slide_id), ("patient", self.patient_id), ("tiles", self.n_tiles),
                ("dim", self.dim), ("encoder", self.attrs.get("encoder")),
                ("mpp", self.attrs.get("mpp")), ("tile size", self.attrs.get("tile_size"))]
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                       f"<td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        return f"<table><caption>FeatureBag</caption>{body}</table>"


def _plain(value):
    """h5py attribute value -> plain Python (str, int, float, list)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_finite(features, coords, where):
    """Refuse NaN or infinite features, naming the first tile: MIL pooling would turn them into NaN scores."""
    finite = np.isfinite(features).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        row = int(bad[0])
        raise FeatureBagError(
            f"{where}: {len(bad)} of {len(features)} tile(s) have NaN or infinite features (first: row {row}, "
            f"tile at (x, y) = {tuple(int(v) for v in coords[row])}, column "
            f"{int(np.flatnonzero(~np.isfinite(features[row]))[0])}). Re-extract the slide, or drop those "
            "rows before writing the bag.")


def write_bag(path, bag: FeatureBag):
    """Write a feature bag to HDF5 atomically.

    Parameters
    ----------
    path : str or path-like
        Destination ``.h5``; a reader never sees a partial file.
    bag : FeatureBag
        ``attrs`` values that are None are left out; other values must be
        str, int, float or bool (or lists of them).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    TypeError
        If ``bag`` is not a FeatureBag.
    FeatureBagError
        If a feature is NaN or infinite.
    """
    import h5py

    if not isinstance(bag, FeatureBag):
        raise TypeError(f"write_bag: bag must be a FeatureBag; got {type(bag).__name__} instead.")
    path = Path(path)
    _check_finite(bag.features, bag.coords, f"write_bag({path})")
    n, dim = bag.features.shape
    attrs = {"dim": int(dim), "n_tiles": int(n), "lnmkit_version": __version__, **bag.attrs}
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            feats_chunks = (min(n, _CHUNK_ROWS), max(dim, 1)) if n and dim else None
            f.create_dataset("features", data=bag.features, chunks=feats_chunks)
            coords = f.create_dataset("coords", data=bag.coords,
                                      chunks=(min(n, _CHUNK_ROWS), 2) if n else None)
            for key, value in attrs.items():
                # coords_attrs is read_bag's view of the coords attributes, rebuilt below.
                if value is not None and not isinstance(value, dict):
                    f.attrs[key] = value
            # The names TRIDENT and CLAM read from the coords dataset.
            tile_size = attrs.get("tile_size")
            mpp = attrs.get("mpp")
            slide_mpp = attrs.get("slide_mpp")
            coord_attrs = {
                "patch_size": tile_size,
                "patch_size_level0": attrs.get("tile_size_level0"),
                "patch_level": attrs.get("level", 0),
                "target_magnification": int(round(10.0 / mpp)) if mpp else None,
                "level0_magnification": int(round(10.0 / slide_mpp)) if slide_mpp else None,
                "overlap": 0,
                "name": attrs.get("slide_id"),
            }
            for key, value in coord_attrs.items():
                if value is not None:
                    coords.attrs[key] = value
    return path


def read_bag(path) -> FeatureBag:
    """Read a feature bag written by lnmkit, TRIDENT or CLAM.

    Parameters
    ----------
    path : str or path-like
        HDF5 file with datasets ``features`` ((N, D) or (1, N, D)) and ``coords``
        ((N, 2) or (1, N, 2)).

    Returns
    -------
    FeatureBag
        ``attrs`` holds the root attributes; missing lnmkit names are filled from
        the TRIDENT/CLAM ``coords`` attributes (``tile_size`` from ``patch_size``,
        ``tile_size_level0`` from ``patch_size_level0``), ``slide_id`` from the
        file name, and ``dim`` from the features.

    Raises
    ------
    FeatureBagError
        If the file is not HDF5 (``.pt``/``.pkl`` files are refused unread: they
        are never unpickled), lacks a dataset, the shapes disagree, coordinates
        are not whole pixels, or a feature is NaN or infinite.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FeatureBagError(f"{path}: feature bag not found." if not path.exists() else
                              f"{path}: is a folder, not a feature bag (.h5) file.")
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        # Unpickling runs arbitrary code, so PyTorch/pickle bags are refused outright.
        raise FeatureBagError(f"{path}: PyTorch/pickle files are never read (unpickling can run code); "
                              "feature bags must be HDF5 with datasets 'features' and 'coords'. Convert it "
                              "where it was made, e.g. with lnmkit.features.write_bag.")
    try:
        with h5py.File(path, "r") as f:
            missing = [name for name in ("features", "coords") if name not in f]
            if missing:
                raise FeatureBagError(f"{path}: missing dataset(s) {missing}; a feature bag holds "
                                      f"'features' and 'coords' (found {sorted(f.keys())}).")
            features = f["features"][:]
            coords = f["coords"][:]
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            coord_attrs = {k: _plain(v) for k, v in f["coords"].attrs.items()}
    except OSError as exc:
        raise FeatureBagError(f"{path}: cannot be read as HDF5 ({exc}); a feature bag is an HDF5 file "
                              "with datasets 'features' and 'coords'.") from exc
    if features.ndim == 3 and features.shape[0] == 1:
        features = features[0]
    if coords.ndim == 3 and coords.shape[0] == 1:
        coords = coords[0]
    if features.ndim != 2 or coords.ndim != 2 or coords.shape[1] != 2 or len(coords) != len(features):
        raise FeatureBagError(f"{path}: features {features.shape} and coords {coords.shape} do not "
                              "form a bag (expected (N, D) and (N, 2)).")
    if not (np.issubdtype(features.dtype, np.number) and np.issubdtype(coords.dtype, np.number)):
        raise FeatureBagError(f"{path}: features ({features.dtype}) and coords ({coords.dtype}) must be "
                              "numeric.")
    if not np.issubdtype(coords.dtype, np.integer) and \
            not (np.isfinite(coords).all() and np.array_equal(coords, np.round(coords))):
        raise FeatureBagError(f"{path}: coords must be whole level-0 pixel positions; got {coords.dtype} "
                              "values with fractions or NaN.")
    _check_finite(features, coords, path)
    for ours, theirs in (("tile_size", "patch_size"), ("tile_size_level0", "patch_size_level0")):
        if ours not in attrs and theirs in coord_attrs:
            attrs[ours] = coord_attrs[theirs]
    if "mpp" not in attrs and coord_attrs.get("target_magnification"):
        attrs["mpp"] = 10.0 / float(coord_attrs["target_magnification"])
    attrs.setdefault("slide_id", path.stem)
    attrs.setdefault("dim", int(features.shape[1]))
    attrs["coords_attrs"] = coord_attrs
    return FeatureBag(features=features.astype(np.float32, copy=False),
                      coords=coords.astype(np.int64, copy=False), attrs=attrs)
