"""Net reclassification improvement (categorical and continuous) and IDI, with CIs.

Pencina, D'Agostino & Vasan (2008), Stat Med 27:157; continuous ("category-free")
NRI from Pencina, Steyerberg & D'Agostino (2011), Stat Med 30:11. Standard errors
are the asymptotic ones of those papers (events and non-events as independent
samples); intervals are Wald intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from lnmkit.evaluation._binary import check_binary

__all__ = ["ReclassificationResult", "reclassification"]


def _nri_part(up, down, n):
    pu, pd_ = up / n, down / n
    return pu - pd_, (pu + pd_ - (pu - pd_) ** 2) / n


@dataclass(frozen=True)
class ReclassificationResult:
    """NRI (categorical and continuous) and IDI of a new model against an old one.

    Attributes
    ----------
    table : pandas.DataFrame
        Rows ``nri_categorical``, ``nri_events``, ``nri_nonevents``, ``nri_continuous``,
        ``idi``; columns ``estimate``, ``se``, ``lower_<level>``, ``upper_<level>``, ``p``.
    categories : tuple of float
        Risk cut-offs of the categorical NRI.
    reclassified : pandas.DataFrame
        Old category x new category counts, separately for events and non-events.
    """

    table: pd.DataFrame
    categories: tuple
    reclassified: pd.DataFrame
    level: float = 0.95

    def plot(self, ax=None):
        """Estimates with CIs as a forest plot; returns the Figure."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3)) if ax is None else (ax.figure, ax)
        t = self.table.iloc[::-1]
        pct = int(round(self.level * 100))
        ax.errorbar(t["estimate"], range(len(t)), xerr=[t["estimate"] - t[f"lower_{pct}"],
                                                         t[f"upper_{pct}"] - t["estimate"]], fmt="o", capsize=3)
        ax.axvline(0, color="0.6", lw=0.8)
        ax.set_yticks(range(len(t)), t.index)
        ax.set(xlabel="estimate", title="Reclassification")
        fig.tight_layout()
        return fig

    def __repr__(self):
        t = self.table["estimate"]
        return (f"<ReclassificationResult: NRI(cat)={t['nri_categorical']:.3f}, NRI(cont)={t['nri_continuous']:.3f}, "
                f"IDI={t['idi']:.4f}>")

    def _repr_html_(self):
        return f"<p><code>{self!r}</code></p>" + self.table.to_html(float_format="%.4f")


def reclassification(y_true, p_old, p_new, categories=(0.1, 0.3), level=0.95):
    """NRI and IDI of ``p_new`` against ``p_old``.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        0/1; patients with a missing value in any input are dropped.
    p_old, p_new : array-like of shape (n,)
        Predicted probabilities of the reference and of the new model.
    categories : sequence of float, default=(0.1, 0.3)
        Cut-offs of the risk categories of the categorical NRI (a patient is in the
        category ``searchsorted(categories, p, side="right")``). Choose clinically
        meaningful ones.
    level : float, default=0.95

    Returns
    -------
    ReclassificationResult
    """
    y, p1 = check_binary(y_true, p_old, "reclassification")
    y2, p2 = check_binary(y_true, p_new, "reclassification")
    if len(y2) != len(y):
        mask = ~np.isnan(np.asarray(p_old, float)) & ~np.isnan(np.asarray(p_new, float))
        y, p1 = check_binary(np.asarray(y_true)[mask], np.asarray(p_old, float)[mask], "reclassification")
        _, p2 = check_binary(np.asarray(y_true)[mask], np.asarray(p_new, float)[mask], "reclassification")
    cuts = np.sort(np.asarray(categories, dtype=float))
    c1 = np.searchsorted(cuts, p1, side="right")
    c2 = np.searchsorted(cuts, p2, side="right")
    ev, ne = y == 1, y == 0
    n_e, n_n = int(ev.sum()), int(ne.sum())
    rows = {}
    e_est, e_var = _nri_part(((c2 > c1) & ev).sum(), ((c2 < c1) & ev).sum(), n_e)
    n_est, n_var = _nri_part(((c2 < c1) & ne).sum(), ((c2 > c1) & ne).sum(), n_n)
    rows["nri_categorical"] = (e_est + n_est, np.sqrt(e_var + n_var))
    rows["nri_events"] = (e_est, np.sqrt(e_var))
    rows["nri_nonevents"] = (n_est, np.sqrt(n_var))
    ce, cev = _nri_part(((p2 > p1) & ev).sum(), ((p2 < p1) & ev).sum(), n_e)
    cn, cnv = _nri_part(((p2 < p1) & ne).sum(), ((p2 > p1) & ne).sum(), n_n)
    rows["nri_continuous"] = (ce + cn, np.sqrt(cev + cnv))
    d = p2 - p1
    idi = d[ev].mean() - d[ne].mean()
    se_idi = np.sqrt(np.var(d[ev], ddof=1) / n_e + np.var(d[ne], ddof=1) / n_n)
    rows["idi"] = (idi, se_idi)
    z = norm.ppf(0.5 + level / 2)
    pct = int(round(level * 100))
    table = pd.DataFrame(
        [{"metric": k, "estimate": float(e), "se": float(s), f"lower_{pct}": float(e - z * s),
          f"upper_{pct}": float(e + z * s), "p": float(2 * norm.sf(abs(e / s))) if s > 0 else np.nan}
         for k, (e, s) in rows.items()]).set_index("metric")
    labels = [f"<{cuts[0]:g}"] + [f"{a:g}-{b:g}" for a, b in zip(cuts[:-1], cuts[1:])] + [f">={cuts[-1]:g}"]
    recl = pd.DataFrame({"outcome": np.where(ev, "event", "non-event"), "old": np.asarray(labels)[c1],
                         "new": np.asarray(labels)[c2]})
    recl = recl.groupby(["outcome", "old", "new"]).size().rename("n").reset_index()
    return ReclassificationResult(table=table, categories=tuple(cuts.tolist()), reclassified=recl, level=level)
