"""Model terms and design matrices, coded as rms codes them.

A numeric predictor enters linearly or as a restricted cubic spline (``rcs``); a
categorical predictor is dummy-coded against its first level (rms's
``contr.treatment``). Each term also carries its nomogram axis: the levels of a
categorical, the distinct values of a numeric predictor with at most 10 of them
(``datadist``'s discrete variables), otherwise R's ``pretty()`` ticks over the full
observed range (``nomogram(type.range = "full")``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lnmkit.exceptions import NomogramInputError
from lnmkit.nomogram._pretty import pretty
from lnmkit.nomogram._rcs import rcs_basis, rcs_column_names, rcs_knots

__all__ = ["Term", "Design", "build_design"]


def _show(value):
    """repr of a value as the user wrote it (numpy scalars as plain Python numbers)."""
    return repr(value.item() if isinstance(value, np.generic) else value)

# datadist: a numeric variable with at most this many distinct values is "discrete"
_N_UNIQUE_DISCRETE = 10
# nomogram(nint = 10): intervals asked of pretty() for a continuous axis
_NINT = 10


@dataclass(frozen=True)
class Term:
    """One predictor of the model.

    Attributes
    ----------
    name : str
        Column of the data.
    kind : {"linear", "rcs", "categorical"}
    columns : tuple of str
        Design-matrix column names (rms style: ``age``, ``age'``, ``tgrade=II``).
    knots : tuple of float
        Spline knots (``rcs`` only).
    levels : tuple
        Categories, the first being the reference (``categorical`` only).
    axis : tuple
        Values shown on the nomogram axis.
    low, high, adjust_to : object
        Observed minimum, maximum and ``datadist``'s adjust-to value (median, or the
        most frequent level).
    """

    name: str
    kind: str
    columns: tuple
    knots: tuple = ()
    levels: tuple = ()
    axis: tuple = ()
    low: object = None
    high: object = None
    adjust_to: object = None

    def matrix(self, values):
        """Design columns of this term for ``values``.

        Parameters
        ----------
        values : pandas.Series

        Returns
        -------
        ndarray of shape (n, len(columns))
        """
        if self.kind == "categorical":
            codes = _level_codes(values, self.levels, self.name)
            return np.column_stack([(codes == j).astype(float) for j in range(1, len(self.levels))])
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        if self.kind == "rcs":
            return rcs_basis(x, self.knots)
        return x[:, None]

    def to_dict(self):
        """JSON-ready description of the term.

        Returns
        -------
        dict
        """
        def plain(v):
            return v.item() if isinstance(v, np.generic) else v
        return {"name": self.name, "kind": self.kind, "columns": list(self.columns),
                "knots": [float(k) for k in self.knots], "levels": [plain(v) for v in self.levels],
                "axis": [plain(v) for v in self.axis], "low": plain(self.low),
                "high": plain(self.high), "adjust_to": plain(self.adjust_to)}

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`.

        Parameters
        ----------
        d : dict

        Returns
        -------
        Term
        """
        return cls(name=d["name"], kind=d["kind"], columns=tuple(d["columns"]),
                   knots=tuple(d["knots"]), levels=tuple(d["levels"]), axis=tuple(d["axis"]),
                   low=d["low"], high=d["high"], adjust_to=d["adjust_to"])


def _level_name(level):
    """A level as R prints it in a coefficient name (``1.0`` -> ``1``)."""
    if isinstance(level, (float, np.floating)) and float(level).is_integer():
        return str(int(level))
    return str(level)


def _level_codes(values, levels, name):
    """Index of each value in ``levels`` (compared as strings), -1 where absent."""
    lookup = {str(lv): j for j, lv in enumerate(levels)}
    return np.array([lookup.get(str(v), -1) for v in values], dtype=int)


