"""Region annotations of a slide (QuPath / GeoJSON polygons or a mask image) and tile coverage.

An annotation marks level-0 regions of one slide, e.g. the tumour outlined by a
pathologist in QuPath. :meth:`SlideAnnotation.tile_labels` gives the fraction of
each tile inside the annotated region, which is what attention localisation is
measured against.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lnmkit.exceptions import AnnotationError, AnnotationWarning
from lnmkit.slides._polygons import geometry_polygons, polygons_to_mask

__all__ = ["SlideAnnotation", "read_annotation", "read_annotations", "ANNOTATION_SUFFIXES"]

#: File suffixes read as GeoJSON and as mask images.
GEOJSON_SUFFIXES = (".geojson", ".json")
MASK_SUFFIXES = (".png", ".tif", ".tiff")
ANNOTATION_SUFFIXES = GEOJSON_SUFFIXES + MASK_SUFFIXES

_NO_AREA = ("Point", "MultiPoint", "LineString", "MultiLineString")
# Rasterisation grid for polygons: cells per tile side (coverage resolution 1/256 of a tile).
_CELLS_PER_TILE = 16


def _coverage(mask, downsample, origin, coords, tile_size_level0):
    """Fraction of each square tile inside a boolean mask grid (exact for the grid).

    The summed-area table of a piecewise-constant image is bilinear inside each
    cell, so interpolating it gives the exact covered area of any rectangle.
    """
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    side = float(tile_size_level0) / downsample
    if not side > 0:
        raise ValueError(f"tile_labels: tile_size_level0 must be > 0; got {tile_size_level0!r}.")
    h, w = mask.shape
    if h == 0 or w == 0 or not mask.any():
        return np.zeros(len(coords))
    integral = np.zeros((h + 1, w + 1), dtype=np.float64)
    integral[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0, dtype=np.float64), axis=1)

    def area(y, x):
        y = np.clip(y, 0, h)
        x = np.clip(x, 0, w)
        y0 = np.minimum(np.floor(y).astype(np.int64), h - 1)
        x0 = np.minimum(np.floor(x).astype(np.int64), w - 1)
        fy, fx = y - y0, x - x0
        s = integral
        return ((1 - fy) * (1 - fx) * s[y0, x0] + (1 - fy) * fx * s[y0, x0 + 1]
                + fy * (1 - fx) * s[y0 + 1, x0] + fy * fx * s[y0 + 1, x0 + 1])

    x0 = (coords[:, 0] - origin[0]) / downsample
    y0 = (coords[:, 1] - origin[1]) / downsample
    total = area(y0 + side, x0 + side) - area(y0, x0 + side) - area(y0 + side, x0) + area(y0, x0)
    return np.clip(total / side**2, 0.0, 1.0)


def _class_name(properties):
    """QuPath classification of a feature: ``properties.classification.name`` (or a plain string)."""
    if not isinstance(properties, dict):
        return None
    cls = properties.get("classification")
    if isinstance(cls, dict):
        cls = cls.get("name")
    return str(cls) if cls is not None else None


@dataclass(eq=False)
class SlideAnnotation:
    """Annotated regions of one slide, as level-0 polygons or as a mask image.

    Build one with :meth:`from_geojson`, :meth:`from_mask` or
    :func:`read_annotation`.

    Attributes
    ----------
    polygons : list of list of ndarray of shape (n, 2), or None
        Exterior ring then hole rings per polygon, level-0 ``(x, y)`` pixels.
    mask : ndarray of shape (h, w), dtype bool, or None
        Annotated pixels on the level-0 grid downsampled by ``downsample``.
    downsample : float
        Level-0 pixels per mask pixel (masks only).
    slide_id : str
        The slide, when known.
    source : str
        Where the annotation was read from (file path or object description).
    classes : tuple of str
        Classifications of the features kept (GeoJSON only).
    classes_seen : tuple of str
        Classifications of every feature in the file, kept or not (GeoJSON only).
    """

    polygons: list | None = None
    mask: np.ndarray | None = None
    downsample: float = 1.0
    slide_id: str = ""
    source: str = ""
    classes: tuple = ()
    classes_seen: tuple = ()
    _grids: dict = field(default_factory=dict, init=False, repr=False)

    # ------------------------------------------------------------ construction
    @classmethod
    def from_geojson(cls, source, *, classes=None, slide_id=""):
        """Read polygons from GeoJSON: a QuPath export, a FeatureCollection or a list of features.

        Polygon and MultiPolygon geometries are kept (holes respected);
        GeometryCollections are searched for them. Points and lines have no area
        and are left out with an :class:`~lnmkit.exceptions.AnnotationWarning`.

        Parameters
        ----------
        source : str, path-like, dict or list
            A GeoJSON file, or the parsed object: a FeatureCollection, a Feature,
            a list of Features (QuPath's "Export objects as GeoJSON") or a bare
            Polygon/MultiPolygon geometry. Coordinates are level-0 pixels.
        classes : str or iterable of str, optional
            Keep only features whose classification (QuPath
            ``properties.classification.name``) is one of these; default: every
            feature with an area.
        slide_id : str, default=""

        Returns
        -------
        SlideAnnotation

        Raises
        ------
        lnmkit.exceptions.AnnotationError
            If the file is missing or not JSON, or a feature is malformed; the
            message names the file and the feature's index.
        """
        name = "GeoJSON object"
        if isinstance(source, (str, Path)):
            name = str(source)
            try:
                text = Path(source).read_text(encoding="utf-8-sig")
            except FileNotFoundError:
                raise AnnotationError(name, "file not found") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise AnnotationError(name, f"cannot be read as UTF-8 text ({exc})") from None
            try:
                source = json.loads(text)
            except json.JSONDecodeError as exc:
                raise AnnotationError(name, f"not valid JSON: line {exc.lineno}, column {exc.colno}: "
                                            f"{exc.msg}") from None
        wanted = None if classes is None else ({classes} if isinstance(classes, str) else set(classes))
        features = _feature_list(source, name)
        polygons, found, skipped, seen = [], [], [], []
        for number, feature in enumerate(features):
            if not isinstance(feature, dict):
                raise AnnotationError(name, f"expected a GeoJSON Feature object; got {type(feature).__name__}",
                                      number)
            if feature.get("type") in ("Polygon", "MultiPolygon", "GeometryCollection"):
                geometry, properties = feature, {}
            else:
                if feature.get("type") not in ("Feature", None):
                    raise AnnotationError(name, f"type {feature.get('type')!r}; expected 'Feature'", number)
                geometry, properties = feature.get("geometry"), feature.get("properties") or {}
            if geometry is None:
                raise AnnotationError(name, "has no geometry", number)
            label = _class_name(properties)
            if label is not None:
                seen.append(label)
            if wanted is not None and label not in wanted:
                continue
            parts = _area_geometries(geometry, name, number, skipped)
            for part in parts:
                try:
                    polygons.extend(geometry_polygons(part, "geometry"))
                except ValueError as exc:
                    raise AnnotationError(name, str(exc)[len("geometry"):].lstrip(":, "), number) from None
            if parts and label is not None:
                found.append(label)
        if skipped:
            warnings.warn(AnnotationWarning(
                f"{name}: left out {len(skipped)} feature(s) without an area (Point or line geometries): "
                f"feature(s) {', '.join(map(str, skipped[:10]))}{' ...' if len(skipped) > 10 else ''}"),
                stacklevel=2)
        return cls(polygons=polygons, slide_id=str(slide_id), source=name,
                   classes=tuple(dict.fromkeys(found)), classes_seen=tuple(dict.fromkeys(seen)))

    @classmethod
    def from_mask(cls, mask, downsample, *, slide_id=""):
        """Annotation from a mask image: non-zero pixels are annotated.

        Parameters
        ----------
        mask : str, path-like or array-like of shape (h, w)
            A PNG or TIFF file, or the array; pixel ``(i, j)`` covers level-0
            ``[j * downsample, (j + 1) * downsample)`` x ``[i * downsample, (i + 1) * downsample)``.
        downsample : float
            Level-0 pixels per mask pixel (e.g. 16 for a mask of a 40x slide at 2.5x).
        slide_id : str, default=""

        Returns
        -------
        SlideAnnotation

        Raises
        ------
        lnmkit.exceptions.AnnotationError
            If the file cannot be read as an image or ``downsample`` is not positive.
        """
        name = "mask array"
        if isinstance(mask, (str, Path)):
            name = str(mask)
            try:
                with Image.open(mask) as img:
                    img.load()
                    arr = np.asarray(img.convert("L") if img.mode not in ("1", "L", "I", "I;16", "F") else img)
            except FileNotFoundError:
                raise AnnotationError(name, "file not found") from None
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                raise AnnotationError(name, f"cannot be read as a mask image ({exc})") from None
        else:
            arr = np.asarray(mask)
        if arr.ndim == 3:
            arr = arr.max(axis=2)
        if arr.ndim != 2:
            raise AnnotationError(name, f"a mask must be a 2-D image; got shape {arr.shape}")
        try:
            ds = float(downsample)
        except (TypeError, ValueError):
            ds = float("nan")
        if not (np.isfinite(ds) and ds > 0):
            raise AnnotationError(name, f"the mask's downsample (level-0 pixels per mask pixel) must be > 0; "
                                        f"got {downsample!r}")
        return cls(mask=arr != 0, downsample=ds, slide_id=str(slide_id), source=name)

    # ------------------------------------------------------------ use
    @property
    def kind(self):
        """str: ``"polygons"`` or ``"mask"``."""
        return "mask" if self.mask is not None else "polygons"

    @property
    def n_regions(self):
        """int: Number of polygons (GeoJSON) or connected regions (mask)."""
        if self.mask is not None:
            from scipy import ndimage

            return int(ndimage.label(self.mask)[1])
        return len(self.polygons or [])

    def tile_labels(self, coords, tile_size_level0):
        """Fraction of each square tile's area inside the annotated region.

        Parameters
        ----------
        coords : array-like of shape (n_tiles, 2)
            Level-0 ``(x, y)`` of each tile's top-left corner.
        tile_size_level0 : float
            Tile side in level-0 pixels.

        Returns
        -------
        ndarray of shape (n_tiles,), dtype float64
            Values in [0, 1]. Mask annotations are exact on the mask grid; polygons
            are rasterised on a grid of 16 x 16 cells per tile (cell centres inside
            the polygon count).
        """
        if self.mask is not None:
            return _coverage(self.mask, self.downsample, (0.0, 0.0), coords, tile_size_level0)
        tile = float(tile_size_level0)
        if not tile > 0:
            raise ValueError(f"tile_labels: tile_size_level0 must be > 0; got {tile_size_level0!r}.")
        coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
        if not self.polygons:
            return np.zeros(len(coords))
        ds = tile / _CELLS_PER_TILE
        if ds not in self._grids:
            rings = np.concatenate([r for poly in self.polygons for r in poly[:1]])
            lo = np.floor(rings.min(axis=0) / ds) * ds
            hi = rings.max(axis=0)
            shape = (int(np.ceil((hi[1] - lo[1]) / ds)) + 1, int(np.ceil((hi[0] - lo[0]) / ds)) + 1)
            self._grids[ds] = (polygons_to_mask(self.polygons, shape, ds, origin=lo), lo)
        grid, origin = self._grids[ds]
        return _coverage(grid, ds, origin, coords, tile)

    def __repr__(self):
        what = (f"{self.n_regions} polygon(s)" if self.mask is None
                else f"mask {self.mask.shape[1]}x{self.mask.shape[0]} (downsample {self.downsample:g}, "
                     f"{self.mask.mean():.1%} annotated)")
        cls = f", classes {list(self.classes)}" if self.classes else ""
        return f"<SlideAnnotation {self.slide_id or '?'}: {what}{cls}, from {self.source}>"


def _feature_list(obj, name):
    if isinstance(obj, list):
        return obj
    if not isinstance(obj, dict):
        raise AnnotationError(name, f"expected a GeoJSON FeatureCollection, Feature or list of features; got "
                                    f"{type(obj).__name__}")
    kind = obj.get("type")
    if kind == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list):
            raise AnnotationError(name, "FeatureCollection without a 'features' list")
        return features
    if kind in ("Feature", "Polygon", "MultiPolygon", "GeometryCollection"):
        return [obj]
    raise AnnotationError(name, f"GeoJSON type {kind!r}; expected a FeatureCollection, a Feature or a list "
                                "of features (QuPath: File > Export objects as GeoJSON)")


def _area_geometries(geometry, name, number, skipped):
    """Polygon/MultiPolygon geometries of a feature (GeometryCollections flattened)."""
    if not isinstance(geometry, dict):
        raise AnnotationError(name, f"geometry must be a GeoJSON object; got {type(geometry).__name__}", number)
    kind = geometry.get("type")
    if kind in ("Polygon", "MultiPolygon"):
        return [geometry]
    if kind == "GeometryCollection":
        out = []
        for member in geometry.get("geometries") or []:
            if isinstance(member, dict) and member.get("type") in _NO_AREA:
                continue
            out.extend(_area_geometries(member, name, number, []))
        if not out and number not in skipped:
            skipped.append(number)
        return out
    if kind in _NO_AREA:
        skipped.append(number)
        return []
    raise AnnotationError(name, f"unknown geometry type {kind!r}; expected Polygon or MultiPolygon", number)


def read_annotation(path, *, classes=None, mask_downsample=None, slide_id=None):
    """Read one annotation file: GeoJSON (``.geojson``, ``.json``) or a mask image (``.png``, ``.tif``).

    Parameters
    ----------
    path : str or path-like
    classes : str or iterable of str, optional
        GeoJSON: keep only features of these classifications.
    mask_downsample : float, optional
        Mask images: level-0 pixels per mask pixel (required for masks).
    slide_id : str, optional
        Defaults to the file name without its suffix.

    Returns
    -------
    SlideAnnotation

    Raises
    ------
    lnmkit.exceptions.AnnotationError
        If the file is unreadable or malformed, has an unknown suffix, or is a
        mask without ``mask_downsample``.
    """
    path = Path(path)
    sid = slide_id if slide_id is not None else path.name[: -len(path.suffix)] if path.suffix else path.name
    suffix = path.suffix.lower()
    if suffix in GEOJSON_SUFFIXES:
        return SlideAnnotation.from_geojson(path, classes=classes, slide_id=sid)
    if suffix in MASK_SUFFIXES:
        if mask_downsample is None:
            raise AnnotationError(path, "a mask image needs its downsample (level-0 pixels per mask pixel); "
                                        "pass mask_downsample= (lnmkit mil --mask-downsample)")
        return SlideAnnotation.from_mask(path, mask_downsample, slide_id=sid)
    raise AnnotationError(path, f"unknown annotation file type {path.suffix!r}; use one of "
                                f"{', '.join(ANNOTATION_SUFFIXES)}")


def read_annotations(source, *, classes=None, mask_downsample=None):
    """Annotations of many slides, keyed by slide id.

    Parameters
    ----------
    source : str, path-like or mapping
        A folder holding one file per slide named ``<slide_id>.geojson`` (or
        ``.json``, or a mask ``<slide_id>.png`` / ``.tif``); or a mapping
        ``slide_id -> SlideAnnotation | file path | GeoJSON object``.
    classes : str or iterable of str, optional
        GeoJSON: keep only features of these classifications (QuPath class
        names such as ``"Tumor"``); a warning lists the classes found when none
        of the files holds one of them.
    mask_downsample : float, optional
        Level-0 pixels per mask pixel of mask images.

    Returns
    -------
    dict of str to SlideAnnotation

    Raises
    ------
    lnmkit.exceptions.AnnotationError
        For the first unreadable or malformed file (file and feature named), a
        folder that does not exist or holds no annotation file, or two files for
        one slide.
    """
    out = {}
    if isinstance(source, Mapping):
        for sid, item in source.items():
            sid = str(sid)
            if isinstance(item, SlideAnnotation):
                out[sid] = item
            elif isinstance(item, (str, Path)):
                out[sid] = read_annotation(item, classes=classes, mask_downsample=mask_downsample, slide_id=sid)
            elif isinstance(item, (dict, list)):
                out[sid] = SlideAnnotation.from_geojson(item, classes=classes, slide_id=sid)
            else:
                raise AnnotationError(f"annotation of slide {sid!r}",
                                      f"expected a SlideAnnotation, a file path or a GeoJSON object; got "
                                      f"{type(item).__name__}")
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise AnnotationError(folder, "annotation folder not found" if not folder.exists()
                                  else "not a folder; give the folder holding <slide_id>.geojson files")
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in ANNOTATION_SUFFIXES
                       and not p.name.startswith("."))
        if not files:
            raise AnnotationError(folder, f"no annotation file ({', '.join(ANNOTATION_SUFFIXES)}) in this folder")
        for path in files:
            sid = path.name[: -len(path.suffix)]
            if sid in out:
                raise AnnotationError(path, f"a second annotation file for slide {sid!r} "
                                            f"(also {out[sid].source}); keep one")
            out[sid] = read_annotation(path, classes=classes, mask_downsample=mask_downsample, slide_id=sid)
    polygon_kind = [a for a in out.values() if a.kind == "polygons"]
    if classes is not None and polygon_kind and not any(a.classes for a in polygon_kind):
        wanted = sorted({classes} if isinstance(classes, str) else set(classes))
        seen = sorted({c for a in polygon_kind for c in a.classes_seen})
        warnings.warn(AnnotationWarning(
            f"read_annotations: no feature is classified as one of {wanted}, so every GeoJSON annotation "
            f"is empty; the files hold the classes {seen or '(none: unclassified features)'}. "
            "Check the class names (QuPath properties.classification.name)."), stacklevel=2)
    return out
