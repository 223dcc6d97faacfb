"""Opening slides: microns per pixel, errors, reading, and no associated images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from lnmkit.exceptions import MissingMppError, SlideError
from lnmkit.slides import Slide, open_slide
from lnmkit.slides._mpp import resolve_mpp
from lnmkit.synth import make_tissue_image, write_slide
from lnmkit.synth._slide_file import downsample_rgb

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "openslide"
LABEL = "Jane Labelname 1957"


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    """A 40x SVS with a label, the same pixels as a generic TIFF, and a TIFF without mpp."""
    folder = tmp_path_factory.mktemp("slides")
    rgb, _ = make_tissue_image(1024, seed=3, mpp=0.25)
    paths = {
        "svs": write_slide(folder / "case_a.svs", rgb, mpp=0.25, layout="svs", label_text=LABEL),
        "tiff": write_slide(folder / "case_a.tiff", rgb, mpp=0.25, layout="tiff"),
        "nompp": folder / "no_mpp.tiff",
    }
    with tifffile.TiffWriter(paths["nompp"]) as tif:
        for index, level in enumerate([rgb, downsample_rgb(rgb, 2)]):
            tif.write(level, tile=(256, 256), compression="jpeg", photometric="rgb", metadata=None,
                      subfiletype=0 if index == 0 else 1)
    return paths, rgb


def _fixture(name):
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"OpenSlide fixture {path} is not available (clone shared/ beside the repo)")
    return path


# ------------------------------------------------------------------------ mpp
def test_mpp_from_aperio_description(slides):
    paths, _ = slides
    with open_slide(paths["svs"]) as slide:
        assert isinstance(slide, Slide)
        assert slide.mpp == pytest.approx(0.25)
        assert slide.vendor == "aperio"
        assert slide.mpp_source.startswith("openslide")
        assert slide.slide_id == "case_a"


def test_mpp_from_tiff_resolution_tags(slides):
    paths, _ = slides
    with open_slide(paths["tiff"]) as slide:
        assert slide.vendor == "generic-tiff"
        assert slide.mpp == pytest.approx(0.25, rel=1e-6)


def test_mpp_override_wins(slides):
    paths, _ = slides
    with open_slide(paths["svs"], mpp=0.2527) as slide:
        assert slide.mpp == pytest.approx(0.2527)
        assert slide.mpp_source == "override"
        assert slide.level_mpp(1) == pytest.approx(0.2527 * slide.level_downsamples[1])


def test_missing_mpp_is_refused_with_fix(slides):
    paths, _ = slides
    with pytest.raises(MissingMppError, match=r"no_mpp\.tiff.*'mpp' column to slides\.csv"):
        open_slide(paths["nompp"])
    with open_slide(paths["nompp"], mpp=0.5) as slide:
        assert slide.mpp == 0.5
    with open_slide(paths["nompp"], require_mpp=False) as slide:
        assert slide.dimensions == (1024, 1024)
        with pytest.raises(MissingMppError):
            slide.mpp


@pytest.mark.parametrize("override", [0, -0.5, float("inf"), "abc"])
def test_bad_override_is_refused(slides, override):
    paths, _ = slides
    with pytest.raises(ValueError, match="mpp override must be a positive number"):
        open_slide(paths["svs"], mpp=override)


def test_nan_override_means_no_override(slides):
    # A blank mpp cell in slides.csv arrives as NaN.
    paths, _ = slides
    with open_slide(paths["svs"], mpp=float("nan")) as slide:
        assert slide.mpp == pytest.approx(0.25)


@pytest.mark.parametrize("properties, expected, source", [
    ({"openslide.mpp-x": "0.2527", "openslide.mpp-y": "0.2529"}, (0.2527, 0.2529), "openslide"),
    ({"aperio.MPP": "0.4990"}, (0.499, 0.499), "aperio.MPP"),
    ({"tiff.ResolutionUnit": "centimeter", "tiff.XResolution": "40000", "tiff.YResolution": "40000"},
     (0.25, 0.25), "TIFF"),
    ({"tiff.ResolutionUnit": "inch", "tiff.XResolution": "101600"}, (0.25, 0.25), "TIFF"),
])
def test_resolve_mpp_sources(properties, expected, source):
    mpp_x, mpp_y, found = resolve_mpp(properties)
    assert (mpp_x, mpp_y) == pytest.approx(expected)
    assert found.startswith(source)


def test_resolve_mpp_ignores_unitless_and_editor_default_resolution():
    _, _, reason = resolve_mpp({"tiff.ResolutionUnit": "none", "tiff.XResolution": "1"})
    assert reason == "the file declares no microns per pixel"
    # 72 dpi is an image editor's default, 352.8 µm/px: not a scanner resolution.
    mpp_x, _, reason = resolve_mpp({"tiff.ResolutionUnit": "inch", "tiff.XResolution": "72"})
    assert mpp_x is None and "352.8" in reason and "plausible" in reason


# -------------------------------------------------------------------- reading
def test_read_region_is_rgb_and_matches_level0(slides):
    paths, rgb = slides
    with open_slide(paths["svs"]) as slide:
        region = slide.read_region((100, 200), 0, (300, 150))
        assert region.shape == (150, 300, 3) and region.dtype == np.uint8
        # JPEG quality 85: a few grey levels of error at most.
        assert np.abs(region.astype(int) - rgb[200:350, 100:400]).mean() < 3
        outside = slide.read_region((1000, 1000), 0, (64, 64))
        assert (outside[30:, 30:] == 255).all()


def test_read_downsampled_and_thumbnail(slides):
    paths, rgb = slides
    with open_slide(paths["svs"]) as slide:
        image, downsample = slide.read_downsampled(16)
        assert downsample == 16 and image.shape == (64, 64, 3)
        assert np.abs(image.astype(int) - downsample_rgb(rgb, 16)).mean() < 3
        thumb = slide.thumbnail(100)
        assert thumb.shape == (100, 100, 3)


def test_closed_slide_refuses_reads(slides):
    paths, _ = slides
    slide = open_slide(paths["svs"])
    assert "case_a" in repr(slide) and "0.25" in repr(slide)
    slide.close()
    slide.close()
    with pytest.raises(SlideError, match="closed"):
        slide.read_region((0, 0), 0, (8, 8))


def test_bad_level_and_size(slides):
    paths, _ = slides
    with open_slide(paths["svs"]) as slide:
        with pytest.raises(ValueError, match="level must be in 0..1"):
            slide.read_region((0, 0), 5, (8, 8))
        with pytest.raises(ValueError, match="size must be positive"):
            slide.read_region((0, 0), 0, (0, 8))


def test_associated_images_are_never_exposed(slides):
    paths, rgb = slides
    with open_slide(paths["svs"]) as slide:
        public = [name for name in dir(slide) if not name.startswith("_")]
        assert not [name for name in public if "associated" in name or name in ("label", "macro")]
        # The thumbnail is computed from the pyramid, not taken from the file's
        # thumbnail/macro images: it matches the level-0 pixels.
        thumb = slide.thumbnail(256)
        assert np.abs(thumb.astype(int) - downsample_rgb(rgb, 4)).mean() < 4


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(SlideError, match="does not exist"):
        open_slide(tmp_path / "nope.svs")
    with pytest.raises(SlideError, match="folder"):
        open_slide(tmp_path)


def test_zero_byte_slide_and_non_path_are_refused(tmp_path):
    (tmp_path / "empty.svs").write_bytes(b"")
    with pytest.raises(SlideError, match=r"empty\.svs: not a whole-slide image format") as caught:
        open_slide(tmp_path / "empty.svs")
    assert caught.value.path.endswith("empty.svs")
    with pytest.raises(TypeError, match="path must be a str or path-like.*got NoneType"):
        open_slide(None)


# ------------------------------------------------------ real OpenSlide fixtures
def test_fixture_small_svs_opens_with_mpp():
    with open_slide(_fixture("small.svs")) as slide:
        assert slide.mpp == pytest.approx(0.499)
        assert slide.dimensions == (16, 16)
        assert slide.read_region((0, 0), 0, (16, 16)).shape == (16, 16, 3)


def test_fixture_boxes_tiff_has_implausible_mpp():
    # Its resolution tags say 72 dpi (352.8 µm/px): refused until an mpp is given.
    path = _fixture("boxes.tiff")
    with pytest.raises(MissingMppError, match=r"boxes\.tiff.*352\.8"):
        open_slide(path)
    with open_slide(path, mpp=0.5) as slide:
        assert slide.level_count == 4
        region = slide.read_region((0, 0), 1, (150, 125))
        assert region.shape == (125, 150, 3)


def test_fixture_dicom_opens_through_openslide():
    with open_slide(_fixture("boxes_0.dcm")) as slide:
        assert slide.vendor == "dicom"
        assert slide.mpp == pytest.approx(0.499)
        assert slide.read_region((0, 0), 0, slide.dimensions).shape[:2] == slide.dimensions[::-1]


@pytest.mark.parametrize("name, message", [
    ("unopenable.tiff", "OpenSlide cannot open it"),
    ("boxes.png", "not a whole-slide image format"),
])
def test_fixture_unopenable_files_name_the_file(name, message):
    with pytest.raises(SlideError, match=message) as caught:
        open_slide(_fixture(name))
    assert caught.value.path.endswith(name)


def test_fixture_unreadable_svs_fails_on_read_naming_the_file():
    with open_slide(_fixture("unreadable.svs")) as slide:
        with pytest.raises(SlideError, match=r"unreadable\.svs.*damaged") as caught:
            slide.read_region((0, 0), 0, (16, 16))
        assert caught.value.path.endswith("unreadable.svs")
