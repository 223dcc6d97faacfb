"""Bootstrap-corrected calibration, as ``rms::calibrate`` computes it.

Logistic (``calibrate.default``): ``lowess(p, y, iter = 0)`` of the outcome on the
predicted probability, read at 50 points between the 5th smallest and 5th largest
prediction; optimism of (calibrated - predicted) from the bootstrap refits.

Cox (``calibrate.cph`` with ``cmethod = "KM"``): patients grouped by predicted
S(u) (cut points at quantiles of the original predictions, about ``m`` patients
per group); per group Kaplan-Meier at ``u`` minus mean predicted S(u), with its
bootstrap optimism.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit

from lnmkit._validation import check_int
from lnmkit.exceptions import NomogramInputError
from lnmkit.nomogram._resample import _take, bootstrap_indices, original, resamples

__all__ = ["CalibrationResult", "calibrate"]


@dataclass(frozen=True)
class CalibrationResult:
    """Apparent and bootstrap-corrected calibration of a nomogram's model.

    Attributes
    ----------
    table : pandas.DataFrame
        Logistic: ``predicted``, ``calibrated_apparent``, ``calibrated_corrected``,
        ``optimism``, ``n`` (resamples used) on the grid of predictions.
        Cox: one row per group of predicted S(u): ``mean_predicted``, ``km``,
        ``km_corrected``, ``optimism``, ``n_patients``, ``n``.
    kind : str
    B : int
    u : float or None
        Horizon (Cox).
    mean_abs_error, q90_abs_error : float
        Mean and 0.9 quantile of |predicted - corrected calibration| over the
        patients' predictions (logistic, as ``print.calibrate`` reports them; for
        Cox over the groups).
    predicted : ndarray
        The original model's predictions (probability or S(u)) per patient.
    """

    table: pd.DataFrame
    kind: str
    B: int
    u: object
    mean_abs_error: float
    q90_abs_error: float
    predicted: np.ndarray = field(repr=False)

    def to_frame(self):
        """The table (a copy).

        Returns
        -------
        pandas.DataFrame
        """
        return self.table.copy()

    def plot(self, ax=None):
        """Calibration curve: apparent, bias-corrected and ideal, with the predictions' spread.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=(5, 5))
        else:
            fig = ax.figure
        t = self.table
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":", label="ideal")
        if self.kind == "logistic":
            ax.plot(t["predicted"], t["calibrated_apparent"], color="0.3", ls="--", label="apparent")
            ax.plot(t["predicted"], t["calibrated_corrected"], color="C3", label="bias-corrected")
            ax.set_xlabel("predicted probability")
            ax.set_ylabel("observed (lowess)")
        else:
            ax.plot(t["mean_predicted"], t["km"], "o--", color="0.3", label="apparent (Kaplan-Meier)")
            ax.plot(t["mean_predicted"], t["km_corrected"], "x-", color="C3", label="bias-corrected")
            ax.set_xlabel(f"predicted S({self.u:g})")
            ax.set_ylabel(f"observed S({self.u:g}) (Kaplan-Meier)")
        # spread of the predictions along the bottom, tallest bar 0.1 high
        counts, edges = np.histogram(self.predicted, bins=50, range=(0, 1))
        if counts.max() > 0:
            ax.bar(edges[:-1], 0.1 * counts / counts.max(), width=np.diff(edges), align="edge",
                   color="0.85", zorder=0, label="predictions")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"Calibration (B = {self.B}); mean |error| {self.mean_abs_error:.3f}")
        ax.legend(loc="upper left", fontsize="small")
        return fig

    def __repr__(self):
        where = "" if self.u is None else f", u={self.u:g}"
        return (f"<CalibrationResult: {self.kind}{where}, B={self.B}, mean |error| "
                f"{self.mean_abs_error:.3f}, 0.9 quantile {self.q90_abs_error:.3f}>")

    def _repr_html_(self):
        return f"<p>{html.escape(repr(self))}</p>" + self.table.to_html(float_format=lambda v: f"{v:.4f}")

    def _repr_mimebundle_(self, **kwargs):
        return {"text/plain": repr(self), "text/html": self._repr_html_()}


# ------------------------------------------------------------------------------ logistic

def _lowess_at(x, y, grid):
    """R's ``approx(lowess(x, y, iter = 0), xout = grid, ties = first)``; NaN outside the data."""
    from statsmodels.nonparametric.smoothers_lowess import lowess

    delta = 0.01 * (x.max() - x.min())
    order = np.argsort(x, kind="stable")
    fitted = lowess(y[order], x[order], frac=2 / 3, it=0, delta=delta, is_sorted=True,
                    return_sorted=False)
    xs = x[order]
    keep = np.concatenate([[True], np.diff(xs) > 0])
    return np.interp(grid, xs[keep], fitted[keep], left=np.nan, right=np.nan)


def _logistic_calibration(nomogram, X, y, reps, n_grid=50):
    lp = nomogram.fit_.linear_predictor(X)
    predicted = expit(lp)
    p = np.sort(predicted)
    n = p.size
    if n < 11:
        raise NomogramInputError(f"calibrate: needs more than 10 patients; got {n}.")
    grid = np.linspace(p[4], p[n - 5], n_grid)
    apparent = _lowess_at(predicted, y.astype(float), grid)
    train_sum = np.zeros(n_grid)
    test_sum = np.zeros(n_grid)
    count = np.zeros(n_grid)
    for rs in reps:
        if rs.fit is None:
            continue
        tr = _lowess_at(expit(rs.lp_train), y[rs.rows].astype(float), grid) - grid
        te = _lowess_at(expit(rs.lp_test), y.astype(float), grid) - grid
        ok = np.isfinite(tr) & np.isfinite(te)
        train_sum[ok] += tr[ok]
        test_sum[ok] += te[ok]
        count += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        optimism = train_sum / count - test_sum / count
    corrected = apparent - optimism
    table = pd.DataFrame({"predicted": grid, "calibrated_apparent": apparent,
                          "calibrated_corrected": corrected, "optimism": optimism, "n": count.astype(int)})
    ok = np.isfinite(corrected)
    err = predicted - np.interp(predicted, grid[ok], corrected[ok], left=np.nan, right=np.nan)
    err = np.abs(err[np.isfinite(err)])
    return table, predicted, float(err.mean()), float(np.quantile(err, 0.9))


