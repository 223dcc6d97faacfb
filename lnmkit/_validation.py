"""Checks of scalar parameters at the public boundary, one narrow helper per kind.

Every helper raises ``ValueError`` with the same template, "``where``: ``name``
must be ...; got ``value`` instead.", and returns the value converted to a plain
Python number so that callers can hash or serialise it.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["check_positive", "check_non_negative", "check_fraction", "check_int"]


def _real(value):
    """``value`` as a finite float, or None if it is not a finite real number (bool excluded)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def check_positive(value, name, where) -> float:
    """Return ``value`` as a float if it is a finite number > 0.

    Parameters
    ----------
    value : object
        The parameter as given.
    name : str
        Parameter name, for the message.
    where : str
        Function or class that received it, for the message.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If ``value`` is not a finite real number greater than 0 (NaN included).
    """
    number = _real(value)
    if number is None or number <= 0:
        raise ValueError(f"{where}: {name} must be a positive number; got {value!r} instead.")
    return number


def check_non_negative(value, name, where) -> float:
    """Return ``value`` as a float if it is a finite number >= 0.

    Parameters
    ----------
    value : object
    name : str
    where : str

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If ``value`` is not a finite real number >= 0.
    """
    number = _real(value)
    if number is None or number < 0:
        raise ValueError(f"{where}: {name} must be a number >= 0; got {value!r} instead.")
    return number


def check_fraction(value, name, where, maximum=1.0) -> float:
    """Return ``value`` as a float if it lies in [0, ``maximum``].

    Parameters
    ----------
    value : object
    name : str
    where : str
    maximum : float, default=1.0
        Largest allowed value (below 1 where a share of 1 would leave nothing,
        e.g. a validation split).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If ``value`` is not a real number in [0, ``maximum``].
    """
    number = _real(value)
    if number is None or not 0.0 <= number <= maximum:
        raise ValueError(f"{where}: {name} must be in [0, {maximum:g}]; got {value!r} instead.")
    return number


def check_int(value, name, where, minimum=1, maximum=None) -> int:
    """Return ``value`` as an int if it is an integer in ``[minimum, maximum]``.

    Parameters
    ----------
    value : object
    name : str
    where : str
    minimum : int, default=1
        Smallest allowed value; the message says "positive integer" when it is 1.
    maximum : int, optional
        Largest allowed value.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        If ``value`` is not an integer (bool and float excluded) in range.
    """
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or value < minimum or (maximum is not None and value > maximum):
        if maximum is not None:
            allowed = f"an integer in [{minimum}, {maximum}]"
        else:
            allowed = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{where}: {name} must be {allowed}; got {value!r} instead.")
    return int(value)
