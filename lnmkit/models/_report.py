"""Fit and compare LNM models on a fusion table and write tables, plots and models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lnmkit._io import atomic_path
from lnmkit.exceptions import ModelInputError

__all__ = ["LNMModelsRun", "run_lnm_models", "ESTIMATORS"]

#: Named estimators of :func:`run_lnm_models` (and ``lnmkit lnm-models --model``) and their grids.
ESTIMATORS = {
    "logistic": (lambda seed: _logistic(None, seed), None),
    "ridge": (lambda seed: _logistic("l2", seed), {"C": [0.03, 0.3, 3.0]}),
    "xgb": (lambda seed: _xgb(seed), {"max_depth": [2, 3], "n_estimators": [100, 300]}),
}


def _logistic(penalty, seed):
    from lnmkit.models._lnm import LNMLogisticRegression

    return LNMLogisticRegression(penalty=penalty, random_state=seed)


def _xgb(seed):
    from lnmkit.models._lnm import LNMXGBClassifier

    return LNMXGBClassifier(random_state=seed)


@dataclass(frozen=True)
class LNMModelsRun:
    """What :func:`run_lnm_models` computed and wrote.

    Attributes
    ----------
    comparison : ModelComparison
    models : dict name -> fitted estimator
        Each feature set's model fitted on every patient (for new patients).
    files : dict name -> pathlib.Path
    """

    comparison: object
    models: dict
    files: dict

    def __repr__(self):
        return repr(self.comparison)


def run_lnm_models(table, y, out_dir, *, model="ridge", stacked=None, feature_sets=None, n_splits=5,
                   inner_splits=5, seed=0, n_bootstrap=1000, categories=(0.1, 0.3)):
    """Nested-CV comparison of feature sets, final models, and their files.

    Writes into ``out_dir``: ``comparison.csv`` (one row per feature set),
    ``metrics_<set>.csv`` (every binary metric of each set), ``predictions.csv``
    (outer out-of-fold predictions), ``roc.png``, ``calibration.png``,
    ``decision_curve.png`` and ``models/<set>.json`` (each set's model refitted on
    every patient; JSON, loadable with :func:`lnmkit.models.load_model`).

    Parameters
    ----------
    table : FusionTable
    y : pandas.Series
        0/1 outcome indexed by patient_id; patients with a missing value are left out.
    out_dir : str or path-like
    model : {"logistic", "ridge", "xgb"}, default="ridge"
        ``logistic`` is unpenalised (no grid), ``ridge`` searches ``C``, ``xgb`` depth
        and trees, inside each outer-training set.
    stacked : NestedFeatures, optional
        Nested slide scores. Without them, slide-score columns are left out of every
        feature set (their only honest nested estimate needs them).
    feature_sets : dict, optional
    n_splits, inner_splits : int, default=5
    seed : int, default=0
    n_bootstrap : int, default=1000
    categories : sequence of float, default=(0.1, 0.3)

    Returns
    -------
    LNMModelsRun
    """
    import matplotlib.pyplot as plt
    from sklearn.metrics import make_scorer, roc_auc_score

    from lnmkit.models._compare import compare_models, default_feature_sets
    from lnmkit.models._nested import _inner_search

    if model not in ESTIMATORS:
        raise ModelInputError(f"run_lnm_models: model must be one of {sorted(ESTIMATORS)}; got {model!r} instead.")
    make, grid = ESTIMATORS[model]
    estimator = make(seed)
    if feature_sets is None:
        feature_sets = default_feature_sets(table, stacked)
        if stacked is None:
            slide = set(table.modality_columns("slide"))
            feature_sets = {k: [c for c in v if c not in slide] for k, v in feature_sets.items()
                            if not slide or k in ("clinical", "clinical + radiology")}
    cmp = compare_models(table, y, feature_sets, estimator, stacked=stacked, param_grid=grid, n_splits=n_splits,
                         inner_splits=inner_splits, random_state=seed, n_bootstrap=n_bootstrap,
                         categories=categories, missing_outcome="drop")
    out = Path(out_dir)
    (out / "models").mkdir(parents=True, exist_ok=True)
    files = {}

    def _csv(frame, name, index=True):
        with atomic_path(out / name) as tmp:
            frame.to_csv(tmp, index=index)
        files[name] = out / name

    _csv(cmp.table, "comparison.csv")
    _csv(cmp.predictions, "predictions.csv")
    for name, ev in cmp.evaluations.items():
        _csv(ev.table, f"metrics_{_slug(name)}.csv")
    for kind, fname in (("roc", "roc.png"), ("calibration", "calibration.png"), ("decision", "decision_curve.png")):
        fig = cmp.plot(kind=kind)
        with atomic_path(out / fname, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        files[fname] = out / fname
    frame = getattr(table, "frame", table)
    yy = y.reindex(frame.index)
    keep = yy.notna().to_numpy()
    models = {}
    for name, cols in feature_sets.items():
        X = frame.loc[keep, [c for c in cols if c in frame.columns]]
        if stacked is not None:
            X = X.drop(columns=[c for c in stacked.columns if c in X.columns]).join(
                stacked.final[[c for c in stacked.columns if c in cols]], how="left")
        fitted, _ = _inner_search(estimator, grid, X, yy[keep].astype(int).to_numpy(), inner_splits, seed,
                                  make_scorer(roc_auc_score, response_method="predict_proba"), "predict_proba",
                                  None, None)
        models[name] = fitted
        path = fitted.save(out / "models" / f"{_slug(name)}.json")
        files[f"models/{path.name}"] = path
    return LNMModelsRun(comparison=cmp, models=models, files=files)


def _slug(name):
    import re

    return re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")
