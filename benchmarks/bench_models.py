"""Time lnmkit's nested CV against scikit-learn's GridSearchCV inside cross_val_score.

Usage::

    python benchmarks/bench_models.py [--n 5000] [--p 40] [--outer 5] [--inner 5]

Both sides do the same work on the same data in the same process: for each of the
``outer`` folds, a grid search over ``inner`` folds of the outer-training patients,
a refit on them and a prediction of the outer-test patients; plus, for lnmkit, the
per-patient bookkeeping (predictions indexed by patient_id, chosen parameters).
The baseline is ``cross_val_score(GridSearchCV(pipeline, grid, cv=inner), X, y,
cv=outer, scoring="roc_auc")`` with the equivalent scikit-learn pipeline
(median imputation + standardisation + LogisticRegression; ``xgboost.XGBClassifier``
with the same parameters). Prints wall time (untraced run), peak traced memory
(a second, traced run) and the
lnmkit / scikit-learn ratio (goal: not slower, ratio <= 1.1), and the outer AUCs.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import pandas as pd


def make_data(n, p, seed=0):
    """n patients x p features (a few informative, 5% missing, two categoricals)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"x{i}" for i in range(p)],
                     index=pd.Index([f"P{i:05d}" for i in range(n)], name="patient_id"))
    lp = -0.5 + X.iloc[:, :6].to_numpy() @ np.array([0.8, -0.6, 0.5, 0.4, -0.3, 0.3])
    y = pd.Series((rng.random(n) < 1 / (1 + np.exp(-lp))).astype(int), index=X.index)
    X = X.mask(rng.random(X.shape) < 0.05)
    return X, y


def _timed(fn):
    """Result, wall seconds, and peak traced memory (MiB) of a second, traced run.

    tracemalloc slows Python-level allocation (pandas more than numpy), so the time
    comes from an untraced run and the memory from a traced one of the same work.
    """
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, wall, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--p", type=int, default=40)
    parser.add_argument("--outer", type=int, default=5)
    parser.add_argument("--inner", type=int, default=5)
    parser.add_argument("--trees", type=int, default=100)
    args = parser.parse_args()

    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBClassifier

    from lnmkit.models import LNMLogisticRegression, LNMXGBClassifier, make_patient_folds, nested_cv

    X, y = make_data(args.n, args.p)
    folds = make_patient_folds(X.index, y.to_numpy(), n_splits=args.outer, random_state=0)
    outer_cv = [(np.flatnonzero(folds.to_numpy() != k), np.flatnonzero(folds.to_numpy() == k))
                for k in range(args.outer)]
    inner_cv = StratifiedKFold(n_splits=args.inner, shuffle=True, random_state=0)
    xgb_params = dict(n_estimators=args.trees, learning_rate=0.05, subsample=0.8, colsample_bytree=0.8,
                      reg_lambda=1.0, min_child_weight=1.0, n_jobs=1, random_state=0)
    cases = [
        ("logistic L2", LNMLogisticRegression(penalty="l2"), {"C": [0.1, 1.0]},
         make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(solver="newton-cholesky")),
         {"logisticregression__C": [0.1, 1.0]}),
        ("xgboost", LNMXGBClassifier(**xgb_params), {"max_depth": [2, 3]},
         XGBClassifier(tree_method="hist", **xgb_params), {"max_depth": [2, 3]}),
    ]
    rows = []
    for name, ours, grid, theirs, their_grid in cases:
        base, t_base, m_base = _timed(lambda: cross_val_score(
            GridSearchCV(theirs, their_grid, cv=inner_cv, scoring="roc_auc"), X, y, cv=outer_cv, scoring="roc_auc"))
        res, t_ours, m_ours = _timed(lambda: nested_cv(ours, X, y, param_grid=grid, folds=folds,
                                                       inner_splits=args.inner, refit=False))
        rows.append({"model": name, "sklearn_s": t_base, "lnmkit_s": t_ours, "ratio": t_ours / t_base,
                     "sklearn_peak_mb": m_base, "lnmkit_peak_mb": m_ours,
                     "sklearn_auc": float(np.mean(base)), "lnmkit_auc": float(res.fold_scores.mean())})
    table = pd.DataFrame(rows).set_index("model")
    print(f"nested CV {args.outer} x {args.inner}, {args.n} patients x {args.p} features, grid of 2")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