# ----------------------------------------------------------------------------------- Cox

def _km_at(time, event, u):
    """Kaplan-Meier S(u) as ``groupkm`` reads it (NaN when u is past the group's last time)."""
    ut, inv = np.unique(time, return_inverse=True)
    d = np.bincount(inv, weights=event, minlength=ut.size)
    c = np.bincount(inv, minlength=ut.size)
    at_risk = np.cumsum(c[::-1])[::-1]
    surv = np.cumprod(1 - d / at_risk)
    tt = np.concatenate([[0.0], ut])
    ss = np.concatenate([[1.0], surv])
    if u > tt[-1] + 1e-6 and ss[-1] > 0:
        return np.nan
    return float(ss[np.searchsorted(tt, u + 1e-6, side="right") - 1])


def _group_distance(pred, time, event, u, cuts):
    """Per group of predicted S(u): KM at u minus mean prediction (NaN for groups under 2)."""
    if event.sum() < 5:
        return np.full(cuts.size - 1, np.nan), None
    group = np.clip(np.searchsorted(cuts, pred, side="right") - 1, 0, cuts.size - 2)
    km = np.full(cuts.size - 1, np.nan)
    mean = np.full(cuts.size - 1, np.nan)
    size = np.bincount(group, minlength=cuts.size - 1)
    for k in range(cuts.size - 1):
        s = group == k
        if size[k] >= 1:
            mean[k] = pred[s].mean()
        if size[k] >= 2:
            km[k] = _km_at(time[s], event[s], u)
    return km - mean, (mean, km, size)


def _cox_calibration(nomogram, X, y, reps, u, m):
    time, event = y
    fit = nomogram.fit_
    predicted = fit.survival(fit.linear_predictor(X), u)
    g = max(1, int(np.floor(predicted.size / m)))
    cuts = np.unique(np.quantile(np.concatenate([[0.0, 1.0], predicted]), np.linspace(0, 1, g + 1)))
    apparent, (mean, km, size) = _group_distance(predicted, time, event, u, cuts)
    k = cuts.size - 1
    train_sum, test_sum, count = np.zeros(k), np.zeros(k), np.zeros(k)
    for rs in reps:
        if rs.fit is None:
            continue
        t_tr, e_tr = _take(y, rs.rows)
        tr = _group_distance(rs.fit.survival(rs.lp_train, u), t_tr, e_tr, u, cuts)[0]
        te = _group_distance(rs.fit.survival(rs.lp_test, u), time, event, u, cuts)[0]
        ok = np.isfinite(tr) & np.isfinite(te)
        train_sum[ok] += tr[ok]
        test_sum[ok] += te[ok]
        count += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        optimism = train_sum / count - test_sum / count
    table = pd.DataFrame({"mean_predicted": mean, "km": km, "km_corrected": km - optimism,
                          "optimism": optimism, "n_patients": size, "n": count.astype(int)})
    table.index.name = "group"
    err = np.abs((table["km_corrected"] - table["mean_predicted"]).dropna().to_numpy())
    return table, predicted, float(err.mean()), float(np.quantile(err, 0.9))


def calibrate(nomogram, B=200, *, u=None, m=150, seed=0, boot_index=None, refit_imputation=True,
              n_jobs=None, progress=False):
    """Bootstrap bias-corrected calibration (``rms::calibrate``).

    Parameters
    ----------
    nomogram : Nomogram
    B : int, default=200
        Bootstrap resamples.
    u : float, optional
        Cox: horizon of the calibration; defaults to the last of the nomogram's
        ``times``.
    m : int, default=150
        Cox: about this many patients per group of predicted S(u).
    seed : int, default=0
    boot_index : array-like of shape (B, n), optional
        0-based bootstrap row positions (e.g. R's samples minus 1).
    refit_imputation : bool, default=True
        Refit the imputation in every bootstrap sample (nomograms fitted with
        ``impute``).
    n_jobs : int, optional
        Parallel workers for the refits.
    progress : bool, default=False

    Returns
    -------
    CalibrationResult

    Raises
    ------
    NomogramInputError
        If ``u`` is not positive or lies beyond follow-up.
    """
    where = "calibrate"
    X, y = original(nomogram)
    indices = bootstrap_indices(X.shape[0], B, seed, boot_index, where)
    if nomogram.kind == "cox":
        if u is None:
            u = nomogram.times[-1]
        if not np.isfinite(u) or u <= 0 or u > y[0].max():
            raise NomogramInputError(f"{where}: u must lie in (0, {y[0].max():g}] (the follow-up); got "
                                     f"{u!r} instead.")
        m = check_int(m, "m", where)
    reps = resamples(nomogram, indices, refit_imputation, n_jobs, progress, desc=where)
    if nomogram.kind == "logistic":
        table, predicted, mae, q90 = _logistic_calibration(nomogram, X, y, reps)
        u = None
    else:
        table, predicted, mae, q90 = _cox_calibration(nomogram, X, y, reps, float(u), m)
    return CalibrationResult(table=table, kind=nomogram.kind, B=len(indices), u=u, mean_abs_error=mae,
                             q90_abs_error=q90, predicted=predicted)