@dataclass(frozen=True)
class Design:
    """The terms of a model and the design matrix they make.

    Attributes
    ----------
    terms : tuple of Term
    """

    terms: tuple = field(default_factory=tuple)

    @property
    def columns(self):
        """All design-matrix column names, in order."""
        return [c for t in self.terms for c in t.columns]

    @property
    def predictors(self):
        """Predictor (data column) names, in order."""
        return [t.name for t in self.terms]

    def slices(self):
        """Column slice of each term in the design matrix.

        Returns
        -------
        dict of str to slice
        """
        out, start = {}, 0
        for t in self.terms:
            out[t.name] = slice(start, start + len(t.columns))
            start += len(t.columns)
        return out

    def matrix(self, data, where="Nomogram"):
        """Design matrix of ``data`` (no intercept column).

        Parameters
        ----------
        data : pandas.DataFrame
            Holds every predictor column.
        where : str
            Caller named in error messages.

        Returns
        -------
        ndarray of shape (n, n_columns)

        Raises
        ------
        NomogramInputError
            If a predictor is missing, has a missing value, a non-numeric value in a
            numeric column or an unknown category.
        """
        check_predictor_values(data, self.terms, where)
        blocks = [t.matrix(data[t.name]) for t in self.terms]
        return np.hstack(blocks) if blocks else np.empty((len(data), 0))


def _row_label(data, pos):
    return f"row {pos + 1} (index {data.index[pos]!r})"


def check_predictor_values(data, terms, where):
    """Raise NomogramInputError on the first unusable predictor value of ``data``.

    Parameters
    ----------
    data : pandas.DataFrame
    terms : sequence of Term
    where : str
    """
    missing = [t.name for t in terms if t.name not in data.columns]
    if missing:
        raise NomogramInputError(f"{where}: predictor column(s) {missing} not found in the data; "
                                 f"columns are {list(data.columns)}.")
    for t in terms:
        col = data[t.name]
        na = col.isna().to_numpy()
        if na.any():
            pos = int(np.flatnonzero(na)[0])
            raise NomogramInputError(
                f"{where}: column {t.name!r} has {int(na.sum())} missing value(s), first at "
                f"{_row_label(data, pos)}: NaN. Drop those rows, or fit with impute='median' "
                "(or an imputer) so that the imputation is refitted in every bootstrap sample.")
        if t.kind == "categorical":
            codes = _level_codes(col, t.levels, t.name)
            if (codes < 0).any():
                pos = int(np.flatnonzero(codes < 0)[0])
                raise NomogramInputError(
                    f"{where}: column {t.name!r} has value {_show(col.iloc[pos])} at "
                    f"{_row_label(data, pos)}, not one of the fitted levels {list(t.levels)}.")
        else:
            x = pd.to_numeric(col, errors="coerce")
            bad = x.isna().to_numpy() | ~np.isfinite(x.to_numpy(dtype=float, na_value=np.nan))
            if bad.any():
                pos = int(np.flatnonzero(bad)[0])
                raise NomogramInputError(
                    f"{where}: column {t.name!r} must be numeric and finite; got "
                    f"{_show(col.iloc[pos])} at {_row_label(data, pos)}.")


def _is_categorical(series):
    return (isinstance(series.dtype, pd.CategoricalDtype) or series.dtype == object
            or pd.api.types.is_bool_dtype(series) or pd.api.types.is_string_dtype(series))


def _levels_of(series):
    observed = pd.unique(series.dropna())
    if isinstance(series.dtype, pd.CategoricalDtype):
        present = set(map(str, observed))
        return tuple(c for c in series.cat.categories if str(c) in present)
    try:
        return tuple(sorted(observed))
    except TypeError:
        return tuple(sorted(observed, key=str))


def _mode(series):
    counts = series.astype(str).value_counts(sort=False)
    return counts.idxmax()


