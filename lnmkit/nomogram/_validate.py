"""Bootstrap internal validation, as ``rms::validate`` computes it.

For b = 1..B the model is refitted on a bootstrap sample; each index is computed
on that sample (training) and for the refitted model on the original rows (test).
optimism = mean(training) - mean(test); corrected = apparent - optimism. A resample
whose refit fails, or where an index is undefined, is left out of that index's
average (``n`` counts the resamples used), as in ``predab.resample``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from lnmkit.nomogram._fit import FitFailure
from lnmkit.nomogram._indices import (CPH_INDEXES, LRM_INDEXES, cph_apparent, cph_test, lrm_apparent,
                                      lrm_test)
from lnmkit.nomogram._newton import EfronTies
from lnmkit.nomogram._resample import _take, bootstrap_indices, original, resamples

__all__ = ["ValidationResult", "validate"]


@dataclass(frozen=True)
class ValidationResult:
    """Optimism-corrected indexes of a nomogram's model.

    Attributes
    ----------
    table : pandas.DataFrame
        Indexed by index name (Dxy, R2, ...), columns ``index_orig``, ``training``,
        ``test``, ``optimism``, ``index_corrected``, ``n`` (rms's columns).
    kind : str
    B : int
        Resamples drawn.
    seed : int or None
        None when the bootstrap samples were given.
    imputation_refitted : bool
        Whether the imputation was refitted inside every bootstrap sample.
    """

    table: pd.DataFrame
    kind: str
    B: int
    seed: object
    imputation_refitted: bool

    def to_frame(self):
        """The table (a copy).

        Returns
        -------
        pandas.DataFrame
        """
        return self.table.copy()

    def plot(self, ax=None):
        """Apparent and optimism-corrected value of each index.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 0.35 * len(self.table) + 1.2))
        else:
            fig = ax.figure
        t = self.table
        ypos = np.arange(len(t))[::-1]
        ax.hlines(ypos, t["index_corrected"], t["index_orig"], color="0.7")
        ax.plot(t["index_orig"], ypos, "o", color="0.3", label="apparent")
        ax.plot(t["index_corrected"], ypos, "o", color="C3", label="optimism-corrected")
        ax.set_yticks(ypos, t.index)
        ax.set_xlabel("index value")
        ax.set_title(f"Bootstrap validation ({self.kind}, B = {self.B})")
        ax.legend(loc="best", fontsize="small")
        return fig

    def __repr__(self):
        t = self.table
        return (f"<ValidationResult: {self.kind}, B={self.B}, Dxy {t.loc['Dxy', 'index_orig']:.3f} -> "
                f"{t.loc['Dxy', 'index_corrected']:.3f}, slope {t.loc['Slope', 'index_corrected']:.3f}>")

    def _repr_html_(self):
        note = " (imputation refitted in every bootstrap sample)" if self.imputation_refitted else ""
        return (f"<p>{html.escape(repr(self))}{note}</p>"
                + self.table.to_html(float_format=lambda v: f"{v:.4f}"))

    def _repr_mimebundle_(self, **kwargs):
        return {"text/plain": repr(self), "text/html": self._repr_html_()}


def _apparent(nomogram, fit, lp, y):
    if nomogram.kind == "logistic":
        return lrm_apparent(lp, y, fit.loglik, fit.loglik0)
    return cph_apparent(lp, y[0], y[1], fit.loglik, fit.loglik0)


def _test(nomogram, lp, y, ties):
    try:
        if nomogram.kind == "logistic":
            return lrm_test(lp, y)
        return cph_test(lp, y[0], y[1], ties)
    except FitFailure:
        n = len(LRM_INDEXES if nomogram.kind == "logistic" else CPH_INDEXES)
        return np.full(n, np.nan)


def _emax(intercept, slope):
    """``validate.lrm``'s Emax: largest |p - plogis(a + b logit(p))| over p in [0, 1]."""
    p = np.arange(0, 1 + 1e-12, 0.0005)
    with np.errstate(divide="ignore"):
        cal = expit(intercept + slope * logit(p))
    return float(np.nanmax(np.abs(p - cal)))


