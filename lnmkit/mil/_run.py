"""``run_mil``: features folder + cohort -> out-of-fold scores, attention and metrics on disk."""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lnmkit._io import atomic_write_text
from lnmkit._version import __version__
from lnmkit.exceptions import MILInputError, MILInputWarning
from lnmkit.mil._attention import _as_annotations, _fmt, annotation_tile_labels, attention_localisation_auc
from lnmkit.mil._crossfit import cross_fit
from lnmkit.mil._data import load_bags
from lnmkit.mil._estimator import MILClassifier
from lnmkit.mil._io import _jsonable_params

__all__ = ["MilRun", "run_mil"]


@dataclass(frozen=True)
class MilRun:
    """What :func:`run_mil` produced.

    Attributes
    ----------
    result : CrossFitResult
        Also readable later with ``CrossFitResult.load(out_dir)``.
    metrics : dict
        The content of ``metrics.json``.
    out_dir : pathlib.Path
    """

    result: object
    metrics: dict
    out_dir: Path

    def __repr__(self):
        m = self.metrics
        parts = []
        for task, v in m.get("auc", {}).items():
            if v.get("auc") is None or (isinstance(v["auc"], float) and not math.isfinite(v["auc"])):
                parts.append(f"{task.upper()} AUC=n/a (n={v.get('n', 0)}, {v.get('n_pos', 0)} positive)")
            else:
                parts.append(f"{task.upper()} AUC={_fmt(v['auc'])} [{_fmt(v.get('auc_lower_95'))}, "
                             f"{_fmt(v.get('auc_upper_95'))}]")
        loc = m.get("attention_localisation")
        if loc:
            parts.append(f"localisation AUC={_fmt(loc.get('pooled_auc'))}")
        return (f"<MilRun: {m['n_patients']} patients, {m['arch']}, " + "".join(p + ", " for p in parts)
                + f"out={self.out_dir}>")


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return _clean(value.item())
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _relative(path, start):
    """``path`` relative to ``start`` (no absolute paths in outputs that travel)."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return Path(path).name


def run_mil(
    features_dir,
    cohort_dir,
    out_dir,
    arch="instance",
    n_splits=5,
    seed=0,
    tasks=("lnm", "otc"),
    estimator_params=None,
    progress=True,
    *,
    annotations=None,
    annotation_classes=None,
    mask_downsample=None,
    annotation_threshold=0.5,
):
    """Cross-fit attention MIL on an extracted feature set and write every output.

    Parameters
    ----------
    features_dir : str or path-like
        Folder written by ``lnmkit features --out`` (one run, or the run folder itself).
    cohort_dir : str or path-like
        Cohort folder (tables; the slide files need not be present).
    out_dir : str or path-like
        Destination folder.
    arch : {"instance", "abmil", "gated-abmil", "clam-sb", "mean", "max"}, default="instance"
    n_splits : int, default=5
    seed : int, default=0
        Seeds the folds and the training.
    tasks : tuple of str, default=("lnm", "otc")
    estimator_params : dict, optional
        Extra :class:`MILClassifier` parameters (e.g. ``{"max_epochs": 30}``).
    progress : bool, default=True
    annotations : str, path-like or mapping, optional
        Tumour annotations to measure attention localisation against: a folder
        with one ``<slide_id>.geojson`` (QuPath / GeoJSON polygons, level-0
        pixels) or mask image per slide, or a mapping ``slide_id -> annotation``
        (see :func:`lnmkit.slides.read_annotations`). Read before training, so a
        malformed file fails the run at once, naming the file and feature.
    annotation_classes : str or iterable of str, optional
        Keep only GeoJSON features of these classifications (e.g. ``"Tumor"``).
    mask_downsample : float, optional
        Level-0 pixels per mask pixel of mask-image annotations.
    annotation_threshold : float, default=0.5
        A tile counts as tumour when this fraction of it is annotated.

    Returns
    -------
    MilRun

    Raises
    ------
    lnmkit.exceptions.MILInputError
        If no slide of the feature set belongs to a patient with an outcome row.
    lnmkit.exceptions.AnnotationError
        If an annotation file is unreadable or malformed.

    Warns
    -----
    lnmkit.exceptions.MILInputWarning
        For patients with a bag but no outcome row (left out, as by
        :func:`cross_fit`), and for annotations that match no slide.

    Notes
    -----
    ``out_dir`` holds what :meth:`CrossFitResult.save` writes, so
    ``CrossFitResult.load(out_dir)`` reads it back and scores new patients:
    ``oof_scores.csv`` (patient_id, lnm_score, otc_score, emb_*, fold),
    ``attention/<slide_id>.csv`` (x, y, attention, attention_pct,
    contribution_<task>, patient_id, fold; one row per tile in the feature
    file's order), ``outcomes.csv``, ``crossfit.json`` and ``models/fold_<k>/``
    (``model.safetensors`` + ``config.json``); plus ``metrics.json``
    (out-of-fold AUCs with DeLong 95% CIs, ``null`` where undefined;
    attention localisation when annotations are given). Paths in it are
    relative to ``out_dir``.
    """
    from lnmkit.cohort import Cohort
    from lnmkit.features import open_features

    out_dir = Path(out_dir)
    annotated = None
    if annotations is not None:
        annotated = _as_annotations(annotations, annotation_classes, mask_downsample, "run_mil")
    feature_set = open_features(features_dir)
    cohort = Cohort.from_dir(cohort_dir, check_files=False)  # the bags stand in for the slides
    bags = load_bags(feature_set, cohort, progress=progress)
    outcomes = cohort.outcomes
    if not any(p in outcomes.index for p in bags):
        raise MILInputError(f"run_mil: no slide in {features_dir} belongs to a patient of "
                            f"{Path(cohort_dir) / 'outcomes.csv'}.")
    params = dict(estimator_params or {})
    estimator = MILClassifier(arch=arch, tasks=tuple(tasks), random_state=int(seed), **params)
    result = cross_fit(bags, outcomes, n_splits=n_splits, estimator=estimator, random_state=int(seed),
                       progress=progress)
    result.save(out_dir)

    table = result.metrics()
    metrics = {
        "lnmkit_version": __version__,
        "arch": arch,
        "tasks": list(tasks),
        "n_splits": int(n_splits),
        "seed": int(seed),
        "n_patients": int(len(result.oof)),
        "n_slides": int(result.attention["slide_id"].nunique()),
        "n_tiles": int(len(result.attention)),
        "features_run": Path(feature_set.root).name,
        "features_dir": _relative(feature_set.root, out_dir),
        "ci_method": "DeLong, logit-transformed, 95%",
        "auc": {t: {"auc": r["auc"], "auc_lower_95": r["auc_lower_95"], "auc_upper_95": r["auc_upper_95"],
                    "n": int(r["n"]), "n_pos": int(r["n_pos"])} for t, r in table.iterrows()},
        "best_epochs": [int(m.best_epoch_) for m in result.models],
        "estimator_params": _jsonable_params(estimator.get_params()),
    }
    if annotated is not None:
        used = {p: b for p, b in bags.items() if p in result.oof.index}
        labels = annotation_tile_labels(annotated, used)
        unmatched = sorted(set(annotated) - set(labels))
        if unmatched:
            warnings.warn(MILInputWarning(
                f"run_mil: {len(unmatched)} annotation(s) match no slide of the cross-fit: "
                + ", ".join(unmatched[:10]) + (" ..." if len(unmatched) > 10 else "")
                + "; annotation files must be named <slide_id>.geojson"), stacklevel=2)
        loc = attention_localisation_auc(result.attention, labels, threshold=annotation_threshold)
        metrics["attention_localisation"] = loc.to_dict()
        metrics["attention_localisation"]["n_slides_annotated"] = len(labels)
        metrics["attention_localisation"]["per_slide"] = loc.per_slide["auc"].to_dict()
    metrics = _clean(metrics)
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    return MilRun(result, metrics, out_dir)
