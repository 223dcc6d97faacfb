"""Resumable cohort feature extraction: slide -> tissue -> tiles -> encoder -> bag.

Each slide is one task (local, or one Dask task per slide). Within a task a
reader thread fills a bounded queue with tile batches while the encoder works
on the previous batch. Every output file is written atomically and the
manifest is rewritten after every slide, so a killed run resumes where it
stopped.
"""

from __future__ import annotations

import json
import os
import queue
import warnings
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lnmkit._io import atomic_path, atomic_write_text
from lnmkit._validation import check_fraction, check_int, check_positive
from lnmkit._version import __version__
from lnmkit.exceptions import ExtractionError, ExtractionWarning
from lnmkit.features._bags import FeatureBag, write_bag
from lnmkit.features._featureset import MANIFEST_COLUMNS, FeatureSet, read_manifest
from lnmkit.features._hashing import params_hash
from lnmkit.features._registry import TileEncoder, get_encoder

__all__ = ["extract", "extraction_params", "run_name"]

# Bumped when the bag contents produced for the same parameters change.
_FORMAT_VERSION = 1
_QUEUE_BATCHES = 4
_QC_SIZE = 1024
# Encoders built on a worker, reused across that worker's slides.
_ENCODER_CACHE: dict = {}


def _slides_table(cohort) -> pd.DataFrame:
    if isinstance(cohort, pd.DataFrame):
        slides = cohort
    else:
        if isinstance(cohort, (str, Path)):
            from lnmkit.cohort import Cohort

            cohort = Cohort.from_dir(cohort)
        slides = cohort.slides
    if "slide_id" in slides.columns:
        slides = slides.set_index("slide_id")
    missing = [c for c in ("patient_id", "path") if c not in slides.columns]
    if missing:
        raise ValueError(f"extract: the slides table needs columns patient_id and path; missing "
                         f"{missing}.")
    if slides.index.has_duplicates:
        dup = slides.index[slides.index.duplicated()].unique().tolist()
        raise ValueError(f"extract: slide_id must be unique; duplicated: {dup}.")
    if len(slides) == 0:
        raise ValueError("extract: the cohort has no slides (slides.csv is empty or missing).")
    return slides


def _cohort_root(cohort):
    """Cohort folder of an extract() input, if it has one (a bare slides table has none)."""
    if isinstance(cohort, (str, Path)):
        return Path(cohort)
    root = getattr(cohort, "root", None)
    return Path(root) if root is not None else None


def _relative_path(path, root):
    """Slide path relative to the cohort folder, as slides.csv would give it.

    Hospital paths carry accession numbers and names: outputs keep only this.
    A path outside the cohort folder, or without one, keeps its file name.
    """
    path = Path(path)
    if root is not None:
        try:
            rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
        except ValueError:  # another drive on Windows
            rel = None
        if rel is not None and not rel.startswith(".."):
            return Path(rel).as_posix()
    return path.name if path.is_absolute() else path.as_posix()


def _tissue_defaults():
    from lnmkit.slides._tissue import DEFAULT_TISSUE_PARAMS

    return DEFAULT_TISSUE_PARAMS


def extraction_params(encoder: TileEncoder, mpp, tile_size, min_tissue, tissue_params=None,
                      precision=None) -> dict:
    """Everything that determines the bags' contents (hashed into the run name).

    Parameters
    ----------
    encoder : TileEncoder
    mpp : float
    tile_size : int
    min_tissue : float
    tissue_params : dict, optional
        Overrides of :func:`lnmkit.slides.segment_tissue` parameters.
    precision : str, optional
        Autocast precision of torch encoders.

    Returns
    -------
    dict
    """
    tissue = {**_tissue_defaults(), **(tissue_params or {})}
    tissue = {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(tissue.items())}
    params = {"format_version": _FORMAT_VERSION, "encoder": encoder.config(), "mpp": float(mpp),
              "tile_size": int(tile_size), "min_tissue": float(min_tissue), "tissue": tissue}
    if precision is not None:
        params["precision"] = precision
    return params


