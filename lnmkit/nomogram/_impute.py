"""Imputation of predictor columns, refitted inside every bootstrap sample by ``validate``.

``"median"`` fills numeric columns with their median and categorical columns with
their most frequent level; any scikit-learn imputer (``SimpleImputer``,
``KNNImputer``, ``IterativeImputer``) can take the numeric columns instead, and is
cloned for every bootstrap sample.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lnmkit.exceptions import NomogramInputError

__all__ = ["PredictorImputer"]


def _as_float(series):
    """A numeric column as float64 with NaN for missing (nullable Int64 / boolean included)."""
    return pd.to_numeric(series, errors="coerce").astype(float)


def _numeric_block(data, columns):
    return np.column_stack([_as_float(data[c]).to_numpy() for c in columns])


class PredictorImputer:
    """Fill missing predictor values with statistics of the rows it was fitted on.

    Parameters
    ----------
    method : "median" or scikit-learn transformer
        How numeric columns are filled; categorical columns always get their mode.
    numeric, categorical : list of str
        Predictor columns of each kind.
    """

    def __init__(self, method, numeric, categorical):
        self.method = method
        self.numeric = list(numeric)
        self.categorical = list(categorical)

    def fit(self, data):
        """Learn fill values from ``data``.

        Parameters
        ----------
        data : pandas.DataFrame

        Returns
        -------
        self
        """
        self.modes_ = {}
        for col in self.categorical:
            observed = data[col].dropna()
            if observed.empty:
                raise NomogramInputError(f"imputation: column {col!r} has no observed value to impute from.")
            self.modes_[col] = observed.value_counts().idxmax()
        if isinstance(self.method, str):
            self.medians_ = {col: float(_as_float(data[col]).median()) for col in self.numeric}
            bad = [c for c, v in self.medians_.items() if np.isnan(v)]
            if bad:
                raise NomogramInputError(f"imputation: column(s) {bad} have no observed value to impute from.")
            self.estimator_ = None
        elif self.numeric:
            from sklearn.base import clone

            self.estimator_ = clone(self.method).fit(_numeric_block(data, self.numeric))
        else:
            self.estimator_ = None
        return self

    def transform(self, data):
        """``data`` with its predictor columns filled (other columns untouched).

        Parameters
        ----------
        data : pandas.DataFrame

        Returns
        -------
        pandas.DataFrame
        """
        out = data.copy()
        for col, mode in self.modes_.items():
            if out[col].isna().any():
                # object first: a categorical dtype would refuse a fill value outside its categories
                out[col] = out[col].astype(object).where(out[col].notna(), mode)
        if self.numeric:
            if self.estimator_ is None:
                for col, med in self.medians_.items():
                    out[col] = _as_float(out[col]).fillna(med)
            else:
                filled = self.estimator_.transform(_numeric_block(out, self.numeric))
                out[self.numeric] = np.asarray(filled, dtype=float)
        return out

    def fit_transform(self, data):
        """Fit on ``data`` and fill it.

        Parameters
        ----------
        data : pandas.DataFrame

        Returns
        -------
        pandas.DataFrame
        """
        return self.fit(data).transform(data)
