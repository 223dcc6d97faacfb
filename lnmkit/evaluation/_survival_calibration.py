"""Calibration of predicted survival at a horizon: Kaplan-Meier by risk group, the
calibration slope and the smooth ICI / E50 / E90 of Austin, Harrell & van Klaveren (2020)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lnmkit._validation import check_int
from lnmkit.evaluation._survival_metrics import _ResultMixin, _risk_vector
from lnmkit.exceptions import ModelInputError
from lnmkit.models._survival_base import check_survival_target

__all__ = ["survival_calibration", "SurvivalCalibrationResult", "rcs_basis"]


def rcs_basis(x, knots):
    """Restricted cubic spline basis of Harrell (``rms::rcs``, ``Hmisc::rcspline.eval`` norm 2).

    Parameters
    ----------
    x : array-like of shape (n,)
    knots : array-like of shape (k,), increasing, k >= 3

    Returns
    -------
    ndarray of shape (n, k - 1)
        ``x`` and the ``k - 2`` non-linear terms.
    """
    x = np.asarray(x, dtype=float)
    t = np.asarray(knots, dtype=float)
    k = len(t)
    cols = [x]
    pos3 = lambda v: np.clip(v, 0, None) ** 3  # noqa: E731
    for j in range(k - 2):
        term = (pos3(x - t[j]) - pos3(x - t[k - 2]) * (t[k - 1] - t[j]) / (t[k - 1] - t[k - 2])
                + pos3(x - t[k - 1]) * (t[k - 2] - t[j]) / (t[k - 1] - t[k - 2]))
        cols.append(term / (t[k - 1] - t[0]) ** 2)
    return np.column_stack(cols)


@dataclass(frozen=True)
class SurvivalCalibrationResult(_ResultMixin):
    """Predicted against observed risk of the event by ``horizon``.

    Attributes
    ----------
    horizon : float
    groups : pandas.DataFrame
        Per risk group: ``n``, ``predicted`` (mean predicted risk), ``observed``
        (1 - Kaplan-Meier), ``observed_lower_95``, ``observed_upper_95``.
    slope : float
        Calibration slope: coefficient of a Cox regression of the outcome on
        ``log(-log(S(horizon)))`` (1 is ideal; < 1 means predictions too extreme).
    ici, e50, e90, emax : float
        Mean, median, 90th percentile and maximum of ``|predicted - smoothed observed|``,
        the observed risk from a Cox model with a restricted cubic spline (3 knots) of
        ``log(-log(S(horizon)))``.
    smooth : pandas.DataFrame
        ``predicted`` and ``observed`` (smoothed), one row per patient, sorted.
    n : int
    """

    horizon: float
    groups: pd.DataFrame
    slope: float
    ici: float
    e50: float
    e90: float
    emax: float
    smooth: pd.DataFrame
    n: int

    @property
    def table(self):
        """One row: ``horizon``, ``slope``, ``ici``, ``e50``, ``e90``, ``emax``, ``n``."""
        return pd.DataFrame([{"horizon": self.horizon, "slope": self.slope, "ici": self.ici, "e50": self.e50,
                              "e90": self.e90, "emax": self.emax, "n": self.n}])

    def __repr__(self):
        return (f"<SurvivalCalibrationResult: {self.n} patients at t={self.horizon:g}, slope={self.slope:.2f}, "
                f"ICI={self.ici:.3f}, E90={self.e90:.3f}>")

    def plot(self, ax=None):
        """Observed (Kaplan-Meier, with 95% intervals) against predicted risk by group, the
        smooth calibration curve and the diagonal.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        fig, ax = (plt.subplots(figsize=(4.8, 4.8)) if ax is None else (ax.figure, ax))
        g = self.groups
        top = float(np.nanmax([g["predicted"].max(), g["observed_upper_95"].max(), self.smooth["observed"].max()]))
        top = min(1.0, top * 1.05 + 0.02)
        ax.plot([0, top], [0, top], color="0.6", ls="--", lw=1, label="ideal")
        ax.plot(self.smooth["predicted"], self.smooth["observed"], color="C0", lw=2, label="smooth (rcs Cox)")
        ax.errorbar(g["predicted"], g["observed"],
                    yerr=[g["observed"] - g["observed_lower_95"], g["observed_upper_95"] - g["observed"]],
                    fmt="o", color="C1", capsize=2, label="risk groups (KM)")
        ax.set(xlim=(0, top), ylim=(0, top), xlabel=f"predicted risk by t = {self.horizon:g}",
               ylabel=f"observed risk by t = {self.horizon:g}")
        ax.text(0.03, 0.97, f"slope {self.slope:.2f}\nICI {self.ici:.3f}\nE90 {self.e90:.3f}",
                transform=ax.transAxes, va="top", fontsize=9)
        ax.legend(frameon=False, loc="lower right", fontsize=8)
        return fig


