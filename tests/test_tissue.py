"""Tissue segmentation, its GeoJSON and QC outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from lnmkit.slides import TissueMask, open_slide, segment_tissue
from lnmkit.slides._polygons import mask_to_polygons, polygons_to_mask
from lnmkit.slides._tissue import pen_mask, robust_threshold
from lnmkit.synth import make_tissue_image, write_slide

MPP = 1.0  # 2048 px slides of 2 x 2 mm: tissue pieces of realistic physical size
SIZE = 2048
INK = {"blue": (30, 70, 170), "green": (40, 140, 70), "black": (30, 30, 35)}


def _glass(rng, size=SIZE):
    """Slightly noisy off-white glass."""
    return np.clip(rng.normal(240, 2.0, (size, size, 3)), 0, 255).astype(np.uint8)


def _stain(rng, size=SIZE):
    """H&E-like stain field (Beer-Lambert mix of haematoxylin and eosin) covering the image."""
    def smooth(sigma):
        field = ndimage.gaussian_filter(rng.standard_normal((size // 4, size // 4)), sigma)
        return np.kron(field / field.std(), np.ones((4, 4)))
    haematoxylin = np.clip(0.5 + 0.25 * smooth(6) + 0.15 * smooth(1), 0.05, None)
    eosin = np.clip(0.6 + 0.2 * smooth(10), 0.05, None)
    density = haematoxylin[..., None] * [0.56, 0.72, 0.41] + eosin[..., None] * [0.22, 0.80, 0.56]
    return np.clip(255 * np.exp(-density), 0, 255).astype(np.uint8)


def _ellipse(size=SIZE, cx=900, cy=1000, rx=600, ry=450):
    yy, xx = np.mgrid[0:size, 0:size]
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tissue")
    rng = np.random.default_rng(0)
    stained = _stain(rng)
    blob = _ellipse()
    image = _glass(rng)
    image[blob] = stained[blob]
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    pens = {}
    for offset, (name, colour) in enumerate(INK.items()):
        stroke = (np.abs(yy - (1600 + 120 * offset)) < 14) & (xx > 300) & (xx < 1800)
        image[stroke] = colour
        pens[name] = stroke
    # A vertical blue stroke across the tissue blob too.
    across = (np.abs(xx - 900) < 14) & (yy > 500) & (yy < 1500)
    image[across] = INK["blue"]
    paths = {"blob": write_slide(folder / "blob.svs", image, MPP)}
    paths["empty"] = write_slide(folder / "empty.svs", _glass(rng), MPP)
    paths["full"] = write_slide(folder / "full.svs", stained, MPP)
    real, truth = make_tissue_image(SIZE, seed=8, mpp=0.25)
    paths["real"] = write_slide(folder / "real.tiff", real, 0.25, layout="tiff")
    return paths, {"blob": blob & ~across, "pens": pens, "across": across, "real": truth}


def _at_mask(full, tissue):
    """Downsample a level-0 boolean image to the mask grid (majority)."""
    ds = int(round(tissue.downsample))
    h, w = tissue.mask.shape
    return full[:h * ds, :w * ds].reshape(h, ds, w, ds).mean(axis=(1, 3)) > 0.5


def test_blob_area_and_pen_exclusion(slides):
    paths, truth = slides
    with open_slide(paths["blob"]) as slide:
        tissue = segment_tissue(slide)
    assert tissue.downsample == pytest.approx(8.0 / MPP)
    true_area = truth["blob"].sum() * MPP ** 2 / 1e6
    assert tissue.area_mm2 == pytest.approx(true_area, rel=0.08)
    assert len(tissue.polygons) == 2  # the blue stroke across it cuts the blob in two
    # Ink on glass is not tissue.
    for name, stroke in truth["pens"].items():
        assert _at_mask(stroke, tissue)[tissue.mask].sum() == 0, name
    # The polygons are in level-0 pixels: their extent is the blob's.
    points = np.concatenate([rings[0] for rings in tissue.polygons])
    assert points[:, 0].min() == pytest.approx(300, abs=20)
    assert points[:, 0].max() == pytest.approx(1500, abs=20)
    assert points[:, 1].min() == pytest.approx(550, abs=20)
    assert points[:, 1].max() == pytest.approx(1450, abs=20)


def test_pen_inclusion_when_not_excluded(slides):
    paths, truth = slides
    with open_slide(paths["blob"]) as slide:
        tissue = segment_tissue(slide, exclude_pen=False)
    assert tissue.params["exclude_pen"] is False
    # Saturated blue and green ink pass the saturation threshold when not excluded.
    assert _at_mask(truth["pens"]["blue"], tissue)[tissue.mask].sum() > 0
    assert _at_mask(truth["pens"]["green"], tissue)[tissue.mask].sum() > 0


def test_empty_and_full_slides(slides):
    paths, _ = slides
    with open_slide(paths["empty"]) as slide:
        empty = segment_tissue(slide)
    assert not empty.mask.any() and empty.polygons == [] and empty.area_mm2 == 0
    with open_slide(paths["full"]) as slide:
        full = segment_tissue(slide)
    assert full.tissue_fraction > 0.97


def test_realistic_texture_matches_truth(slides):
    paths, truth = slides
    with open_slide(paths["real"]) as slide:
        tissue = segment_tissue(slide)
    # Lumens and small holes inside tissue count as tissue for tiling.
    expected = ndimage.binary_fill_holes(_at_mask(truth["real"], tissue))
    iou = (expected & tissue.mask).sum() / (expected | tissue.mask).sum()
    assert iou > 0.8


def test_geojson_round_trip(slides, tmp_path):
    paths, _ = slides
    with open_slide(paths["blob"]) as slide:
        tissue = segment_tissue(slide, min_object_um2=10_000.0)
    path = tissue.to_geojson(tmp_path / "blob.geojson") and tmp_path / "blob.geojson"
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection"
    feature = data["features"][0]
    assert feature["geometry"]["type"] == "Polygon"
    assert feature["properties"]["objectType"] == "annotation"
    assert feature["properties"]["classification"]["name"] == "Tissue"
    assert data["properties"]["params"]["min_object_um2"] == 10_000.0
    assert data["properties"]["params"]["threshold_range"] == [15.0, 45.0]
    loaded = TissueMask.from_geojson(path)
    assert loaded.mask.shape == tissue.mask.shape
    assert (loaded.mask != tissue.mask).mean() < 0.01
    assert loaded.area_mm2 == pytest.approx(tissue.area_mm2, rel=0.03)
    assert loaded.params == tissue.params and loaded.slide_id == "blob"
    # A QuPath export without lnmkit's properties loads onto a default grid.
    bare = TissueMask.from_geojson({"type": "FeatureCollection", "features": data["features"]})
    assert bare.downsample == 16 and bare.mask.any()
    assert bare.area_mm2 != bare.area_mm2  # no mpp recorded: NaN


def test_polygons_keep_holes():
    mask = np.zeros((40, 40), dtype=bool)
    mask[5:35, 5:35] = True
    mask[15:25, 15:25] = False
    polygons = mask_to_polygons(mask, downsample=4.0)
    assert len(polygons) == 1 and len(polygons[0]) == 2
    back = polygons_to_mask(polygons, mask.shape, 4.0)
    assert (back == mask).mean() > 0.98
    assert not back[20, 20] and back[10, 10]


def test_geojson_refuses_non_polygons(tmp_path):
    path = tmp_path / "points.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}, "properties": {}}]}))
    with pytest.raises(ValueError, match=r"points\.geojson: feature 0 has geometry 'Point'"):
        TissueMask.from_geojson(path)


def test_tile_fractions_are_exact():
    mask = np.zeros((10, 10), dtype=bool)
    mask[:, :5] = True
    tissue = TissueMask(mask, 10.0, params={})
    fractions = tissue.tile_fractions([[0, 0], [25, 0], [40, 40], [50, 0], [95, 95]], 20)
    assert fractions == pytest.approx([1.0, 1.0, 0.5, 0.0, 0.0])


def test_plot_and_qc_png(slides, tmp_path):
    from matplotlib.figure import Figure

    paths, _ = slides
    with open_slide(paths["blob"]) as slide:
        tissue = segment_tissue(slide)
    assert isinstance(tissue.plot(), Figure)
    png = tissue.save_qc(tmp_path / "qc" / "blob.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "TissueMask" in tissue._repr_html_() and "blob" in repr(tissue)


def test_unknown_parameter_is_refused(slides):
    paths, _ = slides
    with open_slide(paths["empty"]) as slide:
        with pytest.raises(TypeError, match=r"unknown parameter\(s\) \['otsu'\]"):
            segment_tissue(slide, otsu=True)


@pytest.mark.parametrize("params, message", [
    ({"mpp": float("nan")}, r"mpp must be a positive number; got nan"),  # used to exhaust memory
    ({"mpp": "8"}, r"mpp must be a positive number; got '8'"),
    ({"median_um": -5.0}, r"median_um must be a number >= 0; got -5\.0"),
    ({"threshold_range": (50,)}, r"threshold_range must be a pair"),
    ({"threshold_range": (45, 15)}, r"threshold_range must be \(low, high\) with low <= high"),
    ({"black_value": 300}, r"black_value must be an integer in \[0, 255\]"),
])
def test_bad_parameter_values_are_refused(slides, params, message):
    paths, _ = slides
    with open_slide(paths["empty"]) as slide:
        with pytest.raises(ValueError, match=rf"segment_tissue: {message}"):
            segment_tissue(slide, **params)


def test_a_path_instead_of_a_slide_is_refused(slides):
    paths, _ = slides
    with pytest.raises(TypeError, match=r"slide must be an open lnmkit Slide; got PosixPath.*open_slide"):
        segment_tissue(paths["empty"])


def test_robust_threshold_guards():
    rng = np.random.default_rng(1)
    glass = rng.normal(5, 2, 5000)
    assert robust_threshold(glass, (15, 45)) == 15  # all glass: nothing passes
    tissue = np.concatenate([rng.normal(60, 5, 5000), rng.normal(160, 10, 5000)])
    assert robust_threshold(tissue, (15, 45)) == 45  # all tissue: both classes kept
    mixed = np.concatenate([rng.normal(8, 4, 5000), rng.normal(45, 12, 5000)])
    assert 15 < robust_threshold(mixed, (15, 45)) < 45
    assert robust_threshold(np.full(10, 7.0), (15, 45)) == 15


def test_pen_mask_spares_haematoxylin_and_eosin():
    he = np.array([[[83, 60, 113], [145, 124, 170], [220, 150, 190], [120, 80, 160]]], dtype=np.uint8)
    assert not pen_mask(he).any()
    ink = np.array([[list(INK["blue"]), list(INK["green"]), list(INK["black"])]], dtype=np.uint8)
    assert pen_mask(ink).all()


def test_cli_tissue_writes_outputs_and_reports_failures(slides, tmp_path):
    from typer.testing import CliRunner

    from lnmkit.cli import app

    paths, _ = slides
    missing = tmp_path / "missing.svs"
    result = CliRunner().invoke(app, ["tissue", str(paths["blob"]), str(missing), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "blob: 2 piece(s)" in result.output
    assert "missing.svs: file does not exist" in result.output
    assert (tmp_path / "blob.geojson").exists() and (tmp_path / "blob.png").exists()


def test_cli_tissue_out_blocked_by_a_file(slides, tmp_path):
    from typer.testing import CliRunner

    from lnmkit.cli import app

    paths, _ = slides
    (tmp_path / "taken").write_text("")
    result = CliRunner().invoke(app, ["tissue", str(paths["empty"]), "--out", str(tmp_path / "taken")])
    assert result.exit_code == 1
    assert f"{tmp_path / 'taken'} is a file, not a folder" in result.output
    assert "File exists" not in result.output
