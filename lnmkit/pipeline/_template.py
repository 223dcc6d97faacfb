"""``lnmkit init-config``: a commented default configuration for a cohort folder."""

from __future__ import annotations

import json
from pathlib import Path

from lnmkit._io import atomic_write_text
from lnmkit.pipeline._config import BINARY_ENDPOINTS, _csv_columns

__all__ = ["default_config_text", "write_default_config"]

_TEMPLATE = """\
# lnmkit pipeline configuration: run it with `lnmkit run {config_name}`.
# Every key is optional except `cohort`; unknown keys are refused. Relative paths are
# taken relative to this file's folder. Changing a key reruns exactly the stages that
# depend on it; `dask` settings change where stages run, never what they produce.

cohort: {cohort}        # folder with clinical.csv (+ outcomes, radiology_nodes, slides, radiology_images)
output: {output}        # run folder: one subfolder and stage.json per stage
seed: 0                 # seeds the folds and the training of every model

slides:                 # slide -> tissue -> tiles -> encoder -> one HDF5 bag per slide
  enabled: {slides_enabled}         # false for a tables-only cohort (no slides.csv)
  encoder: stain-texture  # stain-texture (no weights) | resnet50-trunc | uni | uni2-h | conch | virchow2 | ...
  weights: null         # checkpoint file of a neural encoder (.safetensors / .pth / .bin)
  device: null          # torch device of a neural encoder: cpu | cuda | auto
  mpp: 0.5              # microns per pixel of the tiles (0.5 = 20x)
  tile_size: null       # tile side in pixels at `mpp`; null: the encoder's (stain-texture 160, UNI 224, ...)
  min_tissue: 0.5       # least tissue fraction of a kept tile
  batch_size: 64        # tiles read and encoded together

mil:                    # attention MIL, cross-fitted by patient: out-of-fold slide scores
  enabled: {mil_enabled}         # needs slides (the feature bags) and a binary endpoint
  arch: null            # instance | abmil | gated-abmil | clam-sb | mean | max; null: MILClassifier's default
  n_splits: 5           # cross-fitting folds
  tasks: {mil_tasks}      # heads: lnm (pn_status), otc (occult tumour cells), survival (os)
  max_epochs: null      # null: MILClassifier's default
  max_tiles: null       # training subsample of tiles per bag and epoch; null: default
  averaging_epochs: null  # weight-averaging window in epochs; 0 turns it off; null: default
  val_fraction: null    # share of patients held out for early stopping; null: default (0, every patient trains)
  weight_decay: null    # AdamW weight decay; null: MILClassifier's default
  n_init: null          # networks trained per fold, the lowest training loss kept; null: default (1)
  annotations: null     # folder of tumour annotations (<slide_id>.geojson from QuPath, or masks): localisation AUC
  annotation_classes: null  # e.g. [Tumor]: keep only these QuPath classes; null: every annotated area

radiology:              # radiology node table (and node images) -> patient-level rad_* features
  enabled: {radiology_enabled}         # needs radiology_nodes.csv
  cancer: gastric       # size criterion and N category preset: gastric | general
  images: {images}         # add node radiomics from radiology_images.csv
  modality: null        # with images: only this modality (CT | MRI | PET | PET-CT)
  resample_mask: false  # with images: resample masks whose grid differs from the image's

endpoints:              # what the patient-level models predict
  binary: {binary}        # lnm (pn_status) | otc
  survival: {survival}      # e.g. os, rfs: each needs <name>_months and <name>_event in outcomes.csv

models:                 # final models on the fusion table, fitted on every patient
  enabled: {models_enabled}         # needs an endpoint
  lnm: logistic         # LNM classifier: logistic (L2) | xgboost
  survival: cox         # survival model: cox | random-forest | gradient-boosting | xgb-cox
  penalizer: 0.1        # ridge penalty of the Cox model

evaluation:             # honest performance: nested cross-validation split by patient
  enabled: {models_enabled}         # needs an endpoint; costs (n_splits x (inner_splits + 1) + n_splits) MIL fits
  n_splits: 5           # outer folds (also those of the nested MIL slide scores)
  inner_splits: 3       # inner folds (MIL stacking and hyperparameters)
  n_bootstrap: 200      # bootstrap resamples of each AUC / C-index interval
  level: 0.95           # confidence level of the intervals

nomogram:               # rms-style nomograms: logistic (LNM) and Cox (first survival endpoint)
  enabled: {models_enabled}         # needs an endpoint
  predictors: {nomogram_predictors}  # fusion-table columns
  splines: []           # numeric predictors entered as restricted cubic splines (4 knots)
  times: [24, 60]       # survival horizons in months of the Cox nomogram's S(t) axes
  bootstrap: 200        # resamples of the optimism-corrected validation and calibration (0: skip)

reports:                # self-contained HTML: the cohort's model report and patient reports
  enabled: {models_enabled}         # needs the models
  patients: []          # patient_ids with a patient report; empty: the first n_patients
  n_patients: 3         # patient reports written when `patients` is empty

dask:                   # where the slide stages run (feature extraction, one task per slide)
  cluster: local        # local (processes on this machine) | none (in this process) | slurm | pbs
  scheduler: null       # address of a running scheduler, e.g. tcp://10.0.0.5:8786 (overrides cluster)
  n_workers: null       # local cluster: worker processes; null: one per CPU of this machine
  jobqueue: null        # slurm/pbs settings, e.g. {{cores: 8, memory: 32GB, queue: gpu, walltime: "02:00:00", jobs: 4}}
"""


