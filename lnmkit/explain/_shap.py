"""SHAP values for every lnmkit model, as ``shap.Explanation`` objects.

Three exact or sampled methods, chosen from the model:

* trees (XGBoost classifier, ``survival:cox``, ``survival:aft``): exact TreeSHAP on
  the raw margin, from xgboost's own ``pred_contribs`` (default) or
  ``shap.TreeExplainer``;
* linear models (logistic regression, Cox): exact linear SHAP
  ``phi_j = beta_j (x_j - mean_j)`` on the linear predictor, the background mean
  taken over ``background``;
* anything else (random survival forest, gradient-boosted survival, or any model
  on S(t) at a horizon): a permutation explainer with an interventional
  background masker (lnmkit's numpy sampler, or shap's), whose values add up
  exactly (each permutation telescopes from the background to the patient).

Whatever the method, the result is checked: SHAP values plus the base value must
reproduce the model's own raw output (``predict(output_margin=True)`` for XGBoost,
the decision function or log partial hazard for linear models) within ``atol``;
otherwise :class:`lnmkit.exceptions.AdditivityError` is raised.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lnmkit.exceptions import AdditivityError, ExplainError

__all__ = ["explain", "check_additivity", "model_output", "ModelSpec", "model_spec", "SCALES"]

#: Scale labels written into ``Explanation.output_names``.
SCALES = {
    "binary:logistic": "log-odds",
    "binary:logitraw": "log-odds",
    "survival:cox": "log relative hazard",
    "survival:aft": "log survival time",
    "logistic": "log-odds",
    "cox": "log relative hazard",
}


@dataclass(frozen=True)
class ModelSpec:
    """How :func:`explain` treats a model.

    Attributes
    ----------
    kind : {"tree", "linear", "sampled"}
    scale : str
        What the SHAP values add up to (e.g. ``"log-odds"``).
    raw : callable
        ``raw(X: DataFrame) -> ndarray``: the model's own raw output on the
        table's columns, used for the additivity check.
    features : list of str
        Table columns the model needs, in its order.
    booster : xgboost.Booster, optional
        Trees (kind ``"tree"``).
    dmatrix : callable, optional
        ``dmatrix(design) -> xgboost.DMatrix`` as the model builds it.
    coef, intercept : ndarray, float
        Linear predictor ``intercept + design @ coef`` (kind ``"linear"``).
    transform : callable, optional
        ``transform(X) -> design`` when the model works on an encoded design
        (dummy-coded categoricals, imputed values); SHAP values are computed on
        the design and summed back to the table columns with ``groups``.
    groups : dict of str to list of str, optional
        Table column -> its design columns.
    """

    kind: str
    scale: str
    raw: object
    features: list
    booster: object = None
    dmatrix: object = None
    coef: object = None
    intercept: float = 0.0
    transform: object = None
    groups: dict = None


# --------------------------------------------------------------------------- model kinds
def _xgb_objective(booster):
    config = json.loads(booster.save_config())
    return config["learner"]["objective"]["name"]


def _xgb_dmatrix(booster, X):
    import xgboost as xgb

    names = booster.feature_names
    frame = X[list(names)] if names is not None else X
    return xgb.DMatrix(frame, enable_categorical=True, missing=np.nan)


def _tree_spec(model, X):
    booster = model if type(model).__name__ == "Booster" else model.get_booster()
    objective = _xgb_objective(booster)
    if objective.startswith("multi:"):
        raise ExplainError(f"explain: multi-class XGBoost objective {objective!r} is not supported; "
                           "fit a binary classifier.")
    scale = SCALES.get(objective, f"raw margin ({objective})")
    names = list(booster.feature_names) if booster.feature_names is not None else list(X.columns)

    def dmatrix(frame):
        return _xgb_dmatrix(booster, frame)

    def raw(frame):
        return booster.predict(dmatrix(frame), output_margin=True).astype(np.float64)

    return ModelSpec("tree", scale, raw, names, booster=booster, dmatrix=dmatrix)


def _is_lifelines_cox(model):
    return type(model).__name__ == "CoxPHFitter" and hasattr(model, "params_")


def _linear_spec(model, X):
    name = type(model).__name__
    if _is_lifelines_cox(model):
        beta = model.params_
        names = list(beta.index)
        center = np.asarray(model._norm_mean.reindex(names), float) if hasattr(model, "_norm_mean") else None

        def raw(frame):
            return np.asarray(model.predict_log_partial_hazard(frame[names]), float).reshape(-1)

        # lifelines centres the linear predictor at the training means.
        offset = -float(np.dot(beta.to_numpy(float), center)) if center is not None else 0.0
        return ModelSpec("linear", SCALES["cox"], raw, names, coef=beta.to_numpy(float), intercept=offset)
    coef = np.asarray(model.coef_, float)
    if coef.ndim == 2:
        if coef.shape[0] != 1:
            raise ExplainError(f"explain: {name} has {coef.shape[0]} coefficient rows; only binary "
                               "classifiers and single-output models are supported.")
        coef = coef[0]
    names = list(getattr(model, "feature_names_in_", X.columns[: coef.size]))
    if hasattr(model, "decision_function") and hasattr(model, "classes_"):
        intercept = float(np.ravel(model.intercept_)[0])

        def raw(frame):
            return np.asarray(model.decision_function(frame[names]), float).reshape(-1)

        return ModelSpec("linear", SCALES["logistic"], raw, names, coef=coef, intercept=intercept)
    # scikit-survival Cox models: predict() is the uncentred linear predictor.
    offset = float(getattr(model, "offset_", 0.0) or 0.0) if hasattr(model, "offset_") else 0.0

    def raw_cox(frame):
        return np.asarray(model.predict(frame[names]), float).reshape(-1)

    return ModelSpec("linear", SCALES["cox"], raw_cox, names, coef=coef, intercept=-offset)


def _encoder_groups(enc):
    """Table column -> design terms of an LNM model's TableEncoder."""
    groups = {}
    for col in enc.columns:
        if col in enc.dropped:
            groups[col] = []
        elif enc.kinds[col] == "numeric":
            groups[col] = [col] + ([f"{col}_missing"] if col in enc.indicators else [])
        elif enc.impute:
            ref = enc.levels[col][0]
            groups[col] = [f"{col}[{lev}]" for lev in enc.levels[col] if lev != ref and lev in enc.seen[col]]
        else:
            groups[col] = [col]
    return groups


