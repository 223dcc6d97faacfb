"""Shape of one segmented node in physical space: volume, axes, surface, sphericity.

Definitions (all in mm, whatever the voxel spacing):

* The node's surface is the marching-cubes iso-surface at level 0.5 of its binary
  mask, in physical millimetres: each vertex lies half-way between an inside and
  an outside voxel centre, an unbiased estimate of the edge of the continuous
  object the voxels sample (also on thick slices).
* ``long_axis_mm`` is the maximum 3-D Feret diameter: the largest distance between
  two vertices of that surface.
* ``axial_long_axis_mm`` and ``short_axis_mm`` are measured as a radiologist does on
  axial slices. On each axial slice the node's outline is the marching-squares
  contour at level 0.5; its in-plane long axis is the largest distance between two
  contour points and its in-plane short axis the extent of the outline
  perpendicular to that long axis. The node's axial long axis is the largest
  in-plane long axis over slices, and its short axis the largest in-plane short
  axis over slices. "Axial" is the patient's physical x-y plane; images acquired
  in another orientation are first resampled (nearest neighbour) to an axial grid.
"""

from __future__ import annotations

import numpy as np

__all__ = ["surface_mesh", "mesh_measures", "feret_diameter", "axial_axes", "axial_measurements"]


def surface_mesh(mask_zyx, spacing):
    """Marching-cubes surface of a binary node mask, in mm.

    Parameters
    ----------
    mask_zyx : ndarray of bool, shape (z, y, x)
    spacing : sequence of 3 float
        (x, y, z) spacing in mm.

    Returns
    -------
    verts : ndarray of shape (n, 3)
        Vertex positions (z, y, x order, mm, in the image's own axes: distances
        equal physical distances because the direction matrix is a rotation).
    faces : ndarray of shape (m, 3)
    """
    from scipy import ndimage
    from skimage.measure import marching_cubes

    sampling = tuple(float(s) for s in spacing[::-1])
    padded = np.pad(np.asarray(mask_zyx, dtype=bool), 2)
    # Signed distance (mm, negative inside): its zero level lies half-way between inside and
    # outside voxel centres, and between thick slices it tapers the caps instead of leaving
    # flat steps that inflate the surface and oblique diameters.
    phi = ndimage.distance_transform_edt(~padded, sampling=sampling) - ndimage.distance_transform_edt(
        padded, sampling=sampling
    )
    verts, faces, _, _ = marching_cubes(phi.astype(np.float32), level=0.0, spacing=sampling)
    return verts, faces


def mesh_measures(verts, faces):
    """Surface area, enclosed volume and sphericity of a closed triangle mesh.

    Parameters
    ----------
    verts : ndarray of shape (n, 3)
    faces : ndarray of shape (m, 3)

    Returns
    -------
    surface_mm2, mesh_volume_mm3, sphericity : float
        Sphericity is ``(36 pi V^2)^(1/3) / A`` with the mesh volume ``V`` and area
        ``A``: 1 for a sphere, smaller for elongated or irregular nodes.
    """
    from skimage.measure import mesh_surface_area

    area = float(mesh_surface_area(verts, faces))
    tri = verts[faces]
    volume = float(abs(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()) / 6.0)
    sphericity = float((36.0 * np.pi * volume**2) ** (1.0 / 3.0) / area) if area > 0 else np.nan
    return area, volume, sphericity


def _hull(points):
    """Convex-hull vertices of a point cloud (the Feret diameter depends only on them)."""
    if len(points) <= points.shape[1] + 1:
        return points
    from scipy.spatial import ConvexHull, QhullError

    try:
        return points[ConvexHull(points).vertices]
    except (QhullError, ValueError):
        return points  # flat or degenerate outline: every point is a candidate


def feret_diameter(points):
    """Largest distance between two points, and its unit direction.

    Parameters
    ----------
    points : ndarray of shape (n, d)

    Returns
    -------
    diameter : float
    direction : ndarray of shape (d,)
    """
    diameter, a, b = _feret_pair(points)
    direction = (b - a) / diameter if diameter > 0 else np.eye(len(a))[0]
    return diameter, direction


def _feret_pair(points):
    """The two points farthest apart (searched on the convex hull) and their distance."""
    from scipy.spatial.distance import pdist, squareform

    hull = _hull(np.asarray(points, dtype=float))
    if len(hull) < 2:
        return 0.0, hull[0], hull[0]
    dist = squareform(pdist(hull))
    i, j = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(dist[i, j]), hull[i], hull[j]


def axial_axes(mask_zyx, spacing):
    """In-plane long and short axes on axial slices (a radiologist's measurement).

    Parameters
    ----------
    mask_zyx : ndarray of bool, shape (z, y, x)
        The node on a grid whose slices (first axis) are physical axial planes.
    spacing : sequence of 3 float
        (x, y, z) spacing of that grid in mm.

    Returns
    -------
    axial_long_mm, short_mm : float
        Largest in-plane long axis and largest in-plane short axis over slices.
    """
    best = axial_measurements(mask_zyx, spacing)
    if not best:
        return 0.0, 0.0
    return max(m["long_mm"] for m in best), max(m["short_mm"] for m in best)


def axial_measurements(mask_zyx, spacing):
    """Long and short axis of the node on every axial slice, with their end points.

    Parameters
    ----------
    mask_zyx : ndarray of bool, shape (z, y, x)
        The node on a grid whose slices (first axis) are physical axial planes.
    spacing : sequence of 3 float
        (x, y, z) spacing of that grid in mm.

    Returns
    -------
    list of dict
        One dict per slice holding the node: ``slice`` (index), ``long_mm``,
        ``short_mm``, ``long_ends`` and ``short_ends`` (2 x 2 arrays of (row, col)
        pixel coordinates of the two segments, for drawing).
    """
    from skimage.measure import find_contours

    scale = np.array([spacing[1], spacing[0]], dtype=float)  # (row, col) = (y, x)
    out = []
    for k in np.flatnonzero(mask_zyx.any(axis=(1, 2))):
        padded = np.pad(mask_zyx[k].astype(np.float32), 1)
        # Contours of the padded slice: shift back by the one-pixel pad.
        points = (np.concatenate(find_contours(padded, 0.5), axis=0) - 1.0) * scale
        long_mm, a, b = _feret_pair(points)
        u = (b - a) / long_mm if long_mm > 0 else np.array([1.0, 0.0])
        perpendicular = np.array([-u[1], u[0]])
        along, across = points @ u, points @ perpendicular
        mid = 0.5 * (along[np.argmin(across)] + along[np.argmax(across)])
        long_ends = np.vstack([a, b])
        short_ends = np.array([mid * u + across.min() * perpendicular, mid * u + across.max() * perpendicular])
        out.append({"slice": int(k), "long_mm": long_mm, "short_mm": float(across.max() - across.min()),
                    "long_ends": long_ends / scale, "short_ends": short_ends / scale})
    return out

