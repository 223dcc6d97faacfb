"""Nested cross-validation grouped by patient: any estimator, any scoring function.

The outer loop gives the honest estimate; the inner loop (inside each outer-training
set only) chooses hyperparameters. With :class:`~lnmkit.models.NestedFeatures`,
level-0 scores (slide scores) that are out-of-fold at both levels are joined to the
table fold by fold, so that stacked models are evaluated without leakage.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import make_scorer, roc_auc_score
from sklearn.model_selection import GridSearchCV

from lnmkit.exceptions import LeakageError, LeakageWarning, ModelInputError
from lnmkit.models._folds import check_folds, make_patient_folds, outcome_strata
from lnmkit.models._stacking import NestedFeatures

__all__ = ["NestedCVResult", "nested_cv", "prepare_xy"]

_RESPONSES = ("predict_proba", "predict", "decision_function")


def _as_frame(X, where):
    """DataFrame of ``X`` (a DataFrame or a FusionTable) and its provenance mapping, if any."""
    provenance = getattr(X, "provenance", None)
    frame = getattr(X, "frame", X)
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{where}: X must be a pandas DataFrame indexed by patient_id or a FusionTable; "
                        f"got {type(X).__name__} instead.")
    frame = frame.copy()
    frame.index = frame.index.astype(str)
    frame.index.name = "patient_id"
    if frame.index.has_duplicates:
        dup = frame.index[frame.index.duplicated()].unique()[:5].tolist()
        raise ModelInputError(f"{where}: patient_id must be unique in X; repeated: {dup}.")
    indicators = set(getattr(X, "indicators", ()))
    provenance = {c: m for c, m in (provenance or {}).items() if c not in indicators}
    return frame, provenance


def prepare_xy(X, y, where, missing_outcome="raise"):
    """Align ``y`` with the rows of ``X`` and deal with patients without an outcome.

    Parameters
    ----------
    X : pandas.DataFrame or FusionTable
    y : pandas.Series (indexed by patient_id), array-like, or survival structured array
        An array is taken in X's row order.
    where : str
    missing_outcome : {"raise", "drop"}, default="raise"

    Returns
    -------
    frame : pandas.DataFrame
    y : ndarray
    provenance : dict
    """
    frame, provenance = _as_frame(X, where)
    if isinstance(y, pd.Series):
        yy = y.copy()
        yy.index = yy.index.astype(str)
        missing_rows = frame.index.difference(yy.index)
        yy = yy.reindex(frame.index)
        arr = yy.to_numpy()
    else:
        arr = np.asarray(y)
        missing_rows = pd.Index([])
        if len(arr) != len(frame):
            raise ModelInputError(f"{where}: y has {len(arr)} values but X has {len(frame)} rows.")
    if arr.dtype.names:  # survival structured array: never missing by construction
        return frame, arr, provenance
    values = pd.to_numeric(pd.Series(arr, index=frame.index), errors="coerce")
    bad = values.isna()
    if bad.any():
        ids = frame.index[bad].tolist()
        if missing_outcome == "drop":
            warnings.warn(f"{where}: {len(ids)} patient(s) without an outcome left out, e.g. {ids[:5]}.",
                          UserWarning, stacklevel=3)
            frame, values = frame.loc[~bad.to_numpy()], values[~bad]
        else:
            extra = f" ({len(missing_rows)} not in y at all)" if len(missing_rows) else ""
            raise ModelInputError(f"{where}: {len(ids)} patient(s) have no outcome{extra}, e.g. {ids[:5]}; "
                                  f"drop them or pass missing_outcome='drop'.")
    return frame, values.to_numpy(), provenance


def _default_scoring(y):
    strata = outcome_strata(y)
    if strata is None or np.asarray(y).dtype.names:
        raise ValueError("nested_cv: pass scoring= (a function of (y_true, prediction), higher is better) "
                         "for a non-binary outcome.")
    return roc_auc_score


def _respond(estimator, X, response):
    out = getattr(estimator, response)(X)
    if response == "predict_proba":
        out = np.asarray(out)[:, 1]
    return np.asarray(out, dtype=float)


def _leaky_columns(frame, provenance):
    return [c for c in frame.columns if provenance.get(c) == "slide"]


@dataclass(frozen=True)
class NestedCVResult:
    """Outer out-of-fold predictions of a nested cross-validation.

    Attributes
    ----------
    predictions : pandas.DataFrame
        Indexed by ``patient_id``: ``prediction`` (from the model of the outer fold
        that did not see the patient) and ``fold``.
    y : ndarray
        Outcome of each patient, in the order of ``predictions``.
    folds : pandas.Series of int
    best_params : list of dict
        Hyperparameters chosen inside each outer-training set.
    fold_scores : pandas.Series
        Score of each outer fold.
    score : float
        Score of the pooled outer out-of-fold predictions.
    estimator : object or None
        Final model for new patients: hyperparameters chosen on every patient,
        trained on every patient (on the level-0 ``final`` scores when stacked).
    features : list of str
        Columns the model used.
    leaky : bool
        True when inputs without nested out-of-fold provenance were accepted on request.
    """

    predictions: pd.DataFrame
    y: np.ndarray
    folds: pd.Series
    best_params: list
    fold_scores: pd.Series
    score: float
    estimator: object = None
    features: list = field(default_factory=list)
    leaky: bool = False
    name: str = "model"

    @property
    def table(self):
        """One row per outer fold (n, score, chosen hyperparameters) plus ``pooled``."""
        rows = []
        for k, s in self.fold_scores.items():
            in_fold = self.predictions["fold"] == k
            rows.append({"fold": str(k), "n": int(in_fold.sum()), "score": float(s),
                         "best_params": repr(self.best_params[list(self.fold_scores.index).index(k)])})
        rows.append({"fold": "pooled", "n": len(self.predictions), "score": self.score, "best_params": ""})
        return pd.DataFrame(rows).set_index("fold")

    def to_frame(self):
        """The out-of-fold predictions with the outcome (DataFrame indexed by patient_id)."""
        out = self.predictions.copy()
        if not self.y.dtype.names:
            out.insert(0, "y", self.y)
        return out

    def evaluate(self, threshold=None, **kwargs):
        """Binary evaluation of the outer out-of-fold predictions (:func:`lnmkit.evaluation.evaluate_binary`)."""
        from lnmkit.evaluation import evaluate_binary

        return evaluate_binary(self.y, self.predictions["prediction"].to_numpy(), threshold=threshold, **kwargs)

    def plot(self, ax=None):
        """Score of each outer fold and of the pooled predictions; returns a matplotlib Figure."""
        import matplotlib.pyplot as plt

        fig, ax = (plt.subplots(figsize=(5, 3.5)) if ax is None else (ax.figure, ax))
        t = self.table
        ax.bar(range(len(t)), t["score"], color=["C0"] * (len(t) - 1) + ["C1"])
        ax.set_xticks(range(len(t)), t.index)
        ax.set(xlabel="outer fold", ylabel="score", title=f"{self.name}: nested CV")
        return fig

    def __repr__(self):
        flag = ", LEAKY" if self.leaky else ""
        return (f"<NestedCVResult: {self.name}, {len(self.predictions)} patients, {self.folds.nunique()} outer "
                f"folds, score={self.score:.3f}{flag}>")

    def _repr_html_(self):
        return f"<p><code>{self!r}</code></p>" + self.table.to_html(float_format="%.3f")


def _inner_search(estimator, param_grid, X, y, inner_splits, random_state, scorer, response, n_jobs, groups):
    if not param_grid:
        return clone(estimator).fit(X, y), {}
    inner = make_patient_folds(X.index, y, n_splits=inner_splits,
                               groups=None if groups is None else groups.reindex(X.index),
                               random_state=random_state, where="nested_cv (inner folds)")
    cv = [(np.flatnonzero(inner.to_numpy() != k), np.flatnonzero(inner.to_numpy() == k))
          for k in sorted(inner.unique())]
    search = GridSearchCV(clone(estimator), param_grid, scoring=scorer, cv=cv, refit=True, n_jobs=n_jobs,
                          error_score="raise")
    search.fit(X, y)
    return search.best_estimator_, dict(search.best_params_)


def nested_cv(estimator, X, y, *, param_grid=None, scoring=None, response="predict_proba", folds=None,
              n_splits=5, inner_splits=5, groups=None, stacked=None, features=None, refit=True,
              allow_leakage=False, missing_outcome="raise", random_state=0, n_jobs=None, name="model",
              progress=False):
    """Nested cross-validation of ``estimator``, split by patient.

    For each outer fold, hyperparameters are chosen by a grid search over
    ``param_grid`` on inner folds made inside the outer-training patients only
    (grouped and stratified likewise); the chosen model is refitted on the
    outer-training patients and predicts the outer-test patients. Everything the
    estimator learns from data (imputation, scaling, calibration) is part of the
    estimator, so it is refitted inside each training set.

    Parameters
    ----------
    estimator : scikit-learn compatible estimator
        Cloned for every fit. Binary classifiers (``predict_proba``) and any other
        model (survival: ``response="predict"`` with a risk score) work alike.
    X : pandas.DataFrame or lnmkit.fusion.FusionTable
        Indexed by ``patient_id``.
    y : pandas.Series, array-like or survival structured array
        Outcome; a Series is aligned on ``patient_id``, an array is taken in X's row order.
    param_grid : dict or list of dict, optional
        Hyperparameter grid (as for ``GridSearchCV``); None fits the estimator as given.
    scoring : callable, optional
        ``scoring(y_true, prediction) -> float``, higher is better. Default: ROC AUC
        for a binary outcome; required otherwise (for example Harrell's C for survival).
    response : {"predict_proba", "predict", "decision_function"}, default="predict_proba"
        Method giving the prediction (for ``predict_proba``, the positive-class column).
    folds : pandas.Series of int, optional
        Outer fold of each patient. Defaults to ``stacked.folds`` when stacked, else
        to :func:`make_patient_folds` with ``n_splits``, ``groups``, ``random_state``.
    n_splits : int, default=5
    inner_splits : int, default=5
    groups : pandas.Series, optional
        Group of each patient (e.g. centre); groups never span two folds.
    stacked : NestedFeatures, optional
        Level-0 scores to join to ``X`` fold by fold (see :class:`NestedFeatures`). The
        outer folds must be the ones the scores were made for.
    features : list of str, optional
        Columns of ``X`` (and of ``stacked``) to use; default all.
    refit : bool, default=True
        Also fit the final model on every patient (returned as ``.estimator``).
    allow_leakage : bool, default=False
        Accept slide-score columns of a FusionTable that are not nested out-of-fold
        (they raise :class:`~lnmkit.exceptions.LeakageError` otherwise); the result
        is flagged ``leaky`` and a :class:`~lnmkit.exceptions.LeakageWarning` is issued.
    missing_outcome : {"raise", "drop"}, default="raise"
    random_state : int, default=0
    n_jobs : int, optional
        Parallel fits of the inner grid search.
    name : str, default="model"
    progress : bool, default=False

    Returns
    -------
    NestedCVResult

    Raises
    ------
    LeakageError
        If slide scores without nested provenance are used, or ``folds`` differ from
        ``stacked.folds``.
    ModelInputError
        If patients lack an outcome (with ``missing_outcome="raise"``) or an outer
        training set holds a single class.

    Examples
    --------
    >>> from lnmkit.models import LNMLogisticRegression, nested_cv  # doctest: +SKIP
    >>> res = nested_cv(LNMLogisticRegression(penalty="l2"), X, y,
    ...                 param_grid={"C": [0.1, 1.0]})  # doctest: +SKIP
    >>> res.score  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    where = "nested_cv"
    if response not in _RESPONSES:
        raise ValueError(f"{where}: response must be one of {list(_RESPONSES)}; got {response!r} instead.")
    frame, yv, provenance = prepare_xy(X, y, where, missing_outcome)
    if features is not None:
        unknown = [c for c in features if c not in frame.columns and (stacked is None or c not in stacked.columns)]
        if unknown:
            raise ModelInputError(f"{where}: feature(s) {unknown} are neither columns of X nor stacked scores.")
        base_cols = [c for c in features if c in frame.columns]
        stack_cols = [] if stacked is None else [c for c in features if c in stacked.columns]
    else:
        base_cols = list(frame.columns)
        stack_cols = [] if stacked is None else stacked.columns
    base_cols = [c for c in base_cols if c not in stack_cols]
    leaky = False
    bad = _leaky_columns(frame[base_cols], provenance)
    if bad:
        msg = (f"{where}: column(s) {bad} hold slide scores from a single cross-fit; under cross-validation "
               f"every training patient's score came from a model that saw the test patients. Use "
               f"lnmkit.fusion.nested_cross_fit and pass stacked=..., or drop the columns.")
        if not allow_leakage:
            raise LeakageError(msg)
        warnings.warn(msg + " Accepted because allow_leakage=True: the estimate is optimistic.",
                      LeakageWarning, stacklevel=2)
        leaky = True
    scoring = scoring or _default_scoring(yv)
    scorer = make_scorer(scoring, response_method=response)
    grp = None
    if groups is not None:
        grp = groups if isinstance(groups, pd.Series) else pd.Series(dict(groups))
        grp.index = grp.index.astype(str)
    if folds is not None:
        outer = check_folds(folds, frame.index, where)
    elif stacked is not None:
        outer = check_folds(stacked.folds, frame.index, where)
    else:
        outer = make_patient_folds(frame.index, yv, n_splits=n_splits, groups=grp, random_state=random_state,
                                   where=where)
    if stacked is not None:
        stacked.check_folds(outer, where)
        fold_map = stacked.fold_map(outer)
    binary = outcome_strata(yv) is not None and not yv.dtype.names

    preds = pd.Series(np.nan, index=frame.index, name="prediction")
    best, scores = [], {}
    for k in tqdm(sorted(outer.unique()), desc=f"{name}: outer folds", disable=not progress):
        test_mask = (outer == k).to_numpy()
        Xtr, Xte = frame.loc[~test_mask, base_cols], frame.loc[test_mask, base_cols]
        if stacked is not None and stack_cols:
            kk = fold_map[k]
            Xtr = Xtr.join(stacked.train[kk][stack_cols], how="left")
            Xte = Xte.join(stacked.test[kk][stack_cols], how="left")
        ytr, yte = yv[~test_mask], yv[test_mask]
        if binary and len(np.unique(ytr)) < 2:
            raise ModelInputError(f"{where}: the training patients of outer fold {k} hold a single class "
                                  f"({np.unique(ytr).tolist()}); use fewer folds or stratified folds.")
        model, params = _inner_search(estimator, param_grid, Xtr, ytr, inner_splits, random_state, scorer,
                                      response, n_jobs, grp)
        p = _respond(model, Xte, response)
        preds[test_mask] = p
        best.append(params)
        scores[k] = float(scoring(yte, p)) if (not binary or len(np.unique(yte)) == 2) else np.nan
    final = None
    if refit:
        Xall = frame[base_cols]
        if stacked is not None and stack_cols:
            Xall = Xall.join(stacked.final[stack_cols], how="left")
        final, _ = _inner_search(estimator, param_grid, Xall, yv, inner_splits, random_state, scorer, response,
                                 n_jobs, grp)
    predictions = pd.DataFrame({"prediction": preds, "fold": outer})
    return NestedCVResult(predictions=predictions, y=yv, folds=outer, best_params=best,
                          fold_scores=pd.Series(scores, name="score"), score=float(scoring(yv, preds.to_numpy())),
                          estimator=final, features=base_cols + list(stack_cols), leaky=leaky, name=name)