def _lnmkit_spec(model, X):
    """Models of ``lnmkit.models``: explained on their design, summed back to table columns."""
    import xgboost as xgb

    name = type(model).__name__
    if hasattr(model, "encoder_"):  # LNM classifiers
        enc = model.encoder_
        groups = _encoder_groups(enc)
        transform = enc.transform
        features = list(enc.columns)
        if getattr(model, "calibrator_", None) is not None:
            import warnings

            warnings.warn(f"explain: {name} is recalibrated ({model.calibration}); SHAP values explain the "
                          "log-odds before recalibration.", UserWarning, stacklevel=4)
        if hasattr(model, "booster_"):
            booster = model.booster_

            def dmatrix(design):
                return xgb.DMatrix(design, enable_categorical=True)

            def raw(frame):
                return booster.predict(dmatrix(transform(frame)), output_margin=True).astype(np.float64)

            return ModelSpec("tree", SCALES["logistic"], raw, features, booster=booster, dmatrix=dmatrix,
                             transform=transform, groups=groups)

        def raw_lin(frame):
            return np.asarray(model.decision_function(frame), float)

        return ModelSpec("linear", SCALES["logistic"], raw_lin, features,
                         coef=model.coef_.reindex(enc.terms).to_numpy(float), intercept=float(model.intercept_),
                         transform=transform, groups=groups)
    if hasattr(model, "design_") and hasattr(model.design_, "terms_"):  # survival models
        design = model.design_
        groups = {c: list(design.terms_[c]) for c in design.columns_}
        features = list(design.columns_)
        transform = design.transform
        if hasattr(model, "booster_"):
            booster = model.booster_
            objective = _xgb_objective(booster)

            def dmatrix_s(d):
                return xgb.DMatrix(d.to_numpy(dtype=np.float32), missing=np.nan)

            def raw_s(frame):
                return booster.predict(dmatrix_s(transform(frame)), output_margin=True).astype(np.float64)

            return ModelSpec("tree", SCALES.get(objective, objective), raw_s, features, booster=booster,
                             dmatrix=dmatrix_s, transform=transform, groups=groups)
        if hasattr(model, "coef_") and hasattr(model, "centre_"):  # CoxPH
            coef = model.coef_.reindex(model.design_columns_).to_numpy(float)
            centre = model.centre_.reindex(model.design_columns_).to_numpy(float)

            def raw_cox(frame):
                return np.asarray(model.predict(frame), float)

            return ModelSpec("linear", SCALES["cox"], raw_cox, features, coef=coef,
                             intercept=-float(np.dot(coef, centre)), transform=transform, groups=groups)

        def raw_risk(frame):
            return np.asarray(model.predict(frame), float)

        return ModelSpec("sampled", "risk score", raw_risk, features)
    raise ExplainError(f"explain: {name} is not a fitted lnmkit model (no encoder_ / design_); call fit first.")


