"""Kaplan-Meier curves by risk group (numbers at risk, log-rank test) and decision curves
for survival at a horizon."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lnmkit._validation import check_int
from lnmkit.evaluation._survival_metrics import _ResultMixin, _risk_vector
from lnmkit.exceptions import ModelInputError
from lnmkit.models._survival_base import check_survival_target

__all__ = ["km_by_risk_group", "RiskGroupResult", "survival_decision_curve", "SurvivalDecisionCurve",
           "kaplan_meier_at"]


def kaplan_meier_at(event, time, t):
    """Kaplan-Meier survival at time(s) ``t`` (right-continuous; 1 before the first event)."""
    from sksurv.nonparametric import kaplan_meier_estimator

    if len(time) == 0:
        return np.full(np.shape(t), np.nan)
    if not event.any():
        return np.ones(np.shape(t))
    x, s = kaplan_meier_estimator(event, time)
    idx = np.searchsorted(x, t, side="right") - 1
    return np.where(idx >= 0, s[np.clip(idx, 0, None)], 1.0)


def _default_labels(k):
    return {2: ["low", "high"], 3: ["low", "intermediate", "high"],
            4: ["low", "low-intermediate", "high-intermediate", "high"]}.get(k, [f"group {i + 1}" for i in range(k)])


@dataclass(frozen=True)
class RiskGroupResult(_ResultMixin):
    """Kaplan-Meier curves of risk groups, numbers at risk and the log-rank test.

    Attributes
    ----------
    groups : pandas.Series
        Group label of each patient (categorical, low to high risk).
    cutpoints : ndarray
        Risk-score cut points between the groups.
    curves : dict of str -> pandas.DataFrame
        For each group, columns ``time``, ``survival``, ``lower``, ``upper`` (log-log 95% band).
    at_risk : pandas.DataFrame
        Numbers at risk, groups x :attr:`at_risk_times`.
    logrank_chisq, logrank_df, logrank_p : float
        Log-rank test of equal survival across the groups.
    """

    groups: pd.Series
    cutpoints: np.ndarray
    curves: dict
    at_risk: pd.DataFrame
    event: np.ndarray
    time: np.ndarray
    logrank_chisq: float
    logrank_df: int
    logrank_p: float

    @property
    def table(self):
        """Per group: ``n``, ``events``, ``median_survival`` and its risk-score range."""
        rows = []
        edges = np.concatenate([[-np.inf], self.cutpoints, [np.inf]])
        for i, label in enumerate(self.groups.cat.categories):
            mask = (self.groups == label).to_numpy()
            c = self.curves[label]
            below = c["time"][c["survival"] <= 0.5]
            rows.append({"group": label, "n": int(mask.sum()), "events": int(self.event[mask].sum()),
                         "median_survival": float(below.iloc[0]) if len(below) else np.nan,
                         "risk_from": edges[i], "risk_to": edges[i + 1]})
        return pd.DataFrame(rows).set_index("group")

    def __repr__(self):
        return (f"<RiskGroupResult: {len(self.groups)} patients in {len(self.curves)} groups, log-rank "
                f"chisq={self.logrank_chisq:.2f} on {self.logrank_df} df, p={self.logrank_p:.3g}>")

    def plot(self, ax=None, ci=True):
        """Kaplan-Meier curves with the numbers at risk under the plot and the log-rank p.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
        ci : bool, default=True
            Draw the 95% bands.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt
        from matplotlib.transforms import blended_transform_factory

        k = len(self.curves)
        fig, ax = (plt.subplots(figsize=(6, 4.2 + 0.25 * k)) if ax is None else (ax.figure, ax))
        for i, (label, c) in enumerate(self.curves.items()):
            t = np.concatenate([[0.0], c["time"]])
            s = np.concatenate([[1.0], c["survival"]])
            ax.step(t, s, where="post", color=f"C{i}", label=f"{label} (n={int((self.groups == label).sum())})")
            if ci:
                lo = np.concatenate([[1.0], c["lower"]])
                hi = np.concatenate([[1.0], c["upper"]])
                ax.fill_between(t, lo, hi, step="post", color=f"C{i}", alpha=0.15, lw=0)
        ax.set(ylim=(0, 1.02), xlim=(0, None), xlabel="time", ylabel="survival probability")
        ax.text(0.98, 0.96, f"log-rank p = {self.logrank_p:.3g}", transform=ax.transAxes, ha="right", va="top")
        ax.legend(frameon=False, loc="lower left")
        # numbers at risk, one row per group, under the x axis
        trans = blended_transform_factory(ax.transData, ax.transAxes)
        ax.text(-0.07, -0.2, "at risk", transform=ax.transAxes, ha="right", va="top", fontsize=8, weight="bold")
        for i, label in enumerate(self.at_risk.index):
            y = -0.2 - 0.07 * (i + 1)
            ax.text(-0.07, y, label, transform=ax.transAxes, ha="right", va="top", fontsize=8, color=f"C{i}")
            for t, n in self.at_risk.loc[label].items():
                ax.text(float(t), y, str(int(n)), transform=trans, ha="center", va="top", fontsize=8,
                        color=f"C{i}", clip_on=False)
        ax.set_xticks(self.at_risk.columns.to_numpy(dtype=float))
        fig.subplots_adjust(bottom=min(0.5, 0.2 + 0.06 * (k + 1)), left=0.25)
        return fig


