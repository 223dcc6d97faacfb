"""Tile reading throughput: lnmkit's ``read_tiles`` against OpenSlide and the JPEG decode floor.

Writes one synthetic 40x SVS (H&E-like texture, 256-px JPEG tiles), lays the
20x grid of 224-px tiles over its tissue and, in this one process, times:

(a) OpenSlide ``read_region`` of 448 level-0 px then resize to 224 (the usual
    CLAM/TRIDENT path for 20x tiles from a 40x slide): the baseline;
(b) ``lnmkit.tiles.read_tiles`` (direct JPEG tile decoding);
(c) the decode floor: every stored tile the grid touches decoded once, with
    imagecodecs at full scale and with Pillow's DCT-domain 1/2 scale (``draft``);
(d) the default encoder ``stain-texture`` on the tiles (if lnmkit.features exists);
(e) fastslide ``read_region`` 448 + resize, if ``fastslide`` is installed.

Rates are output tiles per CPU-second (``time.process_time``, all threads), and
per wall-second, best of ``--repeat`` runs. Run: ``python benchmarks/bench_tiles.py [--size 8192]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lnmkit.exceptions import LnmkitError
from lnmkit.slides import open_slide, segment_tissue
from lnmkit.slides._tiff_jpeg import jpeg_level_reader
from lnmkit.synth import make_tissue_image, write_slide
from lnmkit.tiles import read_tiles, tile_grid


def _timed(function, repeat=3):
    """Best of ``repeat`` runs: (count, CPU seconds, wall seconds)."""
    best = None
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        count = function()
        run = (count, time.process_time() - cpu, time.perf_counter() - wall)
        best = run if best is None or run[1] < best[1] else best
    return best


def _openslide_path(path, grid):
    import openslide

    def run():
        slide = openslide.OpenSlide(str(path))
        size, read = grid.tile_size, grid.read_size
        for x, y in grid.coords:
            region = slide.read_region((int(x), int(y)), grid.level, (read, read)).convert("RGB")
            np.asarray(region.resize((size, size), Image.Resampling.BILINEAR))
        slide.close()
        return len(grid)
    return run


def _lnmkit_path(path, grid, **kwargs):
    def run():
        count = 0
        with open_slide(path) as slide:
            for coords, _ in read_tiles(slide, grid, **kwargs):
                count += len(coords)
        return count
    return run


def _needed_tiles(reader, grid, downsample):
    """Stored tiles (col, row) touched by the grid's tiles."""
    needed = set()
    extent = grid.read_size
    for x, y in grid.coords:
        lx, ly = x / downsample, y / downsample
        for row in range(int(ly // reader.tile_height), int(math.ceil((ly + extent) / reader.tile_height))):
            for col in range(int(lx // reader.tile_width), int(math.ceil((lx + extent) / reader.tile_width))):
                if row < reader.tiles_down and col < reader.tiles_across:
                    needed.add((col, row))
    return sorted(needed, key=lambda cr: (cr[1], cr[0]))


def _decode_floor(reader, needed, reduction):
    def run():
        for col, row in needed:
            reader.decode(col, row, reduction)
        return len(needed)
    return run


def _fastslide_path(path, grid):
    import fastslide

    def run():
        slide = fastslide.FastSlide.from_file_path(str(path))
        size, read = grid.tile_size, grid.read_size
        for x, y in grid.coords:
            region = slide.read_region((int(x), int(y)), grid.level, (read, read)).numpy()
            np.asarray(Image.fromarray(region[..., :3]).resize((size, size), Image.Resampling.BILINEAR))
        slide.close()
        return len(grid)
    return run


def _encoder_path(path, grid, encoder):
    def run():
        count = 0
        with open_slide(path) as slide:
            for coords, tiles in read_tiles(slide, grid):
                encoder.encode(tiles)
                count += len(coords)
        return count
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192, help="slide side in level-0 px (default 8192)")
    parser.add_argument("--mpp", type=float, default=0.5, help="target µm/px of the tiles (default 0.5)")
    parser.add_argument("--tile-size", type=int, default=224)
    parser.add_argument("--max-tiles", type=int, default=2000, help="tiles timed per path (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=5, help="runs per path, best kept (default 5)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.svs"
        start = time.perf_counter()
        rgb, _ = make_tissue_image(args.size, args.seed, mpp=0.25)
        write_slide(path, rgb, mpp=0.25, layout="svs")
        del rgb
        print(f"slide: {args.size} x {args.size} px at 0.25 µm/px (40x), SVS with 256-px JPEG tiles, "
              f"{path.stat().st_size / 2**20:.1f} MiB, written in {time.perf_counter() - start:.1f} s")
        with open_slide(path) as slide:
            full = tile_grid(slide, segment_tissue(slide), mpp=args.mpp, tile_size=args.tile_size)
            grid = full
            if len(full) > args.max_tiles:
                grid = dataclasses.replace(full, coords=full.coords[:args.max_tiles],
                                           tissue_fraction=full.tissue_fraction[:args.max_tiles])
            reader = jpeg_level_reader(slide, grid.level)
            downsample = slide.level_downsamples[grid.level]
        print(f"grid: {len(full)} tissue tiles of {grid.tile_size} px at {grid.mpp} µm/px, read as "
              f"{grid.read_size} px from level {grid.level}; timing {len(grid)} of them\n")

        needed = _needed_tiles(reader, grid, downsample)
        reduction = 2 if grid.read_size / 2 >= grid.tile_size * 0.95 else 1
        rows = [("(a) OpenSlide read_region + resize", _openslide_path(path, grid)),
                ("(b) lnmkit read_tiles", _lnmkit_path(path, grid)),
                ("(b') lnmkit read_tiles, no DCT scaling", _lnmkit_path(path, grid, scaled_decode=False))]
        floors = [("(c) decode floor, imagecodecs full", _decode_floor(reader, needed, 1))]
        if reduction > 1:
            floors.append(("(c) decode floor, Pillow draft 1/2", _decode_floor(reader, needed, 2)))
        results = []
        for name, run in rows:
            results.append((name, *_timed(run, args.repeat)))
        for name, run in floors:
            count, cpu, wall = _timed(run, args.repeat)
            # Express the floor in output tiles: decoding what the grid needs, once.
            results.append((name + f" ({count} stored tiles)", len(grid), cpu, wall))
        try:
            import fastslide  # noqa: F401
        except ImportError:
            results.append(("(e) fastslide: not installed, skipped", None, None, None))
        else:
            results.append(("(e) fastslide read_region + resize",
                            *_timed(_fastslide_path(path, grid), args.repeat)))
        try:
            from lnmkit.features import get_encoder

            encoder = get_encoder("stain-texture")
        except (ImportError, LnmkitError, KeyError, ValueError) as error:
            results.append((f"(d) stain-texture encoder: unavailable ({error}), skipped", None, None, None))
        else:
            results.append(("(d) read_tiles + stain-texture encode",
                            *_timed(_encoder_path(path, grid, encoder), 1)))
        reader.close()

    base = results[0][1] / results[0][2]
    floor_rate = max(count / cpu for name, count, cpu, _ in results if name.startswith("(c)"))
    print(f"{'path':58s} {'tiles':>6s} {'CPU s':>7s} {'tiles/CPU-s':>12s} {'tiles/wall-s':>13s} "
          f"{'vs (a)':>7s}")
    for name, count, cpu, wall in results:
        if count is None:
            print(name)
            continue
        rate = count / cpu
        print(f"{name:58s} {count:6d} {cpu:7.2f} {rate:12.0f} {count / wall:13.0f} {rate / base:6.1f}x")
    fast = results[1][1] / results[1][2]
    print(f"\nread_tiles: {fast / base:.1f}x OpenSlide (target >= 3x), {fast / floor_rate:.2f}x the "
          f"fastest decode floor (target >= 0.5x)")


if __name__ == "__main__":
    main()
