"""Attention maps on slides: heatmaps, top-tile montages and localisation AUC against annotations."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from lnmkit.mil._metrics import auc_delong

__all__ = ["LocalisationResult", "annotation_tile_labels", "attention_heatmap", "attention_localisation_auc",
           "top_tiles"]


@contextlib.contextmanager
def _opened(slide, mpp=None):
    """Yield an open ``lnmkit.slides.Slide`` for a path or pass a Slide through."""
    if hasattr(slide, "read_region"):
        yield slide
        return
    from lnmkit.slides import open_slide

    with open_slide(slide, mpp=mpp) as opened:
        yield opened


def _check_tiles(coords, scores, where):
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if coords.shape[0] != scores.shape[0]:
        raise ValueError(f"{where}: got {coords.shape[0]} coords but {scores.shape[0]} scores; "
                         "pass one score per tile.")
    if coords.shape[0] == 0:
        raise ValueError(f"{where}: no tiles to draw.")
    return coords, scores


def _outline_rings(tissue):
    """Level-0 (x, y) rings from a TissueMask, a GeoJSON dict or a GeoJSON file path."""
    if tissue is None:
        return []
    if hasattr(tissue, "polygons"):
        return [np.asarray(ring, float) for poly in tissue.polygons for ring in poly]
    geo = tissue if isinstance(tissue, dict) else json.loads(Path(tissue).read_text(encoding="utf-8"))
    feats = geo.get("features", [geo]) if geo.get("type") == "FeatureCollection" else [geo]
    rings = []
    for feat in feats:
        geom = feat.get("geometry", feat)
        coords = geom.get("coordinates", [])
        polys = coords if geom.get("type") == "MultiPolygon" else [coords]
        for poly in polys:
            rings.extend(np.asarray(ring, float) for ring in poly)
    return rings


def _rasterise(coords, scores, tile_size_level0, scale, shape, smooth_sigma):
    """Average tile scores onto the thumbnail grid (overlaps averaged); NaN where no tile."""
    from scipy.ndimage import gaussian_filter

    total = np.zeros(shape, dtype=np.float64)
    count = np.zeros(shape, dtype=np.float64)
    h, w = shape
    for (x, y), s in zip(coords, scores):
        x0, y0 = int(np.floor(x / scale)), int(np.floor(y / scale))
        x1 = max(x0 + 1, int(np.ceil((x + tile_size_level0) / scale)))
        y1 = max(y0 + 1, int(np.ceil((y + tile_size_level0) / scale)))
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 > x0 and y1 > y0:
            total[y0:y1, x0:x1] += s
            count[y0:y1, x0:x1] += 1
    covered = count > 0
    if smooth_sigma and smooth_sigma > 0:
        # Normalised convolution: blur scores and coverage alike so borders are not darkened.
        sigma = smooth_sigma * tile_size_level0 / scale
        total = gaussian_filter(total, sigma)
        count = gaussian_filter(count, sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        image = np.where(covered & (count > 1e-9), total / np.maximum(count, 1e-12), np.nan)
    return image


def attention_heatmap(
    slide,
    coords,
    scores,
    tile_size_level0,
    *,
    thumbnail_size=1024,
    cmap="inferno",
    alpha=0.55,
    vmin=None,
    vmax=None,
    smooth_sigma=0.0,
    tissue=None,
    colorbar=True,
    label="attention",
    title=None,
    mpp=None,
    ax=None,
):
    """Draw per-tile scores over the slide thumbnail.

    Parameters
    ----------
    slide : str, path-like or lnmkit.slides.Slide
        The slide (its thumbnail is computed from the pyramid; label and macro
        images are never read).
    coords : array-like of shape (n_tiles, 2)
        Level-0 top-left ``(x, y)`` of each tile.
    scores : array-like of shape (n_tiles,)
        E.g. ``attention_pct`` (percentile within the slide) or raw ``attention``.
    tile_size_level0 : float
        Tile side in level-0 pixels (the feature file's ``tile_size_level0``).
    thumbnail_size : int, default=1024
        Largest side of the thumbnail in pixels.
    cmap : str, default="inferno"
    alpha : float, default=0.55
        Opacity of the overlay.
    vmin, vmax : float, optional
        Colour range; defaults to the scores' range.
    smooth_sigma : float, default=0.0
        Gaussian smoothing in tile units (0 = crisp tiles).
    tissue : lnmkit.slides.TissueMask, dict, str or path-like, optional
        Tissue outline to draw: a TissueMask, a GeoJSON object or a GeoJSON file.
    colorbar : bool, default=True
    label : str, default="attention"
        Colour-bar label.
    title : str, optional
        Defaults to the slide id.
    mpp : float, optional
        Microns-per-pixel override when opening ``slide`` from a path.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
        Save with ``fig.savefig("map.png", dpi=150)``.
    """
    import matplotlib.pyplot as plt

    coords, scores = _check_tiles(coords, scores, "attention_heatmap")
    if float(tile_size_level0) <= 0:
        raise ValueError(f"attention_heatmap: tile_size_level0 must be > 0; got {tile_size_level0!r}.")
    with _opened(slide, mpp) as s:
        thumb = s.thumbnail(thumbnail_size)
        width0 = s.dimensions[0]
        slide_id = getattr(s, "slide_id", Path(str(getattr(s, "path", "slide"))).stem)
    scale = width0 / thumb.shape[1]
    heat = _rasterise(coords, scores, float(tile_size_level0), scale, thumb.shape[:2], smooth_sigma)
    fig, ax = (plt.subplots(figsize=(7, 7 * thumb.shape[0] / thumb.shape[1] + 0.4)) if ax is None
               else (ax.figure, ax))
    ax.imshow(thumb, interpolation="nearest")
    finite = scores[np.isfinite(scores)]
    lo = float(np.min(finite)) if vmin is None and finite.size else vmin
    hi = float(np.max(finite)) if vmax is None and finite.size else vmax
    im = ax.imshow(np.ma.masked_invalid(heat), cmap=cmap, alpha=alpha, vmin=lo, vmax=hi,
                   interpolation="nearest")
    for ring in _outline_rings(tissue):
        if len(ring):
            ax.plot(ring[:, 0] / scale, ring[:, 1] / scale, color="tab:green", lw=0.8)
    ax.set_xlim(0, thumb.shape[1])
    ax.set_ylim(thumb.shape[0], 0)
    ax.set_axis_off()
    ax.set_title(title if title is not None else str(slide_id), fontsize=10)
    if colorbar:
        bar = fig.colorbar(im, ax=ax, fraction=0.035, pad=0.02)
        bar.solids.set(alpha=1)
        bar.set_label(label)
    return fig


def _read_tile(slide, x, y, tile_size_level0, out_px):
    """Read one tile from the finest level that is not finer than needed, resized to ``out_px``."""
    want = tile_size_level0 / out_px  # level-0 px per output px
    level = 0
    for i, ds in enumerate(slide.level_downsamples):
        if ds <= want * 1.001:
            level = i
    ds = slide.level_downsamples[level]
    size = max(1, int(round(tile_size_level0 / ds)))
    region = slide.read_region((int(x), int(y)), level, (size, size))
    if region.shape[0] != out_px or region.shape[1] != out_px:
        region = np.asarray(Image.fromarray(region).resize((out_px, out_px), Image.Resampling.LANCZOS))
    return region


def top_tiles(
    slide,
    coords,
    scores,
    tile_size_level0,
    k=8,
    *,
    mpp=None,
    tile_px=None,
    slide_mpp=None,
    label="attention",
    title=None,
):
    """Montage of the ``k`` highest- and ``k`` lowest-scoring tiles of a slide.

    Parameters
    ----------
    slide : str, path-like or lnmkit.slides.Slide
    coords : array-like of shape (n_tiles, 2)
        Level-0 top-left ``(x, y)``.
    scores : array-like of shape (n_tiles,)
    tile_size_level0 : float
        Tile side in level-0 pixels.
    k : int, default=8
        Tiles per row (fewer if the slide has fewer than ``2 k`` tiles).
    mpp : float, optional
        Magnification to show the tiles at (the model's, e.g. 0.5 µm/px); the tile
        is drawn with ``tile_size_level0 * slide.mpp / mpp`` pixels. Default: 224 px.
    tile_px : int, optional
        Explicit output size in pixels (overrides ``mpp``).
    slide_mpp : float, optional
        Microns-per-pixel override when opening ``slide`` from a path.
    label : str, default="attention"
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Top row: most attended (descending); bottom row: least attended (ascending).
    """
    import matplotlib.pyplot as plt

    coords, scores = _check_tiles(coords, scores, "top_tiles")
    if int(k) < 1:
        raise ValueError(f"top_tiles: k must be >= 1; got {k!r}.")
    n = len(scores)
    k = int(min(k, max(1, n // 2)))
    order = np.argsort(-scores, kind="stable")
    rows = [("most", order[:k]), ("least", order[::-1][:k])]
    with _opened(slide, slide_mpp) as s:
        if tile_px is None:
            tile_px = int(round(tile_size_level0 * s.mpp / mpp)) if mpp is not None else 224
        tile_px = max(8, int(tile_px))
        images = {name: [_read_tile(s, *coords[i], tile_size_level0, tile_px) for i in idx] for name, idx in rows}
        slide_id = getattr(s, "slide_id", "slide")
    fig, axes = plt.subplots(2, k, figsize=(1.6 * k, 3.7), squeeze=False)
    for r, (name, idx) in enumerate(rows):
        for c in range(k):
            a = axes[r, c]
            a.set_axis_off()
            if c < len(idx):
                a.imshow(images[name][c])
                i = idx[c]
                a.set_title(f"{scores[i]:.3g}\n({int(coords[i, 0])}, {int(coords[i, 1])})", fontsize=7)
        axes[r, 0].text(-0.08, 0.5, f"{name}\n{label}", transform=axes[r, 0].transAxes,
                        ha="right", va="center", fontsize=8)
    fig.suptitle(title if title is not None else f"{slide_id}: top and bottom {k} tiles by {label}", fontsize=10)
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class LocalisationResult:
    """How well attention ranks annotated (tumour) tiles above the rest.

    Attributes
    ----------
    per_slide : pandas.DataFrame
        Indexed by slide_id, slides with at least one annotated tile: n_tiles,
        n_tumour (tiles whose annotated fraction is >= ``threshold``), auc.
    pooled : dict
        AUC with DeLong CI over all tiles of the slides that contain tumour.
    score : str
        The column used (``attention_pct`` by default: comparable across slides).
    threshold : float
        Annotated fraction from which a tile counts as tumour.
    """

    per_slide: pd.DataFrame
    pooled: dict
    score: str
    threshold: float = 0.5

    @property
    def auc(self):
        """Pooled tile-level AUC (float)."""
        return self.pooled["auc"]

    @property
    def mean_slide_auc(self):
        """Mean of the per-slide AUCs over slides with both classes (float)."""
        return float(self.per_slide["auc"].mean()) if len(self.per_slide) else float("nan")

    def to_dict(self):
        """JSON-ready summary."""
        return {"score": self.score, "threshold": float(self.threshold), "pooled_auc": self.pooled["auc"], "pooled_auc_lower_95": self.pooled["lower"],
                "pooled_auc_upper_95": self.pooled["upper"], "mean_slide_auc": self.mean_slide_auc,
                "n_slides_with_tumour": int((self.per_slide["n_tumour"] > 0).sum()),
                "n_tiles": self.pooled["n"], "n_tumour_tiles": self.pooled["n_pos"]}

    def plot(self, ax=None):
        """Per-slide AUCs as a strip chart; returns a matplotlib Figure."""
        import matplotlib.pyplot as plt

        fig, ax = (plt.subplots(figsize=(4, 3.2)) if ax is None else (ax.figure, ax))
        aucs = self.per_slide["auc"].dropna()
        ax.scatter(np.random.default_rng(0).uniform(-0.15, 0.15, len(aucs)), aucs, s=14, alpha=0.7)
        ax.axhline(self.auc, color="tab:red", lw=1, label=f"pooled {self.auc:.2f}")
        ax.axhline(0.5, color="0.6", lw=0.8, ls="--")
        ax.set(xlim=(-0.5, 0.5), ylim=(0, 1.02), xticks=[], ylabel="tile-level AUC",
               title="Attention localisation")
        ax.legend(loc="lower right", fontsize=8)
        return fig

    def __repr__(self):
        p = self.pooled
        return (f"<LocalisationResult: {len(self.per_slide)} slides with tumour, pooled AUC={_fmt(p['auc'])} "
                f"[{_fmt(p['lower'])}, {_fmt(p['upper'])}], mean slide AUC={_fmt(self.mean_slide_auc)}>")

    def _repr_html_(self):
        return f"<p><code>{self!r}</code></p>" + self.per_slide.to_html(float_format="%.3f")


def _fmt(value):
    """A number for a one-line summary; ``n/a`` for None or NaN."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{float(value):.3f}"


def _is_fractions(item):
    """Whether an annotation entry is already a per-tile array of fractions."""
    if isinstance(item, np.ndarray):
        return True
    if isinstance(item, (list, tuple)):
        return len(item) == 0 or not isinstance(item[0], dict)
    return isinstance(item, pd.Series)


def _as_annotations(annotations, classes, mask_downsample, where):
    """``slide_id -> SlideAnnotation or per-tile fractions`` from any accepted form."""
    from lnmkit.slides import read_annotations

    if isinstance(annotations, (str, Path)):
        return read_annotations(annotations, classes=classes, mask_downsample=mask_downsample)
    if not isinstance(annotations, Mapping):
        raise TypeError(f"{where}: annotations must be a folder of <slide_id>.geojson files or a mapping "
                        f"slide_id -> annotation; got {type(annotations).__name__}.")
    fractions = {str(k): v for k, v in annotations.items() if _is_fractions(v)}
    rest = {str(k): v for k, v in annotations.items() if not _is_fractions(v)}
    out = read_annotations(rest, classes=classes, mask_downsample=mask_downsample) if rest else {}
    out.update(fractions)
    return out


def _tile_size(tile_size_level0, sid, table, where):
    if isinstance(tile_size_level0, Mapping):
        if sid in tile_size_level0:
            return float(tile_size_level0[sid])
    elif tile_size_level0 is not None:
        return float(tile_size_level0)
    if table is not None and "tile_size_level0" in table.columns:
        return float(table["tile_size_level0"].iloc[0])
    raise ValueError(f"{where}: slide {sid!r} has a geometric annotation but no tile size; pass "
                     "tile_size_level0= (the feature files' 'tile_size_level0' attribute), or use "
                     "annotation_tile_labels(annotations, bags).")


def annotation_tile_labels(annotations, bags, *, classes=None, mask_downsample=None):
    """Annotated fraction of every tile of feature bags, per slide.

    Parameters
    ----------
    annotations : str, path-like or mapping
        A folder of ``<slide_id>.geojson`` files (or mask images), or a mapping
        ``slide_id -> SlideAnnotation | file | GeoJSON object``
        (see :func:`lnmkit.slides.read_annotations`).
    bags : dict of str to PatientBag
        Bags with level-0 coordinates and per-slide ``tile_size_level0`` attributes
        (as :func:`lnmkit.mil.load_bags` returns them).
    classes : str or iterable of str, optional
        GeoJSON: keep only features of these classifications (e.g. ``"Tumor"``).
    mask_downsample : float, optional
        Level-0 pixels per mask pixel of mask-image annotations.

    Returns
    -------
    dict of str to ndarray
        ``slide_id -> annotated fraction per tile`` in the bag's tile order, for
        the slides that have an annotation.

    Raises
    ------
    lnmkit.exceptions.AnnotationError
        For an unreadable or malformed annotation (file and feature named).
    ValueError
        If an annotated slide's feature file has no ``tile_size_level0``.
    """
    annotations = _as_annotations(annotations, classes, mask_downsample, "annotation_tile_labels")
    labels = {}
    for bag in bags.values():
        for j, sid in enumerate(bag.slide_ids):
            if sid not in annotations:
                continue
            coords = bag.coords[bag.slide_index == j]
            ann = annotations[sid]
            if _is_fractions(ann):
                labels[sid] = np.asarray(ann, float).reshape(-1)
                continue
            attrs = bag.slide_attrs[j] if j < len(bag.slide_attrs) else {}
            if "tile_size_level0" not in attrs:
                raise ValueError(f"annotation_tile_labels: slide {sid!r} has no 'tile_size_level0' attribute in "
                                 "its feature file; re-extract features with lnmkit.")
            labels[sid] = ann.tile_labels(coords, float(attrs["tile_size_level0"]))
    return labels


def attention_localisation_auc(attention, annotations, score="attention_pct", threshold=0.5, *,
                               tile_size_level0=None, classes=None, mask_downsample=None):
    """Tile-level ROC AUC of attention against annotated regions, per slide and pooled.

    A tile's label is the fraction of its area inside the annotation (a
    pathologist's tumour outline, or a synthetic cohort's planted mask), made
    binary with ``threshold``. Slides without any annotated tile are left out
    (their AUC is undefined).

    Parameters
    ----------
    attention : pandas.DataFrame or dict
        A tile table with ``slide_id``, ``x``, ``y`` and the ``score`` column (e.g.
        from ``MILClassifier.predict_attention`` or ``CrossFitResult.attention``), or
        a dict ``slide_id -> scores`` array (then ``annotations`` must hold per-tile
        fractions).
    annotations : str, path-like or mapping
        A folder holding ``<slide_id>.geojson`` (QuPath / GeoJSON polygons in
        level-0 pixels) or mask images, or a mapping ``slide_id ->`` a
        :class:`lnmkit.slides.SlideAnnotation`, an annotation file, a GeoJSON object,
        or an array of per-tile annotated fractions in the slide's tile order.
        Slides absent from it are skipped.
    score : str, default="attention_pct"
        Column of a table input. Percentile ranks make the pooled AUC independent
        of how many tiles each patient has.
    threshold : float, default=0.5
        A tile is tumour when its annotated fraction is at least this.
    tile_size_level0 : float or mapping of str to float, optional
        Tile side in level-0 pixels (the feature files' ``tile_size_level0``),
        needed for geometric annotations unless the table has that column.
    classes : str or iterable of str, optional
        GeoJSON: keep only features of these classifications (e.g. ``"Tumor"``).
    mask_downsample : float, optional
        Level-0 pixels per mask pixel of mask-image files.

    Returns
    -------
    LocalisationResult
        Per-slide AUCs and the pooled AUC over slides that contain tumour.

    Raises
    ------
    lnmkit.exceptions.AnnotationError
        For an unreadable or malformed annotation (file and feature named).
    ValueError
        If a slide's labels and attention values differ in number, or the tile
        table lacks a needed column.

    Examples
    --------
    >>> res = attention_localisation_auc(result.attention, "annotations/",
    ...                                  tile_size_level0=448)  # doctest: +SKIP
    >>> res.auc  # doctest: +SKIP
    """
    from lnmkit._validation import check_fraction

    where = "attention_localisation_auc"
    check_fraction(threshold, "threshold", where)
    if threshold == 0:
        raise ValueError(f"{where}: threshold must be in (0, 1] (0 would make every tile tumour); got 0.")
    annotations = _as_annotations(annotations, classes, mask_downsample, where)
    tables = {}
    if isinstance(attention, pd.DataFrame):
        if score not in attention.columns or "slide_id" not in attention.columns:
            raise ValueError(f"{where}: the tile table needs columns 'slide_id' and "
                             f"{score!r}; it has {list(attention.columns)}.")
        tables = {str(sid): g for sid, g in attention.groupby("slide_id", sort=False)}
        per = {sid: g[score].to_numpy(float) for sid, g in tables.items()}
    else:
        per = {str(k): np.asarray(v, float).reshape(-1) for k, v in attention.items()}
    rows, pooled_s, pooled_y = [], [], []
    for sid, ann in annotations.items():
        sid = str(sid)
        if sid not in per:
            continue
        s = per[sid]
        if _is_fractions(ann):
            lab = np.asarray(ann, float).reshape(-1)
        else:
            table = tables.get(sid)
            if table is None or not {"x", "y"} <= set(table.columns):
                raise ValueError(f"{where}: slide {sid!r} has a geometric annotation; the attention must be a "
                                 "tile table with level-0 'x' and 'y' columns.")
            lab = ann.tile_labels(table[["x", "y"]].to_numpy(float),
                                  _tile_size(tile_size_level0, sid, table, where))
        if len(lab) != len(s):
            raise ValueError(f"{where}: slide {sid!r} has {len(s)} attention values but "
                             f"{len(lab)} tile labels; labels must follow the slide's tile order.")
        y = (lab >= threshold).astype(float)
        if y.sum() == 0:
            continue
        rows.append({"slide_id": sid, "n_tiles": len(y), "n_tumour": int(y.sum()), "auc": auc_delong(y, s)["auc"]})
        pooled_s.append(s)
        pooled_y.append(y)
    table = pd.DataFrame(rows, columns=["slide_id", "n_tiles", "n_tumour", "auc"]).set_index("slide_id")
    if pooled_y:
        pooled = auc_delong(np.concatenate(pooled_y), np.concatenate(pooled_s))
    else:
        pooled = {"auc": np.nan, "lower": np.nan, "upper": np.nan, "se": np.nan, "n": 0, "n_pos": 0}
    return LocalisationResult(table, pooled, score if isinstance(attention, pd.DataFrame) else "scores",
                              float(threshold))
