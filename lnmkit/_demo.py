"""The demo job: every stage of lnmkit on a built-in synthetic cohort."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lnmkit._io import atomic_path

__all__ = ["DemoResult", "run_demo"]


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its outputs and what it measured.

    Attributes
    ----------
    out_dir : pathlib.Path
        Root of every output.
    cohort_dir : pathlib.Path
        The synthetic cohort (tables, slides, planted truth).
    features_dir : pathlib.Path
        The feature-extraction run folder (bags, tissue masks, manifest).
    mil_dir : pathlib.Path
        Out-of-fold MIL scores, attention, metrics and fold models.
    patient_table : pandas.DataFrame
        One row per patient: clinical table, radiology node features and out-of-fold
        slide scores, indexed by ``patient_id``.
    metrics : dict
        Out-of-fold MIL metrics (``metrics.json``).
    """

    out_dir: Path
    cohort_dir: Path
    features_dir: Path
    mil_dir: Path
    patient_table: pd.DataFrame
    metrics: dict

    def summary_lines(self):
        """Human-readable lines describing the results.

        Returns
        -------
        list of str
        """
        lines = [f"patients: {len(self.patient_table)}"]
        for task, values in self.metrics.get("auc", {}).items():
            if values.get("auc") is not None:
                lines.append(f"out-of-fold {task.upper()} AUC: {values['auc']:.3f} "
                             f"(95% CI {values['auc_lower_95']:.3f}-{values['auc_upper_95']:.3f})")
        localisation = self.metrics.get("attention_localisation")
        if localisation:
            lines.append(f"attention localisation AUC against planted tumour masks: "
                         f"{localisation['pooled_auc']:.3f}")
        lines += [
            f"cohort:        {self.cohort_dir}",
            f"feature bags:  {self.features_dir}",
            f"MIL outputs:   {self.mil_dir}",
            f"patient table: {self.out_dir / 'patient_table.csv'}",
        ]
        return lines


def run_demo(out_dir, n_patients=40, seed=0, slide_size=4096, n_splits=5):
    """Run every stage on a synthetic cohort: synth, validate, features, MIL, radiology.

    Each stage resumes from what an earlier run left in ``out_dir``: the cohort is
    generated once, finished slides are not extracted again.

    Parameters
    ----------
    out_dir : str or path-like
        Folder for all outputs.
    n_patients : int, default=40
        Patients in the synthetic cohort.
    seed : int, default=0
        Seed of the cohort and of model training.
    slide_size : int, default=4096
        Level-0 width in pixels of the 40x synthetic slides.
    n_splits : int, default=5
        Cross-fitting folds of the MIL model, split by patient.

    Returns
    -------
    DemoResult
    """
    from lnmkit.cohort import Cohort
    from lnmkit.features import extract
    from lnmkit.mil import run_mil
    from lnmkit.radiology import NodeFeatures
    from lnmkit.synth import make_cohort

    out_dir = Path(out_dir)
    cohort_dir = out_dir / "cohort"
    if not (cohort_dir / "clinical.csv").exists():
        make_cohort(cohort_dir, n_patients=n_patients, seed=seed, slide_size=slide_size)
    cohort = Cohort.from_dir(cohort_dir)
    feature_set = extract(cohort, out_dir / "features")
    mil_dir = out_dir / "mil"
    run = run_mil(feature_set.root, cohort_dir, mil_dir, n_splits=n_splits, seed=seed)
    radiology = NodeFeatures("gastric").fit_transform(cohort)
    slide_scores = run.result.oof[["lnm_score", "otc_score"]].add_prefix("slide_")
    table = cohort.clinical.join(radiology).join(slide_scores)
    with atomic_path(out_dir / "patient_table.csv") as tmp:
        table.to_csv(tmp)
    with atomic_path(out_dir / "demo_summary.json") as tmp:
        tmp.write_text(json.dumps({"mil": run.metrics, "n_patients": len(table)}, indent=2))
    return DemoResult(out_dir=out_dir, cohort_dir=cohort_dir, features_dir=Path(feature_set.root),
                      mil_dir=mil_dir, patient_table=table, metrics=run.metrics)
