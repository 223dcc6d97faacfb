"""Direct decoding of the JPEG tiles stored in TIFF-based slides (SVS, generic TIFF).

OpenSlide decodes every stored tile a region touches on every ``read_region`` call
and hands back premultiplied ARGB that must be converted again. Reading many
output tiles from one level is faster done here: the tile byte ranges and the
shared ``JPEGTables`` come from tifffile once, each stored tile is decoded once per
pass (kept in a small cache while neighbouring output tiles need it), and when
the output is at least 2x coarser than the level the decoder is asked for a
1/2, 1/4 or 1/8 scaled image, which libjpeg computes in the DCT domain at a
fraction of the cost of a full decode plus resize.
"""

from __future__ import annotations

import io
import math
import os
from collections import OrderedDict

import imagecodecs
import numpy as np
import tifffile
from PIL import Image

__all__ = ["JpegLevel", "DecodedTiles", "jpeg_level_reader"]

# Only formats in which an OpenSlide level is exactly one tiled TIFF page; other
# TIFF-based vendors (Ventana overlaps, Leica multi-image, Philips sparse tiles,
# NDPI restart markers) go through OpenSlide.
_DIRECT_VENDORS = {"aperio", "generic-tiff"}
_JPEG = 7
_PHOTOMETRIC_RGB, _PHOTOMETRIC_YCBCR = 2, 6
_SOI, _SOS, _APP0, _APP14 = 0xD8, 0xDA, 0xE0, 0xEE
# APP14 "Adobe" segment with transform 0: tells libjpeg the components are RGB, as
# TIFF photometric RGB says, instead of its YCbCr default for 3-component JPEG.
_ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"


