"""Survival evaluation: the metrics against scikit-survival and dcurves, the result-object
contract, bad input, and the planted truth of the synthetic cohort (Cox CIs cover the
planted overall-survival effects; the fused model beats clinical-only in nested C)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from sksurv.util import Surv  # noqa: E402

from lnmkit.evaluation import (brier_score, compare_survival_models, concordance_index, harrell_c,  # noqa: E402
                               km_by_risk_group, survival_calibration, survival_decision_curve,
                               survival_time_grid, time_dependent_auc)
from lnmkit.exceptions import LeakageError, ModelInputError  # noqa: E402
from lnmkit.models import CoxPH, NestedFeatures, make_patient_folds  # noqa: E402


@pytest.fixture(scope="module")
def gbsg():
    from sksurv.datasets import load_gbsg2

    X, y = load_gbsg2()
    X = X[["age", "pnodes", "tsize", "tgrade", "horTh"]]
    y = Surv.from_arrays(y["cens"], y["time"])
    train, test = np.arange(len(y)) % 3 != 0, np.arange(len(y)) % 3 == 0
    cox = CoxPH().fit(X[train], y[train])
    return X, y, train, test, cox


def test_concordance_bootstrap_matches_point_estimate_and_sksurv(gbsg):
    from sksurv.metrics import concordance_index_censored, concordance_index_ipcw

    from lnmkit.evaluation._survival_metrics import _pair_weighted_sums

    X, y, train, test, cox = gbsg
    r = cox.predict(X[test])
    res = concordance_index(y[test], r, n_bootstrap=300)
    expected = concordance_index_censored(y["event"][test], y["time"][test], r)[0]
    assert res.estimate == pytest.approx(expected, abs=1e-12)
    # the pair sums used by the bootstrap give the same C with every patient counted once
    c, p = _pair_weighted_sums(y["event"][test], y["time"][test], r, np.ones(test.sum()), np.inf,
                               np.ones((1, test.sum())))
    assert c[0] / p[0] == pytest.approx(expected, abs=1e-12)
    assert res.lower < res.estimate < res.upper and res.upper - res.lower < 0.15
    assert len(res.bootstrap) == 300
    uno = concordance_index(y[test], r, method="uno", y_train=y[train], tau=1800.0, n_bootstrap=100)
    assert uno.estimate == pytest.approx(concordance_index_ipcw(y[train], y[test], r, tau=1800.0)[0], abs=1e-12)
    assert uno.tau == 1800.0 and uno.lower < uno.estimate < uno.upper
    assert list(res.table.columns[:3]) == ["c", "c_lower_95", "c_upper_95"]


def test_time_grid_brier_and_auc_against_sksurv(gbsg):
    from sksurv.metrics import cumulative_dynamic_auc, integrated_brier_score

    X, y, train, test, cox = gbsg
    times = survival_time_grid(y[test], y_train=y[train])
    lo, hi = np.percentile(y["time"][test], [10, 90])
    assert times[0] == pytest.approx(lo) and times[-1] <= hi and len(times) == 20
    S = cox.predict_survival_function(X[test], times)
    res = brier_score(y[train], y[test], S)
    assert res.integrated == pytest.approx(integrated_brier_score(y[train], y[test], S.to_numpy(), times), rel=1e-10)
    assert (res.brier < res.reference).mean() > 0.8  # the model beats Kaplan-Meier at most times
    auc = time_dependent_auc(y[train], y[test], cox.predict(X[test]), times)
    a, m = cumulative_dynamic_auc(y[train], y[test], cox.predict(X[test]), times)
    np.testing.assert_allclose(auc.auc, a)
    assert auc.mean_auc == pytest.approx(m)
    auc2 = time_dependent_auc(y[train], y[test], 1 - S)
    np.testing.assert_array_equal(auc2.times, times)


def test_evaluation_times_outside_follow_up(gbsg):
    X, y, train, test, cox = gbsg
    S = cox.predict_survival_function(X[test], [100.0, 2000.0])
    last = float(y["time"][test].max())
    with pytest.raises(ModelInputError, match=r"inside the follow-up of the test data .* got 2600"):
        brier_score(y[train], y[test], S.to_numpy()[:, :1], times=[2600.0])
    with pytest.raises(ModelInputError, match="survival_time_grid"):
        time_dependent_auc(y[train], y[test], cox.predict(X[test]), [1.0, last + 1])
    with pytest.raises(ModelInputError, match="pass times="):
        brier_score(y[train], y[test], S.to_numpy())
    with pytest.raises(ModelInputError, match=r"follow-up"):
        survival_calibration(y[test], S[100.0], 5000.0)
    with pytest.raises(ModelInputError, match=r"follow-up"):
        survival_decision_curve(y[test], 1 - S[100.0], 9000.0)


def test_concordance_bad_input(gbsg):
    X, y, train, test, cox = gbsg
    censored = Surv.from_arrays(np.zeros(len(y), bool), y["time"])
    with pytest.raises(ModelInputError, match="censored"):
        concordance_index(censored, np.zeros(len(y)))
    with pytest.raises(ModelInputError, match="risk has 3 values but y has 686"):
        concordance_index(y, [1, 2, 3])
    r = np.zeros(len(y))
    r[4] = np.nan
    with pytest.raises(ModelInputError, match="risk must be finite; got nan at row 4"):
        concordance_index(y, r)
    with pytest.raises(ValueError, match="method must be 'harrell' or 'uno'"):
        concordance_index(y, np.zeros(len(y)), method="gonen")


def test_calibration_detects_miscalibration(gbsg):
    X, y, train, test, cox = gbsg
    S = cox.predict_survival_function(X[test], [1825.0])[1825.0]
    good = survival_calibration(y[test], S, 1825.0, n_groups=5)
    assert 0.6 < good.slope < 1.5 and good.ici < 0.06
    assert good.e50 <= good.e90 <= good.emax
    # predictions squashed toward the mean are too modest: slope well above 1
    squashed = np.exp(np.log(S) * 0.2) * np.exp(np.log(S.mean()) * 0.8)
    bad = survival_calibration(y[test], squashed, 1825.0, n_groups=5)
    assert bad.slope > 2.5
    assert len(good.groups) == 5 and good.groups["n"].sum() == test.sum()
    with pytest.raises(ModelInputError, match="strictly between 0 and 1"):
        survival_calibration(y[test], np.ones(test.sum()), 1825.0)


def test_risk_groups_use_training_cut_points(gbsg):
    X, y, train, test, cox = gbsg
    r_train, r_test = cox.predict(X[train]), cox.predict(X[test])
    res = km_by_risk_group(y[test], r_test, risk_train=r_train, at_risk_times=[0, 500, 1000, 1500])
    np.testing.assert_allclose(res.cutpoints, np.quantile(r_train, [1 / 3, 2 / 3]))
    assert list(res.table.index) == ["low", "intermediate", "high"]
    high = (r_test >= res.cutpoints[1])
    assert res.at_risk.loc["high", 500.0] == int((high & (y["time"][test] >= 500)).sum())
    assert res.at_risk.loc["low", 0.0] == int((r_test < res.cutpoints[0]).sum())
    assert res.logrank_p < 1e-3 and res.logrank_df == 2
    med = res.table["median_survival"]
    assert med["high"] < med["intermediate"] or np.isnan(med["intermediate"])
    with pytest.raises(ModelInputError, match="hold no patient"):
        km_by_risk_group(y[test], r_test, cutpoints=[r_test.max() + 1])
    with pytest.raises(ModelInputError, match="strictly increasing"):
        km_by_risk_group(y[test], r_test, cutpoints=[1.0, 0.0])


def test_decision_curve_against_dcurves(gbsg):
    dcurves = pytest.importorskip("dcurves")
    X, y, train, test, cox = gbsg
    p = 1 - cox.predict_survival_function(X[test], [1825.0])[1825.0].to_numpy()
    thresholds = np.round(np.arange(0.05, 0.8, 0.05), 2)
    ours = survival_decision_curve(y[test], p, 1825.0, thresholds=thresholds)
    data = pd.DataFrame({"time": y["time"][test], "event": y["event"][test].astype(int), "cox": p})
    ref = dcurves.dca(data=data, outcome="event", modelnames=["cox"], thresholds=thresholds, time=1825.0,
                      time_to_outcome_col="time")
    model = ref[ref["model"] == "cox"].set_index("threshold")["net_benefit"]
    everyone = ref[ref["model"] == "all"].set_index("threshold")["net_benefit"]
    np.testing.assert_allclose(ours.net_benefit, model.reindex(thresholds).to_numpy(), atol=1e-10)
    np.testing.assert_allclose(ours.treat_all, everyone.reindex(thresholds).to_numpy(), atol=1e-10)


def test_result_objects_contract(gbsg):
    X, y, train, test, cox = gbsg
    times = survival_time_grid(y[test], y_train=y[train])
    S = cox.predict_survival_function(X[test], times)
    results = [
        concordance_index(y[test], cox.predict(X[test]), n_bootstrap=50),
        time_dependent_auc(y[train], y[test], cox.predict(X[test]), times),
        brier_score(y[train], y[test], S),
        survival_calibration(y[test], cox.predict_survival_function(X[test], [1000.0])[1000.0], 1000.0, n_groups=4),
        km_by_risk_group(y[test], cox.predict(X[test]), risk_train=cox.predict(X[train])),
        survival_decision_curve(y[test], 1 - S.iloc[:, -1], times[-1]),
    ]
    for res in results:
        assert isinstance(res.table, pd.DataFrame) and len(res.table)
        assert isinstance(res.to_frame(), pd.DataFrame)
        assert "<table" in res._repr_html_()
        assert repr(res).startswith("<") and "\n" not in repr(res)
        fig = res.plot()
        assert isinstance(fig, matplotlib.figure.Figure)
        plt.close(fig)
        fig, ax = plt.subplots()
        assert res.plot(ax=ax) is fig
        plt.close(fig)


# -- synthetic cohort with planted truth ------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from lnmkit.cohort import Cohort
    from lnmkit.synth import make_cohort

    folder = make_cohort(tmp_path_factory.mktemp("surv"), n_patients=1500, seed=0, slides=False, progress=False)
    return folder, Cohort.from_dir(folder, check_files=False)


def test_cox_covers_planted_os_effects(synthetic):
    from lnmkit.synth import OS_MODEL

    folder, cohort = synthetic
    truth = pd.read_csv(folder / "truth" / "patients.csv", index_col="patient_id")
    design = pd.DataFrame({
        "pn_positive": truth["pn_positive"].astype(float),
        "log1p_positive_nodes": np.log1p(truth["positive_nodes"]),
        "ct_stage_num": truth["ct_stage_num"] - 2.5,
        "age_decades": (truth["age"] - 65) / 10,
        "morph_score": truth["morph_score"],
        "neoadjuvant": truth["neoadjuvant"].astype(float),
    })
    y = cohort.survival("os", patients=design.index.astype(str))
    s = CoxPH().fit(design, y).summary_
    for term, beta in OS_MODEL["coefficients"].items():
        lo, hi = np.log(s.loc[term, "hr_lower_95"]), np.log(s.loc[term, "hr_upper_95"])
        assert lo < beta < hi, f"planted {term}={beta} outside the 95% CI [{lo:.3f}, {hi:.3f}]"


def _proxy_slide_scores(truth, index, folds):
    """A slide score that, like an out-of-fold MIL score, never saw the outcomes: the latent
    morphology plus noise. Identical in every fold, so trivially nested out-of-fold."""
    rng = np.random.default_rng(0)
    score = pd.DataFrame({"slide_risk": truth["morph_score"].reindex(index).to_numpy() + rng.normal(0, 0.5, len(index))},
                         index=index)
    ks = sorted(folds.unique())
    return NestedFeatures(folds, {k: score[(folds != k).to_numpy()] for k in ks},
                          {k: score[(folds == k).to_numpy()] for k in ks}, score, source="proxy slide score")


def test_fused_survival_model_beats_clinical_only(synthetic):
    from lnmkit.fusion import build_fusion_table

    folder, cohort = synthetic
    truth = pd.read_csv(folder / "truth" / "patients.csv", index_col="patient_id")
    truth.index = truth.index.astype(str)
    out = cohort.outcomes
    pathology = pd.DataFrame({"pn_positive": (out["pn_status"] == "pN+").astype(float),
                              "log1p_positive_nodes": np.log1p(out["positive_nodes"])}, index=out.index.astype(str))
    table = build_fusion_table(cohort, radiology=True, extra=pathology)
    y = cohort.survival("os", patients=table.index)
    folds = make_patient_folds(table.index, y, n_splits=5)
    nested = _proxy_slide_scores(truth, table.index, folds)
    clinical = ["age", "ct_stage", "neoadjuvant", "lvi", "grade", "pn_positive", "log1p_positive_nodes"]
    radiology = ["rad_short_axis_max_mm", "rad_n_suspicious", "rad_any_necrosis", "rad_radiology_missing"]
    res = compare_survival_models(table, y, {"clinical": clinical, "clinical + radiology": clinical + radiology,
                                             "clinical + slide": clinical + ["slide_risk"],
                                             "all": clinical + radiology + ["slide_risk"]},
                                  estimator=CoxPH(impute="median"), stacked=nested, n_bootstrap=300)
    t = res.table
    assert list(t.index) == ["clinical", "clinical + radiology", "clinical + slide", "all"]
    assert t.loc["clinical + slide", "delta_c"] > 0.005
    assert t.loc["clinical + slide", "delta_lower_95"] > 0, t
    assert t.loc["all", "delta_lower_95"] > 0
    assert res.fold_c.shape == (5, 4)
    assert res.predictions["fold"].equals(folds.reindex(res.predictions.index).rename("fold")) or \
        (res.predictions["fold"].to_numpy() == folds.reindex(res.predictions.index).to_numpy()).all()
    # every model's per-fold C comes from the same patients
    for k in range(5):
        m = (res.predictions["fold"] == k).to_numpy()
        assert res.fold_c.loc[k, "clinical"] == pytest.approx(harrell_c(y[m], res.predictions["clinical"][m]))
    fig = res.plot()
    assert isinstance(fig, matplotlib.figure.Figure)
    plt.close(fig)
    assert "<table" in res._repr_html_()
    # scores made for other folds are refused
    other = make_patient_folds(table.index, y, n_splits=5, random_state=1)
    with pytest.raises(LeakageError):
        compare_survival_models(table, y, {"clinical": clinical, "+ slide": clinical + ["slide_risk"]},
                                estimator=CoxPH(impute="median"), stacked=nested, folds=other, n_bootstrap=10)
    with pytest.raises(ModelInputError, match="reference 'x' is not one of"):
        compare_survival_models(table, y, {"clinical": clinical}, reference="x")


@pytest.mark.slow
def test_fused_survival_model_beats_clinical_only_with_nested_mil_scores(tmp_path):
    """The README's demo exactly as ``lnmkit demo`` runs it, end to end: the slide score is the MIL
    network's, cross-fitted inside every outer training fold (out-of-fold at both levels), not a
    stand-in."""
    from lnmkit._demo import run_demo
    from lnmkit.pipeline import read_record

    result = run_demo(tmp_path / "demo", progress=False)
    assert result.report is not None and result.report.is_file()
    fusion = read_record(tmp_path / "demo" / "fusion")
    assert "stage:mil_nested" in fusion.input_hashes
    t = pd.read_csv(tmp_path / "demo" / "evaluation" / "survival_os_comparison.csv", index_col="model")
    assert t.loc["clinical", "delta_c"] == 0
    # the fused model ranks survival better than the clinical variables alone; at 40 patients
    # the interval of the difference is wide, and it must contain its estimate
    assert t.loc["all", "c"] > t.loc["clinical", "c"]
    assert t.loc["all", "delta_c"] == pytest.approx(t.loc["all", "c"] - t.loc["clinical", "c"])
    assert t.loc["all", "delta_lower_95"] < t.loc["all", "delta_c"] < t.loc["all", "delta_upper_95"]
    assert any(line.strip().startswith("OS C-index   all") for line in result.results_lines())
