"""ROC AUC with DeLong variance: confidence intervals and the paired test of two AUCs.

One implementation for all of lnmkit (``lnmkit.mil`` re-exports :func:`auc_delong`).
The midrank formulation (Sun & Xu, 2014) gives the structural components of
DeLong, DeLong & Clarke-Pearson (1988); intervals and the paired test follow
``pROC::ci.auc(method = "delong")`` and ``pROC::roc.test(method = "delong", paired = TRUE)``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.stats import norm, rankdata

__all__ = ["auc_delong", "delong_test", "delong_components"]


def delong_components(y_true, scores):
    """AUCs and DeLong structural components of one or more scores on the same patients.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        0/1 labels without missing values.
    scores : array-like of shape (n,) or (n, k)
        Higher score = more likely positive.

    Returns
    -------
    auc : ndarray of shape (k,)
    cov : ndarray of shape (k, k)
        DeLong covariance of the AUCs (``S10 / m + S01 / n``); zeros when a class
        has a single member.
    """
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(scores, dtype=float)
    s = s[:, None] if s.ndim == 1 else s
    pos, neg = s[y == 1], s[y == 0]
    m, n = len(pos), len(neg)
    k = s.shape[1]
    v10 = np.empty((k, m))
    v01 = np.empty((k, n))
    auc = np.empty(k)
    for j in range(k):
        all_rank = rankdata(np.concatenate([pos[:, j], neg[:, j]]))
        pos_rank, neg_rank = rankdata(pos[:, j]), rankdata(neg[:, j])
        auc[j] = (all_rank[:m].sum() - m * (m + 1) / 2.0) / (m * n)
        v10[j] = (all_rank[:m] - pos_rank) / n  # share of negatives below each positive
        v01[j] = 1.0 - (all_rank[m:] - neg_rank) / m  # share of positives above each negative
    s10 = np.atleast_2d(np.cov(v10, ddof=1)) if m > 1 else np.zeros((k, k))
    s01 = np.atleast_2d(np.cov(v01, ddof=1)) if n > 1 else np.zeros((k, k))
    return auc, s10 / m + s01 / n


def _clean(y_true, *scores):
    y = np.asarray(y_true, dtype=float).ravel()
    arrays = [np.asarray(s, dtype=float).ravel() for s in scores]
    for a in arrays:
        if a.shape != y.shape:
            raise ValueError(f"auc_delong: y_true has {y.size} values but a score has {a.size}.")
    ok = ~np.isnan(y)
    for a in arrays:
        ok &= ~np.isnan(a)
    return y[ok], [a[ok] for a in arrays]


def auc_delong(y_true, y_score, level=0.95, interval: Literal["wald", "logit"] = "wald"):
    """ROC AUC with a DeLong confidence interval.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        0/1 labels; NaN entries are dropped together with their scores.
    y_score : array-like of shape (n,)
        Higher score = more likely positive (no automatic direction, unlike pROC's
        ``direction = "auto"``).
    level : float, default=0.95
    interval : {"wald", "logit"}, default="wald"
        ``"wald"``: AUC ± z·SE clipped to [0, 1], as ``pROC::ci.auc``. ``"logit"``:
        the interval on the logit scale (stays inside (0, 1), better near 1).

    Returns
    -------
    dict
        ``auc``, ``lower``, ``upper``, ``se``, ``n``, ``n_pos``; AUC and bounds are
        NaN when either class is absent. With a zero DeLong variance (perfect
        separation) the interval is the point itself.

    Examples
    --------
    >>> r = auc_delong([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    >>> round(r["auc"], 4)
    0.8889
    """
    if interval not in ("wald", "logit"):
        raise ValueError(f"auc_delong: interval must be 'wald' or 'logit'; got {interval!r} instead.")
    y, (s,) = _clean(y_true, y_score)
    m, n = int((y == 1).sum()), int((y == 0).sum())
    out = {"auc": np.nan, "lower": np.nan, "upper": np.nan, "se": np.nan, "n": int(m + n), "n_pos": m}
    if m == 0 or n == 0:
        return out
    auc, cov = delong_components(y, s)
    auc, se = float(auc[0]), float(np.sqrt(max(cov[0, 0], 0.0)))
    z = norm.ppf(0.5 + level / 2.0)
    out.update(auc=auc, se=se)
    if se == 0 or not 0.0 < auc < 1.0:
        out.update(lower=auc, upper=auc)
    elif interval == "wald":
        out.update(lower=float(max(auc - z * se, 0.0)), upper=float(min(auc + z * se, 1.0)))
    else:
        logit = np.log(auc / (1 - auc))
        se_logit = se / (auc * (1 - auc))
        out.update(lower=float(1 / (1 + np.exp(-(logit - z * se_logit)))),
                   upper=float(1 / (1 + np.exp(-(logit + z * se_logit)))))
    return out


def delong_test(y_true, score_a, score_b, level=0.95):
    """Paired DeLong test of two AUCs on the same patients, with a CI of the difference.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        0/1 labels; a patient with a NaN label or score is dropped from both.
    score_a, score_b : array-like of shape (n,)
    level : float, default=0.95

    Returns
    -------
    dict
        ``auc_a``, ``auc_b``, ``delta`` (= auc_b - auc_a), ``delta_lower``,
        ``delta_upper``, ``se``, ``z``, ``p_value`` (two-sided, as
        ``pROC::roc.test(method = "delong", paired = TRUE)``), ``n``, ``n_pos``.

    Raises
    ------
    ValueError
        If either class is absent after dropping missing values.
    """
    y, (a, b) = _clean(y_true, score_a, score_b)
    m, n = int((y == 1).sum()), int((y == 0).sum())
    if m == 0 or n == 0:
        raise ValueError(f"delong_test: both classes are needed; got {m} positive(s) and {n} negative(s).")
    auc, cov = delong_components(y, np.column_stack([a, b]))
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    se = float(np.sqrt(max(var, 0.0)))
    delta = float(auc[1] - auc[0])
    zq = norm.ppf(0.5 + level / 2.0)
    if se > 0:
        z = delta / se
        p = float(2 * norm.sf(abs(z)))
    else:
        z, p = (0.0, 1.0) if delta == 0 else (np.copysign(np.inf, delta), 0.0)
    return {"auc_a": float(auc[0]), "auc_b": float(auc[1]), "delta": delta,
            "delta_lower": delta - zq * se, "delta_upper": delta + zq * se, "se": se,
            "z": float(z), "p_value": p, "n": m + n, "n_pos": m}
