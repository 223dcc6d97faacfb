"""Tissue segmentation on a low-resolution view of a slide."""

from __future__ import annotations

import html
import json
from pathlib import Path
from types import MappingProxyType

import numpy as np
from scipy import ndimage
from skimage import filters, morphology

from lnmkit._io import atomic_path, atomic_write_text
from lnmkit._plotting import image_axes
from lnmkit._validation import check_int, check_non_negative, check_positive
from lnmkit._version import __version__
from lnmkit.slides._polygons import (
    features_to_polygons, mask_to_polygons, polygons_to_features, polygons_to_mask,
)

__all__ = ["segment_tissue", "TissueMask", "DEFAULT_TISSUE_PARAMS"]

# Read-only: the defaults are also hashed into feature-extraction run names.
DEFAULT_TISSUE_PARAMS = MappingProxyType({
    "mpp": 8.0,
    "median_um": 50.0,
    "threshold": None,
    "threshold_range": (15, 45),
    "closing_um": 40.0,
    "min_object_um2": 20_000.0,
    "max_hole_um2": 20_000.0,
    "exclude_pen": True,
    "pen_dilation_um": 24.0,
    "black_value": 100,
})


def _hsv(image):
    """Hue (degrees), saturation (0-255) and value (0-255) as float32."""
    red, green, blue = image[..., 0], image[..., 1], image[..., 2]
    high = np.maximum(np.maximum(red, green), blue)
    low = np.minimum(np.minimum(red, green), blue)
    value = high.astype(np.float32)
    delta = value - low
    saturation = delta * 255.0 / np.maximum(value, 1.0)
    safe = np.maximum(delta, 1.0)
    red, green, blue = (channel.astype(np.float32) for channel in (red, green, blue))
    hue = np.where(high == image[..., 0], ((green - blue) / safe) % 6.0,
                   np.where(high == image[..., 1], (blue - red) / safe + 2.0, (red - green) / safe + 4.0))
    hue = np.where(delta > 0, hue * 60.0, 0.0).astype(np.float32)
    return hue, saturation, value


def pen_mask(image, black_value=100, hsv=None):
    """Pixels covered by blue, green or black marker ink.

    H&E is pink to purple: eosin near hue 330-360 degrees, haematoxylin near
    250-280 degrees with red above green. Blue ink (hue 180-245, green at least as
    high as red, blue far above red), green ink (hue 75-175) and black ink (dark
    and unsaturated, also where it covers tissue) fall outside that range.

    Parameters
    ----------
    image : ndarray of shape (h, w, 3), dtype uint8
    black_value : int, default=100
        Pixels whose brightest channel is at most this, with saturation below 0.3,
        are black ink.
    hsv : tuple of ndarray, optional
        Hue, saturation and value of ``image`` when already computed.

    Returns
    -------
    ndarray of shape (h, w), dtype bool
    """
    hue, saturation, value = hsv if hsv is not None else _hsv(image)
    red, green, blue_ = (image[..., i].astype(np.int16) for i in range(3))
    blue = ((hue >= 180) & (hue <= 245) & (saturation >= 0.4 * 255) & (blue_ - red >= 50)
            & (green >= red - 10))
    green_ink = (hue >= 75) & (hue <= 175) & (saturation >= 0.25 * 255) & (value >= 0.15 * 255)
    black = (value <= black_value) & (saturation < 0.3 * 255)
    return blue | green_ink | black


def _remove_small(mask, min_pixels):
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[labels]


def _fill_small_holes(mask, max_pixels):
    holes, count = ndimage.label(~mask)
    if count == 0:
        return mask
    sizes = np.bincount(holes.ravel())
    border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    fill = sizes <= max_pixels
    fill[0] = False
    fill[border] = False
    return mask | fill[holes]


