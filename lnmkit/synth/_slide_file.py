"""Write pyramidal whole-slide images that OpenSlide opens.

Two layouts are written with tifffile (JPEG tiles, 256 px by default):

* ``"svs"``: Aperio-like SVS with an ``Aperio Image Library`` description carrying
  ``AppMag`` and ``MPP``, a stripped thumbnail page, the tiled pyramid, then the
  ``label`` and ``macro`` associated images. OpenSlide reports vendor ``aperio``.
* ``"tiff"``: generic tiled TIFF whose microns per pixel are carried by the TIFF
  resolution tags. OpenSlide reports vendor ``generic-tiff``; it has no associated
  images, so the label is written only in the SVS layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import tifffile
from PIL import Image, ImageDraw

from lnmkit._io import atomic_path
from lnmkit._validation import check_positive

__all__ = ["write_slide", "downsample_rgb", "render_label"]


def downsample_rgb(image, factor):
    """Box-filter downsample of an RGB image by an integer factor.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), dtype uint8
        Image to reduce; trailing rows and columns that do not fill a whole box
        are dropped.
    factor : int
        Reduction factor along each axis.

    Returns
    -------
    ndarray of shape (H // factor, W // factor, 3), dtype uint8
    """
    h, w = image.shape[0] // factor, image.shape[1] // factor
    if factor == 1:
        return np.ascontiguousarray(image[:h, :w])
    # PIL's reduce is a C box filter, several times faster than a numpy mean.
    return np.asarray(Image.fromarray(np.ascontiguousarray(image[: h * factor, : w * factor])).reduce(factor))


def _upsampled_tiles(image, factor, tile_size, shape):
    """Tiles (row-major) of ``image`` bilinearly upsampled by ``factor``, never held whole."""
    source = Image.fromarray(image)
    height, width = shape
    for y in range(0, height, tile_size):
        for x in range(0, width, tile_size):
            th, tw = min(tile_size, height - y), min(tile_size, width - x)
            # The box keeps PIL's filter support outside the tile, so tiles join seamlessly.
            tile = np.asarray(source.resize((tw, th), Image.BILINEAR,
                                            box=(x / factor, y / factor, x / factor + tw / factor,
                                                 y / factor + th / factor)))
            if (th, tw) != (tile_size, tile_size):
                padded = np.full((tile_size, tile_size, 3), 255, dtype=np.uint8)
                padded[:th, :tw] = tile
                tile = padded
            yield tile


def render_label(text, size=(600, 300)):
    """Render a slide label image (white card with black text).

    Parameters
    ----------
    text : str
        Text printed on the label; synthetic slides use a fake patient name so that
        tests can prove that no output ever carries it.
    size : tuple of int, default=(600, 300)
        Width and height in pixels.

    Returns
    -------
    ndarray of shape (height, width, 3), dtype uint8
    """
    card = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(card)
    draw.rectangle([4, 4, size[0] - 5, size[1] - 5], outline="black", width=3)
    draw.multiline_text((20, 20), text, fill="black", font_size=28)
    return np.asarray(card)


def write_slide(
    path,
    image,
    mpp,
    *,
    layout: Literal["svs", "tiff"] = "svs",
    label_text=None,
    level_factor=None,
    min_level_size=256,
    tile_size=256,
    quality=85,
    workers=None,
    upsample=1,
):
    """Write an RGB image as a pyramidal whole-slide image.

    Parameters
    ----------
    path : str or path-like
        Destination file; written atomically.
    image : ndarray of shape (H, W, 3), dtype uint8
        Full-resolution (level 0) pixels.
    mpp : float
        Microns per pixel at level 0. ``AppMag`` is written as ``10 / mpp`` rounded
        (0.25 -> 40x, 0.5 -> 20x).
    layout : {"svs", "tiff"}, default="svs"
        File layout, see the module docstring.
    label_text : str, optional
        Text of the label image (SVS layout only).
    level_factor : int, optional
        Downsample between consecutive pyramid levels; 4 for SVS and 2 for TIFF by
        default, as the respective scanners write them.
    min_level_size : int, default=256
        No level is written whose longer side would be below this many pixels.
    tile_size : int, default=256
        Tile width and height in pixels (a multiple of 16).
    quality : int, default=85
        JPEG quality.
    workers : int, optional
        Threads used by tifffile to encode tiles.
    upsample : int, default=1
        ``image`` holds level 0 reduced by this factor; level 0 is its bilinear
        upsampling, produced tile by tile (never held whole in memory), and the
        lower levels are reduced from ``image`` directly. Used to write 40x slides
        whose content was rendered at 20x.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If ``image`` is not an (H, W, 3) array of 0-255 integers (floats are refused
        rather than guessed), ``mpp`` is not a positive number, or ``layout`` or
        ``upsample`` is invalid.
    """
    image = np.asarray(image)
    # Casting floats (0-1 or 0-255?) or out-of-range integers would write a silently wrong slide.
    if image.dtype != np.uint8 and (not np.issubdtype(image.dtype, np.integer) or
                                    (image.size and (image.min() < 0 or image.max() > 255))):
        found = f" with values {image.min()}..{image.max()}" if image.size and image.dtype.kind in "iuf" else ""
        raise ValueError(f"write_slide: image must be uint8 RGB (0-255); got {image.dtype}{found}. Scale it "
                         "to 0-255 and cast with .astype(np.uint8).")
    image = np.ascontiguousarray(image, dtype=np.uint8)
    mpp = check_positive(mpp, "mpp", "write_slide")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3); got {image.shape} instead.")
    if layout not in ("svs", "tiff"):
        raise ValueError(f"layout must be 'svs' or 'tiff'; got {layout!r} instead.")
    upsample = int(upsample)
    if upsample < 1:
        raise ValueError(f"upsample must be a positive integer; got {upsample!r} instead.")
    factor = level_factor or (4 if layout == "svs" else 2)
    height, width = image.shape[0] * upsample, image.shape[1] * upsample
    # levels[0] is None when level 0 is produced tile by tile from ``image``.
    levels = [image if upsample == 1 else None]
    sizes = [(height, width)]
    while max(sizes[-1]) // factor >= min_level_size:
        sizes.append((sizes[-1][0] // factor, sizes[-1][1] // factor))
        downsample = factor ** (len(sizes) - 1)
        if levels[-1] is not None:
            levels.append(downsample_rgb(levels[-1], factor))
        elif downsample % upsample == 0:
            levels.append(downsample_rgb(image, downsample // upsample))
        else:
            levels.append(np.asarray(Image.fromarray(image).resize(sizes[-1][::-1], Image.BOX)))
    smallest = levels[-1] if levels[-1] is not None else image
    magnification = int(round(10.0 / mpp))
    tiled = dict(
        tile=(tile_size, tile_size), compression="jpeg", compressionargs={"level": quality},
        photometric="rgb", metadata=None, maxworkers=workers,
    )
    path = Path(path)
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=False) as tif:
        if layout == "svs":
            description = (
                f"Aperio Image Library v12.0.0\r\n{width}x{height} [0,0 {width}x{height}] "
                f"({tile_size}x{tile_size}) JPEG/RGB Q={quality}|AppMag = {magnification}"
                f"|MPP = {mpp:.6f}"
            )
            tif.write(_level0(levels, image, upsample, tile_size, (height, width)), description=description,
                      shape=(height, width, 3), dtype=np.uint8, **tiled)
            thumbnail = downsample_rgb(smallest, max(1, max(smallest.shape[:2]) // 256))
            tif.write(thumbnail, description=f"Aperio Image Library v12.0.0\r\n{width}x{height} -> "
                      f"{thumbnail.shape[1]}x{thumbnail.shape[0]}", photometric="rgb",
                      compression="jpeg", metadata=None)
            for level in levels[1:]:
                tif.write(level, description=f"Aperio Image Library v12.0.0\r\n{width}x{height} -> "
                          f"{level.shape[1]}x{level.shape[0]}", **tiled)
            label = render_label(label_text or "")
            tif.write(label, description=f"Aperio Image Library v12.0.0\r\nlabel {label.shape[1]}x"
                      f"{label.shape[0]}", subfiletype=1, photometric="rgb", compression="lzw",
                      metadata=None)
            overview = Image.fromarray(thumbnail).resize((label.shape[0], label.shape[0]))
            macro = np.concatenate([label, np.asarray(overview)], axis=1)
            tif.write(macro, description=f"Aperio Image Library v12.0.0\r\nmacro {macro.shape[1]}x"
                      f"{macro.shape[0]}", subfiletype=9, photometric="rgb", compression="jpeg",
                      metadata=None)
        else:
            resolution = (1e4 / mpp, 1e4 / mpp)
            for index, level in enumerate(levels):
                scale = 1.0 if index == 0 else level.shape[1] / width
                if index == 0:
                    level = _level0(levels, image, upsample, tile_size, (height, width))
                tif.write(level, shape=(sizes[index][0], sizes[index][1], 3), dtype=np.uint8,
                          subfiletype=0 if index == 0 else 1,
                          resolution=(resolution[0] * scale, resolution[1] * scale),
                          resolutionunit="CENTIMETER", **tiled)
    return path


def _level0(levels, image, upsample, tile_size, shape):
    return levels[0] if upsample == 1 else _upsampled_tiles(image, upsample, tile_size, shape)
