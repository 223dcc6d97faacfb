"""LNM classifiers: logistic regression (unpenalised or L2) and XGBoost, scikit-learn style.

Both take a patient table (DataFrame indexed by ``patient_id``, categoricals and
missing values allowed), learn their preprocessing on the training patients only,
optionally calibrate their probabilities on out-of-fold predictions made inside the
training patients, and persist to JSON (XGBoost's own JSON inside) without pickle.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit, logit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from lnmkit._io import atomic_write_text
from lnmkit._validation import check_int, check_positive
from lnmkit._version import __version__
from lnmkit.exceptions import ModelInputError, NotFittedError, VersionWarning
from lnmkit.models._design import TableEncoder, as_frame

__all__ = ["LNMLogisticRegression", "LNMXGBClassifier", "load_model"]

_FORMAT = "lnmkit.models"


def _check_y(y, X, where):
    if isinstance(y, pd.Series):
        y = y.copy()
        y.index = y.index.astype(str)
        if y.index.has_duplicates or not X.index.isin(y.index).all():
            y = y.to_numpy() if len(y) == len(X) and not X.index.isin(y.index).any() else y.reindex(X.index)
        else:
            y = y.reindex(X.index)
    arr = np.asarray(y)
    if arr.ndim != 1 or len(arr) != len(X):
        raise ModelInputError(f"{where}: y must be 1-D with one value per row of X ({len(X)}); got shape {arr.shape}.")
    v = pd.to_numeric(pd.Series(arr, index=X.index), errors="coerce")
    if v.isna().any():
        ids = X.index[v.isna().to_numpy()][:5].tolist()
        raise ModelInputError(f"{where}: {int(v.isna().sum())} patient(s) have no outcome, e.g. patient_id {ids}; "
                              f"drop them before fitting.")
    bad = v[~v.isin([0, 1])]
    if len(bad):
        raise ModelInputError(f"{where}: y must be 0/1; got {bad.iloc[0]!r} for patient_id {bad.index[0]!r}.")
    if v.nunique() < 2:
        raise ModelInputError(f"{where}: y holds a single class ({int(v.iloc[0])}) in these {len(v)} patients; "
                              f"a classifier needs both pN0 and pN+ patients.")
    return v.astype(int).to_numpy()


def _sample_weight(y, class_weight):
    if class_weight is None:
        return None
    if class_weight == "balanced":
        counts = np.bincount(y, minlength=2)
        w = len(y) / (2.0 * counts)
        return w[y]
    raise ValueError(f"class_weight must be None or 'balanced'; got {class_weight!r} instead.")


class _Calibrator:
    """Platt (logistic on the logit) or isotonic map fitted on out-of-fold probabilities."""

    def __init__(self, method):
        self.method = method

    def fit(self, p, y):
        p = np.clip(p, 1e-12, 1 - 1e-12)
        if self.method == "sigmoid":
            lr = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000, solver="newton-cholesky").fit(
                logit(p)[:, None], y)
            self.a, self.b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        else:
            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y)
            self.x, self.y = iso.X_thresholds_.tolist(), iso.y_thresholds_.tolist()
        return self

    def __call__(self, p):
        p = np.clip(p, 1e-12, 1 - 1e-12)
        if self.method == "sigmoid":
            return expit(self.a * logit(p) + self.b)
        return np.interp(p, self.x, self.y)

    def to_dict(self):
        return ({"method": "sigmoid", "a": self.a, "b": self.b} if self.method == "sigmoid"
                else {"method": "isotonic", "x": self.x, "y": self.y})

    @classmethod
    def from_dict(cls, d):
        c = cls(d["method"])
        if c.method == "sigmoid":
            c.a, c.b = d["a"], d["b"]
        else:
            c.x, c.y = d["x"], d["y"]
        return c


class _LNMBase(ClassifierMixin, BaseEstimator):
    """Shared fit / calibration / persistence of lnmkit's LNM classifiers."""

    _impute = True

    def _where(self):
        return type(self).__name__

    def _check_params(self):
        where = self._where()
        if self.calibration not in (None, "sigmoid", "isotonic"):
            raise ValueError(f"{where}: calibration must be None, 'sigmoid' or 'isotonic'; "
                             f"got {self.calibration!r} instead.")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"{where}: class_weight must be None or 'balanced'; got {self.class_weight!r} instead.")
        check_int(self.calibration_cv, "calibration_cv", where, minimum=2)

    def fit(self, X, y):
        """Fit on training patients.

        Parameters
        ----------
        X : pandas.DataFrame or FusionTable
            Indexed by ``patient_id``; categorical columns (pandas Categorical or
            text) and missing values allowed.
        y : array-like of shape (n,) or pandas.Series
            0/1 (pN+ = 1); a Series is aligned on ``patient_id``.

        Returns
        -------
        self

        Raises
        ------
        ModelInputError
            Single-class or missing outcome, a column missing for every patient.
        """
        where = self._where()
        self._check_params()
        X = as_frame(X, where)
        yv = _check_y(y, X, where)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        self.classes_ = np.array([0, 1])
        if self.handle_unknown not in ("missing", "error"):
            raise ValueError(f"{where}: handle_unknown must be 'missing' or 'error'; got {self.handle_unknown!r} "
                             f"instead.")
        self.encoder_ = TableEncoder(impute=self._impute, missing_indicator=getattr(self, "missing_indicator", False),
                                     where=where, handle_unknown=self.handle_unknown).fit(X)
        design = self.encoder_.transform(X)
        self._fit_design(design, yv)
        self.calibrator_ = None
        if self.calibration is not None:
            self.calibrator_ = _Calibrator(self.calibration).fit(self._oof_probabilities(X, yv), yv)
        return self

    def _oof_probabilities(self, X, y):
        """Out-of-fold uncalibrated probabilities inside the training patients (for calibration)."""
        n_splits = min(self.calibration_cv, int(np.bincount(y).min()))
        if n_splits < 2:
            raise ModelInputError(f"{self._where()}: calibration needs at least 2 patients of each class; got "
                                  f"{np.bincount(y).tolist()}.")
        cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.random_state)
        out = np.empty(len(y))
        base = clone(self).set_params(calibration=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # constant columns inside a calibration fold
            for tr, te in cv.split(np.zeros(len(y)), y):
                out[te] = base.fit(X.iloc[tr], y[tr]).predict_proba(X.iloc[te])[:, 1]
        return out

    def _check_fitted(self):
        if not hasattr(self, "encoder_"):
            raise NotFittedError(f"This {self._where()} instance is not fitted yet; call fit with training "
                                 f"patients first.")

    def predict_proba(self, X):
        """Probabilities of pN0 and pN+.

        Parameters
        ----------
        X : pandas.DataFrame or FusionTable
            Same columns as in fit.

        Returns
        -------
        ndarray of shape (n, 2)
            Rows in X's order.

        Raises
        ------
        ModelInputError
            If a column is absent or a category level was not seen in fit.
        """
        self._check_fitted()
        X = as_frame(X, self._where())
        p = self._raw_proba(self.encoder_.transform(X))
        if self.calibrator_ is not None:
            p = self.calibrator_(p)
        return np.column_stack([1 - p, p])

    def predict(self, X):
        """0/1 at probability 0.5 (choose clinical thresholds with :mod:`lnmkit.evaluation`)."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    # ---------------------------------------------------------- persistence
    def save(self, path):
        """Write the fitted model to one JSON file (no pickle), with lnmkit's version.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        pathlib.Path
        """
        self._check_fitted()
        return write_model_doc(self, path, {
            "encoder": self.encoder_.to_dict(), "feature_names_in": list(self.feature_names_in_),
            "calibrator": None if self.calibrator_ is None else self.calibrator_.to_dict(),
            "state": self._state_dict()})

    @classmethod
    def _from_doc(cls, doc):
        model = cls(**doc["params"])
        model.encoder_ = TableEncoder.from_dict(doc["encoder"], where=cls.__name__)
        model.feature_names_in_ = np.asarray(doc["feature_names_in"], dtype=object)
        model.n_features_in_ = len(model.feature_names_in_)
        model.classes_ = np.array([0, 1])
        model.calibrator_ = None if doc["calibrator"] is None else _Calibrator.from_dict(doc["calibrator"])
        model._load_state(doc["state"])
        return model

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save`; warns (VersionWarning) if another lnmkit version wrote it."""
        model = load_model(path)
        if not isinstance(model, cls):
            raise TypeError(f"{cls.__name__}.load: {path} holds a {type(model).__name__}.")
        return model


class LNMLogisticRegression(_LNMBase):
    """Logistic regression for pN+ on a patient table, unpenalised (nomograms) or L2.

    Numeric columns enter linearly; a categorical column becomes one 0/1 term per
    level other than its first (reference) level, named ``column[level]``.
    Missing values are imputed with the training median / most frequent level
    (optionally with a ``column_missing`` indicator). The fit runs on standardised
    terms; ``coef_`` is reported on the original units of the design.

    Parameters
    ----------
    penalty : {None, "l2"}, default=None
        None: maximum likelihood (the coefficients a nomogram or R's ``glm`` /
        ``rms::lrm`` give). ``"l2"``: ridge on the standardised terms.
    C : float, default=1.0
        Inverse L2 strength (only with ``penalty="l2"``).
    class_weight : {None, "balanced"}, default=None
        "balanced" reweights classes (probabilities then no longer estimate risk
        unless recalibrated).
    calibration : {None, "sigmoid", "isotonic"}, default=None
        Recalibrate on out-of-fold probabilities made inside the training patients.
    calibration_cv : int, default=5
    missing_indicator : bool, default=False
    handle_unknown : {"missing", "error"}, default="missing"
        At prediction, a category level that is in the column's categories (the
        schema) but was absent from the training patients is treated as missing
        (with a warning) or raises; a level outside the categories always raises
        :class:`~lnmkit.exceptions.ModelInputError`.
    max_iter : int, default=1000
    random_state : int, default=0

    Attributes
    ----------
    coef_ : pandas.Series
        Log odds ratio per term, indexed by term name (stable for nomograms).
    intercept_ : float
    terms_ : list of str
        Design columns in order.
    design_ : dict
        The encoding (column kinds, category levels and reference, fill values).
    cov_ : pandas.DataFrame
        Covariance of (intercept, coefficients) from the observed information
        (unpenalised fits only; None otherwise).

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"age": [50, 61, 72, 45, 66, 70], "sex": ["M", "F", "M", "F", "M", "F"]})
    >>> m = LNMLogisticRegression(penalty="l2").fit(X, [0, 0, 1, 0, 1, 1])
    >>> list(m.coef_.index)
    ['age', 'sex[M]']
    """

    def __init__(self, penalty=None, *, C=1.0, class_weight=None, calibration=None, calibration_cv=5,
                 missing_indicator=False, handle_unknown="missing", max_iter=1000, random_state=0):
        self.penalty = penalty
        self.handle_unknown = handle_unknown
        self.C = C
        self.class_weight = class_weight
        self.calibration = calibration
        self.calibration_cv = calibration_cv
        self.missing_indicator = missing_indicator
        self.max_iter = max_iter
        self.random_state = random_state

    def _check_params(self):
        super()._check_params()
        if self.penalty not in (None, "l2"):
            raise ValueError(f"LNMLogisticRegression: penalty must be None or 'l2'; got {self.penalty!r} instead.")
        check_positive(self.C, "C", "LNMLogisticRegression")

    def _fit_design(self, design, y):
        Z = design.to_numpy(dtype=float)
        mu, sd = Z.mean(axis=0), Z.std(axis=0)
        sd[sd == 0] = 1.0
        # C=inf is maximum likelihood (scikit-learn >= 1.8 spells "no penalty" this way)
        # maximum likelihood is solved tightly (nomograms, agreement with R); ridge fits inside grid
        # searches need far fewer Newton steps
        lr = LogisticRegression(C=np.inf if self.penalty is None else float(self.C),
                                tol=1e-10 if self.penalty is None else 1e-6,
                                max_iter=self.max_iter, solver="newton-cholesky")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lr.fit((Z - mu) / sd, y, sample_weight=_sample_weight(y, self.class_weight))
        for w in caught:
            if "converge" in str(w.message).lower():
                warnings.warn(f"LNMLogisticRegression: the fit did not converge (possible separation: a term "
                              f"predicts pN status perfectly); consider penalty='l2'.", w.category, stacklevel=4)
        beta = lr.coef_[0] / sd
        self.coef_ = pd.Series(beta, index=list(design.columns), name="coef")
        self.intercept_ = float(lr.intercept_[0] - (mu / sd) @ lr.coef_[0])
        self.cov_ = self._covariance(Z, y) if self.penalty is None else None

    def _covariance(self, Z, y):
        D = np.column_stack([np.ones(len(Z)), Z])
        p = expit(self.intercept_ + Z @ self.coef_.to_numpy())
        w = p * (1 - p)
        w = w if self.class_weight is None else w * _sample_weight(y, self.class_weight)
        info = D.T @ (D * w[:, None])
        names = ["intercept", *self.coef_.index]
        try:
            cov = np.linalg.inv(info)
        except np.linalg.LinAlgError:
            cov = np.full(info.shape, np.nan)
        return pd.DataFrame(cov, index=names, columns=names)

    @property
    def terms_(self):
        """Design column names (list of str)."""
        self._check_fitted()
        return list(self.encoder_.terms)

    @property
    def design_(self):
        """The encoding learnt in fit (dict; see :class:`TableEncoder`)."""
        self._check_fitted()
        return self.encoder_.to_dict()

    def decision_function(self, X):
        """Linear predictor (log odds of pN+ before any recalibration), in X's row order."""
        self._check_fitted()
        Z = self.encoder_.transform(as_frame(X, self._where())).to_numpy(dtype=float)
        return self.intercept_ + Z @ self.coef_.to_numpy()

    def _raw_proba(self, design):
        return expit(self.intercept_ + design.to_numpy(dtype=float) @ self.coef_.to_numpy())

    def summary(self, level=0.95):
        """Coefficients with Wald CIs and odds ratios (unpenalised fits), as a DataFrame."""
        from scipy.stats import norm

        self._check_fitted()
        pct = int(round(level * 100))
        coef = pd.concat([pd.Series({"intercept": self.intercept_}), self.coef_])
        out = pd.DataFrame({"coef": coef})
        if self.cov_ is not None:
            se = np.sqrt(np.diag(self.cov_.to_numpy()))
            z = norm.ppf(0.5 + level / 2)
            out["se"] = se
            out[f"coef_lower_{pct}"] = coef.to_numpy() - z * se
            out[f"coef_upper_{pct}"] = coef.to_numpy() + z * se
            out["p"] = 2 * norm.sf(np.abs(coef.to_numpy() / se))
        out["odds_ratio"] = np.exp(out["coef"])
        return out

    def _state_dict(self):
        return {"coef": self.coef_.to_dict(), "terms": list(self.coef_.index), "intercept": self.intercept_,
                "cov": None if self.cov_ is None else self.cov_.to_numpy().tolist()}

    def _load_state(self, state):
        self.coef_ = pd.Series([state["coef"][t] for t in state["terms"]], index=state["terms"], name="coef")
        self.intercept_ = float(state["intercept"])
        names = ["intercept", *state["terms"]]
        self.cov_ = None if state["cov"] is None else pd.DataFrame(state["cov"], index=names, columns=names)


class LNMXGBClassifier(_LNMBase):
    """Gradient-boosted trees (XGBoost, ``hist``) for pN+ on a patient table.

    Categorical columns go to XGBoost as categories (levels seen in training) and
    missing values as NaN: both are handled natively, nothing is imputed.

    Parameters
    ----------
    n_estimators : int, default=200
    learning_rate : float, default=0.05
    max_depth : int, default=3
    min_child_weight : float, default=1.0
    subsample : float, default=0.8
    colsample_bytree : float, default=0.8
    reg_lambda : float, default=1.0
    class_weight : {None, "balanced"}, default=None
        "balanced" sets ``scale_pos_weight`` = n_negative / n_positive.
    calibration : {None, "sigmoid", "isotonic"}, default=None
    calibration_cv : int, default=5
    handle_unknown : {"missing", "error"}, default="missing"
        At prediction, a category level that is in the column's categories (the
        schema) but was absent from the training patients is treated as missing
        (with a warning) or raises; a level outside the categories always raises
        :class:`~lnmkit.exceptions.ModelInputError`.
    n_jobs : int, default=1
    random_state : int, default=0

    Attributes
    ----------
    booster_ : xgboost.Booster
    feature_importances_ : pandas.Series
        Total gain per column.
    """

    _impute = False

    def __init__(self, *, n_estimators=200, learning_rate=0.05, max_depth=3, min_child_weight=1.0, subsample=0.8,
                 colsample_bytree=0.8, reg_lambda=1.0, class_weight=None, calibration=None, calibration_cv=5,
                 handle_unknown="missing", n_jobs=1, random_state=0):
        self.handle_unknown = handle_unknown
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.class_weight = class_weight
        self.calibration = calibration
        self.calibration_cv = calibration_cv
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _check_params(self):
        super()._check_params()
        where = "LNMXGBClassifier"
        check_int(self.n_estimators, "n_estimators", where, minimum=1)
        check_int(self.max_depth, "max_depth", where, minimum=1)
        check_positive(self.learning_rate, "learning_rate", where)

    def _fit_design(self, design, y):
        import xgboost as xgb

        spw = 1.0
        if self.class_weight == "balanced":
            counts = np.bincount(y, minlength=2)
            spw = float(counts[0] / counts[1])
        params = {"objective": "binary:logistic", "eval_metric": "logloss", "tree_method": "hist",
                  "eta": float(self.learning_rate), "max_depth": int(self.max_depth),
                  "min_child_weight": float(self.min_child_weight), "subsample": float(self.subsample),
                  "colsample_bytree": float(self.colsample_bytree), "lambda": float(self.reg_lambda),
                  "scale_pos_weight": spw, "nthread": int(self.n_jobs), "seed": int(self.random_state)}
        dtrain = _dmatrix(design, label=y, nthread=int(self.n_jobs))
        self.booster_ = xgb.train(params, dtrain, num_boost_round=int(self.n_estimators))

    def _raw_proba(self, design):
        return self.booster_.predict(_dmatrix(design, nthread=int(self.n_jobs)))

    @property
    def feature_importances_(self):
        """Total gain per column (pandas Series, 0 for unused columns)."""
        self._check_fitted()
        gain = self.booster_.get_score(importance_type="total_gain")
        return pd.Series({t: float(gain.get(t, 0.0)) for t in self.encoder_.terms}, name="total_gain")

    def _state_dict(self):
        return {"booster": json.loads(bytes(self.booster_.save_raw("json")).decode("utf-8"))}

    def _load_state(self, state):
        import xgboost as xgb

        self.booster_ = xgb.Booster()
        self.booster_.load_model(bytearray(json.dumps(state["booster"]).encode("utf-8")))


def _dmatrix(design, label=None, nthread=1):
    """XGBoost DMatrix of a design; a numeric one goes as one float32 array (much faster than by column)."""
    import xgboost as xgb

    if all(dt.kind == "f" for dt in design.dtypes):
        return xgb.DMatrix(design.to_numpy(dtype=np.float32), label=label, feature_names=list(design.columns),
                           missing=np.nan, nthread=nthread)
    return xgb.DMatrix(design, label=label, enable_categorical=True, nthread=nthread)


def write_model_doc(model, path, content):
    """Write a fitted model's JSON document atomically: format, class, lnmkit version, parameters, ``content``.

    Parameters
    ----------
    model : estimator
    path : str or path-like
    content : dict
        The class's own fitted state (JSON-ready).

    Returns
    -------
    pathlib.Path
    """
    doc = {"format": _FORMAT, "class": type(model).__name__, "lnmkit_version": __version__,
           "params": model.get_params(), **content}
    atomic_write_text(Path(path), json.dumps(doc, indent=1))
    return Path(path)


def _model_classes():
    from lnmkit.models._cox import CoxPH
    from lnmkit.models._xgb_survival import XGBAFTSurvival, XGBCoxSurvival

    return {cls.__name__: cls for cls in (LNMLogisticRegression, LNMXGBClassifier, CoxPH, XGBCoxSurvival,
                                          XGBAFTSurvival)}


def load_model(path):
    """Read a model written by its ``save`` (JSON; never unpickles).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    LNMLogisticRegression, LNMXGBClassifier, CoxPH, XGBCoxSurvival or XGBAFTSurvival

    Warns
    -----
    VersionWarning
        If the file was written by another lnmkit version.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"load_model: {path} is not a JSON model file ({exc}); it may be truncated or "
                         "another kind of file.") from None
    classes = _model_classes()
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT or doc.get("class") not in classes:
        doc = doc if isinstance(doc, dict) else {}
        raise ValueError(f"load_model: {path} is not an lnmkit model file (format {doc.get('format')!r}, "
                         f"class {doc.get('class')!r}).")
    if doc.get("lnmkit_version") != __version__:
        warnings.warn(f"load_model: {path} was written by lnmkit {doc.get('lnmkit_version')!r}; this is "
                      f"lnmkit {__version__}. Check its predictions before relying on them.", VersionWarning,
                      stacklevel=2)
    try:
        return classes[doc["class"]]._from_doc(doc)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"load_model: {path} holds an incomplete or edited {doc['class']} ({type(exc).__name__}: "
                         f"{exc}); write it again with the model's save().") from None
