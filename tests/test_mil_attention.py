"""Attention heatmaps, top tiles and localisation AUC; end-to-end on a synthetic cohort (slow)."""

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lnmkit.mil import (  # noqa: E402
    attention_heatmap,
    attention_localisation_auc,
    auc_delong,
    top_tiles,
)
from lnmkit.synth import write_slide  # noqa: E402

TILE = 128


@pytest.fixture(scope="module")
def slide_with_red_corner(tmp_path_factory):
    """A 1024 x 768 slide: pale pink background, saturated red block at x >= 512, y < 384."""
    img = np.full((768, 1024, 3), (235, 200, 215), np.uint8)
    img[:384, 512:] = (200, 20, 30)
    path = tmp_path_factory.mktemp("slide") / "red.svs"
    write_slide(path, img, mpp=0.5, layout="svs")
    ys, xs = np.mgrid[0:768:TILE, 0:1024:TILE]
    coords = np.stack([xs.ravel(), ys.ravel()], 1)
    red = ((coords[:, 0] >= 512) & (coords[:, 1] < 384)).astype(float)
    return path, coords, red


def test_heatmap_returns_figure_with_overlay_and_outline(slide_with_red_corner, tmp_path):
    path, coords, red = slide_with_red_corner
    scores = red + np.linspace(0, 0.1, len(red))
    tissue = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {
        "type": "Polygon", "coordinates": [[[0, 0], [1024, 0], [1024, 768], [0, 768], [0, 0]]]}}]}
    fig = attention_heatmap(path, coords, scores, TILE, thumbnail_size=256, smooth_sigma=0.5, tissue=tissue)
    ax = fig.axes[0]
    assert len(ax.images) == 2 and len(fig.axes) == 2  # thumbnail + overlay, colour bar
    heat = ax.images[1].get_array()
    assert heat.shape == (192, 256)
    assert heat[20, 200] > heat[150, 50]  # the red corner is hotter than the rest
    assert len(ax.lines) == 1
    fig.savefig(tmp_path / "map.png", dpi=60)
    assert (tmp_path / "map.png").stat().st_size > 0
    plt.close(fig)


def test_heatmap_leaves_untiled_area_transparent(slide_with_red_corner):
    path, coords, red = slide_with_red_corner
    keep = red > 0
    fig = attention_heatmap(path, coords[keep], red[keep], TILE, thumbnail_size=256, colorbar=False)
    heat = fig.axes[0].images[1].get_array()
    assert heat.mask[150, 50] and not heat.mask[20, 200]
    plt.close(fig)


def test_top_tiles_reads_the_highest_scoring_regions(slide_with_red_corner):
    path, coords, red = slide_with_red_corner
    fig = top_tiles(path, coords, red, TILE, k=4, mpp=1.0)
    axes = np.array(fig.axes).reshape(2, 4)
    for a in axes[0]:
        tile = a.images[0].get_array()
        assert tile.shape == (64, 64, 3)  # 128 level-0 px at 0.5 µm/px shown at 1.0 µm/px
        assert tile[..., 0].mean() > 150 and tile[..., 1].mean() < 80  # red
    for a in axes[1]:
        assert a.images[0].get_array()[..., 1].mean() > 150  # pale background
    plt.close(fig)


def test_plot_inputs_are_checked(slide_with_red_corner):
    path, coords, red = slide_with_red_corner
    with pytest.raises(ValueError, match="one score per tile"):
        attention_heatmap(path, coords, red[:-1], TILE)
    with pytest.raises(ValueError, match="k must be >= 1"):
        top_tiles(path, coords, red, TILE, k=0)


def test_localisation_auc_per_slide_and_pooled():
    table = pd.DataFrame({
        "slide_id": ["a"] * 4 + ["b"] * 4 + ["c"] * 3,
        "attention_pct": [90, 80, 10, 20, 70, 10, 60, 20, 50, 50, 50],
    })
    labels = {"a": [1, 0.6, 0, 0.2], "b": [1, 0, 0, 0], "c": [0, 0, 0]}  # c has no tumour: skipped
    res = attention_localisation_auc(table, labels)
    assert list(res.per_slide.index) == ["a", "b"]
    assert res.per_slide.loc["a", "auc"] == 1.0 and res.per_slide.loc["b", "auc"] == 1.0
    assert res.per_slide.loc["a", "n_tumour"] == 2
    pooled = auc_delong([1, 1, 0, 0, 1, 0, 0, 0], [90, 80, 10, 20, 70, 10, 60, 20])["auc"]
    assert res.auc == pytest.approx(pooled)
    assert res.mean_slide_auc == 1.0
    assert json.dumps(res.to_dict())
    fig = res.plot()
    assert isinstance(fig, matplotlib.figure.Figure)
    plt.close(fig)
    with pytest.raises(ValueError, match="tile order"):
        attention_localisation_auc(table, {"a": [1, 0]})


def test_auc_delong_matches_sklearn_and_brackets_it():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    s = y + rng.normal(0, 1.2, 80)
    res = auc_delong(y, s)
    assert res["auc"] == pytest.approx(roc_auc_score(y, s))
    assert res["lower"] < res["auc"] < res["upper"]
    # DeLong variance for this layout is about AUC(1-AUC)/min(m, n) order: sanity bounds
    assert 0.02 < res["se"] < 0.08


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_end_to_end_on_synthetic_cohort(tmp_path):
    """Synthetic cohort -> stain-texture features -> run_mil: the headline thresholds."""
    from lnmkit import Cohort
    from lnmkit.features import extract
    from lnmkit.mil import run_mil
    from lnmkit.synth import make_cohort, write_planted_annotations

    cohort_dir = make_cohort(tmp_path / "cohort", n_patients=40, seed=0, slide_size=4096, progress=False)
    extract(Cohort.from_dir(cohort_dir), tmp_path / "features", encoder="stain-texture", progress=False)
    write_planted_annotations(cohort_dir, tmp_path / "annotations")
    run = run_mil(tmp_path / "features", cohort_dir, tmp_path / "mil", n_splits=5, seed=0,
                  annotations=tmp_path / "annotations", progress=False)
    m = json.loads((tmp_path / "mil" / "metrics.json").read_text())
    assert m["auc"]["lnm"]["auc"] >= 0.90
    assert "otc" in m["auc"]
    assert m["attention_localisation"]["pooled_auc"] >= 0.90
    oof = pd.read_csv(tmp_path / "mil" / "oof_scores.csv", index_col="patient_id")
    assert {"lnm_score", "otc_score", "emb_0"} <= set(oof.columns) and len(oof) == 40
    att_files = sorted((tmp_path / "mil" / "attention").glob("*.csv"))
    assert len(att_files) == m["n_slides"]
    first = pd.read_csv(att_files[0])
    assert list(first.columns[:4]) == ["x", "y", "attention", "attention_pct"]
    assert (tmp_path / "mil" / "models" / "fold_4" / "model.safetensors").is_file()
    assert run.metrics == m
