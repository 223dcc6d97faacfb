"""First-order intensity statistics and 3-D GLCM texture of one node, in numpy.

Discretisation (shared by entropy and GLCM): fixed bin width ``w`` as in
pyradiomics, ``bin = floor(x / w) - floor(min / w)``, for CT (HU) and PET (SUV);
MRI intensities have no absolute unit, so they get a fixed number of equal-width
bins between the node's minimum and maximum.

GLCM: symmetric co-occurrence of voxel pairs at distance 1 along the 13 unique
3-D directions, counting only pairs with both voxels inside the node, on an
isotropic grid; each feature is computed per direction and averaged over the
directions that have pairs (pyradiomics' default aggregation).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["first_order", "discretize", "glcm_features", "GLCM_OFFSETS"]

#: The 13 unique neighbour offsets (dz, dy, dx) of a 3-D grid at distance 1.
GLCM_OFFSETS = tuple(
    (dz, dy, dx)
    for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
    if (dz, dy, dx) > (0, 0, 0)
)


def discretize(values, bin_width=None, n_bins=32):
    """Return 0-based grey levels of intensities.

    Parameters
    ----------
    values : ndarray of float
    bin_width : float or None, default=None
        Fixed bin width; ``None`` uses ``n_bins`` equal-width bins over the range.
    n_bins : int, default=32

    Returns
    -------
    ndarray of int64
        Same shape as ``values``.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return values.astype(np.int64)
    if bin_width is not None:
        return (np.floor(values / bin_width) - np.floor(values.min() / bin_width)).astype(np.int64)
    lo, hi = values.min(), values.max()
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.int64)
    return np.minimum(((values - lo) / (hi - lo) * n_bins).astype(np.int64), n_bins - 1)


def first_order(values, *, bin_width=None, n_bins=32, pet=False):
    """Intensity statistics of the voxels of a node.

    Parameters
    ----------
    values : ndarray of float
        Intensities inside the node (HU for CT, SUV for PET).
    bin_width : float or None, default=None
        Discretisation for the entropy (see :func:`discretize`).
    n_bins : int, default=32
    pet : bool, default=False
        Fill ``suv_max`` and ``suv_mean`` (NaN otherwise).

    Returns
    -------
    dict of str to float
        ``intensity_mean, intensity_median, intensity_p10, intensity_p90,
        intensity_std, intensity_min, intensity_max, intensity_skewness,
        intensity_kurtosis`` (Pearson: 3 for a normal distribution),
        ``intensity_entropy`` (bits), ``suv_max``, ``suv_mean``.
    """
    v = np.asarray(values, dtype=float)
    out = dict.fromkeys(
        ["intensity_mean", "intensity_median", "intensity_p10", "intensity_p90", "intensity_std",
         "intensity_min", "intensity_max", "intensity_skewness", "intensity_kurtosis", "intensity_entropy",
         "suv_max", "suv_mean"],
        np.nan,
    )
    if v.size == 0:
        return out
    out.update(
        intensity_mean=float(v.mean()), intensity_median=float(np.median(v)),
        intensity_p10=float(np.percentile(v, 10)), intensity_p90=float(np.percentile(v, 90)),
        intensity_std=float(v.std()), intensity_min=float(v.min()), intensity_max=float(v.max()),
    )
    if v.size > 2 and v.std() > 0:
        out["intensity_skewness"] = float(stats.skew(v))
        out["intensity_kurtosis"] = float(stats.kurtosis(v, fisher=False))
    counts = np.bincount(discretize(v, bin_width, n_bins))
    p = counts[counts > 0] / v.size
    out["intensity_entropy"] = float(-(p * np.log2(p)).sum()) + 0.0  # no -0.0 for a single level
    if pet:
        out["suv_max"], out["suv_mean"] = out["intensity_max"], out["intensity_mean"]
    return out


def glcm_features(levels, inside):
    """GLCM contrast, homogeneity, energy and correlation averaged over 13 directions.

    Parameters
    ----------
    levels : ndarray of int, shape (z, y, x)
        Grey levels (only voxels inside the node are used).
    inside : ndarray of bool, shape (z, y, x)
        The node.

    Returns
    -------
    dict of str to float
        ``glcm_contrast`` (sum (i-j)^2 p), ``glcm_homogeneity`` (sum p / (1 + (i-j)^2)),
        ``glcm_energy`` (sum p^2), ``glcm_correlation`` (1 when a direction has a
        single grey level, as in pyradiomics); NaN when no pair of neighbouring node
        voxels exists.
    """
    names = ("glcm_contrast", "glcm_homogeneity", "glcm_energy", "glcm_correlation")
    if not inside.any():
        return dict.fromkeys(names, np.nan)
    n_levels = int(levels[inside].max()) + 1
    grey = np.arange(n_levels, dtype=float)
    ii, jj = np.meshgrid(grey, grey, indexing="ij")
    diff2 = (ii - jj) ** 2
    per_direction = []
    for offset in GLCM_OFFSETS:
        a, b = _shifted_pairs(offset, inside.shape)
        both = inside[a] & inside[b]
        if not both.any():
            continue
        la, lb = levels[a][both], levels[b][both]
        glcm = np.bincount(la * n_levels + lb, minlength=n_levels**2).reshape(n_levels, n_levels).astype(float)
        glcm += glcm.T  # symmetric: the pair (a, b) also counts as (b, a)
        p = glcm / glcm.sum()
        px = p.sum(axis=1)
        mu = float((grey * px).sum())
        var = float((((grey - mu) ** 2) * px).sum())
        corr = float(((ii - mu) * (jj - mu) * p).sum() / var) if var > 1e-12 else 1.0
        per_direction.append(((diff2 * p).sum(), (p / (1.0 + diff2)).sum(), (p**2).sum(), corr))
    if not per_direction:
        return dict.fromkeys(names, np.nan)
    return dict(zip(names, (float(x) for x in np.mean(per_direction, axis=0))))


def _shifted_pairs(offset, shape):
    """Slices selecting voxel a and its neighbour b = a + offset, both inside the array."""
    a, b = [], []
    for d, n in zip(offset, shape):
        if d >= 0:
            a.append(slice(0, n - d))
            b.append(slice(d, n))
        else:
            a.append(slice(-d, n))
            b.append(slice(0, n + d))
    return tuple(a), tuple(b)
