"""`lnmkit validate` opens the slides; one schema engine and one row convention for every table check."""

import json
import re
import shutil
import struct

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from lnmkit.cli import app
from lnmkit.cohort import validate_cohort
from lnmkit.exceptions import MILInputError, NodeTableError, RadiologyImageError

def _broken_slides(folder):
    """A good SVS and TIFF made by lnmkit.synth, and broken files derived from them, written here."""
    from lnmkit.synth import write_slide

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (1024, 1024, 3), dtype=np.uint8)
    folder.mkdir(parents=True)
    write_slide(folder / "good.svs", image, mpp=0.25, layout="svs")
    write_slide(folder / "good.tiff", image, mpp=0.5, layout="tiff")
    data = (folder / "good.svs").read_bytes()
    (folder / "zero.svs").write_bytes(b"")
    (folder / "truncated.svs").write_bytes(data[: len(data) * 6 // 10])
    (folder / "random.svs").write_bytes(rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    Image.fromarray(image[:200, :200]).save(folder / "png.svs", format="PNG")  # a PNG renamed .svs
    with tifffile.TiffFile(folder / "good.svs") as tif:
        page = tif.pages[0]
        tiles = list(zip(page.dataoffsets, page.databytecounts))
        width_at, width_type = page.tags["ImageWidth"].valueoffset, int(page.tags["ImageWidth"].dtype)
    corrupt = bytearray(data)
    for offset, count in tiles:  # keep the JPEG start marker, scramble the rest of every level-0 tile
        corrupt[offset + 2: offset + count] = rng.integers(0, 256, count - 2, dtype=np.uint8).tobytes()
    (folder / "corrupt.svs").write_bytes(bytes(corrupt))
    wide = bytearray(data)
    assert width_type == 4  # LONG
    wide[width_at: width_at + 4] = struct.pack("<I", 3_000_000_000)
    (folder / "wide.svs").write_bytes(bytes(wide))
    return folder


@pytest.fixture(scope="module")
def broken_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    _broken_slides(root / "slides")
    names = {"good": "good.svs", "good2": "good.tiff", "zero": "zero.svs", "truncated": "truncated.svs",
             "random": "random.svs", "png": "png.svs", "table": "../slides.csv", "corrupt": "corrupt.svs",
             "wide": "wide.svs"}
    rows = [(sid, f"P{i}", f"slides/{name}", "") for i, (sid, name) in enumerate(names.items())]
    pd.DataFrame(rows, columns=["slide_id", "patient_id", "path", "mpp"]).to_csv(root / "slides.csv", index=False)
    (root / "slides.csv").write_text((root / "slides.csv").read_text().replace("slides/../slides.csv", "slides.csv"))
    pd.DataFrame({"patient_id": [r[1] for r in rows], "age": 60, "sex": "F"}).to_csv(root / "clinical.csv",
                                                                                     index=False)
    return root


def test_validate_opens_every_slide_and_reports_each_broken_file(broken_cohort):
    result = CliRunner().invoke(app, ["validate", str(broken_cohort)])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if "cannot be used as a slide" in line]
    reported = {re.search(r"value 'slides/([^']+)'|value '(slides\.csv)'", line).group(1) or "slides.csv"
                for line in lines}
    assert reported == {"zero.svs", "truncated.svs", "random.svs", "png.svs", "slides.csv", "corrupt.svs",
                        "wide.svs"}, result.output
    rows = pd.read_csv(broken_cohort / "slides.csv")
    for line in lines:  # spreadsheet rows: header row 1, first slide row 2
        row = int(re.search(r"row (\d+)", line).group(1))
        assert rows.iloc[row - 2]["path"] in line
    assert "the file is empty (0 bytes)" in result.output
    assert "cannot decode the region" in result.output  # the scrambled tiles
    assert "invalid: 7 error(s)" in result.output
    tables_only = CliRunner().invoke(app, ["validate", str(broken_cohort), "--no-check-files"])
    assert tables_only.exit_code == 0 and tables_only.output.startswith("valid:"), tables_only.output


def test_slide_without_mpp_is_reported_by_validate(tmp_path):
    from lnmkit.synth import write_slide

    (tmp_path / "slides").mkdir()
    write_slide(tmp_path / "slides" / "a.tiff", np.full((512, 512, 3), 200, np.uint8), mpp=0.5, layout="tiff")
    with tifffile.TiffFile(tmp_path / "slides" / "a.tiff") as tif:
        keep = tif.pages[0].asarray()
    tifffile.imwrite(tmp_path / "slides" / "b.tiff", keep, tile=(256, 256))  # tiled, no resolution
    pd.DataFrame({"slide_id": ["a", "b"], "patient_id": ["P1", "P2"], "path": ["slides/a.tiff", "slides/b.tiff"]}
                 ).to_csv(tmp_path / "slides.csv", index=False)
    pd.DataFrame({"patient_id": ["P1", "P2"], "age": 60, "sex": "F"}).to_csv(tmp_path / "clinical.csv", index=False)
    problems = [p for p in validate_cohort(tmp_path) if p.is_error]
    assert len(problems) == 1 and problems[0].row == 3 and "microns per pixel unknown" in problems[0].message


def test_rfs_longer_than_os_is_an_error_and_absurd_counts_and_ragged_rows_warn(tmp_path):
    (tmp_path / "clinical.csv").write_text("patient_id,age,sex\nP1,60,F\nP2,61,M\nP3,62\n")
    (tmp_path / "outcomes.csv").write_text(
        "patient_id,pn_status,positive_nodes,examined_nodes,os_months,os_event,rfs_months,rfs_event\n"
        "P1,pN0,0,100000,20,0,30,0\n"
        "P2,pN+,3,25,40,1,12,1\n")
    problems = validate_cohort(tmp_path)
    shown = [str(p) for p in problems]
    errors = [p for p in problems if p.is_error]
    assert len(errors) == 1 and errors[0].row == 2 and errors[0].column == "rfs_months", shown
    assert "rfs_months cannot exceed os_months" in errors[0].message
    warn = {(p.file.split("/")[-1], p.row, p.column) for p in problems if not p.is_error}
    assert ("outcomes.csv", 2, "examined_nodes") in warn
    assert ("clinical.csv", 4, "sex") in warn  # a row with fewer cells than the header
    ragged = next(p for p in problems if p.column == "sex")
    assert "row has 2 cell(s) but the header names 3 columns" in ragged.message


def _problem_keys(problems):
    return sorted((p.row, p.column, p.value, p.message) for p in problems if p.is_error)


def test_node_table_errors_are_the_cohort_engines_with_the_same_rows(tmp_path):
    nodes = pd.DataFrame({"patient_id": ["P1", "P1", "P2"], "node_id": ["a", "a", "b"],
                          "modality": ["CT", "XRAY", "CT"], "short_axis_mm": ["9", "4", "big"],
                          "long_axis_mm": ["5", None, None], "necrosis": [None, "maybe", "1"]})
    nodes.to_csv(tmp_path / "radiology_nodes.csv", index=False)
    pd.DataFrame({"patient_id": ["P1", "P2"], "age": 60, "sex": "F"}).to_csv(tmp_path / "clinical.csv", index=False)
    from_file = [p for p in validate_cohort(tmp_path) if p.file.endswith("radiology_nodes.csv")]
    from lnmkit.radiology import validate_nodes

    with pytest.raises(NodeTableError) as info:
        validate_nodes(nodes)
    assert len(info.value.problems) == len(_problem_keys(from_file)) == 5
    for p in from_file:  # same message, same spreadsheet row, in both
        assert any(f"row {p.row}, column {p.column!r}" in line and p.message in line for line in info.value.problems)


def test_images_table_and_mil_targets_use_the_same_engine_and_rows(tmp_path):
    (tmp_path / "img.nii.gz").write_bytes(b"")
    table = pd.DataFrame({"patient_id": ["P1", "P2"], "image_path": ["img.nii.gz", "img.nii.gz"],
                          "mask_path": ["img.nii.gz", "nowhere.nii.gz"], "modality": ["PET/CT", "CT"]})
    table.to_csv(tmp_path / "radiology_images.csv", index=False)
    from lnmkit.radiology import read_images_table

    frame = table.copy()
    frame.attrs["root"] = str(tmp_path)
    for given in (tmp_path / "radiology_images.csv", frame):
        with pytest.raises(RadiologyImageError) as info:
            read_images_table(given)
        text = str(info.value)
        assert "row 2, column 'modality', value 'PET/CT': must be one of 'CT', 'MRI', 'PET', 'PET-CT'" in text
        assert "row 3, column 'mask_path', value 'nowhere.nii.gz': file not found" in text
    from lnmkit.mil._targets import encode_targets, lnm_labels

    y = pd.DataFrame({"pn_status": ["pN0", "N1", "pN+"], "otc": [1, 0, np.nan]},
                     index=pd.Index(["P1", "P2", "P3"], name="patient_id"))
    with pytest.raises(MILInputError, match=r"outcomes, row 3, column 'pn_status', value 'N1': must be one of "
                                            r"'pN0', 'pN\+' \(patient_id 'P2'\)"):
        lnm_labels(y)
    y.loc["P2", "pn_status"] = "pN+"
    y["otc"] = [1, 0, 2]
    with pytest.raises(MILInputError, match=r"row 4, column 'otc', value '2': must be one of 0, 1"):
        encode_targets(y, list(y.index), ("lnm", "otc"))
    y["otc"] = [1, np.nan, np.nan]
    np.testing.assert_array_equal(encode_targets(y, list(y.index), ("lnm", "otc"))["lnm"], [0, 1, 1])