def _is_lnmkit_model(model):
    return type(model).__module__.startswith("lnmkit.models")


def model_spec(model, X):
    """Decide how :func:`explain` treats ``model``.

    Parameters
    ----------
    model : estimator
        A fitted model (see :func:`explain`).
    X : pandas.DataFrame

    Returns
    -------
    ModelSpec
    """
    if _is_lnmkit_model(model):
        return _lnmkit_spec(model, X)
    cls = type(model)
    mod = cls.__module__
    if mod.startswith("xgboost") and (cls.__name__ == "Booster" or hasattr(model, "get_booster")):
        return _tree_spec(model, X)
    if _is_lifelines_cox(model):
        return _linear_spec(model, X)
    if hasattr(model, "coef_") and cls.__name__ in {"LogisticRegression", "CoxPHSurvivalAnalysis",
                                                    "CoxnetSurvivalAnalysis", "LogisticRegressionCV"}:
        return _linear_spec(model, X)
    if hasattr(model, "predict"):
        names = list(getattr(model, "feature_names_in_", X.columns))

        def raw(frame):
            return np.asarray(model.predict(frame[names]), float).reshape(-1)

        label = "risk score" if mod.startswith("sksurv") else "model output"
        return ModelSpec("sampled", label, raw, names)
    raise ExplainError(f"explain: cannot explain a {cls.__module__}.{cls.__name__}; pass an xgboost model, "
                       "a logistic / Cox model, a scikit-survival model or an lnmkit model.")


# --------------------------------------------------------------------------- survival at a horizon
def survival_function_at(model, horizon):
    """``f(X) -> S(horizon | X)`` for a fitted survival model.

    Parameters
    ----------
    model : lifelines CoxPHFitter, scikit-survival model or lnmkit survival model
    horizon : float

    Returns
    -------
    callable
    """
    horizon = float(horizon)
    if _is_lifelines_cox(model):
        def f(frame):
            return np.asarray(model.predict_survival_function(frame, times=[horizon]), float).reshape(-1)
        return f
    if type(model).__module__.startswith("sksurv"):
        def f(frame):
            fns = model.predict_survival_function(frame, return_array=False)
            return np.array([fn(horizon) for fn in fns], float)
        return f
    if hasattr(model, "predict_survival_function"):
        def f(frame):
            out = model.predict_survival_function(frame, [horizon])
            return np.asarray(out, float).reshape(len(frame), -1)[:, 0]
        return f
    raise ExplainError(f"explain: {type(model).__name__} has no predict_survival_function; output='survival' "
                       "needs a survival model (a raw survival:cox Booster has no baseline hazard: use "
                       "lnmkit.models' XGBoost Cox model).")


# --------------------------------------------------------------------------- helpers
def _encode(X):
    """Numeric copy of X for maskers and plots: categoricals become float codes (NaN = missing)."""
    out = pd.DataFrame(index=X.index)
    cats = {}
    for c in X.columns:
        col = X[c]
        if col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
            col = col.astype("category")  # text columns are shown and masked like categoricals
        if isinstance(col.dtype, pd.CategoricalDtype):
            cats[c] = col.dtype
            codes = col.cat.codes.to_numpy().astype(np.float64)
            codes[codes < 0] = np.nan
            out[c] = codes
        elif col.dtype == bool:
            out[c] = col.astype(np.float64)
        else:
            out[c] = pd.to_numeric(col, errors="raise").astype(np.float64)
    return out, cats


def _decode(arr, columns, cats, dtypes):
    frame = pd.DataFrame(np.asarray(arr, dtype=np.float64), columns=columns)
    for c, dtype in cats.items():
        codes = frame[c].to_numpy()
        codes = np.where(np.isnan(codes), -1, np.round(codes)).astype(int)
        frame[c] = pd.Categorical.from_codes(codes, dtype=dtype)
    for c in columns:
        if c not in cats and dtypes[c] == bool:
            frame[c] = frame[c].astype(bool)
    return frame


def _display(X):
    """Display values (category labels as strings), or None when all columns are numeric."""
    if not any(isinstance(X[c].dtype, pd.CategoricalDtype) or X[c].dtype == object for c in X.columns):
        return None
    return X.astype(object).where(X.notna(), np.nan).to_numpy()


