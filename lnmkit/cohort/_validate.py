"""Validate cohort tables against their schemas and against each other.

One generic engine does every check: the schemas declare the constraints (cell
types, allowed values, ranges, patterns, required cells, row rules, column
comparisons, keys, file paths) and this module reports each violation as a
:class:`~lnmkit.cohort.Problem` naming file, row, column and value. Nothing
stops at the first problem: every table is checked completely.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from lnmkit.cohort._engine import Columns, keyword_valid, referenced_columns, row_valid
from lnmkit.cohort._problem import Problem
from lnmkit.cohort._read import RawTable, read_csv_text
from lnmkit.cohort._schemas import TableSchema, load_schemas

__all__ = ["ParsedTable", "validate_table", "validate_frame", "validate_files", "validate_cohort", "standard_files",
           "folder_problem"]

_MISSING_TOKENS = {"NA", "N/A", "NAN", "NULL", "NONE", "-", "--", ".", "?", "MISSING", "UNKNOWN", "ND"}
_OPS = {
    "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
    "==": np.equal, "!=": np.not_equal,
}


@dataclass
class ParsedTable:
    """A table after validation, ready to become a DataFrame.

    Parameters
    ----------
    schema : TableSchema
    raw : RawTable
        The text cells as read.
    columns : Columns
        Parsed values of the schema columns found in the file. ``present`` marks
        cells that parsed and met every error-level cell constraint.
    parsed : dict of str to ndarray of bool
        Cells that parsed to their declared type (kept in the DataFrame).
    extra : list of str
        Columns the schema does not know, in file order.
    paths : dict of str to pandas.Series
        Absolute paths of ``x-file-path`` columns.
    """

    schema: TableSchema
    raw: RawTable
    columns: Columns
    parsed: dict
    extra: list
    paths: dict

    @property
    def name(self) -> str:
        """str: Table name."""
        return self.schema.name

    def key_set(self, columns) -> set:
        """Non-empty values (tuples of text) of ``columns``, for foreign-key checks."""
        if not all(c in self.raw.cells for c in columns):
            return set()
        mask = np.ones(len(self.raw.cells), dtype=bool)
        for c in columns:
            mask &= self.raw.cells[c].notna().to_numpy()
        return set(map(tuple, self.raw.cells.loc[mask, list(columns)].itertuples(index=False)))


def _fmt(x) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return repr(x) if isinstance(x, str) else str(x)


def _allowed(values) -> str:
    return ", ".join(_fmt(v) for v in values)


def _unit(spec) -> str:
    return f" {spec['x-unit']}" if spec.get("x-unit") else ""


def _closest(name, candidates):
    lowered = {c.lower(): c for c in candidates}
    if name.lower() in lowered:
        return lowered[name.lower()]
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    return match[0] if match else None


def _number_hint(text, spec) -> str:
    if text.upper() in _MISSING_TOKENS:
        return "; leave the cell empty for a missing value"
    if re.fullmatch(r"[+-]?\d+,\d+", text):
        return "; use a dot as the decimal separator"
    if re.fullmatch(r"[<>≤≥]=?\s*[\d.]+", text):
        return "; give a number (for a value below the detection limit, the limit itself)"
    if re.fullmatch(r"[+-]?[\d.]+\s*\S+", text):
        unit = f" (in {spec['x-unit']})" if spec.get("x-unit") else ""
        return f"; give the number only{unit}"
    return ""


def _parse(raw: pd.Series, spec) -> tuple[pd.Series, np.ndarray, list[str | None]]:
    """Parse one column's text cells to its declared type.

    Returns the values (text as is, numbers as float64 with NaN for missing or
    bad cells), which cells failed to parse and, for those, why.
    """
    kind = spec["type"]
    n = len(raw)
    if kind == "string":
        return raw, np.zeros(n, dtype=bool), [None] * n
    present = raw.notna().to_numpy()
    numbers = pd.to_numeric(raw, errors="coerce").astype(float)
    arr = numbers.to_numpy()
    bad = present & ~np.isfinite(arr)
    reasons = [None] * n
    allowed = f" (allowed: {_allowed(spec['enum'])})" if "enum" in spec else ""
    for i in np.flatnonzero(bad):
        reasons[i] = f"is not a number{allowed}{_number_hint(raw.iat[i], spec)}"
    if kind == "integer":
        with np.errstate(invalid="ignore"):
            fractional = present & ~bad & (np.floor(arr) != arr)
        for i in np.flatnonzero(fractional):
            reasons[i] = f"is not a whole number{allowed}"
        bad |= fractional
    numbers[bad] = np.nan
    return numbers, bad, reasons


def _keyword_message(keyword, arg, spec, text) -> str:
    unit = _unit(spec)
    if keyword == "enum":
        hint = ""
        if isinstance(text, str):
            close = _closest(text, [v for v in arg if isinstance(v, str)])
            hint = f" (did you mean {close!r}?)" if close else ""
        return f"must be one of {_allowed(arg)}{hint}"
    if keyword == "const":
        return f"must be {_fmt(arg)}"
    if keyword == "minimum":
        return f"must be >= {_fmt(arg)}{unit}"
    if keyword == "maximum":
        return f"must be <= {_fmt(arg)}{unit}"
    if keyword == "exclusiveMinimum":
        return f"must be > {_fmt(arg)}{unit}"
    if keyword == "exclusiveMaximum":
        return f"must be < {_fmt(arg)}{unit}"
    if keyword == "multipleOf":
        return f"must be a multiple of {_fmt(arg)}"
    if keyword == "pattern":
        return f"does not match the pattern {arg!r}: {spec.get('description', '')}".rstrip(": ")
    if keyword == "minLength":
        return f"must have at least {arg} character(s)"
    if keyword == "maxLength":
        return f"must have at most {arg} character(s)"
    if keyword == "type":
        return f"must be of type {arg}"
    return f"does not meet the column's definition: {spec.get('description', '')}".rstrip(": ")


def _show(text, kind) -> str:
    if text is None:
        return "empty"
    return text if kind in ("number", "integer") else repr(text)


def _explain(description, shown) -> str:
    return f"{description.rstrip('.')} ({shown})"


def _check_header(schema, file, cells) -> list[Problem]:
    problems = []
    declared = schema.columns
    extra = [c for c in cells.columns if c not in declared]
    for column in schema.required_columns:
        if column not in cells:
            close = _closest(column, extra)
            hint = f"; found {close!r}: rename it" if close else ""
            problems.append(Problem(file, 1, column, None, f"required column missing from the header{hint}"))
    for column in extra:
        close = _closest(column, [c for c in declared if c not in cells])
        if close:
            problems.append(Problem(file, 1, column, None,
                                    f"unknown column, kept as is; did you mean {close!r}?", "warning"))
        elif schema.extra_columns == "warn":
            problems.append(Problem(file, 1, column, None,
                                    f"unknown column, kept as is; known columns: {', '.join(declared)}",
                                    "warning"))
    for column, needed in schema.dependent_required.items():
        if column in cells and cells[column].notna().any():
            for other in needed:
                if other not in cells:
                    problems.append(Problem(file, 1, other, None,
                                            f"column missing; required because column {column} is given"))
    if len(cells) < schema.min_rows:
        problems.append(Problem(file, None, None, None,
                                f"has {len(cells)} data row(s); at least {schema.min_rows} needed"))
    return problems


def _check_cells(schema, file, cells, rows) -> tuple[Columns, dict, list[Problem]]:
    """Parse and check every cell of the schema's columns, column by column."""
    problems = []
    values, present, parsed, types = {}, {}, {}, {}
    for column, spec in schema.columns.items():
        if column not in cells:
            continue
        text = cells[column]
        severity = spec.get("x-severity", "error")
        parsed_values, bad, reasons = _parse(text, spec)
        for i in np.flatnonzero(bad):
            problems.append(Problem(file, int(rows[i]), column, text.iat[i], reasons[i], severity))
        ok = text.notna().to_numpy() & ~bad
        usable = ok.copy()
        for keyword, arg in spec.items():
            if keyword == "type" or keyword.startswith("x-"):
                continue
            failed = ok & ~keyword_valid(parsed_values, spec["type"], keyword, arg)
            for i in np.flatnonzero(failed):
                problems.append(Problem(file, int(rows[i]), column, text.iat[i],
                                        _keyword_message(keyword, arg, spec, text.iat[i]), severity))
            if severity == "error":
                usable &= ~failed
        values[column], present[column], parsed[column], types[column] = parsed_values, usable, ok, spec["type"]
    return Columns(n_rows=len(cells), values=values, present=present, types=types), parsed, problems


