"""lnmkit's survival models: the shared interface, valid survival curves, bad input, and
agreement with the libraries they wrap (lifelines, scikit-survival, xgboost)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sksurv.util import Surv

from lnmkit.exceptions import ModelInputError, NotFittedError
from lnmkit.models import (CoxPH, GradientBoostedSurvival, RandomSurvivalForest, XGBAFTSurvival, XGBCoxSurvival,
                           nested_cv)


@pytest.fixture(scope="module")
def whas():
    from sksurv.datasets import load_whas500

    X, y = load_whas500()
    X = X[["age", "bmi", "hr", "sysbp", "gender", "chf"]].copy()
    X["gender"] = X["gender"].astype(str).map({"0": "male", "1": "female"}).astype("category")
    X["chf"] = X["chf"].astype(str).astype("category")
    X.index = pd.Index([f"P{i:03d}" for i in range(len(X))], name="patient_id")
    return X, Surv.from_arrays(y["fstat"], y["lenfol"])


def _models():
    return [CoxPH(), RandomSurvivalForest(n_estimators=30, min_samples_leaf=10, random_state=0),
            GradientBoostedSurvival(n_estimators=40, random_state=0), XGBCoxSurvival(n_estimators=40, random_state=0),
            XGBAFTSurvival(n_estimators=40, random_state=0),
            XGBAFTSurvival("extreme", sigma=0.8, n_estimators=40, random_state=0)]


MODELS = _models()
IDS = [f"{type(m).__name__}-{i}" for i, m in enumerate(MODELS)]


@pytest.fixture(scope="module")
def fitted(whas):
    X, y = whas
    return [clone(m).fit(X.iloc[:400], y[:400]) for m in MODELS]


@pytest.mark.parametrize("i", range(len(MODELS)), ids=IDS)
def test_survival_curves_are_valid(i, fitted, whas):
    X, y = whas
    model = fitted[i]
    times = np.concatenate([[0.0], np.linspace(1, model.max_time_, 40)])
    S = model.predict_survival_function(X.iloc[400:], times)
    assert list(S.index) == list(X.index[400:])
    v = S.to_numpy()
    assert np.isfinite(v).all()
    assert ((v >= 0) & (v <= 1)).all()
    np.testing.assert_array_equal(v[:, 0], 1.0)
    assert (np.diff(v, axis=1) <= 1e-12).all(), "a survival curve rises"
    assert v[:, -1].max() < 1.0  # curves move
    default = model.predict_survival_function(X.iloc[400:402])
    np.testing.assert_array_equal(default.columns.to_numpy(), model.event_times_)


@pytest.mark.parametrize("i", range(len(MODELS)), ids=IDS)
def test_times_outside_follow_up_are_refused(i, fitted, whas):
    X, _ = whas
    model = fitted[i]
    with pytest.raises(ModelInputError, match=r"within the follow-up \[0, .*\] of the training data; got"):
        model.predict_survival_function(X.iloc[:2], [10.0, model.max_time_ * 1.01])
    with pytest.raises(ModelInputError, match="follow-up"):
        model.predict_survival_function(X.iloc[:2], [-1.0])


@pytest.mark.parametrize("i", range(len(MODELS)), ids=IDS)
def test_interface_predict_score_clone(i, fitted, whas):
    X, y = whas
    model = fitted[i]
    risk = model.predict(X.iloc[400:])
    assert isinstance(risk, np.ndarray) and risk.shape == (100,)
    # higher risk = worse: concordance well above chance on held-out patients
    assert model.score(X.iloc[400:], y[400:]) > 0.6
    twin = clone(MODELS[i])
    assert twin.get_params() == MODELS[i].get_params()
    np.testing.assert_allclose(twin.fit(X.iloc[:400], y[:400]).predict(X.iloc[400:]), risk, rtol=1e-10)
    with pytest.raises(NotFittedError, match="call fit"):
        clone(MODELS[i]).predict(X)


def test_nested_cv_grouped_by_patient(whas):
    from lnmkit.evaluation import harrell_c

    X, y = whas
    res = nested_cv(CoxPH(), X, y, param_grid={"penalizer": [0.0, 0.1]}, scoring=harrell_c, response="predict",
                    n_splits=3, inner_splits=3, refit=False)
    assert res.predictions["prediction"].notna().all()
    assert 0.65 < res.score < 0.85
    assert len(res.best_params) == 3


def test_cox_against_lifelines_and_nomogram_attributes(whas):
    from lifelines import CoxPHFitter

    X, y = whas
    cox = CoxPH().fit(X, y)
    assert list(cox.coef_.index) == ["age", "bmi", "hr", "sysbp", "gender=male", "chf=1"]
    assert cox.encoding_ == {"gender": ["female", "male"], "chf": ["0", "1"]}
    assert cox.terms_["gender"] == ["gender=male"]
    design = pd.get_dummies(X, columns=["gender", "chf"], drop_first=True, dtype=float)
    design.columns = ["age", "bmi", "hr", "sysbp", "gender=male", "chf=1"]
    frame = design.assign(t=y["time"], e=y["event"].astype(int))
    direct = CoxPHFitter().fit(frame, "t", "e", fit_options={"precision": 1e-9})
    np.testing.assert_allclose(cox.coef_, direct.params_[cox.coef_.index], rtol=1e-8)
    np.testing.assert_allclose(cox.summary_["se"], direct.standard_errors_[cox.coef_.index], rtol=1e-8)
    np.testing.assert_allclose(cox.centre_, design.mean(), rtol=1e-12)
    times = list(cox.event_times_[[3, 40, 150]])  # lifelines interpolates between event times; R and lnmkit step
    expected = direct.predict_survival_function(design.iloc[:5], times=times).T.to_numpy()
    np.testing.assert_allclose(cox.predict_survival_function(X.iloc[:5], times).to_numpy(), expected, rtol=1e-7)
    # the documented formula a nomogram relies on
    lp = (design.iloc[:5] - cox.centre_) @ cox.coef_
    s0 = cox.baseline_survival_[cox.baseline_survival_.index <= 365].iloc[-1]
    np.testing.assert_allclose(cox.predict_survival_function(X.iloc[:5], [365.0])[365.0], s0 ** np.exp(lp))
    np.testing.assert_allclose(cox.predict(X.iloc[:5]), lp)
    hr = cox.summary_
    assert {"coef", "se", "hr", "hr_lower_95", "hr_upper_95", "z", "p"} == set(hr.columns)
    assert (hr["hr_lower_95"] < hr["hr"]).all() and (hr["hr"] < hr["hr_upper_95"]).all()
    assert "90" in CoxPH(level=0.9).fit(X, y).summary_.columns[3]


def test_penalised_cox_matches_lifelines(whas):
    from lifelines import CoxPHFitter

    X, y = whas
    num = X[["age", "bmi", "hr", "sysbp"]]
    cox = CoxPH(penalizer=0.5, l1_ratio=0.5).fit(num, y)
    direct = CoxPHFitter(penalizer=0.5, l1_ratio=0.5).fit(num.assign(t=y["time"], e=y["event"].astype(int)), "t", "e",
                                                          fit_options={"precision": 1e-9})
    np.testing.assert_allclose(cox.coef_, direct.params_[cox.coef_.index], rtol=1e-6, atol=1e-9)
    assert np.abs(cox.coef_).sum() < np.abs(CoxPH().fit(num, y).coef_).sum()


def test_forest_equals_sksurv_called_directly(whas):
    from sksurv.ensemble import RandomSurvivalForest as SkRSF

    X, y = whas
    num = X[["age", "bmi", "hr", "sysbp"]]
    ours = RandomSurvivalForest(n_estimators=20, random_state=3).fit(num, y)
    theirs = SkRSF(n_estimators=20, min_samples_split=10, min_samples_leaf=15, max_features="sqrt",
                   random_state=3).fit(num.to_numpy(), y)
    np.testing.assert_allclose(ours.predict(num), theirs.predict(num.to_numpy()))
    t = theirs.unique_times_[[5, 50, 100]]
    curves = theirs.predict_survival_function(num.to_numpy()[:4], return_array=True)
    expected = curves[:, np.searchsorted(theirs.unique_times_, t)]
    np.testing.assert_allclose(ours.predict_survival_function(num.iloc[:4], t).to_numpy(), expected)


def test_xgb_cox_breslow_baseline(whas):
    X, y = whas
    model = XGBCoxSurvival(n_estimators=30, random_state=0).fit(X, y)
    eta = model.predict(X)
    event, time = y["event"], y["time"]
    # Breslow: H0(t) = sum over event times s <= t of d(s) / sum_{time >= s} exp(eta)
    expected = []
    for s in model.event_times_:
        expected.append(((time == s) & event).sum() / np.exp(eta[time >= s]).sum())
    np.testing.assert_allclose(model.baseline_cumulative_hazard_.to_numpy(), np.cumsum(expected), rtol=1e-5)
    # margin = log relative hazard: predict() of the booster is exp(margin)
    import xgboost as xgb

    hr = model.booster_.predict(xgb.DMatrix(model.design_.transform(X).to_numpy(np.float32)))
    np.testing.assert_allclose(np.log(hr), eta, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dist, s_at_median", [("normal", 0.5), ("logistic", 0.5), ("extreme", np.exp(-1))])
def test_xgb_aft_curves_come_from_the_fitted_distribution(whas, dist, s_at_median):
    X, y = whas
    model = XGBAFTSurvival(dist, sigma=1.2, n_estimators=30, random_state=0).fit(X, y)
    mu = -model.predict(X.iloc[:20])
    inside = np.exp(mu) < model.max_time_
    assert inside.sum() >= 5
    for m in mu[inside][:5]:
        row = X.iloc[:20][inside].iloc[[list(mu[inside]).index(m)]]
        s = model.predict_survival_function(row, [np.exp(m)]).iloc[0, 0]
        np.testing.assert_allclose(s, s_at_median, rtol=1e-5)


def test_categorical_levels_and_missing_values(whas):
    X, y = whas
    cox = CoxPH().fit(X, y)
    bad = X.iloc[:3].copy()
    bad["gender"] = pd.Categorical(["male", "other", "female"])
    with pytest.raises(ModelInputError, match=r"column 'gender' holds level 'other' for patient_id 'P001'"):
        cox.predict(bad)
    nan = X.copy()
    nan.iloc[5, 1] = np.nan
    with pytest.raises(ModelInputError, match=r"column 'bmi' has missing or infinite values \(e.g. patient\(s\) "
                                              r"\['P005'\].*impute='median'"):
        CoxPH().fit(nan, y)
    imputed = CoxPH(impute="median").fit(nan, y)
    assert imputed.design_.fill_["bmi"] == pytest.approx(np.nanmedian(nan["bmi"]))
    assert np.isfinite(imputed.predict(nan)).all()
    obj = X.assign(gender=X["gender"].astype(str))
    with pytest.raises(TypeError, match=r"column 'gender' has dtype object.*astype\('category'\)"):
        CoxPH().fit(obj, y)
    one_level = X.assign(chf=pd.Categorical(["0"] * len(X)))
    with pytest.raises(ModelInputError, match="'chf' has 1 level"):
        CoxPH().fit(one_level, y)
    with pytest.raises(ModelInputError, match=r"lacks the training column\(s\) \['hr'\]"):
        cox.predict(X.drop(columns="hr"))
    # xgboost models take missing values as they are
    assert np.isfinite(XGBCoxSurvival(n_estimators=5).fit(nan, y).predict(nan)).all()


@pytest.mark.parametrize("model", [CoxPH(), RandomSurvivalForest(n_estimators=5), XGBCoxSurvival(n_estimators=5),
                                   XGBAFTSurvival(n_estimators=5), GradientBoostedSurvival(n_estimators=5)],
                         ids=lambda m: type(m).__name__)
def test_bad_targets(model, whas):
    X, y = whas
    censored = Surv.from_arrays(np.zeros(len(y), bool), y["time"])
    with pytest.raises(ModelInputError, match="all 500 patients are censored"):
        clone(model).fit(X, censored)
    zero = y.copy()
    zero["time"][7] = 0.0
    with pytest.raises(ModelInputError, match=r"times must be finite and > 0; got 0.0 for patient_id 'P007'"):
        clone(model).fit(X, zero)
    one = Surv.from_arrays(np.arange(len(y)) == 0, y["time"])
    with pytest.raises(ModelInputError, match="at least 2 events; got 1"):
        clone(model).fit(X, one)
    with pytest.raises(TypeError, match="structured array"):
        clone(model).fit(X, y["time"])
    with pytest.raises(ModelInputError, match="X has 10 rows but y has 500"):
        clone(model).fit(X.iloc[:10], y)


def test_cox_needs_more_events_than_terms(whas):
    X, y = whas
    few = Surv.from_arrays(np.arange(len(y)) < 5, y["time"])
    with pytest.raises(ModelInputError, match="5 events cannot support 6 terms.*penalizer > 0"):
        CoxPH().fit(X, few)
    with pytest.raises(ModelInputError, match=r"constant in the training data"):
        CoxPH().fit(X.assign(k=1.0), y)
    with pytest.raises(ModelInputError, match=r"column\(s\) \['s'\] are linear combinations of other columns"):
        CoxPH().fit(X.assign(s=X["age"] + 2 * X["hr"]), y)


def test_parameter_checks(whas):
    X, y = whas
    with pytest.raises(ValueError, match="CoxPH.fit: penalizer must be a number >= 0; got -1"):
        CoxPH(penalizer=-1).fit(X, y)
    with pytest.raises(ValueError, match=r"l1_ratio must be in \[0, 1\]"):
        CoxPH(l1_ratio=2).fit(X, y)
    with pytest.raises(ValueError, match="distribution must be one of"):
        XGBAFTSurvival("weibull").fit(X, y)
    with pytest.raises(ValueError, match="n_estimators must be a positive integer"):
        RandomSurvivalForest(n_estimators=0).fit(X, y)


def test_ph_test_result_and_plot(whas):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X, y = whas
    res = CoxPH().fit(X, y).ph_test()
    assert list(res.table.index) == ["age", "bmi", "hr", "sysbp", "gender", "chf", "GLOBAL"]
    assert res.table.loc["GLOBAL", "df"] == 6
    assert "GLOBAL" in repr(res) or "global" in repr(res)
    assert "<table" in res._repr_html_()
    assert len(res.residuals) == int(y["event"].sum())
    # scaled Schoenfeld residuals average to about the coefficient (Grambsch & Therneau)
    fig = res.plot()
    assert isinstance(fig, matplotlib.figure.Figure)
    plt.close(fig)
    with pytest.raises(ValueError, match="transform must be one of"):
        CoxPH().fit(X, y).ph_test(transform="sqrt")


def test_cohort_survival_unknown_endpoint(tmp_path):
    from lnmkit.cohort import Cohort
    from lnmkit.synth import make_cohort

    folder = make_cohort(tmp_path / "c", n_patients=20, seed=3, slides=False, progress=False)
    cohort = Cohort.from_dir(folder, check_files=False)
    with pytest.raises(ValueError, match=r"endpoint must be one of 'os', 'rfs'.*got 'dfs'"):
        cohort.survival("dfs")


def test_cox_model_file_round_trip(tmp_path):
    from sksurv.datasets import load_gbsg2

    from lnmkit.models import load_model

    X, y = load_gbsg2()
    X = X[["age", "tsize", "pnodes", "tgrade", "horTh"]].copy()
    X.loc[X.index[:5], "tsize"] = np.nan
    cox = CoxPH(impute="median").fit(X, y)
    path = cox.save(tmp_path / "cox.json")
    text = path.read_text()
    assert '"class": "CoxPH"' in text and "pickle" not in text
    loaded = load_model(path)
    assert isinstance(loaded, CoxPH) and repr(loaded) == repr(cox)
    np.testing.assert_allclose(loaded.predict(X), cox.predict(X), rtol=0, atol=1e-12)
    times = [365.0, 1095.0, 1825.0]
    pd.testing.assert_frame_equal(loaded.predict_survival_function(X, times), cox.predict_survival_function(X, times))
    pd.testing.assert_frame_equal(loaded.summary_, cox.summary_)
    assert loaded.score(X, y) == pytest.approx(cox.score(X, y))
    with pytest.raises(ModelInputError, match="follow-up"):
        loaded.predict_survival_function(X, [1e6])
    bad = X.iloc[:1].astype({"tgrade": object})
    bad.iloc[0, bad.columns.get_loc("tgrade")] = "IV"
    with pytest.raises(ModelInputError, match="'IV'"):
        loaded.predict(bad.astype({"tgrade": "category"}))
    with pytest.raises(NotFittedError, match="loaded from a file"):
        loaded.ph_test()


@pytest.mark.parametrize("cls", [XGBCoxSurvival, XGBAFTSurvival])
def test_xgboost_survival_model_file_round_trip(cls, tmp_path):
    from sksurv.datasets import load_gbsg2

    from lnmkit.models import load_model

    X, y = load_gbsg2()
    X = X[["age", "tsize", "pnodes", "tgrade"]].copy()
    X.loc[X.index[:5], "tsize"] = np.nan  # missing values go to the booster as they are
    model = cls(n_estimators=30, random_state=0).fit(X, y)
    loaded = load_model(model.save(tmp_path / "model.json"))
    assert type(loaded) is cls
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    times = [365.0, 1095.0]
    pd.testing.assert_frame_equal(loaded.predict_survival_function(X, times), model.predict_survival_function(X, times))
    with pytest.raises(ModelInputError, match="follow-up"):
        loaded.predict_survival_function(X, [1e6])


def test_broken_model_files_name_the_file(tmp_path):
    import json

    from sksurv.datasets import load_gbsg2

    from lnmkit.models import load_model

    X, y = load_gbsg2()
    path = CoxPH().fit(X[["age", "tsize"]], y).save(tmp_path / "cox.json")
    truncated = tmp_path / "truncated.json"
    truncated.write_text(path.read_text()[:200])
    with pytest.raises(ValueError, match=r"truncated\.json is not a JSON model file"):
        load_model(truncated)
    doc = json.loads(path.read_text())
    del doc["state"]["baseline_survival"]
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"edited\.json holds an incomplete or edited CoxPH .*baseline_survival"):
        load_model(edited)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not an lnmkit model file"):
        load_model(tmp_path / "list.json")
