"""extract(): failed slides are named in a warning; outputs keep slide paths relative to the cohort."""

import shutil
import warnings
from pathlib import Path

import h5py
import pandas as pd
import pytest

from lnmkit import Cohort
from lnmkit.exceptions import CohortValidationWarning, ExtractionWarning
from lnmkit.features import extract


def test_failed_slides_are_named_and_no_absolute_path_is_stored(synthetic_cohort_dir, tmp_path):
    cohort = tmp_path / "hospital" / "cohort"
    (cohort / "slides").mkdir(parents=True)
    source = pd.read_csv(synthetic_cohort_dir / "slides.csv", dtype=str).iloc[:1]
    shutil.copy(synthetic_cohort_dir / source["path"].iat[0], cohort / "slides" / Path(source["path"].iat[0]).name)
    (cohort / "slides" / "empty.svs").write_bytes(b"")
    rows = [(source["slide_id"].iat[0], "P1", f"slides/{Path(source['path'].iat[0]).name}"),
            ("empty", "P2", "slides/empty.svs")]
    pd.DataFrame(rows, columns=["slide_id", "patient_id", "path"]).assign(stain="H&E").to_csv(
        cohort / "slides.csv", index=False)
    pd.DataFrame({"patient_id": ["P1", "P2"], "age": 60, "sex": "F"}).to_csv(cohort / "clinical.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CohortValidationWarning)
        loaded = Cohort.from_dir(cohort)
    with pytest.warns(ExtractionWarning, match=r"1 of 2 slide\(s\) failed and have no features: empty \(") as got:
        fs = extract(loaded, tmp_path / "features", progress=False)
    assert "slides/empty.svs" in str(got[0].message)
    absolute = str(cohort.resolve())
    manifest = (fs.root / "manifest.csv").read_text()
    assert absolute not in manifest and "slides/empty.svs" in manifest
    with h5py.File(fs.bag_path(rows[0][0]), "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    assert attrs["slide_path"] == rows[0][2] and "source_path" not in attrs
    assert not any(absolute in str(v) for v in attrs.values())


def test_rerun_removes_the_temporary_files_of_a_killed_run(synthetic_cohort_dir, tmp_path):
    slides = pd.read_csv(synthetic_cohort_dir / "slides.csv", dtype=str).iloc[:1].set_index("slide_id")
    slides["path"] = [str(synthetic_cohort_dir / p) for p in slides["path"]]
    fs = extract(slides, tmp_path, progress=False)
    leftovers = [fs.root / "h5" / ".S.h5.abc123.h5.part", fs.root / "tissue" / ".S.geojson.x1.geojson.part",
                 fs.root / ".manifest.csv.y2.csv.part"]
    for path in leftovers:
        path.write_bytes(b"half")  # what SIGKILL during an atomic write leaves behind
    again = extract(slides, tmp_path, progress=False)
    assert again.root == fs.root and not any(p.exists() for p in leftovers)
    assert not list(fs.root.rglob(".*.part"))