def _check_rows(schema, file, cells, rows, columns) -> list[Problem]:
    """Required cells, columns that go together, column comparisons and row rules."""
    problems = []
    present, types = columns.present, columns.types
    given = {c: cells[c].notna().to_numpy() for c in cells.columns}
    for column in schema.required_values:
        if column in cells:
            for i in np.flatnonzero(~given[column]):
                problems.append(Problem(file, int(rows[i]), column, None, "required value is empty"))
    for column, needed in schema.dependent_required.items():
        for other in needed:
            if other in cells and column in cells:
                for i in np.flatnonzero(columns.is_present(column) & ~given[other]):
                    problems.append(Problem(file, int(rows[i]), other, None,
                                            f"required because {column} is given ({cells[column].iat[i]!r})"))

    for cmp in schema.comparisons:
        left, right = cmp["left"], cmp["right"]
        if left not in present or right not in present:
            continue
        lv = columns.values[left].to_numpy(dtype=float, na_value=np.nan)
        rv = columns.values[right].to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            failed = present[left] & present[right] & ~_OPS[cmp["op"]](lv, rv)
        for i in np.flatnonzero(failed):
            shown = f"{left}={cells[left].iat[i]}, {right}={cells[right].iat[i]}"
            problems.append(Problem(file, int(rows[i]), left, cells[left].iat[i],
                                    _explain(cmp["description"], shown), cmp.get("x-severity", "error")))

    # a cell that failed its own checks was reported already; a rule reading it would only repeat that
    reported = {c: given[c] & ~present[c] for c in present}
    for rule in schema.rules:
        failed = ~row_valid(columns, rule)
        involved = [c for c in referenced_columns(rule) if c in cells]
        for c in involved:
            if c in reported:
                failed &= ~reported[c]
        target = rule["x-column"]
        for i in np.flatnonzero(failed):
            shown = ", ".join(f"{c}={_show(cells[c].iat[i], types.get(c))}" for c in involved)
            problems.append(Problem(file, int(rows[i]), target,
                                    cells[target].iat[i] if target in cells else None,
                                    _explain(rule["description"], shown), rule.get("x-severity", "error")))
    return problems


