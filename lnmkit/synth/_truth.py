"""Planted ground truth of synthetic cohorts: the generating models and the tumour masks.

The coefficients below are the truth that ``make_cohort`` plants; they are also
written to ``truth/truth.json`` of every cohort so that an analysis can be checked
against them without importing this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["PlantedMask", "load_planted_mask", "load_confounder_mask", "load_truth", "PN_MODEL", "OTC_MODEL", "OS_MODEL",
           "RECURRENCE_MODEL", "CENSORING", "MASK_DOWNSAMPLE"]

#: Level-0 pixels per planted-mask pixel.
MASK_DOWNSAMPLE = 16

#: Logistic model of pN+ (log-odds). Variables are the complete, true values
#: (before missing values are punched into clinical.csv).
PN_MODEL = {
    "intercept": -0.7,
    "coefficients": {
        "ct_stage_num": 0.7,        # cT1..cT4 coded 1..4, minus 2.5
        "lvi": 1.1,                 # lymphovascular invasion 0/1
        "grade_g3": 0.5,            # G3/G4 (poorly differentiated) 0/1
        "log_cea": 0.3,             # natural log of CEA (ng/ml), minus log(3)
        "morph_score": 1.2,         # latent slide morphology score, standard normal
        "max_short_axis_mm": 0.35,  # largest node short axis on imaging, minus 8 mm
        "age_decades": 0.0,         # (age - 65) / 10, a null variable
        "sex_male": 0.0,            # a null variable
    },
    "centering": {"ct_stage_num": 2.5, "log_cea": float(np.log(3.0)), "max_short_axis_mm": 8.0,
                  "age_decades": 6.5},
}

#: Logistic model of occult tumour cells among pN0 patients.
OTC_MODEL = {
    "intercept": -1.3,
    "coefficients": {"morph_score": 0.9, "lvi": 0.6},
}

#: Proportional-hazards model of death (overall survival), Weibull baseline
#: h0(t) = scale * shape * t ** (shape - 1), t in months.
OS_MODEL = {
    "baseline": {"distribution": "weibull", "shape": 1.2, "scale": 0.0045},
    "coefficients": {
        "pn_positive": 0.7,          # pN+ 0/1
        "log1p_positive_nodes": 0.3,
        "ct_stage_num": 0.25,        # centred as in PN_MODEL
        "age_decades": 0.3,          # (age - 65) / 10
        "morph_score": 0.35,
        "neoadjuvant": -0.2,
    },
}

#: Proportional-hazards model of recurrence; RFS time = min(recurrence, death).
RECURRENCE_MODEL = {
    "baseline": {"distribution": "weibull", "shape": 1.1, "scale": 0.006},
    "coefficients": {
        "pn_positive": 0.9,
        "log1p_positive_nodes": 0.35,
        "ct_stage_num": 0.3,
        "lvi": 0.3,
        "morph_score": 0.45,
        "otc": 0.5,
    },
}

#: Censoring: administrative (accrual spread uniformly over the interval, in months
#: of potential follow-up) combined with exponential loss to follow-up.
CENSORING = {"administrative_months": [24.0, 120.0], "dropout_rate_per_month": 1.0 / 400.0}


@dataclass(eq=False)
class PlantedMask:
    """Where a synthetic slide holds the planted tumour morphology.

    Attributes
    ----------
    mask : ndarray of shape (h, w), dtype bool
        True where tumour was drawn, on the level-0 grid downsampled by ``downsample``.
    downsample : float
        Level-0 pixels per mask pixel.
    slide_id : str
        The slide.
    """

    mask: np.ndarray
    downsample: float
    slide_id: str = ""
    _integral: np.ndarray = field(default=None, init=False, repr=False)

    @property
    def fraction(self):
        """float: Fraction of mask pixels that are tumour."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    def tile_labels(self, coords, tile_size_level0):
        """Fraction of each tile's area inside the mask.

        Parameters
        ----------
        coords : array-like of shape (n_tiles, 2)
            Level-0 (x, y) of each tile's top-left corner.
        tile_size_level0 : float
            Tile side in level-0 pixels.

        Returns
        -------
        ndarray of shape (n_tiles,), dtype float64
            Values in [0, 1]; area outside the mask grid counts as not tumour.
        """
        coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
        if self._integral is None:
            integral = np.zeros((self.mask.shape[0] + 1, self.mask.shape[1] + 1), dtype=np.float64)
            integral[1:, 1:] = np.cumsum(np.cumsum(self.mask, axis=0, dtype=np.float64), axis=1)
            self._integral = integral
        x0 = coords[:, 0] / self.downsample
        y0 = coords[:, 1] / self.downsample
        side = float(tile_size_level0) / self.downsample
        if side <= 0:
            raise ValueError(f"tile_size_level0 must be positive; got {tile_size_level0!r} instead.")
        total = (self._area(y0 + side, x0 + side) - self._area(y0, x0 + side)
                 - self._area(y0 + side, x0) + self._area(y0, x0))
        return np.clip(total / side**2, 0.0, 1.0)

    def _area(self, y, x):
        # The integral of a piecewise-constant image is bilinear inside each cell, so
        # bilinear interpolation of the summed-area table gives exact partial coverage.
        h, w = self.mask.shape
        y = np.clip(y, 0, h)
        x = np.clip(x, 0, w)
        y0 = np.minimum(np.floor(y).astype(np.int64), h - 1) if h else np.zeros_like(y, dtype=np.int64)
        x0 = np.minimum(np.floor(x).astype(np.int64), w - 1) if w else np.zeros_like(x, dtype=np.int64)
        fy, fx = y - y0, x - x0
        s = self._integral
        return ((1 - fy) * (1 - fx) * s[y0, x0] + (1 - fy) * fx * s[y0, x0 + 1]
                + fy * (1 - fx) * s[y0 + 1, x0] + fy * fx * s[y0 + 1, x0 + 1])

    def plot(self, ax=None):
        """Show the mask.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new figure is made otherwise.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 5 * self.mask.shape[0] / max(1, self.mask.shape[1])))
        ax.imshow(self.mask, cmap="gray", interpolation="nearest")
        ax.set_title(f"{self.slide_id}: planted tumour ({self.fraction:.1%}), downsample {self.downsample:g}")
        ax.set_axis_off()
        return ax.figure


def load_truth(cohort_dir):
    """Read ``truth/truth.json`` of a synthetic cohort.

    Parameters
    ----------
    cohort_dir : str or path-like
        Folder written by :func:`lnmkit.synth.make_cohort`.

    Returns
    -------
    dict
    """
    path = Path(cohort_dir) / "truth" / "truth.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no planted truth here; is this a folder written by "
                                "lnmkit.synth.make_cohort?")
    return json.loads(path.read_text(encoding="utf-8"))


def load_planted_mask(cohort_dir, slide_id):
    """Read the planted tumour mask of one synthetic slide.

    Parameters
    ----------
    cohort_dir : str or path-like
        Folder written by :func:`lnmkit.synth.make_cohort`.
    slide_id : str
        Slide identifier as in ``slides.csv``.

    Returns
    -------
    PlantedMask
        An all-False mask for slides without tumour.
    """
    truth = load_truth(cohort_dir)
    slides = truth.get("slides", {})
    if slide_id not in slides:
        raise KeyError(f"{Path(cohort_dir) / 'truth' / 'truth.json'}: no slide {slide_id!r}; "
                       f"known slides are {sorted(slides)[:5]}{'...' if len(slides) > 5 else ''}.")
    entry = slides[slide_id]
    with Image.open(Path(cohort_dir) / "truth" / entry["mask"]) as img:
        mask = np.asarray(img.convert("L")) > 127
    return PlantedMask(mask=mask, downsample=float(entry["downsample"]), slide_id=slide_id)


def load_confounder_mask(cohort_dir, slide_id, kind=None):
    """Read where a synthetic slide of the focal regime holds tumour-like confounders.

    Confounders (lymphoid aggregates, reactive glands, mucin pools) are drawn on
    slides of both classes and are never part of the witness mask of
    :func:`load_planted_mask`.

    Parameters
    ----------
    cohort_dir : str or path-like
        Folder written by :func:`lnmkit.synth.make_cohort` with ``regime="focal"``.
    slide_id : str
        Slide identifier as in ``slides.csv``.
    kind : str, optional
        One confounder (``"lymphoid_aggregate"``, ``"reactive_glands"`` or
        ``"mucin_pool"``); all of them by default.

    Returns
    -------
    PlantedMask
        On the grid of the planted mask; all False where the slide has none.

    Raises
    ------
    KeyError
        If the slide is unknown or the cohort was not made in the focal regime.
    ValueError
        If ``kind`` is not a confounder of the cohort.
    """
    truth = load_truth(cohort_dir)
    slides = truth.get("slides", {})
    where = Path(cohort_dir) / "truth" / "truth.json"
    if slide_id not in slides:
        raise KeyError(f"{where}: no slide {slide_id!r}; known slides are "
                       f"{sorted(slides)[:5]}{'...' if len(slides) > 5 else ''}.")
    entry = slides[slide_id]
    if "confounder_mask" not in entry:
        raise KeyError(f"{where}: slide {slide_id!r} has no confounder mask; confounders are drawn only in "
                       f"the focal regime (this cohort: regime {truth.get('regime', 'regions')!r}).")
    codes = truth["focal"]["confounder_codes"]
    if kind is not None and kind not in codes:
        raise ValueError(f"load_confounder_mask: kind must be one of {', '.join(map(repr, codes))}; "
                         f"got {kind!r} instead.")
    with Image.open(Path(cohort_dir) / "truth" / entry["confounder_mask"]) as img:
        labels = np.asarray(img.convert("L"))
    mask = labels > 0 if kind is None else labels == codes[kind]
    return PlantedMask(mask=mask, downsample=float(entry["downsample"]), slide_id=slide_id)
