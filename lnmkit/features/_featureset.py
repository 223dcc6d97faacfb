"""A finished (or partly finished) feature extraction run folder."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from lnmkit.exceptions import FeatureBagError
from lnmkit.features._bags import read_bag

__all__ = ["FeatureSet", "open_features", "MANIFEST_COLUMNS", "read_manifest"]

MANIFEST_COLUMNS = ["slide_id", "patient_id", "status", "n_tiles", "seconds", "error"]


def read_manifest(path) -> pd.DataFrame:
    """Read ``manifest.csv`` as a DataFrame indexed by slide_id.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    pandas.DataFrame
        Columns patient_id, status, n_tiles (int), seconds (float), error (str, "" if none).
    """
    frame = pd.read_csv(path, dtype={"slide_id": str, "patient_id": str, "status": str,
                                     "error": str}, keep_default_na=False)
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise FeatureBagError(f"{path}: manifest lacks column(s) {missing}.")
    frame["n_tiles"] = pd.to_numeric(frame["n_tiles"], errors="coerce").fillna(0).astype(int)
    frame["seconds"] = pd.to_numeric(frame["seconds"], errors="coerce")
    return frame.set_index("slide_id")


class FeatureSet:
    """The outputs of one extraction run: parameters, manifest, bags, tissue masks.

    Built by :func:`open_features` or returned by :func:`lnmkit.features.extract`.

    Parameters
    ----------
    root : str or path-like
        The run folder (holding ``params.json``, ``manifest.csv``, ``h5/``,
        ``tissue/``, ``qc/``).
    """

    def __init__(self, root):
        self.root = Path(root)
        params_path = self.root / "params.json"
        if not params_path.is_file():
            raise FeatureBagError(f"{self.root}: not a feature run folder (no params.json).")
        self.params = json.loads(params_path.read_text())
        manifest_path = self.root / "manifest.csv"
        if manifest_path.is_file():
            self.manifest = read_manifest(manifest_path)
        else:
            self.manifest = pd.DataFrame(columns=MANIFEST_COLUMNS).set_index("slide_id")

    @property
    def name(self) -> str:
        """str: the run folder name (encoder, mpp, tile size and parameter hash)."""
        return self.root.name

    @property
    def slide_ids(self) -> list[str]:
        """list of str: slides whose bag is finished (status ``"ok"``), in manifest order."""
        return self.manifest.index[self.manifest["status"] == "ok"].tolist()

    @property
    def slides(self) -> pd.DataFrame:
        """pandas.DataFrame: finished slides (index slide_id) with patient_id, n_tiles, path."""
        ok = self.manifest.loc[self.slide_ids, ["patient_id", "n_tiles"]].copy()
        ok["path"] = [str(self.bag_path(s)) for s in ok.index]
        return ok

    @property
    def patient_ids(self) -> list[str]:
        """list of str: patients with at least one finished slide, sorted."""
        return sorted(set(self.manifest.loc[self.slide_ids, "patient_id"]))

    @property
    def encoder(self) -> str:
        """str: the encoder name."""
        return self.params.get("encoder", {}).get("name", "")

    @property
    def dim(self) -> int:
        """int: feature length."""
        return int(self.params.get("encoder", {}).get("dim", 0))

    def bag_path(self, slide_id) -> Path:
        """Path of the HDF5 bag of ``slide_id`` (whether or not it exists)."""
        return self.root / "h5" / f"{slide_id}.h5"

    def tissue_path(self, slide_id) -> Path:
        """Path of the tissue GeoJSON of ``slide_id``."""
        return self.root / "tissue" / f"{slide_id}.geojson"

    def qc_path(self, slide_id) -> Path:
        """Path of the QC thumbnail PNG of ``slide_id``."""
        return self.root / "qc" / f"{slide_id}.png"

    def bag(self, slide_id):
        """Read the bag of a finished slide.

        Parameters
        ----------
        slide_id : str

        Returns
        -------
        FeatureBag

        Raises
        ------
        KeyError
            If the slide is not in the manifest or did not finish.
        """
        if slide_id not in self.manifest.index:
            raise KeyError(f"{slide_id!r} is not in {self.root / 'manifest.csv'}.")
        row = self.manifest.loc[slide_id]
        if row["status"] != "ok":
            raise KeyError(f"{slide_id!r} has status {row['status']!r} in {self.root / 'manifest.csv'}"
                           f": {row['error']}")
        return read_bag(self.bag_path(slide_id))

    def bags(self):
        """Iterate over ``(slide_id, FeatureBag)`` of the finished slides."""
        for slide_id in self.slide_ids:
            yield slide_id, self.bag(slide_id)

    def __len__(self):
        return len(self.slide_ids)

    def _counts(self):
        return self.manifest["status"].value_counts().to_dict()

    def __repr__(self):
        counts = ", ".join(f"{v} {k}" for k, v in sorted(self._counts().items())) or "empty"
        return f"<FeatureSet {self.name!r}: {counts}; encoder {self.encoder!r} dim {self.dim}>"

    def _repr_html_(self):
        counts = ", ".join(f"{v} {k}" for k, v in sorted(self._counts().items())) or "empty"
        rows = [("run", self.name), ("folder", self.root), ("encoder", self.encoder), ("dim", self.dim),
                ("mpp", self.params.get("mpp")), ("tile size", self.params.get("tile_size")),
                ("slides", counts), ("tiles", int(self.manifest["n_tiles"].sum()))]
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                       f"<td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        return f"<table><caption>FeatureSet</caption>{body}</table>"

    def plot(self, ax=None):
        """Bar chart of tiles per finished slide, failed slides marked.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=(max(4, 0.3 * len(self.manifest) + 2), 3))
        else:
            fig = ax.figure
        colours = ["tab:blue" if s == "ok" else "tab:red" for s in self.manifest["status"]]
        ax.bar(range(len(self.manifest)), self.manifest["n_tiles"], color=colours)
        ax.set_xticks(range(len(self.manifest)), self.manifest.index, rotation=90, fontsize=7)
        ax.set_ylabel("tiles")
        ax.set_title(f"{self.name} (red: not ok)", fontsize=9)
        return fig


def open_features(path) -> FeatureSet:
    """Open an extraction run.

    Parameters
    ----------
    path : str or path-like
        A run folder (holding ``params.json``), or the ``out_dir`` given to
        :func:`~lnmkit.features.extract` when it holds exactly one run.

    Returns
    -------
    FeatureSet

    Raises
    ------
    FeatureBagError
        If ``path`` holds no run or several runs (the message lists them).
    """
    path = Path(path)
    if (path / "params.json").is_file():
        return FeatureSet(path)
    if not path.is_dir():
        raise FeatureBagError(f"open_features: {path} is not a folder.")
    runs = sorted(p for p in path.iterdir() if (p / "params.json").is_file())
    if len(runs) == 1:
        return FeatureSet(runs[0])
    if not runs:
        raise FeatureBagError(f"open_features: {path} holds no feature run (no */params.json). "
                              "Run lnmkit.features.extract first.")
    names = ", ".join(p.name for p in runs)
    raise FeatureBagError(f"open_features: {path} holds {len(runs)} runs ({names}); pass one run "
                          "folder.")
