"""Time synthetic cohort generation: seconds per slide and projected total.

Usage::

    python benchmarks/bench_synth.py [--n-patients 60] [--slide-size 8192] [--out DIR]

Writes a cohort (default: 6 patients at full slide size into a temporary folder),
prints seconds per slide by layout, the table-only time as the baseline, and the
projected time for a 60-patient cohort.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from lnmkit.synth import make_cohort


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-patients", type=int, default=6)
    parser.add_argument("--slide-size", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--n-jobs", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "cohort"
        t0 = time.perf_counter()
        make_cohort(Path(tmp) / "tables", n_patients=args.n_patients, seed=args.seed, slides=False,
                    progress=False)
        t_tables = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        make_cohort(out, n_patients=args.n_patients, seed=args.seed, slide_size=args.slide_size,
                    progress=False, overwrite=True, n_jobs=args.n_jobs)
        t_all, cpu_all = time.perf_counter() - t0, time.process_time() - c0
        truth = json.loads((out / "truth" / "truth.json").read_text())
        n_slides = len(truth["slides"])
        per_slide = (t_all - t_tables) / n_slides
        layouts = {}
        for entry in truth["slides"].values():
            layouts[entry["layout"]] = layouts.get(entry["layout"], 0) + 1
        size_mb = sum(p.stat().st_size for p in (out / "slides").iterdir()) / 2**20
    projected = t_tables / args.n_patients * 60 + per_slide * 60 * 1.1
    print(f"{'item':<34}{'seconds':>10}{'ratio':>10}")
    print(f"{'tables only (baseline)':<34}{t_tables:>10.2f}{1.0:>10.1f}")
    print(f"{'whole cohort':<34}{t_all:>10.2f}{t_all / t_tables:>10.1f}")
    print(f"{'per slide':<34}{per_slide:>10.2f}{per_slide / t_tables:>10.1f}")
    print(f"{'projected, 60 patients (66 slides)':<34}{projected:>10.1f}{projected / t_tables:>10.1f}")
    cpu_slide = cpu_all / n_slides
    print(f"{'CPU seconds per slide':<34}{cpu_slide:>10.2f}{cpu_slide / t_tables:>10.1f}")
    print(f"{'60 patients on 2 free cores (est.)':<34}{cpu_slide * 66 / 2:>10.1f}"
          f"{cpu_slide * 33 / t_tables:>10.1f}")
    print(f"wall times depend on other load on this machine (load average now {os.getloadavg()[0]:.1f}); "
          "the estimate divides CPU time by two cores")
    print(f"slides: {n_slides} {layouts}, slide_size {args.slide_size}, {size_mb:.0f} MiB on disk")


if __name__ == "__main__":
    main()
