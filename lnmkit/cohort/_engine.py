"""Vectorised evaluation of the JSON Schema keywords lnmkit table schemas use.

A table is held column-wise: for each column a pandas Series of parsed values
(``float64`` for numbers and integers, ``object`` text otherwise) and a boolean
array saying which cells are present (non-empty). A row object in JSON Schema
terms has a property for each present cell, so ``properties`` constrain present
cells only and ``required`` asks for presence, exactly as a validator such as
``jsonschema`` would judge the same row written as a JSON object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

__all__ = ["Columns", "value_valid", "row_valid", "keyword_valid", "is_number", "referenced_columns"]


@dataclass
class Columns:
    """Parsed cells of a table, column-wise.

    Parameters
    ----------
    n_rows : int
        Number of data rows.
    values : dict of str to pandas.Series
        Parsed values per column (missing cells hold NaN or None).
    present : dict of str to ndarray of bool
        Which cells are non-empty and parsed.
    types : dict of str to str
        Declared type per column (``"string"``, ``"number"``, ``"integer"``).
    """

    n_rows: int
    values: dict
    present: dict
    types: dict

    def is_present(self, column) -> np.ndarray:
        """Presence mask of ``column``; all False for a column the table lacks."""
        if column in self.present:
            return self.present[column]
        return np.zeros(self.n_rows, dtype=bool)


def is_number(x) -> bool:
    """Whether ``x`` is a JSON number (bool is not)."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _numeric(values, kind):
    return kind in ("number", "integer")


def _integral(values):
    arr = values.to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return np.isfinite(arr) & (np.floor(arr) == arr)


def _equals(values, kind, constant):
    if _numeric(values, kind):
        if not is_number(constant):
            return np.zeros(len(values), dtype=bool)
        return values.to_numpy(dtype=float, na_value=np.nan) == float(constant)
    if not isinstance(constant, str):
        return np.zeros(len(values), dtype=bool)
    return (values == constant).to_numpy(dtype=bool, na_value=False)


def _compare(values, kind, op, bound):
    if not _numeric(values, kind):
        # JSON Schema: numeric keywords do not apply to text, which is valid for them
        return np.ones(len(values), dtype=bool)
    arr = values.to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return op(arr, float(bound))


def _text(values):
    return values.where(values.notna(), "").astype(str)


def keyword_valid(values: pd.Series, kind: str, keyword: str, arg) -> np.ndarray:
    """Which values satisfy one keyword.

    Parameters
    ----------
    values : pandas.Series
        Parsed cell values of one column; only entries of present cells matter.
    kind : {"string", "number", "integer"}
        The column's declared type.
    keyword : str
        A keyword of :data:`lnmkit.cohort._schemas.VALUE_KEYWORDS`, or an
        annotation (always valid).
    arg : object
        The keyword's argument.

    Returns
    -------
    ndarray of bool
    """
    n = len(values)
    if keyword == "type":
        ok = np.zeros(n, dtype=bool)
        for t in [arg] if isinstance(arg, str) else arg:
            if t == "string" and kind == "string":
                ok |= True
            elif t == "number" and _numeric(values, kind):
                ok |= True
            elif t == "integer" and _numeric(values, kind):
                ok |= _integral(values)
        return ok
    if keyword == "const":
        return _equals(values, kind, arg)
    if keyword == "enum":
        ok = np.zeros(n, dtype=bool)
        for constant in arg:
            ok |= _equals(values, kind, constant)
        return ok
    if keyword == "minimum":
        return _compare(values, kind, np.greater_equal, arg)
    if keyword == "maximum":
        return _compare(values, kind, np.less_equal, arg)
    if keyword == "exclusiveMinimum":
        return _compare(values, kind, np.greater, arg)
    if keyword == "exclusiveMaximum":
        return _compare(values, kind, np.less, arg)
    if keyword == "multipleOf":
        if not _numeric(values, kind):
            return np.ones(n, dtype=bool)
        quotient = values.to_numpy(dtype=float, na_value=np.nan) / float(arg)
        with np.errstate(invalid="ignore"):
            return np.isclose(quotient, np.round(quotient), rtol=0, atol=1e-9)
    if keyword == "pattern":
        if _numeric(values, kind):
            return np.ones(n, dtype=bool)
        # re.search semantics, as JSON Schema patterns are not anchored
        return _text(values).str.contains(arg, regex=True).to_numpy(dtype=bool)
    if keyword in ("minLength", "maxLength"):
        if _numeric(values, kind):
            return np.ones(n, dtype=bool)
        lengths = _text(values).str.len().to_numpy()
        return lengths >= arg if keyword == "minLength" else lengths <= arg
    if keyword == "not":
        return ~value_valid(values, kind, arg)
    if keyword in ("allOf", "anyOf", "oneOf"):
        results = [value_valid(values, kind, sub) for sub in arg]
        stacked = np.vstack(results) if results else np.ones((1, n), dtype=bool)
        if keyword == "allOf":
            return stacked.all(axis=0)
        if keyword == "anyOf":
            return stacked.any(axis=0)
        return stacked.sum(axis=0) == 1
    # annotations and x- keywords constrain nothing
    return np.ones(n, dtype=bool)


