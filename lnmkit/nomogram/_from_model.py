"""A :class:`Nomogram` for a model fitted by ``lnmkit.models``.

``LNMLogisticRegression`` (logistic) and ``CoxPH`` (Cox) are linear in their terms,
so their coefficients lay out as a nomogram directly. Axis ranges come from the
training data: ``CoxPH`` keeps its training design, ``LNMLogisticRegression`` does
not, so its training table must be passed. The Cox baseline survival is the Efron
estimate for the model's coefficients on its training data, as ``rms::cph`` stores
it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lnmkit.exceptions import NomogramInputError
from lnmkit.nomogram._design import _N_UNIQUE_DISCRETE, _NINT, Design, Term
from lnmkit.nomogram._fit import LogisticFit, cox_fit_from_coef
from lnmkit.nomogram._impute import PredictorImputer
from lnmkit.nomogram._pretty import pretty

__all__ = ["nomogram_from_model"]

_WHERE = "Nomogram.from_model"


def _numeric_term(name, values):
    xv = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    xv = xv[~np.isnan(xv)]
    if xv.size == 0 or np.unique(xv).size < 2:
        raise NomogramInputError(f"{_WHERE}: column {name!r} has fewer than 2 distinct values in the data; "
                                 "its axis has no range.")
    uniq = np.unique(xv)
    low, high = float(xv.min()), float(xv.max())
    axis = uniq if uniq.size <= _N_UNIQUE_DISCRETE else pretty(low, high, _NINT)
    return Term(name=name, kind="linear", columns=(name,), axis=tuple(float(v) for v in axis), low=low,
                high=high, adjust_to=float(np.median(xv)))


def _categorical_term(name, levels):
    levels = tuple(levels)
    return Term(name=name, kind="categorical", columns=tuple(f"{name}={lv}" for lv in levels[1:]),
                levels=levels, axis=levels, low=levels[0], high=levels[-1], adjust_to=levels[0])


def _require(data, columns):
    if data is None:
        raise NomogramInputError(f"{_WHERE}: this model does not keep its training data; pass data= (the "
                                 "training table) so that the axes span the observed ranges.")
    if not isinstance(data, pd.DataFrame):
        data = getattr(data, "frame", data)
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"{_WHERE}: data must be a pandas DataFrame; got {type(data).__name__}.")
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise NomogramInputError(f"{_WHERE}: data lacks the model's column(s) {missing}.")
    return data


def _logistic(model, data, outcome):
    from lnmkit.nomogram._nomogram import Nomogram, _check_outcome

    if getattr(model, "calibrator_", None) is not None:
        raise NomogramInputError(f"{_WHERE}: the model was recalibrated (calibration="
                                 f"{model.calibration!r}); its probabilities are no longer a logistic "
                                 "function of the terms. Fit it with calibration=None.")
    if getattr(model, "class_weight", None) is not None:
        raise NomogramInputError(f"{_WHERE}: the model was fitted with class_weight="
                                 f"{model.class_weight!r}; its probabilities do not estimate risk.")
    enc = model.encoder_
    if enc.indicators:
        raise NomogramInputError(f"{_WHERE}: missing-value indicator terms {enc.indicators} have no "
                                 "nomogram axis; fit the model with missing_indicator=False.")
    columns = [c for c in enc.columns if c not in enc.dropped]
    data = _require(data, columns)
    terms, coef = [], []
    for col in columns:
        if enc.kinds[col] == "numeric":
            terms.append(_numeric_term(col, data[col]))
            coef.append(float(model.coef_[col]))
        else:
            ref = enc.levels[col][0]
            others = [lv for lv in enc.levels[col][1:] if lv in enc.seen[col]]
            terms.append(_categorical_term(col, [ref, *others]))
            coef += [float(model.coef_[f"{col}[{lv}]"]) for lv in others]
    design = Design(terms=tuple(terms))
    raw = data[columns].copy()
    for col in columns:
        if enc.kinds[col] == "categorical":
            raw[col] = raw[col].astype(object).where(raw[col].notna(), None).map(
                lambda v: None if v is None else str(v))
    imputer = _model_imputer(enc.fill, design)
    filled = imputer.transform(raw)
    X = design.matrix(filled, _WHERE)
    coef = np.asarray(coef)
    lp = model.intercept_ + X @ coef
    y = None
    loglik = loglik0 = float("nan")
    if outcome is not None:
        y = _check_outcome(data, outcome, "logistic", _WHERE)
        loglik = float(np.sum(y * lp - np.logaddexp(0, lp)))
        p = y.mean()
        loglik0 = float(len(y) * (p * np.log(p) + (1 - p) * np.log(1 - p)))
    nomo = Nomogram(kind="logistic", design=design, outcome=outcome or "outcome")
    fit = LogisticFit(intercept=float(model.intercept_), coef=coef, loglik=loglik, loglik0=loglik0, n=len(X))
    nomo.imputer_ = imputer  # the model fills missing values with its training medians / modes
    nomo._train = None if y is None else {"raw": raw, "y": y, "impute": "median"}
    nomo._penalised = getattr(model, "penalty", None) is not None
    return nomo._set_fit(fit, X)


def _model_imputer(fill, design):
    """A fitted PredictorImputer holding a model's own fill values."""
    cats = [t.name for t in design.terms if t.kind == "categorical"]
    nums = [t.name for t in design.terms if t.kind != "categorical"]
    imp = PredictorImputer("median", nums, cats)
    imp.modes_ = {c: fill[c] for c in cats if c in fill}
    imp.medians_ = {c: float(fill[c]) for c in nums if c in fill and np.isfinite(fill[c])}
    imp.estimator_ = None
    return imp


