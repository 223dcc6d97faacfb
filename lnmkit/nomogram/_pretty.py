"""R's ``pretty()``: the tick values rms puts on nomogram axes.

A port of the algorithm of R's ``R_pretty`` (``src/appl/pretty.c``) with the
defaults of ``pretty.default`` (``min.n = n %/% 3``, ``shrink.sml = 0.75``,
``high.u.bias = 1.5``, ``u5.bias = 0.5 + 1.5 * high.u.bias``, no eps correction), so
that lnmkit's axes carry the same ticks, and hence the same points scale, as rms.
"""

from __future__ import annotations

import math
import sys

import numpy as np

__all__ = ["pretty"]

_EPS = sys.float_info.epsilon
_ROUNDING_EPS = 1e-10


def pretty(lo, hi, n=5):
    """About ``n + 1`` equally spaced round values covering ``[lo, hi]``.

    Parameters
    ----------
    lo, hi : float
        Range to cover (``lo <= hi``).
    n : int, default=5
        Desired number of intervals.

    Returns
    -------
    ndarray
        Values from at most ``lo`` to at least ``hi``, as R's ``pretty(c(lo, hi), n)``.
    """
    lo, hi = float(min(lo, hi)), float(max(lo, hi))
    min_n = n // 3
    h, h5 = 1.5, 0.5 + 1.5 * 1.5
    dx = hi - lo
    if dx == 0 and hi == 0:
        cell, small = 1.0, True
    else:
        cell = max(abs(lo), abs(hi))
        u = 1 + (1 / (1 + h) if h5 >= 1.5 * h + 0.5 else 1.5 / (1 + h5))
        u *= max(1, n) * _EPS
        small = dx < cell * u * 3
    if small:
        if cell > 10:
            cell = 9 + cell / 10
        cell *= 0.75
        if min_n > 1:
            cell /= min_n
    else:
        cell = dx
        if n > 1:
            cell /= n
    cell = max(cell, 2.0 ** -20 * sys.float_info.min)
    base = 10.0 ** math.floor(math.log10(cell))
    unit = base
    if 2 * base - cell < h * (cell - unit):
        unit = 2 * base
        if 5 * base - cell < h5 * (cell - unit):
            unit = 5 * base
            if 10 * base - cell < h * (cell - unit):
                unit = 10 * base
    ns = math.floor(lo / unit + _ROUNDING_EPS)
    nu = math.ceil(hi / unit - _ROUNDING_EPS)
    while ns * unit > lo + _ROUNDING_EPS * unit:
        ns -= 1
    while nu * unit < hi - _ROUNDING_EPS * unit:
        nu += 1
    k = int(0.5 + nu - ns)
    if k < min_n:
        k = min_n - k
        if ns >= 0:
            nu += k // 2
            ns -= k // 2 + k % 2
        else:
            ns -= k // 2
            nu += k // 2 + k % 2
        ndiv = min_n
    else:
        ndiv = k
    start, stop = min(ns * unit, lo), max(nu * unit, hi)
    values = np.linspace(start, stop, ndiv + 1) if ndiv else np.array([start])
    if ndiv:
        delta = (stop - start) / ndiv
        values[np.abs(values) < 1e-14 * delta] = 0.0
    return values
