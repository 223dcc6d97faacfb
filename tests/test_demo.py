"""The demo job end to end on a small synthetic cohort."""

import json

import h5py
import openslide
import pandas as pd
import pytest
from typer.testing import CliRunner

from lnmkit._demo import run_demo
from lnmkit.cli import app
from lnmkit.synth import load_truth


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, monkeypatch_module):
    def refuse(self):
        raise AssertionError("a label or macro image was read")

    # any read of the associated images (label, macro) fails the whole run
    monkeypatch_module.setattr(openslide.OpenSlide, "associated_images", property(refuse))
    out = tmp_path_factory.mktemp("demo")
    # 12 patients: the slide score separates pN+ from pN0 perfectly, which a logistic nomogram cannot fit
    return run_demo(out, n_patients=12, seed=3, slide_size=4096, n_splits=3, progress=False,
                    overrides={"nomogram.predictors": ["age", "tumour_size_mm"], "nomogram.bootstrap": 10,
                               "evaluation.inner_splits": 2, "evaluation.n_bootstrap": 50})


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_demo_writes_one_row_per_patient_with_all_modalities(demo_run):
    table = pd.read_csv(demo_run.out_dir / "patient_table.csv", index_col="patient_id", dtype={"patient_id": str})
    clinical = pd.read_csv(demo_run.cohort_dir / "clinical.csv", dtype={"patient_id": str})
    assert sorted(table.index) == sorted(clinical["patient_id"])
    assert {"slide_lnm_score", "slide_otc_score", "rad_n_nodes"} <= set(table.columns)
    manifest = pd.read_csv(demo_run.features_dir / "manifest.csv", dtype={"patient_id": str})
    with_tiles = set(manifest.loc[manifest["status"] == "ok", "patient_id"])
    assert len(with_tiles) >= 10
    scored = table["slide_lnm_score"].notna()
    # a patient with no usable tile keeps its row, with missing slide scores
    assert set(table.index[scored]) == with_tiles
    assert table.loc[scored, "slide_lnm_score"].between(0, 1).all()
    summary = json.loads((demo_run.out_dir / "demo_summary.json").read_text())
    assert summary["n_patients"] == 12
    assert 0.0 <= demo_run.metrics["auc"]["lnm"]["auc"] <= 1.0


def test_demo_outputs_never_carry_label_text(demo_run):
    truth = load_truth(demo_run.cohort_dir)
    secrets = [s for s in truth["fake_names"] + truth["fake_mrns"] if s]
    assert secrets
    produced = [p for p in demo_run.out_dir.rglob("*") if p.is_file() and demo_run.cohort_dir not in p.parents]
    assert produced
    for path in produced:
        if path.suffix in {".csv", ".json", ".geojson", ".txt"}:
            text = path.read_text()
        elif path.suffix == ".h5":
            with h5py.File(path) as f:
                text = " ".join(f"{k}={v}" for k, v in f.attrs.items())
        else:
            continue
        for secret in secrets:
            assert secret not in text, f"{path} carries label text {secret!r}"


def test_demo_summary_lines_name_outputs(demo_run):
    lines = "\n".join(demo_run.summary_lines())
    assert "out-of-fold LNM AUC" in lines
    assert str(demo_run.mil_dir) in lines
    assert "nested cross-validation by patient (95% CI):" in lines
    assert "LNM AUC" in lines and "OS C-index" in lines
    assert f"report:        {demo_run.report}" in lines


def test_demo_runs_every_stage_to_the_report(demo_run):
    from lnmkit.pipeline import stage_names

    assert list(demo_run.pipeline.table.index) == stage_names()
    assert demo_run.report.is_file() and demo_run.report.name == "report.html"
    assert demo_run.report.stat().st_size > 10_000
    for key, models in demo_run.evaluation.items():
        for model, row in models.items():
            value = row.get("auc", row.get("c"))
            assert 0 <= row["lower"] <= value <= row["upper"] <= 1, (key, model, row)
    # a second run with the same parameters keeps the cohort and skips every stage
    clinical = demo_run.cohort_dir / "clinical.csv"
    before = clinical.stat().st_mtime_ns
    again = run_demo(demo_run.out_dir, n_patients=12, seed=3, slide_size=4096, n_splits=3, progress=False,
                     overrides={"nomogram.predictors": ["age", "tumour_size_mm"], "nomogram.bootstrap": 10,
                                "evaluation.inner_splits": 2, "evaluation.n_bootstrap": 50})
    assert clinical.stat().st_mtime_ns == before
    assert again.pipeline.ran == []


def test_demo_regenerates_the_cohort_for_another_seed_or_size(tmp_path):
    from lnmkit._demo import _ensure_cohort

    cohort = tmp_path / "cohort"
    assert _ensure_cohort(cohort, 4, 0, 512, progress=False)
    assert not _ensure_cohort(cohort, 4, 0, 512, progress=False)
    assert _ensure_cohort(cohort, 4, 1, 512, progress=False)
    assert load_truth(cohort)["parameters"]["seed"] == 1
    assert _ensure_cohort(cohort, 5, 1, 512, progress=False)
    assert len(pd.read_csv(cohort / "clinical.csv")) == 5
    assert _ensure_cohort(cohort, 5, 1, 640, progress=False)
    assert load_truth(cohort)["parameters"]["slide_size"] == 640
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "clinical.csv").write_text("patient_id\nP1\n")
    with pytest.raises(FileExistsError, match="lnmkit.synth did not write"):
        _ensure_cohort(tmp_path / "other", 4, 0, 512, progress=False)


def test_demo_measures_localisation_against_the_planted_tumour_as_annotations(demo_run):
    folder = demo_run.cohort_dir / "truth" / "annotations"
    truth = load_truth(demo_run.cohort_dir)
    assert sorted(p.stem for p in folder.glob("*.geojson")) == sorted(truth["slides"])
    loc = demo_run.metrics["attention_localisation"]
    assert loc["n_slides_annotated"] >= 10 and loc["n_slides_with_tumour"] >= 1
    assert 0.0 <= loc["pooled_auc"] <= 1.0
    assert "attention localisation AUC" in "\n".join(demo_run.summary_lines())
    # no absolute path of the demo folder in what the MIL stage writes
    assert str(demo_run.out_dir.resolve()) not in (demo_run.mil_dir / "metrics.json").read_text()


def test_demo_summary_says_na_for_an_undefined_auc(demo_run):
    import dataclasses

    metrics = json.loads(json.dumps(demo_run.metrics))
    metrics["auc"]["otc"] = {"auc": None, "auc_lower_95": None, "auc_upper_95": None, "n": 0, "n_pos": 0}
    metrics["attention_localisation"]["pooled_auc"] = None
    lines = "\n".join(dataclasses.replace(demo_run, metrics=metrics).summary_lines())
    assert "out-of-fold OTC AUC: n/a" in lines and "attention localisation AUC against planted tumour masks: n/a" in lines


def test_demo_cli_rejects_bad_option():
    result = CliRunner().invoke(app, ["demo", "--n-patients", "not-a-number"])
    assert result.exit_code != 0