def validate(nomogram, B=200, *, seed=0, boot_index=None, refit_imputation=True, n_jobs=None,
             progress=False):
    """Bootstrap-corrected performance indexes (``rms::validate`` for lrm and cph).

    Parameters
    ----------
    nomogram : Nomogram
        Fitted by :func:`fit_nomogram` (or :meth:`Nomogram.from_model` with data).
    B : int, default=200
        Bootstrap resamples (rms's default is 40; publications use 200 or more).
    seed : int, default=0
        Seed of the resampling.
    boot_index : array-like of shape (B, n), optional
        0-based row positions of each bootstrap sample, instead of drawing them
        (for example R's samples minus 1, to reproduce rms exactly).
    refit_imputation : bool, default=True
        When the nomogram was fitted with ``impute``, refit the imputation in each
        bootstrap sample (its optimism is then included). False reuses the
        original imputation, as an analysis of a once-imputed data set would.
    n_jobs : int, optional
        Parallel workers for the refits (joblib); None runs serially.
    progress : bool, default=False

    Returns
    -------
    ValidationResult
        Logistic: Dxy, R2, Intercept, Slope, Emax, D, U, Q, B, g, gp.
        Cox: Dxy, R2, Slope, D, U, Q, g (D, U and R2 scaled by -2 log L0).

    Examples
    --------
    >>> from sksurv.datasets import load_whas500
    >>> from lnmkit.nomogram import fit_nomogram, validate
    >>> X, y = load_whas500()
    >>> df = X.assign(died=y["fstat"].astype(int))
    >>> nomo = fit_nomogram(df, ["age", "hr", "chf"], "died", splines=["age"])
    >>> validate(nomo, B=20).table.loc["Dxy", "index_orig"] > 0.5
    True
    """
    where = "validate"
    X, y = original(nomogram)
    n = X.shape[0]
    indices = bootstrap_indices(n, B, seed, boot_index, where)
    names = LRM_INDEXES if nomogram.kind == "logistic" else CPH_INDEXES
    lp0 = nomogram.fit_.linear_predictor(X)
    apparent = _apparent(nomogram, nomogram.fit_, lp0, y)
    train_sum = np.zeros(len(names))
    test_sum = np.zeros(len(names))
    count = np.zeros(len(names))
    ties = EfronTies(*y) if nomogram.kind == "cox" else None
    for rs in resamples(nomogram, indices, refit_imputation, n_jobs, progress, desc=where):
        if rs.fit is None:
            continue
        tr = _apparent(nomogram, rs.fit, rs.lp_train, _take(y, rs.rows))
        te = _test(nomogram, rs.lp_test, y, ties)
        ok = np.isfinite(tr) & np.isfinite(te)
        train_sum[ok] += tr[ok]
        test_sum[ok] += te[ok]
        count += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        training = train_sum / count
        test = test_sum / count
    optimism = training - test
    table = pd.DataFrame({"index_orig": apparent, "training": training, "test": test, "optimism": optimism,
                          "index_corrected": apparent - optimism, "n": count.astype(int)}, index=list(names))
    if nomogram.kind == "logistic":
        emax = _emax(table.loc["Intercept", "index_corrected"], table.loc["Slope", "index_corrected"])
        row = pd.DataFrame({"index_orig": 0.0, "training": 0.0, "test": emax, "optimism": emax,
                            "index_corrected": emax, "n": int(table.loc["Dxy", "n"])}, index=["Emax"])
        table = pd.concat([table.iloc[:4], row, table.iloc[4:]])
    table.index.name = "index"
    return ValidationResult(table=table, kind=nomogram.kind, B=len(indices),
                            seed=None if boot_index is not None else seed,
                            imputation_refitted=bool(nomogram.imputer_ is not None and refit_imputation))
