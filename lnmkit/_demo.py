"""The demo job: the default pipeline configuration on a built-in synthetic cohort."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lnmkit._io import atomic_path, atomic_write_text

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
    pipeline : lnmkit.pipeline.PipelineResult
        Which stages ran or were up to date, with their ``stage.json`` records.
    evaluation : dict
        Nested cross-validated AUC (LNM) and C-index (survival) with CIs per
        feature set (``evaluation/summary.json``).
    report : pathlib.Path
        The cohort's model report, ``reports/report.html``.
    """

    out_dir: Path
    cohort_dir: Path
    features_dir: Path
    mil_dir: Path
    patient_table: pd.DataFrame
    metrics: dict
    pipeline: object = None
    evaluation: dict = None
    report: Path = None

    def summary_lines(self):
        """Human-readable lines describing the results.

        Returns
        -------
        list of str
        """
        def number(value):
            return "n/a" if value is None or value != value else f"{value:.3f}"

        lines = [f"patients: {len(self.patient_table)}"]
        for task, values in self.metrics.get("auc", {}).items():
            if values.get("auc") is None or values["auc"] != values["auc"]:
                lines.append(f"out-of-fold {task.upper()} AUC: n/a (needs both classes; "
                             f"{values.get('n', 0)} patients, {values.get('n_pos', 0)} positive)")
            else:
                lines.append(f"out-of-fold {task.upper()} AUC: {number(values['auc'])} "
                             f"(95% CI {number(values.get('auc_lower_95'))}-{number(values.get('auc_upper_95'))})")
        localisation = self.metrics.get("attention_localisation")
        if localisation:
            lines.append(f"attention localisation AUC against planted tumour masks: "
                         f"{number(localisation.get('pooled_auc'))}")
        lines += self.results_lines()
        lines += [
            f"cohort:        {self.cohort_dir}",
            f"feature bags:  {self.features_dir}",
            f"MIL outputs:   {self.mil_dir}",
            f"patient table: {self.out_dir / 'patient_table.csv'}",
        ]
        if self.report is not None:
            lines.append(f"report:        {self.report}")
        return lines

    def results_lines(self):
        """The nested cross-validated results as a small text table (AUC, C-index, CIs).

        Returns
        -------
        list of str
        """
        return self.pipeline.results_lines() if self.pipeline is not None else []


def _ensure_cohort(cohort_dir, n_patients, seed, slide_size, progress):
    """Generate the synthetic cohort unless ``cohort_dir`` holds one made with the same parameters."""
    from lnmkit.synth import load_truth, make_cohort

    wanted = {"n_patients": int(n_patients), "seed": int(seed), "slide_size": int(slide_size), "slides": True}
    if (cohort_dir / "clinical.csv").exists():
        try:
            made = load_truth(cohort_dir)["parameters"]
        except (OSError, KeyError, ValueError):
            raise FileExistsError(f"{cohort_dir} holds a cohort that lnmkit.synth did not write (no readable "
                                  "truth/truth.json); choose another --out folder.") from None
        if all(made.get(k) == v for k, v in wanted.items()):
            return False
    make_cohort(cohort_dir, n_patients=n_patients, seed=seed, slide_size=slide_size, overwrite=True,
                progress=progress)
    return True


def demo_config(out_dir, seed=0, n_splits=5, overrides=None):
    """The demo's pipeline configuration: the defaults for ``out_dir/cohort``, run into ``out_dir``.

    Parameters
    ----------
    out_dir : str or path-like
    seed : int, default=0
    n_splits : int, default=5
    overrides : dict, optional
        Dotted configuration keys replacing the defaults (``{"dask.cluster": "none"}``).

    Returns
    -------
    lnmkit.pipeline.PipelineConfig
    """
    import yaml

    from lnmkit.pipeline import default_config_text, load_config

    out_dir = Path(out_dir).resolve()
    data = yaml.safe_load(default_config_text(out_dir / "cohort", output=out_dir))
    data["seed"] = int(seed)
    data["mil"]["n_splits"] = int(n_splits)
    data["evaluation"]["n_splits"] = int(n_splits)
    # demo-sized resampling: rms's own default for validate/calibrate is B=40
    data["nomogram"]["bootstrap"] = 40
    data["reports"]["n_patients"] = 2
    # The planted tumour, written as QuPath GeoJSON, plays the pathologist's annotations.
    data["mil"]["annotations"] = str(out_dir / "cohort" / "truth" / "annotations")
    return load_config(data, overrides=overrides)


def run_demo(out_dir, n_patients=40, seed=0, slide_size=4096, n_splits=5, *, overrides=None, progress=True):
    """Make the synthetic cohort and run the default pipeline configuration on it.

    The cohort is regenerated when ``out_dir/cohort`` was made with another
    ``n_patients``, ``seed`` or ``slide_size``, and kept otherwise. The pipeline
    then skips every stage whose inputs did not change and resumes an
    interrupted one (finished slides are not extracted again). The
    configuration used is written to ``out_dir/demo_config.yaml``: ``lnmkit run``
    on it repeats the run.

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
    overrides : dict, optional
        Dotted configuration keys replacing the defaults (``{"dask.cluster": "none"}``).
    progress : bool, default=True
        Show progress bars.

    Returns
    -------
    DemoResult
    """
    import yaml

    from lnmkit.pipeline import run_pipeline

    out_dir = Path(out_dir)
    cohort_dir = out_dir / "cohort"
    if _ensure_cohort(cohort_dir, n_patients, seed, slide_size, progress) or not (
            cohort_dir / "truth" / "annotations").is_dir():
        from lnmkit.synth import write_planted_annotations

        write_planted_annotations(cohort_dir, cohort_dir / "truth" / "annotations")
    config = demo_config(out_dir, seed=seed, n_splits=n_splits, overrides=overrides)
    atomic_write_text(out_dir / "demo_config.yaml",
                      "# The configuration `lnmkit demo` ran; `lnmkit run` on this file repeats it.\n"
                      + yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    pipeline = run_pipeline(config, progress=progress)

    metrics = json.loads(pipeline.output("mil", "metrics").read_text())
    fusion = pipeline.output("fusion", "table")
    table = pd.read_csv(fusion, index_col="patient_id", dtype={"patient_id": str})
    with atomic_path(out_dir / "patient_table.csv") as tmp:
        table.to_csv(tmp)
    evaluation = (json.loads(pipeline.output("evaluation", "summary").read_text())
                  if "evaluation" in pipeline.records else {})
    report = pipeline.output("reports", "report") if "reports" in pipeline.records else None
    atomic_write_text(out_dir / "demo_summary.json",
                      json.dumps({"mil": metrics, "evaluation": evaluation, "n_patients": len(table),
                                  "report": None if report is None else str(report)}, indent=2))
    return DemoResult(out_dir=out_dir, cohort_dir=cohort_dir, features_dir=pipeline.output("features", "run"),
                      mil_dir=pipeline.output("mil", "metrics").parent, patient_table=table, metrics=metrics,
                      pipeline=pipeline, evaluation=evaluation, report=report)
