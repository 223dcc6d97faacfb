"""Discrimination and prediction error of survival predictions: Harrell's and Uno's C with
bootstrap intervals, cumulative/dynamic time-dependent AUC, Brier score and integrated
Brier score (scikit-survival's estimators), as result objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from lnmkit._validation import check_fraction, check_int
from lnmkit.exceptions import ModelInputError
from lnmkit.models._survival_base import check_survival_target

__all__ = ["concordance_index", "survival_time_grid", "time_dependent_auc", "brier_score",
           "ConcordanceResult", "TimeDependentAUCResult", "BrierScoreResult"]


def _pct(level):
    return f"{100 * level:g}".replace(".", "_")


class _ResultMixin:
    def to_frame(self):
        """The result table (a copy)."""
        return self.table.copy()

    def _repr_html_(self):
        return f"<p><code>{self!r}</code></p>" + self.table.to_html(float_format=lambda v: f"{v:.4g}")

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": repr(self), "text/html": self._repr_html_()}


def _risk_vector(risk, n, where, name="risk"):
    r = np.asarray(risk, dtype=float).ravel()
    if r.shape[0] != n:
        raise ModelInputError(f"{where}: {name} has {r.shape[0]} values but y has {n}.")
    if not np.isfinite(r).all():
        i = int(np.flatnonzero(~np.isfinite(r))[0])
        raise ModelInputError(f"{where}: {name} must be finite; got {float(r[i])!r} at row {i}.")
    return r


def _censoring_survival(event, time):
    """Kaplan-Meier of the censoring distribution as (times, G) with G right-continuous."""
    from sksurv.nonparametric import kaplan_meier_estimator

    t, g = kaplan_meier_estimator(~event, time)
    return t, g


def _pair_weighted_sums(event, time, risk, weight_i, tau, counts):
    """For each row of ``counts`` (bootstrap multiplicities), the weighted sums of concordant
    (ties 1/2) and comparable pairs, blockwise so memory stays O(block * n)."""
    n = len(time)
    order_block = max(1, int(4e6 // max(n, 1)))
    conc = np.zeros(counts.shape[0])
    comp = np.zeros(counts.shape[0])
    rows = np.flatnonzero(event & (time < tau))
    for start in range(0, rows.size, order_block):
        i = rows[start:start + order_block]
        ti, ri = time[i][:, None], risk[i][:, None]
        # comparable: i had the event first; a censored j at the same time was still at risk
        comparable = (time[None, :] > ti) | ((time[None, :] == ti) & ~event[None, :])
        score = np.where(risk[None, :] < ri, 1.0, np.where(risk[None, :] == ri, 0.5, 0.0)) * comparable
        a_comp = comparable * weight_i[i][:, None]
        a_conc = score * weight_i[i][:, None]
        cw = counts[:, i]
        conc += np.einsum("bi,bi->b", cw, (a_conc @ counts.T).T)
        comp += np.einsum("bi,bi->b", cw, (a_comp @ counts.T).T)
    return conc, comp


@dataclass(frozen=True)
class ConcordanceResult(_ResultMixin):
    """Concordance index with a bootstrap confidence interval.

    Attributes
    ----------
    method : str
        ``"harrell"`` or ``"uno"``.
    estimate : float
    lower, upper : float
        Percentile bootstrap interval (NaN with ``n_bootstrap=0``).
    level : float
    n : int
    n_events : int
    tau : float or None
        Truncation time of Uno's C.
    bootstrap : ndarray
        The bootstrap replicates.
    """

    method: str
    estimate: float
    lower: float
    upper: float
    level: float
    n: int
    n_events: int
    tau: float | None
    bootstrap: np.ndarray

    @property
    def table(self):
        """One row: ``c``, ``c_lower_95``, ``c_upper_95``, ``n``, ``n_events``, ``tau``."""
        p = _pct(self.level)
        return pd.DataFrame([{"c": self.estimate, f"c_lower_{p}": self.lower, f"c_upper_{p}": self.upper,
                              "n": self.n, "n_events": self.n_events, "tau": self.tau}],
                            index=pd.Index([self.method], name="method"))

    def __repr__(self):
        return (f"<ConcordanceResult: {self.method}, {self.n} patients, {self.n_events} events, "
                f"C={self.estimate:.3f} [{self.lower:.3f}, {self.upper:.3f}]>")

    def plot(self, ax=None):
        """Histogram of the bootstrap replicates with the estimate and interval.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        fig, ax = (plt.subplots(figsize=(5, 3.5)) if ax is None else (ax.figure, ax))
        if self.bootstrap.size:
            ax.hist(self.bootstrap, bins=30, color="0.7")
        ax.axvline(self.estimate, color="C0", lw=2, label=f"C = {self.estimate:.3f}")
        for v in (self.lower, self.upper):
            if np.isfinite(v):
                ax.axvline(v, color="C0", ls="--", lw=1)
        ax.set(xlabel=f"{self.method.capitalize()}'s C", ylabel="bootstrap replicates")
        ax.legend(frameon=False)
        return fig


