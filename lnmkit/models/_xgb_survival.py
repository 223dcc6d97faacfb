"""XGBoost survival models: ``survival:cox`` with a Breslow baseline fitted on the training
data, and ``survival:aft`` with survival curves from the fitted distribution."""

from __future__ import annotations

import json
from typing import Literal

import numpy as np
from scipy import stats
from sklearn.base import BaseEstimator

from lnmkit._validation import check_fraction, check_int, check_non_negative, check_positive
from lnmkit.models._survival_base import SavedSurvivalMixin, SurvivalModelMixin, step_values

__all__ = ["XGBCoxSurvival", "XGBAFTSurvival"]


class _XGBSurvival(SavedSurvivalMixin, SurvivalModelMixin, BaseEstimator):
    _allow_nan = True  # xgboost learns a default direction for missing values

    def _params(self, where):
        subsample = check_fraction(self.subsample, "subsample", where)
        colsample = check_fraction(self.colsample_bytree, "colsample_bytree", where)
        if subsample == 0 or colsample == 0:
            raise ValueError(f"{where}: subsample and colsample_bytree must be in (0, 1]; got "
                             f"{self.subsample!r} and {self.colsample_bytree!r} instead.")
        params = {
            "eta": check_positive(self.learning_rate, "learning_rate", where),
            "max_depth": check_int(self.max_depth, "max_depth", where),
            "min_child_weight": check_non_negative(self.min_child_weight, "min_child_weight", where),
            "subsample": subsample, "colsample_bytree": colsample,
            "lambda": check_non_negative(self.reg_lambda, "reg_lambda", where),
            "alpha": check_non_negative(self.reg_alpha, "reg_alpha", where),
            "tree_method": "hist", "verbosity": 0,
            "seed": 0 if self.random_state is None else int(self.random_state),
        }
        if self.n_jobs is not None:
            params["nthread"] = int(self.n_jobs)
        return params

    def _dmatrix(self, design):
        import xgboost as xgb

        return xgb.DMatrix(design.to_numpy(dtype=np.float32), feature_names=None, missing=np.nan)

    def _margin(self, design):
        return self.booster_.predict(self._dmatrix(design), output_margin=True).astype(float)

    # ---------------------------------------------------------- persistence
    # save() keeps the booster in XGBoost's own JSON format and what the survival
    # curves need (the Breslow baseline, or the AFT scale: _curve_state).
    def _model_state(self):
        return {"booster": json.loads(bytes(self.booster_.save_raw("json")).decode("utf-8")), **self._curve_state()}

    def _load_model_state(self, state):
        import xgboost as xgb

        self.booster_ = xgb.Booster()
        self.booster_.load_model(bytearray(json.dumps(state["booster"]).encode("utf-8")))
        self._load_curve_state(state)


class XGBCoxSurvival(_XGBSurvival):
    """XGBoost with the Cox partial-likelihood objective (``survival:cox``), plus a Breslow
    baseline hazard fitted on the training data so that it gives survival curves.

    ``predict`` returns the margin, the log relative hazard (higher = worse);
    ``S(t | x) = exp(-H0(t) * exp(margin(x)))`` with ``H0`` the Breslow estimate from
    the training margins.

    Parameters
    ----------
    n_estimators : int, default=300
        Boosting rounds.
    learning_rate : float, default=0.05
    max_depth : int, default=3
    min_child_weight : float, default=1.0
    subsample : float, default=0.8
    colsample_bytree : float, default=0.8
    reg_lambda : float, default=1.0
    reg_alpha : float, default=0.0
    n_jobs : int, optional
    random_state : int, optional

    Attributes
    ----------
    booster_ : xgboost.Booster
    baseline_cumulative_hazard_ : pandas.Series
        Breslow ``H0`` at the distinct training event times (margin 0).
    design_columns_ : list of str
    max_time_ : float
    event_times_ : ndarray

    Examples
    --------
    >>> from sksurv.datasets import load_whas500
    >>> from lnmkit.models import XGBCoxSurvival
    >>> X, y = load_whas500()
    >>> m = XGBCoxSurvival(n_estimators=50, random_state=0).fit(X[["age", "bmi", "hr"]], y)
    >>> s = m.predict_survival_function(X[["age", "bmi", "hr"]].iloc[:2], [0, 365])
    >>> s[0.0].tolist()
    [1.0, 1.0]
    """

    def __init__(self, n_estimators=300, *, learning_rate=0.05, max_depth=3, min_child_weight=1.0, subsample=0.8,
                 colsample_bytree=0.8, reg_lambda=1.0, reg_alpha=0.0, n_jobs=None, random_state=None):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.reg_alpha = reg_alpha
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X, y):
        """Fit the booster, then the Breslow baseline on the training margins.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n, p)
        y : structured ndarray

        Returns
        -------
        self
        """
        import pandas as pd
        import xgboost as xgb
        from sksurv.linear_model.coxph import BreslowEstimator

        where = "XGBCoxSurvival.fit"
        params = self._params(where)
        rounds = check_int(self.n_estimators, "n_estimators", where)
        design, event, time = self._fit_checks(X, y)
        dtrain = self._dmatrix(design)
        # xgboost's Cox label: the time, negative for censored patients
        dtrain.set_label(np.where(event, time, -time))
        params.update({"objective": "survival:cox", "eval_metric": "cox-nloglik"})
        self.booster_ = xgb.train(params, dtrain, num_boost_round=rounds)
        self.design_columns_ = list(design.columns)
        breslow = BreslowEstimator().fit(self._margin(design), event, time)
        cum = breslow.cum_baseline_hazard_
        keep = np.isin(cum.x, self.event_times_)
        self.baseline_cumulative_hazard_ = pd.Series(cum.y[keep], index=pd.Index(cum.x[keep], name="time"),
                                                     name="baseline_cumulative_hazard")
        return self

    def _curve_state(self):
        h0 = self.baseline_cumulative_hazard_
        return {"baseline_times": h0.index.tolist(), "baseline_cumulative_hazard": h0.tolist()}

    def _load_curve_state(self, state):
        import pandas as pd

        self.baseline_cumulative_hazard_ = pd.Series(
            state["baseline_cumulative_hazard"], dtype=float, name="baseline_cumulative_hazard",
            index=pd.Index(np.asarray(state["baseline_times"], dtype=float), name="time"))

    def _risk(self, design):
        return self._margin(design)

    def _survival(self, design, times):
        h0 = step_values(self.baseline_cumulative_hazard_.index.to_numpy(),
                         self.baseline_cumulative_hazard_.to_numpy(), times, before=0.0)
        return np.exp(-np.exp(self._margin(design))[:, None] * h0[None, :])


