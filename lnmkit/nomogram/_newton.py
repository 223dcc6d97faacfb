"""Bootstrap refits by Newton-Raphson on the logistic and Efron Cox likelihoods.

``validate`` and ``calibrate`` refit the nomogram's model B times (200 by default).
rms does this with its own compiled Newton solvers (``lrm.fit``, ``coxph.fit``). The
library fits behind the chart itself (statsmodels for logistic, lifelines for Cox,
:mod:`lnmkit.nomogram._fit`) carry a per-fit overhead, and lifelines walks the rows
in Python, which made B refits many times slower than rms. Here the logistic
likelihood is array code, and the Efron partial likelihood, its score and its
information come from one compiled pass over the rows sorted by time
(:mod:`lnmkit.nomogram._kernels`); each refit starts from the original fit's
coefficients, so it needs few steps. Tests hold the logistic refits to statsmodels
and the Cox refits to lifelines' likelihood on the same bootstrap samples, and
validate to rms on R's bootstrap samples.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from lnmkit.nomogram._fit import FitFailure, orthonormal_columns

__all__ = ["EfronTies", "newton_maximise", "refit_logistic", "refit_cox_coef", "cox_slope"]

_MAX_ITER = 50
_MAX_HALVINGS = 30
# Stop when the Newton decrement (twice the predicted gain) is below this, relative to
# |log L|: the estimate is then within about 1e-6 of the maximum per unit of standard error.
_TOL = 1e-12


def newton_maximise(objective, start, where):
    """Maximise a concave log-likelihood from ``start`` by Newton steps with step halving.

    Parameters
    ----------
    objective : callable
        ``beta -> (loglik, gradient, information)``; information is minus the Hessian.
    start : ndarray of shape (p,)
    where : str
        Names the model in a failure.

    Returns
    -------
    beta : ndarray of shape (p,)
    loglik : float

    Raises
    ------
    FitFailure
        If the information is not positive definite, no step improves the
        likelihood, or the steps do not converge.
    """
    beta = np.array(start, dtype=float)
    loglik, grad, info = objective(beta)
    if not np.isfinite(loglik):
        raise FitFailure(f"{where}: the log-likelihood is not finite at the starting point")
    for _ in range(_MAX_ITER):
        try:
            step = np.linalg.solve(info, grad)
        except np.linalg.LinAlgError as exc:
            raise FitFailure(f"{where}: the information matrix is singular (singular design)") from exc
        decrement = float(grad @ step)
        if not decrement >= 0:  # information not positive definite (or NaN): not a concave maximum
            raise FitFailure(f"{where}: the information matrix is not positive definite")
        for _ in range(_MAX_HALVINGS):
            new = beta + step
            new_loglik, new_grad, new_info = objective(new)
            if np.isfinite(new_loglik) and new_loglik >= loglik - 1e-12 * abs(loglik):
                break
            step = step / 2
        else:
            raise FitFailure(f"{where}: no Newton step increases the likelihood")
        beta, loglik, grad, info = new, new_loglik, new_grad, new_info
        if decrement <= _TOL * max(1.0, abs(loglik)):
            if not np.all(np.isfinite(beta)):
                break
            return beta, float(loglik)
    raise FitFailure(f"{where}: Newton steps did not converge in {_MAX_ITER} iterations")


def refit_logistic(X, y, init_intercept, init_coef):
    """Maximum-likelihood logistic regression, started at given coefficients.

    Parameters
    ----------
    X : ndarray of shape (n, p)
    y : ndarray of shape (n,), 0/1
    init_intercept : float
    init_coef : ndarray of shape (p,)

    Returns
    -------
    intercept : float
    coef : ndarray of shape (p,)
    loglik : float

    Raises
    ------
    FitFailure
        On a singular design, perfect prediction (every fitted probability equal
        to its outcome, where statsmodels also stops) or no convergence.
    """
    z, r, mean = orthonormal_columns(np.asarray(X, dtype=float))
    design = np.column_stack([np.ones(len(y)), z])
    y = np.asarray(y, dtype=float)
    coef0 = np.asarray(init_coef, dtype=float)
    start = np.concatenate([[init_intercept + mean @ coef0], r @ coef0])

    def objective(gamma):
        eta = design @ gamma
        p = expit(eta)
        loglik = float(np.sum(y * eta - np.logaddexp(0.0, eta)))
        return loglik, design.T @ (y - p), (design.T * (p * (1.0 - p))) @ design

    gamma, loglik = newton_maximise(objective, start, "logistic refit")
    if np.allclose(expit(design @ gamma), y):
        raise FitFailure("logistic refit: perfect separation (every fitted probability equals its outcome)")
    coef = np.linalg.solve(r, gamma[1:])
    return float(gamma[0] - mean @ coef), coef, loglik


class EfronTies:
    """Rows of ``(time, event)`` sorted for the Efron partial likelihood (compiled sums).

    Parameters
    ----------
    time : array-like of shape (n,)
    event : array-like of shape (n,), 0/1
    """

    def __init__(self, time, event):
        time = np.asarray(time, dtype=float)
        # longest time first: the kernel accumulates risk sets as it goes
        self.order = np.argsort(-time, kind="stable")
        t = time[self.order]
        self.event = np.asarray(event, dtype=float)[self.order]
        self.starts = np.append(np.flatnonzero(np.r_[True, t[1:] != t[:-1]]), t.size).astype(np.int64)

    def loglik(self, lp):
        """Efron partial log-likelihood of a linear predictor (rows in the original order).

        Parameters
        ----------
        lp : ndarray of shape (n,)

        Returns
        -------
        float
        """
        from lnmkit.nomogram._kernels import efron_derivatives

        lp = np.ascontiguousarray(np.asarray(lp, dtype=float)[self.order])
        return float(efron_derivatives(lp[:, None], self.event, self.starts, np.ones(1), False)[0])

    def objective(self, X):
        """``beta -> (loglik, gradient, information)`` of the Efron partial likelihood for design ``X``.

        Parameters
        ----------
        X : ndarray of shape (n, p)
            Rows in the original order.

        Returns
        -------
        callable
        """
        from lnmkit.nomogram._kernels import efron_derivatives

        Xs = np.ascontiguousarray(np.asarray(X, dtype=float)[self.order])

        def objective(beta):
            return efron_derivatives(Xs, self.event, self.starts, np.asarray(beta, dtype=float), True)

        return objective


def refit_cox_coef(X, time, event, init):
    """Cox coefficients (Efron ties) maximising the partial likelihood, started at ``init``.

    Parameters
    ----------
    X : ndarray of shape (n, p)
    time, event : ndarray of shape (n,)
    init : ndarray of shape (p,)

    Returns
    -------
    ndarray of shape (p,)

    Raises
    ------
    FitFailure
        On a singular design or no convergence (for example a monotone likelihood).
    """
    z, r, _ = orthonormal_columns(np.asarray(X, dtype=float))
    gamma, _ = newton_maximise(EfronTies(time, event).objective(z), r @ np.asarray(init, dtype=float),
                               "Cox refit")
    coef = np.linalg.solve(r, gamma)
    if not np.all(np.isfinite(coef)):
        raise FitFailure("Cox refit gave non-finite coefficients")
    return coef


def cox_slope(x, ties):
    """Slope and log-likelihood of a Cox refit on one linear predictor ``x`` (started at 1).

    Parameters
    ----------
    x : ndarray of shape (n,)
    ties : EfronTies
        Of the rows of ``x``.

    Returns
    -------
    slope : float
    loglik : float
    """
    sd = x.std()
    if sd == 0:
        return 1.0, ties.loglik(np.zeros_like(x))
    xs = ((x - x.mean()) / sd)[:, None]
    gamma, loglik = newton_maximise(ties.objective(xs), np.array([sd]), "Cox calibration slope")
    return float(gamma[0] / sd), loglik
