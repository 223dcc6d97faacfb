"""The pipeline's stages, each a small unit calling the public API of one subpackage."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lnmkit._io import atomic_path
from lnmkit.pipeline._config import ESTIMATOR_KEYS, PipelineConfig, encoder_kwargs
from lnmkit.pipeline._dask import dask_client
from lnmkit.pipeline._stage import Stage, StageResult, hash_file, hash_text, hash_tree
from lnmkit.pipeline._stages_models import (run_evaluation, run_explanations, run_fusion, run_mil_nested, run_models,
                                            run_nomogram, run_reports)

__all__ = ["StageContext", "STAGES", "stage_names"]

COHORT_TABLES = ("clinical.csv", "outcomes.csv", "radiology_nodes.csv", "slides.csv", "radiology_images.csv")


@dataclass
class StageContext:
    """What a running stage sees: the configuration, its folder and the records of earlier stages.

    Attributes
    ----------
    config : PipelineConfig
    run_dir : pathlib.Path
    stage_dir : pathlib.Path
    records : dict of str to StageRecord
        Finished stages of this run (those before this one).
    progress : bool
    """

    config: PipelineConfig
    run_dir: Path
    stage_dir: Path
    records: dict
    progress: bool = True
    _cache: dict = field(default_factory=dict)

    def cohort(self, check_files=False):
        """The cohort, loaded once per run (validation warnings are the validate stage's)."""
        from lnmkit.cohort import Cohort
        from lnmkit.exceptions import CohortValidationWarning

        key = ("cohort", check_files)
        if key not in self._cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CohortValidationWarning)
                self._cache[key] = Cohort.from_dir(self.config.cohort, check_files=check_files)
        return self._cache[key]

    def output(self, stage, name) -> Path:
        """Path of output ``name`` of an earlier stage."""
        return self.records[stage].output_path(self.run_dir, name)

    def client(self, n_tasks=None):
        """Context manager yielding the Dask client of the slide stages (or None: in-process)."""
        return dask_client(self.config.dask, n_tasks=n_tasks)


def _write_csv(frame, path, **kwargs):
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)
    return Path(path)


# -- validate --------------------------------------------------------------------------------------

def _run_validate(ctx: StageContext) -> StageResult:
    from lnmkit.cohort import Cohort, problems_frame
    from lnmkit.exceptions import CohortValidationWarning

    check_files = ctx.config.slides.enabled or ctx.config.radiology.images
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CohortValidationWarning)
        cohort = Cohort.from_dir(ctx.config.cohort, check_files=check_files)  # raises on any error
    problems = _write_csv(problems_frame(cohort.problems), ctx.stage_dir / "problems.csv", index=False)
    summary = _write_csv(cohort.summary(), ctx.stage_dir / "summary.csv")
    return StageResult({"problems": problems, "summary": summary},
                       {"n_patients": int(len(cohort.patients)), "n_warnings": len(cohort.problems)})


# -- features --------------------------------------------------------------------------------------

