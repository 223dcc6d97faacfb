"""Validation and normalisation of a radiology node table (``radiology_nodes.csv``)."""

from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd

from lnmkit.exceptions import NodeTableError
from lnmkit.radiology._rules import normalize_station

__all__ = [
    "REQUIRED_NODE_COLUMNS",
    "OPTIONAL_NODE_COLUMNS",
    "NODE_MODALITIES",
    "canonical_modality",
    "normalize_patient_id",
    "validate_nodes",
]

REQUIRED_NODE_COLUMNS = ("patient_id", "node_id", "modality", "short_axis_mm")
OPTIONAL_NODE_COLUMNS = (
    "station", "long_axis_mm", "suv_max", "fatty_hilum", "irregular_margin", "necrosis", "enhancement", "mask_label",
)
NODE_MODALITIES = ("CT", "MRI", "PET-CT", "US")
_MODALITY_ALIASES = {
    "CT": "CT", "MRI": "MRI", "MR": "MRI", "PET-CT": "PET-CT", "PET/CT": "PET-CT", "PETCT": "PET-CT",
    "PET CT": "PET-CT", "US": "US", "EUS": "US", "PET": "PET", "PET-MRI": "PET-MRI", "PET/MRI": "PET-MRI",
}
_BINARY_COLUMNS = ("fatty_hilum", "irregular_margin", "necrosis")
_ENHANCEMENT = ("homogeneous", "heterogeneous")
_TRUE = {"1", "1.0", "true", "yes", "y"}
_FALSE = {"0", "0.0", "false", "no", "n"}


def _is_missing(value):
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def canonical_modality(value, allowed=NODE_MODALITIES):
    """Return the canonical spelling of a modality, or ``None`` if it is not allowed.

    Parameters
    ----------
    value : object
        Modality as written in a table (case and ``PET/CT`` vs ``PET-CT`` do not matter).
    allowed : tuple of str, default=NODE_MODALITIES
        Canonical modalities accepted.

    Returns
    -------
    str or None
    """
    if _is_missing(value):
        return None
    key = _MODALITY_ALIASES.get(" ".join(str(value).strip().upper().split()))
    return key if key in allowed else None


def normalize_patient_id(value):
    """Return a patient identifier as a string (``17.0`` read by pandas becomes ``"17"``).

    Parameters
    ----------
    value : object

    Returns
    -------
    str or None
        ``None`` for an empty identifier.
    """
    if _is_missing(value):
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
        return str(int(value))
    return str(value).strip() or None


