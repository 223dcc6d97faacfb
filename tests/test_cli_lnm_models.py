"""``lnmkit fusion`` and ``lnmkit lnm-models`` on a tables-only synthetic cohort."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lnmkit.cli import app


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    from lnmkit.synth import make_cohort

    return make_cohort(tmp_path_factory.mktemp("cli_lnm") / "cohort", n_patients=80, seed=33, slides=False,
                       progress=False)


def test_fusion_then_lnm_models_write_every_output(cohort_dir, tmp_path):
    from lnmkit.cohort import Cohort
    from lnmkit.fusion import FusionTable
    from lnmkit.mil import MILClassifier, cross_fit
    from lnmkit.models import load_model

    cohort = Cohort.from_dir(cohort_dir, check_files=False)
    rng = np.random.default_rng(0)
    bags = {p: rng.normal(size=(12, 4)).astype(np.float32) for p in cohort.clinical.index[:-5]}
    res = cross_fit(bags, cohort.outcomes, n_splits=3, progress=False,
                    estimator=MILClassifier(tasks=("lnm",), hidden=8, max_epochs=2, val_fraction=0.0))
    res.save(tmp_path / "mil")
    runner = CliRunner()
    r = runner.invoke(app, ["fusion", str(cohort_dir), "--out", str(tmp_path / "fusion.csv"),
                            "--mil", str(tmp_path / "mil")])
    assert r.exit_code == 0, r.output
    table = FusionTable.load(tmp_path / "fusion.csv")
    assert table.slide_source == "crossfit" and "slide_lnm_score" in table.columns
    assert table["slide_missing"].sum() == 5

    out = tmp_path / "models"
    r = runner.invoke(app, ["lnm-models", str(tmp_path / "fusion.csv"), "--cohort", str(cohort_dir), "--out",
                            str(out), "--model", "logistic", "--n-splits", "3", "--inner-splits", "3",
                            "--n-bootstrap", "0"])
    assert r.exit_code == 0, r.output
    cmp = pd.read_csv(out / "comparison.csv", index_col=0)
    # single-cross-fit slide scores would leak under the outer folds: left out without --features
    assert list(cmp.index) == ["clinical", "clinical + radiology"]
    assert {"auc", "auc_lower_95", "delta_auc", "delta_auc_p", "nri_continuous", "idi"} <= set(cmp.columns)
    for name in ("predictions.csv", "metrics_clinical.csv", "roc.png", "calibration.png", "decision_curve.png",
                 "models/clinical.json", "models/clinical_radiology.json"):
        assert (out / name).is_file(), name
    m = load_model(out / "models" / "clinical.json")
    assert json.loads((out / "models" / "clinical.json").read_text())["params"]["penalty"] is None
    assert m.predict_proba(table.frame[m.feature_names_in_.tolist()]).shape == (80, 2)


def test_lnm_models_reports_bad_input(cohort_dir, tmp_path):
    r = CliRunner().invoke(app, ["lnm-models", str(tmp_path / "missing.csv"), "--cohort", str(cohort_dir), "--out",
                                 str(tmp_path / "o")])
    assert r.exit_code == 2 and "error:" in r.output
    r = CliRunner().invoke(app, ["fusion", str(cohort_dir), "--out", str(tmp_path / "f.csv")])
    assert r.exit_code == 0
    r = CliRunner().invoke(app, ["lnm-models", str(tmp_path / "f.csv"), "--cohort", str(cohort_dir), "--out",
                                 str(tmp_path / "o"), "--model", "forest"])
    assert r.exit_code == 2 and "model must be one of" in r.output
