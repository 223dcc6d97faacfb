"""Compare feature sets (clinical, + radiology, + slide, all) on the same outer folds."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lnmkit.exceptions import ModelInputError
from lnmkit.models._folds import check_folds, make_patient_folds
from lnmkit.models._nested import nested_cv, prepare_xy

__all__ = ["ModelComparison", "compare_models", "default_feature_sets"]


def default_feature_sets(X, stacked=None):
    """Feature sets from a FusionTable's provenance: clinical, + radiology, + slide, all.

    Parameters
    ----------
    X : FusionTable
    stacked : NestedFeatures, optional
        Its columns are the slide scores (they replace slide columns of the table).

    Returns
    -------
    dict name -> list of str
        Only the sets whose modalities are present.
    """
    prov = getattr(X, "provenance", None)
    if prov is None:
        raise ModelInputError("compare_models: pass feature_sets= (name -> columns) when X is a plain DataFrame; "
                              "with a FusionTable they come from its provenance.")
    cols = {m: [c for c, p in prov.items() if p == m] for m in ("clinical", "extra", "radiology", "slide")}
    base = cols["clinical"] + cols["extra"]
    slide = cols["slide"]
    if stacked is not None:
        slide = [c for c in slide if c not in stacked.columns and c.endswith("_missing")] + list(stacked.columns)
    sets = {"clinical": base}
    if cols["radiology"]:
        sets["clinical + radiology"] = base + cols["radiology"]
    if slide:
        sets["clinical + slide"] = base + slide
    if cols["radiology"] and slide:
        sets["all"] = base + cols["radiology"] + slide
    return sets


@dataclass(frozen=True)
class ModelComparison:
    """Nested-CV results of several feature sets on the same outer folds.

    Attributes
    ----------
    results : dict name -> NestedCVResult
    reference : str
        The model every other one is compared with (paired DeLong, NRI, IDI).
    folds : pandas.Series of int
    table : pandas.DataFrame
        One row per model: ``n_features``, ``n``, ``auc`` with its DeLong CI, then
        against the reference ``delta_auc`` with CI and paired DeLong ``delta_auc_p``,
        ``nri_categorical``, ``nri_continuous``, ``idi``, each with a CI (binary
        outcomes); ``score`` for other outcomes.
    evaluations : dict name -> BinaryEvaluation
        Full evaluation of each model's outer out-of-fold predictions (binary).
    """

    results: dict
    reference: str
    folds: pd.Series
    table: pd.DataFrame
    evaluations: dict = field(default_factory=dict)
    level: float = 0.95

    @property
    def predictions(self):
        """Outer out-of-fold prediction of every model, with ``y`` and ``fold`` (indexed by patient_id)."""
        first = next(iter(self.results.values()))
        out = pd.DataFrame({name: r.predictions["prediction"] for name, r in self.results.items()})
        if not first.y.dtype.names:
            out.insert(0, "y", first.y)
        out["fold"] = first.predictions["fold"]
        return out

    def to_frame(self):
        """The comparison table."""
        return self.table

    def plot(self, ax=None, kind="roc"):
        """Overlaid ROC (``kind="roc"``), calibration or decision curves; returns the Figure."""
        import matplotlib.pyplot as plt

        if not self.evaluations:
            fig, ax = plt.subplots(figsize=(5, 3.5)) if ax is None else (ax.figure, ax)
            ax.bar(list(self.table.index), self.table["score"])
            ax.set(ylabel="score", title="Nested CV")
            return fig
        if kind == "decision":
            from lnmkit.evaluation import decision_curve

            y = self.predictions["y"].to_numpy()
            return decision_curve(y, {n: r.predictions["prediction"].to_numpy() for n, r in self.results.items()}
                                  ).plot(ax=ax)
        fig, ax = plt.subplots(figsize=(5.5, 5.5)) if ax is None else (ax.figure, ax)
        for name, ev in self.evaluations.items():
            if kind == "roc":
                ev.roc.plot(ax=ax, label=name)
            elif kind == "calibration":
                ev.calibration.plot(ax=ax, label=name)
            else:
                raise ValueError(f"ModelComparison.plot: kind must be 'roc', 'calibration' or 'decision'; got "
                                 f"{kind!r} instead.")
        return fig

    def __repr__(self):
        col = "auc" if "auc" in self.table else "score"
        parts = ", ".join(f"{n}={v:.3f}" for n, v in self.table[col].items())
        return f"<ModelComparison: {len(self.results)} models on {self.folds.nunique()} outer folds, {col}: {parts}>"

    def _repr_html_(self):
        return f"<p><code>{self!r}</code></p>" + self.table.to_html(float_format="%.3f")


def compare_models(X, y, feature_sets=None, estimator=None, *, stacked=None, reference=None, param_grid=None,
                   scoring=None, response="predict_proba", folds=None, n_splits=5, inner_splits=5, groups=None,
                   categories=(0.1, 0.3), level=0.95, n_bootstrap=1000, allow_leakage=False,
                   missing_outcome="raise", random_state=0, n_jobs=None, progress=False):
    """Nested CV of several feature sets on the same outer folds, compared pairwise.

    Parameters
    ----------
    X : FusionTable or pandas.DataFrame
    y : pandas.Series or array-like
        Outcome (0/1 for LNM; any target with ``scoring`` / ``response`` otherwise).
    feature_sets : dict name -> list of str, optional
        Default (FusionTable): ``clinical``, ``clinical + radiology``,
        ``clinical + slide``, ``all`` (see :func:`default_feature_sets`).
    estimator : estimator or dict name -> estimator, optional
        Default ``LNMLogisticRegression(penalty="l2")``.
    stacked : NestedFeatures, optional
        Nested out-of-fold slide scores (:func:`lnmkit.fusion.nested_cross_fit`);
        their outer folds are used for every model.
    reference : str, optional
        Model compared against; default the first feature set.
    param_grid : dict, optional
        Inner grid search (the same for every model).
    scoring, response
        As for :func:`nested_cv`.
    folds : pandas.Series of int, optional
    n_splits, inner_splits : int, default=5
    groups : pandas.Series, optional
    categories : sequence of float, default=(0.1, 0.3)
        Risk cut-offs of the categorical NRI.
    level : float, default=0.95
    n_bootstrap : int, default=1000
        Stratified bootstrap resamples of each AUC (0 skips).
    allow_leakage : bool, default=False
    missing_outcome : {"raise", "drop"}, default="raise"
    random_state : int, default=0
    n_jobs : int, optional
    progress : bool, default=False

    Returns
    -------
    ModelComparison

    Examples
    --------
    >>> cmp = compare_models(table, y, stacked=nested)  # doctest: +SKIP
    >>> cmp.table[["auc", "delta_auc", "delta_auc_p"]]  # doctest: +SKIP
    """
    from lnmkit.evaluation import delong_test, evaluate_binary, reclassification
    from lnmkit.models._lnm import LNMLogisticRegression
    from lnmkit.models._folds import outcome_strata

    frame, yv, _ = prepare_xy(X, y, "compare_models", missing_outcome)
    if feature_sets is None:
        feature_sets = default_feature_sets(X, stacked)
    if not feature_sets:
        raise ModelInputError("compare_models: feature_sets is empty.")
    names = list(feature_sets)
    reference = names[0] if reference is None else reference
    if reference not in feature_sets:
        raise ModelInputError(f"compare_models: reference {reference!r} is not a feature set; got {names}.")
    estimator = LNMLogisticRegression(penalty="l2") if estimator is None else estimator
    if folds is not None:
        outer = check_folds(folds, frame.index, "compare_models")
    elif stacked is not None:
        outer = check_folds(stacked.folds, frame.index, "compare_models")
    else:
        outer = make_patient_folds(frame.index, yv, n_splits=n_splits, groups=groups, random_state=random_state,
                                   where="compare_models")
    results = {}
    for name in names:
        est = estimator[name] if isinstance(estimator, dict) else estimator
        # X as given (a FusionTable keeps its provenance, so leaky slide columns are still refused)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*without an outcome left out", category=UserWarning)
            results[name] = nested_cv(est, X, y, missing_outcome=missing_outcome, param_grid=param_grid,
                                      scoring=scoring, response=response, folds=outer, inner_splits=inner_splits,
                                      groups=groups, stacked=stacked, features=list(feature_sets[name]),
                                      refit=False, allow_leakage=allow_leakage, random_state=random_state,
                                      n_jobs=n_jobs, name=name, progress=progress)
    binary = not yv.dtype.names and outcome_strata(yv) is not None
    pct = int(round(level * 100))
    rows, evaluations = [], {}
    ref_pred = results[reference].predictions["prediction"].to_numpy()
    for name in names:
        r = results[name]
        row = {"model": name, "n_features": len(feature_sets[name]), "n": len(r.predictions)}
        if not binary:
            row["score"] = r.score
            rows.append(row)
            continue
        pred = r.predictions["prediction"].to_numpy()
        ev = evaluate_binary(yv, pred, folds=outer.to_numpy(), level=level, n_bootstrap=n_bootstrap,
                             random_state=random_state, name=name)
        evaluations[name] = ev
        t = ev.table["value"]
        row.update({"n_pos": int(t["n_pos"]), "auc": t["auc"], f"auc_lower_{pct}": t[f"auc_lower_{pct}"],
                    f"auc_upper_{pct}": t[f"auc_upper_{pct}"], "brier": t["brier"],
                    "calibration_slope": t["calibration_slope"]})
        if name != reference:
            d = delong_test(yv, ref_pred, pred, level=level)
            row.update({"delta_auc": d["delta"], f"delta_auc_lower_{pct}": d["delta_lower"],
                        f"delta_auc_upper_{pct}": d["delta_upper"], "delta_auc_p": d["p_value"]})
            rc = reclassification(yv, ref_pred, pred, categories=categories, level=level).table
            for metric in ("nri_categorical", "nri_continuous", "idi"):
                row.update({metric: rc.loc[metric, "estimate"],
                            f"{metric}_lower_{pct}": rc.loc[metric, f"lower_{pct}"],
                            f"{metric}_upper_{pct}": rc.loc[metric, f"upper_{pct}"]})
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")
    return ModelComparison(results=results, reference=reference, folds=outer, table=table, evaluations=evaluations,
                           level=level)
