"""The indexes of ``rms::validate.lrm`` and ``rms::validate.cph``.

Each index comes in two forms, as in rms: *apparent* (``evalfit = TRUE``: a model
evaluated on the rows it was fitted on, slope 1 and intercept 0 by construction)
and *test* (a frozen linear predictor evaluated on other rows, with a logistic or
Cox refit of the outcome on it for the calibration intercept and slope).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit
from scipy.stats import rankdata

from lnmkit.nomogram._fit import logistic_fit_from_coef
from lnmkit.nomogram._newton import EfronTies, cox_slope, refit_logistic

__all__ = ["LRM_INDEXES", "CPH_INDEXES", "gini_md", "somers_dxy", "cox_dxy", "lrm_apparent",
           "lrm_test", "cph_apparent", "cph_test"]

LRM_INDEXES = ("Dxy", "R2", "Intercept", "Slope", "D", "U", "Q", "B", "g", "gp")
CPH_INDEXES = ("Dxy", "R2", "Slope", "D", "U", "Q", "g")


def gini_md(x):
    """Gini's mean difference, ``Hmisc::GiniMd`` (mean |x_i - x_j| over pairs i != j).

    Parameters
    ----------
    x : array-like

    Returns
    -------
    float
    """
    x = np.sort(np.asarray(x, dtype=float))
    n = x.size
    if n < 2:
        return float("nan")
    w = 4.0 * (np.arange(1, n + 1) - (n - 1) / 2) / n / (n - 1)
    return float(np.sum(w * (x - x.mean())))


def somers_dxy(x, y):
    """Somers' Dxy of a score against a 0/1 outcome, ``2 (C - 0.5)`` (``Hmisc::somers2``).

    Parameters
    ----------
    x : array-like of shape (n,)
    y : array-like of shape (n,), 0/1

    Returns
    -------
    float
    """
    y = np.asarray(y)
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(x)
    c = (r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
    return float(2 * (c - 0.5))


def cox_dxy(x, time, event):
    """Somers' Dxy between a risk score and survival, sign as ``validate.cph`` reports it.

    A pair is usable when the shorter time is an event (a censored time tied with
    an event time counts as longer); ties in the score count one half. Positive
    values mean higher scores go with shorter survival. O(n log n): rows are
    visited from the longest time down, and each event is compared with the rows
    already visited through a Fenwick tree over the ranks of the score.

    Parameters
    ----------
    x : array-like of shape (n,)
        Risk score (linear predictor).
    time, event : array-like of shape (n,)

    Returns
    -------
    float
    """
    from lnmkit.nomogram._kernels import concordance_sums

    x = np.asarray(x, dtype=float)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(np.int8)
    # longest time first; at a tied time the censored rows first (usable for the tied events)
    order = np.lexsort((event, -time))
    ranks = np.unique(x, return_inverse=True)[1].astype(np.int64) + 1
    difference, usable = concordance_sums(time[order], event[order], ranks[order], int(ranks.max(initial=0)))
    if usable == 0:
        return float("nan")
    return float(difference / usable)


def _r2(lr, l0, n):
    """Nagelkerke R2 from the LR chi-square and the -2 log-likelihood of the null model."""
    return float((1 - np.exp(-lr / n)) / (1 - np.exp(-l0 / n)))


def lrm_apparent(lp, y, loglik, loglik0):
    """``validate.lrm`` indexes of a logistic fit on its own rows.

    Parameters
    ----------
    lp : ndarray of shape (n,)
        Linear predictor (with intercept) of the fitted rows.
    y : ndarray of shape (n,), 0/1
    loglik, loglik0 : float
        Log-likelihood of the fit and of the intercept-only model.

    Returns
    -------
    ndarray
        In the order of :data:`LRM_INDEXES`.
    """
    n = y.size
    lr = 2 * (loglik - loglik0)
    D = (lr - 1) / n
    U = -2 / n
    p = expit(lp)
    return np.array([somers_dxy(lp, y), _r2(lr, -2 * loglik0, n), 0.0, 1.0, D, U, D - U,
                     np.mean((y - p) ** 2), gini_md(lp), gini_md(p)])


def lrm_test(lp, y):
    """``validate.lrm`` indexes of a frozen linear predictor on rows ``y``.

    Parameters
    ----------
    lp : ndarray of shape (n,)
    y : ndarray of shape (n,), 0/1

    Returns
    -------
    ndarray
        In the order of :data:`LRM_INDEXES` (NaN where the refit fails).
    """
    n = y.size
    p = expit(lp)
    brier = np.mean((y - p) ** 2)
    refit = logistic_fit_from_coef(*refit_logistic(lp[:, None], y, 0.0, np.ones(1)), y)
    a, b = refit.intercept, float(refit.coef[0])
    lr = 2 * (refit.loglik - refit.loglik0)
    D = (lr - 1) / n
    frozen = -2 * np.sum(y * lp - np.logaddexp(0, lp))
    U = (frozen - (-2 * refit.loglik) - 2) / n
    return np.array([somers_dxy(lp, y), _r2(lr, -2 * refit.loglik0, n), a, b, D, U, D - U, brier,
                     gini_md(b * lp), gini_md(expit(a + b * lp))])


def cph_apparent(lp, time, event, loglik, loglik0):
    """``validate.cph`` indexes of a Cox fit on its own rows (D, U, R2 scaled by -2 log L0).

    Parameters
    ----------
    lp : ndarray of shape (n,)
    time, event : ndarray of shape (n,)
    loglik, loglik0 : float
        Partial log-likelihood of the fit and at beta = 0.

    Returns
    -------
    ndarray
        In the order of :data:`CPH_INDEXES`.
    """
    n = lp.size
    if np.unique(lp).size == 1:
        return np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0, gini_md(lp)])
    lr = -2 * (loglik0 - loglik)
    l0 = -2 * loglik0
    D = (lr - 1) / l0
    U = -2 / l0
    return np.array([cox_dxy(lp, time, event), _r2(lr, l0, n), 1.0, D, U, D - U, gini_md(lp)])


def cph_test(lp, time, event, ties=None):
    """``validate.cph`` indexes of a frozen linear predictor on other rows.

    Parameters
    ----------
    lp : ndarray of shape (n,)
    time, event : ndarray of shape (n,)
    ties : EfronTies, optional
        Of ``(time, event)``; pass it when the same rows are scored many times.

    Returns
    -------
    ndarray
        In the order of :data:`CPH_INDEXES`.
    """
    n = lp.size
    if np.unique(lp).size == 1:
        return np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0, gini_md(lp)])
    ties = EfronTies(time, event) if ties is None else ties
    slope, loglik = cox_slope(lp, ties)
    loglik0 = ties.loglik(np.zeros(n))
    frozen = ties.loglik(lp)
    lr = -2 * (loglik0 - loglik)
    l0 = -2 * loglik0
    D = (lr - 1) / l0
    U = -2 * (frozen - loglik) / l0
    return np.array([cox_dxy(lp, time, event), _r2(lr, l0, n), slope, D, U, D - U, gini_md(slope * lp)])
