"""Turn validated tables into typed pandas DataFrames."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from lnmkit.cohort._schemas import TableSchema
from lnmkit.cohort._validate import ParsedTable

__all__ = ["to_frame", "empty_frame"]


def _typed(values: pd.Series, keep: np.ndarray, schema: TableSchema, column) -> pd.Series:
    dtype = schema.dtype(column)
    kind = schema.column_type(column)
    if kind == "string":
        text = values.where(keep, None).astype(object)
        if isinstance(dtype, pd.CategoricalDtype):
            return pd.Series(pd.Categorical(text, dtype=dtype))
        return text.where(text.notna(), np.nan)
    numbers = values.to_numpy(dtype=float, na_value=np.nan).copy()
    numbers[~keep] = np.nan
    series = pd.Series(numbers, dtype="float64")
    if dtype == "Int64":
        # integral values only reach here: non-whole numbers failed validation
        series = series.round().astype("Int64")
    return series


def _infer_extra(text: pd.Series) -> pd.Series:
    """Extra columns: numeric if every value is a number, text otherwise.

    Values with a leading zero ("007") keep the column as text, because such
    columns are codes rather than quantities.
    """
    present = text.dropna()
    if present.empty:
        return pd.Series(np.nan, index=text.index, dtype=object)
    if present.map(lambda v: bool(re.match(r"[+-]?0\d", v))).any():
        return text.where(text.notna(), np.nan).astype(object)
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers[text.notna()].isna().any() or not np.isfinite(numbers.dropna()).all():
        return text.where(text.notna(), np.nan).astype(object)
    numbers = numbers.astype(float)
    if (numbers.dropna() == numbers.dropna().round()).all():
        return numbers.round().astype("Int64")
    return numbers


def _finish(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    if schema.index is not None:
        frame = frame.set_index(schema.index)
        frame.index = frame.index.astype(object)
    return frame


def to_frame(table: ParsedTable) -> pd.DataFrame:
    """DataFrame of a validated table, typed by its schema.

    Every schema column is present (all-missing when the file lacks it), in
    schema order, followed by the file's extra columns. ``x-file-path`` columns
    hold absolute paths. The ``x-index`` column, if any, becomes the index.

    Parameters
    ----------
    table : ParsedTable

    Returns
    -------
    pandas.DataFrame
    """
    schema = table.schema
    n = table.columns.n_rows
    data = {}
    for column in schema.columns:
        if column in table.paths:
            keep = table.parsed[column]
            data[column] = table.paths[column].where(keep, np.nan).astype(object)
        elif column in table.columns.values:
            data[column] = _typed(table.columns.values[column], table.parsed[column], schema, column)
        else:
            data[column] = _typed(pd.Series([None] * n, dtype=object), np.zeros(n, dtype=bool), schema, column)
    for column in table.extra:
        data[column] = _infer_extra(table.raw.cells[column])
    frame = pd.DataFrame({k: v.reset_index(drop=True) for k, v in data.items()}, index=pd.RangeIndex(n))
    return _finish(frame, schema)


def empty_frame(schema: TableSchema) -> pd.DataFrame:
    """Zero-row DataFrame with a table's columns, dtypes and index.

    Parameters
    ----------
    schema : TableSchema

    Returns
    -------
    pandas.DataFrame
    """
    data = {}
    for column in schema.columns:
        dtype = schema.dtype(column)
        data[column] = pd.Series([], dtype=dtype)
    return _finish(pd.DataFrame(data), schema)
