"""Survival models on nested feature sets (clinical, + radiology, + slide, all) compared on the
same outer folds: nested cross-validated Harrell's C and the paired difference with a
bootstrap interval."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lnmkit._validation import check_fraction, check_int
from lnmkit.evaluation._survival_metrics import _pair_weighted_sums, _pct
from lnmkit.exceptions import ModelInputError
from lnmkit.models._survival_base import check_survival_target

__all__ = ["compare_survival_models", "SurvivalComparison", "harrell_c"]


def harrell_c(y_true, risk):
    """Harrell's C of ``risk`` (higher = worse) for a structured survival target.

    Parameters
    ----------
    y_true : structured ndarray
    risk : array-like of shape (n,)

    Returns
    -------
    float
    """
    from sksurv.metrics import concordance_index_censored

    event, time = check_survival_target(y_true, "harrell_c")
    return float(concordance_index_censored(event, time, np.asarray(risk, dtype=float))[0])


@dataclass(frozen=True)
class SurvivalComparison:
    """Nested cross-validated concordance of several feature sets on the same outer folds.

    Attributes
    ----------
    fold_c : pandas.DataFrame
        Harrell's C of each model (columns) in each outer fold (rows).
    predictions : pandas.DataFrame
        Outer out-of-fold risk of each model (columns) and ``fold``, indexed by patient_id.
    results : dict of str -> lnmkit.models.NestedCVResult
        The nested cross-validation of each model.
    features : dict of str -> list of str
    reference : str
        The model the others are compared with.
    level : float
    bootstrap : pandas.DataFrame
        Bootstrap replicates of the fold-averaged C of each model (patients resampled
        within each outer fold, the same resample for every model).
    """

    fold_c: pd.DataFrame
    predictions: pd.DataFrame
    results: dict
    features: dict
    reference: str
    level: float
    bootstrap: pd.DataFrame

    @property
    def table(self):
        """Per model: ``n_features``, ``c`` (mean over outer folds) with its interval, the pooled
        out-of-fold C, and ``delta_c`` against the reference with its interval and two-sided
        bootstrap ``p``."""
        pct = _pct(self.level)
        lo_q, hi_q = (1 - self.level) / 2, (1 + self.level) / 2
        rows = []
        base = self.bootstrap[self.reference]
        for name in self.fold_c.columns:
            boot = self.bootstrap[name]
            delta = boot - base
            d = float(self.fold_c[name].mean() - self.fold_c[self.reference].mean())
            if name == self.reference:
                dl = du = p = np.nan
            else:
                dl, du = delta.quantile([lo_q, hi_q])
                p = float(min(1.0, 2 * min((delta <= 0).mean(), (delta >= 0).mean())))
            rows.append({"model": name, "n_features": len(self.features[name]), "c": float(self.fold_c[name].mean()),
                         f"c_lower_{pct}": float(boot.quantile(lo_q)), f"c_upper_{pct}": float(boot.quantile(hi_q)),
                         "pooled_c": float(self.results[name].score), "delta_c": d,
                         f"delta_lower_{pct}": dl, f"delta_upper_{pct}": du, "p": p})
        return pd.DataFrame(rows).set_index("model")

    def to_frame(self):
        """The comparison table (a copy)."""
        return self.table.copy()

    def __repr__(self):
        t = self.table
        best = t["c"].idxmax()
        return (f"<SurvivalComparison: {len(t)} models on {len(self.fold_c)} outer folds, {len(self.predictions)} "
                f"patients; best {best!r} C={t.loc[best, 'c']:.3f}, reference {self.reference!r} "
                f"C={t.loc[self.reference, 'c']:.3f}>")

    def _repr_html_(self):
        return f"<p><code>{self!r}</code></p>" + self.table.to_html(float_format=lambda v: f"{v:.3f}")

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": repr(self), "text/html": self._repr_html_()}

    def plot(self, ax=None):
        """C of each model with its interval; the change against the reference is printed beside it.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        t = self.table
        pct = _pct(self.level)
        fig, ax = (plt.subplots(figsize=(6.5, 0.6 * len(t) + 1.5)) if ax is None else (ax.figure, ax))
        yy = np.arange(len(t))[::-1]
        ax.errorbar(t["c"], yy, xerr=[t["c"] - t[f"c_lower_{pct}"], t[f"c_upper_{pct}"] - t["c"]], fmt="o",
                    color="C0", capsize=3)
        ax.set_yticks(yy, t.index)
        for yv, (name, row) in zip(yy, t.iterrows()):
            label = "reference" if name == self.reference else \
                (f"ΔC {row['delta_c']:+.3f} [{row[f'delta_lower_{pct}']:+.3f}, {row[f'delta_upper_{pct}']:+.3f}]")
            ax.annotate(label, (1.0, yv), xycoords=("axes fraction", "data"), xytext=(6, 0),
                        textcoords="offset points", va="center", fontsize=8)
        ax.axvline(0.5, color="0.7", ls=":")
        ax.set(xlabel="nested cross-validated Harrell's C")
        fig.subplots_adjust(right=0.68)
        return fig


