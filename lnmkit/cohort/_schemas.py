"""Find, load and check the table schemas in ``data_schemas/``.

Each ``*.json`` file describes one CSV table as a JSON Schema (draft 2020-12) for
one row object: a column is a property, an empty cell is an absent property.
lnmkit adds a few top-level keywords starting with ``x-`` (see
``docs/data_format.md``). Only the JSON Schema keywords that the vectorised
engine in :mod:`lnmkit.cohort._engine` evaluates are accepted, so a schema can
never declare a constraint that is silently not checked.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import pandas as pd

import lnmkit
from lnmkit.exceptions import DataSchemaError

__all__ = [
    "TableSchema",
    "schema_dir",
    "load_schemas",
    "TABLE_ORDER",
    "COLUMN_TYPES",
]

#: Standard tables first, in this order; any other schema follows alphabetically.
TABLE_ORDER = ("clinical", "outcomes", "radiology_nodes", "slides", "radiology_images")

#: Cell types a column may declare, with the pandas dtype it is loaded as.
COLUMN_TYPES = ("string", "number", "integer")

ANNOTATION_KEYWORDS = frozenset({
    "title", "description", "examples", "default", "$comment", "$schema", "$id",
    "deprecated", "readOnly", "writeOnly",
})
#: Keywords the engine evaluates on one cell value.
VALUE_KEYWORDS = frozenset({
    "type", "const", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "multipleOf", "pattern", "minLength", "maxLength", "not", "allOf", "anyOf", "oneOf",
})
#: Keywords the engine evaluates on a whole row object.
ROW_KEYWORDS = frozenset({
    "type", "properties", "required", "dependentRequired", "not", "allOf", "anyOf", "oneOf",
    "if", "then", "else",
})
TOP_LEVEL_EXTENSIONS = frozenset({
    "x-file-name", "x-row", "x-index", "x-primary-key", "x-required-columns",
    "x-extra-columns", "x-foreign-keys", "x-column-comparisons", "x-min-rows",
})
COLUMN_EXTENSIONS = frozenset({"x-unit", "x-file-path", "x-severity"})
RULE_EXTENSIONS = frozenset({"x-column", "x-severity"})
SEVERITIES = ("error", "warning")
COMPARISON_OPS = ("<", "<=", ">", ">=", "==", "!=")


def schema_dir() -> Path:
    """Folder holding the table schemas.

    Installed wheels carry them inside the package (``lnmkit/data_schemas``); a
    source checkout keeps them at the repository root.

    Returns
    -------
    pathlib.Path
    """
    packaged = importlib.resources.files("lnmkit") / "data_schemas"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(lnmkit.__file__).resolve().parents[1] / "data_schemas"


@dataclass(frozen=True)
class TableSchema:
    """One table's schema, checked and with its lnmkit keywords unpacked.

    Parameters
    ----------
    name : str
        Table name: the schema file's stem (``"clinical"``).
    source : str
        The schema file.
    raw : dict
        The parsed JSON document.
    """

    name: str
    source: str
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def file_name(self) -> str:
        """str: Standard CSV file name of the table (``x-file-name``)."""
        return self.raw["x-file-name"]

    @property
    def columns(self) -> dict[str, Mapping[str, Any]]:
        """dict: Column name to its property schema, in declaration order."""
        return dict(self.raw.get("properties", {}))

    @property
    def required_columns(self) -> list[str]:
        """list of str: Columns the header must contain (``x-required-columns``)."""
        return list(self.raw.get("x-required-columns", []))

    @property
    def required_values(self) -> list[str]:
        """list of str: Columns whose cells may not be empty (``required``)."""
        return list(self.raw.get("required", []))

    @property
    def dependent_required(self) -> dict[str, list[str]]:
        """dict: A non-empty key column needs these columns non-empty too."""
        return {k: list(v) for k, v in self.raw.get("dependentRequired", {}).items()}

    @property
    def primary_key(self) -> list[str]:
        """list of str: Columns whose combined values are unique per row."""
        return list(self.raw.get("x-primary-key", []))

    @property
    def index(self) -> str | None:
        """str or None: Column that becomes the DataFrame index."""
        return self.raw.get("x-index")

    @property
    def extra_columns(self) -> str:
        """str: ``"keep"`` (silently) or ``"warn"`` for columns the schema does not know."""
        return self.raw.get("x-extra-columns", "warn")

    @property
    def min_rows(self) -> int:
        """int: Fewest data rows the table may have."""
        return int(self.raw.get("x-min-rows", 0))

    @property
    def foreign_keys(self) -> list[dict]:
        """list of dict: ``{"columns", "table"}``: values must exist in that table's key."""
        return [dict(fk) for fk in self.raw.get("x-foreign-keys", [])]

    @property
    def comparisons(self) -> list[dict]:
        """list of dict: ``{"left", "op", "right", "description"}`` checks between columns."""
        return [dict(c) for c in self.raw.get("x-column-comparisons", [])]

    @property
    def rules(self) -> list[dict]:
        """list of dict: Row rules, the entries of the top-level ``allOf``."""
        return [dict(r) for r in self.raw.get("allOf", [])]

    def column_type(self, column) -> str:
        """Declared cell type of a column: ``"string"``, ``"number"`` or ``"integer"``."""
        return self.columns[column]["type"]

    def dtype(self, column):
        """pandas dtype a column is loaded as.

        Text with allowed values becomes a categorical (categories in the declared
        order), other text ``object``, numbers ``float64`` and integers the
        nullable ``Int64``.
        """
        spec = self.columns[column]
        kind = spec["type"]
        if kind == "string":
            if "enum" in spec:
                return pd.CategoricalDtype(categories=list(spec["enum"]), ordered=False)
            return object
        return "float64" if kind == "number" else "Int64"