def check_additivity(explanation, raw_output, atol=1e-4, where="explain"):
    """Raise unless SHAP values plus base values equal ``raw_output`` within ``atol``.

    Parameters
    ----------
    explanation : shap.Explanation
        Two-dimensional (patients x features).
    raw_output : array-like of shape (n_patients,)
        The model's own output on the same rows, computed without SHAP.
    atol : float, default=1e-4
    where : str
        Name used in the message.

    Returns
    -------
    float
        The largest absolute difference.

    Raises
    ------
    AdditivityError
    """
    values = np.asarray(explanation.values, float)
    total = values.sum(axis=1) + np.asarray(explanation.base_values, float).reshape(-1)
    raw_output = np.asarray(raw_output, float).reshape(-1)
    err = np.abs(total - raw_output)
    worst = float(np.nanmax(err)) if err.size else 0.0
    if not np.isfinite(total).all() or worst > atol:
        i = int(np.nanargmax(err)) if err.size else 0
        raise AdditivityError(
            f"{where}: SHAP values plus base value differ from the model output by {worst:.3g} "
            f"(> atol={atol:g}); row {i}: SHAP sum {total[i]:.6g}, model output {raw_output[i]:.6g}. "
            "Report this with the model's objective and xgboost/shap versions; pass check_additivity=False "
            "to skip the check.", worst)
    return worst


_check_additivity = check_additivity


def model_output(model, X):
    """The raw output that :func:`explain` decomposes (margin, log-odds, log hazard, risk).

    Parameters
    ----------
    model : estimator
    X : pandas.DataFrame

    Returns
    -------
    numpy.ndarray of shape (n_patients,)
    """
    X = _check_frame(X, "model_output")
    spec = model_spec(model, X)
    return spec.raw(X)


def _check_frame(X, where):
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"{where}: X must be a pandas DataFrame indexed by patient_id (e.g. the fusion "
                        f"table's frame); got {type(X).__name__}.")
    if X.index.has_duplicates:
        dup = X.index[X.index.duplicated()][:5].tolist()
        raise ExplainError(f"{where}: X has duplicated patient_id(s) {dup}.")
    return X


def _frame_of(table):
    """The DataFrame inside a FusionTable-like object, or the DataFrame itself."""
    if isinstance(table, pd.DataFrame):
        return table
    for attr in ("frame", "data", "table", "df"):
        inner = getattr(table, attr, None)
        if isinstance(inner, pd.DataFrame):
            return inner
    if hasattr(table, "to_frame"):
        return table.to_frame()
    raise TypeError(f"explain: expected a DataFrame or a FusionTable; got {type(table).__name__}.")


# --------------------------------------------------------------------------- methods
def _tree_values(spec, design, engine):
    if engine == "xgboost":
        contribs = spec.booster.predict(spec.dmatrix(design), pred_contribs=True)
        contribs = np.asarray(contribs, np.float64)
        return contribs[:, :-1], contribs[:, -1]
    import shap

    explainer = shap.TreeExplainer(spec.booster, model_output="raw", feature_perturbation="tree_path_dependent")
    frame = design if spec.booster.feature_names is not None else design.to_numpy(dtype=np.float32)
    values = np.asarray(explainer.shap_values(frame, check_additivity=False), np.float64)
    base = np.full(len(design), float(np.ravel(explainer.expected_value)[0]))
    return values, base


def _linear_values(spec, design, background):
    enc, cats = _encode(design)
    if cats:
        raise ExplainError(f"explain: linear models take numeric columns; {sorted(cats)} are categorical. "
                           "Dummy-code them (or use an lnmkit model, which does it inside).")
    bg, _ = _encode(background)
    mean = bg.mean(axis=0).to_numpy()
    if np.isnan(mean).any() or enc.isna().any().any():
        bad = sorted(set(enc.columns[enc.isna().any()]) | set(bg.columns[np.isnan(mean)]))
        raise ExplainError(f"explain: missing values in column(s) {bad}; a linear model cannot score them. "
                           "Impute first (lnmkit's models impute inside each training fold).")
    values = (enc.to_numpy() - mean) * spec.coef
    base = np.full(len(design), spec.intercept + float(np.dot(mean, spec.coef)))
    return values, base


def _group(values, design_columns, groups, features):
    """Sum design-column SHAP values back to their table columns."""
    pos = {c: i for i, c in enumerate(design_columns)}
    out = np.zeros((values.shape[0], len(features)))
    for j, f in enumerate(features):
        idx = [pos[t] for t in groups.get(f, []) if t in pos]
        if idx:
            out[:, j] = values[:, idx].sum(axis=1)
    return out


