"""Loading and validating cohort tables: lnmkit.Cohort, validate_cohort, `lnmkit validate`."""

from __future__ import annotations

import csv
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import lnmkit
from lnmkit.cli import app
from lnmkit.cohort import Cohort, Problem, problems_frame, validate_cohort
from lnmkit.exceptions import CohortValidationError, CohortValidationWarning

CLINICAL = """\
patient_id,age,sex,tumour_site,ct_stage,grade,lauren_type,tumour_size_mm,cea_ng_ml,ca19_9_u_ml,lvi,pni,neoadjuvant,hospital,bmi
007,63,M,antrum,cT3,G2,intestinal,35.5,2.1,12,1,0,0,01,24.5
P002,71,F,body,cT2,G3,diffuse,,4.0,,0,1,1,02,31
P003,55,M,cardia,cT4a,GX,mixed,50,,8.5,,,0,01,
P004,48,F,,cT1b,G1,,12,1.2,3,0,0,0,03,22.1
"""
OUTCOMES = """\
patient_id,pn_status,pn_category,positive_nodes,examined_nodes,otc,os_months,os_event,rfs_months,rfs_event
007,pN+,pN1,2,25,,40.5,1,20.0,1
P002,pN0,pN0,0,18,1,60,0,60,0
P003,pN0,pN0,0,30,0,12.25,0,10,1
P004,pN+,pN3a,9,31,,7,1,5.5,1
"""
NODES = """\
patient_id,node_id,modality,station,short_axis_mm,long_axis_mm,suv_max,fatty_hilum,irregular_margin,necrosis,enhancement,mask_label
007,n1,CT,4sb,8.5,12,,0,1,0,heterogeneous,1
007,n2,PET-CT,7,11,14,4.2,0,1,1,heterogeneous,
P002,n1,CT,6,4,6,,1,0,0,homogeneous,
P004,n1,MRI,11p,9,9,,0,0,0,homogeneous,2
"""
SLIDES = """\
slide_id,patient_id,path,mpp,stain,block
S007-A,007,slides/S007-A.svs,,H&E,A1
S002-A,P002,slides/S002-A.tiff,0.5,H&E,
"""


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory):
    """A small valid cohort: 4 patients, outcomes, 4 radiology nodes, 2 tiny slides."""
    from lnmkit.synth import write_slide

    root = tmp_path_factory.mktemp("good_cohort")
    for name, text in [("clinical", CLINICAL), ("outcomes", OUTCOMES), ("radiology_nodes", NODES),
                       ("slides", SLIDES)]:
        (root / f"{name}.csv").write_text(text, encoding="utf-8")
    image = np.full((512, 512, 3), 235, np.uint8)
    image[96:416, 128:384] = (170, 80, 150)
    write_slide(root / "slides" / "S007-A.svs", image, 0.25)
    write_slide(root / "slides" / "S002-A.tiff", image, 0.5, layout="tiff")
    return root


@pytest.fixture()
def cohort_copy(good_dir, tmp_path):
    """A private copy of the good cohort that a test may break."""
    return Path(shutil.copytree(good_dir, tmp_path / "cohort"))


def set_cell(path, row, column, value):
    """Set one cell; ``row`` counts as a spreadsheet does (the header is row 1)."""
    with open(path, newline="", encoding="utf-8") as f:
        records = list(csv.reader(f))
    records[row - 1][records[0].index(column)] = value
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(records)


def drop_column(path, column):
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.drop(columns=[column]).to_csv(path, index=False)


def load_quietly(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CohortValidationWarning)
        return Cohort.from_dir(path)


def find(problems, file, row, column):
    hits = [p for p in problems if Path(p.file).name == file and p.row == row and p.column == column]
    assert hits, f"no problem at {file} row {row} column {column}; got:\n" + "\n".join(map(str, problems))
    return hits


# -- the good cohort -------------------------------------------------------------------


