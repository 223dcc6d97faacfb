"""``run_pipeline``: run every enabled stage in order, skipping those that are up to date."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from lnmkit._io import atomic_write_text
from lnmkit._version import __version__
from lnmkit.exceptions import ConfigError
from lnmkit.pipeline._config import PipelineConfig, check_config, config_hash, load_config
from lnmkit.pipeline._stage import StageRecord, Timer, hash_text, is_current, now_iso, read_record
from lnmkit.pipeline._stages import STAGES, StageContext, _slide_files_hash, cohort_file_hash

__all__ = ["PipelineResult", "run_pipeline", "plan_pipeline"]


@dataclass(frozen=True)
class PipelineResult:
    """What :func:`run_pipeline` did.

    Attributes
    ----------
    out_dir : pathlib.Path
        The run folder.
    config : PipelineConfig
    records : dict of str to StageRecord
        The ``stage.json`` of every enabled stage, in running order.
    table : pandas.DataFrame
        One row per stage (index ``stage``): ``action`` (``ran`` or ``skipped``),
        ``reason``, ``seconds`` (of the run that produced the outputs), ``folder``.
    """

    out_dir: Path
    config: PipelineConfig
    records: dict
    table: pd.DataFrame

    @property
    def ran(self) -> list[str]:
        """list of str: stages run this time."""
        return self.table.index[self.table["action"] == "ran"].tolist()

    @property
    def skipped(self) -> list[str]:
        """list of str: stages whose outputs were up to date."""
        return self.table.index[self.table["action"] == "skipped"].tolist()

    def output(self, stage, name) -> Path:
        """Absolute path of output ``name`` of ``stage``.

        Parameters
        ----------
        stage : str
        name : str

        Returns
        -------
        pathlib.Path
        """
        return self.records[stage].output_path(self.out_dir, name)

    def results_lines(self) -> list:
        """The nested cross-validated results as a small text table (AUC, C-index, CIs).

        Read from ``evaluation/summary.json``; empty when the evaluation is switched off.
        A nomogram that could not be fitted is named with the reason.

        Returns
        -------
        list of str
        """
        import json

        lines = []
        if "evaluation" in self.records:
            lines += self._evaluation_lines(json.loads(self.output("evaluation", "summary").read_text()))
        if "nomogram" in self.records:
            for kind, reason in self.records["nomogram"].summary.get("not_fitted", {}).items():
                lines.append(f"nomogram ({kind}) not fitted: {reason}")
        return lines

    def _evaluation_lines(self, summary):
        rows = []
        for key, models in summary.items():
            endpoint = "LNM" if key == "lnm" else key.removeprefix("survival_").upper()
            metric = "AUC" if key == "lnm" else "C-index"
            for model, values in models.items():
                value = values.get("auc", values.get("c"))
                rows.append((f"{endpoint} {metric}", model, value, values.get("lower"), values.get("upper")))
        if not rows:
            return []

        def number(value):
            return "  n/a" if value is None or value != value else f"{value:.3f}"

        width = max(len(r[1]) for r in rows)
        lines = [f"nested cross-validation by patient ({self.config.evaluation.level:.0%} CI):"]
        lines += [f"  {what:<12} {model:<{width}}  {number(v)}  [{number(lo)}, {number(hi)}]"
                  for what, model, v, lo, hi in rows]
        return lines

    def to_frame(self) -> pd.DataFrame:
        """The per-stage table (a copy)."""
        return self.table.copy()

    def plot(self, ax=None, **kwargs):
        """Horizontal bars of each stage's run time.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
        **kwargs
            Passed to ``ax.barh``.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 0.4 * len(self.table) + 1))
        seconds = self.table["seconds"].astype(float)
        colours = ["tab:blue" if a == "ran" else "tab:gray" for a in self.table["action"]]
        ax.barh(self.table.index[::-1], seconds[::-1], color=colours[::-1], **kwargs)
        ax.set_xlabel("seconds (grey: skipped, time of the run that made the outputs)")
        ax.set_title(f"lnmkit run {self.out_dir.name}")
        return ax.figure

    def __repr__(self):
        return (f"<PipelineResult: {len(self.ran)} stage(s) ran, {len(self.skipped)} skipped, "
                f"out={self.out_dir}>")

    def _repr_html_(self):
        return f"<p>{html.escape(repr(self))}</p>" + self.table.to_html()

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": repr(self), "text/html": self._repr_html_()}


def _input_hashes(stage, config, records) -> dict:
    hashes = {f"stage:{name}": records[name].outputs_hash for name in stage.inputs_for(config) if name in records}
    for name in stage.cohort_files:
        hashes[f"cohort:{name}"] = cohort_file_hash(config, name)
    if stage.slide_files:
        hashes["slide_files"] = _slide_files_hash(config)
    if stage.extra_inputs is not None:
        hashes.update(stage.extra_inputs(config))
    return hashes


def _enabled(config):
    stages = [s for s in STAGES if s.enabled(config)]
    names = {s.name for s in stages}
    for stage in stages:
        missing = [r for r in stage.requires if r not in names]
        if missing:
            raise ConfigError([f"{stage.name}: needs stage(s) {missing}, which the configuration switches off"])
    return stages


