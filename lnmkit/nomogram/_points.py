"""Nomogram points, as ``rms::nomogram`` computes them.

For each predictor, its contribution to X beta is evaluated over its axis values;
R1 and R2 are the smallest and largest. The scale ``sc = 100 / max(R2 - R1)`` gives
the widest predictor exactly 100 points and ``points = (X beta - R1) * sc`` starts
every axis at 0. Total points T map back to the linear predictor
``T / sc + intercept + sum(R1)`` (for Cox, ``-center`` stands for the intercept),
and from there to probability (logistic) or S(t) (Cox).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lnmkit.nomogram._pretty import pretty

__all__ = ["OutcomeAxis", "PointsScale", "compute_scale"]

_NINT = 10
_MAXSCALE = 100.0


@dataclass(frozen=True)
class OutcomeAxis:
    """A probability axis: P(outcome) for logistic, S(t) at one horizon for Cox.

    Attributes
    ----------
    label : str
    time : float or None
        Horizon of a survival axis.
    """

    label: str
    time: float | None = None


@dataclass(frozen=True)
class PointsScale:
    """Everything a nomogram draws.

    Attributes
    ----------
    ranges : pandas.DataFrame
        ``R1``, ``R2`` per predictor (X beta range over its axis).
    sc : float
        Points per unit of linear predictor.
    intercept : float
        Linear predictor at 0 total points.
    axes : dict of str to pandas.DataFrame
        Per predictor: ``value``, ``points`` at its axis values.
    total_ticks : ndarray
        Ticks of the total-points axis.
    lp_axis : pandas.DataFrame
        ``value`` (linear predictor), ``points`` (total points).
    outcome_axes : dict of str to pandas.DataFrame
        ``value`` (probability), ``points`` (total points) for each outcome axis.
    """

    ranges: pd.DataFrame
    sc: float
    intercept: float
    axes: dict
    total_ticks: np.ndarray
    lp_axis: pd.DataFrame
    outcome_axes: dict

    def lp_from_points(self, total):
        """Linear predictor at total points ``total``.

        Parameters
        ----------
        total : array-like

        Returns
        -------
        ndarray
        """
        return np.asarray(total, dtype=float) / self.sc + self.intercept

    def points_from_lp(self, lp):
        """Total points of a linear predictor.

        Parameters
        ----------
        lp : array-like

        Returns
        -------
        ndarray
        """
        return (np.asarray(lp, dtype=float) - self.intercept) * self.sc


def term_contributions(design, coef, data):
    """Each predictor's X beta contribution for the rows of ``data``.

    Parameters
    ----------
    design : Design
    coef : ndarray
        Coefficients of the design columns (no intercept).
    data : pandas.DataFrame

    Returns
    -------
    pandas.DataFrame
        One column per predictor, indexed like ``data``.
    """
    slices = design.slices()
    out = {}
    for term in design.terms:
        X = term.matrix(data[term.name])
        out[term.name] = X @ coef[slices[term.name]]
    return pd.DataFrame(out, index=data.index)


def _axis_contributions(design, coef):
    slices = design.slices()
    res = {}
    for term in design.terms:
        values = pd.Series(list(term.axis))
        res[term.name] = term.matrix(values) @ coef[slices[term.name]]
    return res


def compute_scale(design, coef, beta0, fitted_lp, outcome_axes, lp_to_prob, prob_to_lp):
    """The points scale and every axis of a nomogram.

    Parameters
    ----------
    design : Design
    coef : ndarray
        Coefficients of the design columns.
    beta0 : float
        Logistic intercept, or minus the Cox centring constant.
    fitted_lp : ndarray
        Linear predictors of the fitted rows (the linear-predictor axis spans them,
        ``pretty(range(lp), 10)``).
    outcome_axes : sequence of OutcomeAxis
    lp_to_prob : callable
        ``(lp, axis) -> probability`` for an OutcomeAxis.
    prob_to_lp : callable
        Its inverse, ``(probability, axis) -> lp`` (NaN where undefined).

    Returns
    -------
    PointsScale
    """
    contrib = _axis_contributions(design, coef)
    r1 = {k: float(v.min()) for k, v in contrib.items()}
    r2 = {k: float(v.max()) for k, v in contrib.items()}
    widest = max(r2[k] - r1[k] for k in contrib)
    if not widest > 0:
        raise ValueError("every predictor has a zero coefficient; the nomogram has no scale")
    sc = _MAXSCALE / widest
    intercept = beta0 + sum(r1.values())
    axes = {}
    for term in design.terms:
        pts = (contrib[term.name] - r1[term.name]) * sc
        axes[term.name] = pd.DataFrame({"value": list(term.axis), "points": pts})
    lp_at = pretty(float(np.min(fitted_lp)), float(np.max(fitted_lp)), _NINT)
    sum_max = _MAXSCALE if len(design.terms) == 1 else max(_MAXSCALE, sc * np.max(lp_at - intercept))
    total_ticks = pretty(0.0, sum_max, _NINT)
    lp_axis = pd.DataFrame({"value": lp_at, "points": (lp_at - intercept) * sc})
    outcome = {}
    lo, hi = float(lp_at.min()), float(lp_at.max())
    for ax in outcome_axes:
        ends = lp_to_prob(np.array([lo, hi]), ax)
        ticks = pretty(float(ends.min()), float(ends.max()), _NINT)
        with np.errstate(divide="ignore", invalid="ignore"):
            lps = prob_to_lp(ticks, ax)
        keep = np.isfinite(lps) & (lps >= lo) & (lps <= hi)
        outcome[ax.label] = pd.DataFrame({"value": ticks[keep], "points": (lps[keep] - intercept) * sc})
    ranges = pd.DataFrame({"R1": r1, "R2": r2})
    ranges.index.name = "predictor"
    return PointsScale(ranges=ranges, sc=sc, intercept=intercept, axes=axes,
                       total_ticks=total_ticks, lp_axis=lp_axis, outcome_axes=outcome)
