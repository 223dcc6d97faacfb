"""lnmkit.models LNM classifiers, nested CV and compare_models (tables only, no slides)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from lnmkit.exceptions import LeakageError, ModelInputError, NotFittedError, VersionWarning
from lnmkit.models import (LNMLogisticRegression, LNMXGBClassifier, compare_models, load_model, make_patient_folds,
                           nested_cv)


def _table(n=240, seed=21):
    rng = np.random.default_rng(seed)
    idx = pd.Index([f"P{i:04d}" for i in range(n)], name="patient_id")
    X = pd.DataFrame({
        "age": rng.normal(62, 10, n),
        "stage": rng.integers(1, 5, n).astype(float),
        "site": pd.Categorical(rng.choice(["cardia", "body", "antrum"], n), categories=["cardia", "body", "antrum",
                                                                                          "other"]),
        "marker": rng.lognormal(1, 0.7, n),
    }, index=idx)
    lp = -2.5 + 0.8 * X["stage"] + 0.6 * (X["site"] == "antrum") + 0.3 * np.log(X["marker"])
    y = pd.Series((rng.random(n) < 1 / (1 + np.exp(-lp))).astype(int), index=idx, name="pn")
    X.loc[idx[:15], "marker"] = np.nan
    return X, y


@pytest.fixture(scope="module")
def data():
    return _table()


@pytest.mark.parametrize("est", [LNMLogisticRegression(), LNMLogisticRegression(penalty="l2", C=0.5),
                                 LNMXGBClassifier(n_estimators=30)], ids=["logistic", "ridge", "xgb"])
def test_sklearn_contract(est, data):
    X, y = data
    c = clone(est)
    assert c.get_params() == est.get_params()
    with pytest.raises(NotFittedError, match="call fit"):
        c.predict_proba(X)
    c.fit(X, y)
    p = c.predict_proba(X)
    assert p.shape == (len(X), 2) and np.allclose(p.sum(axis=1), 1)
    assert list(c.classes_) == [0, 1]
    assert set(np.unique(c.predict(X))) <= {0, 1}


def test_logistic_public_attributes_for_nomograms(data):
    X, y = data
    m = LNMLogisticRegression().fit(X, y)
    assert list(m.coef_.index) == ["age", "stage", "site[body]", "site[antrum]", "marker"]
    assert m.terms_ == list(m.coef_.index)
    assert m.design_["levels"]["site"][0] == "cardia"  # the reference level
    lp = m.decision_function(X)
    Z = X.copy()
    Z["marker"] = Z["marker"].fillna(m.design_["fill"]["marker"])
    manual = (m.intercept_ + Z["age"] * m.coef_["age"] + Z["stage"] * m.coef_["stage"]
              + (Z["site"] == "body") * m.coef_["site[body]"] + (Z["site"] == "antrum") * m.coef_["site[antrum]"]
              + Z["marker"] * m.coef_["marker"])
    np.testing.assert_allclose(lp, manual.to_numpy(), rtol=1e-12)
    s = m.summary()
    assert {"coef", "se", "coef_lower_95", "coef_upper_95", "p", "odds_ratio"} <= set(s.columns)


def test_missing_values_are_imputed_inside_the_training_fit(data):
    X, y = data
    m = LNMLogisticRegression().fit(X, y)
    train_median = X["marker"].median()
    assert m.design_["fill"]["marker"] == pytest.approx(train_median)
    # a NaN predicts like the training median (documented handling of NaN)
    row = X.iloc[[20]].copy()
    filled = row.copy()
    filled["marker"] = train_median
    row["marker"] = np.nan
    np.testing.assert_allclose(m.predict_proba(row), m.predict_proba(filled))
    # the fill value comes from the training rows only
    m2 = LNMLogisticRegression().fit(X.iloc[:100], y.iloc[:100])
    assert m2.design_["fill"]["marker"] == pytest.approx(X["marker"].iloc[:100].median())


def test_xgboost_takes_nan_and_categories_natively(data):
    X, y = data
    m = LNMXGBClassifier(n_estimators=40).fit(X, y)
    assert m.design_ if hasattr(m, "design_") else True
    imp = m.feature_importances_
    assert set(imp.index) == set(X.columns) and imp["stage"] > 0


@pytest.mark.parametrize("cls", [LNMLogisticRegression, LNMXGBClassifier])
def test_json_round_trip_and_version_warning(cls, data, tmp_path):
    X, y = data
    kw = {"n_estimators": 30} if cls is LNMXGBClassifier else {}
    m = cls(calibration="isotonic", **kw).fit(X, y)
    path = m.save(tmp_path / "m.json")
    doc = json.loads(path.read_text())
    assert doc["lnmkit_version"] and doc["class"] == cls.__name__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = load_model(path)
    np.testing.assert_allclose(back.predict_proba(X), m.predict_proba(X), atol=1e-7)
    assert back.get_params() == m.get_params()
    doc["lnmkit_version"] = "0.0.1"
    path.write_text(json.dumps(doc))
    with pytest.warns(VersionWarning, match="0.0.1"):
        cls.load(path)


def test_calibration_inside_the_training_patients_restores_risk_scale():
    X, y = _table(n=600, seed=22)
    y = pd.Series(np.where(np.random.default_rng(1).random(len(y)) < 0.6, 0, y), index=y.index)  # fewer pN+
    prevalence = y.mean()
    weighted = LNMLogisticRegression(class_weight="balanced").fit(X, y)
    calibrated = LNMLogisticRegression(class_weight="balanced", calibration="sigmoid").fit(X, y)
    assert weighted.predict_proba(X)[:, 1].mean() > prevalence + 0.1  # class weights inflate risk
    assert calibrated.predict_proba(X)[:, 1].mean() == pytest.approx(prevalence, abs=0.03)


def test_bad_inputs_name_column_and_value(data):
    X, y = data
    with pytest.raises(ModelInputError, match="single class"):
        LNMLogisticRegression().fit(X, pd.Series(1, index=X.index))
    y_missing = y.astype(float).copy()
    y_missing.iloc[3] = np.nan
    with pytest.raises(ModelInputError, match="P0003"):
        LNMLogisticRegression().fit(X, y_missing)
    with pytest.raises(ModelInputError, match="'empty' is missing for every training patient"):
        LNMLogisticRegression().fit(X.assign(empty=np.nan), y)
    with pytest.warns(UserWarning, match="constant"):
        m = LNMLogisticRegression().fit(X.assign(const=1.0), y)
    assert "const" not in m.coef_.index
    m = LNMLogisticRegression(handle_unknown="error").fit(X, y)
    new = X.iloc[:3].copy()
    new.loc[new.index[1], "site"] = "other"
    with pytest.raises(ModelInputError, match=r"column 'site' has level 'other' for patient_id 'P0001'"):
        m.predict_proba(new)
    with pytest.warns(UserWarning, match="treated as missing"):
        LNMLogisticRegression().fit(X, y).predict_proba(new)
    strange = X.iloc[:3].astype({"site": object})
    strange.loc[strange.index[0], "site"] = "duodenum"
    with pytest.raises(ModelInputError, match="'duodenum'.*unknown"):
        LNMXGBClassifier(n_estimators=5).fit(X, y).predict_proba(strange)
    with pytest.raises(ModelInputError, match="lacks column"):
        m.predict_proba(X.drop(columns="age"))
    with pytest.raises(ValueError, match="penalty must be None or 'l2'; got 'l1'"):
        LNMLogisticRegression(penalty="l1").fit(X, y)
    with pytest.raises(ValueError, match="calibration must be"):
        LNMXGBClassifier(calibration="platt").fit(X, y)


def test_nested_cv_groups_inner_search_and_generic_scoring(data):
    X, y = data
    centre = pd.Series(np.arange(len(X)) % 12, index=X.index)
    res = nested_cv(LNMLogisticRegression(penalty="l2"), X, y, param_grid={"C": [0.01, 1.0]}, n_splits=4,
                    inner_splits=3, groups=centre)
    assert res.predictions["prediction"].notna().all()
    per_centre = res.predictions.groupby(centre)["fold"].nunique()
    assert (per_centre == 1).all()  # a centre never spans two outer folds
    assert len(res.best_params) == 4 and all("C" in p for p in res.best_params)
    assert 0.6 < res.score < 0.95
    assert res.estimator is not None and "pooled" in res.table.index
    ev = res.evaluate(n_bootstrap=0)
    assert ev.table.loc["auc", "value"] == pytest.approx(res.score)
    # any estimator and scoring function: a regressor scored by negative MSE
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import mean_squared_error

    yc = pd.Series(X["age"].to_numpy() * 0.1 + np.random.default_rng(0).normal(size=len(X)), index=X.index)
    r = nested_cv(LinearRegression(), X[["age", "stage"]], yc, response="predict",
                  scoring=lambda a, b: -mean_squared_error(a, b), n_splits=3)
    assert r.score > -2.0


def test_nested_cv_refuses_a_training_fold_with_one_class(data):
    X, y = data
    y2 = y.copy()
    folds = pd.Series(np.where(y2 == 1, 0, 1), index=X.index)  # fold 0 = every pN+ patient
    with pytest.raises(ModelInputError, match="outer fold 0 hold a single class|single class"):
        nested_cv(LNMLogisticRegression(), X, y2, folds=folds)


def test_nested_cv_missing_outcomes_raise_or_are_dropped(data):
    X, y = data
    y2 = y.astype(float)
    y2.iloc[:4] = np.nan
    with pytest.raises(ModelInputError, match="4 patient"):
        nested_cv(LNMLogisticRegression(), X, y2)
    with pytest.warns(UserWarning, match="left out"):
        r = nested_cv(LNMLogisticRegression(), X, y2, missing_outcome="drop", n_splits=3)
    assert len(r.predictions) == len(X) - 4


def test_make_patient_folds_stratifies_and_validates():
    idx = [f"P{i}" for i in range(50)]
    y = np.r_[np.ones(10), np.zeros(40)]
    f = make_patient_folds(idx, y, n_splits=5)
    assert f.groupby(f).size().tolist() == [10] * 5
    assert pd.Series(y, index=f.index).groupby(f).sum().tolist() == [2] * 5
    with pytest.raises(ValueError, match="n_splits must be an integer between 2"):
        make_patient_folds(idx, y, n_splits=1)


def test_compare_models_same_folds_and_paired_statistics(data):
    X, y = data
    sets = {"base": ["age"], "full": ["age", "stage", "site", "marker"]}
    cmp = compare_models(X, y, sets, n_splits=4, n_bootstrap=0)
    t = cmp.table
    assert list(t.index) == ["base", "full"]
    for col in ("auc", "auc_lower_95", "delta_auc", "delta_auc_lower_95", "delta_auc_p", "nri_categorical",
                "nri_continuous_lower_95", "idi_upper_95"):
        assert col in t.columns
    assert t.loc["full", "delta_auc"] == pytest.approx(t.loc["full", "auc"] - t.loc["base", "auc"])
    assert t.loc["full", "delta_auc_p"] < 0.05
    pred = cmp.predictions
    assert (cmp.results["base"].folds == cmp.results["full"].folds).all()
    assert {"y", "base", "full", "fold"} <= set(pred.columns)
    from matplotlib.figure import Figure

    assert isinstance(cmp.plot(), Figure) and isinstance(cmp.plot(kind="decision"), Figure)
    with pytest.raises(ModelInputError, match="feature_sets"):
        compare_models(X, y)


def test_nested_cv_rejects_foreign_folds_for_stacked_scores(data):
    from lnmkit.models import NestedFeatures

    X, y = data
    folds = make_patient_folds(X.index, y, n_splits=3, random_state=0)
    s = pd.DataFrame({"slide_lnm_score": np.random.default_rng(0).random(len(X))}, index=X.index)
    nf = NestedFeatures(folds, {k: s[folds != k] for k in range(3)}, {k: s[folds == k] for k in range(3)}, s)
    other = make_patient_folds(X.index, y, n_splits=3, random_state=99)
    with pytest.raises(LeakageError, match="other outer folds"):
        nested_cv(LNMLogisticRegression(), X, y, stacked=nf, folds=other)
    with pytest.raises(LeakageError, match="include outer-test"):
        NestedFeatures(folds, {k: s for k in range(3)}, {k: s[folds == k] for k in range(3)}, s)