def check_tissue_params(params):
    """The full set of :func:`segment_tissue` parameters, checked, with defaults filled in.

    NaN or a wrong type would otherwise fail deep inside scikit-image (NaN ``mpp``
    exhausts memory), so every value is checked before any pixel is read.

    Parameters
    ----------
    params : dict
        Overrides of :data:`DEFAULT_TISSUE_PARAMS`.

    Returns
    -------
    dict

    Raises
    ------
    TypeError
        If a parameter name is unknown.
    ValueError
        If a value is NaN, negative, out of range or of the wrong type.
    """
    where = "segment_tissue"
    unknown = sorted(set(params) - set(DEFAULT_TISSUE_PARAMS))
    if unknown:
        raise TypeError(f"{where}: unknown parameter(s) {unknown}; valid ones are "
                        f"{sorted(DEFAULT_TISSUE_PARAMS)}.")
    p = {**DEFAULT_TISSUE_PARAMS, **params}
    p["mpp"] = check_positive(p["mpp"], "mpp", where)
    for name in ("median_um", "closing_um", "min_object_um2", "max_hole_um2", "pen_dilation_um"):
        p[name] = check_non_negative(p[name], name, where)
    p["black_value"] = check_int(p["black_value"], "black_value", where, minimum=0, maximum=255)
    if p["threshold"] is not None:
        p["threshold"] = check_non_negative(p["threshold"], "threshold", where)
    bounds = p["threshold_range"]
    if isinstance(bounds, str) or not hasattr(bounds, "__len__") or len(bounds) != 2:
        raise ValueError(f"{where}: threshold_range must be a pair (low, high) of saturation values; "
                         f"got {bounds!r} instead.")
    low = check_non_negative(bounds[0], "threshold_range[0]", where)
    high = check_non_negative(bounds[1], "threshold_range[1]", where)
    if low > high:
        raise ValueError(f"{where}: threshold_range must be (low, high) with low <= high; got {bounds!r} instead.")
    p["threshold_range"] = (low, high)
    p["exclude_pen"] = bool(p["exclude_pen"])
    return p


def robust_threshold(values, threshold_range):
    """Otsu threshold of saturation values, clipped to a plausible range.

    Otsu assumes two classes; on a slide that is all glass or all tissue it splits
    noise or splits tissue in two, so the result is clipped to ``threshold_range``:
    glass stays below the lower bound and pale stroma above the upper one.

    Parameters
    ----------
    values : ndarray of float
        Saturation values (0-255) of the candidate pixels.
    threshold_range : tuple of float
        ``(low, high)`` bounds.

    Returns
    -------
    float
    """
    low, high = float(threshold_range[0]), float(threshold_range[1])
    if values.size < 2 or float(values.max()) - float(values.min()) < 1.0:
        return low
    return float(np.clip(filters.threshold_otsu(values.astype(np.float32), nbins=256), low, high))


