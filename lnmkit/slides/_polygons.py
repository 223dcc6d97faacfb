"""Binary masks <-> polygons in level-0 pixels, and QuPath-compatible GeoJSON."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import draw, measure

__all__ = ["mask_to_polygons", "polygons_to_mask", "polygons_to_features", "features_to_polygons",
           "geometry_polygons"]

_TISSUE_CLASS = {"name": "Tissue", "color": [0, 153, 51]}


def _signed_area(ring):
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def _ring(contour, offset, downsample, tolerance, clockwise):
    """Contour (row, col) in a cropped mask -> closed (x, y) ring in level-0 pixels."""
    contour = measure.approximate_polygon(contour, tolerance=tolerance)
    if len(contour) < 4:
        return None
    rows = contour[:, 0] + offset[0]
    cols = contour[:, 1] + offset[1]
    # Mask pixel j covers level-0 [j * ds, (j + 1) * ds): its centre is (j + 0.5) * ds.
    ring = np.column_stack([(cols + 0.5) * downsample, (rows + 0.5) * downsample])
    if not np.array_equal(ring[0], ring[-1]):
        ring = np.vstack([ring, ring[:1]])
    # GeoJSON (RFC 7946): exterior rings counter-clockwise, holes clockwise, with y
    # pointing down in image coordinates the signs flip.
    if (_signed_area(ring) < 0) != clockwise:
        ring = ring[::-1]
    return ring


def _outer_contour(region):
    contours = measure.find_contours(np.pad(region, 1).astype(np.float32), 0.5,
                                     fully_connected="high")
    if not contours:
        return None
    return max(contours, key=len) - 1.0


def mask_to_polygons(mask, downsample, tolerance=0.75):
    """Trace the connected regions of a mask as polygons with holes.

    Parameters
    ----------
    mask : ndarray of shape (h, w), dtype bool
        Mask whose pixel ``(i, j)`` covers level-0 pixels ``[j * downsample,
        (j + 1) * downsample)`` x ``[i * downsample, (i + 1) * downsample)``.
    downsample : float
        Level-0 pixels per mask pixel.
    tolerance : float, default=0.75
        Douglas-Peucker simplification tolerance in mask pixels.

    Returns
    -------
    list of list of ndarray of shape (n, 2)
        One entry per region: its closed exterior ring then its hole rings, each
        as float ``(x, y)`` level-0 pixel coordinates.
    """
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    polygons = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        region = labels[box] == index
        offset = (box[0].start, box[1].start)
        filled = ndimage.binary_fill_holes(region)
        outer = _outer_contour(filled)
        if outer is None:
            continue
        exterior = _ring(outer, offset, downsample, tolerance, clockwise=False)
        if exterior is None:
            continue
        rings = [exterior]
        holes, _ = ndimage.label(filled & ~region)
        for hole_box_index, hole_box in enumerate(ndimage.find_objects(holes), start=1):
            hole = holes[hole_box] == hole_box_index
            contour = _outer_contour(hole)
            if contour is None:
                continue
            ring = _ring(contour, (offset[0] + hole_box[0].start, offset[1] + hole_box[1].start),
                         downsample, tolerance, clockwise=True)
            if ring is not None:
                rings.append(ring)
        polygons.append(rings)
    return polygons


def polygons_to_mask(polygons, shape, downsample, origin=(0.0, 0.0)):
    """Rasterise polygons (level-0 pixels) onto a mask grid.

    Each polygon is its exterior minus its holes; the mask is the union of the
    polygons, so a polygon lying inside another one's hole is kept whatever the
    order of the list.

    Parameters
    ----------
    polygons : list of list of ndarray of shape (n, 2)
        Exterior ring then hole rings per polygon, ``(x, y)`` level-0 pixels.
    shape : tuple of int
        Mask ``(h, w)``.
    downsample : float
        Level-0 pixels per mask pixel.
    origin : tuple of float, default=(0.0, 0.0)
        Level-0 ``(x, y)`` of the mask's top-left corner.

    Returns
    -------
    ndarray of shape (h, w), dtype bool
        True where a mask pixel's centre lies inside a polygon and outside its holes.
    """
    mask = np.zeros(shape, dtype=bool)
    ox, oy = float(origin[0]), float(origin[1])

    def cells(ring):
        ring = np.asarray(ring, dtype=np.float64)
        return draw.polygon((ring[:, 1] - oy) / downsample - 0.5, (ring[:, 0] - ox) / downsample - 0.5,
                            shape=shape)

    for rings in polygons:
        if not len(rings):
            continue
        rows, cols = cells(rings[0])
        if rows.size == 0:
            continue
        if len(rings) == 1:
            mask[rows, cols] = True
            continue
        r0, c0 = rows.min(), cols.min()
        local = np.zeros((rows.max() - r0 + 1, cols.max() - c0 + 1), dtype=bool)
        local[rows - r0, cols - c0] = True
        for hole in rings[1:]:
            hr, hc = cells(hole)
            inside = (hr >= r0) & (hr < r0 + local.shape[0]) & (hc >= c0) & (hc < c0 + local.shape[1])
            local[hr[inside] - r0, hc[inside] - c0] = False
        mask[r0:r0 + local.shape[0], c0:c0 + local.shape[1]] |= local
    return mask


def polygons_to_features(polygons):
    """GeoJSON features (QuPath annotations classified ``Tissue``) for polygons.

    Parameters
    ----------
    polygons : list of list of ndarray of shape (n, 2)

    Returns
    -------
    list of dict
    """
    features = []
    for rings in polygons:
        coordinates = [np.round(np.asarray(ring, dtype=np.float64), 2).tolist() for ring in rings]
        features.append({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": coordinates},
            "properties": {"objectType": "annotation", "classification": dict(_TISSUE_CLASS),
                           "isLocked": False},
        })
    return features


def _geojson_ring(ring, where):
    """A validated ``(n, 2)`` float ring from GeoJSON positions."""
    if not isinstance(ring, (list, tuple)) or len(ring) < 4:
        got = len(ring) if isinstance(ring, (list, tuple)) else type(ring).__name__
        raise ValueError(f"{where}: a ring needs at least 4 positions (a closed triangle); got {got}.")
    try:
        arr = np.asarray([p[:2] for p in ring], dtype=np.float64)
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"{where}: ring positions must be [x, y] numbers; got e.g. {ring[0]!r}.") from None
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{where}: ring positions must be [x, y] numbers; got e.g. {ring[0]!r}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: ring positions must be finite numbers.")
    return arr


def geometry_polygons(geometry, where="geometry"):
    """Polygons of one GeoJSON Polygon or MultiPolygon geometry, validated.

    Parameters
    ----------
    geometry : dict
        A GeoJSON geometry object.
    where : str, default="geometry"
        Prefix of error messages (file and feature).

    Returns
    -------
    list of list of ndarray of shape (n, 2)
        One entry per polygon: exterior ring then holes.

    Raises
    ------
    ValueError
        If the geometry is not a Polygon or MultiPolygon or its coordinates are
        malformed (rings of fewer than 4 positions, non-numeric positions).
    """
    if not isinstance(geometry, dict):
        raise ValueError(f"{where}: geometry must be a GeoJSON object; got {type(geometry).__name__}.")
    kind = geometry.get("type")
    coordinates = geometry.get("coordinates")
    if kind not in ("Polygon", "MultiPolygon"):
        raise ValueError(f"{where}: geometry {kind!r}; expected Polygon or MultiPolygon.")
    if not isinstance(coordinates, (list, tuple)) or not coordinates:
        raise ValueError(f"{where}: {kind} has no coordinates.")
    parts = [coordinates] if kind == "Polygon" else coordinates
    polygons = []
    for p, part in enumerate(parts):
        at = where if kind == "Polygon" else f"{where}, polygon {p}"
        if not isinstance(part, (list, tuple)) or not part:
            raise ValueError(f"{at}: a polygon is a list of rings (exterior first); got {part!r}.")
        polygons.append([_geojson_ring(ring, f"{at}, ring {r}") for r, ring in enumerate(part)])
    return polygons


def features_to_polygons(features, source="GeoJSON"):
    """Polygons from GeoJSON features (Polygon and MultiPolygon geometries).

    Parameters
    ----------
    features : list of dict
        GeoJSON features; other geometry types are refused.
    source : str, default="GeoJSON"
        Name used in error messages (the file).

    Returns
    -------
    list of list of ndarray of shape (n, 2)

    Raises
    ------
    ValueError
        If a feature's geometry is not a Polygon or MultiPolygon, or is malformed;
        the message names the file and the feature's index.
    """
    polygons = []
    for number, feature in enumerate(features):
        geometry = (feature.get("geometry") if isinstance(feature, dict) else None) or {}
        kind = geometry.get("type")
        if kind not in ("Polygon", "MultiPolygon"):
            raise ValueError(f"{source}: feature {number} has geometry {kind!r}; tissue masks "
                             f"hold Polygon or MultiPolygon geometries only.")
        polygons.extend(geometry_polygons(geometry, f"{source}: feature {number}"))
    return polygons
