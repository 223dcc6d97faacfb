"""Stages and their ``stage.json``: what a stage depends on and whether it must run again.

A stage's record holds the hash of the configuration keys it depends on, the
hashes of its inputs (cohort files, slide files, the outputs of the stages it
reads), the lnmkit version, its timings, and the hashes of its outputs. A stage
is skipped when all of these still match; a record left in status ``running``
(an interrupted stage) or ``failed`` makes it run again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from lnmkit._io import atomic_write_text
from lnmkit._version import __version__

__all__ = ["Stage", "StageResult", "StageRecord", "STAGE_FILE", "hash_file", "hash_tree", "read_record"]

STAGE_FILE = "stage.json"
_CHUNK = 1 << 20


def hash_file(path) -> str:
    """SHA-256 of a file's bytes (hex, 16 characters).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    str
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def hash_text(text: str) -> str:
    """SHA-256 of a string (hex, 16 characters)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def hash_tree(path, exclude=(STAGE_FILE,)) -> str:
    """Hash of a file, or of every file under a folder (relative names and contents).

    Temporary files of atomic writes (``.*.part``) and ``exclude`` names are left out.

    Parameters
    ----------
    path : str or path-like
    exclude : tuple of str, default=("stage.json",)

    Returns
    -------
    str
        ``"absent"`` if ``path`` does not exist.
    """
    path = Path(path)
    if path.is_file():
        return hash_file(path)
    if not path.is_dir():
        return "absent"
    parts = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        if file.name in exclude or (file.name.startswith(".") and file.name.endswith(".part")):
            continue
        parts.append(f"{file.relative_to(path).as_posix()}={hash_file(file)}")
    return hash_text("\n".join(parts))


@dataclass(frozen=True)
class StageResult:
    """What a stage's run function returns.

    Attributes
    ----------
    outputs : dict of str to pathlib.Path
        Named outputs (files or folders) the stage wrote.
    summary : dict
        JSON-ready numbers describing the run (recorded in ``stage.json``).
    """

    outputs: dict
    summary: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline: a small unit calling the public API of one subpackage.

    Attributes
    ----------
    name : str
        Also the name of the stage's folder in the run folder.
    run : callable
        ``run(context) -> StageResult``.
    requires : tuple of str
        Stages whose outputs it needs (their output hashes are its inputs).
    reads : tuple of str
        Stages whose outputs it uses when they are switched on.
    config_keys : tuple of str
        Dotted configuration keys its outputs depend on.
    cohort_files : tuple of str
        Cohort tables whose contents it reads.
    slide_files : bool
        It reads the slide files named in ``slides.csv`` (their size and
        modification time are inputs).
    enabled : callable
        ``enabled(config) -> bool``.
    digest : callable, optional
        ``digest(outputs) -> dict`` of output hashes; by default every output
        file or folder is hashed whole.
    extra_inputs : callable, optional
        ``extra_inputs(config) -> dict`` of hashes of other files it reads (e.g.
        an annotation folder named in the configuration).
    choose_reads : callable, optional
        ``choose_reads(config) -> tuple``: the subset of ``reads`` used under a
        configuration (the fusion table takes the nested slide scores when they
        exist, the plain cross-fit's otherwise).
    description : str
    """

    name: str
    run: Callable
    requires: tuple = ()
    reads: tuple = ()
    config_keys: tuple = ()
    cohort_files: tuple = ()
    slide_files: bool = False
    enabled: Callable = lambda config: True
    digest: Optional[Callable] = None
    extra_inputs: Optional[Callable] = None
    choose_reads: Optional[Callable] = None
    description: str = ""

    @property
    def inputs(self) -> tuple:
        """Every stage it may read: ``requires`` then ``reads``."""
        return tuple(self.requires) + tuple(self.reads)

    def inputs_for(self, config) -> tuple:
        """The stages it reads under ``config`` (``choose_reads`` may narrow ``reads``)."""
        reads = self.reads if self.choose_reads is None else self.choose_reads(config)
        return tuple(self.requires) + tuple(reads)

    def output_hashes(self, outputs) -> dict:
        """Hashes of the stage's outputs (``{name: hash}``)."""
        if self.digest is not None:
            return self.digest(outputs)
        return {name: hash_tree(path) for name, path in sorted(outputs.items())}


@dataclass(frozen=True)
class StageRecord:
    """The content of a stage's ``stage.json``.

    Attributes
    ----------
    stage : str
    status : {"running", "complete", "failed"}
    lnmkit_version : str
    config_hash : str
    config : dict
        The values of the configuration keys the stage depends on.
    input_hashes : dict
    outputs : dict of str to str
        Output paths relative to the run folder.
    output_hashes : dict
    outputs_hash : str
        One hash over ``output_hashes`` (what downstream stages record as input).
    started, finished : str
        ISO 8601 UTC times.
    seconds : float
    summary : dict
    error : str
    """

    stage: str
    status: str
    lnmkit_version: str
    config_hash: str
    config: dict
    input_hashes: dict
    outputs: dict = field(default_factory=dict)
    output_hashes: dict = field(default_factory=dict)
    outputs_hash: str = ""
    started: str = ""
    finished: str = ""
    seconds: Optional[float] = None
    summary: dict = field(default_factory=dict)
    error: str = ""

    def to_json(self) -> str:
        """The record as indented JSON."""
        return json.dumps(self.__dict__, indent=2, sort_keys=True, default=str) + "\n"

    def write(self, stage_dir):
        """Write ``stage.json`` atomically into ``stage_dir``."""
        atomic_write_text(Path(stage_dir) / STAGE_FILE, self.to_json())

    def output_path(self, run_dir, name) -> Path:
        """Absolute path of output ``name``."""
        return Path(run_dir) / self.outputs[name]


def read_record(stage_dir) -> Optional[StageRecord]:
    """The ``stage.json`` of a stage folder, or None when absent or unreadable.

    Parameters
    ----------
    stage_dir : str or path-like

    Returns
    -------
    StageRecord or None
    """
    path = Path(stage_dir) / STAGE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return StageRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def is_current(stage: Stage, record: Optional[StageRecord], config_hash: str, input_hashes: dict,
               run_dir) -> tuple[bool, str]:
    """Whether ``record`` still describes what the stage would produce, and why not.

    Returns
    -------
    (bool, str)
    """
    if record is None:
        return False, "never ran"
    if record.status != "complete":
        return False, f"last run {record.status}"
    if record.lnmkit_version != __version__:
        return False, f"lnmkit {record.lnmkit_version} -> {__version__}"
    if record.config_hash != config_hash:
        return False, "configuration changed"
    changed = sorted(k for k in set(input_hashes) | set(record.input_hashes)
                     if input_hashes.get(k) != record.input_hashes.get(k))
    if changed:
        return False, "input changed: " + ", ".join(changed[:3]) + ("..." if len(changed) > 3 else "")
    outputs = {name: Path(run_dir) / rel for name, rel in record.outputs.items()}
    if stage.output_hashes(outputs) != record.output_hashes:
        return False, "outputs modified or missing"
    return True, "up to date"


class Timer:
    """Wall-clock timing of a stage."""

    def __init__(self):
        self.started = now_iso()
        self._t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self._t0, 3)
