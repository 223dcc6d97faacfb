"""Pipeline runs: stage.json records, skipping, reruns of exactly the downstream stages,
resume after SIGKILL during feature extraction, Dask workers giving the same features."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from lnmkit._version import __version__
from lnmkit.pipeline import STAGES, load_config, plan_pipeline, read_record, run_pipeline


def _config(cohort, output, **sections):
    """The slide and table stages up to the fusion table; the model stages are tested in the slow test."""
    data = {"cohort": str(cohort), "output": str(output), "seed": 0,
            "mil": {"n_splits": 3, "max_epochs": 4, "tasks": ["lnm"]},
            "endpoints": {"binary": ["lnm"], "survival": ["os"]},
            "models": {"enabled": False}, "evaluation": {"enabled": False}, "nomogram": {"enabled": False},
            "reports": {"enabled": False},
            "dask": {"cluster": "none"}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return data


def _enabled_names(config):
    return [s.name for s in STAGES if s.enabled(load_config(config))]


def _downstream_of(key, names, config):
    """Stages whose configuration keys include ``key`` and every stage that reads them."""
    hit = {s.name for s in STAGES if s.name in names
           and any(key == k or key.startswith(k + ".") or k.startswith(key + ".") for k in s.config_keys)}
    changed = True
    while changed:
        changed = False
        for s in STAGES:
            if s.name in names and s.name not in hit and any(r in hit for r in s.inputs_for(config)):
                hit.add(s.name)
                changed = True
    return hit


@pytest.fixture(scope="module")
def reference_run(synthetic_cohort_dir, tmp_path_factory):
    """One uninterrupted run of every stage, in this process."""
    out = tmp_path_factory.mktemp("pipeline") / "run"
    result = run_pipeline(_config(synthetic_cohort_dir, out), progress=False)
    return result


def _bags(run_dir):
    out = {}
    for path in sorted(Path(run_dir).glob("features/*/h5/*.h5")):
        with h5py.File(path, "r") as f:
            out[path.stem] = (f["features"][:], f["coords"][:])
    return out


def test_every_stage_writes_stage_json(reference_run, synthetic_cohort_dir):
    assert reference_run.ran == _enabled_names(_config(synthetic_cohort_dir, reference_run.out_dir))
    assert {"validate", "features", "mil", "radiology", "fusion"} <= set(reference_run.ran)
    for name in reference_run.ran:
        record = json.loads((reference_run.out_dir / name / "stage.json").read_text())
        assert record["status"] == "complete" and record["stage"] == name
        assert record["lnmkit_version"] == __version__
        assert len(record["config_hash"]) == 16 and record["input_hashes"]
        assert all(len(v) == 16 or v == "absent" for v in record["input_hashes"].values())
        assert record["seconds"] >= 0 and record["started"] <= record["finished"]
        for rel in record["outputs"].values():
            assert (reference_run.out_dir / rel).exists()
    features = read_record(reference_run.out_dir / "features")
    assert {"cohort:slides.csv", "slide_files", "stage:validate"} <= set(features.input_hashes)
    # slides.tile_size null: the encoder's own tile size
    assert features.config["slides"]["tile_size"] is None
    params = json.loads(next((reference_run.out_dir / "features").glob("*/params.json")).read_text())
    assert params["tile_size"] == 160
    mil = read_record(reference_run.out_dir / "mil")
    assert mil.input_hashes["stage:features"] == features.outputs_hash
    assert mil.config["seed"] == 0
    assert {k: mil.config["mil"][k] for k in ("arch", "max_epochs", "n_splits", "tasks")} == {
        "arch": None, "max_epochs": 4, "n_splits": 3, "tasks": ["lnm"]}
    fusion = read_record(reference_run.out_dir / "fusion")
    assert set(fusion.input_hashes) >= {"stage:validate", "stage:mil", "stage:radiology"}
    assert (reference_run.out_dir / "config.yaml").is_file()
    fig = reference_run.plot()
    assert fig.axes
    import matplotlib.pyplot as plt
    plt.close(fig)
    assert "ran" in reference_run._repr_html_()


def test_rerun_skips_everything(reference_run):
    again = run_pipeline(reference_run.config, progress=False)
    assert again.ran == [] and again.skipped == reference_run.ran
    assert (plan_pipeline(reference_run.config)["action"] == "skip").all()


@pytest.mark.parametrize("key, value", [
    ("radiology.cancer", "general"),
    ("mil.n_splits", 4),
    ("slides.tile_size", 192),
    ("seed", 1),
])
def test_changed_key_reruns_exactly_the_downstream_stages(reference_run, tmp_path, key, value):
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run.out_dir, run_dir)
    config = load_config(reference_run.config.model_dump(mode="json"),
                         overrides={"output": str(run_dir), key: value})
    names = _enabled_names(config.model_dump(mode="json"))
    expected = _downstream_of(key, names, config)
    # the graph, stated by hand for this configuration
    known = {"radiology.cancer": {"radiology", "fusion"}, "mil.n_splits": {"mil", "fusion"},
             "slides.tile_size": {"features", "mil", "fusion"}, "seed": {"mil", "fusion"}}[key]
    assert expected == known
    planned = plan_pipeline(config)
    assert set(planned.index[planned["action"] == "run"]) == expected
    result = run_pipeline(config, progress=False)
    assert set(result.ran) == expected
    assert set(result.skipped) == set(names) - expected


def test_modified_output_or_cohort_file_reruns(reference_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run.out_dir, run_dir)
    config = load_config(reference_run.config.model_dump(mode="json"), overrides={"output": str(run_dir)})
    (run_dir / "radiology" / "radiology_features.csv").write_text("patient_id\n")
    result = run_pipeline(config, progress=False)
    assert "radiology" in result.ran and "features" not in result.ran
    assert pd.read_csv(run_dir / "radiology" / "radiology_features.csv").shape[0] > 1
    forced = run_pipeline(config, force=["mil"], progress=False)
    assert "mil" in forced.ran and "features" in forced.skipped


def _interrupted_run(config_path, run_dir, min_done=1):
    """Start `lnmkit run` in its own process group; SIGKILL it once ``min_done`` slides are finished."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lnmkit.cli", "run", str(config_path), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
    deadline = time.monotonic() + 300
    done = pd.DataFrame()
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            manifests = list(run_dir.glob("features/*/manifest.csv"))
            if manifests:
                try:
                    manifest = pd.read_csv(manifests[0], dtype=str, keep_default_na=False)
                except (pd.errors.EmptyDataError, OSError):  # pragma: no cover - atomic writes
                    raise AssertionError("a reader saw a partly written manifest")
                done = manifest[manifest["status"].isin(["ok", "empty"])]
                if len(done) >= min_done:
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc, done


