"""Grid of tissue tiles at a target resolution."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np

from lnmkit._plotting import image_axes
from lnmkit._validation import check_fraction, check_int, check_non_negative, check_positive
from lnmkit.exceptions import SlideError

__all__ = ["TileGrid", "tile_grid"]


@dataclass(frozen=True, eq=False)
class TileGrid:
    """Tiles of one slide at a target resolution.

    Build it with :func:`tile_grid`.

    Attributes
    ----------
    coords : ndarray of shape (n_tiles, 2), dtype int64
        Level-0 ``(x, y)`` of each tile's top-left corner, row by row.
    tile_size : int
        Output tile side in pixels.
    tile_size_level0 : int
        Tile side in level-0 pixels (the grid step).
    mpp : float
        Target microns per pixel of the output tiles.
    level : int
        Pyramid level the tiles are read from.
    read_size : int
        Tile side in pixels of ``level``; resized to ``tile_size`` when different.
    slide_mpp : float
        Level-0 microns per pixel of the slide.
    tissue_fraction : ndarray of shape (n_tiles,)
        Fraction of each tile covered by the tissue mask.
    min_tissue : float
        Tiles below this tissue fraction were left out.
    slide_id : str
    dimensions : tuple of int
        Level-0 ``(width, height)`` of the slide.
    """

    coords: np.ndarray
    tile_size: int
    tile_size_level0: int
    mpp: float
    level: int
    read_size: int
    slide_mpp: float
    tissue_fraction: np.ndarray = field(repr=False)
    min_tissue: float = 0.5
    slide_id: str = ""
    dimensions: tuple = (0, 0)

    def __len__(self):
        return len(self.coords)

    def __repr__(self):
        return (f"<TileGrid {self.slide_id!r}: {len(self)} tiles of {self.tile_size} px at "
                f"{self.mpp:g} µm/px ({self.tile_size_level0} level-0 px, read at level "
                f"{self.level} as {self.read_size} px)>")

    def _repr_html_(self):
        rows = [("slide", self.slide_id), ("tiles", len(self)),
                ("tile", f"{self.tile_size} px at {self.mpp:g} µm/px"),
                ("level-0 step", f"{self.tile_size_level0} px (slide {self.slide_mpp:.4g} µm/px)"),
                ("read from", f"level {self.level}, {self.read_size} px"),
                ("min tissue", self.min_tissue)]
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                       f"<td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        return f"<table><caption>TileGrid</caption>{body}</table>"

    def plot(self, image=None, ax=None):
        """Draw the tiles over a low-resolution view of the slide.

        Parameters
        ----------
        image : ndarray of shape (h, w, 3), optional
            Background covering the whole slide (e.g. ``slide.thumbnail()``);
            a blank canvas when None.
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new figure is made when None.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from matplotlib.collections import PolyCollection

        width, height = self.dimensions
        if image is None:
            scale = 1024 / max(width, height)
            image = np.full((max(1, round(height * scale)), max(1, round(width * scale)), 3), 255,
                            dtype=np.uint8)
        fig, ax = image_axes(image, ax)
        to_px = image.shape[1] / width
        side = self.tile_size_level0 * to_px
        x, y = self.coords[:, 0] * to_px - 0.5, self.coords[:, 1] * to_px - 0.5
        squares = np.stack([np.column_stack([x, y]), np.column_stack([x + side, y]),
                            np.column_stack([x + side, y + side]), np.column_stack([x, y + side])], axis=1)
        ax.add_collection(PolyCollection(squares, facecolors="none", edgecolors="#1f77b4", linewidths=0.4))
        ax.set_axis_off()
        ax.set_title(f"{self.slide_id}: {len(self)} tiles, {self.tile_size} px at {self.mpp:g} µm/px",
                     fontsize=9)
        return fig


def tile_grid(slide, tissue, mpp=0.5, tile_size=224, min_tissue=0.5, *, mpp_tolerance=0.1):
    """Lay a non-overlapping grid of tiles over a slide's tissue.

    The grid step is ``tile_size_level0 = round(tile_size * mpp / slide.mpp)``
    level-0 pixels, starting at the slide's top-left corner. Tiles that would
    extend past the right or bottom edge of the slide are left out (no padding).
    Tiles are read from the coarsest pyramid level whose resolution is at most
    ``mpp * (1 + mpp_tolerance)`` µm/px.

    Parameters
    ----------
    slide : lnmkit.slides.Slide
        An open slide with known microns per pixel.
    tissue : lnmkit.slides.TissueMask or None
        Tissue mask of the slide; None keeps every tile.
    mpp : float, default=0.5
        Target microns per pixel of the output tiles (0.5 is "20x").
    tile_size : int, default=224
        Output tile side in pixels.
    min_tissue : float, default=0.5
        Keep tiles whose tissue fraction is at least this.
    mpp_tolerance : float, default=0.1
        Relative slack when choosing the pyramid level and when accepting a slide
        slightly coarser than ``mpp`` (scanners write e.g. 0.2527 or 0.263 µm/px).

    Returns
    -------
    TileGrid

    Raises
    ------
    SlideError
        If the slide is scanned coarser than ``mpp * (1 + mpp_tolerance)``.
    ValueError
        If a parameter is out of range, or ``tissue`` belongs to another slide.
    """
    tile_size = check_int(tile_size, "tile_size", "tile_grid")
    mpp = check_positive(mpp, "mpp", "tile_grid")
    min_tissue = check_fraction(min_tissue, "min_tissue", "tile_grid")
    mpp_tolerance = check_non_negative(mpp_tolerance, "mpp_tolerance", "tile_grid")
    slide_mpp = slide.mpp
    if slide_mpp > mpp * (1.0 + mpp_tolerance):
        raise SlideError(slide.path, f"scanned at {slide_mpp:.4g} µm/px, coarser than the requested "
                         f"{mpp:g} µm/px; tiles would be upsampled. Tile at mpp >= {slide_mpp:.4g}, "
                         f"or fix the slide's mpp in slides.csv if it is wrong.")
    if tissue is not None and tissue.dimensions is not None and \
            tuple(tissue.dimensions) != tuple(slide.dimensions):
        raise ValueError(f"tile_grid: the tissue mask is for a {tissue.dimensions} slide "
                         f"({tissue.slide_id!r}) but {slide.path.name} is {slide.dimensions}.")
    step = max(1, int(round(tile_size * mpp / slide_mpp)))
    level = slide.best_level_for_mpp(mpp, tolerance=mpp_tolerance)
    read_size = max(1, int(round(step / slide.level_downsamples[level])))
    width, height = slide.dimensions
    xs = np.arange(0, width - step + 1, step, dtype=np.int64)
    ys = np.arange(0, height - step + 1, step, dtype=np.int64)
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    coords = np.column_stack([grid_x.ravel(), grid_y.ravel()]).astype(np.int64)
    if tissue is None:
        fractions = np.ones(len(coords))
    else:
        fractions = tissue.tile_fractions(coords, step)
    keep = fractions >= min_tissue - 1e-9  # integral-image round-off on full tiles
    return TileGrid(coords=np.ascontiguousarray(coords[keep]), tile_size=int(tile_size),
                    tile_size_level0=step, mpp=float(mpp), level=int(level), read_size=read_size,
                    slide_mpp=float(slide_mpp), tissue_fraction=fractions[keep],
                    min_tissue=float(min_tissue), slide_id=slide.slide_id,
                    dimensions=tuple(slide.dimensions))
