"""Folds split by patient (or by a group of patients), stratified by the outcome."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, StratifiedKFold

__all__ = ["make_patient_folds", "check_folds", "outcome_strata"]


def outcome_strata(y):
    """Stratum of each patient: the binary label, the event indicator of a survival
    target, or None when the outcome is continuous.

    Parameters
    ----------
    y : array-like of shape (n,) or structured array with an ``event`` field

    Returns
    -------
    ndarray of int or None
    """
    arr = np.asarray(y)
    if arr.dtype.names and "event" in arr.dtype.names:
        return arr["event"].astype(int)
    if arr.dtype.names:
        return None
    values = pd.to_numeric(pd.Series(arr.ravel()), errors="coerce")
    uniq = set(values.dropna().unique().tolist())
    if uniq <= {0, 1}:
        return values.fillna(-1).astype(int).to_numpy()
    return None


def make_patient_folds(index, y=None, n_splits=5, groups=None, random_state=0, where="make_patient_folds"):
    """Fold number of each patient, split by patient (or group) and stratified by ``y``.

    Parameters
    ----------
    index : pandas.Index or sequence of str
        The patients (``patient_id``).
    y : array-like of shape (n,) or survival structured array, optional
        Binary labels or a survival target (stratified by event); ``None`` or a
        continuous outcome gives unstratified grouped folds.
    n_splits : int, default=5
    groups : pandas.Series or mapping, optional
        Group of each patient (e.g. centre): a group never spans two folds. By default
        each patient is its own group.
    random_state : int, default=0
    where : str
        Caller name for error messages.

    Returns
    -------
    pandas.Series of int
        Named ``fold``, indexed by ``patient_id``.

    Raises
    ------
    ValueError
        If ``n_splits`` is not between 2 and the number of groups.
    """
    index = pd.Index([str(p) for p in index], name="patient_id")
    if groups is None:
        grp = np.asarray(index)
    else:
        g = groups if isinstance(groups, pd.Series) else pd.Series(dict(groups))
        g.index = g.index.astype(str)
        g = g.reindex(index)
        if g.isna().any():
            raise ValueError(f"{where}: groups has no value for patient(s) {g.index[g.isna()][:5].tolist()}.")
        grp = g.to_numpy()
    n_groups = len(pd.unique(grp))
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or not 2 <= n_splits <= n_groups:
        raise ValueError(f"{where}: n_splits must be an integer between 2 and the number of patient groups "
                         f"({n_groups}); got {n_splits!r} instead.")
    strata = None if y is None else outcome_strata(y)
    folds = np.full(len(index), -1)
    dummy = np.zeros(len(index))
    if strata is not None and groups is None:
        # one patient per group: plain stratified folds balance the classes exactly
        splits = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state).split(dummy, strata)
    elif strata is not None:
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
        splits = splitter.split(dummy, strata, grp)
    else:
        # GroupKFold shuffles groups only from scikit-learn 1.6 on; permute the groups ourselves
        rng = np.random.default_rng(random_state)
        uniq = pd.unique(grp)
        code = dict(zip(uniq, rng.permutation(len(uniq))))
        splits = GroupKFold(n_splits=n_splits).split(dummy, groups=np.array([code[g] for g in grp]))
    for k, (_, test) in enumerate(splits):
        folds[test] = k
    return pd.Series(folds, index=index, name="fold")


def check_folds(folds, index, where):
    """Folds given by the caller, as a Series of int aligned with ``index``.

    Parameters
    ----------
    folds : pandas.Series or mapping patient_id -> int
    index : pandas.Index
        The patients that must all have a fold.
    where : str

    Returns
    -------
    pandas.Series of int named ``fold``

    Raises
    ------
    ValueError
        If a patient has no fold, or there are fewer than two folds.
    """
    f = folds if isinstance(folds, pd.Series) else pd.Series(dict(folds))
    f = f.copy()
    f.index = f.index.astype(str)
    f = f.reindex(pd.Index(index).astype(str))
    if f.isna().any():
        raise ValueError(f"{where}: folds has no fold for patient(s) {f.index[f.isna()][:5].tolist()}; "
                         f"give every patient a fold number.")
    f = f.astype(int).rename("fold")
    f.index.name = "patient_id"
    if f.nunique() < 2:
        raise ValueError(f"{where}: folds must hold at least two folds; got {sorted(f.unique().tolist())}.")
    return f
