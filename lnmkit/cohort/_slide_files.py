"""Open every slide named in ``slides.csv``: what ``lnmkit validate`` checks beyond the table."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lnmkit.cohort._problem import Problem

__all__ = ["check_slide_files", "MAX_SLIDE_SIDE"]

#: Largest plausible level-0 side in pixels (a 10 cm section at 0.1 µm/px); more means a broken header.
MAX_SLIDE_SIDE = 1_000_000
# Side of the region read at the centre of every pyramid level.
_PROBE_PX = 64


def _probe(path, mpp):
    """Why the slide cannot be used (str), or None when it opens and every level decodes."""
    from lnmkit.exceptions import SlideError
    from lnmkit.slides import open_slide

    try:
        if os.path.getsize(path) == 0:
            return "the file is empty (0 bytes)"
        with open_slide(path, mpp=mpp) as slide:
            width, height = slide.dimensions
            if not (0 < width <= MAX_SLIDE_SIDE and 0 < height <= MAX_SLIDE_SIDE):
                return (f"implausible level-0 size {width} x {height} px (the header is probably damaged; "
                        f"a slide side is at most {MAX_SLIDE_SIDE:,} px)")
            if not (np.isfinite(slide.mpp) and 0.01 <= slide.mpp <= 100):
                return (f"implausible microns per pixel {slide.mpp:g} ({slide.mpp_source}); give the level-0 "
                        "value in the mpp column of slides.csv")
            for level, (lw, lh) in enumerate(slide.level_dimensions):
                if lw <= 0 or lh <= 0:
                    return f"level {level} has size {lw} x {lh} px"
                w, h = min(_PROBE_PX, lw), min(_PROBE_PX, lh)
                ds = slide.level_downsamples[level]
                x = int((lw - w) // 2 * ds)
                y = int((lh - h) // 2 * ds)
                slide.read_region((x, y), level, (w, h))
    except SlideError as exc:  # includes MissingMppError
        return exc.reason
    except (OSError, ValueError, MemoryError, OverflowError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def check_slide_files(table, *, max_workers=None) -> list[Problem]:
    """Open every existing slide of a parsed ``slides.csv`` and read a little of each level.

    Per slide: OpenSlide opens the header, the level-0 size is plausible, the
    microns per pixel are known (file or ``mpp`` column) and plausible, and a
    small region at the centre of every pyramid level decodes. This catches
    zero-byte, truncated, renamed (e.g. a PNG named ``.svs``), random-bytes and
    non-slide files, damaged tiles and absurd image sizes before feature
    extraction. Slides run in a thread pool (OpenSlide releases the GIL).

    Parameters
    ----------
    table : lnmkit.cohort._validate.ParsedTable
        The slides table as validated (paths resolved).
    max_workers : int, optional
        Threads; default ``min(16, 2 * cpu_count)``.

    Returns
    -------
    list of Problem
        One error per unusable slide, on the row and ``path`` cell of slides.csv.
        Missing files are not repeated here (the table check reports them).
    """
    if "path" not in table.paths:
        return []
    file = str(table.raw.path)
    texts = table.raw.cells["path"]
    resolved = table.paths["path"]
    mpp_values = table.columns.values.get("mpp")
    mpp_ok = table.columns.present.get("mpp")
    jobs = []
    for i in range(len(resolved)):
        full = resolved.iat[i]
        if full is None or not Path(full).is_file():
            continue
        mpp = float(mpp_values.iat[i]) if mpp_ok is not None and mpp_ok[i] else None
        jobs.append((i, full, mpp))
    if not jobs:
        return []
    workers = max_workers or min(16, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        reasons = list(pool.map(lambda job: _probe(job[1], job[2]), jobs))
    problems = []
    for (i, full, _), reason in zip(jobs, reasons):
        if reason is not None:
            problems.append(Problem(file, int(table.raw.row_numbers[i]), "path", texts.iat[i],
                                    f"cannot be used as a slide: {reason}"))
    return problems
