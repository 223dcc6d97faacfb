"""``run_mil``: features folder + cohort -> out-of-fold scores, attention and metrics on disk."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lnmkit._io import atomic_path, atomic_write_text
from lnmkit._version import __version__
from lnmkit.mil._attention import attention_localisation_auc
from lnmkit.mil._io import _jsonable_params
from lnmkit.mil._crossfit import cross_fit
from lnmkit.mil._data import load_bags
from lnmkit.mil._estimator import MILClassifier

__all__ = ["MilRun", "run_mil", "planted_tile_labels"]


@dataclass(frozen=True)
class MilRun:
    """What :func:`run_mil` produced.

    Attributes
    ----------
    result : CrossFitResult
    metrics : dict
        The content of ``metrics.json``.
    out_dir : pathlib.Path
    """

    result: object
    metrics: dict
    out_dir: Path

    def __repr__(self):
        m = self.metrics
        parts = [f"{t.upper()} AUC={v['auc']:.3f} [{v['auc_lower_95']:.3f}, {v['auc_upper_95']:.3f}]"
                 for t, v in m.get("auc", {}).items() if v["auc"] == v["auc"]]
        loc = m.get("attention_localisation")
        if loc:
            parts.append(f"localisation AUC={loc['pooled_auc']:.3f}")
        return f"<MilRun: {m['n_patients']} patients, {m['arch']}, " + ", ".join(parts) + f", out={self.out_dir}>"


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


def planted_tile_labels(cohort_dir, bags):
    """Tumour fraction of every tile from the planted masks of a synthetic cohort.

    Parameters
    ----------
    cohort_dir : str or path-like
        A cohort written by ``lnmkit.synth.make_cohort`` (holding ``truth/``).
    bags : dict of str to PatientBag
        Bags with coordinates and per-slide ``tile_size_level0`` attributes.

    Returns
    -------
    dict of str to ndarray
        ``slide_id -> tumour fraction per tile`` in the bag's tile order; slides
        without a planted mask are left out.
    """
    from lnmkit.synth import load_planted_mask

    labels = {}
    for bag in bags.values():
        for j, sid in enumerate(bag.slide_ids):
            attrs = bag.slide_attrs[j] if j < len(bag.slide_attrs) else {}
            if "tile_size_level0" not in attrs:
                raise ValueError(f"planted_tile_labels: slide {sid!r} has no 'tile_size_level0' attribute in "
                                 "its feature file; re-extract features with lnmkit.")
            coords = bag.coords[bag.slide_index == j]
            try:
                mask = load_planted_mask(cohort_dir, sid)
            except (KeyError, FileNotFoundError):
                continue  # no planted truth for this slide (e.g. a cohort written without slides)
            labels[sid] = mask.tile_labels(coords, float(attrs["tile_size_level0"]))
    return labels


def run_mil(
    features_dir,
    cohort_dir,
    out_dir,
    arch="abmil",
    n_splits=5,
    seed=0,
    tasks=("lnm", "otc"),
    estimator_params=None,
    progress=True,
):
    """Cross-fit attention MIL on an extracted feature set and write every output.

    Parameters
    ----------
    features_dir : str or path-like
        Folder written by ``lnmkit features --out`` (one run, or the run folder itself).
    cohort_dir : str or path-like
        Cohort folder (tables; ``truth/`` when synthetic).
    out_dir : str or path-like
        Destination folder.
    arch : {"abmil", "gated-abmil", "clam-sb", "mean", "max"}, default="abmil"
    n_splits : int, default=5
    seed : int, default=0
        Seeds the folds and the training.
    tasks : tuple of str, default=("lnm", "otc")
    estimator_params : dict, optional
        Extra :class:`MILClassifier` parameters (e.g. ``{"max_epochs": 30}``).
    progress : bool, default=True

    Returns
    -------
    MilRun

    Notes
    -----
    Files written to ``out_dir``: ``oof_scores.csv`` (patient_id, lnm_score,
    otc_score, emb_*, fold), ``attention/<slide_id>.csv`` (x, y, attention,
    attention_pct, contribution_<task>, patient_id, fold; one row per tile in
    the feature file's order), ``metrics.json`` (out-of-fold AUCs with DeLong
    95% CIs; attention localisation AUC when the cohort has planted masks) and
    ``models/fold_<k>/`` (``model.safetensors`` + ``config.json``).
    """
    from lnmkit.cohort import Cohort
    from lnmkit.features import open_features

    out_dir = Path(out_dir)
    feature_set = open_features(features_dir)
    cohort = Cohort.from_dir(cohort_dir, check_files=False)  # the bags stand in for the slides
    bags = load_bags(feature_set, cohort, progress=progress)
    outcomes = cohort.outcomes
    bags = {p: b for p, b in bags.items() if p in outcomes.index}
    if not bags:
        raise ValueError(f"run_mil: no slide in {features_dir} belongs to a patient of {cohort_dir}/outcomes.csv.")
    params = dict(estimator_params or {})
    estimator = MILClassifier(arch=arch, tasks=tuple(tasks), random_state=int(seed), **params)
    result = cross_fit(bags, outcomes, n_splits=n_splits, estimator=estimator, random_state=int(seed),
                       progress=progress)

    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "oof_scores.csv") as tmp:
        result.oof.to_csv(tmp, float_format="%.6g")
    att_dir = out_dir / "attention"
    columns = ["x", "y", "attention", "attention_pct"]
    for sid, tab in result.attention.groupby("slide_id", sort=False):
        extra = [c for c in tab.columns if c.startswith("contribution_")] + ["patient_id", "fold"]
        with atomic_path(att_dir / f"{sid}.csv") as tmp:
            tab[columns + extra].to_csv(tmp, index=False, float_format="%.6g")
    for k, model in enumerate(result.models):
        model.save(out_dir / "models" / f"fold_{k}")

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
        "features_dir": str(Path(features_dir).resolve()),
        "ci_method": "DeLong, logit-transformed, 95%",
        "auc": {t: {"auc": r["auc"], "auc_lower_95": r["auc_lower_95"], "auc_upper_95": r["auc_upper_95"],
                    "n": int(r["n"]), "n_pos": int(r["n_pos"])} for t, r in table.iterrows()},
        "best_epochs": [int(m.best_epoch_) for m in result.models],
        "estimator_params": _jsonable_params(estimator.get_params()),
    }
    if (Path(cohort_dir) / "truth").is_dir():
        labels = planted_tile_labels(cohort_dir, bags)
        if labels:
            loc = attention_localisation_auc(result.attention, labels)
            metrics["attention_localisation"] = loc.to_dict()
            metrics["attention_localisation"]["per_slide"] = loc.per_slide["auc"].to_dict()
    metrics = _clean(metrics)
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    return MilRun(result, metrics, out_dir)
