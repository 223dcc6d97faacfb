"""lnmkit.nomogram: reading the chart by hand, bad input, imputation in the bootstrap,
result objects. The comparisons with R rms are in ``test_nomogram_r.py``."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lnmkit.exceptions import NomogramInputError  # noqa: E402
from lnmkit.nomogram import (CalibrationResult, Nomogram, ValidationResult, calibrate,  # noqa: E402
                             fit_nomogram, validate)


@pytest.fixture(scope="module")
def whas():
    from sksurv.datasets import load_whas500

    X, y = load_whas500()
    df = X[["age", "gender", "hr", "bmi", "chf"]].copy()
    df["died"] = y["fstat"].astype(int)
    df.index = [f"P{i:03d}" for i in range(len(df))]
    df.index.name = "patient_id"
    return df


@pytest.fixture(scope="module")
def gbsg():
    from sksurv.datasets import load_gbsg2

    X, y = load_gbsg2()
    df = X[["age", "tsize", "tgrade", "horTh", "pnodes"]].copy()
    df["time"] = y["time"]
    df["event"] = y["cens"].astype(int)
    df.index = [f"G{i:03d}" for i in range(len(df))]
    return df


@pytest.fixture(scope="module")
def lrm(whas):
    return fit_nomogram(whas, ["age", "gender", "hr", "bmi", "chf"], "died", splines=["age"])


@pytest.fixture(scope="module")
def cph(gbsg):
    return fit_nomogram(gbsg, ["tsize", "age", "tgrade", "horTh", "pnodes"], ("time", "event"), kind="cox",
                        times=[1095, 1825], splines=["tsize"])


# ----------------------------------------------------------------------- reading by hand

def _table_lookup(table, axis, value):
    rows = table[table["axis"] == axis]
    hit = rows[rows["value"].astype(str) == str(value)]
    assert len(hit) == 1, f"{axis}={value} is not a tick of the table"
    return float(hit["points"].iloc[0])


def _read_outcome(table, label, total):
    rows = table[table["axis"] == label]
    return float(np.interp(total, rows["points"].astype(float), rows["value"].astype(float)))


def _figure_ticks(fig, axis):
    """(x position, label) of every labelled tick of ``axis`` in a drawn nomogram."""
    out = []
    for text in fig.axes[0].texts:
        gid = text.get_gid() or ""
        parts = gid.split("|")
        if parts[0] == "tick" and parts[1] == axis:
            out.append((text.get_position()[0], parts[2]))
    return out


def test_read_off_by_hand_logistic(lrm, whas):
    """A patient's points read off table() and off the drawn axes give predict() back."""
    patient = pd.DataFrame({"age": [70.0], "gender": ["1"], "hr": [80.0], "bmi": [25.0], "chf": ["1"]},
                           index=["reader"])
    patient["gender"] = pd.Categorical(patient["gender"], categories=whas["gender"].cat.categories)
    patient["chf"] = pd.Categorical(patient["chf"], categories=whas["chf"].cat.categories)
    table = lrm.table()
    total = sum(_table_lookup(table, name, value) for name, value in
                [("age", 70.0), ("gender", "1"), ("hr", 80.0), ("bmi", 25.0), ("chf", "1")])
    expected = float(lrm.predict(patient).iloc[0])
    assert total == pytest.approx(float(lrm.points(patient)["total_points"].iloc[0]), abs=1e-9)
    assert _read_outcome(table, "P(died)", total) == pytest.approx(expected, abs=0.005)

    fig = lrm.plot()
    try:
        x_total = 0.0
        for name, value in [("age", "70"), ("gender", "1"), ("hr", "80"), ("bmi", "25"), ("chf", "1")]:
            ticks = dict((lab, x) for x, lab in _figure_ticks(fig, name))
            x_total += ticks[value]  # predictor axes are drawn on the points scale
        # Total Points: labels against positions give the chart's x -> total mapping
        tp = sorted((x, float(lab)) for x, lab in _figure_ticks(fig, "Total Points"))
        total_read = np.interp(x_total, [p[1] for p in tp], [p[0] for p in tp])
        # the probability axis: its ticks' positions, read at the patient's total
        pax = sorted((x, float(lab)) for x, lab in _figure_ticks(fig, "P(died)"))
        prob = np.interp(total_read, [p[0] for p in pax], [p[1] for p in pax])
        assert prob == pytest.approx(expected, abs=0.005)
    finally:
        plt.close(fig)