def km_by_risk_group(y, risk, *, cutpoints=None, risk_train=None, n_groups=3, labels=None, at_risk_times=None):
    """Kaplan-Meier curves of patients grouped by predicted risk, with the log-rank test.

    Cut points are given, or chosen as quantiles of the risk of the *training*
    patients (``risk_train``), so that the grouping of test patients does not look
    at their outcomes.

    Parameters
    ----------
    y : structured ndarray
    risk : array-like of shape (n,)
        Risk score of the patients to plot (higher = worse).
    cutpoints : array-like of float, optional
        Increasing cut points; ``k`` cut points give ``k + 1`` groups (a patient at a
        cut point goes to the higher group).
    risk_train : array-like, optional
        Training risk scores: cut points at their quantiles ``1/n_groups, 2/n_groups, ...``.
    n_groups : int, default=3
        With ``risk_train`` (or, if neither is given, quantiles of ``risk`` itself,
        which uses the evaluated patients to choose the groups).
    labels : list of str, optional
        Group labels, low to high risk.
    at_risk_times : array-like of float, optional
        Where the numbers at risk are counted (default: 6 round ticks over the follow-up).

    Returns
    -------
    RiskGroupResult

    Raises
    ------
    lnmkit.exceptions.ModelInputError
        If cut points are not increasing, a group is empty, or labels do not match.
    """
    from lifelines.statistics import multivariate_logrank_test
    from sksurv.nonparametric import kaplan_meier_estimator

    where = "km_by_risk_group"
    event, time = check_survival_target(y, where)
    r = _risk_vector(risk, len(time), where)
    if cutpoints is None:
        k = check_int(n_groups, "n_groups", where, minimum=2)
        base = r if risk_train is None else _risk_vector(risk_train, len(np.asarray(risk_train).ravel()), where,
                                                         "risk_train")
        cuts = np.quantile(base, np.arange(1, k) / k)
    else:
        cuts = np.atleast_1d(np.asarray(cutpoints, dtype=float))
    if cuts.size == 0 or np.any(np.diff(cuts) <= 0) or not np.isfinite(cuts).all():
        raise ModelInputError(f"{where}: cut points must be finite and strictly increasing; got {cuts.tolist()}.")
    k = cuts.size + 1
    names = _default_labels(k) if labels is None else [str(v) for v in labels]
    if len(names) != k:
        raise ModelInputError(f"{where}: {k} groups need {k} labels; got {len(names)}.")
    code = np.searchsorted(cuts, r, side="right")
    counts = np.bincount(code, minlength=k)
    if (counts == 0).any():
        empty = [names[i] for i in np.flatnonzero(counts == 0)]
        raise ModelInputError(f"{where}: group(s) {empty} hold no patient with the cut points {cuts.tolist()}; "
                              f"use fewer groups or other cut points.")
    groups = pd.Series(pd.Categorical.from_codes(code, categories=names), name="risk_group")
    curves = {}
    for i, label in enumerate(names):
        m = code == i
        t, s, ci = kaplan_meier_estimator(event[m], time[m], conf_type="log-log")
        curves[label] = pd.DataFrame({"time": t, "survival": s, "lower": ci[0], "upper": ci[1]})
    if at_risk_times is None:
        from matplotlib.ticker import MaxNLocator

        ticks = MaxNLocator(nbins=5).tick_values(0, float(time.max()))
        at_risk_times = ticks[(ticks >= 0) & (ticks <= time.max())]
    at_t = np.asarray(at_risk_times, dtype=float)
    at_risk = pd.DataFrame([[int(((code == i) & (time >= t)).sum()) for t in at_t] for i in range(k)],
                           index=pd.Index(names, name="risk_group"), columns=pd.Index(at_t, name="time"))
    lr = multivariate_logrank_test(time, code, event)
    return RiskGroupResult(groups=groups, cutpoints=cuts, curves=curves, at_risk=at_risk, event=event, time=time,
                           logrank_chisq=float(lr.test_statistic), logrank_df=int(lr.degrees_of_freedom),
                           logrank_p=float(lr.p_value))