def _check_primary_key(schema, file, cells, rows) -> list[Problem]:
    key = schema.primary_key
    if not key or not all(c in cells for c in key):
        return []
    complete = np.ones(len(cells), dtype=bool)
    for c in key:
        complete &= cells[c].notna().to_numpy()
    # only rows sharing a key with another row need a closer look
    involved = complete & cells[key].duplicated(keep=False).to_numpy()
    problems, first_row = [], {}
    for i in np.flatnonzero(involved):
        values = tuple(cells[c].iat[i] for c in key)
        if values in first_row:
            what = key[0] if len(key) == 1 else f"({', '.join(key)}) = ({', '.join(map(repr, values))})"
            problems.append(Problem(file, int(rows[i]), key[-1], values[-1],
                                    f"duplicate {what}; first used in row {first_row[values]}"))
        else:
            first_row[values] = int(rows[i])
    return problems


def _resolve_paths(schema, file, cells, rows, columns, base, check_files=True) -> tuple[dict, list[Problem]]:
    """Absolute paths of ``x-file-path`` columns, and (``check_files``) the files that do not exist."""
    paths, problems = {}, []
    for column, spec in schema.columns.items():
        if not spec.get("x-file-path") or column not in cells:
            continue
        resolved = pd.Series([None] * len(cells), dtype=object)
        for i in np.flatnonzero(columns.present[column]):
            text = cells[column].iat[i]
            full = Path(os.path.abspath(base / Path(text).expanduser()))
            resolved.iat[i] = str(full)
            if not check_files:
                continue
            if not full.exists():
                problems.append(Problem(file, int(rows[i]), column, text, f"file not found: {full}"))
            elif full.is_dir():
                problems.append(Problem(file, int(rows[i]), column, text,
                                        f"is a folder, not a file: {full}; name the file itself (a DICOM "
                                        "or MRXS slide: one of its .dcm files or its .mrxs file; a DICOM "
                                        "image series: convert it to NIfTI first)"))
        paths[column] = resolved
    return paths, problems


def folder_problem(directory) -> Problem:
    """The problem with a cohort path that is not a folder: missing, or a file given instead."""
    message = "cohort folder not found"
    if directory.exists():
        message = "is a file, not a cohort folder; pass the folder that holds clinical.csv"
    return Problem(str(directory), None, None, None, message)