def test_read_off_by_hand_cox(cph, gbsg):
    patient = gbsg.iloc[[0]].copy()
    patient[["tsize", "age", "pnodes"]] = [20.0, 60.0, 5.0]
    table = cph.table()
    total = (_table_lookup(table, "tsize", 20.0) + _table_lookup(table, "age", 60.0)
             + _table_lookup(table, "tgrade", patient["tgrade"].iloc[0])
             + _table_lookup(table, "horTh", patient["horTh"].iloc[0]) + _table_lookup(table, "pnodes", 5.0))
    pred = cph.predict(patient)
    for t in [1095, 1825]:
        assert _read_outcome(table, f"S({t})", total) == pytest.approx(pred[t].iloc[0], abs=0.005)


def test_points_predict_shapes(cph, gbsg, lrm, whas):
    pts = cph.points(gbsg.iloc[:5])
    assert list(pts.columns) == ["tsize", "age", "tgrade", "horTh", "pnodes", "total_points"]
    assert pts.index.equals(gbsg.index[:5])
    assert (pts.drop(columns="total_points").min() >= -1e-9).all()
    assert pts.drop(columns="total_points").max().max() <= 100 + 1e-9
    surv = cph.predict(gbsg.iloc[:5])
    assert list(surv.columns) == [1095.0, 1825.0]
    assert ((surv >= 0) & (surv <= 1)).all().all()
    assert (surv[1825] <= surv[1095]).all()  # survival never rises
    p = lrm.predict(whas)
    assert p.index.equals(whas.index) and p.between(0, 1).all()
    # the widest axis spans exactly 100 points, every axis starts at 0
    widths = {k: v["points"].max() - v["points"].min() for k, v in lrm.scale_.axes.items()}
    assert max(widths.values()) == pytest.approx(100)
    assert all(v["points"].min() == pytest.approx(0, abs=1e-12) for v in lrm.scale_.axes.values())
    np.testing.assert_allclose(lrm.predict_from_points(lrm.points(whas)["total_points"]).iloc[:, 0],
                               p.to_numpy(), atol=1e-12)


# ---------------------------------------------------------------------------- bad input

def test_predictor_with_one_value(whas):
    df = whas.assign(const=3.0)
    with pytest.raises(NomogramInputError, match=r"predictor 'const' has a single value \(3\.0\)"):
        fit_nomogram(df, ["age", "const"], "died")


def test_spline_with_too_few_values(whas):
    df = whas.assign(grade=np.resize([1.0, 2.0, 3.0], len(whas)))
    with pytest.raises(NomogramInputError, match=r"spline on 'grade' asks for 4 knots .* only 3 distinct"):
        fit_nomogram(df, ["age", "grade"], "died", splines=["grade"])
    with pytest.raises(NomogramInputError, match=r"'gender', which is categorical"):
        fit_nomogram(whas, ["age", "gender"], "died", splines=["gender"])


def test_missing_values_without_imputation(whas):
    df = whas.copy()
    df.loc["P007", "bmi"] = np.nan
    with pytest.raises(NomogramInputError, match=r"column 'bmi' has 1 missing value.*'P007'.*impute="):
        fit_nomogram(df, ["age", "bmi"], "died")


def test_outcome_not_binary(whas):
    df = whas.assign(died=whas["died"].replace({1: 2}))
    with pytest.raises(NomogramInputError, match=r"outcome column 'died' must be 0/1; got 2"):
        fit_nomogram(df, ["age"], "died")
    with pytest.raises(NomogramInputError, match=r"outcome must name one 0/1 column"):
        fit_nomogram(whas, ["age"], ("time", "died"))


def test_outcome_not_time_event(gbsg):
    with pytest.raises(NomogramInputError, match=r"\(time_column, event_column\) pair; got 'time'"):
        fit_nomogram(gbsg, ["age"], "time", kind="cox", times=[365])
    df = gbsg.assign(event=gbsg["event"] * 3)
    with pytest.raises(NomogramInputError, match=r"event column 'event' must be 0/1; got 3"):
        fit_nomogram(df, ["age"], ("time", "event"), kind="cox", times=[365])
    df = gbsg.copy()
    df.loc["G004", "time"] = -1.0
    with pytest.raises(NomogramInputError, match=r"time column 'time' must hold numbers >= 0; got -1.0 .*'G004'"):
        fit_nomogram(df, ["age"], ("time", "event"), kind="cox", times=[365])


def test_times_beyond_follow_up(gbsg):
    last = gbsg["time"].max()
    with pytest.raises(NomogramInputError, match=rf"time 5000 is beyond follow-up \(last observed time {last:g}\)"):
        fit_nomogram(gbsg, ["age", "tsize"], ("time", "event"), kind="cox", times=[1095, 5000])
    with pytest.raises(NomogramInputError, match="needs times"):
        fit_nomogram(gbsg, ["age"], ("time", "event"), kind="cox")


