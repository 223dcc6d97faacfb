"""``lnmkit survival`` and :func:`lnmkit.evaluation.survival_analysis` on a public dataset."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from lnmkit.cli import app  # noqa: E402
from lnmkit.evaluation import SURVIVAL_MODELS, get_survival_model, survival_analysis  # noqa: E402


@pytest.fixture(scope="module")
def whas_csv(tmp_path_factory):
    from sksurv.datasets import load_whas500

    X, y = load_whas500()
    d = X[["age", "bmi", "hr", "gender"]].copy()
    d["gender"] = d["gender"].astype(str).map({"0": "male", "1": "female"})
    d["months"] = y["lenfol"] / 30.44
    d["died"] = y["fstat"].astype(int)
    d.insert(0, "patient_id", [f"W{i:03d}" for i in range(len(d))])
    path = tmp_path_factory.mktemp("whas") / "whas.csv"
    d.to_csv(path, index=False)
    return path


def test_cli_survival_cox(whas_csv, tmp_path):
    out = tmp_path / "cox"
    res = CliRunner().invoke(app, ["survival", str(whas_csv), "--time", "months", "--event", "died", "--out", str(out),
                                   "--horizon", "12", "--horizon", "36", "--n-splits", "3"])
    assert res.exit_code == 0, res.output
    assert "cross-validated C=" in res.output
    for name in ("metrics.csv", "predictions.csv", "km.png", "calibration_t12.png", "calibration_t36.png",
                 "summary.csv", "ph_test.csv", "ph_test.png", "run.json"):
        assert (out / name).is_file(), name
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    assert list(summary.index) == ["age", "bmi", "hr", "gender=male"]
    pred = pd.read_csv(out / "predictions.csv", index_col=0)
    assert list(pred.columns) == ["fold", "risk", "S(12)", "S(36)"] and pred.index[0] == "W000"
    assert (pred["S(36)"] <= pred["S(12)"]).all()
    assert json.loads((out / "run.json").read_text())["model"] == "CoxPH"
    metrics = pd.read_csv(out / "metrics.csv", index_col=0)["value"]
    assert 0.6 < metrics["harrell_c"] < 0.85


def test_cli_survival_errors(whas_csv, tmp_path):
    res = CliRunner().invoke(app, ["survival", str(whas_csv), "--time", "weeks", "--event", "died",
                                   "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "['weeks'] are not in the table" in res.output
    res = CliRunner().invoke(app, ["survival", str(whas_csv), "--time", "months", "--event", "died",
                                   "--out", str(tmp_path / "x"), "--model", "svm"])
    assert res.exit_code == 2 and "model must be one of ['cox', 'gbs', 'rsf', 'xgb-aft', 'xgb-cox']" in res.output
    res = CliRunner().invoke(app, ["survival", str(whas_csv), "--time", "months", "--event", "died",
                                   "--out", str(tmp_path / "x"), "--horizon", "1000"])
    assert res.exit_code == 2 and "follow-up" in res.output


def test_registry_lists_every_model():
    assert sorted(SURVIVAL_MODELS) == list(SURVIVAL_MODELS)
    for name in SURVIVAL_MODELS:
        assert hasattr(get_survival_model(name), "predict_survival_function")


def test_survival_analysis_xgb_with_missing_values(whas_csv):
    d = pd.read_csv(whas_csv, index_col="patient_id")
    d.loc[d.index[:20], "bmi"] = np.nan
    res = survival_analysis(d, "months", "died", model="xgb-aft", horizons=[24.0], n_splits=3)
    assert res.ph_test is None and res.predictions["S(24)"].between(0, 1).all()
    assert "harrell_c" in res.table.index and "<table" in res._repr_html_()
    with pytest.raises(ValueError, match="missing or infinite values"):
        survival_analysis(d, "months", "died", model="cox", n_splits=3)
    assert survival_analysis(d, "months", "died", model="cox", n_splits=3, impute="median").concordance.n == 500