def validate_table(schema: TableSchema, path, check_files=True) -> tuple[ParsedTable | None, list[Problem]]:
    """Read one CSV table and check it against its schema.

    Parameters
    ----------
    schema : TableSchema
    path : str or path-like
        The CSV file. Relative paths inside it (``x-file-path`` columns) are
        resolved against its folder.
    check_files : bool, default=True
        Report ``x-file-path`` entries whose file is missing or is a folder.

    Returns
    -------
    table : ParsedTable or None
        ``None`` when the file cannot be read at all.
    problems : list of Problem
        Every problem found, errors and warnings.
    """
    raw, problems = read_csv_text(path)
    if raw is None:
        return None, problems
    return _validate_raw(schema, raw, raw.path.parent, check_files, problems)


def _validate_raw(schema, raw, base, check_files, problems):
    """Every single-table check of ``schema`` on text cells already read."""
    file, cells, rows = str(raw.path), raw.cells, raw.row_numbers
    problems += _check_header(schema, file, cells)
    columns, parsed, found = _check_cells(schema, file, cells, rows)
    problems += found
    problems += _check_rows(schema, file, cells, rows, columns)
    problems += _check_primary_key(schema, file, cells, rows)
    paths, found = _resolve_paths(schema, file, cells, rows, columns, Path(base), check_files)
    problems += found
    extra = [c for c in cells.columns if c not in schema.columns]
    table = ParsedTable(schema=schema, raw=raw, columns=columns, parsed=parsed, extra=extra, paths=paths)
    return table, problems