def _group_km(event, time, h, mask):
    from sksurv.nonparametric import kaplan_meier_estimator

    t, s, ci = kaplan_meier_estimator(event[mask], time[mask], conf_type="log-log")
    idx = np.searchsorted(t, h, side="right") - 1
    if idx < 0:
        return 1.0, 1.0, 1.0
    # risk = 1 - S: the lower risk bound comes from the upper survival bound
    return 1 - s[idx], 1 - ci[1][idx], 1 - ci[0][idx]


def survival_calibration(y, survival_at_horizon, horizon, n_groups=10):
    """Calibration of predicted survival at ``horizon``.

    Parameters
    ----------
    y : structured ndarray
        Outcome of the evaluated (test) patients.
    survival_at_horizon : array-like of shape (n,)
        Predicted ``S(horizon)``, e.g. ``model.predict_survival_function(X, [t])[t]``.
    horizon : float
        Inside the follow-up of ``y``.
    n_groups : int, default=10
        Risk groups (quantiles of the predicted risk) for the Kaplan-Meier points.

    Returns
    -------
    SurvivalCalibrationResult

    Raises
    ------
    lnmkit.exceptions.ModelInputError
        If the horizon is outside the follow-up, probabilities are not in (0, 1), or
        there are too few patients for the groups.

    Examples
    --------
    >>> from sksurv.datasets import load_gbsg2
    >>> from lnmkit.models import CoxPH
    >>> from lnmkit.evaluation import survival_calibration
    >>> X, y = load_gbsg2()
    >>> X = X[["age", "pnodes", "tsize", "tgrade"]]
    >>> s = CoxPH().fit(X, y).predict_survival_function(X, [1825.0])[1825.0]
    >>> res = survival_calibration(y, s, 1825.0)
    >>> bool(0.8 < res.slope < 1.2)
    True
    """
    from lnmkit.models import CoxPH

    where = "survival_calibration"
    event, time = check_survival_target(y, where)
    s = _risk_vector(survival_at_horizon, len(time), where, "survival_at_horizon")
    if (s <= 0).any() or (s >= 1).any():
        raise ModelInputError(f"{where}: survival_at_horizon must lie strictly between 0 and 1; clip it, or "
                              f"choose a horizon where no predicted survival is 0 or 1.")
    h = float(horizon)
    if not time.min() <= h < time.max():
        raise ModelInputError(f"{where}: horizon must lie inside the follow-up [{time.min():g}, {time.max():g}); "
                              f"got {h:g}.")
    k = check_int(n_groups, "n_groups", where, minimum=2)
    if len(time) < 2 * k:
        raise ModelInputError(f"{where}: {len(time)} patients are too few for {k} groups; lower n_groups.")
    pred = 1 - s
    cll = np.log(-np.log(s))
    yy = np.empty(len(time), dtype=[("event", bool), ("time", float)])
    yy["event"], yy["time"] = event, time
    slope = float(CoxPH().fit(pd.DataFrame({"cll": cll}), yy).coef_["cll"])
    knots = np.quantile(cll, [0.1, 0.5, 0.9])
    basis = pd.DataFrame(rcs_basis(cll, knots), columns=["cll", "cll'"])
    observed = 1 - CoxPH().fit(basis, yy).predict_survival_function(basis, [h]).to_numpy()[:, 0]
    err = np.abs(pred - observed)
    order = np.argsort(pred)
    smooth = pd.DataFrame({"predicted": pred[order], "observed": observed[order]})
    code = pd.qcut(pd.Series(pred).rank(method="first"), k, labels=False).to_numpy()
    rows = []
    for g in range(k):
        m = code == g
        obs, lo, hi = _group_km(event, time, h, m)
        rows.append({"group": g + 1, "n": int(m.sum()), "predicted": float(pred[m].mean()), "observed": obs,
                     "observed_lower_95": lo, "observed_upper_95": hi})
    return SurvivalCalibrationResult(horizon=h, groups=pd.DataFrame(rows).set_index("group"), slope=slope,
                                     ici=float(err.mean()), e50=float(np.median(err)),
                                     e90=float(np.quantile(err, 0.9)), emax=float(err.max()), smooth=smooth,
                                     n=len(time))
