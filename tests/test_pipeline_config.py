"""Pipeline configuration: validation messages, init-config, the Dask/SLURM examples of the docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lnmkit.cli import app
from lnmkit.exceptions import ConfigError
from lnmkit.pipeline import (
    DaskConfig,
    PipelineConfig,
    check_config,
    default_config_text,
    jobqueue_kwargs,
    load_config,
    write_default_config,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tables_cohort(tmp_path_factory):
    """A tables-only synthetic cohort (no slides): cheap, and enough for every config check."""
    from lnmkit.synth import make_cohort

    return make_cohort(tmp_path_factory.mktemp("tables_cohort"), n_patients=8, seed=1, slides=False,
                       progress=False)


def _write(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def _problems(source, **kwargs):
    with pytest.raises(ConfigError) as info:
        load_config(source, **kwargs)
    return info.value.problems


# -- one line per problem, naming the key and the value -------------------------------------------

def test_wrong_type_names_key_and_value(tmp_path):
    problems = _problems(_write(tmp_path, "cohort: c\nslides:\n  mpp: abc\n  tile_size: 12\n"))
    assert len(problems) == 2
    assert problems[0].startswith("slides.mpp: ") and "'abc'" in problems[0]
    assert problems[1].startswith("slides.tile_size: ") and "greater than or equal to 16" in problems[1]
    assert "got 12" in problems[1]


def test_unknown_key_is_refused_with_the_valid_keys(tmp_path):
    problems = _problems(_write(tmp_path, "cohort: c\nmil:\n  n_split: 3\nreprot: x\n"))
    assert any(p.startswith("mil.n_split: unknown key (value 3)") and "n_splits" in p for p in problems), problems
    assert any(p.startswith("reprot: unknown key ('x')") or p.startswith("reprot: unknown key (value 'x')")
               for p in problems), problems
    assert all("\n" not in p for p in problems)


def test_literal_choice_lists_the_options():
    (problem,) = _problems({"cohort": "c", "mil": {"arch": "transformer"}})
    assert problem.startswith("mil.arch: ") and "'abmil'" in problem and "'transformer'" in problem


def test_missing_cohort_key_and_bad_yaml(tmp_path):
    assert _problems({}) == ["cohort: required key is missing"]
    (problem,) = _problems(_write(tmp_path, "cohort: [unclosed\n"))
    assert problem.startswith("not valid YAML: line ")
    (problem,) = _problems(_write(tmp_path, "- just\n- a list\n"))
    assert "must be a mapping" in problem


def test_missing_cohort_folder(tmp_path):
    config = load_config({"cohort": str(tmp_path / "nowhere")})
    assert check_config(config) == [f"cohort: folder {str(tmp_path / 'nowhere')!r} does not exist"]


def test_endpoint_the_cohort_lacks(tables_cohort):
    config = load_config({"cohort": str(tables_cohort), "slides": {"enabled": False}, "mil": {"enabled": False},
                          "nomogram": {"predictors": ["age", "rad_n_suspicious"]},
                          "endpoints": {"survival": ["os", "dfs"]}})
    (problem,) = check_config(config)
    assert problem.startswith("endpoints.survival: 'dfs' is not an endpoint of the cohort")
    assert "['os', 'rfs']" in problem


def test_encoder_without_weights(tables_cohort, tmp_path, monkeypatch):
    monkeypatch.delenv("LNMKIT_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))   # no cached checkpoint can be found
    (tables_cohort_with_slides := tmp_path / "c").mkdir()
    for name in ("clinical.csv", "outcomes.csv"):
        (tables_cohort_with_slides / name).write_bytes((tables_cohort / name).read_bytes())
    (tables_cohort_with_slides / "slides.csv").write_text("slide_id,patient_id,path\n")
    config = load_config({"cohort": str(tables_cohort_with_slides), "slides": {"encoder": "uni"}})
    problems = check_config(config)
    assert any(p.startswith("slides.encoder: 'uni' has no weights (slides.weights: None)") for p in problems), problems
    config = load_config({"cohort": str(tables_cohort_with_slides),
                          "slides": {"encoder": "uni", "weights": str(tmp_path / "uni.bin")}})
    assert f"slides.weights: file {str(tmp_path / 'uni.bin')!r} does not exist" in check_config(config)


def test_tables_only_cohort_with_slides_enabled(tables_cohort):
    problems = check_config(load_config({"cohort": str(tables_cohort)}))
    assert any(p.startswith("slides.enabled: true but") for p in problems)


def test_nomogram_predictors_are_checked(tables_cohort):
    config = load_config({"cohort": str(tables_cohort), "slides": {"enabled": False}, "mil": {"enabled": False},
                          "nomogram": {"predictors": ["age", "tumor_size", "slide_lnm_score"]}})
    problems = check_config(config)
    assert "nomogram.predictors: ['tumor_size'] are neither clinical.csv columns nor rad_* / slide_* columns of " \
           "the fusion table" in problems
    assert "nomogram.predictors: slide_* predictors need mil.enabled: true" in problems


@pytest.mark.parametrize("text, key", [
    ("slides:\n  mpp: abc\n", "slides.mpp"),
    ("mil:\n  n_split: 3\n", "mil.n_split"),
    ("endpoints:\n  survival: [dfs]\n", "endpoints.survival"),
    ("slides:\n  encoder: uni\n", "slides.encoder"),
])
def test_cli_run_bad_config_exits_2_with_one_line_each(tables_cohort, tmp_path, monkeypatch, text, key):
    monkeypatch.delenv("LNMKIT_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    (tmp_path / "c").mkdir()
    for name in ("clinical.csv", "outcomes.csv"):
        (tmp_path / "c" / name).write_bytes((tables_cohort / name).read_bytes())
    (tmp_path / "c" / "slides.csv").write_text("slide_id,patient_id,path\n")
    path = _write(tmp_path, f"cohort: c\noutput: run\nmil:\n  enabled: false\n" if "mil:" not in text
                  else "cohort: c\noutput: run\n")
    path.write_text(path.read_text() + text)
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines and all(line.startswith(f"error: {path}: ") for line in lines), lines
    assert any(line.startswith(f"error: {path}: {key}") for line in lines), lines
    assert not (tmp_path / "run").exists()   # nothing ran


def test_cli_run_missing_cohort_exits_2(tmp_path):
    path = _write(tmp_path, "cohort: no_such_folder\n")
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    assert "cohort: folder" in result.output and "no_such_folder" in result.output


def test_relative_paths_are_relative_to_the_file(tmp_path):
    config = load_config(_write(tmp_path, "cohort: data/cohort\noutput: out\n"))
    assert config.cohort == tmp_path / "data" / "cohort"
    assert config.output == tmp_path / "out"


# -- init-config ----------------------------------------------------------------------------------

def _leaf_keys(model, prefix=""):
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        nested = [a for a in (annotation, *getattr(annotation, "__args__", ()))
                  if isinstance(a, type) and hasattr(a, "model_fields")]
        if nested and name != "jobqueue":
            keys += _leaf_keys(nested[0], f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_init_config_documents_every_key_and_loads_to_the_defaults(tables_cohort, tmp_path):
    path = write_default_config(tables_cohort, tmp_path / "config.yaml", output="run")
    text = path.read_text()
    data = yaml.safe_load(text)
    for key in _leaf_keys(PipelineConfig):
        node = data
        for part in key.split("."):
            assert part in node, f"init-config does not write {key}"
            node = node[part]
    config = load_config(path)
    defaults = PipelineConfig(cohort=config.cohort, output=config.output)
    # a tables-only cohort: the slide stages are off, the endpoints are what outcomes.csv has
    assert config.slides.enabled is False and config.mil.enabled is False
    assert config.endpoints.binary == ["lnm", "otc"] and config.endpoints.survival == ["os"]
    for section in ("radiology", "dask"):
        assert getattr(config, section) == getattr(defaults, section)
    assert config.slides.model_dump(exclude={"enabled"}) == defaults.slides.model_dump(exclude={"enabled"})
    assert check_config(config) == []
    # every key line carries a comment
    key_lines = [line for line in text.splitlines() if re.match(r"^\s*[a-z_]+:", line)]
    assert all("#" in line for line in key_lines), [line for line in key_lines if "#" not in line]


def test_init_config_cli(tables_cohort, tmp_path):
    out = tmp_path / "cfg.yaml"
    result = CliRunner().invoke(app, ["init-config", str(tables_cohort), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_config(out).cohort == Path(tables_cohort)
    again = CliRunner().invoke(app, ["init-config", str(tables_cohort), "--out", str(out)])
    assert again.exit_code == 2 and "exists" in again.output
    missing = CliRunner().invoke(app, ["init-config", str(tmp_path / "none"), "--out", str(tmp_path / "x.yaml")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_default_config_switches_on_what_a_slide_cohort_has(synthetic_cohort_dir):
    data = yaml.safe_load(default_config_text(synthetic_cohort_dir))
    assert data["slides"]["enabled"] and data["mil"]["enabled"] and data["radiology"]["enabled"]
    assert data["mil"]["tasks"] == ["lnm", "otc"]


# -- Dask and SLURM -------------------------------------------------------------------------------

def _doc_configs():
    text = (REPO / "docs" / "dask.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    return [yaml.safe_load(b) for b in blocks]


def test_docs_dask_examples_parse():
    configs = [load_config(c) for c in _doc_configs()]
    kinds = {c.dask.cluster for c in configs}
    assert {"slurm", "pbs", "local"} <= kinds
    slurm = next(c for c in configs if c.dask.cluster == "slurm")
    kwargs = jobqueue_kwargs(slurm.dask)
    assert kwargs["cores"] == slurm.dask.jobqueue.cores and kwargs["memory"] == slurm.dask.jobqueue.memory
    assert "jobs" not in kwargs and slurm.dask.jobqueue.jobs >= 1
    assert all(v is not None for v in kwargs.values())


def test_batch_cluster_needs_a_jobqueue_section():
    (problem,) = _problems({"cohort": "c", "dask": {"cluster": "slurm"}})
    assert problem.startswith("dask: ") and "jobqueue" in problem
    (problem,) = _problems({"cohort": "c", "dask": {"scheduler": "localhost:8786"}})
    assert problem.startswith("dask.scheduler: ") and "tcp://" in problem
    assert DaskConfig(cluster="slurm", scheduler="tcp://h:1").jobqueue is None


def test_docs_slurm_example_makes_the_job_script():
    pytest.importorskip("dask_jobqueue")
    from lnmkit.pipeline._dask import jobqueue_cluster_class

    slurm = next(load_config(c) for c in _doc_configs() if c["dask"]["cluster"] == "slurm")
    cluster = jobqueue_cluster_class("slurm")(**jobqueue_kwargs(slurm.dask))
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    jq = slurm.dask.jobqueue
    assert f"#SBATCH -p {jq.queue}" in script
    assert f"#SBATCH --cpus-per-task={jq.cores}" in script
    assert f"#SBATCH -t {jq.walltime}" in script
    for directive in jq.job_extra_directives:
        assert f"#SBATCH {directive}" in script


def test_mil_arch_choices_are_the_mil_architectures():
    from typing import get_args

    from lnmkit.mil import ARCHITECTURES
    from lnmkit.pipeline import MILConfig

    (literal, _none) = get_args(MILConfig.model_fields["arch"].annotation)
    assert set(get_args(literal)) == set(ARCHITECTURES)


def test_mil_section_reaches_the_estimator_and_its_keys_rerun_the_nested_scores():
    import inspect

    from lnmkit.mil import MILClassifier
    from lnmkit.pipeline import MILConfig
    from lnmkit.pipeline._config import ESTIMATOR_KEYS
    from lnmkit.pipeline._stages import STAGES
    from lnmkit.pipeline._stages_models import _mil_estimator

    assert set(ESTIMATOR_KEYS) <= set(inspect.signature(MILClassifier).parameters)
    config = PipelineConfig(cohort=".", mil={"val_fraction": 0.2, "weight_decay": 0.01, "max_epochs": 7,
                                             "n_init": 1})
    est = _mil_estimator(config)
    assert (est.val_fraction, est.weight_decay, est.max_epochs, est.n_init) == (0.2, 0.01, 7, 1)
    assert _mil_estimator(PipelineConfig(cohort=".")).get_params() == MILClassifier(
        tasks=("lnm", "otc"), random_state=0).get_params()
    assert MILConfig(weight_decay=0.5).estimator_params() == {"weight_decay": 0.5}
    nested = next(s for s in STAGES if s.name == "mil_nested")
    assert {f"mil.{k}" for k in ESTIMATOR_KEYS} <= set(nested.config_keys)
    # the section accepts what MILClassifier accepts, so a config that passes check_config trains
    assert MILConfig(val_fraction=0.9).estimator_params() == {"val_fraction": 0.9}
    MILClassifier(val_fraction=0.9)._validate_params()
    for refused in (0.95, 1.0):
        with pytest.raises(ValueError, match="val_fraction"):
            MILConfig(val_fraction=refused)
        with pytest.raises(ValueError, match="val_fraction"):
            MILClassifier(val_fraction=refused)._validate_params()


def test_cli_run_names_the_failed_stage(tables_cohort, tmp_path):
    """A stage that fails exits 1, names the stage, and leaves the stages before it complete."""
    import pandas as pd

    cohort = tmp_path / "c"
    cohort.mkdir()
    for name in ("clinical.csv", "outcomes.csv", "radiology_nodes.csv"):
        (cohort / name).write_bytes((tables_cohort / name).read_bytes())
    # every patient pN0: no LNM model can be fitted
    outcomes = pd.read_csv(cohort / "outcomes.csv", dtype=str)
    outcomes["pn_status"], outcomes["pn_category"], outcomes["positive_nodes"] = "pN0", "pN0", "0"
    outcomes.to_csv(cohort / "outcomes.csv", index=False)
    path = _write(tmp_path, "cohort: c\noutput: run\nslides: {enabled: false}\nmil: {enabled: false}\n"
                            "endpoints: {binary: [lnm], survival: []}\nevaluation: {enabled: false}\n"
                            "nomogram: {enabled: false}\nreports: {enabled: false}\n")
    result = CliRunner().invoke(app, ["run", str(path), "--quiet"])
    assert result.exit_code == 1, result.output
    assert "stage 'models' failed" in result.output
    from lnmkit.pipeline import read_record

    assert read_record(tmp_path / "run" / "models").status == "failed"
    assert read_record(tmp_path / "run" / "fusion").status == "complete"
