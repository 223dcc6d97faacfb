"""The table schemas in data_schemas/, their loader, the validation engine and the generated docs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest

import lnmkit
from lnmkit.cohort import load_schemas, schema_dir
from lnmkit.cohort._docs import default_output, render_data_format
from lnmkit.cohort._engine import Columns, row_valid
from lnmkit.cohort._schemas import TableSchema, check_table_schema
from lnmkit.cohort._validate import validate_files
from lnmkit.exceptions import DataSchemaError

REPO_SCHEMAS = Path(lnmkit.__file__).resolve().parents[1] / "data_schemas"

# The shared contract of the cohort folder: exactly these columns, in this order.
CONTRACT = {
    "clinical": ["patient_id", "age", "sex", "tumour_site", "ct_stage", "grade", "lauren_type",
                 "tumour_size_mm", "cea_ng_ml", "ca19_9_u_ml", "lvi", "pni", "neoadjuvant"],
    "outcomes": ["patient_id", "pn_status", "pn_category", "positive_nodes", "examined_nodes", "otc",
                 "os_months", "os_event", "rfs_months", "rfs_event"],
    "radiology_nodes": ["patient_id", "node_id", "modality", "station", "short_axis_mm", "long_axis_mm",
                        "suv_max", "fatty_hilum", "irregular_margin", "necrosis", "enhancement", "mask_label"],
    "slides": ["slide_id", "patient_id", "path", "mpp", "stain", "block"],
}
WITH_UNITS = {
    "clinical": ["age", "tumour_size_mm", "cea_ng_ml", "ca19_9_u_ml"],
    "outcomes": ["positive_nodes", "examined_nodes", "os_months", "rfs_months"],
    "radiology_nodes": ["short_axis_mm", "long_axis_mm", "suv_max"],
    "slides": ["mpp"],
}


@pytest.mark.parametrize("path", sorted(REPO_SCHEMAS.glob("*.json")), ids=lambda p: p.name)
def test_schema_files_are_draft_2020_12(path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(raw)
    for column, spec in raw["properties"].items():
        assert spec.get("description"), f"{path.name}: {column} has no description"


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_columns_follow_the_contract(name):
    schema = load_schemas()[name]
    assert list(schema.columns) == CONTRACT[name]
    assert schema.file_name == f"{name}.csv"
    for column in WITH_UNITS[name]:
        assert schema.columns[column].get("x-unit"), f"{name}.{column} has no unit"


def test_contract_keys_and_rules():
    schemas = load_schemas()
    assert list(schemas)[:4] == ["clinical", "outcomes", "radiology_nodes", "slides"]
    assert schemas["clinical"].required_values == ["patient_id"]
    assert schemas["clinical"].extra_columns == "keep"
    assert schemas["radiology_nodes"].primary_key == ["patient_id", "node_id"]
    assert schemas["slides"].index == "slide_id" and schemas["outcomes"].index == "patient_id"
    assert schemas["slides"].columns["path"]["x-file-path"] is True
    assert {fk["table"] for s in schemas.values() for fk in s.foreign_keys} == {"clinical"}
    assert schemas["outcomes"].columns["os_months"]["exclusiveMinimum"] == 0
    assert schemas["outcomes"].columns["os_event"]["enum"] == [0, 1]


def test_schema_dir_prefers_the_packaged_copy(tmp_path, monkeypatch):
    assert schema_dir() == REPO_SCHEMAS  # source checkout: no lnmkit/data_schemas
    (tmp_path / "data_schemas").mkdir()
    monkeypatch.setattr("importlib.resources.files", lambda package: tmp_path)
    assert schema_dir() == tmp_path / "data_schemas"


def test_loader_takes_any_table_schema(tmp_path):
    folder = tmp_path / "schemas"
    shutil.copytree(REPO_SCHEMAS, folder)
    extra = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "pathology_reviews.csv",
        "description": "A second pathologist's review.",
        "type": "object",
        "x-file-name": "pathology_reviews.csv",
        "x-primary-key": ["patient_id"],
        "x-required-columns": ["patient_id", "agrees"],
        "x-foreign-keys": [{"columns": ["patient_id"], "table": "clinical"}],
        "properties": {
            "patient_id": {"type": "string", "description": "Patient."},
            "agrees": {"type": "integer", "enum": [0, 1], "description": "Agreement."},
        },
        "required": ["patient_id", "agrees"],
    }
    (folder / "pathology_reviews.json").write_text(json.dumps(extra))
    schemas = load_schemas(folder)
    assert list(schemas)[-1] == "pathology_reviews"
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    (cohort / "clinical.csv").write_text("patient_id,age,sex\nP1,50,M\nP2,60,F\n")
    (cohort / "pathology_reviews.csv").write_text("patient_id,agrees\nP1,1\nP3,3\n")
    tables, problems = validate_files({"clinical": cohort / "clinical.csv",
                                       "pathology_reviews": cohort / "pathology_reviews.csv"}, schemas)
    assert set(tables) == {"clinical", "pathology_reviews"}
    assert sorted((p.row, p.column, p.value) for p in problems) == [(3, "agrees", "3"), (3, "patient_id", "P3")]


def _variant(raw, edit):
    raw = json.loads(json.dumps(raw))
    edit(raw)
    return TableSchema(name="outcomes", source="outcomes.json", raw=raw)


@pytest.mark.parametrize("edit,fragment", [
    (lambda r: r["properties"]["otc"].update(format="email"), "properties/otc/format: keyword not supported"),
    (lambda r: r["properties"]["otc"].update({"x-colour": "red"}), "properties/otc/x-colour: unknown lnmkit"),
    (lambda r: r["properties"]["otc"].pop("description"), "every column needs a description"),
    (lambda r: r["properties"]["otc"].update(type="boolean"), "properties/otc/type: must be one of"),
    (lambda r: r["allOf"][0].pop("description"), "allOf/0: every row rule needs a description"),
    (lambda r: r["allOf"][0].update({"x-column": "nope"}), "allOf/0/x-column"),
    (lambda r: r["allOf"][0]["then"].update(properties={"nope": {"const": 1}}), "unknown column"),
    (lambda r: r["x-column-comparisons"][0].update(op="=<"), "op must be one of"),
    (lambda r: r.update({"x-primary-key": ["nope"]}), "x-primary-key: unknown column 'nope'"),
    (lambda r: r.update(required=["os_months"]), "must be in x-required-columns"),
    (lambda r: r["properties"]["os_months"].update(minimum="zero"), "not a valid draft 2020-12 schema"),
])
def test_invalid_schemas_are_refused(edit, fragment):
    with pytest.raises(DataSchemaError, match="^outcomes.json: ") as info:
        check_table_schema(_variant(load_schemas()["outcomes"].raw, edit))
    assert fragment in str(info.value)


def _columns(rows, schema):
    """Columns built the way the validator parses cells: text as str, numbers as float."""
    values, present, types = {}, {}, {}
    for column, spec in schema.columns.items():
        cells = [row.get(column) for row in rows]
        present[column] = np.array([c is not None for c in cells])
        if spec["type"] == "string":
            values[column] = pd.Series(cells, dtype=object)
        else:
            values[column] = pd.Series([np.nan if c is None else float(c) for c in cells], dtype=float)
        types[column] = spec["type"]
    return Columns(n_rows=len(rows), values=values, present=present, types=types)


# per column: values the column accepts, then values it refuses
CHOICES = {
    "outcomes": {
        "patient_id": (["P1"], [""]), "pn_status": (["pN0", "pN+"], ["pN1"]),
        "pn_category": (["pN0", "pN1", "pN2", "pN3a", "pN3b", "pN3", "pNX"], ["N1"]),
        "positive_nodes": ([0, 1, 2, 5, 9, 20], [-1]), "examined_nodes": ([0, 3, 30], [-3]),
        "otc": ([0, 1], [2]), "os_months": ([0.5, 30.0], [0, 700]), "os_event": ([0, 1], [2]),
        "rfs_months": ([12.5], [-1]), "rfs_event": ([0, 1], [-1]),
    },
    "radiology_nodes": {
        "patient_id": (["P1"], [""]), "node_id": (["n1"], [""]), "modality": (["CT", "MRI", "PET-CT", "US"], ["XR"]),
        "station": (["4sb"], [""]), "short_axis_mm": ([5.5, 12], [0, 101]), "long_axis_mm": ([3, 14.2], [160]),
        "suv_max": ([0, 3.1], [120]), "fatty_hilum": ([0, 1], [3]), "irregular_margin": ([0, 1], [0.5]),
        "necrosis": ([0, 1], [-1]), "enhancement": (["homogeneous", "heterogeneous"], ["none"]),
        "mask_label": ([1, 4], [0]),
    },
    "slides": {
        "slide_id": (["S1", "ok.1_2+3"], ["a/b", "-x"]), "patient_id": (["P1"], [""]), "path": (["a.svs"], [""]),
        "mpp": ([0.25, 20], [0, 25]), "stain": (["H&E"], [""]), "block": (["A1"], [""]),
    },
}


def _mostly_coherent_outcome(row, rng):
    """Make most outcome rows internally consistent, so that the row rules are exercised both ways."""
    if rng.random() < 0.7 and row.get("positive_nodes", -1) >= 0:
        positive = row["positive_nodes"]
        row["pn_status"] = "pN0" if positive == 0 else "pN+"
        row["pn_category"] = ("pN0" if positive == 0 else "pN1" if positive <= 2 else "pN2" if positive <= 6
                              else "pN3a" if positive <= 15 else "pN3b")
        row["examined_nodes"] = positive + 10
        if positive > 0:
            row.pop("otc", None)
    for endpoint in ("os", "rfs"):
        if rng.random() < 0.8 and (f"{endpoint}_months" in row) != (f"{endpoint}_event" in row):
            row.pop(f"{endpoint}_months", None)
            row.pop(f"{endpoint}_event", None)
    return row


@pytest.mark.parametrize("name", sorted(CHOICES))
def test_engine_agrees_with_jsonschema(name):
    """The vectorised engine judges each row exactly as a JSON Schema validator does."""
    schema = load_schemas()[name]
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(400):
        row = {}
        for column, (good, bad) in CHOICES[name].items():
            draw = rng.random()
            if draw < 0.8:
                row[column] = good[rng.integers(len(good))]
            elif draw < 0.85:
                row[column] = bad[rng.integers(len(bad))]
        rows.append(_mostly_coherent_outcome(row, rng) if name == "outcomes" else row)
    validator = jsonschema.Draft202012Validator(schema.raw)
    expected = np.array([validator.is_valid(row) for row in rows])
    got = row_valid(_columns(rows, schema), schema.raw)
    assert 0.1 < expected.mean() < 0.9  # both outcomes are common, so the comparison means something
    np.testing.assert_array_equal(got, expected)
    for rule in schema.rules:
        rule_validator = jsonschema.Draft202012Validator(rule)
        np.testing.assert_array_equal(row_valid(_columns(rows, schema), rule),
                                      [rule_validator.is_valid(row) for row in rows])


def test_data_format_page_is_up_to_date():
    committed = default_output().read_text(encoding="utf-8")
    assert committed == render_data_format(), "run: python -m lnmkit.cohort._docs"


def test_data_format_page_lists_every_table_and_column():
    text = render_data_format()
    for schema in load_schemas().values():
        assert f"### `{schema.file_name}`" in text
        for column in schema.columns:
            assert f"| `{column}` |" in text


CELL_CASES = [
    ("integer", {"type": "integer"}, [1, 2.0, 2.5, -3]),
    ("number", {"type": ["string", "integer"]}, [1, 1.5]),
    ("string", {"type": "number"}, ["1", "a"]),
    ("number", {"multipleOf": 0.5}, [1.0, 1.25, -2.5, 0]),
    ("number", {"oneOf": [{"minimum": 0}, {"maximum": 10}]}, [-5, 5, 15]),
    ("number", {"anyOf": [{"const": 1}, {"exclusiveMaximum": -1}]}, [1, 0, -1, -2]),
    ("number", {"not": {"enum": [1, 2]}}, [1, 2, 3]),
    ("number", {"const": "1"}, [1]),
    ("string", {"const": 1}, ["1"]),
    ("string", {"pattern": "b+"}, ["abbc", "ac", "B"]),
    ("string", {"minimum": 3, "maxLength": 2}, ["ab", "abc"]),
    ("string", {"allOf": [{"minLength": 2}, {"enum": ["ab", "abc", "x"]}]}, ["ab", "abc", "x", "yz"]),
]


@pytest.mark.parametrize("kind,schema,cells", CELL_CASES)
def test_cell_keywords_agree_with_jsonschema(kind, schema, cells):
    from lnmkit.cohort._engine import value_valid

    values = pd.Series(cells, dtype=object if kind == "string" else float)
    validator = jsonschema.Draft202012Validator(schema)
    np.testing.assert_array_equal(value_valid(values, kind, schema), [validator.is_valid(c) for c in cells])