def _cell_text(value):
    """A DataFrame cell as the text a CSV file would hold (None for an empty cell)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    text = str(value).strip()
    return text or None


def validate_frame(schema: TableSchema | str, frame: pd.DataFrame, *, source=None, root=None,
                   check_files=True) -> tuple[ParsedTable, list[Problem]]:
    """Check a DataFrame against a table schema, exactly as the CSV file would be checked.

    The frame is turned into the text cells a CSV export of it would hold (an
    index named like a schema column, e.g. ``patient_id``, becomes that
    column), then checked by the same engine as :func:`validate_table`. Rows
    are numbered as a spreadsheet of that export shows them: the header is row
    1, the frame's first row is row 2.

    Parameters
    ----------
    schema : TableSchema or str
        The schema, or a table name of the packaged schemas (``"radiology_nodes"``).
    frame : pandas.DataFrame
    source : str, optional
        File name used in problems; default the schema's standard file name.
    root : str or path-like, optional
        Folder that relative ``x-file-path`` entries are resolved against
        (default: the working directory).
    check_files : bool, default=True
        Report ``x-file-path`` entries whose file is missing or is a folder.

    Returns
    -------
    table : ParsedTable
    problems : list of Problem
    """
    from lnmkit.cohort._read import RawTable

    if isinstance(schema, str):
        schema = load_schemas()[schema]
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"validate_frame: expected a pandas DataFrame for {schema.file_name}; "
                        f"got {type(frame).__name__}")
    if frame.index.name is not None and frame.index.name in schema.columns and frame.index.name not in frame:
        frame = frame.reset_index()
    frame = frame.reset_index(drop=True)
    header = [str(c) for c in frame.columns]
    cells = pd.DataFrame({str(c): pd.Series([_cell_text(v) for v in frame[c]], dtype=object)
                          for c in frame.columns}, columns=header)
    raw = RawTable(path=Path(source or schema.file_name), header=header, cells=cells,
                   row_numbers=np.arange(2, len(frame) + 2, dtype=np.int64))
    return _validate_raw(schema, raw, Path(root) if root is not None else Path.cwd(), check_files, [])


def _sort(problems, order):
    def key(p):
        return (order.get(p.file, len(order)), -1 if p.row is None else p.row)

    return sorted(problems, key=key)


def standard_files(directory, schemas=None) -> dict[str, Path | None]:
    """Standard table files present in a cohort folder.

    Parameters
    ----------
    directory : str or path-like
    schemas : dict of str to TableSchema, optional

    Returns
    -------
    dict of str to pathlib.Path or None
        Every schema's table, with ``None`` where its file is absent; clinical is
        always given (its absence is reported when validating).
    """
    schemas = schemas if schemas is not None else load_schemas()
    directory = Path(directory).expanduser()
    files = {}
    for name, schema in schemas.items():
        path = directory / schema.file_name
        files[name] = path if (path.exists() or name == "clinical") else None
    return files


def validate_files(files: Mapping[str, object], schemas=None,
                   check_files=True, open_slides=False) -> tuple[dict[str, ParsedTable], list[Problem]]:
    """Validate a set of cohort tables, each on its own and against each other.

    Parameters
    ----------
    files : mapping of str to path-like or None
        Table name (``"clinical"``, ``"outcomes"``, ...) to CSV file; ``None``
        for an absent table. ``"clinical"`` is required.
    schemas : dict of str to TableSchema, optional
        Defaults to the packaged schemas.
    check_files : bool, default=True
        Report file paths (slides, images) that do not exist.
    open_slides : bool, default=False
        Also open every slide of the slides table and read a little of each
        pyramid level (:func:`lnmkit.cohort._slide_files.check_slide_files`).

    Returns
    -------
    tables : dict of str to ParsedTable
        The tables that could be read.
    problems : list of Problem
        Every problem, errors first by file then by row within each file.

    Raises
    ------
    TypeError
        If ``files`` names a table without a schema.
    """
    schemas = schemas if schemas is not None else load_schemas()
    unknown = sorted(set(files) - set(schemas))
    if unknown:
        raise TypeError(f"no schema for table(s) {', '.join(unknown)}; known tables: {', '.join(schemas)}")
    problems, tables, order = [], {}, {}
    if files.get("clinical") is None:
        problems.append(Problem(schemas["clinical"].file_name, None, None, None,
                                "the clinical table is required (one row per patient)"))
    for name, schema in schemas.items():
        path = files.get(name)
        if path is None:
            continue
        order[str(Path(path))] = len(order)
        table, found = validate_table(schema, path, check_files)
        problems.extend(found)
        if table is not None:
            tables[name] = table

    for name, table in tables.items():
        file = str(table.raw.path)
        for fk in table.schema.foreign_keys:
            target = tables.get(fk["table"])
            cols = fk["columns"]
            if target is None or not all(c in table.raw.cells for c in cols):
                continue
            known = target.key_set(target.schema.primary_key)
            mask = np.ones(table.columns.n_rows, dtype=bool)
            for c in cols:
                mask &= table.raw.cells[c].notna().to_numpy()
            if mask.any():
                keys = pd.MultiIndex.from_frame(table.raw.cells[cols])
                mask &= ~keys.isin(list(known)) if known else True
            for i in np.flatnonzero(mask):
                value = tuple(table.raw.cells[c].iat[i] for c in cols)
                shown = value[0] if len(value) == 1 else value
                problems.append(Problem(
                    file, int(table.raw.row_numbers[i]), cols[-1], value[-1],
                    f"{', '.join(cols)} {shown!r} is not in {target.raw.path.name}; add the patient "
                    f"there or remove this row", fk.get("x-severity", "error")))
    if open_slides and "slides" in tables:
        from lnmkit.cohort._slide_files import check_slide_files

        problems.extend(check_slide_files(tables["slides"]))
    return tables, _sort(problems, order)


def validate_cohort(directory, *, check_files=True, open_slides=None) -> list[Problem]:
    """Check a cohort folder and return every problem found, without raising.

    Reads the standard table files (``clinical.csv``, required; ``outcomes.csv``,
    ``radiology_nodes.csv``, ``slides.csv``, ``radiology_images.csv``, optional)
    and checks each against its schema and against the others; with
    ``check_files`` every named slide and image file must exist and every slide
    is opened (header, levels, microns per pixel, one small read per level).

    Parameters
    ----------
    directory : str or path-like
        The cohort folder.
    check_files : bool, default=True
        Check the files the tables name (False: the tables only).
    open_slides : bool, optional
        Open the slides; defaults to ``check_files``.

    Returns
    -------
    list of Problem
        Errors and warnings, sorted by file then row; empty when all is well.

    Examples
    --------
    >>> from lnmkit.cohort import validate_cohort
    >>> problems = validate_cohort("cohort/")  # doctest: +SKIP
    >>> [str(p) for p in problems if p.is_error]  # doctest: +SKIP
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        return [folder_problem(directory)]
    _, problems = validate_files(standard_files(directory), check_files=check_files,
                                 open_slides=check_files if open_slides is None else open_slides)
    return problems