def concordance_index(y, risk, *, method: Literal["harrell", "uno"] = "harrell", y_train=None, tau=None,
                      n_bootstrap=1000, level=0.95, random_state=0):
    """Harrell's or Uno's concordance index of a risk score, with a bootstrap interval.

    Parameters
    ----------
    y : structured ndarray
        Survival target of the evaluated patients.
    risk : array-like of shape (n,)
        Higher = worse prognosis (e.g. ``model.predict(X)``).
    method : {"harrell", "uno"}, default="harrell"
        Harrell's C (``sksurv.metrics.concordance_index_censored``), or Uno's
        IPCW C (``concordance_index_ipcw``) truncated at ``tau``.
    y_train : structured ndarray, optional
        For Uno's C: the data whose censoring distribution gives the weights
        (default ``y``).
    tau : float, optional
        For Uno's C: only pairs whose earlier time is before ``tau`` count. Choose
        it where some patients remain at risk (by default the largest time of ``y``).
    n_bootstrap : int, default=1000
        Bootstrap resamples of the patients (0: no interval). The censoring weights
        stay those of ``y_train``.
    level : float, default=0.95
    random_state : int, default=0

    Returns
    -------
    ConcordanceResult

    Raises
    ------
    lnmkit.exceptions.ModelInputError
        On an all-censored target, non-finite risks, or no comparable pairs.

    Examples
    --------
    >>> from sksurv.datasets import load_gbsg2
    >>> from lnmkit.evaluation import concordance_index
    >>> X, y = load_gbsg2()
    >>> res = concordance_index(y, X["pnodes"], n_bootstrap=200)
    >>> round(res.estimate, 3)
    0.645
    """
    from sksurv.metrics import concordance_index_censored, concordance_index_ipcw

    where = "concordance_index"
    if method not in ("harrell", "uno"):
        raise ValueError(f"{where}: method must be 'harrell' or 'uno'; got {method!r} instead.")
    n_boot = check_int(n_bootstrap, "n_bootstrap", where, minimum=0)
    level = check_fraction(level, "level", where)
    event, time = check_survival_target(y, where)
    r = _risk_vector(risk, len(time), where)
    if method == "harrell":
        estimate = float(concordance_index_censored(event, time, r)[0])
        weight = np.ones(len(time))
        cut = np.inf
    else:
        ytr = y if y_train is None else y_train
        ev_tr, t_tr = check_survival_target(ytr, where)
        cut = float(time.max()) if tau is None else float(tau)
        ref = np.empty(len(time), dtype=[("event", bool), ("time", float)])
        ref["event"], ref["time"] = event, time
        reft = np.empty(len(t_tr), dtype=[("event", bool), ("time", float)])
        reft["event"], reft["time"] = ev_tr, t_tr
        try:
            estimate = float(concordance_index_ipcw(reft, ref, r, tau=tau)[0])
        except ValueError as err:
            raise ModelInputError(f"{where}: Uno's C failed ({err}); the censoring distribution reaches zero "
                                  f"before the last time. Pass tau= inside the follow-up, e.g. the 90th "
                                  f"percentile of the observed times.") from None
        gt, g = _censoring_survival(ev_tr, t_tr)
        idx = np.searchsorted(gt, np.minimum(time, cut), side="right") - 1
        gi = np.where(idx >= 0, g[np.clip(idx, 0, None)], 1.0)
        with np.errstate(divide="ignore"):
            weight = np.where(gi > 0, 1.0 / gi ** 2, 0.0)
    boot = np.empty(0)
    lower = upper = float("nan")
    if n_boot:
        rng = np.random.default_rng(random_state)
        reps = []
        for start in range(0, n_boot, 50):
            b = min(50, n_boot - start)
            counts = rng.multinomial(len(time), np.full(len(time), 1 / len(time)), size=b).astype(float)
            conc, comp = _pair_weighted_sums(event, time, r, weight, cut, counts)
            with np.errstate(invalid="ignore", divide="ignore"):
                reps.append(conc / comp)
        boot = np.concatenate(reps)
        boot = boot[np.isfinite(boot)]
        if boot.size:
            lower, upper = (float(v) for v in np.quantile(boot, [(1 - level) / 2, (1 + level) / 2]))
    return ConcordanceResult(method=method, estimate=estimate, lower=lower, upper=upper, level=level,
                             n=len(time), n_events=int(event.sum()), tau=None if method == "harrell" else cut,
                             bootstrap=boot)


