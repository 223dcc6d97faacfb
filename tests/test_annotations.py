"""Slide annotations (QuPath / GeoJSON polygons, mask images) and localisation against them."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lnmkit.exceptions import AnnotationError, AnnotationWarning
from lnmkit.mil import annotation_tile_labels, attention_localisation_auc, auc_delong
from lnmkit.slides import SlideAnnotation, read_annotation, read_annotations

SQUARE = [[0, 0], [200, 0], [200, 200], [0, 200], [0, 0]]
HOLE = [[50, 50], [150, 50], [150, 150], [50, 150], [50, 50]]
ISLAND = [[75, 75], [125, 75], [125, 125], [75, 125], [75, 75]]


def _feature(coordinates, kind="Polygon", cls="Tumor"):
    props = {"objectType": "annotation"}
    if cls is not None:
        props["classification"] = {"name": cls, "color": [200, 0, 0]}
    return {"type": "Feature", "geometry": {"type": kind, "coordinates": coordinates}, "properties": props}


def _tiles(step, extent):
    ys, xs = np.mgrid[0:extent:step, 0:extent:step]
    return np.stack([xs.ravel(), ys.ravel()], 1).astype(float)


def _exact_fraction(coords, tile, shapes):
    """Area fraction of axis-aligned tiles inside unions/differences of axis-aligned boxes, on a 1-px grid."""
    extent = int(coords.max() + tile) + 1
    grid = np.zeros((extent, extent), bool)
    for (x0, y0, x1, y1), value in shapes:
        grid[y0:y1, x0:x1] = value
    return np.array([grid[int(y):int(y + tile), int(x):int(x + tile)].mean() for x, y in coords])


def test_polygon_with_hole_and_island_gives_exact_tile_fractions():
    ann = SlideAnnotation.from_geojson({"type": "FeatureCollection",
                                        "features": [_feature([ISLAND]), _feature([SQUARE, HOLE])]})
    coords = _tiles(25, 250)
    got = ann.tile_labels(coords, 50)
    # the island lies in the hole of the square; listed first, it must survive the hole
    want = _exact_fraction(coords, 50, [((0, 0, 200, 200), True), ((50, 50, 150, 150), False),
                                        ((75, 75, 125, 125), True)])
    # rasterised on 16 x 16 cells per tile: axis-aligned edges on cell borders are exact
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert ann.classes == ("Tumor",) and ann.n_regions == 2


def test_multipolygon_list_of_features_and_class_filter(tmp_path):
    features = [_feature([[SQUARE]], kind="MultiPolygon", cls="Tumor"),
                _feature([[[300, 0], [400, 0], [400, 100], [300, 100], [300, 0]]], cls="Stroma"),
                _feature([[[0, 300], [100, 300], [100, 400], [0, 400], [0, 300]]], cls=None)]
    path = tmp_path / "S1.geojson"
    path.write_text(json.dumps(features))  # QuPath 0.2/0.3 export: a bare list of features
    coords = np.array([[0, 0], [300, 0], [0, 300]], float)
    every = read_annotation(path)
    np.testing.assert_allclose(every.tile_labels(coords, 100), [1, 1, 1])
    tumour = read_annotation(path, classes="Tumor")
    np.testing.assert_allclose(tumour.tile_labels(coords, 100), [1, 0, 0])
    assert tumour.slide_id == "S1" and tumour.classes_seen == ("Tumor", "Stroma")
    with pytest.warns(AnnotationWarning, match=r"no feature is classified as one of \['Tumour'\].*'Stroma'"):
        read_annotations(tmp_path, classes="Tumour")


def test_mask_image_with_downsample_matches_the_same_polygon(tmp_path):
    mask = np.zeros((40, 40), np.uint8)
    mask[5:15, 10:30] = 255  # level-0 x 40..120, y 20..60 at downsample 4
    Image.fromarray(mask).save(tmp_path / "S2.png")
    from_mask = read_annotation(tmp_path / "S2.png", mask_downsample=4)
    poly = SlideAnnotation.from_geojson(_feature([[[40, 20], [120, 20], [120, 60], [40, 60], [40, 20]]]))
    coords = _tiles(10, 160)
    np.testing.assert_allclose(from_mask.tile_labels(coords, 20), poly.tile_labels(coords, 20), atol=1e-9)
    assert from_mask.tile_labels([[40, 20]], 40)[0] == pytest.approx(1.0)
    assert from_mask.tile_labels([[20, 0]], 40)[0] == pytest.approx(0.25)
    with pytest.raises(AnnotationError, match=r"S2\.png: a mask image needs its downsample"):
        read_annotation(tmp_path / "S2.png")


def test_errors_name_the_file_and_the_feature(tmp_path):
    bad_json = tmp_path / "a.geojson"
    bad_json.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(AnnotationError, match=r"a\.geojson: not valid JSON: line 1"):
        read_annotation(bad_json)
    short = tmp_path / "b.geojson"
    short.write_text(json.dumps([_feature([SQUARE]), _feature([[[0, 0], [1, 1], [0, 0]]])]))
    with pytest.raises(AnnotationError, match=r"b\.geojson: feature 1: ring 0: a ring needs at least 4"):
        read_annotation(short)
    words = tmp_path / "c.geojson"
    words.write_text(json.dumps([_feature([[["a", "b"], [1, 1], [2, 2], ["a", "b"]]])]))
    with pytest.raises(AnnotationError, match=r"c\.geojson: feature 0: ring 0: ring positions must be"):
        read_annotation(words)
    odd = tmp_path / "d.geojson"
    odd.write_text(json.dumps([_feature([SQUARE]), _feature([SQUARE]), {"type": "Feature", "geometry": None}]))
    with pytest.raises(AnnotationError, match=r"d\.geojson: feature 2: has no geometry"):
        read_annotation(odd)
    curve = tmp_path / "e.geojson"
    curve.write_text(json.dumps([{"type": "Feature", "geometry": {"type": "Circle", "coordinates": [1, 2]}}]))
    with pytest.raises(AnnotationError, match=r"e\.geojson: feature 0: unknown geometry type 'Circle'"):
        read_annotation(curve)
    with pytest.raises(AnnotationError, match="annotation folder not found"):
        read_annotations(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnnotationError, match="no annotation file"):
        read_annotations(tmp_path / "empty")


def test_points_and_lines_are_left_out_with_a_warning():
    features = [_feature([SQUARE]), {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]}},
                {"type": "Feature", "geometry": {"type": "GeometryCollection", "geometries": [
                    {"type": "LineString", "coordinates": [[0, 0], [9, 9]]},
                    {"type": "Polygon", "coordinates": [[[300, 300], [400, 300], [400, 400], [300, 300]]]}]}}]
    with pytest.warns(AnnotationWarning, match=r"left out 1 feature\(s\) without an area.*feature\(s\) 1"):
        ann = SlideAnnotation.from_geojson({"type": "FeatureCollection", "features": features})
    assert ann.n_regions == 2


def test_localisation_auc_from_a_geojson_folder_equals_the_fraction_labels(tmp_path):
    rng = np.random.default_rng(0)
    coords = _tiles(50, 400)
    rows, fractions = [], {}
    for sid in ("S1", "S2"):
        (tmp_path / f"{sid}.geojson").write_text(json.dumps({"type": "FeatureCollection",
                                                             "features": [_feature([SQUARE, HOLE])]}))
        frac = _exact_fraction(coords, 100, [((0, 0, 200, 200), True), ((50, 50, 150, 150), False)])
        fractions[sid] = frac
        att = frac + rng.normal(0, 0.4, len(frac))
        rows.append(pd.DataFrame({"slide_id": sid, "x": coords[:, 0], "y": coords[:, 1], "attention_pct": att}))
    table = pd.concat(rows, ignore_index=True)
    res = attention_localisation_auc(table, tmp_path, tile_size_level0=100)
    ref = attention_localisation_auc(table, fractions)
    assert res.auc == pytest.approx(ref.auc, abs=1e-12) and list(res.per_slide.index) == ["S1", "S2"]
    y = np.concatenate([(fractions[s] >= 0.5) for s in ("S1", "S2")]).astype(float)
    assert res.auc == pytest.approx(auc_delong(y, table["attention_pct"])["auc"])
    strict = attention_localisation_auc(table, tmp_path, threshold=0.9, tile_size_level0=100)
    assert strict.per_slide["n_tumour"].sum() == sum(int((fractions[s] >= 0.9).sum()) for s in ("S1", "S2"))
    with pytest.raises(ValueError, match="no tile size"):
        attention_localisation_auc(table, tmp_path)
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]"):
        attention_localisation_auc(table, fractions, threshold=0)


def test_planted_masks_as_geojson_give_the_planted_tile_labels(synthetic_cohort_dir, tmp_path):
    from lnmkit.synth import load_planted_mask, load_truth, planted_annotations, write_planted_annotations

    folder = write_planted_annotations(synthetic_cohort_dir, tmp_path / "ann")
    truth = load_truth(synthetic_cohort_dir)["slides"]
    tumour = [s for s, e in truth.items() if e["kind"] == "pn_positive"]
    assert tumour and sorted(p.stem for p in folder.glob("*.geojson")) == sorted(truth)
    from_geojson = read_annotations(folder, classes="Tumor")
    from_masks = planted_annotations(synthetic_cohort_dir)
    for sid in tumour[:3]:
        planted = load_planted_mask(synthetic_cohort_dir, sid)
        h, w = planted.mask.shape
        coords = _tiles(224, int(min(h, w) * planted.downsample) - 224)
        want = planted.tile_labels(coords, 224)
        np.testing.assert_allclose(from_masks[sid].tile_labels(coords, 224), want, atol=1e-9)
        # traced polygons (0.5-pixel simplification) rasterised on 14-px cells: close, not exact
        got = from_geojson[sid].tile_labels(coords, 224)
        assert np.abs(got - want).max() < 0.15 and np.abs(got - want).mean() < 0.01


def test_annotation_tile_labels_follow_each_bags_tile_order():
    from lnmkit.mil import PatientBag

    coords = np.array([[0, 0], [300, 0], [100, 100], [0, 300]])
    bag = PatientBag("P1", np.zeros((4, 2)), coords, [0, 0, 1, 1], ("A", "B"),
                     ({"tile_size_level0": 100}, {"tile_size_level0": 100}))
    ann = {"A": _feature([SQUARE]), "B": SlideAnnotation.from_geojson(_feature([SQUARE]))}
    labels = annotation_tile_labels(ann, {"P1": bag})
    np.testing.assert_allclose(labels["A"], [1, 0])
    np.testing.assert_allclose(labels["B"], [1, 0])


def test_lnmkit_mil_never_imports_the_synthetic_generator():
    code = ("import sys, lnmkit.mil, lnmkit.cli, lnmkit.features, lnmkit.slides; "
            "print([m for m in sys.modules if m.startswith('lnmkit.synth')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    for path in (Path(__file__).parents[1] / "lnmkit" / "mil").glob("*.py"):
        assert "lnmkit.synth" not in path.read_text(), path


def test_cli_synth_writes_the_planted_tumour_as_geojson_annotations(tmp_path):
    from typer.testing import CliRunner

    from lnmkit.cli import app
    from lnmkit.synth import load_truth

    result = CliRunner().invoke(app, ["synth", str(tmp_path / "c"), "--n-patients", "4", "--seed", "2",
                                      "--slide-size", "512"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "c" / "truth" / "annotations"
    assert str(folder) in result.output
    truth = load_truth(tmp_path / "c")["slides"]
    read = read_annotations(folder, classes="Tumor")
    assert sorted(read) == sorted(truth)
    with_tumour = [s for s, e in truth.items() if e["kind"] == "pn_positive"]
    assert all(read[s].n_regions > 0 for s in with_tumour)
