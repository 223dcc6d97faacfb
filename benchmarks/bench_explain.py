"""Explanation and report speed.

1. TreeSHAP for 5,000 patients x 40 features: xgboost's ``pred_contribs`` against
   ``shap.TreeExplainer`` on the same booster (and lnmkit's ``explain`` wrapper),
   with the largest difference between their values.
2. The permutation sampler (random survival forest): rows scored per patient and
   seconds per patient.
3. Patient reports on a synthetic cohort with slides: one report from scratch
   (``patient_report``: the cohort-wide SHAP work redone) against reports from one
   shared ``ReportContext``, and the time for ``--n-reports`` reports (200 by
   default; patients are cycled when the cohort is smaller). Heatmaps reuse the
   stored tile coordinates and contributions and read only the slide thumbnail.

Run: ``python benchmarks/bench_explain.py [--n-patients 40] [--n-reports 200] [--work DIR]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def _timed(fn, repeat=3):
    best, out = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_treeshap(n=5000, p=40, seed=0):
    import shap
    import xgboost as xgb

    from lnmkit.explain import explain

    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"x{i}" for i in range(p)],
                     index=pd.Index([f"P{i:05d}" for i in range(n)], name="patient_id"))
    X[X > 2.2] = np.nan
    logit = X.fillna(0).to_numpy() @ rng.normal(scale=0.4, size=p) + 0.5 * np.nan_to_num(X["x0"] * X["x1"])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    model = xgb.XGBClassifier(n_estimators=300, max_depth=4, learning_rate=0.05, n_jobs=1).fit(X, y)
    booster = model.get_booster()
    d = xgb.DMatrix(X)
    t_xgb, contribs = _timed(lambda: booster.predict(d, pred_contribs=True))
    explainer = shap.TreeExplainer(booster)
    t_shap, values = _timed(lambda: explainer.shap_values(X, check_additivity=False))
    t_lnmkit, ex = _timed(lambda: explain(model, X))
    diff = float(np.abs(np.asarray(values) - contribs[:, :-1]).max())
    margin = booster.predict(d, output_margin=True)
    add = float(np.abs(ex.values.sum(1) + ex.base_values - margin).max())
    return [
        {"task": f"TreeSHAP {n} x {p}, 300 trees", "method": "xgboost pred_contribs (baseline)",
         "seconds": t_xgb, "ratio": 1.0, "note": ""},
        {"task": f"TreeSHAP {n} x {p}, 300 trees", "method": "shap.TreeExplainer", "seconds": t_shap,
         "ratio": t_shap / t_xgb, "note": f"max |diff| {diff:.1e}"},
        {"task": f"TreeSHAP {n} x {p}, 300 trees", "method": "lnmkit.explain (pred_contribs + checks)",
         "seconds": t_lnmkit, "ratio": t_lnmkit / t_xgb, "note": f"additivity error {add:.1e}"},
    ]


def bench_sampler(n_explain=10, p=40, seed=0):
    from sksurv.ensemble import RandomSurvivalForest

    from lnmkit.explain import explain

    rng = np.random.default_rng(seed)
    n = 500
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"x{i}" for i in range(p)],
                     index=pd.Index([f"P{i:04d}" for i in range(n)], name="patient_id"))
    time_ = rng.exponential(np.exp(-0.5 * X["x0"].to_numpy()))
    y = np.array(list(zip(rng.random(n) < 0.7, time_ + 1e-3)), dtype=[("event", bool), ("time", float)])
    rsf = RandomSurvivalForest(n_estimators=100, min_samples_leaf=15, random_state=0, n_jobs=1).fit(X, y)
    t_pred, _ = _timed(lambda: rsf.predict(X), repeat=1)
    t, ex = _timed(lambda: explain(rsf, X.iloc[:n_explain], background=X, n_background=50, n_permutations=10),
                   repeat=1)
    rows_per_patient = 10 * (p + 1) * 50
    return [{"task": f"RSF (100 trees) sampled SHAP, {p} features", "method": "predict 500 rows (baseline)",
             "seconds": t_pred, "ratio": 1.0, "note": ""},
            {"task": f"RSF (100 trees) sampled SHAP, {p} features", "method": f"explain {n_explain} patients",
             "seconds": t, "ratio": t / t_pred,
             "note": f"{rows_per_patient} rows/patient, {t / n_explain:.2f} s/patient"}]


def _cohort_run(work, n_patients, seed=0):
    from lnmkit.cohort import Cohort
    from lnmkit.features import extract
    from lnmkit.fusion import build_fusion_table
    from lnmkit.mil import cross_fit, load_bags
    from lnmkit.models import LNMLogisticRegression
    from lnmkit.synth import make_cohort

    work = Path(work)
    cohort_dir = work / "cohort"
    if not (cohort_dir / "clinical.csv").exists():
        make_cohort(cohort_dir, n_patients=n_patients, seed=seed, slide_size=4096, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cohort = Cohort.from_dir(cohort_dir)
        fs = extract(cohort, work / "features", progress=False)
        cf = cross_fit(load_bags(fs, cohort, progress=False), cohort.outcomes, n_splits=5, progress=False)
        table = build_fusion_table(cohort, slide=cf, radiology=True)
    cols = [c for c in ("ct_stage", "lvi", "grade", "cea_ng_ml", "rad_short_axis_max_mm", "slide_lnm_score",
                        "slide_otc_score") if c in table.frame.columns]
    y = (cohort.outcomes.loc[table.frame.index, "pn_status"] == "pN+").astype(int)
    model = LNMLogisticRegression(penalty="l2", C=0.5).fit(table.frame[cols], y)
    return cohort, fs, cf, table, model


def bench_reports(work, n_patients, n_reports):
    import matplotlib

    matplotlib.use("Agg")
    from lnmkit.report import ReportContext, patient_report

    cohort, fs, cf, table, model = _cohort_run(work, n_patients)
    kw = {"outcomes": cohort, "crossfit": cf, "tile_size_level0": fs}
    pids = list(cf.oof.index)
    out = Path(work) / "reports"
    out.mkdir(exist_ok=True)
    t = time.perf_counter()
    patient_report({"lnm": model}, table, pids[0], **kw).save(out / "single.html")
    t_single = time.perf_counter() - t
    t = time.perf_counter()
    ctx = ReportContext({"lnm": model}, table, **kw)
    t_ctx = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(n_reports):
        pid = pids[i % len(pids)]
        ctx.patient_report(pid).save(out / f"{pid}.html")
    t_many = time.perf_counter() - t
    per = t_many / n_reports
    return [{"task": f"patient reports ({len(pids)}-patient cohort, 4096-px slides)",
             "method": "one report from scratch (baseline)", "seconds": t_single, "ratio": 1.0, "note": ""},
            {"task": f"patient reports ({len(pids)}-patient cohort, 4096-px slides)",
             "method": "shared ReportContext (once)", "seconds": t_ctx, "ratio": t_ctx / t_single, "note": ""},
            {"task": f"patient reports ({len(pids)}-patient cohort, 4096-px slides)",
             "method": f"{n_reports} reports from the context", "seconds": t_many, "ratio": per / t_single,
             "note": f"{per:.2f} s/report (ratio per report)"}]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-patients", type=int, default=40)
    parser.add_argument("--n-reports", type=int, default=200)
    parser.add_argument("--work", default=None, help="Folder for the synthetic cohort (reused when present).")
    parser.add_argument("--skip-reports", action="store_true")
    parser.add_argument("--only", choices=["treeshap", "sampler", "reports"], default=None,
                        help="Run one part only.")
    args = parser.parse_args()
    rows = []
    if args.only in (None, "treeshap"):
        rows += bench_treeshap()
    if args.only in (None, "sampler"):
        rows += bench_sampler()
    if args.only in (None, "reports") and not args.skip_reports:
        work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="lnmkit-bench-explain-"))
        rows += bench_reports(work, args.n_patients, args.n_reports)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
