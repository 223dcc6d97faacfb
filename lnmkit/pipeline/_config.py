"""The pipeline configuration: a YAML file validated by pydantic.

Every section refuses unknown keys, and every problem becomes one line naming the
dotted key and the value it holds (:class:`lnmkit.exceptions.ConfigError`).
Checks that need the cohort (the folder exists, the endpoints are in its outcome
table, the encoder finds its weights) are made by :func:`check_config`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lnmkit._system import available_cpus
from lnmkit.exceptions import ConfigError

__all__ = [
    "PipelineConfig",
    "SlidesConfig",
    "MILConfig",
    "RadiologyConfig",
    "EndpointsConfig",
    "ModelsConfig",
    "EvaluationConfig",
    "NomogramConfig",
    "ReportsConfig",
    "DaskConfig",
    "JobqueueConfig",
    "load_config",
    "check_config",
    "config_hash",
]

BINARY_ENDPOINTS = {"lnm": "pn_status", "otc": "otc"}

# MILConfig keys passed on to MILClassifier as they are
ESTIMATOR_KEYS = ("arch", "max_epochs", "max_tiles", "averaging_epochs", "val_fraction", "weight_decay", "n_init")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlidesConfig(_Section):
    """How slides become tile-feature bags (:func:`lnmkit.features.extract`)."""

    enabled: bool = True
    encoder: str = "stain-texture"
    weights: Optional[Path] = None
    device: Optional[str] = None
    mpp: float = Field(0.5, gt=0)
    tile_size: Optional[int] = Field(None, ge=16)  # None: the encoder's input size
    min_tissue: float = Field(0.5, ge=0, le=1)
    batch_size: int = Field(64, ge=1)


class MILConfig(_Section):
    """Cross-fitted attention MIL (:func:`lnmkit.mil.run_mil`)."""

    enabled: bool = True
    # None: MILClassifier's default; the names are lnmkit.mil.ARCHITECTURES (a test keeps them equal)
    arch: Optional[Literal["instance", "abmil", "gated-abmil", "clam-sb", "mean", "max"]] = None
    n_splits: int = Field(5, ge=2)
    tasks: list[Literal["lnm", "otc", "survival"]] = Field(default_factory=lambda: ["lnm", "otc"])
    max_epochs: Optional[int] = Field(None, ge=1)
    max_tiles: Optional[int] = Field(None, ge=1)
    averaging_epochs: Optional[float] = Field(None, ge=0)
    val_fraction: Optional[float] = Field(None, ge=0, le=0.9)  # MILClassifier's bounds
    weight_decay: Optional[float] = Field(None, ge=0)
    n_init: Optional[int] = Field(None, ge=1)
    annotations: Optional[Path] = None
    annotation_classes: Optional[list[str]] = None

    @field_validator("tasks")
    @classmethod
    def _tasks_not_empty(cls, value):
        if not value:
            raise ValueError("needs at least one of lnm, otc, survival")
        if len(set(value)) != len(value):
            raise ValueError("lists a task twice")
        return value

    def estimator_params(self) -> dict:
        """:class:`~lnmkit.mil.MILClassifier` parameters set here (``None`` keeps its default)."""
        return {k: v for k, v in ((k, getattr(self, k)) for k in ESTIMATOR_KEYS) if v is not None}


class RadiologyConfig(_Section):
    """Patient-level node features (:class:`lnmkit.radiology.NodeFeatures`, ``NodeRadiomics``)."""

    enabled: bool = True
    cancer: Literal["gastric", "general"] = "gastric"
    images: bool = False
    modality: Optional[Literal["CT", "MRI", "PET", "PET-CT"]] = None
    resample_mask: bool = False


class EndpointsConfig(_Section):
    """Outcomes the models are fitted to and evaluated on."""

    binary: list[Literal["lnm", "otc"]] = Field(default_factory=lambda: ["lnm"])
    survival: list[str] = Field(default_factory=lambda: ["os"])


class ModelsConfig(_Section):
    """Patient-level models fitted on the fusion table (:mod:`lnmkit.models`)."""

    enabled: bool = True
    lnm: Literal["logistic", "xgboost"] = "logistic"
    survival: Literal["cox", "random-forest", "gradient-boosting", "xgb-cox"] = "cox"
    penalizer: float = Field(0.1, ge=0)


class EvaluationConfig(_Section):
    """Nested cross-validation by patient (:func:`lnmkit.models.compare_models`,
    :func:`lnmkit.evaluation.compare_survival_models`); its outer folds are also those
    of the nested MIL slide scores."""

    enabled: bool = True
    n_splits: int = Field(5, ge=2)
    inner_splits: int = Field(3, ge=2)
    n_bootstrap: int = Field(200, ge=0)
    level: float = Field(0.95, gt=0, lt=1)


class NomogramConfig(_Section):
    """rms-style nomograms on the fusion table (:func:`lnmkit.nomogram.write_nomogram`)."""

    enabled: bool = True
    predictors: list[str] = Field(default_factory=lambda: ["age", "ct_stage", "rad_n_suspicious",
                                                           "slide_lnm_score"])
    splines: list[str] = Field(default_factory=list)
    times: list[float] = Field(default_factory=lambda: [24.0, 60.0])
    bootstrap: int = Field(200, ge=0)

    @field_validator("predictors")
    @classmethod
    def _some_predictors(cls, value):
        if not value:
            raise ValueError("needs at least one predictor column")
        return value


class ReportsConfig(_Section):
    """Self-contained HTML reports (:mod:`lnmkit.report`)."""

    enabled: bool = True
    patients: list[str] = Field(default_factory=list)
    n_patients: int = Field(3, ge=0)


class JobqueueConfig(_Section):
    """Settings of a dask-jobqueue cluster (``SLURMCluster`` or ``PBSCluster``).

    ``jobs`` is the number of batch jobs submitted; every other key is passed to
    the cluster class unchanged.
    """

    cores: int = Field(..., ge=1)
    memory: str
    processes: Optional[int] = Field(None, ge=1)
    queue: Optional[str] = None
    account: Optional[str] = None
    walltime: Optional[str] = None
    job_extra_directives: list[str] = Field(default_factory=list)
    job_script_prologue: list[str] = Field(default_factory=list)
    local_directory: Optional[str] = None
    log_directory: Optional[str] = None
    interface: Optional[str] = None
    python: Optional[str] = None
    jobs: int = Field(1, ge=1)


class DaskConfig(_Section):
    """Where the slide stages run. Does not change any output, so it is never hashed."""

    cluster: Literal["local", "none", "slurm", "pbs"] = "local"
    scheduler: Optional[str] = None
    n_workers: Optional[int] = Field(None, ge=1)
    jobqueue: Optional[JobqueueConfig] = None

    @field_validator("scheduler")
    @classmethod
    def _address(cls, value):
        if value is not None and "://" not in value:
            raise ValueError("must be a scheduler address such as tcp://10.0.0.5:8786")
        return value

    @model_validator(mode="after")
    def _jobqueue_when_batch(self):
        if self.cluster in ("slurm", "pbs") and self.jobqueue is None and self.scheduler is None:
            raise ValueError(f"cluster {self.cluster!r} needs a 'jobqueue' section (cores, memory, ...)")
        return self


class PipelineConfig(_Section):
    """The whole ``lnmkit run`` configuration.

    Parameters
    ----------
    cohort : path
        Cohort folder (``clinical.csv`` and optionally ``outcomes.csv``,
        ``radiology_nodes.csv``, ``slides.csv``, ``radiology_images.csv``).
    output : path, default="lnmkit-run"
        Run folder; every stage writes into its own subfolder.
    seed : int, default=0
        Seed of folds and model training.
    slides, mil, radiology, endpoints, models, evaluation, nomogram, reports, dask : sections
        See :class:`SlidesConfig`, :class:`MILConfig`, :class:`RadiologyConfig`,
        :class:`EndpointsConfig`, :class:`ModelsConfig`, :class:`EvaluationConfig`,
        :class:`NomogramConfig`, :class:`ReportsConfig` and :class:`DaskConfig`.
    """

    cohort: Path
    output: Path = Path("lnmkit-run")
    seed: int = 0
    slides: SlidesConfig = Field(default_factory=SlidesConfig)
    mil: MILConfig = Field(default_factory=MILConfig)
    radiology: RadiologyConfig = Field(default_factory=RadiologyConfig)
    endpoints: EndpointsConfig = Field(default_factory=EndpointsConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    nomogram: NomogramConfig = Field(default_factory=NomogramConfig)
    reports: ReportsConfig = Field(default_factory=ReportsConfig)
    dask: DaskConfig = Field(default_factory=DaskConfig)

    def section(self, key):
        """The JSON-ready value of a dotted key (``"mil"``, ``"slides.mpp"``).

        Parameters
        ----------
        key : str

        Returns
        -------
        object
        """
        value = self.model_dump(mode="json")
        for part in key.split("."):
            value = value[part]
        return value


# -- errors ----------------------------------------------------------------------------------------

def _model_at(loc):
    """The section model a location points into (for listing the valid keys)."""
    model = PipelineConfig
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nxt = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nxt is None:
            return model
        model = nxt
    return model


def _error_lines(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        key = ".".join(str(p) for p in loc) or "(top level)"
        value = err.get("input")
        if err["type"] == "extra_forbidden":
            parent = _model_at([p for p in loc[:-1] if isinstance(p, str)])
            where = ".".join(str(p) for p in loc[:-1]) or "the top level"
            lines.append(f"{key}: unknown key (value {value!r}); valid keys in {where}: "
                         f"{', '.join(sorted(parent.model_fields))}")
        elif err["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "model_type" or isinstance(value, dict) and err["type"] != "value_error":
                lines.append(f"{key}: {msg}; got {type(value).__name__} {value!r}")
            else:
                lines.append(f"{key}: {msg}; got {value!r}")
    return lines


def _resolve_paths(data: dict, base: Path) -> dict:
    data = dict(data)
    for key in ("cohort", "output"):
        if isinstance(data.get(key), str) and not Path(data[key]).expanduser().is_absolute():
            data[key] = str(base / data[key])
    slides = data.get("slides")
    if isinstance(slides, dict) and isinstance(slides.get("weights"), str):
        weights = Path(slides["weights"]).expanduser()
        data["slides"] = {**slides, "weights": str(weights if weights.is_absolute() else base / weights)}
    mil = data.get("mil")
    if isinstance(mil, dict) and isinstance(mil.get("annotations"), str):
        folder = Path(mil["annotations"]).expanduser()
        data["mil"] = {**mil, "annotations": str(folder if folder.is_absolute() else base / folder)}
    return data


def load_config(source, *, overrides=None) -> PipelineConfig:
    """Read and validate a pipeline configuration.

    Relative paths (``cohort``, ``output``, ``slides.weights``, ``mil.annotations``) are taken relative
    to the YAML file's folder.

    Parameters
    ----------
    source : str, path-like, dict or PipelineConfig
        A YAML file, or the configuration as a dict.
    overrides : dict, optional
        Dotted keys replacing values of ``source`` (``{"dask.scheduler": "tcp://..."}``).

    Returns
    -------
    PipelineConfig

    Raises
    ------
    ConfigError
        Listing every problem, one line each, naming the key and the value.

    Examples
    --------
    >>> from lnmkit.pipeline import load_config
    >>> load_config({"cohort": "cohort/", "mil": {"n_splits": 3}}).mil.n_splits
    3
    """
    import yaml

    if isinstance(source, PipelineConfig):
        data, base, where = source.model_dump(mode="json"), Path.cwd(), None
    elif isinstance(source, dict):
        data, base, where = source, Path.cwd(), None
    else:
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise ConfigError([f"file {str(path)!r} does not exist"], source=where)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError([f"not valid YAML: {at}{' '.join(str(problem).split())}"], source=where) from None
        base = path.resolve().parent
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError([f"(top level): must be a mapping of keys to values; got "
                               f"{type(data).__name__} {data!r}"], source=where)
    data = _apply_overrides(data, overrides or {})
    data = _resolve_paths(data, base)
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_error_lines(exc), source=where) from None


def _apply_overrides(data, overrides):
    data = json.loads(json.dumps(data, default=str))
    for key, value in overrides.items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return data


# -- checks against the cohort ---------------------------------------------------------------------

def _csv_columns(path):
    import pandas as pd

    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")


def check_config(config: PipelineConfig, *, check_encoder=True) -> list[str]:
    """Problems of a valid configuration that only the cohort can show.

    Parameters
    ----------
    config : PipelineConfig
    check_encoder : bool, default=True
        Build the tile encoder once, to report missing weights before any stage runs.

    Returns
    -------
    list of str
        One line per problem, each naming the key and value; empty when fine.
    """
    problems = []
    cohort = Path(config.cohort)
    if not cohort.is_dir():
        return [f"cohort: folder {str(cohort)!r} does not exist"]
    if not (cohort / "clinical.csv").is_file():
        return [f"cohort: {str(cohort)!r} holds no clinical.csv, so it is not a cohort folder"]
    outcomes_path = cohort / "outcomes.csv"
    outcomes = _csv_columns(outcomes_path) if outcomes_path.is_file() else None

    def has_values(column):
        return outcomes is not None and column in outcomes.columns and (outcomes[column].str.strip() != "").any()

    survival = [] if outcomes is None else sorted(
        c[: -len("_months")] for c in outcomes.columns
        if c.endswith("_months") and f"{c[: -len('_months')]}_event" in outcomes.columns
        and has_values(c))
    for name in config.endpoints.binary:
        if not has_values(BINARY_ENDPOINTS[name]):
            problems.append(f"endpoints.binary: {name!r} needs column {BINARY_ENDPOINTS[name]!r} with values "
                            f"in {outcomes_path}, which it lacks")
    for name in config.endpoints.survival:
        if name not in survival:
            problems.append(f"endpoints.survival: {name!r} is not an endpoint of the cohort (needs columns "
                            f"{name}_months and {name}_event in {outcomes_path}); the cohort has "
                            f"{survival or 'none'}")
    if config.mil.enabled:
        if not config.slides.enabled:
            problems.append("mil.enabled: true needs slides.enabled: true (MIL reads the feature bags)")
        for task in config.mil.tasks:
            column = {"lnm": "pn_status", "otc": "otc", "survival": "os_months"}[task]
            if not has_values(column):
                problems.append(f"mil.tasks: {task!r} needs column {column!r} with values in {outcomes_path}, "
                                "which it lacks")
    if config.slides.enabled:
        if not (cohort / "slides.csv").is_file():
            problems.append(f"slides.enabled: true but {str(cohort)!r} has no slides.csv; set slides.enabled: "
                            "false (and mil.enabled: false) for a tables-only cohort")
        if config.slides.weights is not None and not Path(config.slides.weights).exists():
            problems.append(f"slides.weights: file {str(config.slides.weights)!r} does not exist")
        elif check_encoder:
            problems += _encoder_problems(config.slides)
    if config.models.enabled and not (config.endpoints.binary or config.endpoints.survival):
        problems.append("models.enabled: true needs at least one endpoint (endpoints.binary or endpoints.survival)")
    if config.mil.enabled and config.mil.annotations is not None and not Path(config.mil.annotations).is_dir():
        problems.append(f"mil.annotations: folder {str(config.mil.annotations)!r} does not exist")
    if config.nomogram.enabled:
        clinical = set(_csv_columns(cohort / "clinical.csv").columns)
        unknown = [p for p in config.nomogram.predictors if p not in clinical and not p.startswith(("rad_", "slide_"))]
        if unknown:
            problems.append(f"nomogram.predictors: {unknown} are neither clinical.csv columns nor rad_* / slide_* "
                            "columns of the fusion table")
        if any(p.startswith("slide_") for p in config.nomogram.predictors) and not config.mil.enabled:
            problems.append("nomogram.predictors: slide_* predictors need mil.enabled: true")
    if config.radiology.images and not (cohort / "radiology_images.csv").is_file():
        problems.append(f"radiology.images: true but {str(cohort)!r} has no radiology_images.csv")
    return problems


def encoder_kwargs(slides: SlidesConfig) -> dict:
    """Keyword arguments of :func:`lnmkit.features.get_encoder` from the slides section.

    Parameters
    ----------
    slides : SlidesConfig

    Returns
    -------
    dict
    """
    return {k: str(v) for k, v in (("weights", slides.weights), ("device", slides.device)) if v is not None}


def _encoder_problems(slides):
    from lnmkit.exceptions import MissingWeightsError
    from lnmkit.features import get_encoder

    try:
        get_encoder(slides.encoder, **encoder_kwargs(slides))
    except MissingWeightsError as exc:
        first = str(exc).split(". ")[0]
        return [f"slides.encoder: {slides.encoder!r} has no weights (slides.weights: "
                f"{None if slides.weights is None else str(slides.weights)!r}): {first}. Set slides.weights "
                "to the checkpoint file"]
    except (ValueError, TypeError, ImportError) as exc:
        return [f"slides.encoder: {slides.encoder!r}: {' '.join(str(exc).split())}"]
    return []


def config_hash(config: PipelineConfig, keys) -> str:
    """Hash of the values of ``keys`` (dotted) in ``config``: what a stage's outputs depend on.

    Parameters
    ----------
    config : PipelineConfig
    keys : iterable of str

    Returns
    -------
    str
        16 hex characters.
    """
    values = {key: config.section(key) for key in sorted(keys)}
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_workers() -> int:
    """Worker processes of the default local cluster: the CPUs this process may use."""
    return available_cpus()