class JpegLevel:
    """Stored JPEG tiles of one tiled TIFF page.

    Parameters
    ----------
    path : path-like
        The TIFF file.
    width, height : int
        Page size in pixels.
    tile_width, tile_height : int
        Stored tile size.
    offsets, bytecounts : sequence of int
        Byte range of each stored tile, row by row.
    tables : bytes or None
        The page's ``JPEGTables`` (abbreviated table-only JPEG stream).
    rgb : bool
        True when the JPEG components are RGB (TIFF photometric RGB), False for YCbCr.
    """

    def __init__(self, path, width, height, tile_width, tile_height, offsets, bytecounts, tables, rgb):
        self.path = os.fspath(path)
        self.width, self.height = int(width), int(height)
        self.tile_width, self.tile_height = int(tile_width), int(tile_height)
        self.tiles_across = math.ceil(self.width / self.tile_width)
        self.tiles_down = math.ceil(self.height / self.tile_height)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.bytecounts = np.asarray(bytecounts, dtype=np.int64)
        self.tables = bytes(tables) if tables else b""
        self.rgb = bool(rgb)
        self._fd = os.open(self.path, os.O_RDONLY)

    def stream(self, col, row):
        """Self-contained JPEG stream of a stored tile, or None for an empty (sparse) tile.

        Parameters
        ----------
        col, row : int
            Tile column and row.

        Returns
        -------
        bytes or None
        """
        index = row * self.tiles_across + col
        count = int(self.bytecounts[index])
        if count == 0:
            return None
        data = os.pread(self._fd, count, int(self.offsets[index]))
        if self.tables:
            data = self.tables[:-2] + data[2:]
        if self.rgb:
            data = data[:2] + _ADOBE_RGB + data[2:]
        return data

    def decode(self, col, row, reduction=1):
        """Decode one stored tile.

        Parameters
        ----------
        col, row : int
            Tile column and row.
        reduction : {1, 2, 4, 8}, default=1
            Decode at ``1 / reduction`` scale in the DCT domain.

        Returns
        -------
        ndarray of shape (ceil(tile_height / reduction), ceil(tile_width / reduction), 3), dtype uint8
            Empty (sparse) tiles come back white.
        """
        shape = (-(-self.tile_height // reduction), -(-self.tile_width // reduction), 3)
        data = self.stream(col, row)
        if data is None:
            return np.full(shape, 255, dtype=np.uint8)
        if reduction == 1:
            pixels = imagecodecs.jpeg8_decode(data)
        else:
            image = Image.open(io.BytesIO(data))
            image.draft("RGB", (shape[1], shape[0]))
            pixels = np.asarray(image.convert("RGB"))
        if pixels.shape != shape:
            raise ValueError(f"stored tile ({col}, {row}) decoded to shape {pixels.shape}, "
                             f"expected {shape}")
        return pixels

    def close(self):
        """Close the file descriptor (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        try:
            self.close()
        except OSError:
            pass


class DecodedTiles:
    """Cache of decoded stored tiles for one pass over a level.

    Output tiles processed in row order share stored tiles with their neighbours;
    each stored tile is decoded once and dropped when the pass moves below it.

    Parameters
    ----------
    level : JpegLevel
        Where the tiles come from.
    reduction : {1, 2, 4, 8}
        DCT-domain scale of every decode.
    max_tiles : int
        Most decoded tiles kept (least recently used go first).
    """

    def __init__(self, level, reduction, max_tiles):
        self.level = level
        self.reduction = int(reduction)
        self.max_tiles = max(1, int(max_tiles))
        self.tile_width = -(-level.tile_width // self.reduction)
        self.tile_height = -(-level.tile_height // self.reduction)
        self.width = -(-level.width // self.reduction)
        self.height = -(-level.height // self.reduction)
        self.decoded = 0
        self._cache = OrderedDict()
        self._top_row = 0  # rows above it were dropped already (LRU bounds the rest)

    def tile(self, col, row):
        """Decoded stored tile ``(col, row)``, from the cache when possible."""
        key = (row, col)
        pixels = self._cache.get(key)
        if pixels is not None:
            self._cache.move_to_end(key)
            return pixels
        pixels = self.level.decode(col, row, self.reduction)
        self.decoded += 1
        self._cache[key] = pixels
        if len(self._cache) > self.max_tiles:
            self._cache.popitem(last=False)
        return pixels

    def forget_rows_above(self, row):
        """Drop cached tiles of rows above ``row`` (a row-ordered pass no longer needs them)."""
        if row <= self._top_row:
            return
        for key in [key for key in self._cache if key[0] < row]:
            del self._cache[key]
        self._top_row = row

    def window(self, left, top, width, height):
        """Pixels of an integer window of the (scaled) level; white outside the image.

        Parameters
        ----------
        left, top : int
            Top-left corner in scaled level pixels (may be negative).
        width, height : int
            Window size.

        Returns
        -------
        ndarray of shape (height, width, 3), dtype uint8
        """
        out = np.full((height, width, 3), 255, dtype=np.uint8)
        x0, y0 = max(left, 0), max(top, 0)
        x1, y1 = min(left + width, self.width), min(top + height, self.height)
        if x1 <= x0 or y1 <= y0:
            return out
        tw, th = self.tile_width, self.tile_height
        for row in range(y0 // th, (y1 - 1) // th + 1):
            ty0, ty1 = max(y0, row * th), min(y1, (row + 1) * th)
            for col in range(x0 // tw, (x1 - 1) // tw + 1):
                tx0, tx1 = max(x0, col * tw), min(x1, (col + 1) * tw)
                pixels = self.tile(col, row)
                out[ty0 - top:ty1 - top, tx0 - left:tx1 - left] = \
                    pixels[ty0 - row * th:ty1 - row * th, tx0 - col * tw:tx1 - col * tw]
        return out


def _markers(stream):
    """Marker codes of a JPEG stream's header, up to start of scan."""
    found, pos = [], 2
    while pos + 4 <= len(stream):
        if stream[pos] != 0xFF:
            break
        marker = stream[pos + 1]
        found.append(marker)
        if marker == _SOS:
            break
        pos += 2 + int.from_bytes(stream[pos + 2:pos + 4], "big")
    return found


def _find_page(tif, width, height):
    for page in tif.pages:
        if page.is_tiled and page.imagewidth == width and page.imagelength == height:
            return page
    return None


def jpeg_level_reader(slide, level):
    """Direct reader of a slide level's JPEG tiles, or None when OpenSlide must read it.

    Parameters
    ----------
    slide : lnmkit.slides.Slide
        An open slide.
    level : int
        Pyramid level.

    Returns
    -------
    JpegLevel or None
        None for non-TIFF formats, other compressions (JPEG 2000, LZW, ...), and
        pages whose first tile cannot be decoded here; the reason is kept in
        ``slide._fast_reasons[level]``.
    """
    reasons = slide._fast_reasons
    if slide.vendor not in _DIRECT_VENDORS:
        reasons[level] = f"format {slide.vendor!r} is read through OpenSlide"
        return None
    width, height = slide.level_dimensions[level]
    try:
        with tifffile.TiffFile(slide.path) as tif:
            page = _find_page(tif, width, height)
            if page is None:
                reasons[level] = f"no tiled TIFF page of {width}x{height} px"
                return None
            unsupported = _unsupported(page)
            if unsupported:
                reasons[level] = unsupported
                return None
            reader = JpegLevel(slide.path, width, height, page.tilewidth, page.tilelength,
                               page.dataoffsets, page.databytecounts, page.jpegtables,
                               rgb=page.photometric == _PHOTOMETRIC_RGB)
    except (tifffile.TiffFileError, OSError, ValueError, KeyError) as error:
        reasons[level] = f"tifffile cannot parse the page: {error}"
        return None
    if len(reader.offsets) != reader.tiles_across * reader.tiles_down:
        reader.close()
        reasons[level] = "tile count does not match the page size"
        return None
    problem = _probe(reader)
    if problem:
        reader.close()
        reasons[level] = problem
        return None
    reasons[level] = "direct JPEG tile decoding"
    return reader


def _unsupported(page):
    if page.compression != _JPEG:
        return f"TIFF compression {int(page.compression)} is not JPEG"
    if page.photometric not in (_PHOTOMETRIC_RGB, _PHOTOMETRIC_YCBCR):
        return f"photometric {int(page.photometric)} is not RGB or YCbCr"
    if page.samplesperpixel != 3 or page.bitspersample != 8 or page.planarconfig != 1:
        return "not 3 interleaved 8-bit samples per pixel"
    if getattr(page, "tiledepth", 1) != 1:
        return "volumetric tiles"
    return ""


def _probe(reader):
    """Decode the first stored tile to be sure this page is handled like OpenSlide does."""
    nonempty = np.flatnonzero(reader.bytecounts)
    if nonempty.size == 0:
        return ""
    row, col = divmod(int(nonempty[0]), reader.tiles_across)
    stream = reader.stream(col, row)
    markers = _markers(stream)
    if reader.rgb and _APP0 in markers:
        return "RGB JPEG tiles carrying a JFIF marker are ambiguous"
    try:
        reader.decode(col, row, 1)
    except (ValueError, RuntimeError, OSError, imagecodecs.Jpeg8Error) as error:
        return f"the first stored tile does not decode: {error}"
    return ""
