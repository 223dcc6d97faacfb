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

__all__ = ["FitFailure", "LogisticFit", "CoxFit", "fit_logistic", "logistic_fit_from_coef", "orthonormal_columns",
           "fit_cox", "cox_fit_from_coef", "efron_loglik", "efron_baseline"]


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
    return logistic_fit_from_coef(params[0], params[1:], res.llf, y)


def logistic_fit_from_coef(intercept, coef, loglik, y):
    """A :class:`LogisticFit` for given coefficients, with the intercept-only log-likelihood of ``y``.

    Parameters
    ----------
    intercept : float
    coef : ndarray of shape (p,)
    loglik : float
        Log-likelihood at the coefficients.
    y : ndarray of shape (n,), 0/1

    Returns
    -------
    LogisticFit
    """
    n = len(y)
    p = float(np.mean(y))
    loglik0 = n * (p * np.log(p) + (1 - p) * np.log(1 - p)) if 0 < p < 1 else 0.0
    return LogisticFit(intercept=float(intercept), coef=np.asarray(coef, dtype=float), loglik=float(loglik),
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
    from lnmkit.nomogram._newton import EfronTies

    return EfronTies(time, event).loglik(lp)


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


def orthonormal_columns(X):
    """Centred, orthonormalised columns and the map back to the coefficients of ``X``.

    With ``X - mean = z r``: a fit on ``z`` with coefficients ``gamma`` is the fit on
    ``X`` with ``beta = r^-1 gamma`` (intercepts shifted by ``mean @ beta``). Spline
    columns are nearly collinear; on ``z`` (columns of norm sqrt(n), orthogonal) every
    solver sees a well-conditioned problem with the same maximum.

    Parameters
    ----------
    X : ndarray of shape (n, p)

    Returns
    -------
    z : ndarray of shape (n, p)
    r : ndarray of shape (p, p)
        Upper triangular.
    mean : ndarray of shape (p,)

    Raises
    ------
    FitFailure
        If a column is constant or collinear with the others.
    """
    n = X.shape[0]
    mean = X.mean(axis=0)
    q, r = np.linalg.qr(X - mean)
    diag = np.abs(np.diag(r))
    if diag.size and np.min(diag) < 1e-10 * max(1.0, np.max(diag)):
        raise FitFailure("design matrix is singular (a column is constant or collinear)")
    return q * np.sqrt(n), r / np.sqrt(n), mean


def fit_cox(X, time, event):
    """Cox proportional hazards fit (lifelines ``CoxPHFitter``, Efron ties, no penalty).

    Parameters
    ----------
    X : ndarray of shape (n, p)
    time : ndarray of shape (n,)
    event : ndarray of shape (n,), 0/1

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

    # lifelines' step-size control stalls far from the maximum on nearly collinear
    # spline columns: it fits the orthonormalised ones.
    z, r, _ = orthonormal_columns(X)
    names = [f"z{j}" for j in range(X.shape[1])]
    frame = pd.DataFrame(z, columns=names)
    frame["_time"] = time
    frame["_event"] = event
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            cph = CoxPHFitter().fit(frame, duration_col="_time", event_col="_event")
        except Exception as exc:  # ConvergenceError, singular Hessian: the sample is unusable
            raise FitFailure(f"Cox fit failed: {exc}") from exc
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        raise FitFailure("Cox fit did not converge: " + "; ".join(
            str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)))
    coef = np.linalg.solve(r, cph.params_.to_numpy(dtype=float))
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
