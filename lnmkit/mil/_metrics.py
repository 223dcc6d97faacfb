"""ROC AUC with DeLong confidence intervals."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm, rankdata

__all__ = ["auc_delong"]


def auc_delong(y_true, y_score, level=0.95):
    """ROC AUC with a DeLong (1988) confidence interval.

    Uses the midrank formulation (Sun & Xu, 2014); the interval is computed on
    the logit scale so it stays inside (0, 1).

    Parameters
    ----------
    y_true : array-like of shape (n,)
        0/1 labels; NaN entries are dropped together with their scores.
    y_score : array-like of shape (n,)
    level : float, default=0.95

    Returns
    -------
    dict
        ``auc``, ``lower``, ``upper``, ``se``, ``n``, ``n_pos``; AUC and bounds are
        NaN when either class is absent.
    """
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(y_score, dtype=float)
    ok = ~np.isnan(y) & ~np.isnan(s)
    y, s = y[ok], s[ok]
    pos, neg = s[y == 1], s[y == 0]
    m, n = len(pos), len(neg)
    out = {"auc": np.nan, "lower": np.nan, "upper": np.nan, "se": np.nan, "n": int(m + n), "n_pos": int(m)}
    if m == 0 or n == 0:
        return out
    all_rank = rankdata(np.concatenate([pos, neg]))
    pos_rank, neg_rank = rankdata(pos), rankdata(neg)
    auc = (all_rank[:m].sum() - m * (m + 1) / 2.0) / (m * n)
    v10 = (all_rank[:m] - pos_rank) / n  # per-positive structural component
    v01 = 1.0 - (all_rank[m:] - neg_rank) / m  # per-negative structural component
    var = (np.var(v10, ddof=1) / m if m > 1 else 0.0) + (np.var(v01, ddof=1) / n if n > 1 else 0.0)
    se = float(np.sqrt(var))
    z = norm.ppf(0.5 + level / 2.0)
    out.update(auc=float(auc), se=se)
    if 0.0 < auc < 1.0 and se > 0:
        logit = np.log(auc / (1 - auc))
        se_logit = se / (auc * (1 - auc))
        lo, hi = logit - z * se_logit, logit + z * se_logit
        out.update(lower=float(1 / (1 + np.exp(-lo))), upper=float(1 / (1 + np.exp(-hi))))
    else:
        # Perfect separation: the DeLong variance is 0; report the point as a degenerate interval.
        out.update(lower=float(auc), upper=float(auc))
    return out
