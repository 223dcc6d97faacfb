"""Preprocessing of a patient table for LNM models, fitted on the training patients only.

Categorical columns keep the levels of their dtype (a FusionTable gives the schema
levels, never the levels a fold happens to hold); the first level is the reference.
Missing values are imputed (median / most frequent level of the training patients)
for models that cannot take them; XGBoost gets them as they are.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from lnmkit.exceptions import ModelInputError

__all__ = ["TableEncoder", "as_frame"]


def as_frame(X, where):
    """``X`` as a DataFrame (numpy arrays get columns ``x0..``); index as str."""
    X = getattr(X, "frame", X)
    if isinstance(X, pd.DataFrame):
        out = X.copy()
    else:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise ValueError(f"{where}: X must be 2-D (patients x features); got shape {arr.shape}.")
        out = pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])
    out.index = out.index.astype(str)
    return out


def _is_categorical(s):
    return isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object or pd.api.types.is_string_dtype(s)


class TableEncoder:
    """Column types, levels and imputation values learnt from training patients.

    Parameters
    ----------
    impute : bool
        Impute missing values (logistic models) or keep them as NaN (XGBoost).
    missing_indicator : bool
        With ``impute``, add a ``<column>_missing`` 0/1 term for every numeric column
        that had missing values in the training patients.
    where : str
        Estimator name for messages.
    handle_unknown : {"missing", "error"}
        A level of the column's categories (the schema) that no training patient
        had: treated as missing with a warning, or an error. A level outside the
        categories is always an error.
    """

    def __init__(self, impute=True, missing_indicator=False, where="model", handle_unknown="missing"):
        self.impute = impute
        self.missing_indicator = missing_indicator
        self.where = where
        self.handle_unknown = handle_unknown

    # ------------------------------------------------------------------ fit
    def fit(self, X):
        """Learn the encoding from training patients ``X`` (DataFrame); returns self."""
        self.columns = list(X.columns)
        self.kinds, self.levels, self.seen, self.fill, self.indicators = {}, {}, {}, {}, []
        dropped = []
        for col in self.columns:
            s = X[col]
            if s.isna().all():
                raise ModelInputError(f"{self.where}: column {col!r} is missing for every training patient; "
                                      f"drop it from the features.")
            if _is_categorical(s):
                levels = (list(s.cat.categories) if isinstance(s.dtype, pd.CategoricalDtype)
                          else sorted(s.dropna().astype(str).unique()))
                seen = set(s.dropna().astype(str))
                self.kinds[col] = "categorical"
                self.levels[col] = [str(v) for v in levels]
                self.seen[col] = sorted(seen)
                mode = s.dropna().astype(str).value_counts()
                self.fill[col] = str(mode.index[0])
                if len(seen) < 2:
                    dropped.append(col)
            else:
                if s.dtype == bool:
                    s = s.astype(float)
                v = pd.to_numeric(s, errors="coerce")
                self.kinds[col] = "numeric"
                self.fill[col] = float(v.median())
                if v.dropna().nunique() < 2:
                    dropped.append(col)
                elif self.impute and self.missing_indicator and v.isna().any():
                    self.indicators.append(col)
        if dropped:
            warnings.warn(f"{self.where}: column(s) {dropped} are constant in the training patients and are "
                          f"left out of this fit.", UserWarning, stacklevel=4)
        self.dropped = dropped
        self.terms = self._terms()
        if not self.terms:
            raise ModelInputError(f"{self.where}: no usable feature left (every column is constant or empty).")
        return self

    def _terms(self):
        terms = []
        for col in self.columns:
            if col in self.dropped:
                continue
            if self.kinds[col] == "numeric":
                terms.append(col)
                if col in self.indicators:
                    terms.append(f"{col}_missing")
            elif self.impute:
                ref = self.levels[col][0]
                terms += [f"{col}[{lev}]" for lev in self.levels[col] if lev != ref and lev in self.seen[col]]
            else:
                terms.append(col)
        return terms

    # ------------------------------------------------------------ transform
    def check(self, X):
        """Raise :class:`ModelInputError` for missing columns and unseen category levels."""
        missing = [c for c in self.columns if c not in X.columns]
        if missing:
            raise ModelInputError(f"{self.where}: X lacks column(s) {missing} seen in fit.")
        for col in self.columns:
            if self.kinds[col] != "categorical" or col in self.dropped:
                continue
            s = X[col].dropna().astype(str)
            unseen = s[~s.isin(self.seen[col])]
            if not len(unseen):
                continue
            unknown = unseen[~unseen.isin(self.levels[col])]
            if self.handle_unknown == "missing" and not len(unknown):
                warnings.warn(f"{self.where}: column {col!r} has level(s) {sorted(set(unseen))} (in its categories "
                              f"but absent from the training patients) for {len(unseen)} patient(s), e.g. "
                              f"patient_id {unseen.index[0]!r}; treated as missing.", UserWarning, stacklevel=4)
                continue
            bad = unknown if len(unknown) else unseen
            pid, val = bad.index[0], bad.iloc[0]
            known = "unknown" if len(unknown) else "in the schema but absent from the training patients"
            raise ModelInputError(
                f"{self.where}: column {col!r} has level {val!r} for patient_id {pid!r}, {known}; levels "
                f"seen in fit: {self.seen[col]}. Merge rare levels, or set the value to missing.")

    def transform(self, X):
        """Design DataFrame (one column per term, in ``terms`` order) for ``X``, index kept."""
        self.check(X)
        blocks = {}
        num = [c for c in self.columns if c not in self.dropped and self.kinds[c] == "numeric"]
        if num:
            A = X[num].to_numpy(dtype=float, na_value=np.nan)
            missing = np.isnan(A)
            if self.impute:
                fill = np.array([self.fill[c] for c in num])
                A = np.where(missing, fill, A)
            for j, c in enumerate(num):
                blocks[c] = A[:, j]
                if self.impute and c in self.indicators:
                    blocks[f"{c}_missing"] = missing[:, j].astype(float)
        categorical = False
        for col in self.columns:
            if col in self.dropped or self.kinds[col] != "categorical":
                continue
            seen = self.seen[col]
            vals = X[col].astype(object).to_numpy()
            vals = np.array([str(v) if v is not None and not (isinstance(v, float) and np.isnan(v))
                             and str(v) in seen else None for v in vals], dtype=object)
            if self.impute:
                vals = np.where(pd.isna(vals), self.fill[col], vals)
                ref = self.levels[col][0]
                for lev in self.levels[col]:
                    if lev != ref and lev in seen:
                        blocks[f"{col}[{lev}]"] = (vals == lev).astype(float)
            else:
                blocks[col] = pd.Categorical(vals, categories=seen)
                categorical = True
        if not categorical:
            arr = np.column_stack([blocks[t] for t in self.terms]) if self.terms else np.empty((len(X), 0))
            return pd.DataFrame(arr, index=X.index, columns=self.terms)
        return pd.DataFrame({t: blocks[t] for t in self.terms}, index=X.index)

    # ---------------------------------------------------------- persistence
    def to_dict(self):
        """JSON-serialisable description of the encoding."""
        return {"columns": self.columns, "kinds": self.kinds, "levels": self.levels, "seen": self.seen,
                "fill": self.fill, "indicators": self.indicators, "dropped": self.dropped, "terms": self.terms,
                "impute": self.impute, "missing_indicator": self.missing_indicator,
                "handle_unknown": self.handle_unknown}

    @classmethod
    def from_dict(cls, d, where="model"):
        """Rebuild an encoder written by :meth:`to_dict`."""
        enc = cls(impute=d["impute"], missing_indicator=d["missing_indicator"], where=where,
                  handle_unknown=d.get("handle_unknown", "missing"))
        for key in ("columns", "kinds", "levels", "seen", "fill", "indicators", "dropped", "terms"):
            setattr(enc, key, d[key])
        return enc