def test_unknown_level_and_missing_column(lrm, whas):
    bad = whas.iloc[:3].copy()
    bad["chf"] = bad["chf"].cat.add_categories(["7"])
    bad.loc[bad.index[1], "chf"] = "7"
    with pytest.raises(NomogramInputError, match=r"column 'chf' has value '7' .*'P001'.*fitted levels"):
        lrm.predict(bad)
    with pytest.raises(NomogramInputError, match=r"predictor column\(s\) \['bmi'\] not found"):
        lrm.points(whas.drop(columns="bmi"))


# --------------------------------------------------------------- imputation in the bootstrap

@pytest.fixture(scope="module")
def whas_missing(whas):
    rng = np.random.default_rng(3)
    df = whas.copy()
    df.loc[rng.random(len(df)) < 0.15, "bmi"] = np.nan
    df.loc[rng.random(len(df)) < 0.10, "hr"] = np.nan
    return df


def test_imputation_refitted_in_every_bootstrap(whas_missing):
    preds = ["age", "hr", "bmi", "chf"]
    nomo = fit_nomogram(whas_missing, preds, "died", splines=["age"], impute="median")
    idx = np.random.default_rng(5).integers(0, len(whas_missing), size=(12, len(whas_missing)))
    refit = validate(nomo, boot_index=idx, refit_imputation=True)
    frozen = validate(nomo, boot_index=idx, refit_imputation=False)
    assert refit.imputation_refitted and not frozen.imputation_refitted
    # frozen imputation is exactly an analysis of the once-imputed data set
    filled = whas_missing.copy()
    filled["bmi"] = filled["bmi"].fillna(whas_missing["bmi"].median())
    filled["hr"] = filled["hr"].fillna(whas_missing["hr"].median())
    once = fit_nomogram(filled, preds, "died", splines=["age"])
    np.testing.assert_allclose(validate(once, boot_index=idx).table.to_numpy(), frozen.table.to_numpy())
    # refitting the medians inside each sample changes the training and test models
    assert not np.allclose(refit.table["optimism"], frozen.table["optimism"])
    np.testing.assert_allclose(refit.table["index_orig"], frozen.table["index_orig"])
    # predictions fill missing values with the training medians
    row = whas_missing[whas_missing["bmi"].isna()].iloc[[0]]
    np.testing.assert_allclose(nomo.predict(row), once.predict(row.fillna({"bmi": whas_missing["bmi"].median()})))


def test_imputation_with_sklearn_imputer(whas_missing):
    from sklearn.impute import SimpleImputer

    nomo = fit_nomogram(whas_missing, ["age", "hr", "bmi"], "died", impute=SimpleImputer(strategy="mean"))
    res = calibrate(nomo, B=5, seed=1)
    assert isinstance(res, CalibrationResult) and np.isfinite(res.mean_abs_error)


# -------------------------------------------------------------------------- result objects

def test_result_objects(lrm, cph):
    v = validate(lrm, B=8, seed=2)
    assert isinstance(v, ValidationResult)
    assert list(v.table.index) == ["Dxy", "R2", "Intercept", "Slope", "Emax", "D", "U", "Q", "B", "g", "gp"]
    assert (v.table["n"] == 8).all()
    c = calibrate(lrm, B=8, seed=2)
    for res in (v, c):
        fig = res.plot()
        assert isinstance(fig, matplotlib.figure.Figure)
        plt.close(fig)
        assert "<table" in res._repr_html_()
        assert repr(res).startswith("<")
    vc = validate(cph, B=3, seed=0)
    assert list(vc.table.index) == ["Dxy", "R2", "Slope", "D", "U", "Q", "g"]
    cc = calibrate(cph, B=3, seed=0, u=1095)
    assert cc.u == 1095 and len(cc.table) == 4
    with pytest.raises(NomogramInputError, match="u must lie in"):
        calibrate(cph, B=2, u=99999)
    assert "<table" in lrm._repr_html_() and repr(cph).startswith("<Nomogram: cox, 686 patients")
    fig = cph.plot(patient=cph._train["raw"].iloc[3])
    assert isinstance(fig, matplotlib.figure.Figure)
    plt.close(fig)


def test_validate_is_seeded(lrm):
    a = validate(lrm, B=6, seed=11).table
    b = validate(lrm, B=6, seed=11).table
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ValueError, match=r"boot_index must be an integer array of shape \(B, 500\)"):
        validate(lrm, boot_index=np.zeros((3, 4), dtype=int))


def test_nomogram_is_the_public_class(lrm):
    assert isinstance(lrm, Nomogram)


# ------------------------------------------------------------------------------ from_model

