"""Restricted cubic splines as R ``rms::rcs`` builds them: Hmisc knot placement and basis.

Knots follow ``Hmisc::rcspline.eval`` with its defaults (``fractied = 0.05``):
equally spaced quantiles (R type 7) between outer quantiles 0.10 (3 knots), 0.05
(4 to 6 knots) or 0.025 (7 or more); with fewer than 100 observations the outer
knots move to the 5th smallest and 5th largest values. The basis is the
``norm = 2`` truncated-power basis, so that spline coefficients have the same scale
as rms reports them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["rcs_knots", "rcs_basis", "rcs_column_names"]


def _outer_quantile(n_knots):
    if n_knots == 3:
        return 0.10
    return 0.05 if n_knots <= 6 else 0.025


def rcs_knots(x, n_knots=4, fractied=0.05, where="rcs_knots", column="x"):
    """Knot locations of a restricted cubic spline, as ``Hmisc::rcspline.eval``.

    Parameters
    ----------
    x : array-like of shape (n_samples,)
        Observed values; NaN values are ignored.
    n_knots : int, default=4
        Number of knots requested (3 or more).
    fractied : float, default=0.05
        When the lowest (or highest) value holds at least this share of the
        observations and no interior value does, that end knot is taken as the
        next distinct value, as Hmisc does for variables piled at a limit.
    where, column : str
        Function and column named in error messages.

    Returns
    -------
    ndarray of shape (k,)
        Sorted distinct knots; ``k`` can be smaller than ``n_knots`` when the
        variable has few distinct values (Hmisc then uses the interior values).

    Raises
    ------
    ValueError
        If there are fewer than 6 non-missing values, ``n_knots < 3``, or fewer
        than 3 distinct knots can be placed.
    """
    xx = np.asarray(x, dtype=float)
    xx = xx[~np.isnan(xx)]
    n = xx.size
    if n < 6:
        raise ValueError(f"{where}: column {column!r} has {n} non-missing values; a spline "
                         "needs at least 6.")
    if n_knots < 3:
        raise ValueError(f"{where}: knots must be an integer >= 3; got {n_knots!r} instead.")
    unique = np.unique(xx)
    if unique.size - 2 <= n_knots:
        knots = unique[1:-1]
    else:
        outer = _outer_quantile(n_knots)
        n_eff = n_knots
        first, last = [], []
        override_first = override_last = False
        if 0 < fractied < 1:
            values, counts = np.unique(xx, return_counts=True)
            share = counts / n
            if share[1:-1].max() < fractied:
                if share[0] >= fractied:
                    first = [xx[xx > xx.min()].min()]
                    xx = xx[xx > first[0]]
                    n_eff -= 1
                    override_first = True
                if share[-1] >= fractied:
                    last = [xx[xx < xx.max()].max()]
                    xx = xx[xx < last[0]]
                    n_eff -= 1
                    override_last = True
        if n_eff == 1:
            inner = np.array([np.median(xx)])
        elif unique.size <= n_eff:
            inner = unique
        else:
            probs = (np.linspace(0.5, 1 - outer, n_eff) if n_eff == 2
                     else np.linspace(outer, 1 - outer, n_eff))
            inner = np.quantile(xx, probs)  # numpy "linear" is R's type 7
            if np.unique(inner).size < min(n_eff, 3):
                inner = np.quantile(xx, np.linspace(outer, 1 - outer, 2 * n_eff))
            if xx.size < 100:
                srt = np.sort(xx)
                if not override_first:
                    inner[0] = srt[4]
                if not override_last:
                    inner[-1] = srt[-5]
        knots = np.concatenate([first, inner, last])
    knots = np.unique(knots)
    if knots.size < 3:
        raise ValueError(f"{where}: column {column!r} gives only {knots.size} distinct knot(s) "
                         f"({', '.join(f'{k:g}' for k in knots)}); a restricted cubic spline "
                         "needs 3. Fit it linearly instead.")
    return knots


def rcs_basis(x, knots):
    """Restricted cubic spline basis (Hmisc ``norm = 2``): x itself, then k - 2 terms.

    Parameters
    ----------
    x : array-like of shape (n_samples,)
    knots : array-like of shape (k,)
        Sorted knots, k >= 3.

    Returns
    -------
    ndarray of shape (n_samples, k - 1)
        Column 0 is ``x``; column j is
        ``((x-t_j)_+^3 - (x-t_{k-1})_+^3 (t_k-t_j)/(t_k-t_{k-1})
        + (x-t_k)_+^3 (t_{k-1}-t_j)/(t_k-t_{k-1})) / (t_k-t_1)^2``.
    """
    x = np.asarray(x, dtype=float)
    t = np.asarray(knots, dtype=float)
    k = t.size
    scale = (t[-1] - t[0]) ** 2
    def cube(v):
        return np.maximum(v, 0.0) ** 3
    last, penult = t[-1], t[-2]
    cols = [x]
    for j in range(k - 2):
        term = (cube(x - t[j])
                + ((penult - t[j]) * cube(x - last) - (last - t[j]) * cube(x - penult)) / (last - penult))
        cols.append(term / scale)
    return np.column_stack(cols)


def rcs_column_names(name, n_knots):
    """rms's names of the basis columns: ``age``, ``age'``, ``age''``, ...

    Parameters
    ----------
    name : str
    n_knots : int

    Returns
    -------
    list of str
    """
    return [name + "'" * j for j in range(n_knots - 1)]
