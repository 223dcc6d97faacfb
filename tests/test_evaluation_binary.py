"""lnmkit.evaluation (binary): DeLong, calibration, thresholds, decision curves, NRI / IDI.

Reference numbers come from R (pROC 1.18, rms 6.5, Debian) run by
``tests/data/evaluation_binary_reference.R`` on scikit-survival's ``load_gbsg2``
(686 patients, y = more than 3 positive lymph nodes); they are stored in
``tests/data/evaluation_binary_r_reference.csv`` and R is rerun when installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lnmkit.evaluation import (auc_delong, calibration, decision_curve, delong_test, evaluate_binary,
                               reclassification, roc_auc, threshold_metrics, youden_threshold)
from lnmkit.exceptions import ModelInputError

DATA = Path(__file__).parent / "data"
R_SCRIPT = DATA / "evaluation_binary_reference.R"
R_STORED = DATA / "evaluation_binary_r_reference.csv"


def write_input(path):
    """The R script's input: GBSG2 with the outcome, two scores and a fixed risk formula."""
    from sksurv.datasets import load_gbsg2

    X, _ = load_gbsg2()
    d = X.copy()
    d["y"] = (d["pnodes"] > 3).astype(int)
    d["lp"] = 0.02 * d["tsize"] + 0.7 * (d["tgrade"] == "III") - 0.002 * d["progrec"]
    d["p"] = 1 / (1 + np.exp(-(-1.6 + 0.03 * d["tsize"] + 0.9 * (d["tgrade"] == "III")
                              + 0.4 * (d["tgrade"] == "II") - 0.003 * d["progrec"])))
    d.to_csv(path, index=False)
    return d


@pytest.fixture(scope="module")
def gbsg(tmp_path_factory):
    path = tmp_path_factory.mktemp("gbsg") / "input.csv"
    return path, write_input(path)


def _reference(path):
    return pd.read_csv(path).set_index("name")["value"]


def _check_against(ref, d):
    # DeLong CIs and the paired test: same formulas as pROC; 1e-4 is the bar, the
    # differences seen are ~1e-12 (floating point only)
    for score in ("tsize", "lp"):
        r = auc_delong(d["y"], d[score])
        assert r["auc"] == pytest.approx(ref[f"{score}_auc"], abs=1e-6)
        assert r["lower"] == pytest.approx(ref[f"{score}_auc_lower_95"], abs=1e-4)
        assert r["upper"] == pytest.approx(ref[f"{score}_auc_upper_95"], abs=1e-4)
        assert r["se"] == pytest.approx(ref[f"{score}_auc_se"], abs=1e-6)
    t = delong_test(d["y"], d["lp"], d["tsize"])
    assert t["z"] == pytest.approx(ref["delong_z"], abs=1e-4)
    assert t["p_value"] == pytest.approx(ref["delong_p"], abs=1e-4)
    # calibration: glm refits; statsmodels' IRLS and R's agree to ~1e-9
    cal = calibration(d["y"], d["p"])
    assert cal.intercept == pytest.approx(ref["calibration_intercept_glm"], abs=1e-4)
    assert cal.slope == pytest.approx(ref["calibration_slope_glm"], abs=1e-4)
    assert cal.intercept == pytest.approx(ref["calibration_intercept_lrm"], abs=1e-4)
    assert cal.slope == pytest.approx(ref["calibration_slope_lrm"], abs=1e-4)
    ev = evaluate_binary(d["y"], d["p"], threshold=0.5, n_bootstrap=0)
    assert ev.table.loc["brier", "value"] == pytest.approx(ref["brier"], abs=1e-10)


def test_delong_and_calibration_against_R_stored(gbsg):
    _, d = gbsg
    _check_against(_reference(R_STORED), d)


