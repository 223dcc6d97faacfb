"""Tests of the synthetic cohort generator (lnmkit.synth)."""

from __future__ import annotations

import json

import numpy as np
import openslide
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage
from skimage.color import rgb2hed
from typer.testing import CliRunner

from lnmkit.cli import app
from lnmkit.cohort import Cohort
from lnmkit.synth import (GASTRIC_STATIONS, OS_MODEL, PN_MODEL, PlantedMask, load_confounder_mask,
                          load_planted_mask, load_truth, make_cohort, make_tissue_image, write_slide)

CONTRACT_COLUMNS = {
    "clinical.csv": ["patient_id", "age", "sex", "tumour_site", "ct_stage", "grade", "lauren_type",
                     "tumour_size_mm", "cea_ng_ml", "ca19_9_u_ml", "lvi", "pni", "neoadjuvant"],
    "radiology_nodes.csv": ["patient_id", "node_id", "modality", "station", "short_axis_mm", "long_axis_mm",
                            "suv_max", "fatty_hilum", "irregular_margin", "necrosis", "enhancement",
                            "mask_label"],
    "outcomes.csv": ["patient_id", "pn_status", "pn_category", "positive_nodes", "examined_nodes", "otc",
                     "os_months", "os_event", "rfs_months", "rfs_event"],
    "slides.csv": ["slide_id", "patient_id", "path", "mpp", "stain", "block"],
}


def _read(cohort_dir, name):
    return pd.read_csv(cohort_dir / name, dtype={"patient_id": str, "slide_id": str, "node_id": str,
                                                 "station": str})


def _haematoxylin(rgb):
    return rgb2hed(rgb)[..., 0]


@pytest.fixture(scope="module")
def large_tables(tmp_path_factory):
    """A table-only cohort large enough to fit the planted models."""
    return make_cohort(tmp_path_factory.mktemp("tables"), n_patients=3000, seed=11, slides=False,
                       progress=False)


# -- tissue texture -------------------------------------------------------------------------


def test_tissue_image_is_deterministic_and_h_and_e_coloured():
    rgb, tissue = make_tissue_image((300, 400), seed=3)
    again, _ = make_tissue_image((300, 400), seed=3)
    other, _ = make_tissue_image((300, 400), seed=4)
    assert rgb.shape == (300, 400, 3) and rgb.dtype == np.uint8
    assert tissue.shape == (300, 400) and tissue.dtype == bool
    np.testing.assert_array_equal(rgb, again)
    assert np.abs(rgb.astype(int) - other).mean() > 5
    assert 0.2 < tissue.mean() < 0.95
    # Background is near white; tissue is pink-purple: red and blue above green.
    assert rgb[~tissue].mean() > 200
    mean_tissue = rgb[tissue].mean(axis=0)
    assert mean_tissue[0] > mean_tissue[1] + 20 and mean_tissue[2] > mean_tissue[1] + 10