def _slide_files_hash(config: PipelineConfig) -> str:
    """Size and modification time of every slide file: cheap enough for thousands of slides."""
    slides_csv = Path(config.cohort) / "slides.csv"
    if not slides_csv.is_file():
        return "absent"
    table = pd.read_csv(slides_csv, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    parts = []
    for rel in table.get("path", pd.Series(dtype=str)):
        path = Path(rel) if Path(rel).is_absolute() else Path(config.cohort) / rel
        try:
            st = path.stat()
            parts.append(f"{rel}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{rel}:missing")
    return hash_text("\n".join(parts))


def _features_digest(outputs) -> dict:
    from lnmkit.features import open_features

    run = Path(outputs["run"])
    if not (run / "params.json").is_file():
        return {"run": "absent"}
    feature_set = open_features(run)
    # 'seconds' varies between runs that produce the same bags; a deleted bag must show
    manifest = feature_set.manifest.drop(columns=["seconds"])
    sizes = [f"{s}:{feature_set.bag_path(s).stat().st_size if feature_set.bag_path(s).is_file() else 'missing'}"
             for s in feature_set.slide_ids]
    return {"params": hash_file(run / "params.json"), "manifest": hash_text(manifest.to_csv()),
            "bags": hash_text("\n".join(sizes))}


def _slide_fingerprints(cohort) -> pd.DataFrame:
    rows = []
    for slide_id, row in cohort.slides.iterrows():
        st = Path(row["path"]).stat()
        mpp = row.get("mpp")
        rows.append({"slide_id": str(slide_id), "path": str(row["path"]), "size": int(st.st_size),
                     "mtime_ns": int(st.st_mtime_ns), "mpp": "" if mpp is None or pd.isna(mpp) else repr(float(mpp))})
    return pd.DataFrame(rows, columns=["slide_id", "path", "size", "mtime_ns", "mpp"]).set_index("slide_id")


def _forget_changed_slides(stage_dir: Path, current: pd.DataFrame):
    """Delete the bags of slides whose file changed since they were extracted.

    :func:`lnmkit.features.extract` resumes by slide id; a slide file replaced
    under the same id (a regenerated cohort, a rescanned slide) must not keep
    its old bag. The fingerprints are written before extraction starts, so every
    bag in the folder was made from the file they describe.
    """
    path = stage_dir / "slide_files.csv"
    if path.is_file():
        old = pd.read_csv(path, dtype=str, keep_default_na=False).set_index("slide_id")
        now = current.astype(str)
        common = old.index.intersection(now.index)
        changed = [s for s in common if not old.loc[s, now.columns].equals(now.loc[s])]
        for slide_id in changed:
            for bag in stage_dir.glob(f"*/h5/{slide_id}.h5"):
                bag.unlink()
    _write_csv(current, path)


def _run_features(ctx: StageContext) -> StageResult:
    from lnmkit.features import extract

    slides = ctx.config.slides
    cohort = ctx.cohort(check_files=True)
    _forget_changed_slides(ctx.stage_dir, _slide_fingerprints(cohort))
    with ctx.client(n_tasks=len(cohort.slides)) as client:
        feature_set = extract(cohort, ctx.stage_dir, encoder=slides.encoder, mpp=slides.mpp,
                              tile_size=slides.tile_size, min_tissue=slides.min_tissue,
                              batch_size=slides.batch_size, client=client,
                              encoder_kwargs=encoder_kwargs(slides), progress=ctx.progress)
    counts = feature_set.manifest["status"].value_counts().to_dict()
    return StageResult({"run": feature_set.root},
                       {"slides": {k: int(v) for k, v in counts.items()},
                        "n_tiles": int(feature_set.manifest["n_tiles"].sum())})


# -- MIL -------------------------------------------------------------------------------------------

def _run_mil(ctx: StageContext) -> StageResult:
    from lnmkit.mil import run_mil

    mil = ctx.config.mil
    params = mil.estimator_params()
    arch = {"arch": params.pop("arch")} if "arch" in params else {}
    run = run_mil(ctx.output("features", "run"), ctx.config.cohort, ctx.stage_dir, **arch,
                  n_splits=mil.n_splits, seed=ctx.config.seed, tasks=tuple(mil.tasks), estimator_params=params,
                  progress=ctx.progress, annotations=mil.annotations, annotation_classes=mil.annotation_classes)
    summary = {"auc": {t: v.get("auc") for t, v in run.metrics.get("auc", {}).items()},
               "n_patients": run.metrics.get("n_patients")}
    if run.metrics.get("attention_localisation"):
        summary["attention_localisation_auc"] = run.metrics["attention_localisation"].get("pooled_auc")
    return StageResult({"oof_scores": ctx.stage_dir / "oof_scores.csv", "metrics": ctx.stage_dir / "metrics.json",
                        "attention": ctx.stage_dir / "attention", "models": ctx.stage_dir / "models"}, summary)


def _annotation_inputs(config) -> dict:
    folder = config.mil.annotations
    return {} if folder is None else {"annotations": hash_tree(folder)}


# -- radiology -------------------------------------------------------------------------------------

def _run_radiology(ctx: StageContext) -> StageResult:
    from lnmkit.radiology import NodeFeatures, NodeRadiomics

    rad = ctx.config.radiology
    cohort = ctx.cohort(check_files=rad.images)
    table = NodeFeatures(rad.cancer).fit_transform(cohort)
    if rad.images:
        table = table.join(NodeRadiomics(modality=rad.modality, resample_mask=rad.resample_mask)
                           .fit_transform(cohort))
    path = _write_csv(table, ctx.stage_dir / "radiology_features.csv")
    return StageResult({"features": path}, {"n_patients": int(len(table)), "n_columns": int(table.shape[1])})


# the MIL keys that shape each fitted network (not its folds, nor the localisation annotations)
_MIL_MODEL_KEYS = ("mil.enabled", "mil.tasks") + tuple(f"mil.{k}" for k in ESTIMATOR_KEYS)


def _fusion_reads(config) -> tuple:
    nested = config.mil.enabled and config.evaluation.enabled
    return (("mil_nested",) if nested else ("mil",)) + ("radiology",)


# -- the registry ----------------------------------------------------------------------------------

STAGES = (
    Stage("validate", _run_validate, cohort_files=COHORT_TABLES, config_keys=("slides.enabled", "radiology.images"),
          description="check the cohort tables against data_schemas/"),
    Stage("features", _run_features, requires=("validate",), config_keys=("slides",),
          cohort_files=("slides.csv",), slide_files=True, enabled=lambda c: c.slides.enabled,
          digest=_features_digest, description="tissue, tiles and tile features of every slide (resumable)"),
    Stage("mil", _run_mil, requires=("features",), config_keys=("mil", "seed"),
          cohort_files=("clinical.csv", "outcomes.csv", "slides.csv"), enabled=lambda c: c.mil.enabled,
          extra_inputs=_annotation_inputs,
          description="cross-fitted attention MIL: out-of-fold slide scores and attention"),
    Stage("radiology", _run_radiology, requires=("validate",), config_keys=("radiology",),
          cohort_files=("clinical.csv", "radiology_nodes.csv", "radiology_images.csv"),
          enabled=lambda c: c.radiology.enabled, description="patient-level node features"),
    Stage("mil_nested", run_mil_nested, requires=("features",),
          config_keys=_MIL_MODEL_KEYS + ("seed", "evaluation.n_splits", "evaluation.inner_splits"),
          cohort_files=("clinical.csv", "outcomes.csv", "slides.csv"),
          enabled=lambda c: c.mil.enabled and c.evaluation.enabled,
          description="slide scores out-of-fold at both levels of the nested evaluation"),
    Stage("fusion", run_fusion, requires=("validate",), reads=("mil", "mil_nested", "radiology"),
          choose_reads=_fusion_reads,
          cohort_files=("clinical.csv", "outcomes.csv"),
          description="one row per patient: clinical, radiology and slide-score columns"),
    Stage("models", run_models, requires=("fusion",), config_keys=("models", "endpoints", "seed"),
          cohort_files=("outcomes.csv",), enabled=lambda c: c.models.enabled,
          description="final LNM and survival models fitted on every patient"),
    Stage("evaluation", run_evaluation, requires=("fusion",), reads=("mil_nested",),
          config_keys=("evaluation", "models", "endpoints", "seed"), cohort_files=("outcomes.csv",),
          enabled=lambda c: c.evaluation.enabled,
          description="nested cross-validation: AUC and C-index with confidence intervals"),
    Stage("nomogram", run_nomogram, requires=("fusion",), config_keys=("nomogram", "endpoints", "seed"),
          cohort_files=("outcomes.csv",), enabled=lambda c: c.nomogram.enabled,
          description="rms-style nomograms with bootstrap validation and calibration"),
    Stage("explanations", run_explanations, requires=("fusion", "models"), config_keys=("models", "endpoints", "seed"),
          cohort_files=("outcomes.csv",), enabled=lambda c: c.models.enabled,
          description="SHAP values of the final models, modality shares, global plots"),
    Stage("reports", run_reports, requires=("fusion", "models"), reads=("features", "mil", "evaluation", "nomogram"),
          config_keys=("reports", "models", "endpoints", "nomogram", "evaluation", "seed"),
          cohort_files=COHORT_TABLES, slide_files=True,
          enabled=lambda c: c.reports.enabled and c.models.enabled,
          description="report.html (cohort model report, TRIPOD+AI) and patient reports"),
)


def stage_names() -> list[str]:
    """Names of the pipeline's stages, in running order."""
    return [s.name for s in STAGES]


def cohort_file_hash(config: PipelineConfig, name: str) -> str:
    path = Path(config.cohort) / name
    return hash_file(path) if path.is_file() else "absent"
