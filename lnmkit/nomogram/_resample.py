"""Bootstrap refits shared by ``validate`` and ``calibrate`` (rms ``predab.resample``).

For every resample the model is refitted on a bootstrap sample of the rows (the
design, that is knots, levels and columns, stays the one of the original fit, as
rms reuses the original design matrix) and its linear predictor is evaluated on
the bootstrap sample (training) and on every original row (test). When the
nomogram was fitted with imputation, the imputation is refitted on the bootstrap
sample and applied to both, so that its optimism is counted too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lnmkit._validation import check_int
from lnmkit.exceptions import NomogramInputError
from lnmkit.nomogram._fit import FitFailure
from lnmkit.nomogram._impute import PredictorImputer

__all__ = ["Resample", "bootstrap_indices", "resamples", "original"]


@dataclass(frozen=True)
class Resample:
    """One bootstrap refit.

    Attributes
    ----------
    rows : ndarray
        Row positions of the bootstrap sample.
    fit : LogisticFit or CoxFit or None
        None when the refit failed (the resample is then skipped, as rms does).
    lp_train : ndarray
        Linear predictor of the refit on the bootstrap rows.
    lp_test : ndarray
        Linear predictor of the refit on every original row.
    """

    rows: np.ndarray
    fit: object
    lp_train: np.ndarray
    lp_test: np.ndarray


def bootstrap_indices(n, B, seed=0, boot_index=None, where="validate"):
    """Row positions of each bootstrap sample, shape (B, n).

    Parameters
    ----------
    n : int
        Number of rows.
    B : int
        Number of resamples (ignored when ``boot_index`` is given).
    seed : int, default=0
    boot_index : array-like of shape (B, n), optional
        0-based row positions to use instead of drawing (e.g. R's samples minus 1).
    where : str

    Returns
    -------
    ndarray of shape (B, n)

    Raises
    ------
    ValueError
        If ``boot_index`` has the wrong shape or positions outside ``[0, n)``.
    """
    if boot_index is not None:
        idx = np.asarray(boot_index)
        if idx.ndim != 2 or idx.shape[1] != n or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"{where}: boot_index must be an integer array of shape (B, {n}); got "
                             f"shape {idx.shape} and dtype {idx.dtype} instead.")
        if idx.min() < 0 or idx.max() >= n:
            raise ValueError(f"{where}: boot_index holds row positions outside [0, {n}); got "
                             f"{idx.min()}..{idx.max()} (R's 1-based samples need - 1).")
        return idx
    B = check_int(B, "B", where)
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(B, n))


def _matrices(nomogram, rows, refit_imputation):
    design = nomogram.design
    raw = nomogram._train["raw"]
    if nomogram.imputer_ is None:
        X = original(nomogram)[0]
        return X[rows], X
    if refit_imputation:
        imp = PredictorImputer(nomogram.imputer_.method, nomogram.imputer_.numeric,
                               nomogram.imputer_.categorical).fit(raw.iloc[rows])
    else:
        imp = nomogram.imputer_
    return design.matrix(imp.transform(raw.iloc[rows])), design.matrix(imp.transform(raw))


def original(nomogram):
    """Design matrix and outcome of the rows the nomogram was fitted on.

    Parameters
    ----------
    nomogram : Nomogram

    Returns
    -------
    X : ndarray
    y : ndarray or (ndarray, ndarray)
    """
    if nomogram._train is None:
        raise NomogramInputError("validate: this Nomogram holds no training outcome (from_model without "
                                 "it); pass data= and outcome= to Nomogram.from_model.")
    if nomogram._penalised:
        raise NomogramInputError("validate: the nomogram comes from a penalised model; bootstrap refits "
                                 "here are unpenalised maximum likelihood, so optimism would describe "
                                 "another model. Use fit_nomogram, or an unpenalised model.")
    cache = nomogram._train.get("X")
    if cache is None:
        raw = nomogram._train["raw"]
        filled = raw if nomogram.imputer_ is None else nomogram.imputer_.transform(raw)
        cache = nomogram.design.matrix(filled)
        nomogram._train["X"] = cache
    return cache, nomogram._train["y"]


def _take(y, rows):
    return y[rows] if isinstance(y, np.ndarray) else (y[0][rows], y[1][rows])


def _one(nomogram, rows, refit_imputation):
    y = nomogram._train["y"]
    X_train, X_all = _matrices(nomogram, rows, refit_imputation)
    try:
        fit = nomogram._refit_matrix(X_train, _take(y, rows))
    except FitFailure:
        return Resample(rows=rows, fit=None, lp_train=None, lp_test=None)
    return Resample(rows=rows, fit=fit, lp_train=fit.linear_predictor(X_train),
                    lp_test=fit.linear_predictor(X_all))


def resamples(nomogram, indices, refit_imputation=True, n_jobs=None, progress=False, desc="bootstrap"):
    """Refit the nomogram's model on each bootstrap sample.

    Parameters
    ----------
    nomogram : Nomogram
    indices : ndarray of shape (B, n)
    refit_imputation : bool, default=True
    n_jobs : int, optional
        Parallel workers (joblib); None runs in this process.
    progress : bool, default=False
        Show a tqdm progress bar.
    desc : str

    Returns
    -------
    list of Resample
    """
    original(nomogram)  # fills the cache before workers copy the nomogram
    if n_jobs is None or n_jobs == 1:
        from tqdm.auto import tqdm

        return [_one(nomogram, rows, refit_imputation)
                for rows in tqdm(indices, desc=desc, disable=not progress)]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=n_jobs)(delayed(_one)(nomogram, rows, refit_imputation) for rows in indices)
