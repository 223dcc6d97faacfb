"""MIL on focal morphology: out-of-fold LNM AUC, localisation and seed spread.

Synthetic cohorts of the focal regime (``make_cohort(regime="focal")``: pN+
morphology in a few small regions covering ``witness_fraction`` of the tissue,
tumour-like confounders in both classes, stain and texture drawn independently
of the label) are generated once per witness fraction and cached in
``--workdir`` with their feature bags (``--cohort-size`` patients, by default
the largest of ``--sizes``). For each cohort size a stratified subset
of patients is drawn anew for every seed; every contender is cross-fitted on it
(seed = folds, initialisation and sampling) and scored out of fold.

Two references are computed in the same run, on the same features and folds:

* ``ceiling``: the supervised-tile ceiling. A logistic regression on tiles with
  their planted labels known (tile inside a witness region or not), fitted on the
  training folds' tiles; a patient's score is the mean of its top 5% tile
  probabilities. What a slide score can reach when tile labels are given.
* ``oracle``: the true witness fraction of each patient (share of its tiles'
  area that is witness tissue). Below 1 when pN0 patients with occult tumour
  cells carry small foci of the same morphology.

Run (the full grid takes hours on 2 cores; the defaults are the grid of the
documentation table)::

    python benchmarks/bench_mil_focal.py --workdir /tmp/lnmkit-focal
    python benchmarks/bench_mil_focal.py --witness 0.02 --sizes 120 --seeds 3 --contenders instance,abmil

Figures are out-of-fold patient LNM ROC AUC (mean, min-max over seeds),
attention localisation AUC (pooled over pN+ slides: attention percentile
against planted witness tiles), OTC AUC within pN0, and seconds per cross-fit.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

# lnmkit's earlier training: one initialisation, early stopping on a 20% inner validation split,
# light weight decay.
EARLY_STOPPING = {"val_fraction": 0.2, "weight_decay": 1e-4, "n_init": 1}

CONTENDERS = {
    "instance": {},  # lnmkit's default MILClassifier
    "instance, lnm only": {"tasks": ("lnm",)},
    "instance, three initialisations": {"n_init": 3},
    "instance, three initialisations, lnm only": {"n_init": 3, "tasks": ("lnm",)},
    "instance, early stopping": EARLY_STOPPING,
    "abmil": {"arch": "abmil"},
    # lnmkit's first defaults
    "abmil, shared attention, no slide norm": {"arch": "abmil", "shared_attention": True,
                                               "slide_normalisation": None, **EARLY_STOPPING},
    "max": {"arch": "max"},
    "clam-sb": {"arch": "clam-sb"},
}


def _cohort(workdir, n_patients, witness_fraction, slide_size, seed, tile_size=None):
    """Generate (once) a focal cohort and its feature bags; return bags, outcomes, tile labels."""
    from lnmkit import Cohort
    from lnmkit.features import extract, get_encoder, open_features
    from lnmkit.mil import annotation_tile_labels, load_bags
    from lnmkit.synth import make_cohort, planted_annotations

    root = Path(workdir) / f"focal_w{witness_fraction:g}_n{n_patients}_s{slide_size}_seed{seed}"
    if not (root / "truth" / "truth.json").is_file():
        make_cohort(root, n_patients=n_patients, seed=seed, slide_size=slide_size, regime="focal",
                    witness_fraction=witness_fraction, overwrite=True)
    cohort = Cohort.from_dir(root)
    tile_size = tile_size or get_encoder("stain-texture").input_size
    features_dir = root / f"features{tile_size}"
    if not (features_dir / "manifest.csv").is_file() and not any(features_dir.glob("*/manifest.csv")):
        extract(cohort, features_dir, tile_size=tile_size)
    bags = load_bags(open_features(features_dir), cohort, progress=False)
    labels = annotation_tile_labels(planted_annotations(root), bags)
    return bags, cohort.outcomes.loc[list(bags)], labels


def _subset(outcomes, n, rng):
    """Stratified random subset of ``n`` patients."""
    if n >= len(outcomes):
        return list(outcomes.index)
    pos = outcomes.index[outcomes["pn_status"] == "pN+"].to_numpy()
    neg = outcomes.index[outcomes["pn_status"] != "pN+"].to_numpy()
    k = int(round(n * len(pos) / len(outcomes)))
    return sorted(rng.choice(pos, k, replace=False).tolist() + rng.choice(neg, n - k, replace=False).tolist())


def _patient_labels(bags, labels, threshold):
    """Per-tile 0/1 witness labels in bag order, per patient."""
    out = {}
    for pid, bag in bags.items():
        lab = np.zeros(bag.n_tiles)
        for j, sid in enumerate(bag.slide_ids):
            if sid in labels:
                lab[bag.slide_index == j] = labels[sid] >= threshold
        out[pid] = lab
    return out


def _witness_area(bag, labels):
    """Share of a patient's tiles' area that is witness tissue (the oracle's score)."""
    parts = [labels[sid] for sid in bag.slide_ids if sid in labels]
    return float(np.concatenate(parts).mean()) if parts else 0.0


def _ceiling(bags, tile_labels, y, folds, top=0.05):
    """Supervised-tile ceiling: tile logistic probe, patient = mean of its top 5% probabilities."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = pd.Series(np.nan, index=y.index)
    rng = np.random.default_rng(0)
    for k in sorted(folds.unique()):
        train = folds.index[folds != k]
        x = np.concatenate([bags[p].features for p in train])
        t = np.concatenate([tile_labels[p] for p in train])
        keep = (t == 1) | (rng.random(t.size) < min(1.0, 60000 / max(1, (t == 0).sum())))
        if len(np.unique(t[keep])) < 2:
            continue
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, class_weight="balanced"))
        probe.fit(x[keep], t[keep])
        for p in folds.index[folds == k]:
            prob = probe.predict_proba(bags[p].features)[:, 1]
            m = max(1, int(np.ceil(top * prob.size)))
            scores[p] = np.sort(prob)[-m:].mean()
    return roc_auc_score(y, scores)


def _run_contender(name, params, bags, outcomes, labels, seed, threshold):
    from lnmkit.mil import MILClassifier, attention_localisation_auc, cross_fit

    t0 = time.perf_counter()
    res = cross_fit(bags, outcomes, n_splits=5, estimator=MILClassifier(random_state=seed, **params),
                    random_state=seed, progress=False)
    seconds = time.perf_counter() - t0
    table = res.metrics()
    pos_slides = {s: v for s, v in labels.items() if (v >= threshold).any()}
    loc = (attention_localisation_auc(res.attention, pos_slides, threshold=threshold).auc
           if pos_slides else np.nan)
    return {"contender": name, "seed": seed, "lnm_auc": table.loc["lnm", "auc"],
            "otc_auc": table.loc["otc", "auc"] if "otc" in table.index else np.nan,
            "localisation_auc": loc, "seconds": seconds, "folds": res.folds}


def _summary(rows):
    df = pd.DataFrame(rows)

    def span(s):
        s = s.dropna()
        if s.empty:
            return "n/a"
        return f"{s.mean():.3f} ({s.min():.3f}-{s.max():.3f})" if len(s) > 1 else f"{s.mean():.3f}"

    out = df.groupby(["witness", "n", "contender"], sort=False).agg(
        lnm_auc=("lnm_auc", span), localisation_auc=("localisation_auc", span), otc_auc=("otc_auc", span),
        seconds=("seconds", lambda s: f"{s.mean():.0f}" if s.notna().any() else ""), seeds=("seed", "nunique"))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/lnmkit-bench-focal")
    parser.add_argument("--witness", default="0.01,0.02,0.05", help="witness fractions, comma-separated")
    parser.add_argument("--sizes", default="40,120,300", help="cohort sizes (patients), comma-separated")
    parser.add_argument("--contenders",
                        default="instance;instance, lnm only;instance, early stopping;abmil, shared attention, "
                                "no slide norm",
                        help="semicolon-separated names from: " + "; ".join(CONTENDERS))
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (folds, weights, subset)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds FIRST..FIRST+SEEDS-1 (to split a grid over processes)")
    parser.add_argument("--slide-size", type=int, default=8192)
    parser.add_argument("--cohort-seed", type=int, default=2024, help="seed of the generated cohorts")
    parser.add_argument("--cohort-size", type=int, default=None,
                        help="patients of the generated cohort that --sizes subsets are drawn from "
                             "(default: the largest of --sizes)")
    parser.add_argument("--tile-size", type=int, default=None,
                        help="tile side in pixels at 0.5 mpp (default: the stain-texture encoder's, 160)")
    parser.add_argument("--tile-threshold", type=float, default=0.1,
                        help="a tile is a witness tile when at least this share of it is witness tissue "
                             "(focal regions are often smaller than a tile)")
    args = parser.parse_args(argv)

    witness = [float(w) for w in args.witness.split(",")]
    sizes = [int(n) for n in args.sizes.split(",")]
    cohort_size = args.cohort_size or max(sizes)
    if cohort_size < max(sizes):
        parser.error(f"--cohort-size {cohort_size} is below the largest of --sizes ({max(sizes)})")
    names = [c.strip() for c in args.contenders.split(";") if c.strip()]
    unknown = [c for c in names if c not in CONTENDERS]
    if unknown:
        parser.error(f"unknown contender(s) {unknown}; choose from {list(CONTENDERS)}")
    from sklearn.metrics import roc_auc_score

    from lnmkit.mil._targets import lnm_labels

    rows = []
    for wf in witness:
        t0 = time.perf_counter()
        bags_all, outcomes_all, labels = _cohort(args.workdir, cohort_size, wf, args.slide_size, args.cohort_seed,
                                              args.tile_size)
        print(f"witness {wf:g}: cohort of {len(bags_all)} patients ready in {time.perf_counter() - t0:.0f} s",
              flush=True)
        tile_labels = _patient_labels(bags_all, labels, args.tile_threshold)
        for n in sizes:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                pids = _subset(outcomes_all, n, np.random.default_rng(seed))
                bags = {p: bags_all[p] for p in pids}
                outcomes = outcomes_all.loc[pids]
                y = lnm_labels(outcomes)
                known = y.notna()
                folds = None  # every contender's cross-fit draws the same folds for one seed
                for name in names:
                    row = _run_contender(name, CONTENDERS[name], bags, outcomes, labels, seed,
                                         args.tile_threshold)
                    folds = row.pop("folds")
                    rows.append({"witness": wf, "n": n, **row})
                    print(f"  n={n} seed={seed} {name}: LNM {row['lnm_auc']:.3f}, localisation "
                          f"{row['localisation_auc']:.3f}, {row['seconds']:.0f} s", flush=True)
                drawn = pd.Series({p: _witness_area(bags_all[p], labels) for p in pids})
                rows.append({"witness": wf, "n": n, "contender": "reference: oracle (true witness fraction)",
                             "seed": seed, "lnm_auc": roc_auc_score(y[known], drawn[known])})
                rows.append({"witness": wf, "n": n, "contender": "reference: supervised-tile ceiling",
                             "seed": seed, "lnm_auc": _ceiling(bags, tile_labels, y[known], folds[known])})
    table = _summary(rows)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table.to_string())
    return table


if __name__ == "__main__":
    main()