@dataclass(frozen=True)
class SurvivalDecisionCurve(_ResultMixin):
    """Net benefit of treating patients whose predicted risk by ``horizon`` exceeds a threshold.

    Attributes
    ----------
    horizon : float
    thresholds : ndarray
    net_benefit : ndarray
        Of the model.
    treat_all : ndarray
        Of treating everyone (treat none is 0).
    n : int
    """

    horizon: float
    thresholds: np.ndarray
    net_benefit: np.ndarray
    treat_all: np.ndarray
    n: int

    @property
    def table(self):
        """``threshold``, ``net_benefit``, ``treat_all``, ``treat_none``."""
        return pd.DataFrame({"threshold": self.thresholds, "net_benefit": self.net_benefit,
                             "treat_all": self.treat_all, "treat_none": 0.0})

    def __repr__(self):
        return (f"<SurvivalDecisionCurve: {self.n} patients, horizon {self.horizon:g}, "
                f"{len(self.thresholds)} thresholds>")

    def plot(self, ax=None):
        """Net benefit against threshold probability for the model, treat all and treat none.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        fig, ax = (plt.subplots(figsize=(5.5, 4)) if ax is None else (ax.figure, ax))
        ax.plot(self.thresholds, self.net_benefit, label="model", lw=2)
        ax.plot(self.thresholds, self.treat_all, label="treat all", color="0.5")
        ax.axhline(0, color="k", lw=1, label="treat none")
        top = np.nanmax(np.concatenate([self.net_benefit, self.treat_all, [0.01]]))
        ax.set(ylim=(-0.05 * max(top, 0.01) * 4, top * 1.1), xlabel="threshold probability",
               ylabel="net benefit", title=f"decision curve at t = {self.horizon:g}")
        ax.legend(frameon=False)
        return fig


def survival_decision_curve(y, risk_at_horizon, horizon, thresholds=None):
    """Decision curve for an event by ``horizon`` (Vickers et al. 2008, survival version).

    Net benefit at threshold ``pt``: ``TP/n - FP/n * pt / (1 - pt)``, with the true
    and false positives among patients at or above ``pt`` estimated by the
    Kaplan-Meier at ``horizon`` within them (as ``dcurves`` does).

    Parameters
    ----------
    y : structured ndarray
    risk_at_horizon : array-like of shape (n,)
        Predicted probability of the event by ``horizon``: ``1 - S(horizon)``.
    horizon : float
        Inside the follow-up of ``y``.
    thresholds : array-like of float, optional
        In (0, 1); default 0.01, 0.02, ..., 0.99.

    Returns
    -------
    SurvivalDecisionCurve

    Raises
    ------
    lnmkit.exceptions.ModelInputError
        If the horizon is outside the follow-up or risks are not probabilities.
    """
    where = "survival_decision_curve"
    event, time = check_survival_target(y, where)
    p = _risk_vector(risk_at_horizon, len(time), where, "risk_at_horizon")
    if (p < 0).any() or (p > 1).any():
        raise ModelInputError(f"{where}: risk_at_horizon must be probabilities in [0, 1] (1 - S(horizon)).")
    h = float(horizon)
    if not time.min() <= h < time.max():
        raise ModelInputError(f"{where}: horizon must lie inside the follow-up [{time.min():g}, {time.max():g}); "
                              f"got {h:g}.")
    pts = np.arange(1, 100) / 100 if thresholds is None else np.asarray(thresholds, dtype=float)
    if ((pts <= 0) | (pts >= 1)).any():
        raise ModelInputError(f"{where}: thresholds must lie in (0, 1).")
    n = len(time)
    s_all = float(kaplan_meier_at(event, time, h))
    nb = np.empty(len(pts))
    for i, pt in enumerate(pts):
        pos = p >= pt
        if not pos.any():
            nb[i] = 0.0
            continue
        s_pos = float(kaplan_meier_at(event[pos], time[pos], h))
        share = pos.sum() / n
        nb[i] = (1 - s_pos) * share - s_pos * share * pt / (1 - pt)
    treat_all = (1 - s_all) - s_all * pts / (1 - pts)
    return SurvivalDecisionCurve(horizon=h, thresholds=pts, net_benefit=nb, treat_all=treat_all, n=n)