def run_name(params) -> str:
    """Folder name of a run: ``<encoder>_<mpp>mpp_<tile>px_<hash>``.

    Parameters
    ----------
    params : dict
        From :func:`extraction_params`.

    Returns
    -------
    str
    """
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in params["encoder"]["name"])
    return f"{slug}_{params['mpp']:g}mpp_{params['tile_size']}px_{params_hash(params)}"


def _build_encoder(spec):
    if isinstance(spec, TileEncoder):
        return spec
    name, kwargs_json = spec
    key = (name, kwargs_json)
    if key not in _ENCODER_CACHE:
        _ENCODER_CACHE[key] = get_encoder(name, **json.loads(kwargs_json))
    return _ENCODER_CACHE[key]


def _reader(slide, grid, batch_size, out_queue, stop):
    from lnmkit.tiles import read_tiles

    try:
        for batch in read_tiles(slide, grid, batch_size=batch_size):
            while not stop.is_set():
                try:
                    out_queue.put(batch, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
        out_queue.put(None)
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
        out_queue.put(exc)


def _encode_overlapped(slide, grid, encoder, batch_size):
    """Encode all tiles of ``grid``; reading runs in a thread ahead of encoding."""
    batches = queue.Queue(maxsize=_QUEUE_BATCHES)
    stop = threading.Event()
    thread = threading.Thread(target=_reader, args=(slide, grid, batch_size, batches, stop),
                              daemon=True, name=f"lnmkit-read-{grid.slide_id}")
    thread.start()
    features, coords = [], []
    try:
        while True:
            item = batches.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            batch_coords, tiles = item
            features.append(encoder.encode(tiles))
            coords.append(batch_coords)
    finally:
        stop.set()
        thread.join()
    if not features:
        return np.zeros((0, encoder.dim), np.float32), np.zeros((0, 2), np.int64)
    return np.concatenate(features), np.concatenate(coords)


def _save_qc(path, thumbnail, tissue, grid, slide_dims):
    """Thumbnail with the tissue outline (green) and the tile grid (blue), as PNG."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(thumbnail)
    scale = thumbnail.shape[1] / slide_dims[0]
    mask = Image.fromarray((tissue.mask * 255).astype(np.uint8)).resize(image.size, Image.NEAREST)
    green = Image.new("RGB", image.size, (0, 160, 0))
    image = Image.composite(Image.blend(image, green, 0.25), image, mask)
    draw = ImageDraw.Draw(image)
    side = grid.tile_size_level0 * scale
    for x, y in grid.coords * scale:
        draw.rectangle([x, y, x + side, y + side], outline=(30, 60, 200))
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG")


def _process_slide(task, encoder=None) -> dict:
    """Extract one slide; never raises for a per-slide problem (returned as status failed).

    ``encoder`` (an instance scattered to Dask workers) takes precedence over
    ``task["encoder"]``.
    """
    from lnmkit.slides import open_slide, segment_tissue
    from lnmkit.tiles import tile_grid

    start = time.perf_counter()
    row = {"slide_id": task["slide_id"], "patient_id": task["patient_id"], "status": "failed",
           "n_tiles": 0, "seconds": 0.0, "error": ""}
    root = Path(task["run_dir"])
    try:
        encoder = encoder if encoder is not None else _build_encoder(task["encoder"])
        with open_slide(task["path"], mpp=task["mpp"]) as slide:
            tissue = segment_tissue(slide, **task["tissue_params"])
            tissue.to_geojson(root / "tissue" / f"{task['slide_id']}.geojson")
            grid = tile_grid(slide, tissue, mpp=task["mpp_target"], tile_size=task["tile_size"],
                             min_tissue=task["min_tissue"])
            features, coords = _encode_overlapped(slide, grid, encoder, task["batch_size"])
            _save_qc(root / "qc" / f"{task['slide_id']}.png", slide.thumbnail(_QC_SIZE), tissue,
                     grid, slide.dimensions)
            slide_mpp = float(slide.mpp)
        attrs = {"encoder": encoder.name, "encoder_version": str(encoder.version),
                 "dim": int(encoder.dim), "mpp": float(task["mpp_target"]),
                 "tile_size": int(grid.tile_size), "tile_size_level0": int(grid.tile_size_level0),
                 "level": int(grid.level), "slide_mpp": slide_mpp, "min_tissue": task["min_tissue"],
                 "slide_id": task["slide_id"], "patient_id": task["patient_id"],
                 "slide_path": task["rel_path"], "params_hash": task["params_hash"],
                 "lnmkit_version": __version__}
        if type(encoder).feature_names is not TileEncoder.feature_names:
            attrs["feature_names"] = [str(n) for n in encoder.feature_names]
        write_bag(root / "h5" / f"{task['slide_id']}.h5", FeatureBag(features, coords, attrs))
        row["n_tiles"] = int(len(features))
        if len(features):
            row["status"] = "ok"
        else:
            row["status"] = "empty"
            width, height = grid.dimensions
            row["error"] = (f"{task['rel_path']}: no {grid.tile_size} px tile at {grid.mpp:g} µm/px "
                            f"({grid.tile_size_level0} level-0 px) has tissue >= {grid.min_tissue:g} "
                            f"on this {width}x{height} px slide")
    except Exception as exc:  # noqa: BLE001 - one bad slide must not stop the cohort
        message = f"{type(exc).__name__}: {exc}".replace(str(task["path"]), task["rel_path"])
        if task["rel_path"] not in message:
            message = f"{task['rel_path']}: {message}"
        row["error"] = " ".join(message.split())
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row


def _distributed(client, todo, enc_spec, phash):
    """Run one task per slide on a Dask cluster; yield manifest rows as they finish."""
    from dask.distributed import as_completed

    for task in todo:
        if isinstance(task["encoder"], TileEncoder):
            task["encoder"] = None
    extra = {}
    if isinstance(enc_spec, TileEncoder) and todo:
        # One copy per worker instead of one pickled model per task.
        extra["encoder"] = client.scatter(enc_spec, broadcast=True)
    stamp = time.time_ns()
    keys = [f"lnmkit-features-{t['slide_id']}-{phash}-{stamp}" for t in todo]
    futures = client.map(_process_slide, todo, key=keys, pure=False, **extra)
    task_of = {future.key: task for future, task in zip(futures, todo)}
    for future in as_completed(futures):
        try:
            yield future.result()
        except Exception as exc:  # noqa: BLE001 - a lost worker fails its slide, not the run
            task = task_of[future.key]
            yield {"slide_id": task["slide_id"], "patient_id": task["patient_id"],
                   "status": "failed", "n_tiles": 0, "seconds": float("nan"),
                   "error": f"{task['rel_path']}: Dask task failed ({type(exc).__name__}: {exc})"}


def _is_done(row, bag_path, phash):
    if row is None or row["status"] not in ("ok", "empty"):
        return False
    if row["status"] == "empty":
        return True
    import h5py

    try:
        # Attributes only: rereading every finished bag's features would make resuming slow.
        with h5py.File(bag_path, "r") as f:
            stored = f.attrs.get("params_hash")
            complete = "features" in f and "coords" in f
    except OSError:
        return False
    if isinstance(stored, bytes):
        stored = stored.decode()
    return complete and stored == phash


def _remove_stale_parts(run_dir):
    """Delete temporary files a killed run left (``.<name>.*.part``); never a finished output."""
    for folder in (run_dir, run_dir / "h5", run_dir / "tissue", run_dir / "qc"):
        for part in folder.glob(".*.part"):
            try:
                part.unlink()
            except OSError:
                pass


def _write_manifest(path, rows):
    frame = pd.DataFrame(list(rows.values()), columns=MANIFEST_COLUMNS)
    atomic_write_text(path, frame.to_csv(index=False))


def _check_args(mpp, tile_size, min_tissue, batch_size, n_workers):
    check_positive(mpp, "mpp", "extract")
    if tile_size is not None:
        check_int(tile_size, "tile_size", "extract", minimum=16)
    check_fraction(min_tissue, "min_tissue", "extract")
    check_int(batch_size, "batch_size", "extract")
    if n_workers is not None:
        check_int(n_workers, "n_workers", "extract")


def extract(cohort, out_dir, encoder="stain-texture", mpp=0.5, tile_size=None, min_tissue=0.5,
            batch_size=64, client=None, n_workers=None, *, encoder_kwargs=None,
            tissue_params=None, progress=True) -> FeatureSet:
    """Extract tile features for every slide of a cohort, resumably.

    Per slide: open (the ``mpp`` column of the slides table overrides the
    file's), segment tissue, lay a grid of ``tile_size`` px tiles at ``mpp``
    keeping tiles with at least ``min_tissue`` tissue, read and encode the tiles
    (reading overlapped with encoding), and write ``h5/<slide_id>.h5``,
    ``tissue/<slide_id>.geojson`` and ``qc/<slide_id>.png`` under
    ``out_dir/<run_name>/``, plus ``params.json`` and ``manifest.csv``.

    A slide that fails is recorded (status ``"failed"``, the error naming the
    file) and the others go on; slides without enough tissue are ``"empty"``.
    When some slides failed, an :class:`~lnmkit.exceptions.ExtractionWarning`
    names them. Bags and the manifest record slide paths relative to the
    cohort folder (``slide_path``), never the absolute path.
    Rerunning with the same parameters skips finished slides and retries failed
    ones, and removes the temporary files of a run that was killed mid-write;
    changed parameters give a new run folder.

    Parameters
    ----------
    cohort : lnmkit.Cohort, str, path-like or pandas.DataFrame
        A cohort, a cohort folder, or a slides table (index or column
        ``slide_id``; columns ``patient_id``, ``path``, optional ``mpp``).
    out_dir : str or path-like
        Parent folder of the run folder.
    encoder : str or TileEncoder, default="stain-texture"
        Name for :func:`~lnmkit.features.get_encoder` or an encoder instance.
    mpp : float, default=0.5
        Microns per pixel of the tiles (0.5 = 20x).
    tile_size : int, optional
        Tile side in pixels at ``mpp``; by default the encoder's
        ``input_size`` (160 for ``stain-texture``, 224 for most pathology
        encoders, 448 for CONCH).
    min_tissue : float, default=0.5
        Least tissue fraction of a kept tile.
    batch_size : int, default=64
        Tiles read and encoded together.
    client : dask.distributed.Client, optional
        Distribute slides over a Dask cluster, one task per slide.
    n_workers : int, optional
        Without ``client``: values above 1 start a local Dask cluster with that
        many single-threaded worker processes.
    encoder_kwargs : dict, optional
        Passed to :func:`~lnmkit.features.get_encoder` (JSON-serialisable, e.g.
        ``{"weights": "/models/resnet50.pth"}``). For ``stain-texture`` the tile
        ``mpp`` is passed unless given here.
    tissue_params : dict, optional
        Passed to :func:`lnmkit.slides.segment_tissue`.
    progress : bool, default=True
        Show a tqdm progress bar.

    Returns
    -------
    FeatureSet

    Raises
    ------
    ExtractionError
        If slides were processed but none finished (see the manifest).

    Warns
    -----
    ExtractionWarning
        If some slides failed, naming them and their errors.

    Examples
    --------
    >>> fs = extract("cohort/", "features/")  # doctest: +SKIP
    >>> fs.manifest.status.value_counts()      # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    from lnmkit.slides._tissue import check_tissue_params

    _check_args(mpp, tile_size, min_tissue, batch_size, n_workers)
    # Checked here so that a bad value fails once, not once per slide in the manifest.
    check_tissue_params(dict(tissue_params or {}))
    slides = _slides_table(cohort)
    root = _cohort_root(cohort)
    encoder_kwargs = dict(encoder_kwargs or {})
    if isinstance(encoder, TileEncoder):
        enc, enc_spec = encoder, encoder
    else:
        if encoder == "stain-texture":
            encoder_kwargs.setdefault("mpp", float(mpp))
        enc = get_encoder(encoder, **encoder_kwargs)
        enc_spec = (encoder, json.dumps(encoder_kwargs, sort_keys=True, default=str))
    if tile_size is None:
        tile_size = int(enc.input_size)
    params = extraction_params(enc, mpp, tile_size, min_tissue, tissue_params,
                               precision=getattr(enc, "precision", None))
    phash = params_hash(params)
    run_dir = Path(out_dir) / run_name(params)
    run_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(run_dir)
    atomic_write_text(run_dir / "params.json", json.dumps(params, indent=2, sort_keys=True))

    manifest_path = run_dir / "manifest.csv"
    previous = read_manifest(manifest_path) if manifest_path.is_file() else None
    rows, todo = {}, []
    for slide_id, slide in slides.iterrows():
        slide_id = str(slide_id)
        old = None
        if previous is not None and slide_id in previous.index:
            old = {"slide_id": slide_id, **previous.loc[slide_id].to_dict()}
        if _is_done(old, run_dir / "h5" / f"{slide_id}.h5", phash):
            rows[slide_id] = old
            continue
        override = slide.get("mpp") if "mpp" in slides.columns else None
        override = None if override is None or pd.isna(override) else float(override)
        rows[slide_id] = {"slide_id": slide_id, "patient_id": str(slide["patient_id"]),
                          "status": "pending", "n_tiles": 0, "seconds": float("nan"), "error": ""}
        todo.append({"slide_id": slide_id, "patient_id": str(slide["patient_id"]),
                     "path": str(slide["path"]), "rel_path": _relative_path(slide["path"], root),
                     "mpp": override, "mpp_target": float(mpp),
                     "tile_size": int(tile_size), "min_tissue": float(min_tissue),
                     "batch_size": int(batch_size), "tissue_params": dict(tissue_params or {}),
                     "encoder": enc_spec, "run_dir": str(run_dir), "params_hash": phash})
    if previous is not None:
        # Slides finished earlier but absent from this cohort keep their rows: their bags
        # are still in the folder and the manifest describes the folder.
        for slide_id in previous.index.difference(list(rows), sort=False):
            rows[slide_id] = {"slide_id": slide_id, **previous.loc[slide_id].to_dict()}
    _write_manifest(manifest_path, rows)

    bar = tqdm(total=len(todo), desc=f"features {run_dir.name}", unit="slide", disable=not progress)
    own_client = None
    try:
        if client is None and n_workers is not None and n_workers > 1 and len(todo) > 1:
            from dask.distributed import Client, LocalCluster

            cluster = LocalCluster(n_workers=int(n_workers), threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            own_client = client = Client(cluster)
        if client is None:
            results = (_process_slide(task) for task in todo)
        else:
            results = _distributed(client, todo, enc_spec, phash)
        for row in results:
            rows[row["slide_id"]] = row
            _write_manifest(manifest_path, rows)
            bar.set_postfix_str(f"{row['slide_id']}: {row['status']}")
            bar.update()
    finally:
        bar.close()
        if own_client is not None:
            cluster = own_client.cluster
            own_client.close()
            cluster.close()

    feature_set = FeatureSet(run_dir)
    statuses = [r["status"] for r in rows.values()]
    if todo and "ok" not in statuses:
        failed = [f"{r['slide_id']}: {r['error']}" for r in rows.values() if r["error"]][:5]
        raise ExtractionError(f"extract: no slide produced features; see {manifest_path}. First "
                              "errors: " + " | ".join(failed))
    failed = [r for r in rows.values() if r["status"] == "failed" and r["slide_id"] in slides.index]
    if failed:
        shown = "; ".join(f"{r['slide_id']} ({r['error']})" for r in failed[:10])
        warnings.warn(ExtractionWarning(
            f"extract: {len(failed)} of {len(slides)} slide(s) failed and have no features: {shown}"
            f"{' ...' if len(failed) > 10 else ''}. Their errors are in {manifest_path}; fix the files and "
            "rerun (finished slides are skipped)."), stacklevel=2)
    return feature_set