def survival_time_grid(y, n_times=20, *, lower_percentile=10.0, upper_percentile=90.0, y_train=None):
    """Evaluation times spread evenly inside the 10th-90th percentiles of the observed times.

    Inside that range some patients remain at risk and uncensored, so IPCW weights
    stay finite (times near the end of follow-up make them explode).

    Parameters
    ----------
    y : structured ndarray
        Target of the evaluated patients.
    n_times : int, default=20
    lower_percentile, upper_percentile : float, default=10, 90
    y_train : structured ndarray, optional
        The grid is also kept below the largest training time.

    Returns
    -------
    ndarray of float
    """
    where = "survival_time_grid"
    n = check_int(n_times, "n_times", where)
    _, time = check_survival_target(y, where)
    lo, hi = np.percentile(time, [lower_percentile, upper_percentile])
    if y_train is not None:
        _, ttr = check_survival_target(y_train, where)
        hi = min(hi, float(ttr.max()) * (1 - 1e-9))
    if not hi > lo:
        raise ModelInputError(f"{where}: the {lower_percentile:g}th and {upper_percentile:g}th percentiles of the "
                              f"observed times coincide ({lo:g}); give times explicitly.")
    return np.linspace(lo, hi, n) if n > 1 else np.array([(lo + hi) / 2])


def _structured(event, time):
    out = np.empty(len(time), dtype=[("event", bool), ("time", float)])
    out["event"], out["time"] = event, time
    return out


def _check_eval_times(times, ev_tr, t_tr, ev_te, t_te, where):
    t = np.atleast_1d(np.asarray(times, dtype=float))
    lo, hi = float(t_te.min()), float(t_te.max())
    hi_train = float(t_tr.max())
    bad = (t < lo) | (t >= hi) | (t >= hi_train)
    if bad.any():
        raise ModelInputError(f"{where}: evaluation times must lie inside the follow-up of the test data "
                              f"[{lo:g}, {hi:g}) and below the last training time {hi_train:g}; got "
                              f"{t[bad][0]:g}. Use survival_time_grid(y_test) for times where the censoring "
                              f"weights are finite.")
    return t


def _survival_matrix(survival, times, n, where):
    if isinstance(survival, pd.DataFrame):
        t = survival.columns.to_numpy(dtype=float) if times is None else np.asarray(times, dtype=float)
        if times is not None and not np.allclose(survival.columns.to_numpy(dtype=float), t):
            raise ModelInputError(f"{where}: the columns of the survival DataFrame are not the given times.")
        s = survival.to_numpy(dtype=float)
    else:
        if times is None:
            raise ModelInputError(f"{where}: pass times= with an array of survival probabilities "
                                  f"(or give model.predict_survival_function(X, times), whose columns are the times).")
        t = np.atleast_1d(np.asarray(times, dtype=float))
        s = np.asarray(survival, dtype=float).reshape(n, -1)
    if s.shape != (n, len(t)):
        raise ModelInputError(f"{where}: survival must be patients x times ({n} x {len(t)}); got {s.shape}.")
    if not np.isfinite(s).all() or (s < 0).any() or (s > 1).any():
        raise ModelInputError(f"{where}: survival probabilities must lie in [0, 1].")
    return s, t