def test_sigkill_during_extraction_then_resume(reference_run, tmp_path):
    run_dir = tmp_path / "run"
    config_path = tmp_path / "config.yaml"
    data = reference_run.config.model_dump(mode="json")
    data["output"] = str(run_dir)
    config_path.write_text(yaml.safe_dump(data))
    proc, done = _interrupted_run(config_path, run_dir)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert read_record(run_dir / "features").status == "running"
    n_slides = len(pd.read_csv(Path(data["cohort"]) / "slides.csv"))
    assert 1 <= len(done) < n_slides, "the run finished before it could be killed"
    assert not (run_dir / "mil").exists()
    # no partial file is left where a reader would take it for an output
    run_folder = next(run_dir.glob("features/*/"))
    finished = {sid: (run_folder / "h5" / f"{sid}.h5").stat().st_mtime_ns
                for sid in done.loc[done["status"] == "ok", "slide_id"]}

    resumed = run_pipeline(load_config(config_path), progress=False)
    assert "features" in resumed.ran and resumed.table.loc["features", "reason"] == "last run running"
    for sid, mtime in finished.items():
        assert (run_folder / "h5" / f"{sid}.h5").stat().st_mtime_ns == mtime, f"{sid} was extracted again"
    assert not list(run_dir.rglob(".*.part"))
    # final outputs equal those of the uninterrupted run
    ref, got = _bags(reference_run.out_dir), _bags(run_dir)
    assert ref.keys() == got.keys()
    for sid in ref:
        np.testing.assert_array_equal(got[sid][0], ref[sid][0])
        np.testing.assert_array_equal(got[sid][1], ref[sid][1])
    for stage in ("features", "mil", "radiology"):
        assert read_record(run_dir / stage).output_hashes.keys() == read_record(
            reference_run.out_dir / stage).output_hashes.keys()
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "mil" / "oof_scores.csv"),
                                  pd.read_csv(reference_run.out_dir / "mil" / "oof_scores.csv"))
    assert read_record(run_dir / "features").output_hashes == read_record(
        reference_run.out_dir / "features").output_hashes


def test_two_worker_dask_cluster_gives_the_same_features(reference_run, tmp_path):
    from dask.distributed import LocalCluster
    from typer.testing import CliRunner

    from lnmkit.cli import app

    data = reference_run.config.model_dump(mode="json")
    data.update(output=str(tmp_path / "run"), mil={"enabled": False}, radiology={"enabled": False})
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(data))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        result = CliRunner().invoke(app, ["run", str(config_path), "--scheduler", cluster.scheduler_address,
                                          "--quiet"])
        assert result.exit_code == 0, result.output
        # the slides ran as tasks of this cluster, not in the test process
        assert "lnmkit" in cluster.scheduler.task_prefixes   # keys lnmkit-features-<slide>-...
    assert "features" in result.output
    ref, got = _bags(reference_run.out_dir), _bags(tmp_path / "run")
    assert ref.keys() == got.keys() and len(ref) >= 10
    for sid in ref:
        np.testing.assert_array_equal(got[sid][0], ref[sid][0])
        np.testing.assert_array_equal(got[sid][1], ref[sid][1])
    manifest = pd.read_csv(next((tmp_path / "run").glob("features/*/manifest.csv")))
    reference = pd.read_csv(next(reference_run.out_dir.glob("features/*/manifest.csv")))
    pd.testing.assert_frame_equal(manifest.drop(columns="seconds").sort_values("slide_id").reset_index(drop=True),
                                  reference.drop(columns="seconds").sort_values("slide_id").reset_index(drop=True))