def _fail(source, where, message):
    raise DataSchemaError(f"{source}: {where}: {message}")


def _check_value_schema(source, where, schema):
    if not isinstance(schema, Mapping):
        _fail(source, where, "must be an object")
    for key, arg in schema.items():
        if key in ANNOTATION_KEYWORDS or key.startswith("x-"):
            continue
        if key not in VALUE_KEYWORDS:
            _fail(source, f"{where}/{key}", f"keyword not supported on a cell; supported: "
                  f"{', '.join(sorted(VALUE_KEYWORDS))}")
        if key == "not":
            _check_value_schema(source, f"{where}/not", arg)
        elif key in ("allOf", "anyOf", "oneOf"):
            for i, sub in enumerate(arg):
                _check_value_schema(source, f"{where}/{key}/{i}", sub)


def _check_row_schema(source, where, schema, columns):
    if not isinstance(schema, Mapping):
        _fail(source, where, "must be an object")
    for key, arg in schema.items():
        if key in ANNOTATION_KEYWORDS or key.startswith("x-"):
            continue
        if key not in ROW_KEYWORDS:
            _fail(source, f"{where}/{key}", f"keyword not supported on a row; supported: "
                  f"{', '.join(sorted(ROW_KEYWORDS))}")
        if key == "type" and arg != "object":
            _fail(source, f"{where}/type", "a row is an object")
        elif key == "properties":
            for column, sub in arg.items():
                if column not in columns:
                    _fail(source, f"{where}/properties/{column}", "unknown column")
                _check_value_schema(source, f"{where}/properties/{column}", sub)
        elif key == "required":
            for column in arg:
                if column not in columns:
                    _fail(source, f"{where}/required", f"unknown column {column!r}")
        elif key == "dependentRequired":
            for column, needed in arg.items():
                for c in [column, *needed]:
                    if c not in columns:
                        _fail(source, f"{where}/dependentRequired", f"unknown column {c!r}")
        elif key in ("not", "if", "then", "else"):
            _check_row_schema(source, f"{where}/{key}", arg, columns)
        elif key in ("allOf", "anyOf", "oneOf"):
            for i, sub in enumerate(arg):
                _check_row_schema(source, f"{where}/{key}/{i}", sub, columns)


