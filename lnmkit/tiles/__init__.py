"""Tiles at a target resolution: the grid over the tissue and batched reading."""

from lnmkit.tiles._grid import TileGrid, tile_grid
from lnmkit.tiles._read import read_tiles

__all__ = ["tile_grid", "TileGrid", "read_tiles"]