def validate_nodes(nodes, *, source=None):
    """Check a node table and return a normalised copy.

    Every problem is collected before one :class:`~lnmkit.exceptions.NodeTableError`
    is raised, so that a user can fix the file in one pass.

    Parameters
    ----------
    nodes : pandas.DataFrame
        One row per imaged node with the columns of ``radiology_nodes.csv``.
    source : str, optional
        File name used in messages; defaults to ``nodes.attrs["path"]`` if set,
        else ``"radiology_nodes.csv"``.

    Returns
    -------
    pandas.DataFrame
        Same rows, default RangeIndex, with every column of ``radiology_nodes.csv``
        (optional ones filled with NaN): ``patient_id``/``node_id`` str, ``modality``
        canonical, ``station`` normalised (None if unknown), measurements float,
        binary findings float 0/1/NaN, ``enhancement`` lower-case or None.

    Raises
    ------
    TypeError
        If ``nodes`` is not a DataFrame.
    NodeTableError
        Listing every missing column and every bad value with its row and column.
    """
    if not isinstance(nodes, pd.DataFrame):
        raise TypeError(
            f"the radiology node table must be a pandas DataFrame; got {type(nodes).__name__}. "
            "Use Cohort.from_dir(folder).radiology_nodes, or read it with pandas.read_csv(path, "
            "dtype={'patient_id': str, 'node_id': str, 'station': str}) so that identifiers keep "
            "their leading zeros."
        )
    source = source or nodes.attrs.get("path") or nodes.attrs.get("source") or "radiology_nodes.csv"
    missing = [c for c in REQUIRED_NODE_COLUMNS if c not in nodes.columns]
    if missing:
        raise NodeTableError([
            f"{source}: required column {c!r} is missing (columns present: {list(map(str, nodes.columns))})"
            for c in missing
        ])
    # Patient ids may sit in the index (e.g. after set_index); the contract keeps them as a column.
    df = nodes.reset_index(drop=True).copy()
    for column in OPTIONAL_NODE_COLUMNS:
        if column not in df.columns:
            df[column] = np.nan
    problems = []

    def where(i):
        pid = df.at[i, "patient_id"]
        # Line numbers assume a CSV with one header line, the common case.
        return f"{source} row {i} (line {i + 2}, patient_id {pid!r})"

    df["patient_id"] = [normalize_patient_id(v) for v in df["patient_id"]]
    df["node_id"] = [normalize_patient_id(v) for v in df["node_id"]]
    for column in ("patient_id", "node_id"):
        for i in np.flatnonzero(df[column].isna().to_numpy()):
            problems.append(f"{where(i)}: column {column!r} is empty; every node needs a {column}")

    modalities = []
    for i, value in enumerate(df["modality"]):
        canonical = canonical_modality(value)
        if canonical is None:
            problems.append(
                f"{where(i)}: column 'modality' has unknown value {value!r}; allowed: {list(NODE_MODALITIES)}"
            )
        modalities.append(canonical)
    df["modality"] = modalities
    df["station"] = [normalize_station(v) for v in df["station"]]

    for column in ("short_axis_mm", "long_axis_mm", "suv_max", "mask_label"):
        df[column] = _numeric(df, column, where, problems, integer=(column == "mask_label"))
    short, long_ = df["short_axis_mm"].to_numpy(), df["long_axis_mm"].to_numpy()
    # A small tolerance: reports round both axes, sometimes to the same value.
    for i in np.flatnonzero(short > long_ + 1e-6):
        problems.append(
            f"{where(i)}: short_axis_mm {short[i]:g} is larger than long_axis_mm {long_[i]:g}; "
            "the short axis is the smaller diameter, swap the two values"
        )
    for column in _BINARY_COLUMNS:
        df[column] = _binary(df, column, where, problems)
    enhancement = []
    for i, value in enumerate(df["enhancement"]):
        if _is_missing(value):
            enhancement.append(None)
            continue
        text = str(value).strip().lower()
        if text not in _ENHANCEMENT:
            problems.append(
                f"{where(i)}: column 'enhancement' has unknown value {value!r}; allowed: {list(_ENHANCEMENT)} "
                "or empty"
            )
        enhancement.append(text)
    df["enhancement"] = enhancement

    if not problems:
        dup = df.duplicated(["patient_id", "node_id"], keep="first").to_numpy()
        for i in np.flatnonzero(dup):
            problems.append(
                f"{where(i)}: node_id {df.at[i, 'node_id']!r} appears twice for this patient; node ids "
                "must be unique within a patient (add the modality to the id if one node is reported twice)"
            )
    if problems:
        raise NodeTableError(problems)
    return df


def _numeric(df, column, where, problems, *, integer=False):
    values = np.full(len(df), np.nan)
    for i, value in enumerate(df[column]):
        if _is_missing(value):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            problems.append(f"{where(i)}: column {column!r} must be a number; got {value!r}")
            continue
        if not math.isfinite(number) or number < 0:
            problems.append(f"{where(i)}: column {column!r} must be a finite number >= 0; got {value!r}")
            continue
        if integer and (not number.is_integer() or number < 1):
            problems.append(
                f"{where(i)}: column {column!r} must be an integer mask label >= 1 (0 is background); got {value!r}"
            )
            continue
        values[i] = number
    return values


def _binary(df, column, where, problems):
    values = np.full(len(df), np.nan)
    for i, value in enumerate(df[column]):
        if _is_missing(value):
            continue
        text = str(value).strip().lower()
        if text in _TRUE:
            values[i] = 1.0
        elif text in _FALSE:
            values[i] = 0.0
        else:
            problems.append(f"{where(i)}: column {column!r} must be 0, 1 or empty; got {value!r}")
    return values
