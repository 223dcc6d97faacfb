"""One problem found in a cohort table, and helpers to present many of them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import pandas as pd

__all__ = ["Problem", "problems_frame", "has_errors"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """A problem found while validating a cohort.

    Parameters
    ----------
    file : str
        The table (or schema) file the problem is in.
    row : int or None
        Row number as a spreadsheet shows it: the header is row 1, the first data
        row is row 2 (the CSV line number when no cell spans several lines).
        ``None`` when the problem concerns the whole file or a column.
    column : str or None
        Column name, or ``None`` when the problem concerns the whole file or row.
    value : str or None
        The offending cell text exactly as read (surrounding spaces removed);
        ``None`` for an empty cell or when no single cell is at fault.
    message : str
        What is wrong and, where possible, how to fix it.
    severity : {"error", "warning"}, default="error"
        Errors stop loading; warnings are reported and the data is kept as it is.
    """

    file: str
    row: int | None
    column: str | None
    value: str | None
    message: str
    severity: Severity = "error"

    @property
    def is_error(self) -> bool:
        """bool: Whether this problem is an error (not a warning)."""
        return self.severity == "error"

    def __str__(self):
        where = [self.file]
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.value is not None:
            where.append(f"value {self.value!r}")
        elif self.row is not None and self.row > 1 and self.column is not None:
            # row 1 is the header: a problem there concerns a column, not a cell
            where.append("value (empty)")
        return f"{self.severity}: {', '.join(where)}: {self.message}"


def has_errors(problems) -> bool:
    """Whether any of ``problems`` is an error.

    Parameters
    ----------
    problems : iterable of Problem

    Returns
    -------
    bool
    """
    return any(p.is_error for p in problems)


def problems_frame(problems) -> pd.DataFrame:
    """Problems as a DataFrame, one row each, for filtering and display in Jupyter.

    Parameters
    ----------
    problems : iterable of Problem

    Returns
    -------
    pandas.DataFrame
        Columns ``severity``, ``file``, ``row`` (Int64), ``column``, ``value``,
        ``message``.
    """
    columns = ["severity", "file", "row", "column", "value", "message"]
    frame = pd.DataFrame([asdict(p) for p in problems], columns=columns)
    frame["row"] = frame["row"].astype("Int64")
    return frame
