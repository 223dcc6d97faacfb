"""SHAP for every model type: additivity against the model's own output, scales, modality sums."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import shap  # noqa: E402
import xgboost as xgb  # noqa: E402

from lnmkit.exceptions import AdditivityError, ExplainError  # noqa: E402
from lnmkit.explain import (check_additivity, explain, modality_shap, model_output, plot_bar,  # noqa: E402
                            plot_beeswarm, plot_dependence, plot_waterfall)

ATOL = 1e-4  # the additivity tolerance; float32 trees sum to ~1e-6


@pytest.fixture(scope="module")
def gbsg2():
    """German Breast Cancer Study Group 2 (scikit-survival), 686 patients, with a categorical column."""
    from sksurv.datasets import load_gbsg2

    X, y = load_gbsg2()
    X = X.copy()
    X.index = pd.Index([f"P{i:03d}" for i in range(len(X))], name="patient_id")
    for c in ("horTh", "menostat", "tgrade"):
        X[c] = X[c].astype("category")
    X["horTh"] = X["horTh"].cat.reorder_categories(["no", "yes"])
    binary = pd.Series(((y["time"] < 1200) & y["cens"]).astype(int), index=X.index)
    ys = np.array(list(zip(y["cens"], y["time"])), dtype=[("event", bool), ("time", float)])
    return X, binary, ys


def _numeric(X):
    out = X.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.CategoricalDtype):
            out[c] = out[c].cat.codes.astype(float)
    return out


PROVENANCE = {"age": "clinical", "menostat": "clinical", "tsize": "clinical", "tgrade": "clinical",
              "pnodes": "radiology", "progrec": "slide", "estrec": "slide", "horTh": "clinical"}


def _assert_additive(expl, raw):
    total = expl.values.sum(axis=1) + np.asarray(expl.base_values).reshape(-1)
    np.testing.assert_allclose(total, raw, atol=ATOL, rtol=0)


# ------------------------------------------------------------------ raw xgboost / sklearn / lifelines
@pytest.mark.parametrize("engine", ["xgboost", "shap"])
def test_xgb_classifier_treeshap_adds_up_to_the_margin(gbsg2, engine):
    X, yb, _ = gbsg2
    Xn = _numeric(X)
    m = xgb.XGBClassifier(n_estimators=40, max_depth=3, learning_rate=0.1).fit(Xn, yb)
    ex = explain(m, Xn, engine=engine)
    assert ex.output_names == "log-odds"
    assert list(ex.feature_names) == list(Xn.columns)
    assert list(ex.instance_names[:2]) == ["P000", "P001"]
    # compared with xgboost's own margin, not with either SHAP implementation
    _assert_additive(ex, m.get_booster().predict(xgb.DMatrix(Xn), output_margin=True))
    # base_score is stored as a vector string by xgboost >= 3.1: the base value must still be the margin of
    # an empty tree ensemble, i.e. the same for both engines
    other = explain(m, Xn, engine="xgboost" if engine == "shap" else "shap")
    np.testing.assert_allclose(ex.values, other.values, atol=1e-5)


@pytest.mark.parametrize("objective,scale", [("survival:cox", "log relative hazard"),
                                             ("survival:aft", "log survival time")])
def test_xgb_survival_boosters_explain_the_margin_with_its_scale(gbsg2, objective, scale):
    X, _, ys = gbsg2
    Xn = _numeric(X)
    d = xgb.DMatrix(Xn)
    if objective == "survival:cox":
        d.set_label(np.where(ys["event"], ys["time"], -ys["time"]))
        params = {"objective": objective, "max_depth": 3, "eta": 0.1}
    else:
        d.set_float_info("label_lower_bound", ys["time"])
        d.set_float_info("label_upper_bound", np.where(ys["event"], ys["time"], np.inf))
        params = {"objective": objective, "max_depth": 3, "eta": 0.1, "aft_loss_distribution": "normal"}
    booster = xgb.train(params, d, 30)
    ex = explain(booster, Xn)
    assert ex.output_names == scale
    margin = booster.predict(xgb.DMatrix(Xn), output_margin=True)
    _assert_additive(ex, margin)
    # predict() is not the margin (hazard ratio / time): the SHAP sum must not match it (xgboost#5524)
    assert np.abs(ex.values.sum(1) + ex.base_values - booster.predict(xgb.DMatrix(Xn))).max() > 0.1


def test_logistic_regression_linear_shap_is_exact(gbsg2):
    from sklearn.linear_model import LogisticRegression

    X, yb, _ = gbsg2
    Xn = _numeric(X)
    m = LogisticRegression(max_iter=2000).fit(Xn, yb)
    ex = explain(m, Xn)
    assert ex.output_names == "log-odds"
    _assert_additive(ex, m.decision_function(Xn))
    # linear SHAP is coef * (x - mean): check one entry by hand
    j = list(Xn.columns).index("age")
    assert ex.values[3, j] == pytest.approx(m.coef_[0, j] * (Xn["age"].iloc[3] - Xn["age"].mean()))


def test_lifelines_and_sksurv_cox_linear_shap(gbsg2):
    from lifelines import CoxPHFitter
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    X, _, ys = gbsg2
    Xn = _numeric(X)
    df = Xn.assign(T=ys["time"], E=ys["event"].astype(int))
    cph = CoxPHFitter().fit(df, "T", "E")
    ex = explain(cph, Xn)
    assert ex.output_names == "log relative hazard"
    _assert_additive(ex, cph.predict_log_partial_hazard(Xn).to_numpy())
    sk = CoxPHSurvivalAnalysis().fit(Xn, ys)
    ex2 = explain(sk, Xn)
    _assert_additive(ex2, sk.predict(Xn))
    # same model fitted by two libraries: same SHAP values (centred at the same mean)
    np.testing.assert_allclose(ex.values, ex2.values, atol=1e-3)


def test_random_survival_forest_sampled_explainer_adds_up(gbsg2):
    from sksurv.ensemble import RandomSurvivalForest

    X, _, ys = gbsg2
    Xn = _numeric(X)
    Xn, ys = Xn.iloc[:150], ys[:150]
    rsf = RandomSurvivalForest(n_estimators=10, min_samples_leaf=20, random_state=0, n_jobs=1).fit(Xn, ys)
    ex = explain(rsf, Xn.iloc[:4], background=Xn, n_background=10, n_permutations=6)
    assert ex.output_names == "risk score"
    _assert_additive(ex, rsf.predict(Xn.iloc[:4]))
    assert ex.compute_time > 0


def test_survival_at_a_horizon(gbsg2):
    from lifelines import CoxPHFitter

    X, _, ys = gbsg2
    Xn = _numeric(X)
    cph = CoxPHFitter().fit(Xn.assign(T=ys["time"], E=ys["event"].astype(int)), "T", "E")
    ex = explain(cph, Xn.iloc[:5], output="survival", horizon=1000, background=Xn, n_background=25)
    assert ex.output_names == "S(1000)"
    s = cph.predict_survival_function(Xn.iloc[:5], times=[1000]).to_numpy().ravel()
    _assert_additive(ex, s)
    with pytest.raises(ValueError, match="horizon"):
        explain(cph, Xn, output="survival")


# ------------------------------------------------------------------ lnmkit models
@pytest.fixture(scope="module")
def lnmkit_models(gbsg2):
    models = pytest.importorskip("lnmkit.models")
    X, yb, ys = gbsg2
    X = X.iloc[:300]
    fitted = {
        "logistic": models.LNMLogisticRegression().fit(X, yb.iloc[:300]),
        "xgb": models.LNMXGBClassifier(n_estimators=30).fit(X, yb.iloc[:300]),
        "cox": models.CoxPH().fit(X, ys[:300]),
        "xgb_cox": models.XGBCoxSurvival(n_estimators=30).fit(X, ys[:300]),
        "xgb_aft": models.XGBAFTSurvival(n_estimators=30).fit(X, ys[:300]),
        "rsf": models.RandomSurvivalForest(n_estimators=15, random_state=0).fit(X, ys[:300]),
    }
    return X, fitted


@pytest.mark.parametrize("name,scale", [("logistic", "log-odds"), ("xgb", "log-odds"),
                                        ("cox", "log relative hazard"), ("xgb_cox", "log relative hazard"),
                                        ("xgb_aft", "log survival time"), ("rsf", "risk score")])
def test_every_lnmkit_model_adds_up_on_table_columns(lnmkit_models, name, scale):
    X, fitted = lnmkit_models
    m = fitted[name]
    rows = X if name != "rsf" else X.iloc[:5]
    ex = explain(m, rows, background=X, n_background=25)
    assert ex.output_names == scale
    # feature names are the table's columns (dummy terms summed back to their column)
    assert list(ex.feature_names) == list(X.columns)
    if name in ("xgb_cox", "xgb_aft", "xgb"):
        booster = m.booster_
        design = m.encoder_.transform(rows) if name == "xgb" else m.design_.transform(rows)
        d = (xgb.DMatrix(design, enable_categorical=True) if name == "xgb"
             else xgb.DMatrix(design.to_numpy(np.float32)))
        raw = booster.predict(d, output_margin=True)
    elif name == "logistic":
        raw = m.decision_function(rows)
    else:
        raw = m.predict(rows)
    _assert_additive(ex, raw)
    # categorical column shown by its labels
    j = list(ex.feature_names).index("tgrade")
    assert ex.display_data[0, j] == str(rows["tgrade"].iloc[0])


def test_lnmkit_survival_model_on_survival_probability(lnmkit_models):
    X, fitted = lnmkit_models
    m = fitted["xgb_cox"]
    ex = explain(m, X.iloc[:4], output="survival", horizon=1000, background=X, n_background=20)
    s = m.predict_survival_function(X.iloc[:4], [1000.0])
    _assert_additive(ex, np.asarray(s, float).reshape(-1))


# ------------------------------------------------------------------ modality view, plots, errors
def test_modality_sums_equal_feature_sums(gbsg2):
    X, yb, _ = gbsg2
    Xn = _numeric(X)
    m = xgb.XGBClassifier(n_estimators=20, max_depth=2).fit(Xn, yb)
    ex = explain(m, Xn)
    mod = modality_shap(ex, PROVENANCE)
    assert mod.modalities == ["clinical", "radiology", "slide"]
    np.testing.assert_allclose(mod.table[mod.modalities].sum(axis=1), ex.values.sum(axis=1), atol=1e-10)
    np.testing.assert_allclose(mod.table["output"], model_output(m, Xn), atol=ATOL)
    slide = [j for j, f in enumerate(ex.feature_names) if PROVENANCE[f] == "slide"]
    np.testing.assert_allclose(mod.table["slide"], ex.values[:, slide].sum(axis=1), atol=1e-12)
    np.testing.assert_allclose(mod.shares().sum(axis=1), 1.0)
    with pytest.raises(ExplainError, match="no provenance"):
        modality_shap(ex, {"age": "clinical"})
    for fig in (mod.plot(), mod.plot(patient_id="P001")):
        assert isinstance(fig, plt.Figure)
        plt.close(fig)
    assert "ModalityShap" in mod._repr_html_()


def test_plots_return_figures(gbsg2):
    X, yb, _ = gbsg2
    Xn = _numeric(X)
    ex = explain(xgb.XGBClassifier(n_estimators=10, max_depth=2).fit(Xn, yb), Xn)
    figs = [plot_beeswarm(ex), plot_bar(ex), plot_dependence(ex, "age", color="pnodes"), plot_waterfall(ex[0])]
    for fig in figs:
        assert isinstance(fig, plt.Figure)
        plt.close(fig)
    with pytest.raises(ValueError, match=r"explanation\[i\]"):
        plot_waterfall(ex)
    with pytest.raises(KeyError, match="not a feature"):
        plot_dependence(ex, "nope")


def test_additivity_failure_is_reported():
    ex = shap.Explanation(np.array([[0.1, 0.2]]), base_values=np.array([0.0]), feature_names=["a", "b"])
    assert check_additivity(ex, [0.3]) < 1e-12
    with pytest.raises(AdditivityError, match="differ from the model output") as err:
        check_additivity(ex, [0.5])
    assert err.value.max_error == pytest.approx(0.2)


def test_bad_inputs_are_named(gbsg2):
    X, yb, _ = gbsg2
    Xn = _numeric(X)
    m = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(Xn, yb)
    with pytest.raises(TypeError, match="DataFrame"):
        explain(m, Xn.to_numpy())
    with pytest.raises(ExplainError, match="lacks the model's column"):
        explain(m, Xn.drop(columns="age"))
    with pytest.raises(ValueError, match="output must be"):
        explain(m, Xn, output="probability")
    with pytest.raises(ExplainError, match="cannot explain"):
        explain(object(), Xn)
    multi = xgb.XGBClassifier(n_estimators=3, max_depth=2).fit(Xn, np.arange(len(Xn)) % 3)
    with pytest.raises(ExplainError, match="multi-class"):
        explain(multi, Xn)
    # config of xgboost >= 3.1 as parsed here: base_score survives the round trip through JSON
    config = json.loads(m.get_booster().save_config())
    assert "base_score" in config["learner"]["learner_model_param"]


def test_permutation_sampler_is_exact_shapley_for_few_features():
    """With every ordering enumerated the sampler equals the Shapley formula computed by brute force."""
    import itertools
    import math

    rng = np.random.default_rng(0)
    bg = pd.DataFrame(rng.normal(size=(7, 3)), columns=["a", "b", "c"])
    X = pd.DataFrame(rng.normal(size=(2, 3)), columns=["a", "b", "c"], index=["P1", "P2"])

    class Model:  # non-additive, with an interaction
        def predict(self, frame):
            v = frame.to_numpy()
            return v[:, 0] * v[:, 1] + np.sin(v[:, 2]) + v[:, 0] ** 2

    ex = explain(Model(), X, background=bg, n_permutations=6)
    f = Model().predict

    def value(x, subset):
        rows = bg.copy()
        for k in subset:
            rows.iloc[:, k] = x[k]
        return f(rows).mean()

    for i in range(2):
        x = X.to_numpy()[i]
        for k in range(3):
            others = [j for j in range(3) if j != k]
            phi = 0.0
            for r in range(3):
                for sub in itertools.combinations(others, r):
                    w = math.factorial(r) * math.factorial(3 - r - 1) / math.factorial(3)
                    phi += w * (value(x, list(sub) + [k]) - value(x, list(sub)))
            assert ex.values[i, k] == pytest.approx(phi, abs=1e-10)
    _assert_additive(ex, f(X))


def test_text_columns_are_shown_as_categories(lnmkit_models):
    X, fitted = lnmkit_models
    text = X.assign(tgrade=X["tgrade"].astype(str))
    m = pytest.importorskip("lnmkit.models").LNMLogisticRegression().fit(text, (X["pnodes"] > 3).astype(int))
    ex = explain(m, text)
    _assert_additive(ex, m.decision_function(text))
    j = list(ex.feature_names).index("tgrade")
    assert ex.display_data[0, j] == text["tgrade"].iloc[0]


def test_lnm_probability_interval_against_statsmodels(gbsg2):
    """Delta-method interval of P(LNM) of an unpenalised logistic model = statsmodels GLM get_prediction."""
    import statsmodels.api as sm

    from lnmkit.report import ReportContext

    models = pytest.importorskip("lnmkit.models")
    X, yb, _ = gbsg2
    Xn = _numeric(X)[["age", "tsize", "pnodes", "progrec"]].iloc[:300]
    y = yb.iloc[:300]
    m = models.LNMLogisticRegression().fit(Xn, y)
    ctx = ReportContext({"lnm": m}, Xn, provenance={c: "clinical" for c in Xn.columns})
    rep = ctx.patient_report("P007")
    glm = sm.GLM(y.to_numpy(), sm.add_constant(Xn.to_numpy()), family=sm.families.Binomial()).fit()
    ci = glm.get_prediction(sm.add_constant(Xn.to_numpy())[[7]]).conf_int(alpha=0.05)[0]
    # both are Wald intervals on the linear predictor mapped through the logistic function
    assert rep.summary["lnm_lower"] == pytest.approx(ci[0], abs=1e-4)
    assert rep.summary["lnm_upper"] == pytest.approx(ci[1], abs=1e-4)
    assert rep.summary["lnm_probability"] == pytest.approx(glm.predict(sm.add_constant(Xn.to_numpy())[[7]])[0],
                                                           abs=1e-5)


def test_patient_report_shows_the_nomogram_position(gbsg2):
    nomogram = pytest.importorskip("lnmkit.nomogram")
    models = pytest.importorskip("lnmkit.models")
    from lnmkit.report import ReportContext

    X, yb, _ = gbsg2
    X = X[["age", "tsize", "pnodes"]]
    m = models.LNMLogisticRegression().fit(X, yb)
    nomo = nomogram.Nomogram.from_model(m, data=X)
    rep = ReportContext({"lnm": m}, X, provenance={c: "clinical" for c in X}, nomogram=nomo).patient_report("P003")
    sec = next(s for s in rep.sections if s.key == "nomogram")
    assert sec.images["nomogram"][:4] == b"\x89PNG"
    assert "total_points" in sec.body
    plt.close("all")


def test_reports_with_a_sampled_model_explain_on_demand(lnmkit_models, gbsg2):
    """A random survival forest is explained per patient when its report is built (seconds each)."""
    from lnmkit.report import ReportContext

    X, fitted = lnmkit_models
    ctx = ReportContext({"survival": fitted["rsf"]}, X, provenance=PROVENANCE)
    assert "survival" not in ctx.explanations
    rep = ctx.patient_report("P004")
    assert "shap_survival" in [s.key for s in rep.sections]
    ex = ctx.explanations["survival"]
    assert list(ex.instance_names) == ["P004"]
    _assert_additive(ex, fitted["rsf"].predict(X.loc[["P004"]]))
    plt.close("all")
