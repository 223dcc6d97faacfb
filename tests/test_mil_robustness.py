"""run_mil / cross_fit robustness: undefined AUCs, one on-disk format, missing outcomes, early stopping,
annotations on the command line, no absolute paths, file permissions."""

import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lnmkit.cli import app
from lnmkit.exceptions import AnnotationError, MILInputWarning
from lnmkit.mil import CrossFitResult, MILClassifier, PatientBag, cross_fit, load_bags, run_mil

D = 6
FAST = {"max_epochs": 3, "max_tiles": 32, "hidden": 16, "batch_size": 8}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write_run(cohort_dir, run_dir, seed=0):
    """A hand-made cohort (tables) plus a feature run whose bags carry signal in pN+ patients."""
    from lnmkit.features import FeatureBag, write_bag

    rng = np.random.default_rng(seed)
    n = 18
    pids = [f"P{i:02d}" for i in range(n)]
    pn = ["pN+" if i % 3 == 0 else "pN0" for i in range(n)]
    cohort_dir.mkdir(parents=True)
    pd.DataFrame({"patient_id": pids, "age": 60, "sex": "F"}).to_csv(cohort_dir / "clinical.csv", index=False)
    # no otc column at all: the common real cohort
    pd.DataFrame({"patient_id": pids, "pn_status": pn}).to_csv(cohort_dir / "outcomes.csv", index=False)
    slides = pd.DataFrame({"slide_id": [f"{p}-A" for p in pids], "patient_id": pids,
                           "path": [f"slides/{p}-A.svs" for p in pids], "stain": "H&E"})
    slides.to_csv(cohort_dir / "slides.csv", index=False)
    rows = []
    for sid, pid, status in zip(slides.slide_id, pids, pn):
        k = int(rng.integers(12, 30))
        feats = rng.normal(size=(k, D)).astype(np.float32)
        if status == "pN+":
            feats[: k // 4, :2] += 3.0
        coords = np.stack([np.arange(k) * 448, np.zeros(k, int)], 1).astype(np.int64)
        attrs = {"slide_id": sid, "patient_id": pid, "tile_size_level0": 448, "mpp": 0.5, "tile_size": 224,
                 "encoder": "test", "encoder_version": "0", "slide_path": f"slides/{sid}.svs"}
        write_bag(run_dir / "h5" / f"{sid}.h5", FeatureBag(feats, coords, attrs))
        rows.append({"slide_id": sid, "patient_id": pid, "status": "ok", "n_tiles": k, "seconds": 0.0, "error": ""})
    pd.DataFrame(rows).to_csv(run_dir / "manifest.csv", index=False)
    (run_dir / "params.json").write_text(json.dumps({"encoder": {"name": "test", "dim": D}}))
    return pids


@pytest.fixture(scope="module")
def mil_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mil")
    _write_run(root / "cohort", root / "features" / "run")
    # annotations: the first quarter of each pN+ slide's tiles (the planted ones), as GeoJSON polygons
    ann = root / "annotations"
    ann.mkdir()
    for sid in ("P00-A", "P03-A", "P06-A"):
        box = [[0, 0], [448 * 3, 0], [448 * 3, 448], [0, 448], [0, 0]]
        ann.joinpath(f"{sid}.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [box]},
             "properties": {"classification": {"name": "Tumor"}}}]}))
    result = CliRunner().invoke(app, ["mil", str(root / "features"), "--cohort", str(root / "cohort"),
                                      "--out", str(root / "out"), "--tasks", "lnm,otc", "--n-splits", "3",
                                      "--max-epochs", "3", "--annotations", str(ann),
                                      "--annotation-classes", "Tumor"])
    return root, result


def test_cli_mil_without_otc_data_prints_na_instead_of_crashing(mil_run):
    root, result = mil_run
    assert result.exit_code == 0, result.output
    assert "OTC AUC=n/a" in result.output and "LNM AUC=" in result.output
    metrics = json.loads((root / "out" / "metrics.json").read_text())
    assert metrics["auc"]["otc"]["auc"] is None and metrics["auc"]["otc"]["n"] == 0
    from lnmkit.mil import MilRun

    assert "OTC AUC=n/a" in repr(MilRun(None, metrics, root / "out"))


def test_cli_mil_annotations_give_localisation(mil_run):
    root, result = mil_run
    loc = json.loads((root / "out" / "metrics.json").read_text())["attention_localisation"]
    assert loc["n_slides_annotated"] == 3 and loc["n_slides_with_tumour"] == 3
    assert loc["n_tumour_tiles"] == 9 and 0 <= loc["pooled_auc"] <= 1
    assert "localisation AUC=" in result.output


