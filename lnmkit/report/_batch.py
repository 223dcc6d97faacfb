"""Write the reports of many patients (and the cohort) into a folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lnmkit._io import atomic_path

__all__ = ["write_reports"]


def write_reports(models, fusion_table, out_dir, patient_ids=None, *, cohort_report=True, pngs=False,
                  progress=True, performance=None, validation=None, **context):
    """Write ``<patient_id>.html`` per patient, ``cohort.html`` and ``index.csv`` into ``out_dir``.

    The cohort-wide work (SHAP values, tile shares, predictions, OTC flags) is done
    once in a :class:`ReportContext`; each patient then costs its figures only.

    Parameters
    ----------
    models : dict or estimator
        ``{"lnm": ..., "survival": ...}``.
    fusion_table : FusionTable or pandas.DataFrame
    out_dir : str or path-like
    patient_ids : list of str, optional
        Default: every patient of the fusion table.
    cohort_report : bool, default=True
        Also write ``cohort.html`` (needs ``outcomes`` in ``context``).
    pngs : bool, default=False
        Also write every figure as a PNG under ``png/``.
    progress : bool, default=True
    performance, validation : dict, optional
        Result objects for the cohort report (see :func:`cohort_report`).
    **context
        Passed to :class:`ReportContext` (``outcomes``, ``crossfit``, ``slides``,
        ``tile_size_level0``, ``nomogram``, ``provenance``, ``horizons``, ...).

    Returns
    -------
    pandas.DataFrame
        ``index.csv``: one row per patient with the report file and headline numbers.
    """
    from tqdm.auto import tqdm

    from lnmkit.report._cohort import cohort_report as _cohort_report
    from lnmkit.report._patient import ReportContext

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = ReportContext(models, fusion_table, **context)
    ids = list(ctx.frame.index) if patient_ids is None else [str(p) for p in patient_ids]
    rows = []
    for pid in tqdm(ids, desc="patient reports", disable=not progress):
        rep = ctx.patient_report(pid)
        rep.save(out / f"{pid}.html")
        if pngs:
            rep.save_pngs(out / "png")
        s = rep.summary
        rows.append({"patient_id": pid, "report": f"{pid}.html", "lnm_probability": s.get("lnm_probability"),
                     "lnm_lower": s.get("lnm_lower"), "lnm_upper": s.get("lnm_upper"),
                     "risk_group": s.get("risk_group"), "dominant_modality": s.get("dominant_modality"),
                     "otc_flag": s.get("otc_flag")})
    index = pd.DataFrame(rows).set_index("patient_id")
    with atomic_path(out / "index.csv") as tmp:
        index.to_csv(tmp)
    if cohort_report and ctx.outcomes is not None:
        crossfit = context.get("crossfit")
        rep = _cohort_report(ctx.models, fusion_table, ctx.outcomes, performance=performance, validation=validation,
                             provenance=context.get("provenance"),
                             crossfit=crossfit if hasattr(crossfit, "oof") else None,
                             endpoint=context.get("endpoint", "os"))
        rep.save(out / "cohort.html")
        if pngs:
            rep.save_pngs(out / "png")
    return index