def test_good_cohort_loads_without_problems(good_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cohort = Cohort.from_dir(good_dir)
    assert cohort.problems == []
    assert validate_cohort(good_dir) == []
    assert cohort.root == good_dir
    assert lnmkit.Cohort is Cohort


def test_tables_are_typed_and_indexed(good_dir):
    cohort = Cohort.from_dir(good_dir)
    clinical, outcomes = cohort.clinical, cohort.outcomes
    assert clinical.index.name == "patient_id" and outcomes.index.name == "patient_id"
    # ids are text: "007" is not the number 7
    assert list(clinical.index) == ["007", "P002", "P003", "P004"]
    assert all(isinstance(i, str) for i in clinical.index)
    assert clinical["sex"].dtype == "category"
    assert list(clinical["sex"].cat.categories) == ["M", "F"]
    assert clinical["age"].dtype == "float64"
    assert clinical["lvi"].dtype == "Int64" and clinical.loc["P003", "lvi"] is pd.NA
    assert np.isnan(clinical.loc["P002", "tumour_size_mm"])
    assert outcomes["positive_nodes"].dtype == "Int64"
    assert outcomes.loc["P004", "positive_nodes"] == 9
    nodes = cohort.radiology_nodes
    assert list(nodes["patient_id"]) == ["007", "007", "P002", "P004"]
    assert nodes["modality"].dtype == "category" and nodes["mask_label"].dtype == "Int64"


def test_extra_clinical_columns_are_kept(good_dir):
    clinical = Cohort.from_dir(good_dir).clinical
    # codes with leading zeros stay text, measurements become numbers
    assert list(clinical["hospital"]) == ["01", "02", "01", "03"]
    assert clinical["bmi"].dtype == "float64"
    assert clinical.loc["P002", "bmi"] == pytest.approx(31.0)


def test_slides_have_absolute_paths(good_dir):
    slides = Cohort.from_dir(good_dir).slides
    assert slides.index.name == "slide_id"
    assert list(slides.index) == ["S007-A", "S002-A"]
    assert list(slides.columns[:5]) == ["patient_id", "path", "mpp", "stain", "block"]
    for path in slides["path"]:
        assert Path(path).is_absolute() and Path(path).is_file()
    assert slides.loc["S007-A", "path"] == str(good_dir / "slides" / "S007-A.svs")
    assert np.isnan(slides.loc["S007-A", "mpp"]) and slides.loc["S002-A", "mpp"] == pytest.approx(0.5)


def test_from_files_matches_from_dir(good_dir):
    a = Cohort.from_dir(good_dir)
    b = Cohort.from_files(clinical=good_dir / "clinical.csv", outcomes=good_dir / "outcomes.csv",
                          radiology_nodes=good_dir / "radiology_nodes.csv", slides=good_dir / "slides.csv")
    for name in ("clinical", "outcomes", "radiology_nodes", "slides"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert b.root == good_dir


def test_only_clinical_gives_empty_typed_tables(good_dir, tmp_path):
    shutil.copy(good_dir / "clinical.csv", tmp_path / "clinical.csv")
    cohort = Cohort.from_dir(tmp_path)
    assert len(cohort.outcomes) == 0 and "os_months" in cohort.outcomes
    assert cohort.outcomes.index.name == "patient_id"
    assert len(cohort.slides) == 0 and cohort.slides.index.name == "slide_id"
    assert list(cohort.files) == ["clinical"]
    with pytest.raises(CohortValidationError, match="P002.*no outcome row"):
        cohort.survival("os", patients=cohort.patients)


def test_survival_is_a_sksurv_target(good_dir):
    from sksurv.util import check_y_survival

    cohort = Cohort.from_dir(good_dir)
    y = cohort.survival("os")
    assert y.dtype.names == ("event", "time")
    assert y["event"].dtype == bool and y["time"].dtype == float
    np.testing.assert_array_equal(y["event"], [True, False, False, True])
    np.testing.assert_allclose(y["time"], [40.5, 60.0, 12.25, 7.0])
    check_y_survival(y)
    rfs = cohort.survival("rfs", patients=["P004", "007"])
    np.testing.assert_allclose(rfs["time"], [5.5, 20.0])
    assert cohort.endpoints() == ["os", "rfs"]
    with pytest.raises(ValueError, match="endpoint must be one of 'os', 'rfs'; got 'dss'"):
        cohort.survival("dss")


def test_survival_names_patients_without_outcome(cohort_copy):
    set_cell(cohort_copy / "outcomes.csv", 4, "os_months", "")
    set_cell(cohort_copy / "outcomes.csv", 4, "os_event", "")
    cohort = Cohort.from_dir(cohort_copy)
    with pytest.raises(CohortValidationError) as info:
        cohort.survival("os")
    problems = info.value.problems
    assert {(p.row, p.column) for p in problems} == {(4, "os_months"), (4, "os_event")}
    assert "patient 'P003' has no os_months" in str(info.value)
    assert len(cohort.survival("rfs")) == 4
    with pytest.raises(CohortValidationError, match="'P999'.*no outcome row"):
        cohort.survival("rfs", patients=["007", "P999"])


def test_survival_of_an_extra_endpoint_is_checked(cohort_copy):
    path = cohort_copy / "outcomes.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["dss_months"], frame["dss_event"] = ["10", "20", "30", "40"], ["0", "1", "2", "0"]
    frame.to_csv(path, index=False)
    cohort = load_quietly(cohort_copy)
    assert cohort.endpoints() == ["os", "rfs", "dss"]
    with pytest.raises(CohortValidationError, match="'P003': the event must be 0 or 1 and the time > 0; got 2"):
        cohort.survival("dss")
    np.testing.assert_array_equal(cohort.survival("dss", patients=["007", "P002"])["event"], [False, True])


def test_event_column_missing_from_the_header(cohort_copy):
    drop_column(cohort_copy / "outcomes.csv", "os_event")
    (problem,) = find(validate_cohort(cohort_copy), "outcomes.csv", 1, "os_event")
    assert problem.message == "column missing; required because column os_months is given"


def test_overview_summary_and_reprs(good_dir):
    cohort = Cohort.from_dir(good_dir)
    s = cohort.overview()
    assert s["patients"] == 4 and s["slides"] == 2 and s["node_rows"] == 4
    assert s["patients_with_nodes"] == 3 and s["patients_with_slides"] == 2
    assert s["pn_positive"] == 2 and s["pn_positive_rate"] == pytest.approx(0.5)
    assert s["os_events"] == 2 and s["rfs_events"] == 3 and s["otc_positive_pn0"] == 1
    summary = cohort.summary()
    assert summary.loc[("clinical", "tumour_size_mm"), "n_missing"] == 1
    assert summary.loc[("clinical", "lvi"), "missing_fraction"] == pytest.approx(0.25)
    assert summary.loc[("outcomes", "otc"), "n_missing"] == 2
    assert repr(cohort).startswith("<Cohort: 4 patients, 2 slides, 4 node rows, pN+ 50% (2/4), OS events 2")
    page = cohort._repr_html_()
    assert "pn_positive_rate" in page and "50.0%" in page and "tumour_size_mm" in page


def test_subset_restricts_every_table(good_dir):
    part = Cohort.from_dir(good_dir).subset(["P002", "007"])
    assert list(part.clinical.index) == ["P002", "007"]
    assert set(part.outcomes.index) == {"007", "P002"}
    assert set(part.radiology_nodes["patient_id"]) == {"007", "P002"}
    assert len(part.slides) == 2
    with pytest.raises(KeyError, match="P999"):
        part.subset(["P999"])


# -- every validation rule, each on a broken copy --------------------------------------

BROKEN = [
    # file, row, column, bad value, expected message fragment
    ("clinical.csv", 3, "age", "abc", "is not a number"),
    ("clinical.csv", 3, "age", "130", "must be <= 120 years"),
    ("clinical.csv", 2, "cea_ng_ml", "4,5", "use a dot as the decimal separator"),
    ("clinical.csv", 2, "sex", "X", "must be one of 'M', 'F'"),
    ("clinical.csv", 2, "sex", "m", "did you mean 'M'?"),
    ("clinical.csv", 4, "grade", "G5", "must be one of"),
    ("clinical.csv", 4, "lvi", "2", "must be one of 0, 1"),
    ("clinical.csv", 5, "neoadjuvant", "yes", "is not a number (allowed: 0, 1)"),
    ("clinical.csv", 3, "patient_id", "007", "duplicate patient_id; first used in row 2"),
    ("outcomes.csv", 2, "positive_nodes", "1.5", "is not a whole number"),
    ("outcomes.csv", 3, "os_months", "-2", "must be > 0 months"),
    ("outcomes.csv", 3, "rfs_months", "0", "must be > 0 months"),
    ("outcomes.csv", 2, "os_event", "2", "must be one of 0, 1"),
    ("outcomes.csv", 2, "rfs_event", "", "required because rfs_months is given"),
    ("outcomes.csv", 5, "positive_nodes", "40", "positive_nodes cannot exceed examined_nodes"),
    ("outcomes.csv", 3, "positive_nodes", "2", "pN0 means no metastatic node"),
    ("outcomes.csv", 3, "pn_category", "pN2", "pn_category disagrees with pn_status"),
    ("outcomes.csv", 4, "patient_id", "P999", "'P999' is not in clinical.csv"),
    ("outcomes.csv", 4, "patient_id", "P002", "duplicate patient_id"),
    ("radiology_nodes.csv", 2, "short_axis_mm", "13", "short_axis_mm cannot exceed long_axis_mm"),
    ("radiology_nodes.csv", 3, "node_id", "n1", "duplicate (patient_id, node_id) = ('007', 'n1')"),
    ("radiology_nodes.csv", 4, "modality", "XR", "must be one of 'CT', 'MRI', 'PET-CT', 'US'"),
    ("radiology_nodes.csv", 5, "mask_label", "0", "must be >= 1"),
    ("slides.csv", 3, "patient_id", "P999", "'P999' is not in clinical.csv"),
    ("slides.csv", 2, "path", "slides/gone.svs", "file not found"),
    ("slides.csv", 3, "slide_id", "S007-A", "duplicate slide_id; first used in row 2"),
    ("slides.csv", 2, "slide_id", "a/b", "does not match the pattern"),
    ("slides.csv", 3, "mpp", "-0.5", "must be > 0"),
]


@pytest.mark.parametrize("file,row,column,value,fragment", BROKEN,
                         ids=[f"{b[0]}-{b[2]}-{b[3]}" for b in BROKEN])
def test_each_broken_cell_is_reported(cohort_copy, file, row, column, value, fragment):
    set_cell(cohort_copy / file, row, column, value)
    with pytest.raises(CohortValidationError) as info:
        load_quietly(cohort_copy)
    problem = next((p for p in find(info.value.problems, file, row, column) if fragment in p.message), None)
    assert problem is not None, "\n".join(map(str, info.value.problems))
    assert problem.severity == "error"
    text = str(problem)
    assert f"row {row}" in text and f"column {column!r}" in text
    assert (f"value {value!r}" if value else "value (empty)") in text
    assert problem.value == (value or None)
    assert validate_cohort(cohort_copy) == info.value.problems


def test_empty_required_cell(cohort_copy):
    set_cell(cohort_copy / "slides.csv", 3, "path", "")
    (problem,) = find(validate_cohort(cohort_copy), "slides.csv", 3, "path")
    assert problem.message == "required value is empty" and problem.value is None


def test_missing_required_column(cohort_copy):
    drop_column(cohort_copy / "clinical.csv", "sex")
    (problem,) = find(validate_cohort(cohort_copy), "clinical.csv", 1, "sex")
    assert "required column missing" in problem.message and problem.is_error


def test_misspelt_required_column_gets_a_hint(cohort_copy):
    text = (cohort_copy / "slides.csv").read_text().replace("slide_id,", "Slide_ID,", 1)
    (cohort_copy / "slides.csv").write_text(text)
    (problem,) = find(validate_cohort(cohort_copy), "slides.csv", 1, "slide_id")
    assert "found 'Slide_ID': rename it" in problem.message


def test_missing_clinical_file(cohort_copy):
    (cohort_copy / "clinical.csv").unlink()
    problems = validate_cohort(cohort_copy)
    assert [p.message for p in problems if Path(p.file).name == "clinical.csv"] == ["file not found"]
    with pytest.raises(CohortValidationError, match="clinical.csv: file not found"):
        Cohort.from_dir(cohort_copy)
    with pytest.raises(CohortValidationError, match="cohort folder not found"):
        Cohort.from_dir(cohort_copy / "nowhere")


def test_slide_path_naming_a_folder_is_an_error(cohort_copy):
    set_cell(cohort_copy / "slides.csv", 2, "path", "slides")
    (problem,) = find(validate_cohort(cohort_copy), "slides.csv", 2, "path")
    assert problem.value == "slides" and "is a folder, not a file" in problem.message
    with pytest.raises(CohortValidationError, match=r"slides\.csv, row 2, column 'path', value 'slides'"):
        Cohort.from_dir(cohort_copy)


def test_tables_only_without_the_slide_files(cohort_copy):
    shutil.rmtree(cohort_copy / "slides")
    with pytest.raises(CohortValidationError, match="file not found"):
        load_quietly(cohort_copy)
    cohort = Cohort.from_dir(cohort_copy, check_files=False)
    assert cohort.problems == []
    assert cohort.slides.loc["S007-A", "path"] == str(cohort_copy / "slides" / "S007-A.svs")
    same = Cohort.from_files(cohort_copy / "clinical.csv", slides=cohort_copy / "slides.csv", check_files=False)
    assert list(same.slides.index) == ["S007-A", "S002-A"]
    # every other rule still applies
    set_cell(cohort_copy / "slides.csv", 3, "mpp", "-0.5")
    with pytest.raises(CohortValidationError, match="must be > 0"):
        Cohort.from_dir(cohort_copy, check_files=False)


def test_a_file_given_as_the_cohort_folder(cohort_copy):
    with pytest.raises(CohortValidationError, match=r"clinical\.csv: is a file, not a cohort folder"):
        Cohort.from_dir(cohort_copy / "clinical.csv")


def test_all_errors_are_reported_together(cohort_copy):
    set_cell(cohort_copy / "clinical.csv", 2, "age", "-1")
    set_cell(cohort_copy / "clinical.csv", 4, "sex", "unknown")
    set_cell(cohort_copy / "outcomes.csv", 3, "os_event", "2")
    set_cell(cohort_copy / "outcomes.csv", 5, "os_months", "0")
    set_cell(cohort_copy / "radiology_nodes.csv", 4, "long_axis_mm", "2")
    set_cell(cohort_copy / "slides.csv", 3, "path", "slides/missing.tiff")
    (cohort_copy / "slides" / "S007-A.svs").unlink()
    with pytest.raises(CohortValidationError) as info:
        load_quietly(cohort_copy)
    problems = info.value.problems
    expected = [("clinical.csv", 2, "age"), ("clinical.csv", 4, "sex"), ("outcomes.csv", 3, "os_event"),
                ("outcomes.csv", 5, "os_months"), ("radiology_nodes.csv", 4, "short_axis_mm"),
                ("slides.csv", 2, "path"), ("slides.csv", 3, "path")]
    for where in expected:
        find(problems, *where)
    assert len([p for p in problems if p.is_error]) == len(expected)
    message = str(info.value)
    assert message.startswith(f"{len(problems)} problem(s) found in the cohort:")
    assert "row 2, column 'age', value '-1': must be >= 0 years" in message
    frame = problems_frame(problems)
    assert list(frame.columns) == ["severity", "file", "row", "column", "value", "message"]
    assert len(frame) == len(problems)


def test_otc_of_pn_positive_patient_is_a_warning(cohort_copy):
    set_cell(cohort_copy / "outcomes.csv", 2, "otc", "1")
    with pytest.warns(CohortValidationWarning, match="otc is only defined for pN0"):
        cohort = Cohort.from_dir(cohort_copy)
    (problem,) = cohort.problems
    assert (problem.row, problem.column, problem.value, problem.severity) == (2, "otc", "1", "warning")
    assert cohort.outcomes.loc["007", "otc"] == 1  # kept as recorded


def test_unknown_column_outside_clinical_warns(cohort_copy):
    text = (cohort_copy / "radiology_nodes.csv").read_text().replace("long_axis_mm", "long_axis", 1)
    (cohort_copy / "radiology_nodes.csv").write_text(text)
    with pytest.warns(CohortValidationWarning):
        cohort = Cohort.from_dir(cohort_copy)
    (problem,) = cohort.problems
    assert problem.column == "long_axis" and "did you mean 'long_axis_mm'?" in problem.message
    assert "long_axis" in cohort.radiology_nodes and cohort.radiology_nodes["long_axis_mm"].isna().all()


def test_row_numbers_count_blank_lines_and_bom(cohort_copy):
    lines = CLINICAL.splitlines()
    lines.insert(2, "")  # a blank spreadsheet row between the first and second patients
    lines[3] = lines[3].replace("71", "-71", 1)
    (cohort_copy / "clinical.csv").write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    (problem,) = [p for p in validate_cohort(cohort_copy) if p.is_error]
    assert (problem.row, problem.column, problem.value) == (4, "age", "-71")


def test_semicolon_separated_file_is_explained(cohort_copy):
    (cohort_copy / "clinical.csv").write_text(CLINICAL.replace(",", ";"))
    messages = " ".join(p.message for p in validate_cohort(cohort_copy))
    assert "semicolon-separated" in messages


def test_tab_separated_file_is_explained(cohort_copy):
    (cohort_copy / "slides.csv").write_text(SLIDES.replace(",", "\t"))
    problems = validate_cohort(cohort_copy)
    (problem,) = [p for p in find(problems, "slides.csv", 1, None) if "separated" in p.message]
    assert "the header looks tab-separated" in problem.message


def test_ragged_row_and_non_utf8(cohort_copy):
    path = cohort_copy / "clinical.csv"
    path.write_text(CLINICAL.replace("P004,48,F,", "P004,48,F,x,", 1))
    problems = validate_cohort(cohort_copy)
    assert any(p.row == 5 and "cells but the header names 15 columns" in p.message for p in problems)
    path.write_bytes(CLINICAL.replace("antrum", "antr\xfcm").encode("latin-1"))
    (problem,) = validate_cohort(cohort_copy)
    assert "not UTF-8" in problem.message and "CSV UTF-8" in problem.message


def test_problem_text():
    p = Problem("c/clinical.csv", 7, "age", "-3", "must be >= 0 years")
    assert str(p) == "error: c/clinical.csv, row 7, column 'age', value '-3': must be >= 0 years"
    assert str(Problem("x.csv", None, None, None, "file not found")) == "error: x.csv: file not found"


# -- command line -------------------------------------------------------------------------


def test_cli_validate_good_cohort(good_dir):
    result = CliRunner().invoke(app, ["validate", str(good_dir)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("valid: 4 patients, 2 slides, 4 node rows")


def test_cli_validate_broken_cohort(cohort_copy):
    set_cell(cohort_copy / "clinical.csv", 3, "age", "abc")
    set_cell(cohort_copy / "outcomes.csv", 2, "os_event", "2")
    set_cell(cohort_copy / "outcomes.csv", 2, "otc", "1")
    result = CliRunner().invoke(app, ["validate", str(cohort_copy)])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert f"error: {cohort_copy / 'clinical.csv'}, row 3, column 'age', value 'abc': is not a number" in lines
    assert any(line.startswith("error: ") and "row 2, column 'os_event', value '2'" in line for line in lines)
    assert any(line.startswith("warning: ") and "column 'otc'" in line for line in lines)
    assert lines[-1] == f"invalid: 2 error(s), 1 warning(s) in {cohort_copy}"


# -- the synthetic cohort generator ----------------------------------------------------------


def test_synthetic_cohort_is_valid(synthetic_cohort_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cohort = Cohort.from_dir(synthetic_cohort_dir)
    assert cohort.problems == []
    assert len(cohort.clinical) == 12
    assert set(cohort.outcomes.index) <= set(cohort.clinical.index)
    assert all(Path(p).exists() for p in cohort.slides["path"])
    assert len(cohort.survival("os")) == len(cohort.outcomes)
