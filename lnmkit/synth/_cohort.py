"""``make_cohort``: a complete synthetic cohort folder with planted ground truth."""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage
from tqdm.auto import tqdm

from lnmkit._io import atomic_path, atomic_write_text
from lnmkit._validation import check_fraction, check_int
from lnmkit._version import __version__
from lnmkit.synth._slide_file import write_slide
from lnmkit.synth._tables import (GASTRIC_STATIONS, MISSING_RATES, clinical_table, draw_patients,
                                  outcomes_table, radiology_table)
from lnmkit.synth._tissue import (FOCAL_CODES, RENDER_MPP, WITNESS_CODES, _render_canvas, _resize_field,
                                  _resize_mask, _resize_rgb, draw_style, tissue_layout)
from lnmkit.synth._truth import (CENSORING, MASK_DOWNSAMPLE, OS_MODEL, OTC_MODEL, PN_MODEL,
                                 RECURRENCE_MODEL)

__all__ = ["make_cohort", "REGIMES", "MORPHOLOGIES", "CONFOUNDERS"]

#: Ways of planting the pN+ morphology: a few large regions, or small focal witnesses.
REGIMES = ("regions", "focal")
#: pN+ morphologies of the focal regime.
MORPHOLOGIES = ("glandular", "diffuse", "solid")
#: Tumour-like confounders of the focal regime (both classes) and the chance that a
#: slide has at least one region of each.
CONFOUNDERS = {"lymphoid_aggregate": 0.8, "reactive_glands": 0.6, "mucin_pool": 0.4}
#: Codes of ``truth/confounders/<slide_id>.png`` and ``truth/morphology/<slide_id>.png``.
CONFOUNDER_CODES = {name: i + 1 for i, name in enumerate(CONFOUNDERS)}
MORPHOLOGY_CODES = {name: i + 1 for i, name in enumerate(MORPHOLOGIES)}
_WITNESS_FRACTION_RANGE = (0.005, 0.10)
_TILE_UM = 112.0  # a 224-px tile at 0.5 µm/px
# Witness tissue of occult tumour cells relative to the pN+ witness fraction.
_OTC_SHARE = 0.12

_FIRST = ["Alma", "Boris", "Clea", "Dorian", "Edda", "Folke", "Greta", "Hilmar", "Ines", "Joran",
          "Katla", "Lenno", "Mirja", "Nils", "Oda", "Piet", "Quirin", "Runa", "Sten", "Tove",
          "Ulla", "Vidar", "Wilma", "Ysolde"]
_SYLLABLES = ["bar", "dov", "fen", "gral", "hok", "istr", "jul", "kven", "lorm", "mab", "nor", "ovik",
              "pell", "quast", "rund", "sav", "tor", "ulv", "vask", "wend", "zan"]

_SLIDE_MPP = {"svs": 0.25, "tiff": 0.5}


def _columns(table):
    """Column order of a published table: that of its schema in data_schemas/, the contract."""
    from lnmkit.cohort._schemas import load_schemas

    return list(load_schemas()[table].columns)


def _fake_name(rng):
    last = "".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 4)))).capitalize()
    # MRNs never start with 0 so that they survive a round trip through numeric CSV parsing.
    return f"{rng.choice(_FIRST)} {last}", str(int(rng.integers(10_000_000, 100_000_000)))


def _write_csv(df, path):
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n", float_format="%.6g")


def _pick(rng, n, k):
    """Boolean array of length n with exactly k True at random positions."""
    out = np.zeros(n, dtype=bool)
    out[rng.choice(n, size=min(k, n), replace=False)] = True
    return out


