"""lnmkit's survival models and metrics against R's survival and riskRegression packages.

The expected numbers live in ``tests/data/survival_r_reference.csv``, made by
``tests/data/survival_reference.R`` from the public datasets that scikit-survival
(gbsg2, veterans) and lifelines (rossi) ship; the data are written by
:func:`export_datasets`, never stored here. Every run compares against the stored
numbers; where ``Rscript`` (with survival and riskRegression) is installed the script
is rerun and its fresh output must agree with the stored one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sksurv.util import Surv

from lnmkit.evaluation import (brier_score, concordance_index, km_by_risk_group, survival_calibration,
                               time_dependent_auc)
from lnmkit.models import CoxPH

DATA = Path(__file__).parent / "data"
SCRIPT = DATA / "survival_reference.R"
STORED = DATA / "survival_r_reference.csv"
TIMES = [365.0, 730.0, 1095.0, 1460.0, 1825.0]


def _rossi():
    from lifelines.datasets import load_rossi

    d = load_rossi()
    return d.drop(columns=["week", "arrest"]), Surv.from_arrays(d["arrest"].astype(bool), d["week"].astype(float)), d


def _gbsg2():
    from sksurv.datasets import load_gbsg2

    X, y = load_gbsg2()
    X = X[["age", "estrec", "horTh", "menostat", "pnodes", "progrec", "tgrade", "tsize"]]
    y = Surv.from_arrays(y["cens"], y["time"])
    return X, y


def _veterans():
    from sksurv.datasets import load_veterans_lung_cancer

    X, y = load_veterans_lung_cancer()
    X = X[["Age_in_years", "Celltype", "Karnofsky_score", "Months_from_Diagnosis", "Prior_therapy", "Treatment"]]
    return X, Surv.from_arrays(y["Status"], y["Survival_in_days"])


def export_datasets(folder):
    """Write the datasets the R script reads (CSV, one row per patient, in loader order)."""
    folder = Path(folder)
    _rossi()[2].to_csv(folder / "survival_rossi.csv", index=False)
    for name, (X, y) in {"gbsg2": _gbsg2(), "veterans": _veterans()}.items():
        d = X.copy()
        d["time"], d["event"] = y["time"], y["event"].astype(int)
        d.to_csv(folder / f"survival_{name}.csv", index=False)


def _ref(table=None):
    t = pd.read_csv(STORED) if table is None else table
    return {(r.dataset, r.analysis, r.key): float(r.value) for r in t.itertuples()}


@pytest.fixture(scope="module")
def ref():
    return _ref()


@pytest.fixture(scope="module")
def fits():
    out = {}
    for name, loader in {"rossi": lambda: _rossi()[:2], "gbsg2": _gbsg2, "veterans": _veterans}.items():
        X, y = loader()
        out[name] = (CoxPH().fit(X, y), X, y)
    return out


@pytest.mark.parametrize("dataset", ["rossi", "gbsg2", "veterans"])
def test_cox_coefficients_and_se_against_R(dataset, fits, ref):
    """survival::coxph(..., ties = "efron"); gbsg2 and veterans include factors (rms-style term names)."""
    cox = fits[dataset][0]
    for term in cox.coef_.index:
        r_name = term.replace("=", "")  # R names factor terms column + level ("tgradeII")
        # rtol 1e-4: both are Newton fits of the same Efron likelihood, stopped by different criteria
        np.testing.assert_allclose(cox.coef_[term], ref[(dataset, "coef", r_name)], rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(cox.summary_.loc[term, "se"], ref[(dataset, "se", r_name)], rtol=1e-4)
    assert sorted(cox.coef_.index.str.replace("=", "")) == sorted(k for (d, a, k) in ref if d == dataset and a == "coef")
    np.testing.assert_allclose(cox.log_likelihood_, ref[(dataset, "loglik", "model")], rtol=1e-8)


@pytest.mark.parametrize("dataset", ["rossi", "gbsg2", "veterans"])
def test_cox_zph_against_R(dataset, fits, ref):
    """survival::cox.zph(fit, transform = "km"): score test per term (factors as one term) and global."""
    table = fits[dataset][0].ph_test().table
    expected = {k: v for (d, a, k), v in ref.items() if d == dataset and a == "zph_chisq"}
    assert set(table.index) == set(expected)
    for term, chisq in expected.items():
        # atol 1e-3 (as required); the coefficients fed in differ from R's in the 8th digit
        np.testing.assert_allclose(table.loc[term, "chisq"], chisq, atol=1e-3)


def test_harrell_c_against_R_concordance(fits, ref):
    """survival::concordance(Surv(time, status) ~ lp, reverse = TRUE)."""
    for dataset in ("gbsg2", "veterans"):
        cox, X, y = fits[dataset]
        res = concordance_index(y, cox.predict(X), n_bootstrap=0)
        np.testing.assert_allclose(res.estimate, ref[(dataset, "harrell", "c")], atol=1e-6)


@pytest.mark.parametrize("tau", [1000.0, 2000.0])
def test_uno_c_against_R_concordance(fits, ref, tau):
    """survival::concordance(..., timewt = "n/G2", ymax = tau), Uno's IPCW weights."""
    cox, X, y = fits["gbsg2"]
    res = concordance_index(y, cox.predict(X), method="uno", tau=tau, n_bootstrap=0)
    # 1e-3: R weights by G(t-) from its own censoring KM, scikit-survival by G(t); the data
    # have ties between event and censoring days
    np.testing.assert_allclose(res.estimate, ref[("gbsg2", "uno", f"tau={tau:g}")], atol=1e-3)