def test_from_model_logistic(whas, lrm):
    from lnmkit.models import LNMLogisticRegression

    cols = ["age", "gender", "hr", "bmi", "chf"]
    model = LNMLogisticRegression().fit(whas[cols], whas["died"])
    nomo = Nomogram.from_model(model, data=whas, outcome="died")
    direct = fit_nomogram(whas, cols, "died")
    # the same maximum-likelihood model: same points, same probabilities
    np.testing.assert_allclose(nomo.points(whas).to_numpy(), direct.points(whas).to_numpy(), atol=1e-6)
    np.testing.assert_allclose(nomo.predict(whas), model.predict_proba(whas[cols])[:, 1], atol=1e-9)
    assert validate(nomo, B=3).table.loc["Dxy", "index_orig"] == pytest.approx(
        direct.validate(B=3).table.loc["Dxy", "index_orig"], abs=1e-9)
    with pytest.raises(NomogramInputError, match="pass data="):
        Nomogram.from_model(model)
    with pytest.raises(NomogramInputError, match="penalised model"):
        validate(Nomogram.from_model(LNMLogisticRegression(penalty="l2").fit(whas[cols], whas["died"]),
                                     data=whas, outcome="died"), B=2)


def test_from_model_cox(gbsg):
    from lnmkit.models import CoxPH
    from sksurv.util import Surv

    cols = ["age", "tsize", "tgrade", "pnodes"]
    y = Surv.from_arrays(gbsg["event"].astype(bool), gbsg["time"])
    model = CoxPH().fit(gbsg[cols], y)
    nomo = Nomogram.from_model(model, times=[1095, 1825])  # the model keeps its training design
    direct = fit_nomogram(gbsg, cols, ("time", "event"), kind="cox", times=[1095, 1825])
    np.testing.assert_allclose(nomo.points(gbsg).to_numpy(), direct.points(gbsg).to_numpy(), atol=1e-4)
    # lnmkit.models stores the Breslow baseline, the nomogram rms's Efron one: close, not equal
    sf = model.predict_survival_function(gbsg[cols], [1095, 1825]).to_numpy()
    np.testing.assert_allclose(nomo.predict(gbsg).to_numpy(), sf, atol=2e-3)
    np.testing.assert_allclose(nomo.predict(gbsg).to_numpy(), direct.predict(gbsg).to_numpy(), atol=1e-5)
    with pytest.raises(TypeError, match="must be a fitted lnmkit.models"):
        Nomogram.from_model(object())


# --------------------------------------------------------------------------------------- CLI

def test_cli_nomogram(whas, tmp_path):
    from typer.testing import CliRunner

    from lnmkit.cli import app

    csv = tmp_path / "whas.csv"
    whas.to_csv(csv)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["nomogram", str(csv), "--kind", "logistic", "--outcome", "died",
                                   "--predictors", "age,gender,hr,bmi,chf", "--splines", "age",
                                   "--categorical", "gender,chf", "--validate", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["calibrate.csv", "nomogram.png", "points.csv",
                                                     "predictions.csv", "table.csv", "validate.csv"]
    pred = pd.read_csv(out / "predictions.csv", index_col="patient_id")
    direct = fit_nomogram(whas, ["age", "gender", "hr", "bmi", "chf"], "died", splines=["age"])
    np.testing.assert_allclose(pred["P(died)"], direct.predict(whas), atol=1e-9)
    assert list(pd.read_csv(out / "validate.csv")["index"])[:2] == ["Dxy", "R2"]
    bad = CliRunner().invoke(app, ["nomogram", str(csv), "--kind", "cox", "--outcome", "died",
                                   "--predictors", "age", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "TIME,EVENT" in bad.output


def test_separation_warns_or_raises():
    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(0)
    x = rng.normal(size=80)
    y = (rng.random(80) < 0.5).astype(int)
    z = np.where(np.arange(80) < 70, "a", "b")
    y[70:] = 1  # every patient of level "b" has the event: its coefficient runs to infinity
    df = pd.DataFrame({"x": x, "z": z, "y": y})
    with pytest.warns(ConvergenceWarning, match="separates the outcome"):
        fit_nomogram(df, ["x", "z"], "y")
    perfect = pd.DataFrame({"x": np.r_[np.linspace(0, 1, 30), np.linspace(2, 3, 30)],
                            "y": np.r_[np.zeros(30, int), np.ones(30, int)]})
    with pytest.raises(NomogramInputError, match="cannot be fitted .*separates the outcome"):
        fit_nomogram(perfect, ["x"], "y")
    # the message names the separating column and its cut point
    with pytest.raises(NomogramInputError, match=r"'x' separates the outcome: every row with x > 1 has outcome 1"):
        fit_nomogram(perfect.assign(noise=np.random.default_rng(1).normal(size=60)), ["noise", "x"], "y")
