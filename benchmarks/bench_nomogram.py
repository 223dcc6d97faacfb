"""Bootstrap validation speed: lnmkit.nomogram.validate against R rms::validate.

Both validate the same models with B = 200 on the same 1,000 patients, in the same
run: the first 1,000 complete rows of scikit-survival's FLCHAIN (Dispenzieri et
al.), death as a binary outcome (lrm) and (futime, death) (cph), with
``rcs(age, 4) + sex + kappa + lambda + mgus``. R is timed with ``system.time``
around ``validate`` only (the fit excluded), lnmkit likewise, after one B = 2 call that
loads its compiled kernels (R has rms loaded before it starts the clock). Without ``Rscript`` the
lnmkit rows are printed alone.

Usage: python benchmarks/bench_nomogram.py [--B 200] [--n 1000] [--jobs N]
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

R_CODE = r"""
suppressMessages(library(rms))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); B <- as.integer(args[2])
d$sex <- factor(d$sex); d$mgus <- factor(d$mgus)
dd <- datadist(d); options(datadist = "dd")
f <- lrm(death ~ rcs(age, 4) + sex + kappa + lambda + mgus, data = d, x = TRUE, y = TRUE)
set.seed(1); t_lrm <- system.time(v <- validate(f, B = B))[["elapsed"]]
g <- cph(Surv(futime, death) ~ rcs(age, 4) + sex + kappa + lambda + mgus, data = d, x = TRUE, y = TRUE)
set.seed(1); t_cph <- system.time(w <- validate(g, B = B))[["elapsed"]]
cat(sprintf("lrm,%.4f,%.6f\ncph,%.4f,%.6f\n", t_lrm, v["Dxy", "index.corrected"],
            t_cph, w["Dxy", "index.corrected"]))
"""


def load(n):
    from sksurv.datasets import load_flchain

    X, y = load_flchain()
    df = X[["age", "sex", "kappa", "lambda", "mgus"]].copy()
    df["death"] = y["death"].astype(int)
    df["futime"] = y["futime"]
    df = df[df["futime"] > 0].dropna().iloc[:n].reset_index(drop=True)
    df["sex"] = df["sex"].astype(str)
    df["mgus"] = df["mgus"].astype(str)
    return df


def run_r(csv, B):
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as fh:
        fh.write(R_CODE)
    try:
        out = subprocess.run(["Rscript", fh.name, str(csv), str(B)], check=True, capture_output=True,
                             text=True, timeout=3600).stdout
    finally:
        os.unlink(fh.name)
    rows = {}
    for line in out.strip().splitlines():
        if not line.startswith(("lrm,", "cph,")):
            continue  # rms prints notes such as "Divergence or singularity in k samples"
        kind, sec, dxy = line.split(",")
        rows[kind] = (float(sec), float(dxy))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--B", type=int, default=200)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="workers of the parallel lnmkit run (joblib)")
    args = parser.parse_args()

    from lnmkit.nomogram import fit_nomogram, validate

    df = load(args.n)
    preds = ["age", "sex", "kappa", "lambda", "mgus"]
    models = {
        "lrm": fit_nomogram(df, preds, "death", splines=["age"]),
        "cph": fit_nomogram(df, preds, ("futime", "death"), kind="cox", times=[365.0], splines=["age"]),
    }
    r_rows = {}
    if shutil.which("Rscript"):
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / "flchain.csv"
            df.to_csv(csv, index=False)
            r_rows = run_r(csv, args.B)
    print(f"validate, B = {args.B}, {len(df)} patients (FLCHAIN), {os.cpu_count()} CPU(s)")
    print(f"{'model':<6}{'run':<22}{'seconds':>10}{'x R':>8}{'Dxy corrected':>15}")
    for kind, nomo in models.items():
        if kind in r_rows:
            sec, dxy = r_rows[kind]
            print(f"{kind:<6}{'R rms::validate':<22}{sec:>10.2f}{1.0:>8.2f}{dxy:>15.4f}")
        validate(nomo, B=2, seed=1)  # loads the compiled kernels, as R has rms loaded before timing
        for jobs in sorted({1, args.jobs}):
            t0 = time.perf_counter()
            res = validate(nomo, B=args.B, seed=1, n_jobs=None if jobs == 1 else jobs)
            sec = time.perf_counter() - t0
            ratio = sec / r_rows[kind][0] if kind in r_rows else np.nan
            label = "lnmkit" + ("" if jobs == 1 else f", n_jobs={jobs}")
            print(f"{kind:<6}{label:<22}{sec:>10.2f}{ratio:>8.2f}{res.table.loc['Dxy', 'index_corrected']:>15.4f}")


if __name__ == "__main__":
    main()