def test_logistic_coefficients_against_R_glm(gbsg):
    from lnmkit.models import LNMLogisticRegression

    _, d = gbsg
    ref = _reference(R_STORED)
    cols = ["age", "tsize", "tgrade", "estrec", "progrec", "menostat", "horTh"]
    m = LNMLogisticRegression().fit(d[cols], d["y"])
    coef = pd.concat([pd.Series({"intercept": m.intercept_}), m.coef_])
    se = np.sqrt(np.diag(m.cov_.to_numpy()))
    for i, name in enumerate(coef.index):
        # maximum likelihood by lbfgs on standardised terms (tol 1e-10) against R's IRLS
        assert coef[name] == pytest.approx(ref[f"coef_{name}"], rel=1e-4, abs=1e-6), name
        assert se[i] == pytest.approx(ref[f"se_{name}"], rel=1e-4), name


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript not installed")
def test_delong_and_calibration_against_R_live(gbsg, tmp_path):
    path, d = gbsg
    out = tmp_path / "ref.csv"
    proc = subprocess.run(["Rscript", str(R_SCRIPT), str(path), str(out)], capture_output=True, text=True)
    if proc.returncode != 0 and "there is no package" in proc.stderr:
        pytest.skip(f"R packages missing: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    live, stored = _reference(out), _reference(R_STORED)
    pd.testing.assert_series_equal(live, stored, rtol=1e-8)
    _check_against(live, d)


def test_delong_matches_sklearn_auc_and_handles_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + 0.8 * y, 1)  # many ties
    assert auc_delong(y, s)["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    r = auc_delong(y, s, interval="logit")
    assert r["lower"] < r["auc"] < r["upper"]
    t = delong_test(y, s, s)
    assert t["delta"] == 0 and t["p_value"] == 1.0


def test_bootstrap_ci_brackets_auc_and_is_close_to_delong():
    rng = np.random.default_rng(12)
    y = rng.integers(0, 2, 400)
    s = rng.normal(size=400) + y
    r = roc_auc(y, s, n_bootstrap=500, random_state=1)
    assert r.boot_lower < r.auc < r.boot_upper
    assert r.boot_lower == pytest.approx(r.lower, abs=0.02) and r.boot_upper == pytest.approx(r.upper, abs=0.02)


def test_threshold_metrics_counts_and_youden():
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    p = np.array([0.1, 0.2, 0.6, 0.4, 0.8, 0.9, 0.3, 0.7])
    t = threshold_metrics(y, p, threshold=0.5).table["value"]
    assert t["sensitivity"] == pytest.approx(3 / 4) and t["specificity"] == pytest.approx(3 / 4)
    assert t["ppv"] == pytest.approx(3 / 4) and t["npv"] == pytest.approx(3 / 4)
    assert youden_threshold(y, p) == pytest.approx(0.7)
    # chosen inside training folds: each fold's cut-off never looks at that fold
    folds = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    tf = threshold_metrics(y, p, folds=folds)
    assert tf.source == "youden (training folds)" and len(tf.threshold) == 2
    assert tf.threshold[0] == pytest.approx(youden_threshold(y[folds == 1], p[folds == 1]))


def test_decision_curve_agrees_with_net_benefit_formula():
    rng = np.random.default_rng(13)
    p = rng.random(300)
    y = (rng.random(300) < p).astype(int)
    dc = decision_curve(y, {"m": p, "all": p ** 2}, thresholds=[0.1, 0.2, 0.4])
    t = dc.table
    for pt in (0.1, 0.2, 0.4):
        treat = p >= pt
        nb = (treat & (y == 1)).mean() - (treat & (y == 0)).mean() * pt / (1 - pt)
        assert t.loc[pt, "m"] == pytest.approx(nb, abs=1e-12)
        assert t.loc[pt, "treat none"] == 0
        assert t.loc[pt, "treat all"] == pytest.approx(y.mean() - (1 - y.mean()) * pt / (1 - pt))
        assert t.loc[pt, "all"] == pytest.approx(((p ** 2 >= pt) & (y == 1)).mean()
                                                 - ((p ** 2 >= pt) & (y == 0)).mean() * pt / (1 - pt))
    assert {"m", "all", "treat all", "treat none"} == set(t.columns)  # a model "all" is not the strategy


def test_calibration_of_well_calibrated_predictions():
    rng = np.random.default_rng(14)
    p = rng.uniform(0.05, 0.95, 4000)
    y = (rng.random(4000) < p).astype(int)
    c = calibration(y, p)
    assert c.slope_lower < 1 < c.slope_upper
    assert c.intercept_lower < 0 < c.intercept_upper
    assert c.ici < 0.03 and c.emax < 0.1
    assert c.e50 <= c.e90 <= c.emax


def test_evaluate_binary_table_names_and_plots():
    import matplotlib

    matplotlib.use("agg")
    rng = np.random.default_rng(15)
    p = rng.random(150)
    y = (rng.random(150) < p).astype(int)
    ev = evaluate_binary(y, p, n_bootstrap=50)
    names = set(ev.table.index)
    assert {"auc", "auc_lower_95", "auc_upper_95", "brier", "calibration_intercept", "calibration_slope", "emax",
            "ici", "sensitivity", "specificity", "ppv", "npv", "threshold"} <= names
    assert ev.thresholds.source == "youden (same data)"
    from matplotlib.figure import Figure

    for obj in (ev, ev.roc, ev.calibration, ev.decision, ev.thresholds):
        assert isinstance(obj.plot(), Figure)
        assert "<table" in obj._repr_html_()
    assert isinstance(ev.plot(kind="roc"), Figure)
    with pytest.raises(ValueError, match="kind"):
        ev.plot(kind="nope")


def test_reclassification_by_hand():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    old = np.array([0.05, 0.2, 0.35, 0.5, 0.05, 0.2, 0.35, 0.15, 0.4, 0.25])
    new = np.array([0.15, 0.35, 0.3, 0.6, 0.02, 0.05, 0.4, 0.12, 0.2, 0.28])
    r = reclassification(y, old, new, categories=(0.1, 0.3)).table
    # events: 0.05->0.15 up, 0.2->0.35 up, 0.35->0.3 same, 0.5->0.6 same: 2 up, 0 down of 4
    # non-events: 0.2->0.05 down, 0.4->0.2 down, 0.25->0.28 same ...: 2 down, 0 up of 6
    assert r.loc["nri_events", "estimate"] == pytest.approx(2 / 4)
    assert r.loc["nri_nonevents", "estimate"] == pytest.approx(2 / 6)
    assert r.loc["nri_categorical", "estimate"] == pytest.approx(2 / 4 + 2 / 6)
    up_e, down_e = (new > old)[y == 1].mean(), (new < old)[y == 1].mean()
    down_n, up_n = (new < old)[y == 0].mean(), (new > old)[y == 0].mean()
    assert r.loc["nri_continuous", "estimate"] == pytest.approx(up_e - down_e + down_n - up_n)
    d = new - old
    assert r.loc["idi", "estimate"] == pytest.approx(d[y == 1].mean() - d[y == 0].mean())
    assert r.loc["idi", "se"] == pytest.approx(np.sqrt(d[y == 1].var(ddof=1) / 4 + d[y == 0].var(ddof=1) / 6))
    assert (r["lower_95"] < r["estimate"]).all() and (r["estimate"] < r["upper_95"]).all()


def test_bad_input_errors():
    with pytest.raises(ModelInputError, match="single class"):
        evaluate_binary([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(ModelInputError, match="0/1"):
        evaluate_binary([0, 2, 1], [0.2, 0.5, 0.9])
    with pytest.raises(ModelInputError, match=r"probabilities in \[0, 1\]"):
        calibration([0, 1, 1, 0], [0.2, 1.5, 0.9, 0.1])
    with pytest.raises(ModelInputError, match="has 3 values but y_prob has 2"):
        evaluate_binary([0, 1, 1], [0.2, 0.5])
    with pytest.raises(ValueError, match="both classes"):
        delong_test([1, 1], [0.1, 0.2], [0.3, 0.4])
    # NaN pairs are left out, not an error
    ev = evaluate_binary([0, 1, np.nan, 1, 0, 1, 0], [0.1, 0.8, 0.5, 0.7, np.nan, 0.9, 0.3], threshold=0.5,
                         n_bootstrap=0)
    assert ev.n == 5