def test_cox_survival_curves_against_R_survfit(fits, ref):
    """survfit(coxph, newdata, ctype = 1, stype = 2): Breslow baseline, exp(-H)."""
    cox, X, y = fits["gbsg2"]
    S = cox.predict_survival_function(X.iloc[:10], TIMES)
    for i in range(10):
        for t in TIMES:
            np.testing.assert_allclose(S.iloc[i][t], ref[("gbsg2", "survival", f"row={i};time={t:g}")], rtol=1e-4)


def test_time_dependent_auc_and_brier_against_riskRegression(fits, ref):
    """riskRegression::Score(list(risk matrix), cens.model = "km", metrics = c("auc", "brier"))."""
    cox, X, y = fits["gbsg2"]
    S = cox.predict_survival_function(X, TIMES)
    auc = time_dependent_auc(y, y, 1 - S)
    brier = brier_score(y, y, S)
    for t, a, b, b0 in zip(TIMES, auc.auc, brier.brier, brier.reference):
        # 1e-3: the same IPCW estimators; they differ only in G(t) versus G(t-) at tied days
        np.testing.assert_allclose(a, ref[("gbsg2", "auc", f"time={t:g}")], atol=1e-3)
        np.testing.assert_allclose(b, ref[("gbsg2", "brier", f"time={t:g}")], atol=1e-3)
        np.testing.assert_allclose(b0, ref[("gbsg2", "brier_null", f"time={t:g}")], atol=1e-3)


def test_survival_calibration_against_R(fits, ref):
    """Austin et al. (2020) in R: coxph on log(-log S(t)) and on Hmisc::rcspline.eval of it (3 knots)."""
    cox, X, y = fits["gbsg2"]
    s5 = cox.predict_survival_function(X, [1825.0])[1825.0]
    res = survival_calibration(y, s5, 1825.0)
    np.testing.assert_allclose(res.slope, ref[("gbsg2", "calibration", "slope")], rtol=1e-5)
    for key in ("ici", "e50", "e90"):
        # 1e-4: the survival inputs agree with R's to about 1e-6
        np.testing.assert_allclose(getattr(res, key), ref[("gbsg2", "calibration", key)], atol=1e-4)


def test_logrank_against_R_survdiff(ref):
    """survdiff(Surv(time, status) ~ tgrade): the log-rank chi-square across three groups."""
    X, y = _gbsg2()
    grade = X["tgrade"].cat.codes.to_numpy(dtype=float)
    res = km_by_risk_group(y, grade, cutpoints=[0.5, 1.5])
    np.testing.assert_allclose(res.logrank_chisq, ref[("gbsg2", "logrank", "chisq")], rtol=1e-6)


def _rscript_ready():
    if shutil.which("Rscript") is None:
        return False
    probe = subprocess.run(["Rscript", "-e", "library(survival); library(riskRegression)"],
                           capture_output=True, text=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _rscript_ready(), reason="Rscript with survival and riskRegression is not installed")
def test_stored_reference_matches_live_R(tmp_path):
    export_datasets(tmp_path)
    out = tmp_path / "ref.csv"
    run = subprocess.run(["Rscript", str(SCRIPT), str(tmp_path), str(out)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    live, stored = _ref(pd.read_csv(out)), _ref()
    assert live.keys() == stored.keys()
    for key, value in stored.items():
        np.testing.assert_allclose(live[key], value, rtol=1e-9, atol=1e-12, err_msg=str(key))