def segment_tissue(slide, **params):
    """Find the tissue on a slide.

    A low-resolution view (about ``mpp`` µm/px) is read from the pyramid; its HSV
    saturation is median-blurred and thresholded (Otsu, clipped to
    ``threshold_range``); marker ink is excluded; the mask is closed, and small
    objects and small holes are removed.

    Parameters
    ----------
    slide : lnmkit.slides.Slide
        An open slide with known microns per pixel.
    mpp : float, default=8.0
        Resolution of the mask in µm/px (the nearest a pyramid level plus an
        integer box reduction gives).
    median_um : float, default=50.0
        Width of the median filter applied to the saturation, in µm.
    threshold : float, optional
        Fixed saturation threshold (0-255); by default Otsu's.
    threshold_range : tuple of float, default=(15, 45)
        Bounds on the Otsu threshold (guards all-glass and all-tissue slides).
    closing_um : float, default=40.0
        Radius of the morphological closing, in µm.
    min_object_um2 : float, default=20000.0
        Tissue pieces smaller than this (µm²) are dropped.
    max_hole_um2 : float, default=20000.0
        Holes smaller than this (µm²) are filled.
    exclude_pen : bool, default=True
        Exclude blue, green and black marker ink.
    pen_dilation_um : float, default=24.0
        Margin added around ink, in µm (stroke edges are paler than their centre).
    black_value : int, default=100
        Brightest-channel value at or below which an unsaturated pixel counts as
        black ink.

    Returns
    -------
    TissueMask

    Raises
    ------
    TypeError
        If an unknown parameter is given.
    lnmkit.exceptions.MissingMppError
        If the slide's microns per pixel are unknown.
    """
    p = check_tissue_params(params)
    if not hasattr(slide, "read_downsampled"):
        raise TypeError(f"segment_tissue: slide must be an open lnmkit Slide; got {type(slide).__name__}. "
                        "Use `with open_slide(path) as slide: segment_tissue(slide)`.")
    image, downsample = slide.read_downsampled(p["mpp"] / slide.mpp)
    mask_mpp = downsample * slide.mpp

    def pixels(microns):
        return microns / mask_mpp

    hsv = _hsv(image)
    size = max(1, int(round(pixels(p["median_um"]))) | 1)
    saturation = np.clip(np.rint(hsv[1]), 0, 255).astype(np.uint8)
    blurred = filters.rank.median(saturation, footprint=np.ones((size, size), dtype=bool))
    pen = np.zeros(blurred.shape, dtype=bool)
    if p["exclude_pen"]:
        pen = pen_mask(image, p["black_value"], hsv=hsv)
        radius = int(round(pixels(p["pen_dilation_um"])))
        if pen.any() and radius > 0:
            pen = ndimage.binary_dilation(pen, structure=morphology.disk(radius))
    if p["threshold"] is None:
        threshold = robust_threshold(blurred[~pen], p["threshold_range"])
    else:
        threshold = float(p["threshold"])
    mask = (blurred > threshold) & ~pen
    radius = int(round(pixels(p["closing_um"])))
    if radius > 0 and mask.any():
        padded = np.pad(mask, radius)
        mask = ndimage.binary_closing(padded, structure=morphology.disk(radius))[
            radius:-radius, radius:-radius]
        mask &= ~pen
    mask = _remove_small(mask, max(1.0, p["min_object_um2"] / mask_mpp ** 2))
    mask = _fill_small_holes(mask, p["max_hole_um2"] / mask_mpp ** 2)
    record = {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()}
    return TissueMask(mask, downsample, params=record, threshold=threshold, slide_id=slide.slide_id,
                      dimensions=slide.dimensions, mpp=slide.mpp, image=image)