def test_tumour_morphology_is_denser_and_more_hyperchromatic():
    size = 768
    mask = np.zeros((48, 48), dtype=bool)
    mask[:, :24] = True  # tumour on the left half
    rgb, tissue = make_tissue_image(size, seed=5, tumour_mask=mask)
    left, right = np.zeros((size, size), bool), np.zeros((size, size), bool)
    left[:, 40:size // 2 - 40] = True
    right[:, size // 2 + 40:-40] = True
    hema = _haematoxylin(rgb)
    tumour, normal = hema[left & tissue], hema[right & tissue]
    assert tumour.mean() > normal.mean() + 0.02
    # More nuclear area (strongly stained pixels) in tumour, not just a colour shift.
    threshold = np.quantile(normal, 0.9)
    assert (tumour > threshold).mean() > 2.5 * (normal > threshold).mean()


def test_tissue_image_rejects_bad_arguments():
    with pytest.raises(ValueError, match="at least 16"):
        make_tissue_image(8, seed=0)
    with pytest.raises(ValueError, match="mpp must be positive"):
        make_tissue_image(64, seed=0, mpp=0)


# -- tables ---------------------------------------------------------------------------------


def test_tables_follow_the_contract(synthetic_cohort_dir):
    for name, columns in CONTRACT_COLUMNS.items():
        assert list(_read(synthetic_cohort_dir, name).columns) == columns, name
    clinical = _read(synthetic_cohort_dir, "clinical.csv")
    assert len(clinical) == 12 and clinical["patient_id"].is_unique
    assert clinical[["patient_id", "age", "sex"]].notna().all().all()
    assert set(clinical["sex"]) <= {"M", "F"}


def test_tables_have_realistic_gaps(synthetic_cohort_dir, large_tables):
    clinical = _read(large_tables, "clinical.csv")
    optional = [c for c in CONTRACT_COLUMNS["clinical.csv"] if c not in ("patient_id", "age", "sex")]
    missing = clinical[optional].isna().mean()
    assert (missing > 0).all() and (missing < 0.3).all()
    nodes = _read(large_tables, "radiology_nodes.csv")
    without = set(clinical["patient_id"]) - set(nodes["patient_id"])
    assert 0.05 < len(without) / len(clinical) < 0.15
    small_nodes = _read(synthetic_cohort_dir, "radiology_nodes.csv")
    assert set(_read(synthetic_cohort_dir, "clinical.csv")["patient_id"]) - set(small_nodes["patient_id"])


def test_radiology_nodes_are_consistent(large_tables):
    nodes = _read(large_tables, "radiology_nodes.csv")
    assert not nodes.duplicated(["patient_id", "node_id"]).any()
    assert (nodes["short_axis_mm"] <= nodes["long_axis_mm"]).all()
    assert set(nodes["station"]) <= set(GASTRIC_STATIONS)
    assert set(nodes["modality"]) <= {"CT", "MRI", "PET-CT", "US"}
    pet = nodes["modality"] == "PET-CT"
    assert pet.any() and nodes.loc[pet, "suv_max"].notna().all() and nodes.loc[~pet, "suv_max"].isna().all()
    assert set(nodes["enhancement"]) == {"homogeneous", "heterogeneous"}


def test_outcomes_are_consistent(large_tables):
    out = _read(large_tables, "outcomes.csv")
    assert set(out["pn_status"]) == {"pN0", "pN+"}
    assert 0.35 < (out["pn_status"] == "pN+").mean() < 0.75
    positive = out["pn_status"] == "pN+"
    assert (out.loc[positive, "positive_nodes"] >= 1).all() and (out.loc[~positive, "positive_nodes"] == 0).all()
    assert (out["examined_nodes"] >= out["positive_nodes"]).all()
    expected = pd.cut(out["positive_nodes"], [-1, 0, 2, 6, 15, np.inf],
                      labels=["pN0", "pN1", "pN2", "pN3a", "pN3b"]).astype(str)
    assert (out["pn_category"] == expected).all()
    # Occult tumour cells only in pN0, and some pN0 patients have them.
    assert out.loc[positive, "otc"].isna().all()
    otc = out.loc[~positive, "otc"]
    assert set(otc.dropna()) == {0, 1} and 0.1 < otc.mean() < 0.5
    for endpoint in ("os", "rfs"):
        assert (out[f"{endpoint}_months"] > 0).all()
        assert set(out[f"{endpoint}_event"]) == {0, 1}
    assert (out["rfs_months"] <= out["os_months"]).all()
    assert ((out["rfs_event"] == 1) | (out["os_event"] == 0)).all()  # death ends recurrence-free survival


def test_small_cohort_contains_every_latent_class(synthetic_cohort_dir):
    out = _read(synthetic_cohort_dir, "outcomes.csv")
    assert (out["pn_status"] == "pN+").sum() >= 3
    assert (out["otc"] == 1).sum() >= 2
    assert ((out["pn_status"] == "pN0") & (out["otc"] == 0)).sum() >= 2
    slides = _read(synthetic_cohort_dir, "slides.csv")
    assert slides["patient_id"].value_counts().max() == 2
    assert {p.split(".")[-1] for p in slides["path"]} == {"svs", "tiff"}


def test_pn_model_coefficients_are_recovered(large_tables):
    from sklearn.linear_model import LogisticRegression

    from lnmkit.synth._tables import pn_design

    truth = pd.read_csv(large_tables / "truth" / "patients.csv", dtype={"patient_id": str})
    truth = truth.set_index("patient_id")
    design = pn_design(truth)
    model = LogisticRegression(C=1e6, max_iter=2000).fit(design, truth["pn_positive"])
    fitted = pd.Series(model.coef_[0], index=design.columns)
    planted = pd.Series(PN_MODEL["coefficients"])
    np.testing.assert_allclose(fitted[planted.index], planted, atol=0.3)
    assert model.intercept_[0] == pytest.approx(PN_MODEL["intercept"], abs=0.3)


def test_observed_tables_show_the_planted_signs(large_tables):
    """An analyst's model on the published tables (no latent score) finds the planted directions."""
    from sklearn.linear_model import LogisticRegression

    clinical = _read(large_tables, "clinical.csv").set_index("patient_id")
    nodes = _read(large_tables, "radiology_nodes.csv")
    out = _read(large_tables, "outcomes.csv").set_index("patient_id")
    x = pd.DataFrame({
        "ct_stage": pd.to_numeric(clinical["ct_stage"].str[2], errors="coerce"),
        "lvi": clinical["lvi"],
        "grade_g3": clinical["grade"].map({"G1": 0, "G2": 0, "G3": 1, "G4": 1}),
        "log_cea": np.log(clinical["cea_ng_ml"]),
        "max_short_axis_mm": nodes.groupby("patient_id")["short_axis_mm"].max(),
        "age": clinical["age"] / 10,
        "sex_male": (clinical["sex"] == "M").astype(float),
    }).dropna()
    y = (out.loc[x.index, "pn_status"] == "pN+").astype(int)
    assert len(x) > 1000
    model = LogisticRegression(C=1e6, max_iter=2000).fit((x - x.mean()) / x.std(), y)
    coef = pd.Series(model.coef_[0], index=x.columns)
    assert (coef[["ct_stage", "lvi", "grade_g3", "log_cea", "max_short_axis_mm"]] > 0.1).all(), coef
    assert (coef[["age", "sex_male"]].abs() < 0.15).all(), coef
    # The planted effect of node size is visible without any model.
    largest = x["max_short_axis_mm"]
    assert largest[y == 1].median() > largest[y == 0].median() + 0.5


def test_overall_survival_follows_the_planted_hazards(large_tables):
    from lifelines import CoxPHFitter

    truth = pd.read_csv(large_tables / "truth" / "patients.csv", dtype={"patient_id": str})
    design = pd.DataFrame({
        "pn_positive": truth["pn_positive"],
        "log1p_positive_nodes": np.log1p(truth["positive_nodes"]),
        "ct_stage_num": truth["ct_stage_num"] - 2.5,
        "age_decades": truth["age"] / 10 - 6.5,
        "morph_score": truth["morph_score"],
        "neoadjuvant": truth["neoadjuvant"],
        "time": truth["os_months"], "event": truth["os_event"],
    })
    cph = CoxPHFitter().fit(design, duration_col="time", event_col="event")
    planted = pd.Series(OS_MODEL["coefficients"])
    np.testing.assert_allclose(cph.params_[planted.index], planted, atol=0.25)
    assert 0.2 < truth["os_event"].mean() < 0.8


# -- slides and planted masks ---------------------------------------------------------------


def test_slides_open_with_pyramid_mpp_and_label(synthetic_cohort_dir):
    slides = _read(synthetic_cohort_dir, "slides.csv")
    truth = load_truth(synthetic_cohort_dir)
    for row in slides.itertuples():
        with openslide.OpenSlide(str(synthetic_cohort_dir / row.path)) as slide:
            assert slide.level_count >= 3, row.path
            entry = truth["slides"][row.slide_id]
            assert slide.dimensions == (entry["width"], entry["height"])
            assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(entry["mpp"])
            if row.path.endswith(".svs"):
                assert slide.properties["openslide.vendor"] == "aperio"
                assert float(slide.properties["openslide.objective-power"]) == 40
                label = np.asarray(slide.associated_images["label"].convert("RGB")).astype(int)
                # A printed card: only grey levels, no stain colours from the tissue.
                assert np.abs(label - label.mean(axis=2, keepdims=True)).max() < 10
                assert (label < 128).mean() > 0.005
            else:
                assert slide.properties["openslide.vendor"] == "generic-tiff"
                assert entry["mpp"] == 0.5


def test_fake_label_names_are_recorded_but_never_in_tables(synthetic_cohort_dir):
    truth = load_truth(synthetic_cohort_dir)
    names = truth["fake_names"]
    assert len(names) >= 10 and all(len(n.split()) == 2 for n in names)
    text = "".join((synthetic_cohort_dir / f).read_text() for f in CONTRACT_COLUMNS)
    assert not any(name in text or name.split()[1] in text for name in names)
    assert not any(mrn in text for mrn in truth["fake_mrns"])


def test_planted_masks_mark_the_tumour_morphology(synthetic_cohort_dir):
    truth = load_truth(synthetic_cohort_dir)
    kinds = {entry["kind"] for entry in truth["slides"].values()}
    assert kinds == {"pn_positive", "otc", "none"}
    checked = 0
    for slide_id, entry in truth["slides"].items():
        planted = load_planted_mask(synthetic_cohort_dir, slide_id)
        assert planted.downsample == 16
        assert planted.mask.shape == (-(-entry["height"] // 16), -(-entry["width"] // 16))
        if entry["kind"] == "none":
            assert not planted.mask.any()
            continue
        assert planted.mask.any()
        if entry["kind"] == "otc":
            assert planted.fraction < 0.03
            assert {r["size"] for r in entry["regions"]} == {"focus"}
        # Read the slide at the mask's grid and compare staining inside and outside.
        path = synthetic_cohort_dir / "slides" / f"{slide_id}.{'svs' if entry['layout'] == 'svs' else 'tiff'}"
        with openslide.OpenSlide(str(path)) as slide:
            level = slide.get_best_level_for_downsample(4)
            factor = slide.level_downsamples[level]
            rgb = np.asarray(slide.read_region((0, 0), level, slide.level_dimensions[level]).convert("RGB"))
        step = int(round(16 / factor))
        hema = _haematoxylin(rgb)[: planted.mask.shape[0] * step, : planted.mask.shape[1] * step]
        cells = hema.reshape(planted.mask.shape[0], step, planted.mask.shape[1], step).mean(axis=(1, 3))
        tissue_cells = (rgb.min(axis=2) < 200)[: cells.shape[0] * step, : cells.shape[1] * step]
        tissue_cells = tissue_cells.reshape(cells.shape[0], step, cells.shape[1], step).mean(axis=(1, 3)) > 0.8
        inside, outside = cells[planted.mask & tissue_cells], cells[~planted.mask & tissue_cells]
        if inside.size >= 4:
            assert inside.mean() > outside.mean() + 0.01, slide_id
            checked += 1
    assert checked >= 3


@pytest.mark.parametrize("layout", ["svs", "tiff"])
def test_write_slide_upsampled_level0_matches_full_resize(tmp_path, layout):
    from PIL import Image

    from lnmkit.synth import write_slide

    rgb, _ = make_tissue_image((200, 300), seed=1)  # level 0 600 x 400: partial edge tiles
    up = write_slide(tmp_path / f"up.{layout}", rgb, 0.25, layout=layout, upsample=2, min_level_size=32)
    full = np.asarray(Image.fromarray(rgb).resize((600, 400), Image.BILINEAR))
    ref = write_slide(tmp_path / f"ref.{layout}", full, 0.25, layout=layout, min_level_size=32)
    with openslide.OpenSlide(str(up)) as a, openslide.OpenSlide(str(ref)) as b:
        assert a.level_dimensions == b.level_dimensions and a.dimensions == (600, 400)
        for level in range(a.level_count):
            pa = np.asarray(a.read_region((0, 0), level, a.level_dimensions[level]).convert("RGB"), dtype=int)
            pb = np.asarray(b.read_region((0, 0), level, b.level_dimensions[level]).convert("RGB"), dtype=int)
            assert np.abs(pa - pb).mean() < 2.0, level


def test_tile_labels_are_area_fractions():
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:6, 3:7] = True
    planted = PlantedMask(mask=mask, downsample=16.0, slide_id="s")
    coords = np.array([[48, 32], [32, 32], [88, 72], [0, 0], [150, 150], [-16, -16]])
    labels = planted.tile_labels(coords, 32)
    # Mask cells x 3..7, y 2..6. Tile 1 is inside; tile 2 has half its width inside;
    # tile 3 spans cells 5.5..7.5 x 4.5..6.5, so 1.5 x 1.5 of its 2 x 2 cells are inside.
    np.testing.assert_allclose(labels, [1.0, 0.5, 0.5625, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(planted.tile_labels([[48, 32]], 64), [1.0])
    with pytest.raises(ValueError, match="positive"):
        planted.tile_labels(coords, 0)


def test_load_planted_mask_names_unknown_slides(synthetic_cohort_dir):
    with pytest.raises(KeyError, match="no slide 'nope'"):
        load_planted_mask(synthetic_cohort_dir, "nope")


# -- determinism, options, CLI --------------------------------------------------------------


def test_same_seed_gives_identical_cohort(tmp_path):
    a = make_cohort(tmp_path / "a", n_patients=5, seed=3, slide_size=512, progress=False)
    b = make_cohort(tmp_path / "b", n_patients=5, seed=3, slide_size=512, progress=False, n_jobs=1)
    c = make_cohort(tmp_path / "c", n_patients=5, seed=4, slide_size=512, progress=False)
    for name in list(CONTRACT_COLUMNS) + ["truth/patients.csv"]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "clinical.csv").read_bytes() != (c / "clinical.csv").read_bytes()
    truth_a, truth_b = json.loads((a / "truth/truth.json").read_text()), load_truth(b)
    assert truth_a["slides"] == truth_b["slides"]
    for slide_id in truth_a["slides"]:
        path = next((a / "slides").glob(f"{slide_id}.*")).name
        with openslide.OpenSlide(str(a / "slides" / path)) as sa, openslide.OpenSlide(str(b / "slides" / path)) as sb:
            np.testing.assert_array_equal(np.asarray(sa.read_region((0, 0), 0, sa.dimensions)),
                                          np.asarray(sb.read_region((0, 0), 0, sb.dimensions)))


def test_tables_only_and_existing_folder(tmp_path):
    root = make_cohort(tmp_path, n_patients=6, seed=0, slides=False, progress=False)
    assert not (root / "slides").exists()
    assert not (root / "slides.csv").exists()
    assert len(_read(root, "truth/slides.csv")) >= 6
    assert len(Cohort.from_dir(root).clinical) == 6
    with pytest.raises(FileExistsError, match="overwrite"):
        make_cohort(tmp_path, n_patients=6, seed=0, slides=False, progress=False)
    make_cohort(tmp_path, n_patients=6, seed=1, slide_size=512, progress=False, overwrite=True)
    assert len(list((root / "slides").iterdir())) == len(_read(root, "slides.csv"))
    # Overwriting with fewer slides leaves no stale slide or mask behind.
    make_cohort(tmp_path, n_patients=4, seed=1, slide_size=512, progress=False, overwrite=True)
    assert len(list((root / "slides").iterdir())) == len(_read(root, "slides.csv")) == 4
    assert len(list((root / "truth" / "masks").iterdir())) == 4
    with pytest.raises(ValueError, match="n_patients must be an integer >= 4"):
        make_cohort(tmp_path / "x", n_patients=2)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(FileExistsError, match="a_file is a file, not a folder"):
        make_cohort(tmp_path / "a_file", n_patients=4, slides=False)
    with pytest.raises(ValueError, match="tiff_fraction"):
        make_cohort(tmp_path / "x", n_patients=8, tiff_fraction=1.5)
    # A float image used to be cast to uint8 without a word (0-1 floats became a black slide).
    with pytest.raises(ValueError, match=r"write_slide: image must be uint8 RGB \(0-255\); got float64 with values"):
        write_slide(tmp_path / "f.svs", np.full((64, 64, 3), 0.9), 0.5)
    with pytest.raises(ValueError, match="write_slide: mpp must be a positive number; got nan"):
        write_slide(tmp_path / "f.svs", np.zeros((64, 64, 3), np.uint8), float("nan"))
    assert write_slide(tmp_path / "i.svs", np.full((64, 64, 3), 200), 0.5).is_file()  # int64 0-255 is fine
    # truth.json records slide_size even when no slide is written, so it is checked then too.
    with pytest.raises(ValueError, match="slide_size must be an integer >= 512; got 10"):
        make_cohort(tmp_path / "x", n_patients=8, slide_size=10, slides=False)
    with pytest.raises(ValueError, match="n_patients must be an integer >= 4; got 6.5"):
        make_cohort(tmp_path / "x", n_patients=6.5, slides=False)


def test_cli_synth(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["synth", str(tmp_path / "c"), "--n-patients", "4", "--seed", "2",
                                 "--slide-size", "512"])
    assert result.exit_code == 0, result.output
    assert "wrote 4 patients" in result.output
    slides = _read(tmp_path / "c", "slides.csv")
    assert all((tmp_path / "c" / p).is_file() for p in slides["path"])
    again = runner.invoke(app, ["synth", str(tmp_path / "c"), "--n-patients", "4", "--slide-size", "512"])
    assert again.exit_code == 2 and "overwrite" in again.output


def test_cohort_loader_accepts_the_synthetic_cohort(synthetic_cohort_dir):
    cohort_module = pytest.importorskip("lnmkit.cohort")
    cohort = cohort_module.Cohort.from_dir(synthetic_cohort_dir)
    assert cohort.problems == []
    assert len(cohort.clinical) == 12 and len(cohort.slides) == len(load_truth(synthetic_cohort_dir)["slides"])
    assert cohort.survival("rfs")["time"].min() > 0


# -- focal regime ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def focal_cohort(tmp_path_factory):
    """A small focal-regime cohort: every kind of patient, both classes with confounders."""
    return make_cohort(tmp_path_factory.mktemp("focal"), n_patients=14, seed=2, slide_size=4096,
                       regime="focal", witness_fraction=0.03, progress=False)


def _slide_rgb(cohort_dir, slide_id, entry, downsample):
    """The slide read at ``downsample`` level-0 pixels per pixel (an existing level)."""
    path = cohort_dir / "slides" / f"{slide_id}.{'svs' if entry['layout'] == 'svs' else 'tiff'}"
    with openslide.OpenSlide(str(path)) as slide:
        level = slide.get_best_level_for_downsample(downsample + 0.01)
        assert slide.level_downsamples[level] == pytest.approx(downsample)
        return np.asarray(slide.read_region((0, 0), level, slide.level_dimensions[level]).convert("RGB"))


def test_focal_witness_fraction_and_regions(focal_cohort):
    truth = load_truth(focal_cohort)
    assert truth["regime"] == "focal" and truth["parameters"]["witness_fraction"] == 0.03
    kinds = {entry["kind"] for entry in truth["slides"].values()}
    assert kinds == {"pn_positive", "otc", "none"}
    for slide_id, entry in truth["slides"].items():
        planted = load_planted_mask(focal_cohort, slide_id)
        drawn = entry["witness_fraction_drawn"]
        # The recorded fraction is the saved mask's share of the tissue.
        assert planted.mask.sum() == pytest.approx(drawn * entry["tissue_fraction"] * planted.mask.size, rel=0.02,
                                                   abs=1)
        tile_px = (112 / (16 * entry["mpp"])) ** 2  # a 224-px tile at 0.5 µm/px, in mask pixels
        if entry["kind"] == "pn_positive":
            assert entry["witness_fraction_requested"] == 0.03
            assert 0.7 * 0.03 < drawn < 1.3 * 0.03, slide_id
            assert 3 <= len(entry["regions"]) <= 8
            areas = np.array([r["area_mask_px"] for r in entry["regions"]]) / tile_px
            # No region larger than a few tiles (these test slides hold little tissue:
            # here the regions are smaller than a tile).
            assert areas.max() < 4.5, areas
            # Several regions, none of them dominating: not one large blob.
            assert areas.max() < 0.75 * areas.sum()
            labels, n_parts = ndimage.label(planted.mask)
            assert n_parts >= 3
        elif entry["kind"] == "otc":
            assert 0 < drawn < 0.3 * 0.03 and 1 <= len(entry["regions"]) <= 3
        else:
            assert drawn == 0 and not planted.mask.any() and entry["regions"] == []
        assert 0 < entry["tissue_fraction"] < 0.8


def test_focal_morphologies_and_confounders(focal_cohort):
    truth = load_truth(focal_cohort)
    codes = truth["focal"]["morphology_codes"]
    morphologies, confounded = set(), {True: 0, False: 0}
    for slide_id, entry in truth["slides"].items():
        planted = load_planted_mask(focal_cohort, slide_id)
        confounders = load_confounder_mask(focal_cohort, slide_id)
        # Confounders are recorded apart from the witness and never overlap it.
        assert not (planted.mask & confounders.mask).any()
        assert confounders.fraction > 0 or not entry["confounders"]
        confounded[entry["kind"] == "pn_positive"] += bool(confounders.mask.any())
        with Image.open(focal_cohort / "truth" / entry["morphology_mask"]) as img:
            morph = np.asarray(img)
        # Every witness pixel has a morphology, nothing else has one.
        assert ((morph > 0) == planted.mask).all()
        drawn = {name for name, code in codes.items() if (morph == code).any()}
        assert drawn == {r["morphology"] for r in entry["regions"]}
        morphologies |= drawn
        for kind in truth["focal"]["confounder_codes"]:
            present = load_confounder_mask(focal_cohort, slide_id, kind).mask.any()
            assert present == any(c["type"] == kind for c in entry["confounders"])
    assert len(morphologies) >= 2
    # Confounders on slides of both classes.
    assert confounded[True] >= 2 and confounded[False] >= 2
    with pytest.raises(ValueError, match="kind must be one of"):
        load_confounder_mask(focal_cohort, slide_id, "tumour")


def test_confounders_are_as_dark_as_the_witness(focal_cohort):
    """Lymphoid aggregates carry more haematoxylin than witness tissue: darkness is not the label."""
    truth = load_truth(focal_cohort)
    hema = {"witness": [], "lymphoid_aggregate": [], "normal": []}
    for slide_id, entry in truth["slides"].items():
        rgb = _slide_rgb(focal_cohort, slide_id, entry, 4 if entry["layout"] == "svs" else 2)
        step = 16 // (4 if entry["layout"] == "svs" else 2)
        h = _haematoxylin(rgb)
        planted = load_planted_mask(focal_cohort, slide_id).mask
        lymph = load_confounder_mask(focal_cohort, slide_id, "lymphoid_aggregate").mask
        anything = planted | load_confounder_mask(focal_cohort, slide_id).mask
        cells = h[: planted.shape[0] * step, : planted.shape[1] * step]
        cells = cells.reshape(planted.shape[0], step, planted.shape[1], step).mean(axis=(1, 3))
        tissue = rgb.min(axis=2) < 200
        tissue = tissue[: planted.shape[0] * step, : planted.shape[1] * step]
        tissue = tissue.reshape(planted.shape[0], step, planted.shape[1], step).mean(axis=(1, 3)) > 0.9
        hema["witness"].extend(cells[planted & tissue])
        hema["lymphoid_aggregate"].extend(cells[lymph & tissue])
        hema["normal"].extend(cells[~anything & tissue])
    means = {k: float(np.mean(v)) for k, v in hema.items()}
    assert min(len(v) for v in hema.values()) > 50
    assert means["witness"] > means["normal"] + 0.01
    assert means["lymphoid_aggregate"] > means["witness"], means


def _colour_auc(root):
    """Cross-validated AUC for pN+ of a colour classifier over a cohort's slides.

    Logistic regression on the tissue's mean and standard deviation of R, G, B and an
    8-bin histogram per channel; 5-fold cross-validation over slides, mean of 5 repeats.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    truth = load_truth(root)
    features, labels = [], []
    for slide_id, entry in truth["slides"].items():
        rgb = _slide_rgb(root, slide_id, entry, 4 if entry["layout"] == "svs" else 2).reshape(-1, 3)
        tissue = rgb[rgb.min(axis=1) < 210].astype(float)
        hist = [np.histogram(tissue[:, c], bins=8, range=(0, 256))[0] / len(tissue) for c in range(3)]
        features.append(np.concatenate([tissue.mean(axis=0), tissue.std(axis=0), *hist]))
        labels.append(entry["kind"] == "pn_positive")
    x, y = np.array(features), np.array(labels)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    aucs = [roc_auc_score(y, cross_val_predict(model, x, y, method="predict_proba",
                                               cv=StratifiedKFold(5, shuffle=True, random_state=r))[:, 1])
            for r in range(5)]
    return float(np.mean(aucs))


def test_focal_colour_statistics_do_not_predict_pn(tmp_path):
    """A colour classifier is near chance on a focal cohort and separates a default-regime one."""
    common = dict(seed=4, slide_size=1024, progress=False, pen_fraction=0.0)
    focal = _colour_auc(make_cohort(tmp_path / "focal", n_patients=40, regime="focal", witness_fraction=0.03,
                                    **common))
    regions = _colour_auc(make_cohort(tmp_path / "regions", n_patients=24, **common))
    assert focal < 0.7 and regions > 0.8, (focal, regions)


@pytest.mark.slow
@pytest.mark.parametrize("witness_fraction", [0.02, 0.10])
def test_focal_colour_statistics_do_not_predict_pn_larger_cohort(tmp_path, witness_fraction):
    root = make_cohort(tmp_path, n_patients=80, seed=12, slide_size=2048, regime="focal",
                       witness_fraction=witness_fraction, progress=False)
    assert _colour_auc(root) < 0.65


def test_focal_regime_is_deterministic_and_leaves_the_default_alone(tmp_path):
    common = dict(n_patients=5, seed=3, slide_size=1024, progress=False)
    a = make_cohort(tmp_path / "a", regime="focal", **common)
    b = make_cohort(tmp_path / "b", regime="focal", n_jobs=1, **common)
    plain = make_cohort(tmp_path / "plain", **common)
    truth_a, truth_b = load_truth(a), load_truth(b)
    assert truth_a["slides"] == truth_b["slides"]
    for folder in ("masks", "morphology", "confounders"):
        for path in sorted((a / "truth" / folder).glob("*.png")):
            assert path.read_bytes() == (b / "truth" / folder / path.name).read_bytes()
    for slide_id in truth_a["slides"]:
        name = next((a / "slides").glob(f"{slide_id}.*")).name
        with openslide.OpenSlide(str(a / "slides" / name)) as sa, openslide.OpenSlide(str(b / "slides" / name)) as sb:
            np.testing.assert_array_equal(np.asarray(sa.read_region((0, 0), 0, sa.dimensions)),
                                          np.asarray(sb.read_region((0, 0), 0, sb.dimensions)))
    # The tables do not depend on the regime; the default writes no focal truth.
    for name in CONTRACT_COLUMNS:
        assert (a / name).read_bytes() == (plain / name).read_bytes(), name
    truth_plain = load_truth(plain)
    assert truth_plain["regime"] == "regions" and "focal" not in truth_plain
    assert not (plain / "truth" / "confounders").exists()
    assert all("witness_fraction_drawn" not in e for e in truth_plain["slides"].values())
    with pytest.raises(KeyError, match="only in the focal regime"):
        load_confounder_mask(plain, next(iter(truth_plain["slides"])))
    # A default cohort written over a focal one leaves no focal truth behind.
    make_cohort(a, overwrite=True, **common)
    assert not list((a / "truth" / "confounders").glob("*.png")) and not list((a / "truth" / "morphology").glob("*"))
    assert (a / "truth" / "truth.json").read_bytes() == (plain / "truth" / "truth.json").read_bytes()


@pytest.mark.parametrize("kwargs, message", [
    ({"regime": "patchy"}, "regime must be one of 'regions', 'focal'; got 'patchy'"),
    ({"regime": "focal", "witness_fraction": 0.2}, r"witness_fraction must be in \[0.005, 0.1\]; got 0.2"),
    ({"regime": "focal", "witness_fraction": 0.001}, r"witness_fraction must be in \[0.005, 0.1\]; got 0.001"),
])
def test_focal_arguments_are_checked(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_cohort(tmp_path, n_patients=4, slides=False, **kwargs)
    assert not (tmp_path / "clinical.csv").exists()


def test_cli_synth_focal(tmp_path):
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "c"), "--n-patients", "4", "--seed", "1",
                                      "--slide-size", "1024", "--regime", "focal", "--witness-fraction", "0.05"])
    assert result.exit_code == 0, result.output
    truth = load_truth(tmp_path / "c")
    assert truth["regime"] == "focal" and truth["focal"]["witness_fraction"] == 0.05
    bad = CliRunner().invoke(app, ["synth", str(tmp_path / "d"), "--regime", "focal", "--witness-fraction", "0.5"])
    assert bad.exit_code == 2 and "witness_fraction" in bad.output
