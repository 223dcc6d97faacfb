"""Overhead of lnmkit's survival wrappers against the libraries they call, in the same process.

Usage::

    python benchmarks/bench_survival.py [--n 5000] [--p 40] [--trees 100] [--repeats 3]

Simulates ``n`` patients x ``p`` standard-normal features with proportional hazards
(Weibull baseline, 40% censoring), then times fit and prediction of

* ``lnmkit.models.CoxPH`` against ``lifelines.CoxPHFitter`` called directly (same
  convergence tolerance, and lifelines' default tolerance);
* ``lnmkit.models.RandomSurvivalForest`` against ``sksurv.ensemble.RandomSurvivalForest``;
* R's ``survival::coxph`` on the same data when ``Rscript`` is installed.

Ratios are lnmkit / direct (goal <= 1.1); each time is the best of ``--repeats`` runs, the two
sides run alternately so that other load on the machine hits both alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _data(n, p, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    beta = np.zeros(p)
    beta[: min(8, p)] = np.linspace(0.5, -0.4, min(8, p))
    u = rng.random(n)
    t = (-np.log(u) / (0.01 * np.exp(X @ beta))) ** (1 / 1.3)
    c = rng.exponential(np.quantile(t, 0.7), n)
    time_ = np.round(np.minimum(t, c), 2) + 0.01
    event = t <= c
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(p)],
                         index=pd.Index([f"P{i:05d}" for i in range(n)], name="patient_id"))
    return frame, event, time_


def _best(fn, repeats):
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _pair(ours, theirs, repeats):
    """Best times of two callables run alternately, so that load from other work hits both alike."""
    a = b = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        ours()
        a = min(a, time.perf_counter() - t0)
        t0 = time.perf_counter()
        theirs()
        b = min(b, time.perf_counter() - t0)
    return a, b


def _row(name, ours, theirs):
    print(f"{name:<44}{ours:>10.3f}{theirs:>10.3f}{ours / theirs:>8.2f}", flush=True)


def bench_cox(X, event, time_, repeats):
    from lifelines import CoxPHFitter
    from sksurv.util import Surv

    from lnmkit.models import CoxPH

    y = Surv.from_arrays(event, time_)
    frame = X.reset_index(drop=True).assign(T=time_, E=event.astype(int))
    times = np.quantile(time_, [0.25, 0.5, 0.75])
    cox = CoxPH()
    direct = CoxPHFitter()
    t_ours, t_same = _pair(lambda: cox.fit(X, y),
                           lambda: direct.fit(frame, "T", "E", fit_options={"precision": 1e-9, "max_steps": 200}),
                           repeats)
    default = CoxPHFitter()
    t_default = _best(lambda: default.fit(frame, "T", "E"), repeats)
    _row("CoxPH fit vs lifelines (same tolerance)", t_ours, t_same)
    _row("CoxPH fit vs lifelines (its default 1e-7)", t_ours, t_default)
    p_ours, p_theirs = _pair(lambda: cox.predict_survival_function(X, times),
                             lambda: direct.predict_survival_function(X, times=times), repeats)
    _row("CoxPH predict_survival_function (3 times)", p_ours, p_theirs)
    r_ours, r_theirs = _pair(lambda: cox.predict(X), lambda: direct.predict_log_partial_hazard(X), repeats)
    _row("CoxPH predict (linear predictor)", r_ours, r_theirs)
    return t_ours


def bench_rsf(X, event, time_, trees, repeats):
    from sksurv.ensemble import RandomSurvivalForest as SkRSF
    from sksurv.util import Surv

    from lnmkit.models import RandomSurvivalForest

    y = Surv.from_arrays(event, time_)
    params = dict(n_estimators=trees, min_samples_split=10, min_samples_leaf=15, max_features="sqrt",
                  random_state=0, n_jobs=1)
    ours = RandomSurvivalForest(**params)
    theirs = SkRSF(**params)
    arr = X.to_numpy()
    t_ours, t_theirs = _pair(lambda: ours.fit(X, y), lambda: theirs.fit(arr, y), repeats)
    _row(f"RSF fit ({trees} trees) vs scikit-survival", t_ours, t_theirs)
    sub, sub_arr = X.iloc[:1000], arr[:1000]
    times = theirs.unique_times_[[10, len(theirs.unique_times_) // 2]]
    p_ours, p_theirs = _pair(lambda: ours.predict_survival_function(sub, times),
                             lambda: theirs.predict_survival_function(sub_arr, return_array=True), repeats)
    _row("RSF predict_survival_function (1,000)", p_ours, p_theirs)
    r_ours, r_theirs = _pair(lambda: ours.predict(sub), lambda: theirs.predict(sub_arr), repeats)
    _row("RSF predict (risk, 1,000)", r_ours, r_theirs)


def bench_r(X, event, time_, t_cox):
    if shutil.which("Rscript") is None:
        print("R: Rscript not installed, R coxph not timed")
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.csv"
        X.reset_index(drop=True).assign(T=time_, E=event.astype(int)).to_csv(path, index=False)
        code = (f"suppressPackageStartupMessages(library(survival)); d <- read.csv('{path}'); "
                "t <- system.time(for (i in 1:3) f <- coxph(Surv(T, E) ~ ., data = d, ties = 'efron'))[['elapsed']] / 3; "
                "cat(t)")
        run = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        print(f"R: coxph failed: {run.stderr.strip()[:200]}")
        return
    t_r = float(run.stdout.strip().split()[-1])
    _row("CoxPH fit vs R survival::coxph (Efron)", t_cox, t_r)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--p", type=int, default=40)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    X, event, time_ = _data(args.n, args.p)
    print(f"{args.n} patients x {args.p} features, {event.mean():.0%} events")
    print(f"{'item':<44}{'lnmkit s':>10}{'direct s':>10}{'ratio':>8}")
    t_cox = bench_cox(X, event, time_, args.repeats)
    bench_rsf(X, event, time_, args.trees, max(1, args.repeats - 1))
    bench_r(X, event, time_, t_cox)
    print(f"load average now {os.getloadavg()[0]:.1f} (other work on the machine inflates both columns)")


if __name__ == "__main__":
    main()