def _flow(values):
    return json.dumps(list(values))


def default_config_text(cohort_dir, output="lnmkit-run", config_name="config.yaml") -> str:
    """The commented default configuration, with what the cohort holds switched on.

    Parameters
    ----------
    cohort_dir : str or path-like
        The cohort folder; stages whose tables it lacks are switched off and the
        endpoints are those its outcome table has.
    output : str or path-like, default="lnmkit-run"
        The run folder written into the configuration.
    config_name : str, default="config.yaml"
        Name of the file, quoted in its first comment.

    Returns
    -------
    str
    """
    cohort = Path(cohort_dir)
    has_slides = (cohort / "slides.csv").is_file()
    outcomes = _csv_columns(cohort / "outcomes.csv") if (cohort / "outcomes.csv").is_file() else None

    def has_values(column):
        return outcomes is not None and column in outcomes.columns and (outcomes[column].str.strip() != "").any()

    binary = [name for name, column in BINARY_ENDPOINTS.items() if has_values(column)]
    survival = [] if outcomes is None else [
        c[: -len("_months")] for c in outcomes.columns
        if c.endswith("_months") and f"{c[: -len('_months')]}_event" in outcomes.columns and has_values(c)]
    mil_tasks = [t for t in ("lnm", "otc") if t in binary] or ["lnm"]
    return _TEMPLATE.format(
        config_name=config_name, cohort=json.dumps(str(cohort)), output=json.dumps(str(output)),
        slides_enabled=str(has_slides).lower(), mil_enabled=str(has_slides and bool(binary)).lower(),
        mil_tasks=_flow(mil_tasks), radiology_enabled=str((cohort / "radiology_nodes.csv").is_file()).lower(),
        images=str((cohort / "radiology_images.csv").is_file()).lower(),
        binary=_flow(binary), survival=_flow(survival[:1]),
        models_enabled=str(bool(binary or survival)).lower(),
        nomogram_predictors=_flow(["age", "ct_stage", "rad_n_suspicious"] + (["slide_lnm_score"] if has_slides else [])))


def write_default_config(cohort_dir, path="config.yaml", output="lnmkit-run", *, overwrite=False):
    """Write :func:`default_config_text` to ``path``.

    Parameters
    ----------
    cohort_dir : str or path-like
    path : str or path-like, default="config.yaml"
    output : str or path-like, default="lnmkit-run"
    overwrite : bool, default=False

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    FileNotFoundError
        If ``cohort_dir`` is not a folder.
    """
    path = Path(path)
    if not Path(cohort_dir).is_dir():
        raise FileNotFoundError(f"init-config: cohort folder {str(cohort_dir)!r} does not exist.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"init-config: {path} exists; pass overwrite=True (CLI: --overwrite) or "
                              "choose another file name.")
    atomic_write_text(path, default_config_text(cohort_dir, output=output, config_name=path.name))
    return path
