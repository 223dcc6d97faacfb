"""NodeFeatures: every counting rule, checked on hand-made node tables."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from lnmkit.exceptions import NodeTableError, NotFittedError, RadiologyWarning
from lnmkit.radiology import N_CATEGORY_PRESETS, SIZE_PRESETS, NodeFeatures


def nodes_of(rows, **defaults):
    """A node table from (patient_id, node_id, **columns) dicts with CT defaults."""
    base = {"modality": "CT", "station": "7"}
    base.update(defaults)
    return pd.DataFrame([{**base, **row} for row in rows])


def one_patient(short_axes, stations=None, **columns):
    n = len(short_axes)
    return pd.DataFrame({
        "patient_id": ["P1"] * n, "node_id": [f"n{i}" for i in range(n)], "modality": ["CT"] * n,
        "station": stations if stations is not None else ["7"] * n, "short_axis_mm": short_axes, **columns,
    })


def test_default_gastric_size_threshold_is_8mm_inclusive():
    X = NodeFeatures().fit_transform(one_patient([7.9, 8.0, 12.0, 3.0]))
    assert X.loc["P1", "rad_n_nodes"] == 4
    assert X.loc["P1", "rad_n_size_positive"] == 2
    assert X.loc["P1", "rad_n_suspicious"] == 2


def test_general_cancer_uses_10mm():
    X = NodeFeatures("general").fit_transform(one_patient([8.0, 9.9, 10.0]))
    assert X.loc["P1", "rad_n_size_positive"] == 1
    assert SIZE_PRESETS["general"]["default"] == 10.0


def test_single_number_size_criterion():
    X = NodeFeatures(size_criteria=6).fit_transform(one_patient([5.9, 6.0, 7.0]))
    assert X.loc["P1", "rad_n_size_positive"] == 2


def test_station_specific_size_criteria_dict():
    nodes = one_patient([5.0, 5.0, 9.0, 10.0], stations=["4sb", "7", "7", 7.0])
    X = NodeFeatures(size_criteria={"4SB": 5, "default": 10}).fit_transform(nodes)
    # 4sb (5 mm, key matched case-insensitively) and the 10 mm node at station 7 (float 7.0 read as "7").
    assert X.loc["P1", "rad_n_size_positive"] == 2
    # Without "default", the cancer preset's default (8 mm) applies elsewhere.
    X = NodeFeatures(size_criteria={"4sb": 5}).fit_transform(nodes)
    assert X.loc["P1", "rad_n_size_positive"] == 3


def test_perigastric_preset_5mm_at_stations_1_to_6():
    nodes = one_patient([5.0, 5.0, 5.0, 7.9, 8.0], stations=["1", "4sb", "7", "11p", "11p"])
    X = NodeFeatures(size_criteria="gastric_perigastric").fit_transform(nodes)
    assert X.loc["P1", "rad_n_size_positive"] == 3
    assert X.loc["P1", "rad_n_stations_suspicious"] == 3


def test_suv_threshold_is_strictly_above_and_ignores_missing():
    nodes = one_patient([4.0] * 4, suv_max=[2.5, 2.6, np.nan, 10.0], modality=["PET-CT"] * 4)
    X = NodeFeatures().fit_transform(nodes)
    assert X.loc["P1", "rad_n_suv_positive"] == 2
    assert X.loc["P1", "rad_suv_max"] == 10.0
    assert X.loc["P1", "rad_n_suspicious"] == 0  # SUV is not a suspicious finding by default
    X = NodeFeatures(suv_threshold=5.0, suspicious_features=("suv",)).fit_transform(nodes)
    assert X.loc["P1", "rad_n_suv_positive"] == 1
    assert X.loc["P1", "rad_n_suspicious"] == 1


def test_suspicious_is_size_or_morphology_and_configurable():
    nodes = one_patient(
        [4.0, 4.0, 4.0, 4.0, 4.0, 9.0],
        stations=["1", "3", "3", "5", "6", "7"],
        necrosis=[1, 0, 0, 0, np.nan, 0],
        irregular_margin=[0, 1, 0, 0, 0, 0],
        fatty_hilum=[1, 1, 0, 1, 1, 1],
        enhancement=["homogeneous", "homogeneous", "homogeneous", "heterogeneous", None, "homogeneous"],
    )
    X = NodeFeatures().fit_transform(nodes)
    # necrosis, irregular margin, lost hilum, size: 4; heterogeneous enhancement is off by default.
    assert X.loc["P1", "rad_n_suspicious"] == 4
    assert X.loc["P1", "rad_n_stations"] == 5
    assert X.loc["P1", "rad_n_stations_suspicious"] == 3  # stations 1, 3, 7
    X = NodeFeatures(suspicious_features=()).fit_transform(nodes)
    assert X.loc["P1", "rad_n_suspicious"] == 1
    X = NodeFeatures(suspicious_features=("heterogeneous_enhancement",)).fit_transform(nodes)
    assert X.loc["P1", "rad_n_suspicious"] == 2
    for column in ("rad_any_necrosis", "rad_any_irregular_margin", "rad_any_lost_hilum",
                   "rad_any_heterogeneous_enhancement"):
        assert X.loc["P1", column] == 1.0


def test_morphology_aggregates():
    nodes = one_patient([6.0, 10.0, 8.0], long_axis_mm=[12.0, 11.0, np.nan], necrosis=[0, 0, 0])
    X = NodeFeatures().fit_transform(nodes)
    assert X.loc["P1", "rad_short_axis_max_mm"] == 10.0
    assert X.loc["P1", "rad_short_axis_mean_mm"] == pytest.approx(8.0)
    assert X.loc["P1", "rad_long_axis_max_mm"] == 12.0
    assert X.loc["P1", "rad_axis_ratio_max"] == pytest.approx(10.0 / 11.0)
    assert X.loc["P1", "rad_any_necrosis"] == 0.0
    assert np.isnan(X.loc["P1", "rad_any_irregular_margin"])  # never assessed


def test_nan_measurements_not_counted_and_excluded_from_means():
    nodes = one_patient([np.nan, 12.0, 4.0])
    X = NodeFeatures().fit_transform(nodes)
    assert X.loc["P1", "rad_n_nodes"] == 3
    assert X.loc["P1", "rad_n_size_positive"] == 1
    assert X.loc["P1", "rad_n_size_missing"] == 1
    assert X.loc["P1", "rad_short_axis_mean_mm"] == pytest.approx(8.0)
    X = NodeFeatures().fit_transform(one_patient([np.nan]))
    assert np.isnan(X.loc["P1", "rad_short_axis_max_mm"]) and X.loc["P1", "rad_n_size_positive"] == 0
    assert X.loc["P1", "rad_radiology_missing"] == 0


def test_patients_without_nodes_get_zeros_nan_and_indicator():
    nodes = nodes_of([{"patient_id": "P2", "node_id": "a", "short_axis_mm": 9.0}])
    nf = NodeFeatures()
    X = nf.fit_transform(nodes, patient_ids=["P3", "P2", "P1"])
    assert list(X.index) == ["P3", "P2", "P1"] and X.index.name == "patient_id"
    assert list(X.columns) == list(nf.get_feature_names_out())
    assert X.loc["P3", "rad_radiology_missing"] == 1 and X.loc["P2", "rad_radiology_missing"] == 0
    counts = [c for c in X.columns if c.startswith("rad_n_") and "category" not in c]
    assert (X.loc[["P1", "P3"], counts] == 0).all().all()
    for column in counts + ["rad_radiology_missing"]:
        assert X[column].dtype == np.int64
    assert X.loc[["P1", "P3"], ["rad_short_axis_max_mm", "rad_suv_max", "rad_any_necrosis"]].isna().all().all()
    assert X.loc[["P1", "P3"], "rad_n_category"].isna().all()
    assert X.loc[["P1", "P3"], "rad_n_category_code"].isna().all()
    X = NodeFeatures(absent_as_n0=True).fit_transform(nodes, patient_ids=["P1", "P2"])
    assert X.loc["P1", "rad_n_category"] == "cN0" and X.loc["P1", "rad_radiology_missing"] == 1


def test_patient_list_from_dataframe_and_cohort_like_object():
    clinical = pd.DataFrame({"age": [60, 70]}, index=pd.Index(["P1", "P9"], name="patient_id"))
    nodes = nodes_of([{"patient_id": "P1", "node_id": "a", "short_axis_mm": 9.0}])
    X = NodeFeatures().fit_transform(nodes, patient_ids=clinical)
    assert list(X.index) == ["P1", "P9"]

    class FakeCohort:
        radiology_nodes = nodes
        root = "."

    FakeCohort.clinical = clinical
    X2 = NodeFeatures().fit(FakeCohort).transform(FakeCohort)
    pd.testing.assert_frame_equal(X, X2)


def test_nodes_of_unknown_patients_warn():
    nodes = nodes_of([{"patient_id": "P1", "node_id": "a", "short_axis_mm": 9.0},
                      {"patient_id": "PX", "node_id": "a", "short_axis_mm": 9.0}])
    with pytest.warns(RadiologyWarning, match="PX"):
        X = NodeFeatures().fit_transform(nodes, patient_ids=["P1"])
    assert list(X.index) == ["P1"]


@pytest.mark.parametrize("n_suspicious, label, code", [
    (0, "cN0", 0), (1, "cN1", 1), (2, "cN1", 1), (3, "cN2", 2), (6, "cN2", 2), (7, "cN3", 3), (12, "cN3", 3),
])
def test_gastric_n_category_boundaries(n_suspicious, label, code):
    nodes = one_patient([12.0] * n_suspicious + [3.0])
    X = NodeFeatures().fit_transform(nodes)
    assert X.loc["P1", "rad_n_suspicious"] == n_suspicious
    assert X.loc["P1", "rad_n_category"] == label
    assert X.loc["P1", "rad_n_category_code"] == code
    cat = X["rad_n_category"].dtype
    assert isinstance(cat, pd.CategoricalDtype) and cat.ordered
    assert list(cat.categories) == ["cN0", "cN1", "cN2", "cN3"]


def test_custom_and_general_n_category():
    nodes = one_patient([12.0] * 4)
    X = NodeFeatures("general").fit_transform(nodes)
    assert X.loc["P1", "rad_n_category"] == "cN2"  # general: N2 >= 4
    assert N_CATEGORY_PRESETS["general"] == {"cN0": 0, "cN1": 1, "cN2": 4}
    X = NodeFeatures(n_category_thresholds={"N0": 0, "N1": 1, "N2": 5}).fit_transform(nodes)
    assert X.loc["P1", "rad_n_category"] == "N1" and X.loc["P1", "rad_n_category_code"] == 1
    assert X["rad_n_category"].cat.categories.tolist() == ["N0", "N1", "N2"]


@pytest.mark.parametrize("params", [
    {}, {"include_categorical": False}, {"cancer": "general", "suspicious_features": ("suv",)},
    {"size_criteria": "gastric_perigastric", "modalities": ("CT",), "absent_as_n0": True},
])
def test_describe_covers_every_output_column(params):
    nodes = one_patient([9.0, 4.0])
    nf = NodeFeatures(**params)
    X = nf.fit_transform(nodes, patient_ids=["P1", "P2"])
    table = nf.describe()
    assert list(table.columns) == ["column", "meaning", "unit", "rule"]
    assert list(table["column"]) == list(X.columns)
    assert table[["meaning", "unit", "rule"]].map(lambda s: isinstance(s, str) and len(s) > 0).all().all()
    if params.get("size_criteria") == "gastric_perigastric":
        rule = table.set_index("column").loc["rad_n_size_positive", "rule"]
        assert "5 mm" in rule and "4sb" in rule and "8 mm" in rule


def test_missing_required_column_is_named():
    nodes = one_patient([9.0]).drop(columns="short_axis_mm")
    with pytest.raises(NodeTableError, match="row 1, column 'short_axis_mm': required column missing"):
        NodeFeatures().fit(nodes)


@pytest.mark.parametrize("column, value, message", [
    ("modality", "XRAY", r"column 'modality', value 'XRAY': must be one of 'CT', 'MRI'"),
    ("necrosis", "maybe", r"column 'necrosis', value 'maybe': is not a number \(allowed: 0, 1\)"),
    ("short_axis_mm", "big", r"column 'short_axis_mm', value 'big': is not a number"),
    ("short_axis_mm", -3.0, r"column 'short_axis_mm', value '-3': must be > 0 mm"),
    ("enhancement", "rim", r"column 'enhancement', value 'rim': must be one of 'homogeneous'"),
    ("mask_label", 1.5, r"column 'mask_label', value '1.5': is not a whole number"),
])
def test_bad_values_name_row_column_and_value(column, value, message):
    nodes = one_patient([9.0, 4.0])
    nodes[column] = pd.Series([None, value], dtype=object)
    with pytest.raises(NodeTableError, match=message) as info:
        NodeFeatures().fit(nodes)
    # the schema engine's message, rows as a spreadsheet of the table shows them (header = row 1)
    assert "error: radiology_nodes.csv, row 3, column" in str(info.value)


def test_all_problems_reported_together():
    nodes = one_patient([9.0, 12.0], long_axis_mm=[5.0, 13.0], modality=["CT", "SPECT"])
    with pytest.raises(NodeTableError) as info:
        NodeFeatures().fit(nodes)
    assert len(info.value.problems) == 2
    assert "row 2, column 'short_axis_mm', value '9': short_axis_mm cannot exceed long_axis_mm" in str(info.value)


def test_duplicate_node_id_within_patient():
    nodes = one_patient([9.0, 4.0])
    nodes["node_id"] = "n1"
    with pytest.raises(NodeTableError, match=r"row 3, column 'node_id', value 'n1': duplicate \(patient_id, node_id\)"):
        NodeFeatures().fit(nodes)


@pytest.mark.parametrize("params, message", [
    ({"cancer": "lung"}, "cancer must be one of"),
    ({"size_criteria": "tiny"}, "size_criteria must be one of"),
    ({"size_criteria": {"7": -1}}, r"size_criteria\['7'\] must be a positive number"),
    ({"n_category_thresholds": {"cN1": 1}}, "needs a category starting at 0"),
    ({"suv_threshold": -1}, "suv_threshold must be"),
    ({"suspicious_features": ("size",)}, "suspicious_features must be a subset"),
    ({"modalities": ("XR",)}, "modalities must be None"),
])
def test_bad_parameters_raise_in_fit(params, message):
    nf = NodeFeatures(**params)  # __init__ stores only
    with pytest.raises(ValueError, match=message):
        nf.fit(one_patient([9.0]))


def test_not_fitted():
    with pytest.raises(NotFittedError, match="call fit"):
        NodeFeatures().transform(one_patient([9.0]))


def test_modalities_filter():
    nodes = pd.concat([one_patient([9.0]), one_patient([9.0]).assign(modality="PET-CT", node_id="p0")])
    X = NodeFeatures(modalities=("CT",)).fit_transform(nodes)
    assert X.loc["P1", "rad_n_nodes"] == 1
    X = NodeFeatures(modalities="PET/CT").fit_transform(nodes, patient_ids=["P1"])
    assert X.loc["P1", "rad_n_nodes"] == 1


def test_sklearn_contract_clone_set_output_and_pipeline():
    nf = NodeFeatures("general", size_criteria={"1": 5}, include_categorical=False)
    assert clone(nf).get_params() == nf.get_params()
    nodes = pd.concat([one_patient([9.0, 12.0]), one_patient([4.0]).assign(patient_id="P2")])
    out = nf.set_output(transform="pandas").fit_transform(nodes, patient_ids=["P1", "P2", "P3"])
    assert list(out.index) == ["P1", "P2", "P3"]
    assert all(np.issubdtype(t, np.number) for t in out.dtypes)
    pipe = Pipeline([("nodes", NodeFeatures(include_categorical=False)),
                     ("impute", SimpleImputer(keep_empty_features=True)), ("model", LogisticRegression())])
    y = np.array([1, 0, 0])
    pipe.fit(nodes, y, nodes__patient_ids=["P1", "P2", "P3"])
    assert pipe.predict_proba(nodes).shape == (2, 2)  # transform without patient_ids: patients with nodes


def test_output_joins_onto_clinical_without_glue():
    clinical = pd.DataFrame({"age": [61, 72, 55], "sex": ["M", "F", "M"]},
                            index=pd.Index(["P1", "P2", "P3"], name="patient_id"))
    nodes = pd.concat([one_patient([9.0, 12.0]), one_patient([4.0]).assign(patient_id="P3")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fused = clinical.join(NodeFeatures().fit_transform(nodes, patient_ids=clinical.index))
    assert fused.shape == (3, 2 + len(NodeFeatures().get_feature_names_out()))
    assert fused.loc["P2", "rad_radiology_missing"] == 1
    assert fused.loc["P1", "rad_n_category"] == "cN1"


def test_synthetic_cohort_nodes(synthetic_cohort_dir):
    from lnmkit.cohort import Cohort

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cohort = Cohort.from_dir(synthetic_cohort_dir)
    X = NodeFeatures().fit_transform(cohort.radiology_nodes, patient_ids=cohort.clinical.index)
    assert list(X.index) == list(cohort.clinical.index)
    with_nodes = set(cohort.radiology_nodes["patient_id"].astype(str))
    assert set(X.index[X["rad_radiology_missing"] == 0]) == with_nodes
    per_patient = cohort.radiology_nodes.groupby("patient_id").size()
    assert (X.loc[per_patient.index, "rad_n_nodes"].to_numpy() == per_patient.to_numpy()).all()
    pd.testing.assert_frame_equal(NodeFeatures().fit(cohort).transform(cohort), X)


def test_station_column_is_optional():
    nodes = one_patient([9.0, 4.0]).drop(columns="station")
    X = NodeFeatures(size_criteria={"4sb": 3}).fit_transform(nodes)
    assert X.loc["P1", "rad_n_stations"] == 0 and X.loc["P1", "rad_n_size_positive"] == 1


def test_cli_on_synthetic_cohort(synthetic_cohort_dir, tmp_path):
    from typer.testing import CliRunner

    from lnmkit.cli import app

    out = tmp_path / "radiology.csv"
    result = CliRunner().invoke(app, ["radiology", str(synthetic_cohort_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, index_col="patient_id", dtype={"patient_id": str})
    clinical = pd.read_csv(synthetic_cohort_dir / "clinical.csv", index_col="patient_id", dtype={"patient_id": str})
    assert table.index.tolist() == clinical.index.tolist()
    assert "N category:" in result.output
    fused = clinical.join(table)
    assert fused["rad_n_nodes"].notna().all()