def _permutations(p, n_permutations, rng):
    """Antithetic permutation pairs, or every permutation when there are few enough (exact Shapley)."""
    import itertools
    import math

    if math.factorial(p) <= n_permutations:
        return [np.array(perm) for perm in itertools.permutations(range(p))]
    perms = []
    while len(perms) < n_permutations:
        perm = rng.permutation(p)
        perms += [perm, perm[::-1]]
    return perms[:max(2, n_permutations - n_permutations % 2)]


def _permutation_shap(fn, x, bg, perms):
    """Shapley values of one row by permutation sampling with an interventional (background) masker.

    For each permutation the features are switched from the background rows to
    the patient's values one at a time; the change of the mean model output is
    the feature's marginal contribution. The contributions of one permutation
    telescope from ``mean f(background)`` to ``f(x)``, so the values add up
    exactly whatever the number of permutations.
    """
    p, nb, m = x.size, bg.shape[0], len(perms)
    rows = np.broadcast_to(bg, (m, p + 1, nb, p)).copy()  # (m, p + 1, nb, p)
    for j, perm in enumerate(perms):
        for k in range(p):
            rows[j, k + 1:, :, perm[k]] = x[perm[k]]
    out = np.asarray(fn(rows.reshape(-1, p)), float).reshape(m, p + 1, nb).mean(axis=2)  # (m, p + 1)
    values = np.zeros(p)
    steps = np.diff(out, axis=1)  # (m, p)
    for j, perm in enumerate(perms):
        values[perm] += steps[j]
    return values / m, float(out[:, 0].mean())


def _sampled_values(f, X, features, background, n_permutations, n_background, random_state, sampler="lnmkit"):
    enc, cats = _encode(X[features])
    bg, _ = _encode(background[features])
    rng = np.random.default_rng(random_state)
    if len(bg) > n_background:
        bg = bg.iloc[np.sort(rng.choice(len(bg), n_background, replace=False))]
    dtypes = X[features].dtypes

    def fn(arr):
        return np.asarray(f(_decode(arr, features, cats, dtypes)), float).reshape(-1)

    p = len(features)
    if sampler == "shap":
        import shap

        masker = shap.maskers.Independent(bg.to_numpy(), max_samples=len(bg))
        explainer = shap.explainers.Permutation(fn, masker, seed=int(random_state))
        res = explainer(enc.to_numpy(), max_evals=int(2 * n_permutations * (p + 1)), silent=True)
        return np.asarray(res.values, float), np.asarray(res.base_values, float).reshape(-1)
    perms = _permutations(p, int(n_permutations), rng)
    bg_arr, x_arr = bg.to_numpy(), enc.to_numpy()
    values = np.zeros((len(enc), p))
    base = np.zeros(len(enc))
    for i in range(len(enc)):
        values[i], base[i] = _permutation_shap(fn, x_arr[i], bg_arr, perms)
    return values, base


