"""Random survival forest and gradient-boosted survival models (scikit-survival) behind
lnmkit's survival interface."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from lnmkit._validation import check_fraction, check_int, check_positive
from lnmkit.models._survival_base import SurvivalModelMixin, step_values

__all__ = ["RandomSurvivalForest", "GradientBoostedSurvival"]


def _max_features(value, where):
    if value is None or value in ("sqrt", "log2"):
        return value
    if isinstance(value, float):
        return check_fraction(value, "max_features", where)
    return check_int(value, "max_features", where)


class _SksurvWrapper(SurvivalModelMixin, BaseEstimator):
    """Shared fit / predict of wrapped scikit-survival ensembles."""

    def _build(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, X, y):
        """Fit the model.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n, p)
            Numeric, bool or pandas categorical columns (categoricals are dummy-coded
            against their first level).
        y : structured ndarray
            Fields ``event`` (bool) and ``time`` (float > 0).

        Returns
        -------
        self
        """
        design, event, time = self._fit_checks(X, y)
        from sksurv.util import Surv

        self.estimator_ = self._build()
        self.estimator_.fit(design.to_numpy(dtype=float), Surv.from_arrays(event, time))
        self.design_columns_ = list(design.columns)
        return self

    def _risk(self, design):
        return self.estimator_.predict(design.to_numpy(dtype=float))

    def _survival(self, design, times):
        curves = self.estimator_.predict_survival_function(design.to_numpy(dtype=float), return_array=True)
        grid = np.asarray(self.estimator_.unique_times_, dtype=float)
        return step_values(grid, curves, times)


class RandomSurvivalForest(_SksurvWrapper):
    """Random survival forest (``sksurv.ensemble.RandomSurvivalForest``, log-rank splits).

    Parameters
    ----------
    n_estimators : int, default=500
    max_depth : int, optional
    min_samples_split : int, default=10
    min_samples_leaf : int, default=15
    max_features : {"sqrt", "log2"}, int, float or None, default="sqrt"
    n_jobs : int, optional
        Threads for fitting and prediction.
    random_state : int, optional
    impute : {None, "median"}, default=None
        None: missing values raise; ``"median"``: training median / most frequent level.

    Attributes
    ----------
    estimator_ : sksurv.ensemble.RandomSurvivalForest
    design_columns_ : list of str
    max_time_ : float
    event_times_ : ndarray

    Examples
    --------
    >>> from sksurv.datasets import load_whas500
    >>> from lnmkit.models import RandomSurvivalForest
    >>> X, y = load_whas500()
    >>> rsf = RandomSurvivalForest(n_estimators=20, random_state=0).fit(X[["age", "bmi", "hr"]], y)
    >>> rsf.predict_survival_function(X[["age", "bmi", "hr"]].iloc[:3], [100, 1000]).shape
    (3, 2)
    """

    def __init__(self, n_estimators=500, *, max_depth=None, min_samples_split=10, min_samples_leaf=15,
                 max_features="sqrt", n_jobs=None, random_state=None, impute=None):
        self.impute = impute
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _build(self):
        from sksurv.ensemble import RandomSurvivalForest as _RSF

        where = "RandomSurvivalForest.fit"
        return _RSF(n_estimators=check_int(self.n_estimators, "n_estimators", where),
                    max_depth=None if self.max_depth is None else check_int(self.max_depth, "max_depth", where),
                    min_samples_split=check_int(self.min_samples_split, "min_samples_split", where, minimum=2),
                    min_samples_leaf=check_int(self.min_samples_leaf, "min_samples_leaf", where),
                    max_features=_max_features(self.max_features, where), n_jobs=self.n_jobs,
                    random_state=self.random_state)


class GradientBoostedSurvival(_SksurvWrapper):
    """Gradient-boosted Cox model on regression trees (``sksurv.ensemble.GradientBoostingSurvivalAnalysis``,
    ``loss="coxph"``; survival curves from its Breslow baseline).

    Parameters
    ----------
    n_estimators : int, default=200
    learning_rate : float, default=0.05
    max_depth : int, default=3
    min_samples_leaf : int, default=10
    subsample : float, default=1.0
    dropout_rate : float, default=0.0
    random_state : int, optional
    impute : {None, "median"}, default=None
        None: missing values raise; ``"median"``: training median / most frequent level.

    Attributes
    ----------
    estimator_ : sksurv.ensemble.GradientBoostingSurvivalAnalysis
    design_columns_ : list of str
    max_time_ : float
    event_times_ : ndarray

    Examples
    --------
    >>> from sksurv.datasets import load_whas500
    >>> from lnmkit.models import GradientBoostedSurvival
    >>> X, y = load_whas500()
    >>> gbs = GradientBoostedSurvival(n_estimators=20, random_state=0).fit(X[["age", "bmi", "hr"]], y)
    >>> bool(gbs.score(X[["age", "bmi", "hr"]], y) > 0.6)
    True
    """

    def __init__(self, n_estimators=200, *, learning_rate=0.05, max_depth=3, min_samples_leaf=10, subsample=1.0,
                 dropout_rate=0.0, random_state=None, impute=None):
        self.impute = impute
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.subsample = subsample
        self.dropout_rate = dropout_rate
        self.random_state = random_state

    def _build(self):
        from sksurv.ensemble import GradientBoostingSurvivalAnalysis

        where = "GradientBoostedSurvival.fit"
        subsample = check_fraction(self.subsample, "subsample", where)
        if subsample == 0:
            raise ValueError(f"{where}: subsample must be in (0, 1]; got {self.subsample!r} instead.")
        dropout = check_fraction(self.dropout_rate, "dropout_rate", where)
        if dropout >= 1:
            raise ValueError(f"{where}: dropout_rate must be in [0, 1); got {self.dropout_rate!r} instead.")
        return GradientBoostingSurvivalAnalysis(
            loss="coxph", n_estimators=check_int(self.n_estimators, "n_estimators", where),
            learning_rate=check_positive(self.learning_rate, "learning_rate", where),
            max_depth=check_int(self.max_depth, "max_depth", where),
            min_samples_leaf=check_int(self.min_samples_leaf, "min_samples_leaf", where),
            subsample=subsample, dropout_rate=dropout, random_state=self.random_state)