def test_regenerated_slide_under_the_same_id_is_extracted_again(reference_run, tmp_path):
    """A slide file replaced under the same slide_id must not keep its old bag."""
    cohort = tmp_path / "cohort"
    shutil.copytree(reference_run.config.cohort, cohort)
    run_dir = tmp_path / "run"
    data = reference_run.config.model_dump(mode="json")
    data.update(cohort=str(cohort), output=str(run_dir), mil={"enabled": False})
    first = run_pipeline(data, progress=False)
    slides = pd.read_csv(cohort / "slides.csv", dtype=str)
    a, b = slides.iloc[0], slides.iloc[1]
    # swap the two files: same ids, other pixels
    pa, pb = cohort / a["path"], cohort / b["path"]
    if pa.suffix != pb.suffix:
        b = next(r for _, r in slides.iloc[2:].iterrows() if Path(r["path"]).suffix == pa.suffix)
        pb = cohort / b["path"]
    tmp = pa.with_name("swap" + pa.suffix)
    pa.rename(tmp)
    pb.rename(pa)
    tmp.rename(pb)
    for p in (pa, pb):
        os.utime(p)
    second = run_pipeline(data, progress=False)
    assert "features" in second.ran
    bags_first, bags_second = _bags(reference_run.out_dir), _bags(run_dir)
    np.testing.assert_array_equal(bags_second[a["slide_id"]][0], bags_first[b["slide_id"]][0])
    np.testing.assert_array_equal(bags_second[b["slide_id"]][0], bags_first[a["slide_id"]][0])
    assert first.ran


@pytest.mark.slow
def test_every_stage_on_the_small_cohort(synthetic_cohort_dir, tmp_path):
    data = _config(synthetic_cohort_dir, tmp_path / "run", models={"enabled": True},
                   evaluation={"enabled": True, "n_splits": 3, "inner_splits": 2, "n_bootstrap": 20},
                   nomogram={"enabled": True, "predictors": ["age", "tumour_size_mm"], "bootstrap": 10},
                   reports={"enabled": True, "n_patients": 1})
    result = run_pipeline(data, progress=False)
    assert result.ran == [s.name for s in STAGES]
    html = result.output("reports", "report").read_text()
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html[:500].lower()
    summary = json.loads(result.output("evaluation", "summary").read_text())
    for model, row in summary["lnm"].items():
        assert row["lower"] <= row["auc"] <= row["upper"], model
    for model, row in summary["survival_os"].items():
        assert row["lower"] <= row["c"] <= row["upper"], model
    assert read_record(tmp_path / "run" / "fusion").input_hashes.keys() >= {"stage:mil_nested", "stage:radiology"}
    again = run_pipeline(load_config(data, overrides={"nomogram.bootstrap": 5}), progress=False)
    assert set(again.ran) == {"nomogram", "reports"}


def test_nomogram_that_cannot_be_fitted_is_reported_and_the_run_goes_on(reference_run, tmp_path, monkeypatch):
    from lnmkit.pipeline import _stages_models

    real = _stages_models.load_fusion

    def with_separator(ctx):
        table = real(ctx)
        # a predictor equal to pN status: the logistic likelihood has no maximum
        table.frame["slide_separator"] = table.lnm_labels()
        return table

    monkeypatch.setattr(_stages_models, "load_fusion", with_separator)
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run.out_dir, run_dir)
    config = load_config(reference_run.config.model_dump(mode="json"),
                         overrides={"output": str(run_dir), "nomogram.enabled": True,
                                    "nomogram.predictors": ["age", "slide_separator"], "nomogram.bootstrap": 5})
    with pytest.warns(UserWarning, match=r"nomogram \(lnm\) not fitted"):
        result = run_pipeline(config, progress=False)
    assert result.ran == ["nomogram"]
    record = read_record(run_dir / "nomogram")
    assert "separates the outcome" in record.summary["not_fitted"]["lnm"]
    assert set(record.outputs) == {"os"} and (run_dir / "nomogram" / "os" / "nomogram.png").is_file()
    assert not (run_dir / "nomogram" / "lnm").exists()
    assert any(line.startswith("nomogram (lnm) not fitted: ") for line in result.results_lines())
    assert set(record.summary["os"]["Dxy"]) == {"index_orig", "optimism", "index_corrected"}
