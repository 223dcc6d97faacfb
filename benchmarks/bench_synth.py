"""Time synthetic cohort generation: seconds per slide, by regime, and projected total.

Usage::

    python benchmarks/bench_synth.py [--n-patients 6] [--slide-size 8192] [--witness-fraction 0.02]

Writes the same cohort (default: 6 patients at full slide size into a temporary folder)
in the default ``regions`` regime and in the ``focal`` regime, prints seconds per slide
by regime against the table-only time (the baseline) and the focal/regions ratio, the
projected time for a 60-patient cohort, and for the focal cohort the drawn witness
fraction of each pN+ and OTC slide against the request.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from lnmkit.synth import make_cohort


def _run(out, args, regime):
    t0, c0 = time.perf_counter(), time.process_time()
    make_cohort(out, n_patients=args.n_patients, seed=args.seed, slide_size=args.slide_size, regime=regime,
                witness_fraction=args.witness_fraction, progress=False, overwrite=True, n_jobs=args.n_jobs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    truth = json.loads((out / "truth" / "truth.json").read_text())
    size_mb = sum(p.stat().st_size for p in (out / "slides").iterdir()) / 2**20
    return wall, cpu, truth, size_mb


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-patients", type=int, default=6)
    parser.add_argument("--slide-size", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--witness-fraction", type=float, default=0.02)
    parser.add_argument("--n-jobs", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # Warm up (imports, nucleus sprite banks) so that neither timing pays for them.
        for regime in ("regions", "focal"):
            make_cohort(Path(tmp) / "warm", n_patients=4, seed=args.seed, slide_size=512, regime=regime,
                        progress=False, overwrite=True)
        t0 = time.perf_counter()
        make_cohort(Path(tmp) / "tables", n_patients=args.n_patients, seed=args.seed, slides=False,
                    progress=False)
        t_tables = time.perf_counter() - t0
        runs = {regime: _run(Path(tmp) / regime, args, regime) for regime in ("regions", "focal")}
    print(f"{'item':<42}{'seconds':>10}{'ratio':>10}")
    print(f"{'tables only (baseline)':<42}{t_tables:>10.2f}{1.0:>10.1f}")
    cpu_slide = {}
    for regime, (wall, cpu, truth, size_mb) in runs.items():
        n_slides = len(truth["slides"])
        per_slide = (wall - t_tables) / n_slides
        cpu_slide[regime] = cpu / n_slides
        projected = t_tables / args.n_patients * 60 + per_slide * 60 * 1.1
        print(f"{regime + ': whole cohort':<42}{wall:>10.2f}{wall / t_tables:>10.1f}")
        print(f"{regime + ': per slide':<42}{per_slide:>10.2f}{per_slide / t_tables:>10.1f}")
        print(f"{regime + ': CPU seconds per slide':<42}{cpu_slide[regime]:>10.2f}"
              f"{cpu_slide[regime] / t_tables:>10.1f}")
        print(f"{regime + ': projected, 60 patients (66 slides)':<42}{projected:>10.1f}{projected / t_tables:>10.1f}")
        print(f"{regime + ': 60 patients on 2 free cores (est.)':<42}{cpu_slide[regime] * 66 / 2:>10.1f}"
              f"{cpu_slide[regime] * 33 / t_tables:>10.1f}")
    print(f"{'focal / regions, CPU seconds per slide':<42}{'':>10}{cpu_slide['focal'] / cpu_slide['regions']:>10.2f}")
    truth = runs["focal"][2]
    for kind in ("pn_positive", "otc"):
        entries = [e for e in truth["slides"].values() if e["kind"] == kind]
        if not entries:
            continue
        ratio = np.array([e["witness_fraction_drawn"] / e["witness_fraction_requested"] for e in entries])
        n_regions = [len(e["regions"]) for e in entries]
        areas = np.concatenate([[r["area_tiles"] for r in e["regions"]] for e in entries])
        print(f"focal {kind}: {len(entries)} slides, requested {entries[0]['witness_fraction_requested']:.4f}, "
              f"drawn/requested {ratio.min():.2f}-{ratio.max():.2f} (mean {ratio.mean():.2f}), "
              f"{min(n_regions)}-{max(n_regions)} regions, region area {areas.min():.2f}-{areas.max():.2f} tiles "
              "(224 px at 0.5 µm/px)")
    print("focal confounders, share of slides with one (pN+ / other): " + ", ".join(
        f"{name} {np.mean(pos) if pos else float('nan'):.2f} / {np.mean(neg) if neg else float('nan'):.2f}"
        for name, pos, neg in _pairs(truth)))
    print(f"wall times depend on other load on this machine (load average now {os.getloadavg()[0]:.1f}); "
          "the estimate divides CPU time by two cores")
    print(f"slides per cohort: {len(truth['slides'])}, slide_size {args.slide_size}, "
          f"{runs['regions'][3]:.0f} / {runs['focal'][3]:.0f} MiB on disk (regions / focal)")


def _pairs(truth):
    for name in ("lymphoid_aggregate", "reactive_glands", "mucin_pool"):
        pos = [any(c["type"] == name for c in e["confounders"]) for e in truth["slides"].values()
               if e["kind"] == "pn_positive"]
        neg = [any(c["type"] == name for c in e["confounders"]) for e in truth["slides"].values()
               if e["kind"] != "pn_positive"]
        yield name, pos, neg


if __name__ == "__main__":
    main()
