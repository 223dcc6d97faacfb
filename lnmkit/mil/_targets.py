"""Turn an outcomes table into training targets for the MIL heads."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lnmkit.exceptions import MILInputError

__all__ = ["encode_targets", "lnm_labels", "SCORE_COLUMNS"]

SCORE_COLUMNS = {"lnm": "lnm_score", "otc": "otc_score", "survival": "risk_score"}

_PN = {"pn0": 0.0, "pn+": 1.0, "0": 0.0, "1": 1.0, "false": 0.0, "true": 1.0, "0.0": 0.0, "1.0": 1.0}


def _binary(series, column, allowed_text, where):
    out = np.full(len(series), np.nan)
    for i, (pid, v) in enumerate(series.items()):
        if v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip()):
            continue
        if pd.isna(v):
            continue
        key = str(v).strip().lower()
        if key not in _PN:
            raise MILInputError(
                f"{where}: column {column!r} must be {allowed_text} (empty = unknown); "
                f"got {v!r} for patient_id {pid!r}."
            )
        out[i] = _PN[key]
    return out


def lnm_labels(y, where="lnm_labels"):
    """``pn_status`` as floats: 1 for pN+, 0 for pN0, NaN when unknown.

    Parameters
    ----------
    y : pandas.DataFrame
        Indexed by patient_id with a ``pn_status`` column (pN0/pN+ or 0/1).
    where : str
        Caller name for error messages.

    Returns
    -------
    pandas.Series of float, indexed like ``y``
    """
    if "pn_status" not in y.columns:
        raise MILInputError(
            f"{where}: the outcomes table needs a 'pn_status' column (pN0/pN+); "
            f"columns are {list(y.columns)}."
        )
    return pd.Series(_binary(y["pn_status"], "pn_status", "'pN0' or 'pN+' (or 0/1)", where), index=y.index)


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
    out = {"lnm": lnm_labels(y, where).to_numpy(float)}
    if "otc" in tasks:
        if "otc" not in y.columns:
            raise MILInputError(f"{where}: task 'otc' needs an 'otc' column (0/1, empty = unknown) in y.")
        out["otc"] = _binary(y["otc"], "otc", "0 or 1", where)
    if "survival" in tasks:
        tcol, ecol = f"{survival_endpoint}_months", f"{survival_endpoint}_event"
        for c in (tcol, ecol):
            if c not in y.columns:
                raise MILInputError(f"{where}: task 'survival' needs column {c!r} in y.")
        time = pd.to_numeric(y[tcol], errors="coerce").to_numpy(float)
        bad = np.isfinite(time) & (time <= 0)
        if bad.any():
            pid = y.index[np.argmax(bad)]
            raise MILInputError(f"{where}: column {tcol!r} must be > 0; got {y.loc[pid, tcol]!r} for {pid!r}.")
        out["time"] = time
        out["event"] = _binary(y[ecol], ecol, "0 or 1", where)
    return out
