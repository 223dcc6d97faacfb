"""Batched reading of the tiles of a grid."""

from __future__ import annotations

import math
from typing import Literal

import imagecodecs
import numpy as np
from PIL import Image

from lnmkit._validation import check_int
from lnmkit.exceptions import SlideError
from lnmkit.slides._tiff_jpeg import DecodedTiles

__all__ = ["read_tiles"]

# A DCT-scaled decode may come out this much smaller than the output tile and be
# upsampled back: 1/2 of a 0.263 µm/px "40x" tile is 213 px for a 224 px output,
# visually the same as a full decode plus downsample at a fraction of the cost.
_SCALED_SLACK = 0.05
_RESAMPLE = Image.Resampling.BILINEAR


def read_tiles(slide, grid, batch_size=64, *, backend: Literal["auto", "jpeg", "openslide"] = "auto",
               scaled_decode=True, cache_mb=512):
    """Read the tiles of a grid, in batches.

    For Aperio SVS and generic TIFF slides whose level holds JPEG tiles, the
    stored tiles are decoded directly (each once per pass, at 1/2, 1/4 or 1/8
    scale in the DCT domain when the output is that much coarser) and output
    tiles are cut from them; other formats and compressions are read through
    OpenSlide. Both paths give the same pixels within JPEG decoding tolerance.
    Output tiles are resized (Pillow bilinear, antialiased) only when the read
    size differs from ``grid.tile_size``.

    Parameters
    ----------
    slide : lnmkit.slides.Slide
        The open slide the grid was made for.
    grid : lnmkit.tiles.TileGrid
        Tiles to read.
    batch_size : int, default=64
        Tiles per yielded batch.
    backend : {"auto", "jpeg", "openslide"}, default="auto"
        ``"auto"`` decodes JPEG tiles directly where possible and falls back to
        OpenSlide; ``"jpeg"`` refuses the fallback; ``"openslide"`` always uses
        ``read_region`` (the reference path).
    scaled_decode : bool, default=True
        Allow DCT-domain scaled decoding.
    cache_mb : float, default=512
        Upper bound on the memory of decoded stored tiles kept for reuse.

    Yields
    ------
    coords : ndarray of shape (b, 2), dtype int64
        Level-0 top-left ``(x, y)`` of the tiles in the batch, in grid order.
    tiles : ndarray of shape (b, tile_size, tile_size, 3), dtype uint8
        RGB pixels.

    Raises
    ------
    SlideError
        If a tile cannot be decoded (damaged file), or ``backend="jpeg"`` and the
        level cannot be decoded directly.
    ValueError
        If the grid was made for another slide, or a parameter is out of range.

    Examples
    --------
    >>> with open_slide("slide.svs") as slide:  # doctest: +SKIP
    ...     grid = tile_grid(slide, segment_tissue(slide))
    ...     for coords, tiles in read_tiles(slide, grid):
    ...         features = encoder.encode(tiles)
    """
    if backend not in ("auto", "jpeg", "openslide"):
        raise ValueError(f"read_tiles: backend must be 'auto', 'jpeg' or 'openslide'; got {backend!r} "
                         f"instead.")
    batch_size = check_int(batch_size, "batch_size", "read_tiles")
    if tuple(grid.dimensions) != tuple(slide.dimensions):
        raise ValueError(f"read_tiles: the grid was made for a {tuple(grid.dimensions)} slide "
                         f"({grid.slide_id!r}) but {slide.path.name} is {slide.dimensions}.")
    reader = None if backend == "openslide" else slide._jpeg_level(grid.level)
    if reader is None and backend == "jpeg":
        raise SlideError(slide.path, f"level {grid.level} cannot be decoded directly "
                         f"({slide._fast_reasons.get(grid.level)}); use backend='auto'.")
    if reader is None:
        paint = _OpenSlidePainter(slide, grid)
    else:
        paint = _JpegPainter(slide, grid, reader, scaled_decode, cache_mb)
    coords = np.asarray(grid.coords, dtype=np.int64).reshape(-1, 2)
    size = grid.tile_size
    for start in range(0, len(coords), batch_size):
        batch = coords[start:start + batch_size]
        tiles = np.empty((len(batch), size, size, 3), dtype=np.uint8)
        for index, (x, y) in enumerate(batch):
            tiles[index] = paint(int(x), int(y))
        yield batch.copy(), tiles


class _OpenSlidePainter:
    """Reference path: OpenSlide ``read_region`` at the grid level, then resize."""

    def __init__(self, slide, grid):
        self.slide, self.level = slide, grid.level
        self.read_size, self.size = grid.read_size, grid.tile_size

    def __call__(self, x, y):
        region = self.slide.read_region((x, y), self.level, (self.read_size, self.read_size))
        if self.read_size != self.size:
            region = np.asarray(Image.fromarray(region).resize((self.size, self.size), _RESAMPLE))
        return region


class _JpegPainter:
    """Output tiles cut from directly decoded (possibly DCT-scaled) stored tiles."""

    def __init__(self, slide, grid, reader, scaled_decode, cache_mb):
        self.path = slide.path
        self.size = grid.tile_size
        reduction = 1
        if scaled_decode:
            for candidate in (8, 4, 2):
                fits = grid.read_size / candidate >= grid.tile_size * (1.0 - _SCALED_SLACK)
                if fits and reader.tile_width % candidate == 0 and reader.tile_height % candidate == 0:
                    reduction = candidate
                    break
        self.reduction = reduction
        self.scale = 1.0 / (slide.level_downsamples[grid.level] * reduction)
        self.extent = grid.read_size / reduction
        tiles_across = -(-reader.width // reader.tile_width)
        span_rows = math.ceil(self.extent / (reader.tile_height / reduction)) + 1
        span_cols = math.ceil(self.extent / (reader.tile_width / reduction)) + 1
        tile_bytes = reader.tile_width * reader.tile_height * 3 / reduction ** 2
        budget = int(cache_mb * 2 ** 20 // tile_bytes)
        max_tiles = max(min((span_rows + 1) * tiles_across, budget), span_rows * span_cols)
        self.tiles = DecodedTiles(reader, reduction, max_tiles)

    def __call__(self, x, y):
        sx, sy, extent = x * self.scale, y * self.scale, self.extent
        left, top = math.floor(sx), math.floor(sy)
        right, bottom = math.ceil(sx + extent), math.ceil(sy + extent)
        self.tiles.forget_rows_above(top // self.tiles.tile_height)
        try:
            window = self.tiles.window(left, top, right - left, bottom - top)
        except (ValueError, RuntimeError, OSError, imagecodecs.Jpeg8Error) as error:
            raise SlideError(self.path, f"cannot decode the stored tiles under the tile at level-0 "
                             f"({x}, {y}): {error}. The file is damaged; re-export or re-scan it.") from None
        if sx == left and sy == top and extent == self.size:
            return window
        box = (sx - left, sy - top, sx - left + extent, sy - top + extent)
        return np.asarray(Image.fromarray(window).resize((self.size, self.size), _RESAMPLE, box=box))
