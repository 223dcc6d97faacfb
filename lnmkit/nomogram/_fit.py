"""Model fits behind a nomogram: logistic (statsmodels) and Cox (lifelines, Efron ties).

rms's ``lrm`` is unpenalised maximum likelihood, as is statsmodels' binomial GLM;
``cph`` defaults to Efron's handling of tied event times, as lifelines'
``CoxPHFitter`` does. The Efron partial log-likelihood and the Efron baseline
survival (``survfit.coxph``'s estimate for an Efron fit, which ``cph(surv = TRUE)``
stores) are evaluated here in closed form; no optimiser is written here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["FitFailure", "LogisticFit", "CoxFit", "fit_logistic", "fit_cox", "efron_loglik",
           "efron_baseline", "refit_cox_slope"]


class FitFailure(RuntimeError):
    """A fit did not converge (separation, singular design); bootstrap samples with one are dropped."""


@dataclass(frozen=True)
class LogisticFit:
    """Unpenalised logistic regression (statsmodels binomial GLM, IRLS).

    Attributes
    ----------
    intercept : float
    coef : ndarray of shape (p,)
    loglik : float
        Log-likelihood at the estimate.
    loglik0 : float
        Log-likelihood of the intercept-only model.
    n : int
    """

    intercept: float
    coef: np.ndarray
    loglik: float
    loglik0: float
    n: int

    def linear_predictor(self, X):
        """Intercept + X beta.

        Parameters
        ----------
        X : ndarray of shape (n, p)

        Returns
        -------
        ndarray of shape (n,)
        """
        return self.intercept + X @ self.coef


@dataclass(frozen=True)
class CoxFit:
    """Cox proportional hazards fit with its Efron baseline survival.

    Attributes
    ----------
    coef : ndarray of shape (p,)
    center : float
        ``sum(column means * coef)``, as rms's ``cph`` centres the linear predictor.
    loglik, loglik0 : float
        Efron partial log-likelihood at the estimate and at beta = 0.
    times : ndarray
        0, the distinct event times and (when later) the last follow-up time.
    surv : ndarray
        Baseline survival at ``times`` (for a centred linear predictor of 0).
    n, events : int
    max_time : float
        Last observed (event or censoring) time.
    """

    coef: np.ndarray
    center: float
    loglik: float
    loglik0: float
    times: np.ndarray
    surv: np.ndarray
    n: int
    events: int
    max_time: float

    def linear_predictor(self, X):
        """Centred linear predictor X beta - center (rms's ``linear.predictors``).

        Parameters
        ----------
        X : ndarray of shape (n, p)

        Returns
        -------
        ndarray of shape (n,)
        """
        return X @ self.coef - self.center

    def survival(self, lp, t):
        """S(t | lp) = S0(t) ** exp(lp), read off the step function as rms's ``Survival``.

        Parameters
        ----------
        lp : array-like of shape (n,)
            Centred linear predictor.
        t : float

        Returns
        -------
        ndarray of shape (n,)
        """
        idx = np.searchsorted(self.times, t + 1e-6, side="right") - 1
        return self.surv[idx] ** np.exp(np.asarray(lp, dtype=float))


def fit_logistic(X, y):
    """Maximum-likelihood logistic regression of ``y`` on ``X`` (statsmodels binomial GLM).

    Parameters
    ----------
    X : ndarray of shape (n, p)
    y : ndarray of shape (n,), 0/1

    Returns
    -------
    LogisticFit

    Raises
    ------
    FitFailure
        On perfect separation, a singular design or no convergence.
    """
    import statsmodels.api as sm

    n = len(y)
    design = np.column_stack([np.ones(n), X])
    if np.linalg.matrix_rank(design) < design.shape[1]:
        # e.g. a bootstrap sample without a rare level: rms's lrm.fit fails there too
        raise FitFailure("logistic design matrix is singular")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            # IRLS; it stops once the deviance changes by < 1e-9 (relative), quadratic
            # convergence leaves the coefficients far closer than that
            res = sm.GLM(y, design, family=sm.families.Binomial()).fit(tol=1e-9, maxiter=100)
        except Exception as exc:  # separation, singular Hessian, overflow: the sample is unusable
            raise FitFailure(f"logistic fit failed: {exc}") from exc
    params = np.asarray(res.params, dtype=float)
    if not res.converged or not np.all(np.isfinite(params)):
        raise FitFailure("logistic fit did not converge")
    p = y.mean()
    loglik0 = n * (p * np.log(p) + (1 - p) * np.log(1 - p)) if 0 < p < 1 else 0.0
    return LogisticFit(intercept=float(params[0]), coef=params[1:], loglik=float(res.llf),
                       loglik0=float(loglik0), n=n)


def _grouped(time, event, lp):
    """Per distinct time: risk-set weight sums, event counts, event weight sums."""
    ut, inv = np.unique(time, return_inverse=True)
    m = ut.size
    w = np.exp(lp)
    risk = np.cumsum(np.bincount(inv, weights=w, minlength=m)[::-1])[::-1]
    d = np.bincount(inv, weights=event, minlength=m)
    wd = np.bincount(inv, weights=w * event, minlength=m)
    return ut, inv, risk, d, wd


def _efron_terms(risk, d, wd):
    """Index of the time and the Efron denominators risk - l/d * wd, l = 0..d-1, per event."""
    k = np.flatnonzero(d > 0)
    reps = d[k].astype(int)
    kk = np.repeat(k, reps)
    starts = np.repeat(np.cumsum(reps) - reps, reps)
    ell = np.arange(kk.size) - starts
    return kk, risk[kk] - ell / d[kk] * wd[kk]


def efron_loglik(lp, time, event):
    """Efron partial log-likelihood of a linear predictor.

    Parameters
    ----------
    lp : array-like of shape (n,)
    time : array-like of shape (n,)
    event : array-like of shape (n,), 0/1

    Returns
    -------
    float
    """
    lp = np.asarray(lp, dtype=float)
    event = np.asarray(event, dtype=float)
    shift = lp.max() if lp.size else 0.0
    lp = lp - shift  # the log-likelihood does not change with a shift; exp() then cannot overflow
    _, _, risk, d, wd = _grouped(np.asarray(time, dtype=float), event, lp)
    _, denom = _efron_terms(risk, d, wd)
    return float(np.sum(lp * event) - np.sum(np.log(denom)))


def efron_baseline(lp, time, event):
    """Efron baseline survival for a centred linear predictor (``survfit.coxph``, Efron fit).

    Parameters
    ----------
    lp : array-like of shape (n,)
        Centred linear predictor of the fitted rows.
    time, event : array-like of shape (n,)

    Returns
    -------
    times : ndarray
        0, each distinct event time, and the last follow-up time when it is later.
    surv : ndarray
        Baseline survival at ``times``.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=float)
    ut, _, risk, d, wd = _grouped(time, event, np.asarray(lp, dtype=float))
    kk, denom = _efron_terms(risk, d, wd)
    hazard = np.bincount(kk, weights=1.0 / denom, minlength=ut.size)
    has_event = d > 0
    surv = np.exp(-np.cumsum(hazard))[has_event]
    times = np.concatenate([[0.0], ut[has_event]])
    surv = np.concatenate([[1.0], surv])
    if time.max() > times[-1]:
        times = np.append(times, time.max())
        surv = np.append(surv, surv[-1])
    return times, surv