def plan_pipeline(config) -> pd.DataFrame:
    """Which stages would run, and why, without running anything.

    Stages downstream of one that must run are reported as ``run`` (their inputs
    will change).

    Parameters
    ----------
    config : PipelineConfig, dict, str or path-like

    Returns
    -------
    pandas.DataFrame
        Index ``stage``; columns ``action`` (``run`` or ``skip``) and ``reason``.
    """
    config = config if isinstance(config, PipelineConfig) else load_config(config)
    out_dir = Path(config.output)
    records, rows, dirty = {}, [], set()
    for stage in _enabled(config):
        record = read_record(out_dir / stage.name)
        if any(r in dirty for r in stage.inputs_for(config)):
            ok, reason = False, "an input stage runs"
        else:
            ok, reason = is_current(stage, record, config_hash(config, stage.config_keys),
                                    _input_hashes(stage, config, records), out_dir)
        if ok:
            records[stage.name] = record
        else:
            dirty.add(stage.name)
        rows.append({"stage": stage.name, "action": "skip" if ok else "run", "reason": reason})
    return pd.DataFrame(rows).set_index("stage")


def run_pipeline(config, *, scheduler=None, force=(), progress=True, check=True) -> PipelineResult:
    """Run the pipeline: validate -> features -> MIL -> radiology -> ... each into its own folder.

    Every stage writes its outputs and a ``stage.json`` (configuration hash,
    input hashes, lnmkit version, timings, output hashes) under
    ``<output>/<stage>/``. A stage whose configuration keys, inputs and outputs
    are unchanged is skipped; an interrupted stage runs again, and feature
    extraction then resumes slide by slide.

    Parameters
    ----------
    config : PipelineConfig, dict, str or path-like
        The configuration or its YAML file.
    scheduler : str, optional
        Dask scheduler address (``tcp://host:port``) for the slide stages;
        overrides ``dask`` in the configuration.
    force : iterable of str, default=()
        Stages to run even when up to date (their downstream stages follow
        when their outputs change).
    progress : bool, default=True
        Show progress bars.
    check : bool, default=True
        Check the configuration against the cohort first (:func:`check_config`).

    Returns
    -------
    PipelineResult

    Raises
    ------
    ConfigError
        If the configuration is invalid (before any stage runs).
    lnmkit.exceptions.CohortValidationError
        If the cohort tables have errors (the validate stage).

    Examples
    --------
    >>> from lnmkit.pipeline import run_pipeline
    >>> result = run_pipeline("config.yaml")          # doctest: +SKIP
    >>> result.table                                   # doctest: +SKIP
    """
    overrides = {"dask.scheduler": scheduler} if scheduler is not None else None
    if not isinstance(config, PipelineConfig) or overrides:
        config = load_config(config, overrides=overrides)
    force = set(force)
    unknown = sorted(force - {s.name for s in STAGES})
    if unknown:
        raise ConfigError([f"force: unknown stage(s) {unknown}; stages are {[s.name for s in STAGES]}"])
    if check:
        problems = check_config(config)
        if problems:
            raise ConfigError(problems)
    stages = _enabled(config)
    out_dir = Path(config.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))

    records, rows = {}, []
    for stage in stages:
        stage_dir = out_dir / stage.name
        chash = config_hash(config, stage.config_keys)
        inputs = _input_hashes(stage, config, records)
        previous = read_record(stage_dir)
        current, reason = is_current(stage, previous, chash, inputs, out_dir)
        if current and stage.name not in force:
            records[stage.name] = previous
            rows.append({"stage": stage.name, "action": "skipped", "reason": reason,
                         "seconds": previous.seconds, "folder": str(stage_dir)})
            continue
        reason = "forced" if current else reason
        timer = Timer()
        base = dict(stage=stage.name, lnmkit_version=__version__, config_hash=chash,
                    config={k: config.section(k) for k in stage.config_keys}, input_hashes=inputs,
                    started=timer.started)
        stage_dir.mkdir(parents=True, exist_ok=True)
        StageRecord(status="running", **base).write(stage_dir)
        try:
            result = stage.run(StageContext(config, out_dir, stage_dir, dict(records), progress))
        except BaseException as exc:
            StageRecord(status="failed", finished=now_iso(), seconds=timer.seconds,
                        error=f"{type(exc).__name__}: {exc}"[:2000], **base).write(stage_dir)
            if isinstance(exc, Exception):
                exc.add_note(f"lnmkit run: stage {stage.name!r} failed (record: {stage_dir / 'stage.json'}); "
                             "the stages before it are kept, and the next run starts from it")
            raise
        output_hashes = stage.output_hashes(result.outputs)
        record = StageRecord(
            status="complete", outputs={k: Path(v).resolve().relative_to(out_dir.resolve()).as_posix()
                                        for k, v in result.outputs.items()},
            output_hashes=output_hashes,
            outputs_hash=hash_text("\n".join(f"{k}={v}" for k, v in sorted(output_hashes.items()))),
            finished=now_iso(), seconds=timer.seconds, summary=result.summary, **base)
        record.write(stage_dir)
        records[stage.name] = record
        rows.append({"stage": stage.name, "action": "ran", "reason": reason, "seconds": record.seconds,
                     "folder": str(stage_dir)})
    table = pd.DataFrame(rows, columns=["stage", "action", "reason", "seconds", "folder"]).set_index("stage")
    return PipelineResult(out_dir, config, records, table)