@dataclass(frozen=True)
class TimeDependentAUCResult(_ResultMixin):
    """Cumulative/dynamic AUC at each evaluation time.

    Attributes
    ----------
    times : ndarray
    auc : ndarray
    mean_auc : float
        Weighted by the change of the Kaplan-Meier estimate over the times
        (``sksurv.metrics.cumulative_dynamic_auc``).
    n : int
    n_events : int
    """

    times: np.ndarray
    auc: np.ndarray
    mean_auc: float
    n: int
    n_events: int

    @property
    def table(self):
        """``time`` and ``auc``."""
        return pd.DataFrame({"time": self.times, "auc": self.auc})

    def __repr__(self):
        return (f"<TimeDependentAUCResult: {self.n} patients, {self.n_events} events, {len(self.times)} times, "
                f"mean AUC={self.mean_auc:.3f}>")

    def plot(self, ax=None):
        """AUC(t) against time.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        fig, ax = (plt.subplots(figsize=(5, 3.5)) if ax is None else (ax.figure, ax))
        ax.plot(self.times, self.auc, marker="o", ms=3)
        ax.axhline(self.mean_auc, ls="--", color="0.5", label=f"mean AUC = {self.mean_auc:.3f}")
        ax.axhline(0.5, ls=":", color="0.7")
        ax.set(xlabel="time", ylabel="cumulative/dynamic AUC(t)")
        ax.legend(frameon=False)
        return fig


def time_dependent_auc(y_train, y_test, risk, times=None):
    """Cumulative/dynamic time-dependent AUC with IPCW (Uno et al. 2007; Hung & Chiang 2010).

    Cases at ``t`` are patients with an event by ``t``, controls those still event-free;
    censoring weights come from the Kaplan-Meier of the censoring in ``y_train``.

    Parameters
    ----------
    y_train : structured ndarray
        Data for the censoring distribution (often the training data).
    y_test : structured ndarray
    risk : array-like of shape (n,) or pandas.DataFrame / ndarray of shape (n, n_times)
        Risk score (higher = worse), or a time-dependent risk such as ``1 - S(t)``
        (a DataFrame from ``1 - model.predict_survival_function(X, times)``).
    times : array-like of float, optional
        Default: the columns of a DataFrame ``risk``, else :func:`survival_time_grid`.

    Returns
    -------
    TimeDependentAUCResult

    Raises
    ------
    lnmkit.exceptions.ModelInputError
        If a time leaves the follow-up.
    """
    from sksurv.metrics import cumulative_dynamic_auc

    where = "time_dependent_auc"
    ev_tr, t_tr = check_survival_target(y_train, where)
    ev_te, t_te = check_survival_target(y_test, where)
    if isinstance(risk, pd.DataFrame):
        est = risk.to_numpy(dtype=float)
        times = risk.columns.to_numpy(dtype=float) if times is None else times
    else:
        est = np.asarray(risk, dtype=float)
    if times is None:
        times = survival_time_grid(y_test, y_train=y_train)
    t = _check_eval_times(times, ev_tr, t_tr, ev_te, t_te, where)
    if est.ndim == 1:
        est = _risk_vector(est, len(t_te), where)
    elif est.shape != (len(t_te), len(t)):
        raise ModelInputError(f"{where}: a 2-D risk must be patients x times ({len(t_te)} x {len(t)}); "
                              f"got {est.shape}.")
    auc, mean_auc = cumulative_dynamic_auc(_structured(ev_tr, t_tr), _structured(ev_te, t_te), est, t)
    return TimeDependentAUCResult(times=t, auc=np.asarray(auc, dtype=float), mean_auc=float(mean_auc),
                                  n=len(t_te), n_events=int(ev_te.sum()))


@dataclass(frozen=True)
class BrierScoreResult(_ResultMixin):
    """IPCW Brier score at each time and its integral over the times.

    Attributes
    ----------
    times : ndarray
    brier : ndarray
    integrated : float
        Integrated Brier score over ``[times[0], times[-1]]`` (trapezoid rule, divided
        by the range; NaN for a single time).
    reference : ndarray
        Brier score of the Kaplan-Meier of ``y_train`` (a null model), same times.
    n : int
    n_events : int
    """

    times: np.ndarray
    brier: np.ndarray
    integrated: float
    reference: np.ndarray
    n: int
    n_events: int

    @property
    def table(self):
        """``time``, ``brier``, ``brier_km`` (null model) and ``scaled`` (1 - brier / brier_km)."""
        return pd.DataFrame({"time": self.times, "brier": self.brier, "brier_km": self.reference,
                             "scaled": 1 - self.brier / self.reference})

    def __repr__(self):
        ibs = "" if np.isnan(self.integrated) else f", IBS={self.integrated:.4f}"
        return f"<BrierScoreResult: {self.n} patients, {self.n_events} events, {len(self.times)} times{ibs}>"

    def plot(self, ax=None):
        """Brier score over time, with the Kaplan-Meier null model.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        fig, ax = (plt.subplots(figsize=(5, 3.5)) if ax is None else (ax.figure, ax))
        ax.plot(self.times, self.brier, label="model" + ("" if np.isnan(self.integrated)
                                                         else f" (IBS {self.integrated:.3f})"))
        ax.plot(self.times, self.reference, ls="--", color="0.5", label="Kaplan-Meier (null)")
        ax.set(xlabel="time", ylabel="Brier score")
        ax.legend(frameon=False)
        return fig