def fit_cox(X, time, event, init=None):
    """Cox proportional hazards fit (lifelines ``CoxPHFitter``, Efron ties, no penalty).

    Parameters
    ----------
    X : ndarray of shape (n, p)
    time : ndarray of shape (n,)
    event : ndarray of shape (n,), 0/1
    init : ndarray of shape (p,), optional
        Starting coefficients (bootstrap refits start from the original fit: fewer
        Newton steps, same maximum).

    Returns
    -------
    CoxFit

    Raises
    ------
    FitFailure
        If lifelines does not converge or the design is singular.
    """
    import pandas as pd
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceWarning

    # Spline columns are nearly collinear; lifelines' step-size control then stalls far
    # from the maximum. Fitting on orthonormalised columns (Xc = Q R) and mapping the
    # coefficients back (beta = R^-1 gamma) gives the same maximum, well conditioned.
    n = X.shape[0]
    Xc = X - X.mean(axis=0)
    q, r = np.linalg.qr(Xc)
    if np.min(np.abs(np.diag(r))) < 1e-10 * max(1.0, np.max(np.abs(np.diag(r)))):
        raise FitFailure("Cox design matrix is singular (a column is constant or collinear)")
    scale = np.sqrt(n)
    names = [f"z{j}" for j in range(X.shape[1])]
    frame = pd.DataFrame(q * scale, columns=names)
    frame["_time"] = time
    frame["_event"] = event
    start = None
    if init is not None:
        # lifelines starts from coefficients of its own standardised columns
        start = (r @ np.asarray(init, dtype=float)) / scale * frame[names].std().to_numpy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            cph = CoxPHFitter().fit(frame, duration_col="_time", event_col="_event", initial_point=start)
        except Exception as exc:  # ConvergenceError, singular Hessian: the sample is unusable
            raise FitFailure(f"Cox fit failed: {exc}") from exc
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        raise FitFailure("Cox fit did not converge: " + "; ".join(
            str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)))
    gamma = cph.params_.to_numpy(dtype=float)
    coef = np.linalg.solve(r, gamma * scale)
    if not np.all(np.isfinite(coef)):
        raise FitFailure("Cox fit gave non-finite coefficients")
    return cox_fit_from_coef(coef, X, time, event)


def cox_fit_from_coef(coef, X, time, event):
    """A :class:`CoxFit` for given coefficients: centring, log-likelihoods, baseline survival.

    Parameters
    ----------
    coef : ndarray of shape (p,)
    X : ndarray of shape (n, p)
    time, event : ndarray of shape (n,)

    Returns
    -------
    CoxFit
    """
    coef = np.asarray(coef, dtype=float)
    center = float(X.mean(axis=0) @ coef)
    lp = X @ coef - center
    times, surv = efron_baseline(lp, time, event)
    return CoxFit(coef=coef, center=center, loglik=efron_loglik(lp, time, event),
                  loglik0=efron_loglik(np.zeros(len(time)), time, event), times=times, surv=surv,
                  n=len(time), events=int(np.sum(event)), max_time=float(np.max(time)))


def refit_cox_slope(x, time, event):
    """Slope and log-likelihood of a Cox refit on a single linear predictor ``x``.

    The one-dimensional maximum is found by SciPy's bounded Brent search on the
    Efron log-likelihood (concave in the slope).

    Parameters
    ----------
    x : ndarray of shape (n,)
    time, event : ndarray of shape (n,)

    Returns
    -------
    slope : float
    loglik : float
    """
    from scipy.optimize import minimize_scalar

    sd = x.std()
    if sd == 0:
        return 1.0, efron_loglik(np.zeros_like(x), time, event)
    xs = (x - x.mean()) / sd
    res = minimize_scalar(lambda b: -efron_loglik(b * xs, time, event), bounds=(-50.0, 50.0),
                          method="bounded", options={"xatol": 1e-10})
    return float(res.x / sd), float(-res.fun)