def _plan_slides(patients, rng, two_slide_fraction, tiff_fraction, pen_fraction):
    rows = []
    n = len(patients)
    two = _pick(rng, n, int(round(two_slide_fraction * n)) if n >= 5 else 0)
    for pid, k in zip(patients.index, 1 + two.astype(int)):
        for j in range(k):
            name, mrn = _fake_name(rng)
            rows.append({"slide_id": f"{pid}-{'AB'[j]}", "patient_id": pid, "block": f"A{j + 1}",
                         "label_name": name, "label_mrn": mrn})
    slides = pd.DataFrame(rows)
    m = len(slides)
    n_tiff = int(round(tiff_fraction * m))
    if m >= 2 and 0 < tiff_fraction < 1:  # small cohorts still meet both layouts
        n_tiff = min(max(n_tiff, 1), m - 1)
    slides["layout"] = np.where(_pick(rng, m, n_tiff), "tiff", "svs")
    n_pen = int(round(pen_fraction * m))
    if m >= 4 and pen_fraction > 0:
        n_pen = max(n_pen, 1)
    slides["pen_mark"] = _pick(rng, m, n_pen).astype(int)
    slides["mpp"] = slides["layout"].map(_SLIDE_MPP)
    slides["path"] = "slides/" + slides["slide_id"] + np.where(slides["layout"] == "svs", ".svs", ".tiff")
    return slides