def test_run_mil_output_is_what_crossfitresult_load_reads_and_scores_new_patients(mil_run):
    root, _ = mil_run
    back = CrossFitResult.load(root / "out")
    oof = pd.read_csv(root / "out" / "oof_scores.csv", dtype={"patient_id": str}).set_index("patient_id")
    pd.testing.assert_frame_equal(back.oof, oof)
    assert len(back.models) == 3 and back.attention["slide_id"].nunique() == 18
    from lnmkit import Cohort
    from lnmkit.features import open_features

    bags = load_bags(open_features(root / "features"), Cohort.from_dir(root / "cohort", check_files=False),
                     progress=False)
    new = {p: bags[p] for p in list(bags)[:4]}
    scores = back.predict(new)
    mean = sum(m.predict(new)["lnm_score"] for m in back.models) / 3
    np.testing.assert_allclose(scores["lnm_score"], mean)
    # the per-slide attention files are the result's tile table, in the slides' tile order
    first = pd.read_csv(root / "out" / "attention" / "P00-A.csv")
    assert list(first.columns[:4]) == ["x", "y", "attention", "attention_pct"]
    np.testing.assert_allclose(back.attention.loc[back.attention.slide_id == "P00-A", "x"], first["x"])


def test_outputs_hold_no_absolute_path_and_respect_the_umask(mil_run):
    root, _ = mil_run
    text = (root / "out" / "metrics.json").read_text()
    assert str(root) not in text and not os.path.isabs(json.loads(text)["features_dir"])
    for path in [root / "out" / "metrics.json", root / "out" / "oof_scores.csv",
                 root / "out" / "models" / "fold_0" / "model.safetensors"]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~_current_umask(), path


def _current_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_atomic_path_gives_the_umask_mode(tmp_path):
    from lnmkit._io import atomic_path, atomic_write_text

    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_path(tmp_path / "b.csv") as tmp:
            tmp.write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "b.csv").stat().st_mode & 0o777 == 0o640


def test_run_mil_rejects_a_broken_annotation_file_before_training(tmp_path):
    _write_run(tmp_path / "cohort", tmp_path / "features" / "run")
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "P00-A.geojson").write_text(json.dumps([
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [5, 5]]]}}]))
    with pytest.raises(AnnotationError, match=r"P00-A\.geojson: feature 0: ring 0"):
        run_mil(tmp_path / "features", tmp_path / "cohort", tmp_path / "out", estimator_params=FAST,
                n_splits=3, progress=False, annotations=tmp_path / "ann")
    assert not (tmp_path / "out").exists()
    # without annotations there is no localisation, even when the cohort folder has a truth/ folder
    (tmp_path / "cohort" / "truth").mkdir()
    run = run_mil(tmp_path / "features", tmp_path / "cohort", tmp_path / "out", estimator_params=FAST,
                  n_splits=3, progress=False, tasks=("lnm",))
    assert "attention_localisation" not in run.metrics


def _bags(n=16, seed=0):
    rng = np.random.default_rng(seed)
    bags, rows = {}, []
    for i in range(n):
        pid = f"P{i:02d}"
        feats = rng.normal(size=(10, D)).astype(np.float32)
        if i % 2 == 0:
            feats[:3, :2] += 3
        bags[pid] = PatientBag(pid, feats, np.zeros((10, 2)), np.zeros(10), (f"{pid}-A",), ({},))
        rows.append((pid, "pN+" if i % 2 == 0 else "pN0"))
    return bags, pd.DataFrame(rows, columns=["patient_id", "pn_status"]).set_index("patient_id")


def test_cross_fit_and_run_mil_leave_out_bags_without_outcome_row_with_one_warning(tmp_path):
    bags, y = _bags()
    with pytest.warns(MILInputWarning, match=r"left out 2 patient\(s\) with a bag but no outcome row: P00, P01"):
        res = cross_fit(bags, y.drop(index=["P00", "P01"]), n_splits=2, progress=False,
                        estimator=MILClassifier(tasks=("lnm",), val_fraction=0.3, **FAST))
    assert "P00" not in res.oof.index and len(res.oof) == 14
    pids = _write_run(tmp_path / "cohort", tmp_path / "features" / "run")
    out = pd.read_csv(tmp_path / "cohort" / "outcomes.csv")
    out[out.patient_id != pids[1]].to_csv(tmp_path / "cohort" / "outcomes.csv", index=False)
    with pytest.warns(MILInputWarning, match=rf"no outcome row: {pids[1]}"):
        run = run_mil(tmp_path / "features", tmp_path / "cohort", tmp_path / "out", estimator_params=FAST,
                      n_splits=3, progress=False, tasks=("lnm",))
    assert run.metrics["n_patients"] == len(pids) - 1


def test_one_unknown_pn_patient_keeps_early_stopping_on():
    bags, y = _bags(20)
    y.loc["P03", "pn_status"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error", MILInputWarning)
        clf = MILClassifier(tasks=("lnm",), val_fraction=0.25, **FAST).fit(bags, y)
    assert len(clf.val_patients_) == 5 and "P03" in clf.train_patients_
    val = y.loc[clf.val_patients_, "pn_status"]
    assert set(val) == {"pN+", "pN0"}


def test_early_stopping_that_cannot_split_says_so():
    bags, y = _bags(6)
    y.loc[["P00", "P02"], "pn_status"] = "pN0"  # a single pN+ patient left
    with pytest.warns(MILInputWarning, match=r"early stopping is off.*1 pN\+"):
        clf = MILClassifier(tasks=("lnm",), val_fraction=0.3, **FAST).fit(bags, y)
    assert clf.val_patients_ == []
