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

    The checks are those of ``data_schemas/radiology_nodes.json``, run by the
    cohort schema engine (the one that ``lnmkit validate`` and ``Cohort`` use),
    so a DataFrame is judged exactly as the CSV file would be. Every error is
    collected before one :class:`~lnmkit.exceptions.NodeTableError` is raised,
    each naming the file, the row as a spreadsheet shows it (header = row 1),
    the column and the value. Warning-level findings are left to
    ``lnmkit validate`` / ``Cohort.problems``.

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
        as in the schema, ``station`` normalised (None if unknown), measurements
        float, binary findings float 0/1/NaN, ``enhancement`` or None.

    Raises
    ------
    TypeError
        If ``nodes`` is not a DataFrame.
    NodeTableError
        Listing every missing column and every bad value with its row and column.
    """
    from lnmkit.cohort._validate import validate_frame

    if not isinstance(nodes, pd.DataFrame):
        raise TypeError(
            f"the radiology node table must be a pandas DataFrame; got {type(nodes).__name__}. "
            "Use Cohort.from_dir(folder).radiology_nodes, or read it with pandas.read_csv(path, "
            "dtype={'patient_id': str, 'node_id': str, 'station': str}) so that identifiers keep "
            "their leading zeros."
        )
    source = source or nodes.attrs.get("path") or nodes.attrs.get("source") or "radiology_nodes.csv"
    # Patient ids may sit in the index (e.g. after set_index); the contract keeps them as a column.
    if nodes.index.name == "patient_id" and "patient_id" not in nodes.columns:
        nodes = nodes.reset_index()
    table, problems = validate_frame("radiology_nodes", nodes, source=str(source), check_files=False)
    errors = [str(p) for p in problems if p.is_error]
    if errors:
        raise NodeTableError(errors)
    df = nodes.reset_index(drop=True).copy()
    values = table.columns.values
    for column in REQUIRED_NODE_COLUMNS + OPTIONAL_NODE_COLUMNS:
        if column not in values:
            df[column] = np.nan
        elif table.schema.column_type(column) == "string":
            df[column] = [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                          for v in values[column]]
        else:
            df[column] = values[column].to_numpy(dtype=float, na_value=np.nan)
    df["station"] = [normalize_station(v) for v in df["station"]]
    return df