def build_design(data, predictors, splines=None, knots=4, categorical=None, where="fit_nomogram"):
    """Terms for ``predictors`` of ``data``: knots, levels and axes fixed from the data.

    Parameters
    ----------
    data : pandas.DataFrame
        Complete (already imputed) predictor columns.
    predictors : sequence of str
    splines : sequence of str or dict of str to int, optional
        Numeric predictors fitted as restricted cubic splines; a dict gives each its
        own number of knots.
    knots : int, default=4
        Knots of every spline not given its own number.
    categorical : sequence of str, optional
        Numeric columns to treat as categorical (object, category and bool columns
        always are).
    where : str
        Caller named in error messages.

    Returns
    -------
    Design

    Raises
    ------
    NomogramInputError
        If a predictor is missing or constant, a spline is asked of a categorical
        column or of one with fewer distinct values than knots.
    """
    predictors = list(predictors)
    if not predictors:
        raise NomogramInputError(f"{where}: predictors must name at least one column; got [].")
    if len(set(predictors)) != len(predictors):
        raise NomogramInputError(f"{where}: predictors {predictors} name a column twice.")
    spline_knots = _spline_spec(splines, knots, predictors, where)
    categorical = set(categorical or ())
    missing = [p for p in predictors if p not in data.columns]
    if missing:
        raise NomogramInputError(f"{where}: predictor column(s) {missing} not found in the data; "
                                 f"columns are {list(data.columns)}.")
    terms = []
    for name in predictors:
        col = data[name]
        observed = col.dropna()
        n_unique = observed.nunique()
        if n_unique < 2:
            value = observed.iloc[0] if len(observed) else float("nan")
            raise NomogramInputError(
                f"{where}: predictor {name!r} has a single value ({_show(value)}) in all "
                f"{len(observed)} rows; it carries no information. Drop it from predictors.")
        if name in categorical or _is_categorical(col):
            if name in spline_knots:
                raise NomogramInputError(
                    f"{where}: splines asks for a spline on {name!r}, which is categorical "
                    f"(dtype {col.dtype}); splines apply to numeric predictors only.")
            levels = _levels_of(col)
            terms.append(Term(name=name, kind="categorical",
                              columns=tuple(f"{name}={_level_name(lv)}" for lv in levels[1:]),
                              levels=levels, axis=levels, low=levels[0], high=levels[-1],
                              adjust_to=_mode(col)))
            continue
        x = pd.to_numeric(col, errors="coerce")
        if x.notna().sum() < observed.size:
            pos = int(np.flatnonzero(x.isna().to_numpy() & col.notna().to_numpy())[0])
            raise NomogramInputError(
                f"{where}: column {name!r} is numeric but has value {_show(col.iloc[pos])} at "
                f"{_row_label(data, pos)}; fix the value or pass the column in categorical=.")
        xv = x.to_numpy(dtype=float)
        xv = xv[~np.isnan(xv)]
        low, high = float(xv.min()), float(xv.max())
        uniq = np.unique(xv)
        axis = tuple(float(v) for v in uniq) if uniq.size <= _N_UNIQUE_DISCRETE else \
            tuple(float(v) for v in pretty(low, high, _NINT))
        if name in spline_knots:
            k = spline_knots[name]
            if uniq.size < k:
                raise NomogramInputError(
                    f"{where}: spline on {name!r} asks for {k} knots but the column has only "
                    f"{uniq.size} distinct values ({', '.join(f'{u:g}' for u in uniq)}). "
                    "Use fewer knots or fit it linearly.")
            kn = rcs_knots(xv, k, where=where, column=name)
            terms.append(Term(name=name, kind="rcs", columns=tuple(rcs_column_names(name, kn.size)),
                              knots=tuple(float(v) for v in kn), axis=axis, low=low, high=high,
                              adjust_to=float(np.median(xv))))
        else:
            terms.append(Term(name=name, kind="linear", columns=(name,), axis=axis, low=low,
                              high=high, adjust_to=float(np.median(xv))))
    return Design(terms=tuple(terms))


def _spline_spec(splines, knots, predictors, where):
    if splines is None:
        return {}
    if isinstance(splines, str):
        splines = [splines]
    spec = dict(splines) if isinstance(splines, dict) else {s: knots for s in splines}
    for name, k in spec.items():
        if name not in predictors:
            raise NomogramInputError(f"{where}: splines names {name!r}, which is not one of the "
                                     f"predictors {predictors}.")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 3:
            raise NomogramInputError(f"{where}: knots for {name!r} must be an integer >= 3; got "
                                     f"{k!r} instead.")
    return {name: int(k) for name, k in spec.items()}
