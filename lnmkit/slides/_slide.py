"""Open whole-slide images through OpenSlide, with a resolved microns per pixel."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import openslide
from PIL import Image

from lnmkit.exceptions import MissingMppError, SlideError
from lnmkit.slides._mpp import resolve_mpp

__all__ = ["Slide", "open_slide"]

# Regions larger than this are read in pieces so that a single-level slide never
# needs its whole level 0 in memory.
_CHUNK = 4096


def open_slide(path, mpp=None, *, require_mpp=True):
    """Open a whole-slide image.

    Every format OpenSlide reads is supported (Aperio SVS, generic tiled TIFF,
    Hamamatsu NDPI, MIRAX MRXS, DICOM WSI, Philips TIFF, Leica SCN, Ventana BIF,
    ...). Associated images (label, macro, thumbnail) are never exposed.

    Parameters
    ----------
    path : str or path-like
        Slide file (for DICOM, any file of the series; for MIRAX, the ``.mrxs``).
    mpp : float, optional
        Level-0 microns per pixel; wins over what the file declares. This is what
        the ``mpp`` column of ``slides.csv`` feeds.
    require_mpp : bool, default=True
        Refuse a slide whose microns per pixel are unknown. With ``False`` the
        slide opens and only reading :attr:`Slide.mpp` raises.

    Returns
    -------
    Slide
        Use it as a context manager, or call :meth:`Slide.close`.

    Raises
    ------
    SlideError
        If the file is missing or is not a slide OpenSlide can open.
    MissingMppError
        If ``require_mpp`` and neither the file nor ``mpp`` gives the resolution.
    ValueError
        If ``mpp`` is not a positive number.

    Examples
    --------
    >>> with open_slide("slide.svs") as slide:  # doctest: +SKIP
    ...     print(slide.mpp, slide.dimensions)
    """
    slide = Slide(path, mpp=mpp)
    if require_mpp and slide.mpp_x is None:
        reason = slide._mpp_reason
        slide.close()
        raise MissingMppError(slide.path, _missing_mpp_message(reason))
    return slide


def _missing_mpp_message(reason):
    return (f"microns per pixel unknown ({reason}). Add an 'mpp' column to slides.csv with the "
            f"level-0 microns per pixel of this slide (0.25 for 40x, 0.5 for 20x scans), or pass "
            f"mpp=... to open_slide.")


class Slide:
    """An open whole-slide image.

    Build it with :func:`open_slide`. Coordinates given to :meth:`read_region` are
    level-0 pixels, as in OpenSlide.

    Parameters
    ----------
    path : str or path-like
        Slide file.
    mpp : float, optional
        Level-0 microns per pixel override.

    Attributes
    ----------
    path : pathlib.Path
        The slide file.
    slide_id : str
        File name without its extension.
    vendor : str
        Format as OpenSlide names it (``aperio``, ``generic-tiff``, ``dicom``, ...).
    mpp_x, mpp_y : float or None
        Level-0 microns per pixel along x and y.
    mpp_source : str
        Where the microns per pixel came from (``override``, ``openslide.mpp-x/mpp-y``, ...).
    dimensions : tuple of int
        Level-0 ``(width, height)``.
    level_count : int
    level_dimensions : tuple of tuple of int
    level_downsamples : tuple of float
    """

    def __init__(self, path, mpp=None):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"open_slide: path must be a str or path-like naming a slide file; "
                            f"got {type(path).__name__} instead.")
        self.path = Path(path)
        self.slide_id = self.path.stem
        if not self.path.exists():
            raise SlideError(self.path, "file does not exist.")
        if self.path.is_dir():
            raise SlideError(self.path, "is a folder, not a slide file.")
        try:
            self._osr = openslide.OpenSlide(os.fspath(self.path))
        except openslide.OpenSlideUnsupportedFormatError:
            raise SlideError(self.path, "not a whole-slide image format that OpenSlide recognises "
                             "(plain PNG/JPEG images and stripped TIFFs are not slides).") from None
        except (openslide.OpenSlideError, OSError) as error:
            raise SlideError(self.path, f"OpenSlide cannot open it: {error}.") from None
        self._closed = False
        props = self._osr.properties
        self.vendor = props.get("openslide.vendor", "unknown")
        try:
            self.mpp_x, self.mpp_y, source = resolve_mpp(props, override=mpp)
        except ValueError:
            self._osr.close()
            raise
        self.mpp_source = source if self.mpp_x is not None else "unknown"
        self._mpp_reason = source
        self.dimensions = tuple(int(v) for v in self._osr.dimensions)
        self.level_count = int(self._osr.level_count)
        self.level_dimensions = tuple(tuple(int(v) for v in d) for d in self._osr.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in self._osr.level_downsamples)
        self._fast_levels = {}
        self._fast_reasons = {}

    # ----------------------------------------------------------------- properties
    @property
    def mpp(self):
        """float: Level-0 microns per pixel (mean of x and y).

        Raises
        ------
        MissingMppError
            If the file declares none and no override was given.
        """
        if self.mpp_x is None:
            raise MissingMppError(self.path, _missing_mpp_message(self._mpp_reason))
        return (self.mpp_x + self.mpp_y) / 2.0

    @property
    def properties(self):
        """dict: OpenSlide's metadata properties of the slide (strings)."""
        return dict(self._openslide().properties)

    def level_mpp(self, level):
        """Microns per pixel of a pyramid level.

        Parameters
        ----------
        level : int
            Pyramid level.

        Returns
        -------
        float
        """
        self._check_level(level)
        return self.mpp * self.level_downsamples[level]

    def best_level_for_mpp(self, mpp, tolerance=0.1):
        """Coarsest level that still resolves ``mpp`` microns per pixel.

        Parameters
        ----------
        mpp : float
            Target microns per pixel.
        tolerance : float, default=0.1
            A level whose mpp is at most ``mpp * (1 + tolerance)`` counts as fine
            enough (scanners write e.g. 0.2527 or 0.263 µm/px for "40x").

        Returns
        -------
        int
            The level; 0 if even level 0 is coarser than ``mpp``.
        """
        best = 0
        for level in range(self.level_count):
            if self.level_mpp(level) <= mpp * (1.0 + tolerance):
                if self.level_downsamples[level] > self.level_downsamples[best]:
                    best = level
        return best

    # -------------------------------------------------------------------- reading
    def read_region(self, location, level, size):
        """Read a region as RGB pixels.

        Parameters
        ----------
        location : tuple of int
            Top-left ``(x, y)`` in level-0 pixels.
        level : int
            Pyramid level to read from.
        size : tuple of int
            ``(width, height)`` in pixels of ``level``.

        Returns
        -------
        ndarray of shape (height, width, 3), dtype uint8
            Areas outside the scanned image are white.

        Raises
        ------
        SlideError
            If the slide's tiles cannot be decoded.
        """
        self._check_level(level)
        width, height = int(size[0]), int(size[1])
        if width <= 0 or height <= 0:
            raise ValueError(f"read_region: size must be positive; got {tuple(size)} instead.")
        x, y = int(location[0]), int(location[1])
        try:
            rgba = self._openslide().read_region((x, y), level, (width, height))
        except openslide.OpenSlideError as error:
            raise SlideError(self.path, f"cannot decode the region at level-0 ({x}, {y}), level "
                             f"{level}, size {width}x{height}: {error}. The file is damaged; "
                             f"re-export or re-scan it.") from None
        return rgba_to_rgb(np.asarray(rgba))

    def read_downsampled(self, downsample):
        """Read the whole slide at (about) a given downsample.

        The coarsest level not coarser than ``downsample`` is read piece by piece
        and box-reduced by an integer factor, so memory stays bounded even for a
        single-level slide.

        Parameters
        ----------
        downsample : float
            Wanted level-0 pixels per output pixel (>= 1).

        Returns
        -------
        image : ndarray of shape (h, w, 3), dtype uint8
        downsample : float
            Level-0 pixels per output pixel actually obtained.
        """
        downsample = max(1.0, float(downsample))
        level = 0
        for candidate, value in enumerate(self.level_downsamples):
            if value <= downsample * 1.001 and value > self.level_downsamples[level]:
                level = candidate
        level_ds = self.level_downsamples[level]
        factor = max(1, int(round(downsample / level_ds)))
        width, height = self.level_dimensions[level]
        chunk = max(factor, _CHUNK // factor * factor)
        rows = []
        for top in range(0, height, chunk):
            row = []
            for left in range(0, width, chunk):
                size = (min(chunk, width - left), min(chunk, height - top))
                region = self.read_region((round(left * level_ds), round(top * level_ds)), level, size)
                if factor > 1:
                    region = np.asarray(Image.fromarray(region).reduce(factor))
                row.append(region)
            rows.append(np.concatenate(row, axis=1))
        return np.concatenate(rows, axis=0), level_ds * factor

    def thumbnail(self, max_size=1024):
        """A downsampled RGB image of the whole slide (never the scanner's label or macro).

        Parameters
        ----------
        max_size : int or tuple of int, default=1024
            Largest width and height of the result.

        Returns
        -------
        ndarray of shape (h, w, 3), dtype uint8
        """
        box = (max_size, max_size) if np.isscalar(max_size) else tuple(max_size)
        width, height = self.dimensions
        scale = max(width / box[0], height / box[1], 1.0)
        image, _ = self.read_downsampled(scale)
        out = (max(1, min(box[0], round(width / scale))), max(1, min(box[1], round(height / scale))))
        if image.shape[1] != out[0] or image.shape[0] != out[1]:
            image = np.asarray(Image.fromarray(image).resize(out, Image.Resampling.BOX))
        return image

    # ------------------------------------------------------------------ internals
    def _check_level(self, level):
        if not 0 <= int(level) < self.level_count:
            raise ValueError(f"level must be in 0..{self.level_count - 1} for {self.path.name}; "
                             f"got {level} instead.")

    def _openslide(self):
        if self._closed:
            raise SlideError(self.path, "the slide is closed; open it again with open_slide().")
        return self._osr

    def _jpeg_level(self, level):
        """Direct JPEG-tile reader of a level, or None when the level needs OpenSlide."""
        self._openslide()  # a closed slide must refuse to read on every path, not only OpenSlide's
        if level not in self._fast_levels:
            from lnmkit.slides._tiff_jpeg import jpeg_level_reader

            self._fast_levels[level] = jpeg_level_reader(self, level)
        return self._fast_levels[level]

    def close(self):
        """Release the file handles (idempotent)."""
        if not self._closed:
            self._osr.close()
            for reader in self._fast_levels.values():
                if reader is not None:
                    reader.close()
            self._fast_levels.clear()
            self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        mpp = f"{self.mpp:.4g} µm/px from {self.mpp_source}" if self.mpp_x is not None else "mpp unknown"
        width, height = self.dimensions
        state = ", closed" if self._closed else ""
        return (f"<Slide {self.slide_id!r}: {width} x {height} px, {mpp}, {self.level_count} "
                f"level(s), {self.vendor}{state}>")


def rgba_to_rgb(rgba):
    """Composite OpenSlide's RGBA output onto white.

    Parameters
    ----------
    rgba : ndarray of shape (h, w, 4), dtype uint8
        Non-premultiplied RGBA (as openslide-python returns it).

    Returns
    -------
    ndarray of shape (h, w, 3), dtype uint8
    """
    rgb = np.ascontiguousarray(rgba[..., :3])
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return rgb
    weight = alpha.astype(np.float32)[..., None] / 255.0
    blended = rgb.astype(np.float32) * weight + 255.0 * (1.0 - weight)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)