def compare_survival_models(X, y, feature_sets=None, *, estimator=None, param_grid=None, folds=None, stacked=None,
                            n_splits=5, inner_splits=3, groups=None, reference=None, n_bootstrap=1000, level=0.95,
                            random_state=0, progress=False):
    """Compare survival models on nested feature sets with nested cross-validation on the same outer folds.

    Each feature set is evaluated by :func:`lnmkit.models.nested_cv` (hyperparameters
    chosen inside each outer-training set; slide scores from ``stacked`` joined fold
    by fold, so that no outer-test patient influenced a training score). Every model
    sees the same outer folds, so their per-fold concordances are paired.

    Parameters
    ----------
    X : pandas.DataFrame or lnmkit.fusion.FusionTable
        Indexed by ``patient_id``.
    y : structured ndarray
        Survival target in X's row order (e.g. ``cohort.survival("os", patients=X.index)``).
    feature_sets : dict of str -> list of str, optional
        Model name -> columns of ``X`` and/or of ``stacked`` (e.g. ``{"clinical": [...],
        "clinical + radiology": [...], "clinical + slide": [..., "slide_score"], "all": [...]}``).
        Default with a FusionTable: :func:`lnmkit.models.default_feature_sets` (the
        same sets as :func:`lnmkit.models.compare_models`).
    estimator : survival estimator, default=CoxPH()
        Any lnmkit survival model (cloned for each fit).
    param_grid : dict, optional
        Inner grid search (e.g. ``{"penalizer": [0.0, 0.1]}``), scored by Harrell's C.
    folds : pandas.Series of int, optional
        Outer fold of each patient; default ``stacked.folds`` or folds made by
        :func:`lnmkit.models.make_patient_folds` (stratified by event).
    stacked : lnmkit.models.NestedFeatures, optional
        Nested out-of-fold level-0 scores (e.g. from :func:`lnmkit.fusion.nested_cross_fit`).
    n_splits, inner_splits : int, default=5, 3
    groups : pandas.Series, optional
        Group of each patient (e.g. centre) for the folds.
    reference : str, optional
        Model the others are compared with; default the first of ``feature_sets``.
    n_bootstrap : int, default=1000
        Resamples of the patients within each outer fold for the intervals.
    level : float, default=0.95
    random_state : int, default=0
    progress : bool, default=False

    Returns
    -------
    SurvivalComparison

    Raises
    ------
    lnmkit.exceptions.ModelInputError
        If a feature set is empty or names an unknown column, or the reference is unknown.
    lnmkit.exceptions.LeakageError
        If slide scores lack nested provenance or ``folds`` differ from ``stacked.folds``.
    """
    from lnmkit.models import CoxPH, default_feature_sets, make_patient_folds, nested_cv
    from lnmkit.models._folds import check_folds

    where = "compare_survival_models"
    if feature_sets is None:
        feature_sets = default_feature_sets(X, stacked)
    if not isinstance(feature_sets, dict) or not feature_sets:
        raise ModelInputError(f"{where}: feature_sets must be a non-empty dict of model name -> list of columns.")
    sets = {str(k): list(v) for k, v in feature_sets.items()}
    empty = [k for k, v in sets.items() if not v]
    if empty:
        raise ModelInputError(f"{where}: feature set(s) {empty} are empty.")
    base = next(iter(sets)) if reference is None else str(reference)
    if base not in sets:
        raise ModelInputError(f"{where}: reference {base!r} is not one of {list(sets)}.")
    n_boot = check_int(n_bootstrap, "n_bootstrap", where, minimum=1)
    level = check_fraction(level, "level", where)
    frame = getattr(X, "frame", X)
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{where}: X must be a DataFrame indexed by patient_id; got {type(X).__name__}.")
    event, time = check_survival_target(y, where, index=frame.index)
    if len(time) != len(frame):
        raise ModelInputError(f"{where}: X has {len(frame)} rows but y has {len(time)}.")
    index = frame.index.astype(str)
    if folds is not None:
        outer = check_folds(folds, index, where)
    elif stacked is not None:
        outer = check_folds(stacked.folds, index, where)
    else:
        outer = make_patient_folds(index, y, n_splits=n_splits, groups=groups, random_state=random_state, where=where)
    est = CoxPH() if estimator is None else estimator
    results, preds = {}, {}
    for name, cols in sets.items():
        uses_stack = stacked is not None and any(c in stacked.columns for c in cols)
        res = nested_cv(est, X, y, param_grid=param_grid, scoring=harrell_c, response="predict", folds=outer,
                        inner_splits=inner_splits, groups=groups, stacked=stacked if uses_stack else None,
                        features=cols, refit=False, random_state=random_state, name=name, progress=progress)
        results[name] = res
        preds[name] = res.predictions["prediction"]
    predictions = pd.DataFrame(preds)
    predictions["fold"] = outer.reindex(predictions.index).to_numpy()
    fold_ids = sorted(outer.unique())
    fold_c = pd.DataFrame(index=pd.Index(fold_ids, name="fold"), columns=list(sets), dtype=float)
    rng = np.random.default_rng(random_state)
    boot = np.zeros((n_boot, len(sets)))
    ev = pd.Series(event, index=index).reindex(predictions.index).to_numpy()
    tm = pd.Series(time, index=index).reindex(predictions.index).to_numpy()
    for k in fold_ids:
        m = (predictions["fold"] == k).to_numpy()
        counts = rng.multinomial(m.sum(), np.full(m.sum(), 1 / m.sum()), size=n_boot).astype(float)
        for j, name in enumerate(sets):
            r = predictions[name].to_numpy()[m]
            conc, comp = _pair_weighted_sums(ev[m], tm[m], r, np.ones(m.sum()), np.inf,
                                             np.vstack([np.ones(m.sum()), counts]))
            with np.errstate(invalid="ignore", divide="ignore"):
                c = conc / comp
            fold_c.loc[k, name] = c[0]
            boot[:, j] += c[1:] / len(fold_ids)
    return SurvivalComparison(fold_c=fold_c, predictions=predictions, results=results, features=sets,
                              reference=base, level=level, bootstrap=pd.DataFrame(boot, columns=list(sets)))
