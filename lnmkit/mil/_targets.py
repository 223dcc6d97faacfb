"""Turn an outcomes table into training targets for the MIL heads."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lnmkit.exceptions import MILInputError

__all__ = ["encode_targets", "lnm_labels", "SCORE_COLUMNS"]

SCORE_COLUMNS = {"lnm": "lnm_score", "otc": "otc_score", "survival": "risk_score"}

_PN_CODE = {"pN0": 0.0, "pN+": 1.0}


def _checked(y, columns, where):
    """Parsed values of ``columns`` of ``y``, checked by the outcomes schema (the cohort engine).

    The same checks as ``outcomes.csv`` gets from ``lnmkit validate``: a
    DataFrame passed to the MIL is judged exactly as the file would be. Rows are
    numbered as a spreadsheet of the table shows them (header = row 1).
    """
    from lnmkit.cohort._schemas import load_schemas
    from lnmkit.cohort._validate import validate_frame

    schema = load_schemas()["outcomes"]
    cols = [c for c in dict.fromkeys(columns) if c in y.columns and c in schema.columns and c != "patient_id"]
    frame = y[cols].copy()
    frame.insert(0, "patient_id", [str(i) for i in y.index])
    table, problems = validate_frame(schema, frame.reset_index(drop=True), source="outcomes", check_files=False)
    errors = [p for p in problems if p.is_error]
    if errors:
        lines = []
        for p in errors[:10]:
            pid = frame["patient_id"].iat[p.row - 2] if p.row is not None and p.row >= 2 else None
            lines.append(f"{p}" + (f" (patient_id {pid!r})" if pid is not None else ""))
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise MILInputError(f"{where}: {len(errors)} problem(s) in the outcomes:\n  - " + "\n  - ".join(lines)
                            + more)
    return {c: table.columns.values[c] for c in cols}


def _unchecked_binary(series, column, where):
    """0/1 of a column no schema describes (an endpoint beyond os/rfs), NaN when empty."""
    values = pd.to_numeric(series, errors="coerce").to_numpy(float)
    bad = (series.notna().to_numpy() & np.isnan(values)) | (np.isfinite(values) & ~np.isin(values, (0.0, 1.0)))
    if bad.any():
        pid = series.index[np.argmax(bad)]
        raise MILInputError(f"{where}: column {column!r} must be 0 or 1 (empty = unknown); got "
                            f"{series.loc[pid]!r} for patient_id {pid!r}.")
    return values


def lnm_labels(y, where="lnm_labels"):
    """``pn_status`` as floats: 1 for pN+, 0 for pN0, NaN when unknown.

    Parameters
    ----------
    y : pandas.DataFrame
        Indexed by patient_id with a ``pn_status`` column coded as in
        ``outcomes.csv`` (``pN0`` / ``pN+``, empty = unknown).
    where : str
        Caller name for error messages.

    Returns
    -------
    pandas.Series of float, indexed like ``y``

    Raises
    ------
    lnmkit.exceptions.MILInputError
        If the column is missing or a value breaks the outcomes schema (row,
        value and patient_id named).
    """
    if "pn_status" not in y.columns:
        raise MILInputError(
            f"{where}: the outcomes table needs a 'pn_status' column (pN0/pN+); "
            f"columns are {list(y.columns)}."
        )
    values = _checked(y, ["pn_status"], where)["pn_status"]
    return pd.Series([_PN_CODE.get(v, np.nan) if isinstance(v, str) else np.nan for v in values],
                     index=y.index, dtype=float)


def encode_targets(y, patient_ids, tasks, survival_endpoint="os", where="MILClassifier.fit"):
    """Arrays of targets aligned with ``patient_ids``.

    Parameters
    ----------
    y : pandas.DataFrame
        Outcomes indexed by patient_id: ``pn_status``, ``otc`` (for the OTC task),
        ``<endpoint>_months`` and ``<endpoint>_event`` (for the survival task).
    patient_ids : sequence of str
    tasks : tuple of str
    survival_endpoint : str, default="os"
    where : str

    Returns
    -------
    dict of str to ndarray of float
        ``lnm`` and, depending on tasks, ``otc``, ``time`` and ``event``; NaN = unknown.
    """
    if not isinstance(y, pd.DataFrame):
        raise TypeError(
            f"{where}: y must be a pandas DataFrame indexed by patient_id; got {type(y).__name__}."
        )
    y = y.copy()
    y.index = y.index.astype(str)
    if y.index.has_duplicates:
        dup = y.index[y.index.duplicated()].unique()[:5].tolist()
        raise MILInputError(f"{where}: y has duplicated patient_id values {dup}.")
    missing = [p for p in patient_ids if p not in y.index]
    if missing:
        raise MILInputError(
            f"{where}: {len(missing)} patient(s) with a bag have no row in y, e.g. {missing[:5]}; "
            "drop those bags or add their outcomes."
        )
    y = y.loc[list(patient_ids)]
    if "pn_status" not in y.columns:
        raise MILInputError(
            f"{where}: the outcomes table needs a 'pn_status' column (pN0/pN+); "
            f"columns are {list(y.columns)}."
        )
    tcol, ecol = f"{survival_endpoint}_months", f"{survival_endpoint}_event"
    wanted = ["pn_status"] + (["otc"] if "otc" in tasks else []) + ([tcol, ecol] if "survival" in tasks else [])
    values = _checked(y, wanted, where)
    out = {"lnm": np.array([_PN_CODE.get(v, np.nan) if isinstance(v, str) else np.nan
                            for v in values["pn_status"]], dtype=float)}
    if "otc" in tasks:
        if "otc" not in y.columns:
            raise MILInputError(f"{where}: task 'otc' needs an 'otc' column (0/1, empty = unknown) in y.")
        out["otc"] = values["otc"].to_numpy(dtype=float, na_value=np.nan)
    if "survival" in tasks:
        for c in (tcol, ecol):
            if c not in y.columns:
                raise MILInputError(f"{where}: task 'survival' needs column {c!r} in y.")
        if tcol in values:  # os / rfs: checked by the outcomes schema
            out["time"] = values[tcol].to_numpy(dtype=float, na_value=np.nan)
            out["event"] = values[ecol].to_numpy(dtype=float, na_value=np.nan)
        else:
            time = pd.to_numeric(y[tcol], errors="coerce").to_numpy(float)
            bad = np.isfinite(time) & (time <= 0)
            if bad.any():
                pid = y.index[np.argmax(bad)]
                raise MILInputError(f"{where}: column {tcol!r} must be > 0; got {y.loc[pid, tcol]!r} for {pid!r}.")
            out["time"] = time
            out["event"] = _unchecked_binary(y[ecol], ecol, where)
    return out
