"""Cohort feature extraction: outputs, failures, resume, parameter changes, Dask, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lnmkit.exceptions import ExtractionError, FeatureBagError
from lnmkit.features import extract, get_encoder, open_features, read_bag
from lnmkit.features._registry import TileEncoder

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "openslide"


def _part_files(root):
    return [p for p in Path(root).rglob("*") if p.name.endswith(".part")]


def _first_slides(cohort_dir, n):
    from lnmkit.cohort import Cohort

    return Cohort.from_dir(cohort_dir).slides.iloc[:n]


@pytest.fixture(scope="module")
def local_run(synthetic_cohort_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("features")
    return extract(synthetic_cohort_dir, out, progress=False), out


class CountingEncoder(TileEncoder):
    """stain-texture that counts encode calls and can simulate a killed process."""

    def __init__(self, interrupt_after=None):
        self.inner = get_encoder("stain-texture")
        self.name, self.version, self.dim = self.inner.name, self.inner.version, self.inner.dim
        self.input_size = self.inner.input_size
        self.interrupt_after = interrupt_after
        self.calls = 0

    def config(self):
        return self.inner.config()

    def _encode(self, tiles):
        if self.interrupt_after is not None and self.calls >= self.interrupt_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        return self.inner.encode(tiles)


def test_local_run_outputs(local_run, synthetic_cohort_dir):
    fs, out = local_run
    from lnmkit.cohort import Cohort

    slides = Cohort.from_dir(synthetic_cohort_dir).slides
    assert fs.root.parent == out
    assert fs.root.name.startswith("stain-texture_0.5mpp_160px_")
    assert list(fs.manifest.columns) == ["patient_id", "status", "n_tiles", "seconds", "error"]
    assert set(fs.manifest.index) == set(slides.index)
    assert fs.slide_ids and set(fs.manifest["status"]) <= {"ok", "empty"}
    params = json.loads((fs.root / "params.json").read_text())
    assert params["encoder"]["name"] == "stain-texture" and params["tile_size"] == 160
    for slide_id in fs.slide_ids:
        bag = fs.bag(slide_id)
        assert bag.features.shape == (fs.manifest.loc[slide_id, "n_tiles"], 82)
        assert bag.patient_id == slides.loc[slide_id, "patient_id"]
        assert bag.attrs["params_hash"] == fs.root.name.rsplit("_", 1)[1]
        assert bag.attrs["mpp"] == 0.5 and bag.attrs["tile_size"] == 160
        assert bag.attrs["feature_names"] == get_encoder("stain-texture").feature_names
        # stain-texture's default 160-px tiles: 320 level-0 px on 40x slides, 160 on 20x ones.
        expected = round(160 * 0.5 / bag.attrs["slide_mpp"])
        assert bag.attrs["tile_size_level0"] == expected
        assert fs.tissue_path(slide_id).is_file() and fs.qc_path(slide_id).is_file()
    assert not _part_files(fs.root)
    assert open_features(out).root == fs.root
    first, second = fs.slide_ids[:2]
    assert not np.allclose(fs.bag(first).features.mean(0), fs.bag(second).features.mean(0))


def test_rerun_skips_finished_slides(local_run, synthetic_cohort_dir):
    fs, out = local_run
    counter = CountingEncoder()
    again = extract(synthetic_cohort_dir, out, encoder=counter, progress=False)
    assert again.root == fs.root
    assert counter.calls == 0
    pd.testing.assert_frame_equal(again.manifest, fs.manifest)


def test_resume_after_killed_run(synthetic_cohort_dir, tmp_path, monkeypatch):
    from lnmkit.features import _extract

    slides = _first_slides(synthetic_cohort_dir, 5)
    killer = CountingEncoder(interrupt_after=2)
    with pytest.raises(KeyboardInterrupt):
        extract(slides, tmp_path, encoder=killer, progress=False)
    fs = open_features(tmp_path)
    assert fs.manifest["status"].tolist() == ["ok", "ok", "pending", "pending", "pending"]
    assert sorted(p.stem for p in (fs.root / "h5").iterdir()) == sorted(slides.index[:2])
    assert not _part_files(fs.root)
    processed = []
    original = _extract._process_slide

    def recording(task):
        processed.append(task["slide_id"])
        return original(task)

    monkeypatch.setattr(_extract, "_process_slide", recording)
    resumed = extract(slides, tmp_path, progress=False)
    assert resumed.root == fs.root
    assert processed == slides.index[2:].tolist()
    assert set(resumed.manifest["status"]) <= {"ok", "empty"}
    assert resumed.manifest.loc[slides.index[:2], "seconds"].tolist() == \
        fs.manifest.loc[slides.index[:2], "seconds"].tolist()


def test_parameter_change_gives_new_run(local_run, synthetic_cohort_dir, tmp_path):
    fs, _ = local_run
    slides = _first_slides(synthetic_cohort_dir, 4)
    shutil.copytree(fs.root, tmp_path / fs.root.name)
    unchanged = extract(slides, tmp_path, progress=False)
    assert unchanged.root == tmp_path / fs.root.name
    changed = extract(slides, tmp_path, min_tissue=0.8, progress=False)
    assert changed.root != tmp_path / fs.root.name
    assert changed.params["min_tissue"] == 0.8
    assert (changed.manifest["n_tiles"] <= fs.manifest.loc[changed.manifest.index, "n_tiles"]).all()
    with pytest.raises(FeatureBagError, match="holds 2 runs"):
        open_features(tmp_path)
    # A bag left by other parameters under this run's name is redone, not trusted.
    slide_id = changed.slide_ids[0]
    stale = read_bag(changed.bag_path(slide_id))
    stale.attrs["params_hash"] = "0000000000"
    from lnmkit.features import write_bag

    write_bag(changed.bag_path(slide_id), stale)
    counter = CountingEncoder()
    redo = extract(slides, tmp_path, encoder=counter, min_tissue=0.8, progress=False)
    assert redo.root == changed.root
    assert counter.calls == -(-changed.manifest.loc[slide_id, "n_tiles"] // 64)  # that slide only
    assert read_bag(redo.bag_path(slide_id)).attrs["params_hash"] == redo.root.name.rsplit("_", 1)[1]


def test_real_fixtures_fail_cleanly_while_others_finish(synthetic_cohort_dir, tmp_path):
    if not FIXTURES.is_dir():
        pytest.skip(f"OpenSlide fixtures not found at {FIXTURES}")
    cohort = tmp_path / "cohort"
    (cohort / "slides").mkdir(parents=True)
    source = pd.read_csv(synthetic_cohort_dir / "slides.csv", dtype=str).iloc[0]
    shutil.copy(synthetic_cohort_dir / source["path"], cohort / "slides" / Path(source["path"]).name)
    names = ["small.svs", "boxes.tiff", "boxes_0.dcm", "boxes_1.dcm", "unopenable.tiff",
             "unreadable.svs", "boxes.png"]
    for name in names:
        shutil.copy(FIXTURES / name, cohort / "slides" / name)
    rows = [("synthetic", "P0", f"slides/{Path(source['path']).name}", "")]
    rows += [(Path(n).stem.replace("_", "-") + Path(n).suffix.replace(".", "-"), f"P{i + 1}",
              f"slides/{n}", "0.25") for i, n in enumerate(names) if n != "boxes_1.dcm"]
    pd.DataFrame(rows, columns=["slide_id", "patient_id", "path", "mpp"]).assign(stain="H&E").to_csv(
        cohort / "slides.csv", index=False)
    pd.DataFrame({"patient_id": [r[1] for r in rows], "age": 60, "sex": "F"}).to_csv(
        cohort / "clinical.csv", index=False)
    import warnings

    from lnmkit.exceptions import CohortValidationWarning, ExtractionWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CohortValidationWarning)
        with pytest.warns(ExtractionWarning, match="unopenable-tiff.*unreadable-svs") as caught:
            fs = extract(cohort, tmp_path / "out", progress=False)
    assert str(cohort.resolve()) not in str(caught[0].message)  # slide paths relative to the cohort
    manifest = fs.manifest
    assert manifest.loc["synthetic", "status"] == "ok"
    for slide_id, row in manifest.drop(index="synthetic").iterrows():
        assert row["status"] in ("ok", "empty", "failed")
        if row["status"] != "ok":
            path = cohort / "slides.csv"
            file_name = pd.read_csv(path).set_index("slide_id").loc[slide_id, "path"].split("/")[-1]
            assert file_name in row["error"], (slide_id, row["error"])
            assert not fs.bag_path(slide_id).exists() or row["status"] == "empty"
    assert manifest.loc["unopenable-tiff", "status"] == "failed"
    assert manifest.loc["unreadable-svs", "status"] == "failed"
    assert not _part_files(fs.root)


def test_all_slides_failing_raises(tmp_path):
    bad = tmp_path / "bad.svs"
    bad.write_bytes(b"not a slide")
    slides = pd.DataFrame({"patient_id": ["P1"], "path": [str(bad)]}, index=["s1"])
    with pytest.raises(ExtractionError, match=r"bad\.svs"):
        extract(slides, tmp_path / "out", progress=False)
    manifest = open_features(tmp_path / "out").manifest
    assert manifest.loc["s1", "status"] == "failed" and "bad.svs" in manifest.loc["s1", "error"]


def test_default_tile_size_is_the_encoders_input_size(local_run, synthetic_cohort_dir, tmp_path):
    fs, _ = local_run
    slides = _first_slides(synthetic_cohort_dir, 2)
    assert fs.params["tile_size"] == get_encoder("stain-texture").input_size == 160
    coarse = CountingEncoder()
    coarse.input_size = 96
    own = extract(slides, tmp_path / "own", encoder=coarse, progress=False)
    assert own.params["tile_size"] == 96 and "_96px_" in own.root.name
    given = extract(slides, tmp_path / "given", encoder=coarse, tile_size=128, progress=False)
    assert given.params["tile_size"] == 128
    for slide_id in own.slide_ids:
        level0 = round(96 * 0.5 / own.bag(slide_id).attrs["slide_mpp"])
        assert own.bag(slide_id).attrs["tile_size_level0"] == level0
        assert len(own.bag(slide_id)) > len(given.bag(slide_id))


def test_bad_arguments():
    slides = pd.DataFrame({"patient_id": ["P1"], "path": ["x.svs"]}, index=["s1"])
    with pytest.raises(ValueError, match="mpp must be a positive number"):
        extract(slides, "unused", mpp=0)
    with pytest.raises(ValueError, match="min_tissue must be in"):
        extract(slides, "unused", min_tissue=2)
    with pytest.raises(ValueError, match="tile_size must be an integer >= 16; got 8"):
        extract(slides, "unused", tile_size=8)
    with pytest.raises(ValueError, match="needs columns patient_id and path"):
        extract(slides.drop(columns="path"), "unused")
    # Bad tissue parameters fail once up front, not once per slide in the manifest.
    with pytest.raises(ValueError, match="segment_tissue: mpp must be a positive number; got nan"):
        extract(slides, "unused", tissue_params={"mpp": float("nan")})
    with pytest.raises(TypeError, match=r"unknown parameter\(s\) \['otsu'\]"):
        extract(slides, "unused", tissue_params={"otsu": True})
    with pytest.raises(TypeError, match=r"encoder 'stain-texture' has no parameter\(s\) \['foo'\].*'mpp'"):
        extract(slides, "unused", encoder_kwargs={"foo": 1})
    with pytest.raises(ValueError, match="batch_size must be a positive integer; got True"):
        extract(slides, "unused", batch_size=True)


def test_dask_cluster_matches_local_run(local_run, synthetic_cohort_dir, tmp_path):
    distributed = pytest.importorskip("distributed")
    fs, _ = local_run
    slides = _first_slides(synthetic_cohort_dir, 5)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        dfs = extract(slides, tmp_path, client=client, progress=False)
    assert dfs.root.name == fs.root.name
    pd.testing.assert_frame_equal(dfs.manifest.drop(columns="seconds"),
                                  fs.manifest.loc[slides.index].drop(columns="seconds"))
    for slide_id in dfs.slide_ids:
        a, b = fs.bag(slide_id), dfs.bag(slide_id)
        np.testing.assert_array_equal(a.coords, b.coords)
        np.testing.assert_array_equal(a.features, b.features)


def test_cli_features_end_to_end(synthetic_cohort_dir, tmp_path):
    from typer.testing import CliRunner

    from lnmkit.cli import app

    cohort = tmp_path / "cohort"
    cohort.mkdir()
    shutil.copy(synthetic_cohort_dir / "clinical.csv", cohort / "clinical.csv")
    slides = pd.read_csv(synthetic_cohort_dir / "slides.csv", dtype=str).iloc[:3]
    slides["path"] = [str(synthetic_cohort_dir / p) for p in slides["path"]]
    slides.to_csv(cohort / "slides.csv", index=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["features", str(cohort), "--out", str(out),
                                      "--tile-size", "128", "--min-tissue", "0.6"])
    assert result.exit_code == 0, result.output
    fs = open_features(out)
    assert fs.params["tile_size"] == 128 and fs.params["min_tissue"] == 0.6
    assert fs.manifest.index.tolist() == slides["slide_id"].tolist()
    assert f"{len(fs.slide_ids)} ok" in result.output and fs.slide_ids
    missing = CliRunner().invoke(app, ["features", str(tmp_path / "nope"), "--out", str(out)])
    assert missing.exit_code != 0
    unknown = CliRunner().invoke(app, ["features", str(cohort), "--out", str(out),
                                       "--encoder", "nope"])
    assert unknown.exit_code == 2 and "unknown encoder" in unknown.output