def _level0_shape(slide_size, layout):
    """(height, width) of level 0: 40x slides are slide_size wide; 20x slides cover the same area."""
    width = slide_size if layout == "svs" else slide_size // 2
    height = int(round(width * 0.75 / 16)) * 16
    return max(height, 64), max(width // 16 * 16, 64)


def _blob(rng, shape, cy, cx, radius):
    """Irregular blob (bool) around (cy, cx) of about ``radius`` pixels, on a grid of ``shape``."""
    h, w = shape
    r = max(radius, 1.5)
    pad = int(math.ceil(r * 1.6)) + 2
    y0, y1 = max(0, int(cy) - pad), min(h, int(cy) + pad + 1)
    x0, x1 = max(0, int(cx) - pad), min(w, int(cx) + pad + 1)
    out = np.zeros(shape, dtype=bool)
    if y1 <= y0 or x1 <= x0:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    aspect = rng.uniform(0.6, 1.0)
    u = (xx - cx) * math.cos(theta) + (yy - cy) * math.sin(theta)
    v = -(xx - cx) * math.sin(theta) + (yy - cy) * math.cos(theta)
    dist = np.sqrt(u**2 + (v / aspect) ** 2) / r
    phi = np.arctan2(v, u)
    wobble = sum(rng.normal(0, 0.12) * np.cos(k * phi + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4, 6))
    out[y0:y1, x0:x1] = dist < 1 + wobble
    return out


def _plan_tumour(rng, kind, tissue, mask_px_um, morph):
    """Planted tumour mask on the mask grid and a description of its regions."""
    shape = tissue.shape
    mask = np.zeros(shape, dtype=bool)
    regions = []
    if kind == "none":
        return mask, regions
    width_um = shape[1] * mask_px_um
    ys, xs = np.nonzero(tissue)
    depth = ndimage.distance_transform_edt(tissue)
    if ys.size == 0:
        return mask, regions
    if kind == "pn_positive":
        # More aggressive morphology (latent score) -> more and larger tumour areas.
        n_large = int(rng.random() < 0.35 + 0.2 * np.clip(morph, -1.5, 1.5))
        n_medium = int(rng.integers(1, 3)) if n_large == 0 else int(rng.integers(0, 2))
        n_foci = int(rng.integers(1, 4))
        sizes = ([("large", rng.uniform(0.12, 0.22) * width_um) for _ in range(n_large)]
                 + [("medium", rng.uniform(0.05, 0.10) * width_um) for _ in range(n_medium)]
                 + [("focus", min(rng.uniform(30, 80), 0.04 * width_um)) for _ in range(n_foci)])
    else:  # occult tumour cells: small foci only
        sizes = [("focus", min(rng.uniform(25, 60), 0.03 * width_um)) for _ in range(int(rng.integers(1, 4)))]
    for size_class, radius_um in sizes:
        radius = max(radius_um / mask_px_um, 2.0)
        # Centre the region at least its radius inside the tissue where the tissue is
        # that wide, so that foci are not cut away by the tissue border.
        inside = depth[ys, xs] >= min(radius, 0.8 * depth.max())
        choices = np.flatnonzero(inside) if inside.any() else np.arange(ys.size)
        i = choices[rng.integers(choices.size)]
        blob = _blob(rng, shape, ys[i], xs[i], radius) & tissue
        if not blob.any():
            continue
        mask |= blob
        regions.append({"size": size_class, "center_mask_xy": [int(xs[i]), int(ys[i])],
                        "radius_um": round(float(radius_um), 1), "area_mask_px": int(blob.sum())})
    return mask, regions


def _region_areas(rng, total, n):
    """Split ``total`` mask pixels into ``n`` region areas of unequal size."""
    weights = rng.lognormal(0.0, 0.45, n)
    return total * weights / weights.sum()


def _place(rng, label, code, area, free, depth, ys, xs, centres):
    """Plant one irregular region of about ``area`` pixels of ``code`` into ``label``.

    The centre lies inside the tissue (deep enough where the tissue is wide enough) and
    away from earlier regions (``centres``, a list of (y, x, radius) that is extended);
    the radius is corrected until the region, cut to ``free``, has the requested area.
    Returns the region (bool) and its (y, x) centre.
    """
    radius = math.sqrt(area / (math.pi * 0.8))  # blobs have an aspect ratio of 0.6-1.0
    inside = np.flatnonzero(depth[ys, xs] >= min(radius, 0.8 * float(depth.max())))
    candidates = inside if inside.size else np.arange(ys.size)
    for _ in range(40):
        i = candidates[rng.integers(candidates.size)]
        cy, cx = int(ys[i]), int(xs[i])
        if free[cy, cx] and all(math.hypot(cy - y, cx - x) > radius + r + 2 for y, x, r in centres):
            break
    shape_seed = int(rng.integers(2**63))
    best, r = None, radius
    for _ in range(5):
        blob = _blob(np.random.default_rng(shape_seed), label.shape, cy, cx, r) & free
        got = int(blob.sum())
        if best is None or abs(got - area) < abs(int(best.sum()) - area):
            best = blob
        if got == 0 or abs(got - area) <= 0.04 * area:
            break
        r *= float(np.clip(math.sqrt(area / got), 0.6, 1.8))
    label[best] = code
    free &= ~best
    centres.append((cy, cx, r))
    return best, (cy, cx)


def _plan_focal(rng, kind, tissue, mask_px_um, witness_fraction, dominant):
    """Label map (``FOCAL_CODES``) of witness regions and confounders on the mask grid.

    Returns ``(label, regions, confounders, target_fraction)``: witness regions of a
    pN+ slide cover ``witness_fraction`` of the tissue in 3-8 regions of about one to a
    few 224-px tiles at 0.5 µm/px (fewer and smaller for small fractions); occult
    tumour cells cover a small share of it in 1-3 foci. Confounders are drawn the same
    way on every slide, whatever the label.
    """
    label = np.zeros(tissue.shape, dtype=np.uint8)
    regions, confounders = [], []
    ys, xs = np.nonzero(tissue)
    if ys.size == 0:
        return label, regions, confounders, 0.0
    depth = ndimage.distance_transform_edt(tissue)
    free = tissue.copy()
    centres = []
    n_tissue = ys.size
    tile_px = (_TILE_UM / mask_px_um) ** 2
    target = 0.0
    if kind == "pn_positive":
        target = witness_fraction * n_tissue
        n_lo = int(np.clip(math.ceil(target / (4 * tile_px)), 3, 8))
        n_hi = int(np.clip(target // (0.3 * tile_px), n_lo, 8))
        n = int(rng.integers(n_lo, n_hi + 1))
    elif kind == "otc":
        target = _OTC_SHARE * witness_fraction * n_tissue
        n = int(rng.integers(1, 4))
    if target > 0:
        others = [m for m in MORPHOLOGIES if m != dominant]
        for area in _region_areas(rng, target, n):
            morph = dominant if rng.random() < 0.75 else others[int(rng.integers(len(others)))]
            blob, (cy, cx) = _place(rng, label, FOCAL_CODES[morph], area, free, depth, ys, xs, centres)
            if blob.any():
                regions.append({"morphology": morph, "center_mask_xy": [cx, cy],
                                "area_mask_px": int(blob.sum()),
                                "area_tiles": round(float(blob.sum()) / tile_px, 3)})
    # Confounder regions are sized like witness regions at this witness fraction.
    typical = float(np.clip(witness_fraction * n_tissue / 4.0, 0.3 * tile_px, 4.0 * tile_px))
    for name, chance in CONFOUNDERS.items():
        if rng.random() >= chance:
            continue
        for _ in range(int(rng.integers(1, 5))):
            area = typical * float(rng.lognormal(0.0, 0.45))
            blob, (cy, cx) = _place(rng, label, FOCAL_CODES[name], area, free, depth, ys, xs, centres)
            if blob.any():
                confounders.append({"type": name, "center_mask_xy": [cx, cy], "area_mask_px": int(blob.sum()),
                                    "area_tiles": round(float(blob.sum()) / tile_px, 3)})
    return label, regions, confounders, target / n_tissue


def _to_mask_grid(drawn, cell, mask_shape):
    """A boolean grid of the renderer (1 µm/px) summarised per mask cell (majority)."""
    mask = np.zeros(mask_shape, dtype=bool)
    if not drawn.any():
        return mask
    if abs(cell - round(cell)) < 1e-9 and cell >= 1:
        grid = _block_fraction(drawn, cell) >= 0.5
    else:
        grid = _resize_mask(drawn, mask_shape)
    mask[: grid.shape[0], : grid.shape[1]] = grid[: mask_shape[0], : mask_shape[1]]
    return mask


def _block_fraction(mask, factor):
    """Mean of ``mask`` over blocks of ``factor`` x ``factor`` pixels (an integer)."""
    f = int(round(factor))
    h, w = mask.shape[0] // f, mask.shape[1] // f
    return mask[: h * f, : w * f].reshape(h, f, w, f).mean(axis=(1, 3))


def _make_slide(out_dir, row, seed_seq, slide_size, kind, morph, workers, mask_downsample, regime="regions",
                witness_fraction=0.02, morphology=None):
    layout = row["layout"]
    mpp = _SLIDE_MPP[layout]
    h0, w0 = _level0_shape(slide_size, layout)
    canvas_shape = (int(round(h0 * mpp / RENDER_MPP)), int(round(w0 * mpp / RENDER_MPP)))
    mask_shape = (math.ceil(h0 / mask_downsample), math.ceil(w0 / mask_downsample))
    s_layout, s_tumour, s_render = seed_seq.spawn(3)
    focal = regime == "focal"
    style = draw_style(np.random.default_rng(seed_seq.spawn(1)[0])) if focal else None
    outline = tissue_layout((max(8, canvas_shape[0] // 8), max(8, canvas_shape[1] // 8)), s_layout,
                            scale=style["tissue_scale"] if focal else 1.0)
    tissue_grid = _resize_field(outline, mask_shape) > 0
    rng = np.random.default_rng(s_tumour)
    if focal:
        label, regions, confounders, target = _plan_focal(rng, kind, tissue_grid, mask_downsample * mpp,
                                                          witness_fraction, morphology)
        rgb, _, tumour, drawn_labels = _render_canvas(canvas_shape, s_render, None, bool(row["pen_mark"]),
                                                      layout=outline, regions=label, style=style)
    else:
        planned, regions = _plan_tumour(rng, kind, tissue_grid, mask_downsample * mpp, morph)
        rgb, _, tumour, _ = _render_canvas(canvas_shape, s_render, planned if planned.any() else None,
                                           bool(row["pen_mark"]), layout=outline)
    # The saved mask is what was drawn: tumour pixels (on the renderer's 1 µm/px grid,
    # twice as coarse as the canvas) summarised per mask cell.
    cell = mask_downsample * mpp / RENDER_MPP / 2
    mask = _to_mask_grid(tumour, cell, mask_shape)
    upsample = h0 // rgb.shape[0]
    if (rgb.shape[0] * upsample, rgb.shape[1] * upsample) != (h0, w0):
        rgb, upsample = _resize_rgb(rgb, (h0, w0)), 1
    # Small test slides still get >= 3 levels: lower the smallest level size with the slide.
    min_level = max(32, min(256, max(h0, w0) // 16))
    path = out_dir / row["path"]
    write_slide(path, rgb, mpp, layout=layout, label_text=f"Name: {row['label_name']}  MRN {row['label_mrn']}",
                min_level_size=min_level, workers=workers, upsample=upsample)
    mask_rel = f"masks/{row['slide_id']}.png"
    _write_png(out_dir / "truth" / mask_rel, mask.astype(np.uint8) * 255)
    entry = {
        "mask": mask_rel, "downsample": float(mask_downsample), "patient_id": row["patient_id"],
        "kind": kind, "layout": layout, "mpp": mpp, "width": w0, "height": h0,
        "pen_mark": int(row["pen_mark"]), "label_name": row["label_name"], "label_mrn": row["label_mrn"],
        "tumour_fraction": round(float(mask.mean()), 6), "regions": regions,
    }
    if focal:
        present = np.flatnonzero(np.bincount(drawn_labels.ravel(), minlength=len(FOCAL_CODES) + 1))
        morph_map = np.zeros(mask_shape, dtype=np.uint8)
        conf_map = np.zeros(mask_shape, dtype=np.uint8)
        for name, code in FOCAL_CODES.items():
            if code not in present:
                continue
            grid = _to_mask_grid(drawn_labels == code, cell, mask_shape)
            if code in WITNESS_CODES:
                morph_map[grid & mask] = MORPHOLOGY_CODES[name]
            else:
                conf_map[grid & ~mask] = CONFOUNDER_CODES[name]
        rel = {"morphology": f"morphology/{row['slide_id']}.png", "confounders": f"confounders/{row['slide_id']}.png"}
        _write_png(out_dir / "truth" / rel["morphology"], morph_map)
        _write_png(out_dir / "truth" / rel["confounders"], conf_map)
        n_tissue = max(1, int(tissue_grid.sum()))
        entry.update({
            "regime": "focal", "morphology_mask": rel["morphology"], "confounder_mask": rel["confounders"],
            "tissue_fraction": round(float(tissue_grid.mean()), 6),
            "witness_fraction_requested": round(float(target), 6),
            "witness_fraction_drawn": round(float((mask & tissue_grid).sum()) / n_tissue, 6),
            "confounder_fraction_drawn": round(float(((conf_map > 0) & tissue_grid).sum()) / n_tissue, 6),
            "confounders": confounders, "style": style,
        })
    return entry


def _write_png(path, array):
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def make_cohort(out_dir, n_patients=60, seed=0, slide_size=8192, *, regime="regions", witness_fraction=0.02,
                slides=True, two_slide_fraction=0.1, tiff_fraction=0.2, pen_fraction=0.1,
                withheld_radiology_fraction=0.1, mask_downsample=MASK_DOWNSAMPLE, n_jobs=None, workers=1,
                overwrite=False, progress=True):
    """Write a synthetic gastric-cancer cohort with planted ground truth.

    The folder holds the four input tables (``clinical.csv``, ``radiology_nodes.csv``,
    ``outcomes.csv``, ``slides.csv``), pyramidal whole-slide images under ``slides/``
    and the planted truth under ``truth/`` (``truth.json``, ``patients.csv``,
    ``slides.csv``, ``masks/<slide_id>.png``). See the synthetic-cohort documentation
    page for the generating models.

    Parameters
    ----------
    out_dir : str or path-like
        Destination folder; created if needed.
    n_patients : int, default=60
        Number of patients (at least 4).
    seed : int, default=0
        Random seed; the same seed and arguments give identical tables and slide pixels.
    slide_size : int, default=8192
        Level-0 width in pixels of 40x (0.25 µm/px) SVS slides; their height is
        3/4 of it. 20x (0.5 µm/px) TIFF slides cover the same tissue with half the
        pixels per side. At least 512.
    regime : {"regions", "focal"}, default="regions"
        How the pN+ morphology is planted. ``"regions"``: one to a few large tumour
        areas whose extent grows with the latent morphology score (a quick demo).
        ``"focal"``: 3-8 small witness regions covering ``witness_fraction`` of the
        tissue, in one of three morphologies (glandular, diffuse signet-ring-like,
        solid), with tumour-like confounders (lymphoid aggregates, reactive glands,
        mucin pools) on slides of both classes and wide per-slide stain and texture
        variation drawn independently of the label. See the synthetic-cohort
        documentation page.
    witness_fraction : float, default=0.02
        Focal regime only: share of the tissue of a pN+ slide covered by witness
        regions, in [0.005, 0.10]. Occult tumour cells cover about an eighth of it.
    slides : bool, default=True
        Write slides and masks. With ``False`` only the clinical, radiology and
        outcome tables and the truth are written (no ``slides.csv``; the slides that
        would exist are listed in ``truth/slides.csv``).
    two_slide_fraction : float, default=0.1
        Share of patients with two slides (blocks A1 and A2).
    tiff_fraction : float, default=0.2
        Share of slides written as 20x generic TIFF instead of 40x SVS.
    pen_fraction : float, default=0.1
        Share of slides with a marker-pen stroke.
    withheld_radiology_fraction : float, default=0.1
        Share of patients without rows in ``radiology_nodes.csv``.
    mask_downsample : int, default=16
        Level-0 pixels per planted-mask pixel.
    n_jobs : int, optional
        Slides rendered at the same time (threads; rendering releases the GIL).
        Defaults to ``min(2, os.cpu_count())``. The output does not depend on it.
    workers : int, default=1
        Threads used by tifffile to encode the JPEG tiles of one slide.
    overwrite : bool, default=False
        Allow writing into a folder that already holds a cohort. Slide and mask
        files of an earlier run that the new cohort does not list are removed.
    progress : bool, default=True
        Show a progress bar over slides.

    Returns
    -------
    pathlib.Path
        ``out_dir``.

    Raises
    ------
    ValueError
        If an argument is out of range (checked before anything is written).
    FileExistsError
        If ``out_dir`` is a file, or already holds a cohort and ``overwrite`` is False.

    Examples
    --------
    >>> import tempfile
    >>> from lnmkit.synth import make_cohort
    >>> root = make_cohort(tempfile.mkdtemp(), n_patients=8, slides=False, progress=False)
    >>> sorted(p.name for p in root.glob("*.csv"))
    ['clinical.csv', 'outcomes.csv', 'radiology_nodes.csv']
    """
    # slide_size is checked even without slides: truth.json records it as a parameter of the cohort.
    n_patients = check_int(n_patients, "n_patients", "make_cohort", minimum=4)
    if regime not in REGIMES:
        raise ValueError(f"make_cohort: regime must be one of {', '.join(map(repr, REGIMES))}; "
                         f"got {regime!r} instead.")
    witness_fraction = check_fraction(witness_fraction, "witness_fraction", "make_cohort")
    lo, hi = _WITNESS_FRACTION_RANGE
    if not lo <= witness_fraction <= hi:
        raise ValueError(f"make_cohort: witness_fraction must be in [{lo:g}, {hi:g}]; got {witness_fraction!r} "
                         "instead.")
    slide_size = check_int(slide_size, "slide_size", "make_cohort", minimum=512)
    for name, value in [("two_slide_fraction", two_slide_fraction), ("tiff_fraction", tiff_fraction),
                        ("pen_fraction", pen_fraction), ("withheld_radiology_fraction",
                                                         withheld_radiology_fraction)]:
        check_fraction(value, name, "make_cohort")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file, not a folder; choose a folder to write the cohort into.")
    if (out_dir / "clinical.csv").exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already holds a cohort (clinical.csv); pass overwrite=True "
                              "(CLI: --overwrite) or choose an empty folder.")
    out_dir.mkdir(parents=True, exist_ok=True)
    n_jobs = int(n_jobs or min(2, os.cpu_count() or 1))

    root = np.random.SeedSequence(int(seed))
    s_patients, s_tables, s_slides_plan, s_slides = root.spawn(4)
    patients, nodes = draw_patients(n_patients, np.random.default_rng(s_patients))
    rng_tables = np.random.default_rng(s_tables)
    clinical = clinical_table(patients, rng_tables)
    outcomes = outcomes_table(patients, rng_tables)
    n_withheld = int(round(withheld_radiology_fraction * n_patients))
    withheld = patients.index[_pick(rng_tables, n_patients, n_withheld)]
    radiology = radiology_table(nodes, withheld)
    patients["radiology_available"] = (~patients.index.isin(withheld)).astype(int)
    patients["kind"] = np.where(patients["pn_positive"] == 1, "pn_positive",
                                np.where(patients["otc"] == 1, "otc", "none"))
    if regime == "focal":
        # A later child of the root seed: the default regime's draws stay as they were.
        rng_focal = np.random.default_rng(root.spawn(1)[0])
        dominant = np.asarray(MORPHOLOGIES)[rng_focal.integers(len(MORPHOLOGIES), size=n_patients)]
        patients["morphology"] = np.where(patients["kind"] == "none", "", dominant)

    plan = _plan_slides(patients, np.random.default_rng(s_slides_plan), two_slide_fraction,
                        tiff_fraction, pen_fraction)
    slide_table = plan.assign(mpp=np.nan, stain="H&E")[_columns("slides")]

    slide_truth = {}
    if slides:
        seeds = s_slides.spawn(len(plan))
        rows = list(plan.to_dict("records"))

        def job(row, ss):
            p = patients.loc[row["patient_id"]]
            return _make_slide(out_dir, row, ss, slide_size, p["kind"], float(p["morph_score"]), workers,
                               mask_downsample, regime, witness_fraction, p.get("morphology") or None)

        with ThreadPoolExecutor(max_workers=n_jobs) as pool, \
                tqdm(total=len(rows), desc="synthetic slides", disable=not progress) as bar:
            futures = {pool.submit(job, row, ss): row["slide_id"] for row, ss in zip(rows, seeds)}
            for future in as_completed(futures):
                slide_truth[futures[future]] = future.result()
                bar.update()
        slide_truth = {sid: slide_truth[sid] for sid in plan["slide_id"]}
    _remove_stale(out_dir, plan, slide_truth)

    _write_csv(clinical.reset_index()[_columns("clinical")], out_dir / "clinical.csv")
    _write_csv(radiology[_columns("radiology_nodes")], out_dir / "radiology_nodes.csv")
    _write_csv(outcomes.reset_index()[_columns("outcomes")], out_dir / "outcomes.csv")
    if slides:
        _write_csv(slide_table, out_dir / "slides.csv")
    else:
        # a slides.csv naming files that were never written would fail validation
        (out_dir / "slides.csv").unlink(missing_ok=True)
    truth_dir = out_dir / "truth"
    _write_csv(patients.reset_index(), truth_dir / "patients.csv")
    _write_csv(plan.reset_index(drop=True), truth_dir / "slides.csv")
    truth = {
        "generator": "lnmkit.synth.make_cohort", "lnmkit_version": __version__,
        "parameters": {"n_patients": n_patients, "seed": int(seed), "slide_size": slide_size,
                       "slides": bool(slides), "two_slide_fraction": two_slide_fraction,
                       "tiff_fraction": tiff_fraction, "pen_fraction": pen_fraction,
                       "withheld_radiology_fraction": withheld_radiology_fraction},
        "regime": regime,
        "mask_downsample": float(mask_downsample),
        "pn_model": PN_MODEL, "otc_model": OTC_MODEL, "os_model": OS_MODEL,
        "recurrence_model": RECURRENCE_MODEL, "censoring": CENSORING,
        "missing_rates": MISSING_RATES, "stations": list(GASTRIC_STATIONS),
        "withheld_radiology": sorted(withheld),
        "fake_names": sorted({f"{r['label_name']}" for r in plan.to_dict("records")}),
        "fake_mrns": sorted({f"{r['label_mrn']}" for r in plan.to_dict("records")}),
        "slides": slide_truth,
    }
    if regime == "focal":
        truth["parameters"]["witness_fraction"] = witness_fraction
        truth["focal"] = {"witness_fraction": witness_fraction, "otc_share": _OTC_SHARE,
                          "morphologies": list(MORPHOLOGIES), "morphology_codes": MORPHOLOGY_CODES,
                          "confounder_chances": CONFOUNDERS, "confounder_codes": CONFOUNDER_CODES,
                          "patient_morphology": {pid: m for pid, m in patients["morphology"].items() if m}}
    atomic_write_text(truth_dir / "truth.json", json.dumps(truth, indent=2, default=_json_default) + "\n")
    return out_dir


def _remove_stale(out_dir, plan, slide_truth):
    """Delete slides and masks left by an earlier run into the same folder."""
    keep = {out_dir / p for p in plan["path"]} if slide_truth else set()
    for path in (out_dir / "slides").glob("*"):
        if path.suffix in (".svs", ".tiff") and path not in keep:
            path.unlink()
    keep_masks = {out_dir / "truth" / e[key] for e in slide_truth.values()
                  for key in ("mask", "morphology_mask", "confounder_mask") if key in e}
    for folder in ("masks", "morphology", "confounders"):
        for path in (out_dir / "truth" / folder).glob("*.png"):
            if path not in keep_masks:
                path.unlink()


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
