"""Compiled loops of bootstrap validation (numba; imported on first use, cached on disk).

* :func:`concordance_sums`: pair counts of Somers' Dxy against censored survival;
* :func:`efron_derivatives`: the Efron partial log-likelihood, its gradient and information.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["concordance_sums", "efron_derivatives"]


@numba.njit(nogil=True, cache=True)
def concordance_sums(time, event, rank, n_ranks):
    """Sums over usable pairs of sign(score of the event - score of the other row), and their count.

    Parameters
    ----------
    time : ndarray of shape (n,)
        Sorted from the longest time down; at a tied time censored rows come first.
    event : ndarray of shape (n,), int8
    rank : ndarray of shape (n,), int64
        Dense ranks of the score, 1..n_ranks.
    n_ranks : int

    Returns
    -------
    difference : int
        Concordant minus discordant usable pairs (score ties count 0).
    usable : int
        Usable pairs: (event i, row j) with time j > time i, or equal with j censored.
    """
    tree = np.zeros(n_ranks + 1, dtype=np.int64)
    n = time.shape[0]
    inserted = 0
    difference = 0
    usable = 0
    start = 0
    while start < n:
        stop = start
        while stop < n and time[stop] == time[start]:
            stop += 1
        first_event = start
        while first_event < stop and event[first_event] == 0:
            k = rank[first_event]
            while k <= n_ranks:
                tree[k] += 1
                k += k & -k
            inserted += 1
            first_event += 1
        for i in range(first_event, stop):
            below = 0
            k = rank[i] - 1
            while k > 0:
                below += tree[k]
                k -= k & -k
            at_or_below = 0
            k = rank[i]
            while k > 0:
                at_or_below += tree[k]
                k -= k & -k
            difference += below - (inserted - at_or_below)
            usable += inserted
        for i in range(first_event, stop):
            k = rank[i]
            while k <= n_ranks:
                tree[k] += 1
                k += k & -k
            inserted += 1
        start = stop
    return difference, usable


@numba.njit(nogil=True, cache=True)
def efron_derivatives(X, event, starts, beta, with_derivatives):
    """Efron partial log-likelihood of ``X beta``, its gradient and information (minus the Hessian).

    Risk sets are accumulated from the longest time down, as ``coxph``'s C code does,
    so each is a sum of positive terms (no differences of large numbers).

    Parameters
    ----------
    X : ndarray of shape (n, p)
        Rows sorted from the longest time down.
    event : ndarray of shape (n,), float 0/1
    starts : ndarray of shape (n_times + 1,), int64
        First row of each distinct time, then n.
    beta : ndarray of shape (p,)
    with_derivatives : bool
        False returns the log-likelihood with zero gradient and information.

    Returns
    -------
    loglik : float
    gradient : ndarray of shape (p,)
    information : ndarray of shape (p, p)
    """
    n, p = X.shape
    lp = X @ beta
    shift = lp.max() if n > 0 else 0.0
    risk0 = 0.0
    risk1 = np.zeros(p)
    risk2 = np.zeros((p, p))
    tied1 = np.zeros(p)
    tied2 = np.zeros((p, p))
    mean1 = np.zeros(p)
    loglik = 0.0
    grad = np.zeros(p)
    info = np.zeros((p, p))
    for k in range(starts.shape[0] - 1):
        tied0 = 0.0
        deaths = 0
        if with_derivatives:
            tied1[:] = 0.0
            tied2[:, :] = 0.0
        for i in range(starts[k], starts[k + 1]):
            w = np.exp(lp[i] - shift)
            risk0 += w
            if event[i] > 0:
                tied0 += w
                deaths += 1
                loglik += lp[i] - shift
            if with_derivatives:
                for a in range(p):
                    wa = w * X[i, a]
                    risk1[a] += wa
                    for b in range(a + 1):
                        risk2[a, b] += wa * X[i, b]
                    if event[i] > 0:
                        tied1[a] += wa
                        grad[a] += X[i, a]
                        for b in range(a + 1):
                            tied2[a, b] += wa * X[i, b]
        for ell in range(deaths):
            f = ell / deaths
            denom = risk0 - f * tied0
            loglik -= np.log(denom)
            if with_derivatives:
                for a in range(p):
                    mean1[a] = (risk1[a] - f * tied1[a]) / denom
                    grad[a] -= mean1[a]
                for a in range(p):
                    for b in range(a + 1):
                        info[a, b] += (risk2[a, b] - f * tied2[a, b]) / denom - mean1[a] * mean1[b]
    for a in range(p):
        for b in range(a):
            info[b, a] = info[a, b]
    return loglik, grad, info