class TissueMask:
    """Where the tissue is on a slide.

    Parameters
    ----------
    mask : ndarray of shape (h, w), dtype bool
        Tissue pixels; mask pixel ``(i, j)`` covers level-0 pixels from
        ``(j * downsample, i * downsample)``.
    downsample : float
        Level-0 pixels per mask pixel.
    params : dict
        Parameters of :func:`segment_tissue` that made it.
    threshold : float, optional
        Saturation threshold that was applied.
    slide_id : str, optional
    dimensions : tuple of int, optional
        Level-0 ``(width, height)`` of the slide.
    mpp : float, optional
        Level-0 microns per pixel of the slide.
    polygons : list, optional
        Polygons in level-0 pixels; traced from ``mask`` when not given.
    image : ndarray of shape (h, w, 3), optional
        Low-resolution RGB view the mask was computed on (for :meth:`plot`).

    Attributes
    ----------
    polygons : list of list of ndarray of shape (n, 2)
        Per tissue piece, its exterior ring then its holes, ``(x, y)`` level-0 pixels.
    """

    def __init__(self, mask, downsample, params, threshold=None, slide_id=None, dimensions=None,
                 mpp=None, polygons=None, image=None):
        self.mask = np.asarray(mask, dtype=bool)
        self.downsample = float(downsample)
        self.params = dict(params)
        self.threshold = threshold
        self.slide_id = slide_id
        self.dimensions = tuple(dimensions) if dimensions is not None else None
        self.mpp = mpp
        self.image = image
        self.polygons = polygons if polygons is not None else mask_to_polygons(self.mask, self.downsample)

    # ------------------------------------------------------------------ measures
    @property
    def tissue_fraction(self):
        """float: Fraction of the slide covered by tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    @property
    def area_mm2(self):
        """float: Tissue area in mm² (NaN when the slide's mpp is unknown)."""
        if self.mpp is None:
            return float("nan")
        return float(self.mask.sum()) * (self.downsample * self.mpp) ** 2 / 1e6

    def tile_fractions(self, coords, tile_size_level0):
        """Fraction of each square tile covered by tissue.

        Exact for the mask's pixel grid: the mask's integral image is interpolated
        bilinearly, which integrates a piecewise-constant mask exactly.

        Parameters
        ----------
        coords : array-like of shape (n, 2)
            Level-0 top-left ``(x, y)`` of each tile.
        tile_size_level0 : float
            Tile side in level-0 pixels.

        Returns
        -------
        ndarray of shape (n,), dtype float64
        """
        coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
        h, w = self.mask.shape
        integral = np.zeros((h + 1, w + 1), dtype=np.float64)
        integral[1:, 1:] = self.mask.cumsum(0).cumsum(1)

        def at(x, y):
            x = np.clip(x, 0, w)
            y = np.clip(y, 0, h)
            x0 = np.minimum(np.floor(x).astype(np.int64), w - 1) if w else x.astype(np.int64)
            y0 = np.minimum(np.floor(y).astype(np.int64), h - 1) if h else y.astype(np.int64)
            fx, fy = x - x0, y - y0
            x1, y1 = np.minimum(x0 + 1, w), np.minimum(y0 + 1, h)
            top = integral[y0, x0] * (1 - fx) + integral[y0, x1] * fx
            bottom = integral[y1, x0] * (1 - fx) + integral[y1, x1] * fx
            return top * (1 - fy) + bottom * fy

        x0, y0 = coords[:, 0] / self.downsample, coords[:, 1] / self.downsample
        side = tile_size_level0 / self.downsample
        inside = at(x0 + side, y0 + side) - at(x0, y0 + side) - at(x0 + side, y0) + at(x0, y0)
        return np.clip(inside / side ** 2, 0.0, 1.0)

    # ------------------------------------------------------------------- GeoJSON
    def to_geojson(self, path=None):
        """Save (or return) the mask as a QuPath-compatible GeoJSON FeatureCollection.

        Each tissue piece is a ``Polygon`` feature in level-0 pixel coordinates with
        ``"objectType": "annotation"`` and classification ``Tissue``; the
        collection's ``properties`` record the parameters, threshold and mask grid.

        Parameters
        ----------
        path : str or path-like, optional
            Destination (written atomically). When None, nothing is written.

        Returns
        -------
        dict
            The GeoJSON object.
        """
        collection = {
            "type": "FeatureCollection",
            "properties": {
                "generator": f"lnmkit {__version__}",
                "slide_id": self.slide_id,
                "dimensions": list(self.dimensions) if self.dimensions else None,
                "mpp": self.mpp,
                "downsample": self.downsample,
                "mask_shape": list(self.mask.shape),
                "threshold": self.threshold,
                "params": self.params,
            },
            "features": polygons_to_features(self.polygons),
        }
        if path is not None:
            atomic_write_text(path, json.dumps(collection))
        return collection

    @classmethod
    def from_geojson(cls, source, downsample=None, shape=None):
        """Load a tissue mask from GeoJSON (written by lnmkit, QuPath, or any tool).

        Parameters
        ----------
        source : str, path-like or dict
            File, or an already parsed GeoJSON object.
        downsample : float, optional
            Mask grid (level-0 pixels per mask pixel); read from the file's
            properties when written by lnmkit, 16 otherwise.
        shape : tuple of int, optional
            Mask ``(h, w)``; from the file's properties, else the polygons' extent.

        Returns
        -------
        TissueMask

        Raises
        ------
        ValueError
            If the file is not a GeoJSON FeatureCollection of polygons.
        """
        name = "GeoJSON object"
        if not isinstance(source, dict):
            name = str(source)
            try:
                source = json.loads(Path(source).read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise ValueError(f"{name}: not valid JSON ({error}).") from None
        if source.get("type") == "Feature":
            source = {"type": "FeatureCollection", "features": [source]}
        if source.get("type") != "FeatureCollection":
            raise ValueError(f"{name}: expected a GeoJSON FeatureCollection; got type "
                             f"{source.get('type')!r} instead.")
        meta = source.get("properties") or {}
        polygons = features_to_polygons(source.get("features", []), source=name)
        downsample = float(downsample or meta.get("downsample") or 16.0)
        if shape is None:
            shape = meta.get("mask_shape")
        if shape is None:
            rings = [ring for rings in polygons for ring in rings]
            extent = np.max([ring.max(axis=0) for ring in rings], axis=0) if rings else np.zeros(2)
            shape = (int(np.ceil(extent[1] / downsample)) + 1, int(np.ceil(extent[0] / downsample)) + 1)
        mask = polygons_to_mask(polygons, tuple(int(v) for v in shape), downsample)
        dims = meta.get("dimensions")
        return cls(mask, downsample, params=meta.get("params") or {}, threshold=meta.get("threshold"),
                   slide_id=meta.get("slide_id"), dimensions=tuple(dims) if dims else None,
                   mpp=meta.get("mpp"), polygons=polygons)

    # ------------------------------------------------------------------ display
    def plot(self, image=None, ax=None):
        """Draw the tissue outline over a low-resolution view of the slide.

        Parameters
        ----------
        image : ndarray of shape (h, w, 3), optional
            Background; defaults to the view the mask was computed on, or the mask.
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new figure is made when None.

        Returns
        -------
        matplotlib.figure.Figure
        """
        background = image if image is not None else self.image
        if background is None:
            background = np.where(self.mask[..., None], 200, 255).astype(np.uint8).repeat(3, axis=2)
        fig, ax = image_axes(background, ax)
        # The background may be at another resolution than the mask.
        to_px = background.shape[1] / (self.mask.shape[1] * self.downsample)
        for rings in self.polygons:
            for index, ring in enumerate(rings):
                ax.plot(ring[:, 0] * to_px - 0.5, ring[:, 1] * to_px - 0.5,
                        color="#00cc44" if index == 0 else "#ff8800", linewidth=1.2)
        ax.set_axis_off()
        area = f", {self.area_mm2:.3g} mm²" if self.mpp else ""
        ax.set_title(f"{self.slide_id or 'tissue'}: {len(self.polygons)} piece(s){area}", fontsize=9)
        return fig

    def save_qc(self, path, dpi=100):
        """Save the :meth:`plot` figure as a PNG (atomically).

        Parameters
        ----------
        path : str or path-like
            Destination ``.png``.
        dpi : int, default=100

        Returns
        -------
        pathlib.Path
        """
        import matplotlib.pyplot as plt

        fig = self.plot()
        try:
            with atomic_path(path, suffix=".png") as tmp:
                fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
        finally:
            plt.close(fig)  # saved for a file, not for display; slides are saved in loops
        return Path(path)

    def __repr__(self):
        area = f", {self.area_mm2:.2f} mm²" if self.mpp else ""
        return (f"<TissueMask {self.slide_id!r}: {len(self.polygons)} piece(s), "
                f"{100 * self.tissue_fraction:.1f}% of the slide{area}>")

    def _repr_html_(self):
        rows = [("slide", self.slide_id), ("pieces", len(self.polygons)),
                ("tissue fraction", f"{100 * self.tissue_fraction:.1f}%"),
                ("area (mm²)", f"{self.area_mm2:.2f}"), ("mask grid", f"{self.mask.shape[1]} x "
                 f"{self.mask.shape[0]} px, downsample {self.downsample:g}"),
                ("threshold", self.threshold)]
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                       f"<td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        return f"<table><caption>TissueMask</caption>{body}</table>"
