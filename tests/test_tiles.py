"""Tile grids at a target resolution and fast tile reading."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lnmkit.exceptions import SlideError
from lnmkit.slides import TissueMask, open_slide
from lnmkit.slides._tiff_jpeg import JpegLevel
from lnmkit.synth import make_tissue_image, write_slide
from lnmkit.tiles import TileGrid, read_tiles, tile_grid

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "openslide"


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    """The same tissue scanned at 40x and 20x, as SVS (4x pyramid) and generic TIFF (2x pyramid)."""
    folder = tmp_path_factory.mktemp("tiles")
    rgb40, _ = make_tissue_image(2048, seed=11, mpp=0.25)
    rgb20 = np.asarray(Image.fromarray(rgb40).reduce(2))
    paths = {}
    for layout in ("svs", "tiff"):
        paths[f"{layout}40"] = write_slide(folder / f"s40.{layout}", rgb40, 0.25, layout=layout)
        paths[f"{layout}20"] = write_slide(folder / f"s20.{layout}", rgb20, 0.5, layout=layout)
    # A 0.263 µm/px "40x" (Aperio GT450-like): grid steps do not fall on whole stored tiles.
    paths["svs263"] = write_slide(folder / "s263.svs", rgb40, 0.263, layout="svs")
    return paths, {0.25: rgb40, 0.5: rgb20, 0.263: rgb40}


def _all_tiles(slide, grid, **kwargs):
    batches = list(read_tiles(slide, grid, **kwargs))
    coords = np.concatenate([c for c, _ in batches]) if batches else np.zeros((0, 2), np.int64)
    tiles = np.concatenate([t for _, t in batches]) if batches else np.zeros((0, 224, 224, 3), np.uint8)
    return coords, tiles


CASES = [  # slide, target mpp, expected (tile_size_level0, level, read_size)
    ("svs40", 0.5, (448, 0, 448)),
    ("svs40", 1.0, (896, 1, 224)),
    ("svs20", 0.5, (224, 0, 224)),
    ("tiff40", 0.5, (448, 1, 224)),
    ("tiff40", 1.0, (896, 2, 224)),
    ("tiff20", 0.5, (224, 0, 224)),
    ("svs263", 0.5, (426, 0, 426)),
]


@pytest.mark.parametrize("name, mpp, expected", CASES)
def test_grid_geometry(slides, name, mpp, expected):
    paths, _ = slides
    with open_slide(paths[name]) as slide:
        grid = tile_grid(slide, None, mpp=mpp, tile_size=224)
    step = expected[0]
    assert (grid.tile_size_level0, grid.level, grid.read_size) == expected
    assert isinstance(grid, TileGrid) and grid.coords.dtype == np.int64
    assert (grid.coords % step == 0).all()
    # Edge tiles that would stick out of the slide are left out.
    assert (grid.coords + step <= 2048 if "40" in name or "263" in name else grid.coords + step <= 1024).all()
    n_side = (2048 if "20" not in name else 1024) // step
    assert len(grid) == n_side ** 2
    # Row-major order (y, then x): what the decoded-tile cache expects.
    order = np.lexsort((grid.coords[:, 0], grid.coords[:, 1]))
    assert (order == np.arange(len(grid))).all()


@pytest.mark.parametrize("name, mpp, expected", CASES)
def test_fast_reader_matches_openslide(slides, name, mpp, expected):
    paths, _ = slides
    with open_slide(paths[name]) as slide:
        grid = tile_grid(slide, None, mpp=mpp, tile_size=224)
        fast_coords, fast = _all_tiles(slide, grid, backend="jpeg", batch_size=5)
        ref_coords, ref = _all_tiles(slide, grid, backend="openslide")
    assert (fast_coords == grid.coords).all() and (ref_coords == grid.coords).all()
    assert fast.shape == (len(grid), 224, 224, 3) and fast.dtype == np.uint8
    diff = np.abs(fast.astype(np.int16) - ref).mean(axis=(1, 2, 3))
    # Same stored JPEG: identical when no scaling is involved; DCT-domain 1/2 decode
    # against full decode + bilinear resize differs by about one grey level.
    assert diff.mean() < 3 and diff.max() < 5


@pytest.mark.parametrize("name, mpp, expected", CASES)
def test_tile_content_is_at_its_coords(slides, name, mpp, expected):
    """Tile i shows the scanned image at coords[i], whatever the level and path."""
    paths, truth = slides
    with open_slide(paths[name]) as slide:
        grid = tile_grid(slide, None, mpp=mpp, tile_size=224)
        coords, tiles = _all_tiles(slide, grid)
        image = truth[slide.mpp]
    step = grid.tile_size_level0
    for index in np.linspace(0, len(grid) - 1, 4).astype(int):
        x, y = coords[index]
        expected_tile = Image.fromarray(image[y:y + step, x:x + step]).resize((224, 224), Image.BILINEAR)
        error = np.abs(tiles[index].astype(np.int16) - np.asarray(expected_tile)).mean()
        assert error < 4, (index, x, y, error)
        # A one-tile shift would be far off: the test can tell positions apart.
        if x + 2 * step <= image.shape[1]:
            shifted = Image.fromarray(image[y:y + step, x + step:x + 2 * step]).resize((224, 224))
            assert np.abs(tiles[index].astype(np.int16) - np.asarray(shifted)).mean() > 2 * error


def test_each_stored_tile_decoded_once_and_scaled(slides, monkeypatch):
    paths, _ = slides
    calls = Counter()
    original = JpegLevel.decode

    def counting(self, col, row, reduction=1):
        calls[(col, row, reduction)] += 1
        return original(self, col, row, reduction)

    with open_slide(paths["svs40"]) as slide:
        grid = tile_grid(slide, None, mpp=0.5)
        slide._jpeg_level(grid.level)  # probe decode happens here, before counting
        monkeypatch.setattr(JpegLevel, "decode", counting)
        _all_tiles(slide, grid)
    assert calls and max(calls.values()) == 1
    # 40x -> 20x: decoded at 1/2 scale in the DCT domain; 4 x 4 grid of 448 px tiles
    # touches every stored 256 px tile of the 1792 x 1792 px covered area (7 x 7).
    assert {reduction for _, _, reduction in calls} == {2}
    assert len(calls) == 49


def test_tissue_fraction_filter(slides):
    paths, _ = slides
    with open_slide(paths["svs20"]) as slide:
        # Mask at downsample 16 (1024 px slide -> 64 px mask): tissue on x < 336 level-0 px,
        # i.e. the first 224 px column fully and half of the second.
        mask = np.zeros((64, 64), dtype=bool)
        mask[:, :21] = True
        tissue = TissueMask(mask, 16.0, params={}, dimensions=slide.dimensions)
        grid = tile_grid(slide, tissue, mpp=0.5, tile_size=224, min_tissue=0.5)
        assert sorted(set(grid.coords[:, 0].tolist())) == [0, 224]
        assert np.allclose(sorted(set(np.round(grid.tissue_fraction, 6))), [0.5, 1.0])
        strict = tile_grid(slide, tissue, mpp=0.5, tile_size=224, min_tissue=0.6)
        assert set(strict.coords[:, 0].tolist()) == {0}
        assert len(tile_grid(slide, tissue, min_tissue=0.0)) == 16


def test_grid_refusals(slides):
    paths, _ = slides
    with open_slide(paths["svs20"]) as slide:
        with pytest.raises(SlideError, match="coarser than the requested 0.25"):
            tile_grid(slide, None, mpp=0.25)
        with pytest.raises(ValueError, match="tile_size must be a positive integer"):
            tile_grid(slide, None, tile_size=0)
        with pytest.raises(ValueError, match="min_tissue must be in"):
            tile_grid(slide, None, min_tissue=1.5)
        with pytest.raises(ValueError, match="mpp must be a positive number; got nan"):
            tile_grid(slide, None, mpp=float("nan"))
        with pytest.raises(ValueError, match="min_tissue must be in .*got nan"):
            tile_grid(slide, None, min_tissue=float("nan"))
        other = TissueMask(np.ones((8, 8), bool), 256.0, params={}, dimensions=(2048, 2048))
        with pytest.raises(ValueError, match="tissue mask is for a"):
            tile_grid(slide, other)
        grid = tile_grid(slide, None)
    with open_slide(paths["svs40"]) as slide:
        with pytest.raises(ValueError, match="grid was made for"):
            next(read_tiles(slide, grid))
        with pytest.raises(ValueError, match="backend must be"):
            next(read_tiles(slide, tile_grid(slide, None), backend="vips"))


def test_batches(slides):
    paths, _ = slides
    with open_slide(paths["tiff20"]) as slide:
        grid = tile_grid(slide, None, mpp=0.5)
        sizes = [len(coords) for coords, tiles in read_tiles(slide, grid, batch_size=7)]
    assert sizes == [7, 7, 2]
    assert "16 tiles" in repr(grid)


def test_plot_returns_figure(slides):
    from matplotlib.figure import Figure

    paths, _ = slides
    with open_slide(paths["svs20"]) as slide:
        grid = tile_grid(slide, None)
        fig = grid.plot(slide.thumbnail(256))
    assert isinstance(fig, Figure)
    assert "<table>" in grid._repr_html_()


def test_lzw_tiff_falls_back_to_openslide():
    path = FIXTURES / "boxes.tiff"
    if not path.exists():
        pytest.skip(f"OpenSlide fixture {path} is not available")
    with open_slide(path, mpp=0.25) as slide:
        grid = tile_grid(slide, None, mpp=0.5, tile_size=32)
        assert grid.level == 1 and len(grid) == 4 * 3
        _, auto = _all_tiles(slide, grid)
        _, ref = _all_tiles(slide, grid, backend="openslide")
        assert (auto == ref).all()
        with pytest.raises(SlideError, match="TIFF compression 8 is not JPEG"):
            next(read_tiles(slide, grid, backend="jpeg"))


def test_rgb_jpeg_svs_fixture_decodes_like_openslide():
    # small.svs stores RGB (not YCbCr) JPEG tiles with shared JPEGTables.
    path = FIXTURES / "small.svs"
    if not path.exists():
        pytest.skip(f"OpenSlide fixture {path} is not available")
    with open_slide(path) as slide:
        grid = tile_grid(slide, None, mpp=0.499, tile_size=8)
        _, fast = _all_tiles(slide, grid, backend="jpeg")
        _, ref = _all_tiles(slide, grid, backend="openslide")
    assert len(grid) == 4 and (fast == ref).all()


def test_damaged_tiles_raise_slide_error_naming_the_file():
    path = FIXTURES / "unreadable.svs"
    if not path.exists():
        pytest.skip(f"OpenSlide fixture {path} is not available")
    with open_slide(path) as slide:
        grid = tile_grid(slide, None, mpp=0.499, tile_size=8)
        with pytest.raises(SlideError, match=r"unreadable\.svs"):
            list(read_tiles(slide, grid))


def test_scaled_decode_of_rgb_jpeg_keeps_colours():
    path = FIXTURES / "small.svs"
    if not path.exists():
        pytest.skip(f"OpenSlide fixture {path} is not available")
    with open_slide(path) as slide:
        level = slide._jpeg_level(0)
        full, half = level.decode(0, 0, 1), level.decode(0, 0, 2)
    reduced = np.asarray(Image.fromarray(full).reduce(2))
    # Decoding RGB components as YCbCr would be off by tens of grey levels.
    assert half.shape == (32, 32, 3) and np.abs(reduced.astype(np.int16) - half).mean() < 1


def test_no_tissue_gives_an_empty_grid(slides):
    paths, _ = slides
    with open_slide(paths["svs20"]) as slide:
        tissue = TissueMask(np.zeros((64, 64), bool), 16.0, params={}, dimensions=slide.dimensions)
        grid = tile_grid(slide, tissue)
        assert len(grid) == 0 and grid.coords.shape == (0, 2)
        assert list(read_tiles(slide, grid)) == []


def test_a_closed_slide_refuses_every_reader(slides):
    paths, _ = slides
    slide = open_slide(paths["svs40"])
    grid = tile_grid(slide, None, mpp=1.0, tile_size=64)
    slide.close()
    for backend in ("auto", "jpeg", "openslide"):
        with pytest.raises(SlideError, match=r"s40\.svs: the slide is closed"):
            next(read_tiles(slide, grid, backend=backend))