def brier_score(y_train, y_test, survival, times=None):
    """IPCW Brier score (Graf et al. 1999) at each time and the integrated Brier score.

    Parameters
    ----------
    y_train : structured ndarray
        Data for the censoring distribution and the Kaplan-Meier null model.
    y_test : structured ndarray
    survival : pandas.DataFrame or ndarray of shape (n, n_times)
        Predicted survival probabilities, e.g. ``model.predict_survival_function(X_test, times)``
        (its columns are then the times).
    times : array-like of float, optional
        Required with an ndarray; must match the DataFrame's columns otherwise. Use
        :func:`survival_time_grid` for a grid where the IPCW weights are finite.

    Returns
    -------
    BrierScoreResult

    Raises
    ------
    lnmkit.exceptions.ModelInputError
        If a time leaves the follow-up or the probabilities are not in [0, 1].

    Examples
    --------
    >>> from sksurv.datasets import load_gbsg2
    >>> from lnmkit.models import CoxPH
    >>> from lnmkit.evaluation import brier_score, survival_time_grid
    >>> X, y = load_gbsg2()
    >>> X = X[["age", "pnodes", "tsize"]]
    >>> cox = CoxPH().fit(X, y)
    >>> res = brier_score(y, y, cox.predict_survival_function(X, survival_time_grid(y)))
    >>> bool(res.integrated < 0.25)
    True
    """
    from sksurv.metrics import brier_score as _brier
    from sksurv.nonparametric import kaplan_meier_estimator

    where = "brier_score"
    ev_tr, t_tr = check_survival_target(y_train, where)
    ev_te, t_te = check_survival_target(y_test, where)
    s, t = _survival_matrix(survival, times, len(t_te), where)
    t = _check_eval_times(t, ev_tr, t_tr, ev_te, t_te, where)
    ytr, yte = _structured(ev_tr, t_tr), _structured(ev_te, t_te)
    _, bs = _brier(ytr, yte, s, t)
    km_t, km_s = kaplan_meier_estimator(ev_tr, t_tr)
    idx = np.searchsorted(km_t, t, side="right") - 1
    s_km = np.where(idx >= 0, km_s[np.clip(idx, 0, None)], 1.0)
    _, ref = _brier(ytr, yte, np.tile(s_km, (len(t_te), 1)), t)
    ibs = float(np.trapezoid(bs, t) / (t[-1] - t[0])) if len(t) > 1 and t[-1] > t[0] else float("nan")
    return BrierScoreResult(times=t, brier=np.asarray(bs, dtype=float), integrated=ibs,
                            reference=np.asarray(ref, dtype=float), n=len(t_te), n_events=int(ev_te.sum()))
