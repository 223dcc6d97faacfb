"""Out-of-fold risk and survival probabilities of any lnmkit survival model, split by patient."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import clone

from lnmkit.exceptions import ModelInputError
from lnmkit.models._folds import check_folds, make_patient_folds
from lnmkit.models._survival_base import check_survival_target

__all__ = ["cross_val_survival"]


def cross_val_survival(estimator, X, y, *, times=None, folds=None, n_splits=5, groups=None, random_state=0,
                       progress=False):
    """Out-of-fold predictions of a survival model: each patient is predicted by the model of
    the fold that did not contain them.

    Parameters
    ----------
    estimator : lnmkit survival model
        Cloned for every fold.
    X : pandas.DataFrame
        Indexed by ``patient_id``.
    y : structured ndarray
        In X's row order.
    times : array-like of float, optional
        Times at which to predict survival (``S(t)`` columns). Each must lie inside the
        follow-up of every training fold.
    folds : pandas.Series of int, optional
        Fold of each patient; default :func:`make_patient_folds` (stratified by event).
    n_splits : int, default=5
    groups : pandas.Series, optional
        Group of each patient (e.g. centre); a group never spans two folds.
    random_state : int, default=0
    progress : bool, default=False

    Returns
    -------
    pandas.DataFrame
        Indexed by ``patient_id``: ``fold``, ``risk`` and one column per time,
        named ``S(t)`` (e.g. ``S(36)``).

    Raises
    ------
    lnmkit.exceptions.ModelInputError
        If a time lies beyond the follow-up of a training fold.

    Examples
    --------
    >>> from sksurv.datasets import load_whas500
    >>> from lnmkit.models import CoxPH, cross_val_survival
    >>> X, y = load_whas500()
    >>> X.index = X.index.astype(str)
    >>> oof = cross_val_survival(CoxPH(), X[["age", "bmi", "hr"]], y, times=[365.0])
    >>> list(oof.columns)
    ['fold', 'risk', 'S(365)']
    """
    from tqdm.auto import tqdm

    where = "cross_val_survival"
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"{where}: X must be a pandas DataFrame indexed by patient_id; got {type(X).__name__}.")
    event, time = check_survival_target(y, where, index=X.index)
    if len(time) != len(X):
        raise ModelInputError(f"{where}: X has {len(X)} rows but y has {len(time)}.")
    index = X.index.astype(str)
    outer = (check_folds(folds, index, where) if folds is not None else
             make_patient_folds(index, y, n_splits=n_splits, groups=groups, random_state=random_state, where=where))
    fold = outer.to_numpy()
    t = None if times is None else np.atleast_1d(np.asarray(times, dtype=float))
    out = pd.DataFrame(index=pd.Index(index, name="patient_id"))
    out["fold"] = fold
    out["risk"] = np.nan
    cols = [] if t is None else [f"S({v:g})" for v in t]
    for c in cols:
        out[c] = np.nan
    for k in tqdm(sorted(np.unique(fold)), desc="folds", disable=not progress):
        test = fold == k
        model = clone(estimator).fit(X.iloc[~test], y[~test])
        out.loc[out.index[test], "risk"] = model.predict(X.iloc[test])
        if t is not None:
            s = model.predict_survival_function(X.iloc[test], t)
            out.loc[out.index[test], cols] = s.to_numpy()
    return out