def check_table_schema(schema: TableSchema) -> None:
    """Raise DataSchemaError unless ``schema`` is a valid lnmkit table schema.

    Parameters
    ----------
    schema : TableSchema

    Raises
    ------
    lnmkit.exceptions.DataSchemaError
        Naming the schema file, the keyword path and the problem.
    """
    raw, src = schema.raw, schema.source
    try:
        jsonschema.Draft202012Validator.check_schema(raw)
    except jsonschema.SchemaError as exc:
        _fail(src, "/" + "/".join(map(str, exc.path)), f"not a valid draft 2020-12 schema: {exc.message}")
    if raw.get("$schema") != "https://json-schema.org/draft/2020-12/schema":
        _fail(src, "$schema", "must be https://json-schema.org/draft/2020-12/schema")
    if not isinstance(raw.get("x-file-name"), str):
        _fail(src, "x-file-name", "missing: the table's standard CSV file name")
    for key in raw:
        if key.startswith("x-") and key not in TOP_LEVEL_EXTENSIONS:
            _fail(src, key, f"unknown lnmkit keyword; known: {', '.join(sorted(TOP_LEVEL_EXTENSIONS))}")
        if not key.startswith("x-") and key not in ANNOTATION_KEYWORDS | ROW_KEYWORDS:
            _fail(src, key, "keyword not supported at the top level")
    columns = schema.columns
    if not columns:
        _fail(src, "properties", "a table needs at least one column")
    for column, spec in columns.items():
        where = f"properties/{column}"
        if spec.get("type") not in COLUMN_TYPES:
            _fail(src, f"{where}/type", f"must be one of {', '.join(COLUMN_TYPES)}")
        if not spec.get("description"):
            _fail(src, f"{where}/description", "every column needs a description")
        if "enum" in spec and spec["type"] == "string" and not all(isinstance(v, str) for v in spec["enum"]):
            _fail(src, f"{where}/enum", "text columns need text allowed values")
        for key in spec:
            if key.startswith("x-") and key not in COLUMN_EXTENSIONS:
                _fail(src, f"{where}/{key}", f"unknown lnmkit keyword; known: {', '.join(sorted(COLUMN_EXTENSIONS))}")
        if spec.get("x-severity", "error") not in SEVERITIES:
            _fail(src, f"{where}/x-severity", f"must be one of {SEVERITIES}")
        if spec.get("x-file-path") and spec["type"] != "string":
            _fail(src, f"{where}/x-file-path", "only text columns can hold paths")
        _check_value_schema(src, where, spec)
    for key in ("x-required-columns", "x-primary-key", "required"):
        for column in raw.get(key, []):
            if column not in columns:
                _fail(src, key, f"unknown column {column!r}")
    if not set(schema.required_values) <= set(schema.required_columns):
        _fail(src, "required", "a column whose cells are required must be in x-required-columns")
    if schema.index is not None and schema.primary_key != [schema.index]:
        _fail(src, "x-index", "the index column must be the whole primary key")
    if schema.extra_columns not in ("keep", "warn"):
        _fail(src, "x-extra-columns", "must be 'keep' or 'warn'")
    for i, fk in enumerate(schema.foreign_keys):
        if set(fk) - {"columns", "table", "x-severity"} or not {"columns", "table"} <= set(fk):
            _fail(src, f"x-foreign-keys/{i}", "needs exactly 'columns' and 'table' (and optional 'x-severity')")
        for column in fk["columns"]:
            if column not in columns:
                _fail(src, f"x-foreign-keys/{i}", f"unknown column {column!r}")
    for i, cmp in enumerate(schema.comparisons):
        where = f"x-column-comparisons/{i}"
        if cmp.get("op") not in COMPARISON_OPS:
            _fail(src, where, f"op must be one of {', '.join(COMPARISON_OPS)}")
        for side in ("left", "right"):
            if cmp.get(side) not in columns or columns[cmp[side]]["type"] == "string":
                _fail(src, where, f"{side} must name a numeric column")
        if not cmp.get("description"):
            _fail(src, where, "needs a description (it is the message shown)")
        if cmp.get("x-severity", "error") not in SEVERITIES:
            _fail(src, where, f"x-severity must be one of {SEVERITIES}")
    _check_row_schema(src, "", {k: v for k, v in raw.items() if k != "allOf"}, columns)
    for i, rule in enumerate(schema.rules):
        where = f"allOf/{i}"
        if not rule.get("description"):
            _fail(src, where, "every row rule needs a description (it is the message shown)")
        if rule.get("x-column") not in columns:
            _fail(src, f"{where}/x-column", "must name the column a problem is reported on")
        if rule.get("x-severity", "error") not in SEVERITIES:
            _fail(src, f"{where}/x-severity", f"must be one of {SEVERITIES}")
        _check_row_schema(src, where, rule, columns)


def _order_key(name):
    return (TABLE_ORDER.index(name), "") if name in TABLE_ORDER else (len(TABLE_ORDER), name)


@functools.lru_cache(maxsize=8)
def _load_cached(directory: str, stamps: tuple) -> tuple[TableSchema, ...]:
    folder = Path(directory)
    schemas = []
    for path in sorted(folder.glob("*.json")):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataSchemaError(f"{path}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}") from None
        schema = TableSchema(name=path.stem, source=str(path), raw=raw)
        check_table_schema(schema)
        schemas.append(schema)
    schemas.sort(key=lambda s: _order_key(s.name))
    by_name = {s.name: s for s in schemas}
    for s in schemas:
        for fk in s.foreign_keys:
            target = by_name.get(fk["table"])
            if target is None:
                raise DataSchemaError(f"{s.source}: x-foreign-keys: unknown table {fk['table']!r}")
            if len(fk["columns"]) != len(target.primary_key):
                raise DataSchemaError(f"{s.source}: x-foreign-keys: {fk['columns']} must match the primary key "
                                      f"{target.primary_key} of {fk['table']!r} column for column")
    return tuple(schemas)


def load_schemas(directory=None) -> dict[str, TableSchema]:
    """Load and check every table schema in a folder.

    Parameters
    ----------
    directory : str or path-like, optional
        Folder of ``*.json`` schemas; :func:`schema_dir` by default.

    Returns
    -------
    dict of str to TableSchema
        Keyed by table name (file stem), standard tables first.

    Raises
    ------
    lnmkit.exceptions.DataSchemaError
        If the folder is missing or a schema is invalid.
    """
    folder = (Path(directory) if directory is not None else schema_dir()).resolve()
    if not folder.is_dir():
        raise DataSchemaError(f"{folder}: schema folder not found; reinstall lnmkit")
    # file names and modification times key the cache, so an edited schema is read again
    stamps = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(folder.glob("*.json")))
    return {s.name: s for s in _load_cached(str(folder), stamps)}
