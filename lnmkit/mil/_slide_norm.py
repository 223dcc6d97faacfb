"""Per-slide robust standardisation of tile features.

Stain, scanner and section thickness shift every tile of a slide together, by
more than a few focal tumour tiles shift a slide's feature distribution. Centring
each slide on its own median and scaling by its own robust spread removes those
slide-wide shifts and leaves what differs *within* the slide: the few tiles that
do not look like the rest. A median is not moved by the 1-10% of tiles that hold
focal morphology, so their signal survives the transform.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SLIDE_NORMALISATIONS", "slide_statistics", "standardise_slides"]

SLIDE_NORMALISATIONS = ("robust", None)

# Normal-consistency factors: MAD * 1.4826 and mean absolute deviation * 1.2533
# estimate the standard deviation of a normal distribution.
_MAD_TO_SD = 1.4826
_MEAN_AD_TO_SD = 1.2533
# Standardised values are clipped: a feature that is nearly constant on a slide
# would otherwise turn its rare exceptions into values of thousands.
_CLIP = 8.0
_EPS = 1e-6


def slide_statistics(features, slide_index):
    """Median and robust scale of every feature on every slide of one bag.

    The scale is 1.4826 x the median absolute deviation; where that is zero (a
    feature constant on more than half of the slide's tiles) 1.2533 x the mean
    absolute deviation; where that is zero too (constant on the slide), 1.

    Parameters
    ----------
    features : ndarray of shape (n_tiles, n_features)
    slide_index : ndarray of shape (n_tiles,), int
        Slide of each tile, 0 .. n_slides - 1.

    Returns
    -------
    centre, scale : ndarray of shape (n_slides, n_features), float32
    """
    features = np.asarray(features, dtype=np.float32)
    slide_index = np.asarray(slide_index, dtype=np.int64)
    n_slides = int(slide_index.max()) + 1 if slide_index.size else 0
    centre = np.zeros((n_slides, features.shape[1]), dtype=np.float32)
    scale = np.ones((n_slides, features.shape[1]), dtype=np.float32)
    for s in range(n_slides):
        x = features[slide_index == s]
        if x.shape[0] == 0:
            continue
        med = np.median(x, axis=0)
        dev = np.abs(x - med)
        spread = _MAD_TO_SD * np.median(dev, axis=0)
        fallback = _MEAN_AD_TO_SD * dev.mean(axis=0)
        spread = np.where(spread > _EPS, spread, np.where(fallback > _EPS, fallback, 1.0))
        centre[s], scale[s] = med, spread
    return centre, scale


def standardise_slides(features, slide_index):
    """Standardise each slide's tiles against that slide's own median and robust scale.

    Parameters
    ----------
    features : ndarray of shape (n_tiles, n_features)
    slide_index : ndarray of shape (n_tiles,), int

    Returns
    -------
    ndarray of shape (n_tiles, n_features), float32
        ``(x - median_slide) / scale_slide``, clipped to [-8, 8].
    """
    centre, scale = slide_statistics(features, slide_index)
    slide_index = np.asarray(slide_index, dtype=np.int64)
    out = np.asarray(features, dtype=np.float32) - centre[slide_index]
    out /= scale[slide_index]
    np.clip(out, -_CLIP, _CLIP, out=out)
    return out
