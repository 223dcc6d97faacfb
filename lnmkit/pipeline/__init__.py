"""The main job in one call: a validated configuration, stages with ``stage.json`` caching and resume.

``run_pipeline("config.yaml")`` (CLI: ``lnmkit run config.yaml``) runs validate ->
features -> MIL -> radiology -> nested MIL -> fusion -> models -> evaluation ->
nomogram -> explanations -> reports, each into ``<output>/<stage>/``, and skips the
stages whose configuration keys and inputs did not change. ``write_default_config``
(CLI: ``lnmkit init-config``) writes a commented default for a cohort folder.

Examples
--------
>>> from lnmkit.pipeline import load_config, stage_names
>>> stage_names()[:2]
['validate', 'features']
"""

from lnmkit.pipeline._config import (
    DaskConfig,
    EndpointsConfig,
    EvaluationConfig,
    JobqueueConfig,
    MILConfig,
    ModelsConfig,
    NomogramConfig,
    PipelineConfig,
    RadiologyConfig,
    ReportsConfig,
    SlidesConfig,
    check_config,
    config_hash,
    load_config,
)
from lnmkit.pipeline._dask import dask_client, jobqueue_kwargs
from lnmkit.pipeline._runner import PipelineResult, plan_pipeline, run_pipeline
from lnmkit.pipeline._stage import STAGE_FILE, Stage, StageRecord, StageResult, read_record
from lnmkit.pipeline._stages import STAGES, StageContext, stage_names
from lnmkit.pipeline._template import default_config_text, write_default_config

__all__ = [
    "DaskConfig",
    "EndpointsConfig",
    "EvaluationConfig",
    "JobqueueConfig",
    "MILConfig",
    "ModelsConfig",
    "NomogramConfig",
    "PipelineConfig",
    "PipelineResult",
    "RadiologyConfig",
    "ReportsConfig",
    "STAGES",
    "STAGE_FILE",
    "SlidesConfig",
    "Stage",
    "StageContext",
    "StageRecord",
    "StageResult",
    "check_config",
    "config_hash",
    "dask_client",
    "default_config_text",
    "jobqueue_kwargs",
    "load_config",
    "plan_pipeline",
    "read_record",
    "run_pipeline",
    "stage_names",
    "write_default_config",
]