def explain(
    model,
    X,
    *,
    output="raw",
    horizon=None,
    background=None,
    engine="xgboost",
    n_permutations=10,
    n_background=50,
    sampler="lnmkit",
    random_state=0,
    check_additivity=True,
    atol=1e-4,
):
    """SHAP values of a fitted model for the patients in ``X``.

    Parameters
    ----------
    model : estimator
        A fitted ``xgboost`` model (``XGBClassifier``, ``XGBRegressor`` or ``Booster``;
        ``binary:logistic``, ``survival:cox`` or ``survival:aft``); a binary
        ``LogisticRegression``; a lifelines ``CoxPHFitter`` or scikit-survival
        ``CoxPHSurvivalAnalysis``; any scikit-survival model (e.g.
        ``RandomSurvivalForest``); or a model of ``lnmkit.models``.
    X : pandas.DataFrame or FusionTable
        Patients to explain, indexed by ``patient_id``, with (at least) the model's
        columns; the Explanation's feature names are these column names.
    output : {"raw", "survival"}, default="raw"
        ``"raw"``: the model's raw scale (log-odds, log relative hazard, log
        survival time for AFT, risk score for forests), exact where the model
        allows. ``"survival"``: S(``horizon``) with the permutation explainer.
    horizon : float, optional
        Time at which S(t) is explained (required with ``output="survival"``).
    background : pandas.DataFrame, optional
        Reference patients (default ``X``). Linear SHAP centres at their mean; the
        sampled explainer masks with (at most ``n_background`` of) them. Tree SHAP
        uses the trees' own cover and ignores it.
    engine : {"xgboost", "shap"}, default="xgboost"
        Tree SHAP implementation: xgboost's ``pred_contribs`` or
        ``shap.TreeExplainer`` (same values, see ``benchmarks/bench_explain.py``).
    n_permutations : int, default=10
        Feature orderings per patient of the sampled explainer (antithetic pairs;
        every ordering, i.e. exact Shapley values, when ``p!`` is not larger).
        Each ordering scores ``(p + 1) * len(background)`` rows, so the cost is
        ``n_patients * n_permutations * (p + 1) * n_background`` model rows: for
        a random survival forest on 40 features, 50 background patients and 10
        orderings, 20,500 rows per patient.
    n_background : int, default=50
        Background rows of the sampled explainer (a random subset of ``background``).
    sampler : {"lnmkit", "shap"}, default="lnmkit"
        The sampled explainer: lnmkit's permutation sampler (numpy only) or
        ``shap.explainers.Permutation`` (compiles with numba on first use, which
        takes tens of seconds once per process). Both add up exactly.
    random_state : int, default=0
    check_additivity : bool, default=True
        Check that values plus base values equal the model's own output.
    atol : float, default=1e-4

    Returns
    -------
    shap.Explanation
        ``values`` (n_patients, n_features), ``base_values``, ``data`` (numeric;
        categoricals as codes), ``display_data`` (category labels, when any),
        ``feature_names``, ``instance_names`` (patient_id) and ``output_names``
        (the scale, e.g. ``"log-odds"`` or ``"S(60)"``); ``compute_time`` in seconds.

    Raises
    ------
    ExplainError
        Unsupported model, missing columns, missing values into a linear model.
    AdditivityError
        The values do not add up to the model output.

    Examples
    --------
    >>> import xgboost as xgb, pandas as pd, numpy as np
    >>> X = pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0) % 3})
    >>> y = (X["a"] > 20).astype(int)
    >>> m = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(X, y)
    >>> ex = explain(m, X)
    >>> ex.output_names
    'log-odds'
    """
    import shap

    X = _check_frame(_frame_of(X), "explain")
    background = X if background is None else _check_frame(_frame_of(background), "explain")
    if output not in ("raw", "survival"):
        raise ValueError(f"explain: output must be 'raw' or 'survival'; got {output!r}.")
    if sampler not in ("lnmkit", "shap"):
        raise ValueError(f"explain: sampler must be 'lnmkit' or 'shap'; got {sampler!r}.")
    if engine not in ("xgboost", "shap"):
        raise ValueError(f"explain: engine must be 'xgboost' or 'shap'; got {engine!r}.")
    spec = model_spec(model, X)
    missing = [c for c in spec.features if c not in X.columns]
    if missing:
        raise ExplainError(f"explain: X lacks the model's column(s) {missing}; pass the table the model was "
                           "fitted on.")
    start = time.perf_counter()
    feats = list(spec.features)
    if output == "survival":
        if horizon is None:
            raise ValueError("explain: output='survival' needs horizon= (the time at which S(t) is explained).")
        f = survival_function_at(model, horizon)
        values, base = _sampled_values(f, X, feats, background, n_permutations, n_background, random_state,
                                       sampler)
        scale, raw = f"S({float(horizon):g})", f
    elif spec.kind in ("tree", "linear"):
        frame = X[feats] if spec.transform is None else spec.transform(X[feats])
        if spec.kind == "tree":
            values, base = _tree_values(spec, frame, engine)
        else:
            bg = background[feats] if spec.transform is None else spec.transform(background[feats])
            values, base = _linear_values(spec, frame, bg)
        if spec.transform is not None:
            values = _group(values, list(frame.columns), spec.groups, feats)
        scale, raw = spec.scale, spec.raw
    else:
        values, base = _sampled_values(spec.raw, X, feats, background, n_permutations, n_background,
                                       random_state, sampler)
        scale, raw = spec.scale, spec.raw
    elapsed = time.perf_counter() - start
    data, _ = _encode(X[feats])
    expl = shap.Explanation(
        values=values,
        base_values=base,
        data=data.to_numpy(),
        display_data=_display(X[feats]),
        feature_names=feats,
        instance_names=[str(p) for p in X.index],
        output_names=scale,
        compute_time=elapsed,
    )
    if check_additivity:
        _check_additivity(expl, raw(X[feats]), atol=atol)
    return expl