def value_valid(values: pd.Series, kind: str, schema: Mapping) -> np.ndarray:
    """Which values satisfy a cell schema (every keyword of it).

    Parameters
    ----------
    values : pandas.Series
    kind : {"string", "number", "integer"}
    schema : mapping

    Returns
    -------
    ndarray of bool
    """
    ok = np.ones(len(values), dtype=bool)
    for keyword, arg in schema.items():
        ok &= keyword_valid(values, kind, keyword, arg)
    return ok


def row_valid(columns: Columns, schema: Mapping) -> np.ndarray:
    """Which rows satisfy a row schema.

    Parameters
    ----------
    columns : Columns
    schema : mapping
        Row keywords of :data:`lnmkit.cohort._schemas.ROW_KEYWORDS`.

    Returns
    -------
    ndarray of bool
    """
    n = columns.n_rows
    ok = np.ones(n, dtype=bool)
    for keyword, arg in schema.items():
        if keyword == "properties":
            for column, sub in arg.items():
                present = columns.is_present(column)
                if present.any():
                    ok &= ~present | value_valid(columns.values[column], columns.types[column], sub)
        elif keyword == "required":
            for column in arg:
                ok &= columns.is_present(column)
        elif keyword == "dependentRequired":
            for column, needed in arg.items():
                have = np.ones(n, dtype=bool)
                for other in needed:
                    have &= columns.is_present(other)
                ok &= ~columns.is_present(column) | have
        elif keyword == "not":
            ok &= ~row_valid(columns, arg)
        elif keyword in ("allOf", "anyOf", "oneOf"):
            results = [row_valid(columns, sub) for sub in arg]
            stacked = np.vstack(results) if results else np.ones((1, n), dtype=bool)
            if keyword == "allOf":
                ok &= stacked.all(axis=0)
            elif keyword == "anyOf":
                ok &= stacked.any(axis=0)
            else:
                ok &= stacked.sum(axis=0) == 1
        elif keyword == "if":
            condition = row_valid(columns, arg)
            if "then" in schema:
                ok &= ~condition | row_valid(columns, schema["then"])
            if "else" in schema:
                ok &= condition | row_valid(columns, schema["else"])
        # "then"/"else" alone are ignored, as in JSON Schema; "type": "object" always holds
    return ok


def referenced_columns(schema) -> list[str]:
    """Columns a row schema mentions, in first-mention order.

    Parameters
    ----------
    schema : mapping

    Returns
    -------
    list of str
    """
    found = []

    def visit(node):
        if isinstance(node, Mapping):
            for keyword, arg in node.items():
                if keyword == "properties":
                    found.extend(arg)
                    for sub in arg.values():
                        visit(sub)
                elif keyword == "required":
                    found.extend(arg)
                elif keyword == "dependentRequired":
                    for column, needed in arg.items():
                        found.extend([column, *needed])
                elif keyword in ("not", "if", "then", "else"):
                    visit(arg)
                elif keyword in ("allOf", "anyOf", "oneOf"):
                    for sub in arg:
                        visit(sub)

    visit(schema)
    return list(dict.fromkeys(found))