def _cox(model, data, outcome, times):
    from lnmkit.nomogram._nomogram import Nomogram, _check_outcome, _check_times

    des = model.design_
    columns = list(des.columns_)
    enc = dict(getattr(des, "encoding_", {}))
    terms, coef = [], []
    if data is None:
        X_train, time, event = model._train
        frame = pd.DataFrame(np.asarray(X_train, dtype=float), columns=list(model.coef_.index))
        raw = pd.DataFrame(index=range(len(frame)))
        for col in columns:
            if col in enc:
                levels = enc[col]
                dummies = frame[[f"{col}={lv}" for lv in levels[1:]]].to_numpy()
                pick = np.where(dummies.any(axis=1), dummies.argmax(axis=1) + 1, 0)
                raw[col] = [levels[k] for k in pick]
            else:
                raw[col] = frame[col].to_numpy()
        y = (np.asarray(time, dtype=float), np.asarray(event).astype(int))
        outcome = outcome or ("time", "event")
    else:
        data = _require(data, columns)
        if outcome is None:
            raise NomogramInputError(f"{_WHERE}: with data=, give outcome=(time_column, event_column).")
        raw = data[columns].copy()
        y = _check_outcome(data, outcome, "cox", _WHERE)
    for col in columns:
        if col in enc:
            raw[col] = raw[col].astype(object).map(lambda v: None if v is None or v != v else str(v))
            terms.append(_categorical_term(col, enc[col]))
            coef += [float(model.coef_[f"{col}={lv}"]) for lv in enc[col][1:]]
        else:
            terms.append(_numeric_term(col, raw[col]))
            coef.append(float(model.coef_[col]))
    times = _check_times(times, "cox", y, _WHERE)
    design = Design(terms=tuple(terms))
    fill = getattr(des, "fill_", {}) or {}
    imputer = _model_imputer(fill, design) if raw.isna().any().any() else None
    filled = raw if imputer is None else imputer.transform(raw)
    X = design.matrix(filled, _WHERE)
    fit = cox_fit_from_coef(np.asarray(coef), X, y[0], y[1])
    nomo = Nomogram(kind="cox", design=design, outcome=tuple(outcome), times=times)
    nomo.imputer_ = imputer
    nomo._train = {"raw": raw, "y": y, "impute": None if imputer is None else "median"}
    nomo._penalised = float(getattr(model, "penalizer", 0.0) or 0.0) > 0
    return nomo._set_fit(fit, X)


def nomogram_from_model(model, data=None, outcome=None, times=None):
    """See :meth:`Nomogram.from_model`."""
    try:
        from lnmkit.models import CoxPH, LNMLogisticRegression
    except ImportError as exc:  # pragma: no cover - lnmkit.models ships with lnmkit
        raise TypeError(f"{_WHERE}: lnmkit.models is not available ({exc}).") from exc
    if isinstance(model, LNMLogisticRegression):
        if not hasattr(model, "encoder_"):
            raise NomogramInputError(f"{_WHERE}: the LNMLogisticRegression is not fitted; call fit first.")
        return _logistic(model, data, outcome)
    if isinstance(model, CoxPH):
        if not hasattr(model, "coef_"):
            raise NomogramInputError(f"{_WHERE}: the CoxPH is not fitted; call fit first.")
        return _cox(model, data, outcome, times)
    raise TypeError(f"{_WHERE}: model must be a fitted lnmkit.models.LNMLogisticRegression or CoxPH "
                    f"(linear models); got {type(model).__name__}. Tree models have no nomogram.")
