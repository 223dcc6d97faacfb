"""Plumbing shared by every lnmkit survival model: target and time checks, the design
matrix (dummy coding of categoricals), and the scikit-survival style mixin.

Every survival model in :mod:`lnmkit.models` takes ``fit(X, y)`` with ``y`` a
scikit-survival structured array (fields ``event`` bool and ``time`` float, as
built by ``sksurv.util.Surv`` or :meth:`lnmkit.cohort.Cohort.survival`), and offers

* ``predict(X)``: a risk score, higher = worse prognosis (ndarray, X's row order);
* ``predict_survival_function(X, times=None)``: a patients x times DataFrame;
* ``score(X, y)``: Harrell's concordance index.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from lnmkit.exceptions import ModelInputError, NotFittedError

__all__ = ["check_survival_target", "check_times", "SurvivalDesign", "SurvivalModelMixin", "SavedSurvivalMixin"]


def _patient(index, i):
    return f"patient_id {index[i]!r} (row {i})" if index is not None else f"row {i}"


def check_survival_target(y, where, min_events=1, index=None):
    """The event indicator and times of a survival target, checked.

    Parameters
    ----------
    y : structured ndarray
        Fields ``event`` (bool) and ``time`` (float), e.g. from ``sksurv.util.Surv``.
    where : str
        Estimator or function name, for messages.
    min_events : int, default=1
        Fewest events the caller can work with.
    index : pandas.Index, optional
        Patient ids of the rows, named in messages.

    Returns
    -------
    event : ndarray of bool
    time : ndarray of float

    Raises
    ------
    TypeError
        If ``y`` is not a structured array with an event and a time field.
    lnmkit.exceptions.ModelInputError
        If a time is missing or <= 0, an event is not 0/1, every patient is
        censored, or there are fewer than ``min_events`` events.
    """
    arr = np.asarray(y)
    names = arr.dtype.names
    if names is None or len(names) != 2:
        raise TypeError(f"{where}: y must be a structured array with an event (bool) and a time (float) field, "
                        f"as made by sksurv.util.Surv.from_arrays(event, time) or Cohort.survival(); "
                        f"got {type(y).__name__} of dtype {arr.dtype} instead.")
    if arr.ndim != 1:
        raise ModelInputError(f"{where}: y must be one-dimensional; got shape {arr.shape}.")
    ev_name, t_name = names
    event_raw, time_raw = arr[ev_name], arr[t_name]
    try:
        time = np.asarray(time_raw, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: the time field {t_name!r} of y must be numeric; got dtype {time_raw.dtype}.") \
            from None
    if event_raw.dtype == bool:
        event = event_raw
    else:
        ev = np.asarray(event_raw, dtype=float)
        bad = np.flatnonzero(~np.isin(ev, (0.0, 1.0)))
        if bad.size:
            raise ModelInputError(f"{where}: the event field {ev_name!r} of y must be 0/1 or bool; got "
                                  f"{np.asarray(event_raw)[bad[0]].tolist()!r} for {_patient(index, bad[0])}.")
        event = ev.astype(bool)
    bad = np.flatnonzero(~np.isfinite(time) | (time <= 0))
    if bad.size:
        raise ModelInputError(f"{where}: survival times must be finite and > 0; got {float(time[bad[0]])!r} for "
                              f"{_patient(index, bad[0])} ({bad.size} such row(s)). Drop them, or record a "
                              f"same-day event or censoring as a small positive time (e.g. 0.5 days).")
    n_events = int(event.sum())
    if n_events == 0:
        raise ModelInputError(f"{where}: all {len(event)} patients are censored; a survival model needs "
                              f"events to learn from.")
    if n_events < min_events:
        raise ModelInputError(f"{where}: needs at least {min_events} events; got {n_events} among "
                              f"{len(event)} patients.")
    return event, time


def check_times(times, upper, where, lower=0.0):
    """Evaluation times as a 1-D float array inside the follow-up ``[lower, upper]``.

    Parameters
    ----------
    times : array-like of float
    upper : float
        Last time of the follow-up (e.g. the longest training time).
    where : str
    lower : float, default=0.0

    Returns
    -------
    ndarray of float

    Raises
    ------
    lnmkit.exceptions.ModelInputError
        If ``times`` is empty, not finite, or leaves the follow-up.
    """
    t = np.atleast_1d(np.asarray(times, dtype=float))
    if t.ndim != 1 or t.size == 0:
        raise ModelInputError(f"{where}: times must be a non-empty 1-D sequence of numbers; got shape {t.shape}.")
    if not np.isfinite(t).all():
        raise ModelInputError(f"{where}: times must be finite; got {float(t[~np.isfinite(t)][0])!r}.")
    out = (t < lower) | (t > upper)
    if out.any():
        raise ModelInputError(f"{where}: times must lie within the follow-up [{lower:g}, {upper:g}] of the "
                              f"training data; got {t[out][0]:g} ({int(out.sum())} time(s) outside). Survival "
                              f"beyond the last follow-up time is not identified by the data; ask for earlier times.")
    return t


class SurvivalDesign:
    """Numeric design matrix from a DataFrame: categoricals dummy-coded against their first level.

    Columns of pandas ``category`` dtype become one 0/1 column per level except the
    first level seen in training (the reference), named ``column=level`` as rms
    names them; bool columns become 0/1; numeric columns are used as they are.
    Levels are those present in the training data, in the order of the dtype's
    categories.

    Parameters
    ----------
    where : str
        Owner's name, for messages.
    allow_nan : bool, default=False
        Let missing values through (models that handle them).
    impute : {None, "median"}, default=None
        ``"median"``: fill missing values with the training median (numeric and
        bool columns) or the most frequent training level (categoricals), learned
        in :meth:`fit`. None: missing values raise unless ``allow_nan``.

    Attributes
    ----------
    columns_ : list of str
        Input columns, in order.
    encoding_ : dict of str -> list of str
        For each categorical column, its levels with the reference first.
    terms_ : dict of str -> list of str
        For each input column, the design columns it produced.
    design_columns_ : list of str
        Design column names.
    """

    def __init__(self, where, allow_nan=False, impute=None):
        self.where = where
        self.allow_nan = allow_nan
        self.impute = impute

    def fit(self, X):
        """Learn the columns and categorical levels of ``X``.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n, p)

        Returns
        -------
        self
        """
        frame = self._frame(X)
        self.columns_ = [str(c) for c in frame.columns]
        if len(set(self.columns_)) != len(self.columns_):
            dup = sorted({c for c in self.columns_ if self.columns_.count(c) > 1})
            raise ModelInputError(f"{self.where}: column names must be unique; {dup} appear more than once.")
        if self.impute not in (None, "median"):
            raise ValueError(f"{self.where}: impute must be None or 'median'; got {self.impute!r} instead.")
        self.encoding_, self.terms_, self.fill_ = {}, {}, {}
        for col in frame.columns:
            s = frame[col]
            name = str(col)
            if isinstance(s.dtype, pd.CategoricalDtype):
                present = set(s.dropna().unique())
                levels = [lv for lv in s.cat.categories if lv in present]
                if len(levels) < 2:
                    raise ModelInputError(f"{self.where}: categorical column {name!r} has {len(levels)} level(s) "
                                          f"in the training data ({levels}); drop it, it cannot be estimated.")
                self.encoding_[name] = [str(lv) for lv in levels]
                self.terms_[name] = [f"{name}={lv}" for lv in self.encoding_[name][1:]]
                self.fill_[name] = str(s.value_counts().idxmax())
            else:
                self._check_numeric(s, name)
                self.terms_[name] = [name]
                values = s.to_numpy(dtype=float, na_value=np.nan)
                if self.impute is not None and np.isnan(values).all():
                    raise ModelInputError(f"{self.where}: column {name!r} is missing for every training patient; "
                                          f"drop it.")
                self.fill_[name] = float(np.nanmedian(values)) if self.impute is not None else np.nan
        self.design_columns_ = [d for c in self.columns_ for d in self.terms_[c]]
        return self

    def _frame(self, X):
        if isinstance(X, pd.DataFrame):
            return X
        if isinstance(X, pd.Series):
            raise TypeError(f"{self.where}: X must be 2-D (a DataFrame or an array of shape (n, p)); got a Series. "
                            f"Use X.to_frame().")
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise ModelInputError(f"{self.where}: X must be 2-D; got shape {arr.shape}.")
        return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])

    def _check_numeric(self, s, name):
        if s.dtype == bool or pd.api.types.is_bool_dtype(s.dtype):
            return
        if not pd.api.types.is_numeric_dtype(s.dtype):
            raise TypeError(f"{self.where}: column {name!r} has dtype {s.dtype}; survival models take numbers, "
                            f"bools and pandas categoricals. Convert it, e.g. "
                            f"X[{name!r}] = X[{name!r}].astype('category').")

    def transform(self, X):
        """Design matrix of ``X``.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n, p)
            With the training columns (extra columns are ignored for DataFrames).

        Returns
        -------
        pandas.DataFrame
            Float columns :attr:`design_columns_`, X's index.
        """
        frame = self._frame(X)
        if isinstance(X, pd.DataFrame):
            frame = frame.rename(columns=str)
            missing = [c for c in self.columns_ if c not in frame.columns]
            if missing:
                raise ModelInputError(f"{self.where}: X lacks the training column(s) {missing}.")
        elif frame.shape[1] != len(self.columns_):
            raise ModelInputError(f"{self.where}: X has {frame.shape[1]} columns; the model was fitted on "
                                  f"{len(self.columns_)}.")
        else:
            frame.columns = self.columns_
        index = frame.index
        parts = {}
        for name in self.columns_:
            s = frame[name]
            if name in self.encoding_:
                levels = self.encoding_[name]
                values = s.astype(object).where(s.notna(), None)
                text = np.array([None if v is None else str(v) for v in values], dtype=object)
                if self.impute is not None:
                    text[[v is None for v in text]] = self.fill_[name]
                unseen = np.flatnonzero([(v is not None) and (v not in levels) for v in text])
                if unseen.size:
                    i = unseen[0]
                    raise ModelInputError(f"{self.where}: column {name!r} holds level {text[i]!r} for "
                                          f"{_patient(index, i)}, which the training data did not have "
                                          f"(known levels {levels}). Recode it to a known level.")
                isnan = np.array([v is None for v in text])
                for lv in levels[1:]:
                    col = (text == lv).astype(float)
                    col[isnan] = np.nan
                    parts[f"{name}={lv}"] = col
            else:
                self._check_numeric(s, name)
                values = s.to_numpy(dtype=float, na_value=np.nan)
                if self.impute is not None:
                    values = np.where(np.isnan(values), self.fill_[name], values)
                parts[name] = values
        design = pd.DataFrame(parts, index=index, columns=self.design_columns_, dtype=float)
        if not self.allow_nan:
            self._check_finite(design)
        return design

    def to_dict(self):
        """The fitted design as JSON-ready data (see :meth:`from_dict`).

        Returns
        -------
        dict
        """
        return {"impute": self.impute, "allow_nan": self.allow_nan, "columns": self.columns_,
                "encoding": self.encoding_, "terms": self.terms_,
                "fill": {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in self.fill_.items()}}

    @classmethod
    def from_dict(cls, d, where):
        """A fitted design from :meth:`to_dict`'s output.

        Parameters
        ----------
        d : dict
        where : str

        Returns
        -------
        SurvivalDesign
        """
        design = cls(where, allow_nan=bool(d["allow_nan"]), impute=d["impute"])
        design.columns_ = list(d["columns"])
        design.encoding_ = {k: list(v) for k, v in d["encoding"].items()}
        design.terms_ = {k: list(v) for k, v in d["terms"].items()}
        design.fill_ = {k: (np.nan if v is None else v) for k, v in d["fill"].items()}
        design.design_columns_ = [t for c in design.columns_ for t in design.terms_[c]]
        return design

    def _check_finite(self, design):
        values = design.to_numpy()
        bad = ~np.isfinite(values)
        if bad.any():
            rows, cols = np.nonzero(bad)
            col = design.columns[cols[0]]
            ids = [str(design.index[r]) for r in rows[cols == cols[0]][:5]]
            raise ModelInputError(f"{self.where}: column {col!r} has missing or infinite values (e.g. patient(s) "
                                  f"{ids}; {int(bad.sum())} value(s) in all). This model cannot take them: "
                                  f"pass impute='median' (learned on the training data), impute beforehand, "
                                  f"or drop those patients.")


class SurvivalModelMixin:
    """``score`` (Harrell's C), time checks and the survival-function DataFrame for subclasses.

    A subclass sets ``self.design_``, ``self.max_time_`` and ``self.event_times_`` in
    ``fit`` and implements ``_risk(design)`` and ``_survival(design, times)``.
    """

    _estimator_type = "survival"
    _min_events = 2

    def _check_fitted(self):
        if not hasattr(self, "design_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; call fit(X, y) first.")

    def _fit_checks(self, X, y):
        where = f"{type(self).__name__}.fit"
        index = X.index if isinstance(X, pd.DataFrame) else None
        event, time = check_survival_target(y, where, min_events=self._min_events, index=index)
        if len(event) != len(X):
            raise ModelInputError(f"{where}: X has {len(X)} rows but y has {len(event)}.")
        self.design_ = SurvivalDesign(where, allow_nan=getattr(self, "_allow_nan", False),
                                      impute=getattr(self, "impute", None)).fit(X)
        design = self.design_.transform(X)
        self.feature_names_in_ = np.array(self.design_.columns_, dtype=object)
        self.n_features_in_ = len(self.design_.columns_)
        self.max_time_ = float(time.max())
        self.event_times_ = np.unique(time[event])
        return design, event, time

    def _design(self, X, where):
        self._check_fitted()
        self.design_.where = f"{type(self).__name__}.{where}"
        return self.design_.transform(X)

    def predict(self, X):
        """Risk score of each patient; higher means worse prognosis.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n, p)

        Returns
        -------
        ndarray of shape (n,)
        """
        return np.asarray(self._risk(self._design(X, "predict")), dtype=float)

    def predict_survival_function(self, X, times=None):
        """Survival probability of each patient at each time.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n, p)
        times : array-like of float, optional
            Times within the training follow-up ``[0, max_time_]``; by default the
            distinct event times of the training data.

        Returns
        -------
        pandas.DataFrame
            Patients (X's index) x times; non-increasing in time, 1 at time 0.

        Raises
        ------
        lnmkit.exceptions.ModelInputError
            If a time lies outside the training follow-up.
        """
        design = self._design(X, "predict_survival_function")
        where = f"{type(self).__name__}.predict_survival_function"
        t = self.event_times_ if times is None else check_times(times, self.max_time_, where)
        surv = np.asarray(self._survival(design, t), dtype=float)
        surv = np.clip(surv, 0.0, 1.0)
        surv[:, t <= 0] = 1.0
        return pd.DataFrame(surv, index=design.index, columns=pd.Index(t, name="time"))

    def score(self, X, y):
        """Harrell's concordance index of :meth:`predict` on ``(X, y)``.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n, p)
        y : structured ndarray

        Returns
        -------
        float
        """
        from sksurv.metrics import concordance_index_censored

        event, time = check_survival_target(y, f"{type(self).__name__}.score")
        return float(concordance_index_censored(event, time, self.predict(X))[0])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags


def step_values(x, y, times, before=1.0):
    """Right-continuous step function through ``(x, y)`` evaluated at ``times``.

    Parameters
    ----------
    x : ndarray of shape (m,), increasing
    y : ndarray of shape (..., m)
    times : ndarray of shape (k,)
    before : float, default=1.0
        Value before ``x[0]``.

    Returns
    -------
    ndarray of shape (..., k)
    """
    idx = np.searchsorted(x, times, side="right") - 1
    y = np.asarray(y, dtype=float)
    padded = np.concatenate([np.full(y.shape[:-1] + (1,), before), y], axis=-1)
    return padded[..., idx + 1]


def is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class SavedSurvivalMixin:
    """``save(path)`` and the loader behind :func:`lnmkit.models.load_model` for survival models.

    One JSON file, no pickle: format, class, lnmkit version, parameters, the design
    (columns, levels, imputation values), the follow-up, and what the subclass's
    ``_model_state()`` returns; ``_load_model_state(state)`` restores the latter.
    """

    def save(self, path):
        """Write the fitted model to one JSON file (no pickle), with lnmkit's version.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        pathlib.Path
        """
        from lnmkit.models._lnm import write_model_doc

        self._check_fitted()
        state = {"max_time": self.max_time_, "event_times": self.event_times_.tolist(), **self._model_state()}
        return write_model_doc(self, path, {"design": self.design_.to_dict(), "state": state})

    @classmethod
    def _from_doc(cls, doc):
        model = cls(**doc["params"])
        model.design_ = SurvivalDesign.from_dict(doc["design"], where=cls.__name__)
        state = doc["state"]
        model.max_time_ = float(state["max_time"])
        model.event_times_ = np.asarray(state["event_times"], dtype=float)
        model.feature_names_in_ = np.array(model.design_.columns_, dtype=object)
        model.n_features_in_ = len(model.design_.columns_)
        model.design_columns_ = list(model.design_.design_columns_)
        model._load_model_state(state)
        return model

