"""Read a CSV table as text cells, remembering each row's spreadsheet row number."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lnmkit.cohort._problem import Problem

__all__ = ["RawTable", "read_csv_text"]


@dataclass
class RawTable:
    """A CSV table as stripped text cells.

    Parameters
    ----------
    path : pathlib.Path
        The file read.
    header : list of str
        Column names, in file order.
    cells : pandas.DataFrame
        One ``object`` column per header name; empty cells are ``None``.
    row_numbers : ndarray of int
        Spreadsheet row number of each data row (the header is row 1; blank lines
        count, so the numbers match what a spreadsheet shows).
    """

    path: Path
    header: list
    cells: pd.DataFrame
    row_numbers: np.ndarray


def _clean(cell):
    cell = cell.strip()
    return cell if cell else None


def read_csv_text(path) -> tuple[RawTable | None, list[Problem]]:
    """Read a comma-separated UTF-8 file as text cells, or say why it cannot be read.

    Cells are stripped of surrounding spaces; an empty cell is missing. Nothing is
    converted, so identifiers such as ``"007"`` keep their leading zeros. A byte
    order mark is allowed. Rows with every cell empty are skipped but still
    counted, so row numbers match what a spreadsheet shows. A row with fewer
    cells than the header is read with the missing cells empty and reported as
    a warning; a row with extra non-empty cells is an error.

    Parameters
    ----------
    path : str or path-like
        CSV file.

    Returns
    -------
    table : RawTable or None
        ``None`` if the file cannot be used at all.
    problems : list of Problem
        Why the file cannot be used (when ``table`` is None), or problems with
        its header or rows.
    """
    path = Path(path)
    name = str(path)
    if not path.is_file():
        return None, [Problem(name, None, None, None, "file not found" if not path.exists() else "not a file")]
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            records = list(csv.reader(handle))
    except UnicodeDecodeError as exc:
        return None, [Problem(name, None, None, None,
                              f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                              "save it as 'CSV UTF-8'")]
    except csv.Error as exc:
        return None, [Problem(name, None, None, None, f"not a readable CSV file: {exc}")]
    if not records or not any(c.strip() for c in records[0]):
        return None, [Problem(name, 1, None, None, "no header row; the first row must name the columns")]

    problems = []
    header = [c.strip() for c in records[0]]
    # trailing empty header cells come from spreadsheets that export extra commas
    while header and not header[-1]:
        header.pop()
    separator = next((label for char, label in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe"))
                      if len(header) == 1 and char in header[0]), None)
    if separator:
        problems.append(Problem(name, 1, None, None,
                                f"the header looks {separator}-separated; lnmkit reads comma-separated files "
                                "(export as 'CSV UTF-8 (comma delimited)')"))
    seen = {}
    for position, column in enumerate(header, start=1):
        if not column:
            problems.append(Problem(name, 1, None, None, f"column {position} has no name in the header"))
        elif column in seen:
            problems.append(Problem(name, 1, column, None,
                                    f"column name appears twice (columns {seen[column]} and {position})"))
        else:
            seen[column] = position

    width = len(header)
    rows, numbers = [], []
    for number, record in enumerate(records[1:], start=2):
        cells = [_clean(c) for c in record]
        if not any(c is not None for c in cells):
            continue
        if len(cells) > width:
            extra = [c for c in cells[width:] if c is not None]
            if extra:
                problems.append(Problem(name, number, None, extra[0],
                                        f"row has {len(cells)} cells but the header names {width} columns; "
                                        "a value may contain an unquoted comma"))
            cells = cells[:width]
        elif len(cells) < width:
            problems.append(Problem(name, number, header[len(cells)] or None, None,
                                    f"row has {len(cells)} cell(s) but the header names {width} columns; "
                                    f"the cells from column {header[len(cells)]!r} on are read as empty "
                                    "(a missing comma, or a line break inside a value?)", "warning"))
            cells = cells + [None] * (width - len(cells))
        rows.append(cells)
        numbers.append(number)

    # duplicate or empty names get positional keys so that every cell stays addressable
    keys = [c if c and seen.get(c) == i else f"\0{i}" for i, c in enumerate(header, start=1)]
    cells = pd.DataFrame(rows, columns=keys, dtype=object) if rows else pd.DataFrame(
        {k: pd.Series([], dtype=object) for k in keys})
    cells = cells[[k for k in keys if not k.startswith("\0")]]
    return RawTable(path=path, header=list(cells.columns), cells=cells.reset_index(drop=True),
                    row_numbers=np.asarray(numbers, dtype=np.int64)), problems