class XGBAFTSurvival(_XGBSurvival):
    """XGBoost accelerated failure time model (``survival:aft``); survival curves come from
    the fitted distribution of log time.

    ``log T = margin(x) + sigma * Z`` with ``Z`` standard normal, logistic or
    extreme-value (minimum; Weibull times), so ``S(t | x) = 1 - F((log t - margin) / sigma)``.
    ``predict`` returns ``-margin`` (shorter expected log time = higher risk).

    Parameters
    ----------
    distribution : {"normal", "logistic", "extreme"}, default="normal"
    sigma : float, default=1.0
        Scale of the error distribution (``aft_loss_distribution_scale``).
    n_estimators : int, default=300
    learning_rate : float, default=0.05
    max_depth : int, default=3
    min_child_weight : float, default=1.0
    subsample : float, default=0.8
    colsample_bytree : float, default=0.8
    reg_lambda : float, default=1.0
    reg_alpha : float, default=0.0
    n_jobs : int, optional
    random_state : int, optional

    Attributes
    ----------
    booster_ : xgboost.Booster
    design_columns_ : list of str
    max_time_ : float
    event_times_ : ndarray

    Examples
    --------
    >>> from sksurv.datasets import load_whas500
    >>> from lnmkit.models import XGBAFTSurvival
    >>> X, y = load_whas500()
    >>> m = XGBAFTSurvival(n_estimators=50, random_state=0).fit(X[["age", "bmi", "hr"]], y)
    >>> m.predict_survival_function(X[["age", "bmi", "hr"]].iloc[:2], [100, 1000]).shape
    (2, 2)
    """

    def __init__(self, distribution: Literal["normal", "logistic", "extreme"] = "normal", sigma=1.0, *,
                 n_estimators=300, learning_rate=0.05, max_depth=3, min_child_weight=1.0, subsample=0.8,
                 colsample_bytree=0.8, reg_lambda=1.0, reg_alpha=0.0, n_jobs=None, random_state=None):
        self.distribution = distribution
        self.sigma = sigma
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.reg_alpha = reg_alpha
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X, y):
        """Fit the booster on interval labels ``[time, time]`` (event) or ``[time, inf)`` (censored).

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n, p)
        y : structured ndarray

        Returns
        -------
        self
        """
        import xgboost as xgb

        where = "XGBAFTSurvival.fit"
        if self.distribution not in ("normal", "logistic", "extreme"):
            raise ValueError(f"{where}: distribution must be one of 'normal', 'logistic', 'extreme'; got "
                             f"{self.distribution!r} instead.")
        sigma = check_positive(self.sigma, "sigma", where)
        params = self._params(where)
        rounds = check_int(self.n_estimators, "n_estimators", where)
        design, event, time = self._fit_checks(X, y)
        dtrain = self._dmatrix(design)
        dtrain.set_float_info("label_lower_bound", time)
        dtrain.set_float_info("label_upper_bound", np.where(event, time, np.inf))
        params.update({"objective": "survival:aft", "eval_metric": "aft-nloglik",
                       "aft_loss_distribution": self.distribution, "aft_loss_distribution_scale": sigma})
        self.booster_ = xgb.train(params, dtrain, num_boost_round=rounds)
        self.sigma_ = sigma
        self.design_columns_ = list(design.columns)
        return self

    def _curve_state(self):
        return {"sigma": self.sigma_}

    def _load_curve_state(self, state):
        self.sigma_ = float(state["sigma"])

    def _risk(self, design):
        return -self._margin(design)

    def _cdf(self, z):
        if self.distribution == "normal":
            return stats.norm.cdf(z)
        if self.distribution == "logistic":
            return stats.logistic.cdf(z)
        return -np.expm1(-np.exp(z))  # extreme value (minimum): 1 - exp(-exp(z))

    def _survival(self, design, times):
        mu = self._margin(design)
        with np.errstate(divide="ignore"):
            logt = np.log(np.asarray(times, dtype=float))
        z = (logt[None, :] - mu[:, None]) / self.sigma_
        return 1.0 - self._cdf(z)
