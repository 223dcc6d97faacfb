"""The ``lnmkit`` command line.

Each command is a thin wrapper over the public Python API: it parses paths and
options, calls one library function and prints what that function returns.
"""

from __future__ import annotations

from typing import Optional

import typer

from lnmkit._version import __version__

app = typer.Typer(
    name="lnmkit",
    help="Lymph node metastasis and prognosis from slides, clinical and radiology tables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool):
    if value:
        typer.echo(f"lnmkit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
):
    """Lymph node metastasis and prognosis from slides, clinical and radiology tables."""


@app.command()
def synth(
    out_dir: str = typer.Argument(..., help="Folder to write the cohort into."),
    n_patients: int = typer.Option(60, "--n-patients", help="Number of patients."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed -> identical cohort)."),
    slide_size: int = typer.Option(8192, "--slide-size", help="Level-0 width of 40x slides in pixels."),
    regime: str = typer.Option("regions", "--regime",
                               help="regions (large tumour areas, quick demo) | focal (small witness regions, "
                                    "confounders, wide stain variation)."),
    witness_fraction: float = typer.Option(0.02, "--witness-fraction",
                                           help="Focal regime: share of a pN+ slide's tissue that is tumour "
                                                "(0.005-0.10)."),
    no_slides: bool = typer.Option(False, "--no-slides", help="Write tables and truth only."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a folder that holds a cohort."),
):
    """Write a synthetic cohort (tables, whole-slide images, planted truth)."""
    from lnmkit.synth import load_truth, make_cohort

    try:
        root = make_cohort(out_dir, n_patients=n_patients, seed=seed, slide_size=slide_size, regime=regime,
                           witness_fraction=witness_fraction, slides=not no_slides, overwrite=overwrite)
    except (ValueError, FileExistsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2)
    truth = load_truth(root)
    kinds = [entry["kind"] for entry in truth["slides"].values()]
    typer.echo(f"wrote {n_patients} patients and {len(kinds)} slides to {root} "
               f"({kinds.count('pn_positive')} slides with planted tumour, {kinds.count('otc')} with "
               f"occult foci only; ground truth in {root / 'truth'})")
    if not no_slides:
        from lnmkit.synth import write_planted_annotations

        folder = write_planted_annotations(root, root / "truth" / "annotations")
        typer.echo(f"planted tumour as QuPath GeoJSON annotations (lnmkit mil --annotations): {folder}")


@app.command()
def features(
    cohort_dir: str = typer.Argument(..., help="Cohort folder with slides.csv."),
    out: str = typer.Option(..., "--out", help="Parent folder of the run folder (resumable)."),
    encoder: str = typer.Option("stain-texture", "--encoder",
                                help="stain-texture | resnet50-trunc | uni | ... | timm:<name> | hf-hub:<repo>."),
    mpp: float = typer.Option(0.5, "--mpp", help="Microns per pixel of the tiles (0.5 = 20x)."),
    tile_size: Optional[int] = typer.Option(None, "--tile-size",
                                            help="Tile side in pixels; default: the encoder's input size "
                                                 "(160 for stain-texture)."),
    min_tissue: float = typer.Option(0.5, "--min-tissue", help="Least tissue fraction of a kept tile."),
    batch_size: int = typer.Option(64, "--batch-size", help="Tiles read and encoded together."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Local weights file of the encoder."),
    device: Optional[str] = typer.Option(None, "--device", help="Torch device for neural encoders (cpu, cuda, auto)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler",
                                            help="Dask scheduler address, or 'local' for a local cluster."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Worker processes of a local cluster."),
):
    """Extract tile features of every slide into one HDF5 bag per slide (skips finished slides)."""
    from lnmkit.exceptions import LnmkitError
    from lnmkit.features import extract

    encoder_kwargs = {k: v for k, v in (("weights", weights), ("device", device)) if v is not None}
    client = cluster = None
    try:
        if scheduler is not None:
            from dask.distributed import Client, LocalCluster

            if scheduler == "local":
                cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1,
                                       dashboard_address=None)
                client = Client(cluster)
            else:
                client = Client(scheduler)
        result = extract(cohort_dir, out, encoder=encoder, mpp=mpp, tile_size=tile_size,
                         min_tissue=min_tissue, batch_size=batch_size, client=client,
                         n_workers=None if scheduler else workers, encoder_kwargs=encoder_kwargs)
    except (LnmkitError, ValueError, TypeError, ImportError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    counts = result.manifest["status"].value_counts().to_dict()
    typer.echo(f"{result.root}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
               + f"; {int(result.manifest['n_tiles'].sum())} tiles")
    for slide_id, row in result.manifest[result.manifest["status"] == "failed"].iterrows():
        typer.echo(f"failed {slide_id}: {row['error']}", err=True)
    if counts.get("failed"):
        raise typer.Exit(code=1)


@app.command()
def mil(
    features_dir: str = typer.Argument(..., help="Folder written by `lnmkit features --out`."),
    cohort: str = typer.Option(..., "--cohort", help="Cohort folder (clinical.csv, outcomes.csv, slides.csv)."),
    out: str = typer.Option(..., "--out", help="Folder for scores, attention, metrics and models."),
    arch: str = typer.Option("instance", "--arch", help="instance | abmil | gated-abmil | clam-sb | mean | max."),
    n_splits: int = typer.Option(5, "--n-splits", help="Cross-fitting folds (split by patient)."),
    seed: int = typer.Option(0, "--seed", help="Seed for folds and training."),
    tasks: str = typer.Option("lnm,otc", "--tasks", help="Comma-separated heads: lnm, otc, survival."),
    max_epochs: Optional[int] = typer.Option(None, "--max-epochs", show_default="MILClassifier's",
                                             help="Training epochs per fold (all of them run unless --val-fraction "
                                                  "is above 0)."),
    max_tiles: Optional[int] = typer.Option(None, "--max-tiles", show_default="MILClassifier's",
                                            help="Training subsample per bag and epoch (prediction uses "
                                                 "every tile)."),
    averaging_epochs: Optional[float] = typer.Option(None, "--averaging-epochs",
                                                     show_default="MILClassifier's",
                                                     help="Weight averaging window in epochs; 0 turns it off."),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", show_default="MILClassifier's (0)",
                                                 help="Share of each fold's training patients held out for early "
                                                      "stopping; 0 trains every patient for --max-epochs."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", show_default="MILClassifier's",
                                                 help="AdamW's decoupled weight decay."),
    n_init: Optional[int] = typer.Option(None, "--n-init", show_default="MILClassifier's (1)",
                                         help="Networks trained per fold from different initial weights; the one "
                                              "with the lowest training loss is kept. 3 guards against runs that "
                                              "miss small foci (224-px tiles), at about 3x the time."),
    annotations: Optional[str] = typer.Option(
        None, "--annotations",
        help="Folder of tumour annotations, one per slide: <slide_id>.geojson (QuPath / GeoJSON polygons in "
             "level-0 pixels) or a mask <slide_id>.png/.tif; adds attention localisation to metrics.json."),
    annotation_classes: Optional[str] = typer.Option(
        None, "--annotation-classes",
        help="Comma-separated QuPath classes to keep (e.g. Tumor); default every annotated area."),
    mask_downsample: Optional[float] = typer.Option(
        None, "--mask-downsample", help="Level-0 pixels per mask pixel of mask-image annotations."),
    annotation_threshold: float = typer.Option(
        0.5, "--annotation-threshold", help="Annotated fraction from which a tile counts as tumour."),
):
    """Cross-fit attention MIL: out-of-fold scores, per-tile attention, metrics, fold models.

    Needs the feature bags and the cohort tables only; the slide files need not be present.
    Patients with a bag but no outcomes.csv row are left out (with a warning). The output
    folder is read back by lnmkit.mil.CrossFitResult.load(OUT) to score new patients.
    """
    from lnmkit.exceptions import LnmkitError
    from lnmkit.mil import run_mil

    classes = None
    if annotation_classes:
        classes = [c.strip() for c in annotation_classes.split(",") if c.strip()]
    try:
        run = run_mil(features_dir, cohort, out, arch=arch, n_splits=n_splits, seed=seed,
                      tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()),
                      estimator_params={k: v for k, v in [("max_epochs", max_epochs), ("max_tiles", max_tiles),
                                                          ("averaging_epochs", averaging_epochs),
                                                          ("val_fraction", val_fraction),
                                                          ("weight_decay", weight_decay), ("n_init", n_init)]
                                        if v is not None},
                      annotations=annotations, annotation_classes=classes, mask_downsample=mask_downsample,
                      annotation_threshold=annotation_threshold)
    except (LnmkitError, ValueError, TypeError, FileNotFoundError, KeyError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2)
    typer.echo(repr(run))


@app.command()
def validate(
    cohort_dir: str = typer.Argument(..., help="Cohort folder: clinical.csv and optionally outcomes.csv, "
                                     "radiology_nodes.csv, slides.csv, radiology_images.csv."),
    check_files: bool = typer.Option(True, "--check-files/--no-check-files",
                                     help="Check the slide and image files named in the tables: they must exist, "
                                          "and every slide is opened (header, levels, mpp, one small read per "
                                          "level, in parallel) so that empty, truncated, renamed or damaged files "
                                          "are reported here (--no-check-files: the tables only, e.g. without "
                                          "the slides)."),
):
    """Check a cohort folder against lnmkit's data schemas and print every problem, one per line.

    Exits 1 if any error is found, 0 otherwise (warnings alone do not fail).
    """
    import warnings

    from lnmkit.cohort import Cohort, validate_cohort
    from lnmkit.exceptions import CohortValidationError, CohortValidationWarning, DataSchemaError

    try:
        problems = validate_cohort(cohort_dir, check_files=check_files)
        errors = sum(p.is_error for p in problems)
        cohort = None
        if not errors:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CohortValidationWarning)
                cohort = Cohort.from_dir(cohort_dir, check_files=False)
    except CohortValidationError as exc:  # the files changed between the two reads
        problems, errors, cohort = exc.problems, sum(p.is_error for p in exc.problems), None
    except DataSchemaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2)
    for problem in problems:
        typer.echo(str(problem))
    if cohort is None:
        typer.echo(f"invalid: {errors} error(s), {len(problems) - errors} warning(s) in {cohort_dir}")
        raise typer.Exit(code=1)
    typer.echo(f"valid: {repr(cohort)[len('<Cohort: '):-1]}")


@app.command()
def radiology(
    cohort_dir: str = typer.Argument(..., help="Cohort folder: clinical.csv, radiology_nodes.csv "
                                     "(and radiology_images.csv for --images)."),
    out: str = typer.Option(..., "--out", help="CSV file for the patient-level features (one row per patient)."),
    cancer: str = typer.Option("gastric", "--cancer", help="Preset of size criterion and N category: gastric | general."),
    images: bool = typer.Option(False, "--images", help="Add node radiomics from radiology_images.csv (rad_img_*)."),
    modality: Optional[str] = typer.Option(None, "--modality",
                                           help="With --images: use only images of this modality (CT, MRI, PET, PET-CT)."),
    resample_mask: bool = typer.Option(False, "--resample-mask",
                                       help="With --images: resample masks whose grid differs from their image's."),
):
    """Patient-level lymph-node features from the radiology node table (and node images)."""
    import warnings

    import pandas as pd

    from lnmkit._io import atomic_path
    from lnmkit.cohort import Cohort
    from lnmkit.exceptions import LnmkitError
    from lnmkit.radiology import NodeFeatures, NodeRadiomics

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cohort = Cohort.from_dir(cohort_dir)
            table = NodeFeatures(cancer).fit_transform(cohort)
            if images:
                radiomics = NodeRadiomics(modality=modality, resample_mask=resample_mask).fit_transform(cohort)
                table = table.join(radiomics)
        with atomic_path(out) as tmp:
            table.to_csv(tmp)
    except (LnmkitError, ValueError, TypeError, ImportError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2)
    for warning in caught:
        typer.echo(f"warning: {warning.message}", err=True)
    with_nodes = int((table["rad_radiology_missing"] == 0).sum())
    counts = table["rad_n_category"].value_counts(sort=False, dropna=False)
    summary = ", ".join(f"{'no node rows' if pd.isna(k) else k}: {v}" for k, v in counts.items())
    typer.echo(f"{len(table)} patients ({with_nodes} with node rows), {table.shape[1]} columns -> {out}")
    typer.echo(f"N category: {summary}")
    if images:
        typer.echo(f"node images: {int((table['rad_img_missing'] == 0).sum())} patients, "
                   f"{int(table['rad_img_n_nodes'].sum())} nodes measured")


@app.command()
def survival(
    data: str = typer.Argument(..., help="CSV with one row per patient: features, follow-up time and event."),
    time: str = typer.Option(..., "--time", help="Column of the follow-up time (> 0)."),
    event: str = typer.Option(..., "--event", help="Column of the event indicator (0/1)."),
    out: str = typer.Option(..., "--out", help="Folder for metrics, predictions, summary and plots."),
    model: str = typer.Option("cox", "--model", help="cox | rsf | gbs | xgb-cox | xgb-aft."),
    features: Optional[str] = typer.Option(None, "--features",
                                           help="Comma-separated feature columns (default: every other column)."),
    id_col: str = typer.Option("patient_id", "--id-col", help="Patient id column (used as the index if present)."),
    horizon: Optional[list[float]] = typer.Option(None, "--horizon",
                                                  help="Calibration horizon (repeat for several, e.g. 36 and 60)."),
    n_splits: int = typer.Option(5, "--n-splits", help="Cross-validation folds, split by patient."),
    impute: bool = typer.Option(False, "--impute", help="Fill missing values with training medians / modes "
                                                        "(Cox and forests; XGBoost takes them as they are)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the folds, models and bootstrap."),
):
    """Fit a survival model, cross-validate it by patient and write its evaluation."""
    import warnings

    import pandas as pd

    from lnmkit.evaluation import survival_analysis
    from lnmkit.exceptions import LnmkitError

    try:
        frame = pd.read_csv(data)
        if id_col in frame.columns:
            frame = frame.set_index(id_col)
        cols = None if features is None else [c.strip() for c in features.split(",") if c.strip()]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = survival_analysis(frame, time, event, model=model, features=cols, horizons=horizon,
                                       n_splits=n_splits, impute="median" if impute else None, random_state=seed,
                                       out_dir=out)
    except (LnmkitError, ValueError, TypeError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2)
    for warning in caught:
        if not issubclass(warning.category, (DeprecationWarning, FutureWarning)):
            typer.echo(f"warning: {warning.message}", err=True)
    typer.echo(repr(result))
    for metric, value in result.table["value"].items():
        typer.echo(f"{metric:<24} {value:.4g}")
    typer.echo(f"-> {out} ({', '.join(sorted(result.files))})")


@app.command()
def tissue(
    slides: list[str] = typer.Argument(..., help="Slide files (SVS, TIFF, NDPI, MRXS, DICOM, ...)."),
    out: str = typer.Option(..., "--out", help="Folder for <slide_id>.geojson and <slide_id>.png."),
    mpp: Optional[float] = typer.Option(None, "--mpp", help="Level-0 µm/px for slides that declare none."),
    exclude_pen: bool = typer.Option(True, "--exclude-pen/--keep-pen", help="Exclude marker ink."),
):
    """Segment the tissue of slides: QuPath-compatible GeoJSON outlines plus a QC PNG per slide.

    Exits 1 if any slide fails (the others are still processed).
    """
    from pathlib import Path

    from lnmkit.exceptions import LnmkitError
    from lnmkit.slides import open_slide, segment_tissue

    failed = 0
    for path in slides:
        try:
            with open_slide(path, mpp=mpp) as slide:
                mask = segment_tissue(slide, exclude_pen=exclude_pen)
                geojson = Path(out) / f"{slide.slide_id}.geojson"
                mask.to_geojson(geojson)
                mask.save_qc(Path(out) / f"{slide.slide_id}.png")
                typer.echo(f"{slide.slide_id}: {len(mask.polygons)} piece(s), {mask.area_mm2:.2f} mm², "
                           f"{slide.mpp:.4g} µm/px ({slide.mpp_source}) -> {geojson}")
        except (LnmkitError, ValueError, OSError) as exc:
            failed += 1
            typer.echo(f"error: {exc}", err=True)
    if failed:
        typer.echo(f"{failed} of {len(slides)} slide(s) failed", err=True)
        raise typer.Exit(code=1)


def _config_error(exc, source):
    """Print a ConfigError one problem per line, each prefixed with the file, and exit 2."""
    where = exc.source or source
    for problem in exc.problems:
        typer.echo(f"error: {where}: {problem}", err=True)
    raise typer.Exit(code=2)


@app.command()
def run(
    config: str = typer.Argument(..., help="Pipeline configuration (YAML; `lnmkit init-config` writes one)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler",
                                            help="Dask scheduler address (tcp://host:port) for the slide stages; "
                                                 "overrides the config's dask section."),
    force: list[str] = typer.Option([], "--force", help="Run this stage even if up to date (repeatable)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print which stages would run, and why; run nothing."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
):
    """Run the pipeline: validate, features, MIL, radiology, ... skipping stages that are up to date.

    Every stage writes its outputs and a stage.json under OUTPUT/<stage>/. A bad configuration
    exits 2 with one line per problem; an invalid cohort exits 1 with its problems.
    """
    from lnmkit.cohort import Problem
    from lnmkit.exceptions import CohortValidationError, ConfigError, LnmkitError
    from lnmkit.pipeline import load_config, plan_pipeline, run_pipeline

    try:
        if dry_run:
            overrides = {"dask.scheduler": scheduler} if scheduler else None
            plan = plan_pipeline(load_config(config, overrides=overrides))
            for stage, row in plan.iterrows():
                typer.echo(f"{stage:<12} {row['action']:<5} {row['reason']}")
            return
        result = run_pipeline(config, scheduler=scheduler, force=force, progress=not quiet)
    except ConfigError as exc:
        _config_error(exc, config)
    except CohortValidationError as exc:
        for problem in exc.problems:
            if isinstance(problem, Problem) and problem.is_error:
                typer.echo(str(problem), err=True)
        typer.echo(f"error: the cohort has errors; fix them (`lnmkit validate`) and run again", err=True)
        raise typer.Exit(code=1)
    except (LnmkitError, ValueError, OSError, ImportError, RuntimeError) as exc:
        typer.echo(f"error: {type(exc).__name__}: {' '.join(str(exc).split())}", err=True)
        for note in getattr(exc, "__notes__", []):
            typer.echo(f"  {note}", err=True)
        raise typer.Exit(code=1)
    for stage, row in result.table.iterrows():
        typer.echo(f"{stage:<12} {row['action']:<8} {row['seconds']:8.1f} s  {row['reason']}")
    for line in result.results_lines():
        typer.echo(line)
    typer.echo(f"outputs: {result.out_dir}")
    if "reports" in result.records:
        typer.echo(f"report:  {result.output('reports', 'report')}")


@app.command("init-config")
def init_config(
    cohort_dir: str = typer.Argument(..., help="Cohort folder the configuration describes."),
    out: str = typer.Option("config.yaml", "--out", help="Configuration file to write."),
    output: str = typer.Option("lnmkit-run", "--output", help="Run folder named in the configuration."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
):
    """Write a commented default configuration for a cohort folder (stages its tables allow switched on)."""
    from lnmkit.exceptions import ConfigError
    from lnmkit.pipeline import check_config, load_config, write_default_config

    try:
        path = write_default_config(cohort_dir, out, output=output, overwrite=overwrite)
    except (FileExistsError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2)
    typer.echo(f"wrote {path}; edit it, then run `lnmkit run {path}`")
    try:
        problems = check_config(load_config(path), check_encoder=False)
    except ConfigError as exc:
        problems = exc.problems
    for problem in problems:
        typer.echo(f"note: {path}: {problem}", err=True)


@app.command()
def demo(
    out: str = typer.Option("lnmkit-demo", "--out", help="Folder for every output of the demo."),
    n_patients: int = typer.Option(40, "--n-patients", help="Patients in the synthetic cohort."),
    seed: int = typer.Option(0, "--seed", help="Seed of the cohort and of training."),
    slide_size: int = typer.Option(4096, "--slide-size", help="Level-0 width of the 40x synthetic slides."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler",
                                            help="Dask scheduler address (tcp://host:port) for the slide stages."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
):
    """Make a synthetic cohort (again when another seed or size is asked) and run the default pipeline on it."""
    from lnmkit._demo import run_demo
    from lnmkit.exceptions import ConfigError

    overrides = {"dask.scheduler": scheduler} if scheduler else None
    try:
        result = run_demo(out, n_patients=n_patients, seed=seed, slide_size=slide_size, overrides=overrides,
                          progress=not quiet)
    except ConfigError as exc:
        _config_error(exc, "demo")
    except (ValueError, FileExistsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2)
    for stage, row in result.pipeline.table.iterrows():
        typer.echo(f"{stage:<12} {row['action']:<8} {row['seconds']:8.1f} s")
    for line in result.summary_lines():
        typer.echo(line)


@app.command()
def nomogram(
    data: str = typer.Argument(..., help="CSV with one row per patient: predictors and outcome."),
    kind: str = typer.Option("logistic", "--kind", help="logistic | cox."),
    outcome: str = typer.Option(..., "--outcome", help="0/1 column (logistic), or TIME,EVENT columns (cox)."),
    predictors: str = typer.Option(..., "--predictors", help="Comma-separated predictor columns."),
    out: str = typer.Option(..., "--out", help="Folder for points, table, predictions, validate, calibrate, png."),
    splines: Optional[str] = typer.Option(None, "--splines",
                                          help="Comma-separated numeric predictors fitted as restricted cubic splines."),
    knots: int = typer.Option(4, "--knots", help="Knots of each spline (Hmisc placement)."),
    times: Optional[str] = typer.Option(None, "--times", help="Comma-separated survival horizons (cox), e.g. 36,60."),
    validate_b: int = typer.Option(200, "--validate", help="Bootstrap resamples of validate and calibrate (0: skip)."),
    categorical: Optional[str] = typer.Option(None, "--categorical",
                                              help="Comma-separated numeric columns to treat as categorical."),
    impute: bool = typer.Option(False, "--impute", help="Median / mode imputation, refitted in every bootstrap."),
    id_col: str = typer.Option("patient_id", "--id-col", help="Patient id column (used as the index if present)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
):
    """Fit an rms-style nomogram, validate and calibrate it by bootstrap, and write its outputs."""
    import pandas as pd

    from lnmkit.exceptions import LnmkitError
    from lnmkit.nomogram import write_nomogram

    def _list(text):
        return None if text is None else [c.strip() for c in text.split(",") if c.strip()]

    try:
        frame = pd.read_csv(data)
        if id_col in frame.columns:
            frame = frame.set_index(id_col)
        out_cols = _list(outcome)
        if kind == "cox" and len(out_cols) != 2:
            raise ValueError(f"--outcome for --kind cox must be TIME,EVENT; got {outcome!r}.")
        horizons = None if times is None else [float(t) for t in _list(times)]
        report = write_nomogram(frame, _list(predictors), out_cols[0] if kind == "logistic" else tuple(out_cols),
                                out, kind=kind, times=horizons, splines=_list(splines), knots=knots,
                                categorical=_list(categorical), impute="median" if impute else None,
                                B=validate_b, seed=seed)
    except (LnmkitError, ValueError, TypeError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2)
    typer.echo(repr(report.nomogram))
    if report.validation is not None:
        typer.echo(repr(report.validation))
        typer.echo(repr(report.calibration))
    typer.echo(f"-> {out} ({', '.join(p.name for p in report.files.values())})")


@app.command()
def fusion(
    cohort_dir: str = typer.Argument(..., help="Cohort folder (clinical.csv, outcomes.csv, radiology_nodes.csv)."),
    out: str = typer.Option(..., "--out", help="CSV of the fusion table (a .json description is written beside it)."),
    mil: Optional[str] = typer.Option(None, "--mil", help="Folder written by `lnmkit mil` (out-of-fold slide scores)."),
    radiology: bool = typer.Option(True, "--radiology/--no-radiology", help="Add radiology node features (rad_*)."),
):
    """Build the fusion table: schema-encoded clinical columns, radiology features, slide scores.

    Slide scores come from the MIL cross-fit (out-of-fold; embeddings are never included).
    The table is read back by lnmkit.fusion.FusionTable.load(OUT) and by `lnmkit lnm-models`.
    """
    from lnmkit.cohort import Cohort
    from lnmkit.exceptions import LnmkitError
    from lnmkit.fusion import build_fusion_table

    try:
        cohort = Cohort.from_dir(cohort_dir, check_files=False)
        slide = None
        if mil is not None:
            from lnmkit.mil import CrossFitResult

            slide = CrossFitResult.load(mil)
        table = build_fusion_table(cohort, slide=slide, radiology=True if radiology else None)
        path = table.save(out)
    except (LnmkitError, ValueError, TypeError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2)
    typer.echo(repr(table))
    typer.echo(f"-> {path} (+ {path.name}.json)")


@app.command("lnm-models")
def lnm_models(
    fusion_csv: str = typer.Argument(..., help="Fusion table written by `lnmkit fusion`."),
    cohort: str = typer.Option(..., "--cohort", help="Cohort folder (outcomes.csv gives pn_status)."),
    out: str = typer.Option(..., "--out", help="Folder for comparison.csv, metrics, predictions, plots, models."),
    model: str = typer.Option("ridge", "--model", help="logistic (unpenalised) | ridge | xgb."),
    n_splits: int = typer.Option(5, "--n-splits", help="Outer folds (split by patient)."),
    inner_splits: int = typer.Option(5, "--inner-splits", help="Inner folds of the hyperparameter search."),
    seed: int = typer.Option(0, "--seed", help="Seed of folds and models."),
    features: Optional[str] = typer.Option(
        None, "--features",
        help="Feature-bag folder of `lnmkit features`: slide scores are then cross-fitted nested inside the "
             "outer folds (K x (K+1) MIL fits), the only honest estimate for feature sets with slides."),
    mil_epochs: Optional[int] = typer.Option(None, "--mil-epochs", show_default="MILClassifier's",
                                             help="Maximum MIL epochs of the nested cross-fits."),
    n_bootstrap: int = typer.Option(1000, "--n-bootstrap", help="Stratified bootstrap resamples of each AUC."),
):
    """Compare LNM models (clinical, + radiology, + slide, all) by nested cross-validation.

    Without --features, feature sets with slide scores are left out: scores from a single
    cross-fit would leak under the outer folds.
    """
    from lnmkit.cohort import Cohort
    from lnmkit.exceptions import LnmkitError
    from lnmkit.fusion import FusionTable, nested_cross_fit
    from lnmkit.models import run_lnm_models

    try:
        table = FusionTable.load(fusion_csv)
        co = Cohort.from_dir(cohort, check_files=False)
        table.outcomes = co.outcomes
        y = table.lnm_labels()
        stacked = None
        if features is not None:
            from lnmkit.features import open_features
            from lnmkit.mil import MILClassifier, load_bags

            bags = load_bags(open_features(features), co, progress=False)
            params = {"tasks": ("lnm",)} if mil_epochs is None else {"tasks": ("lnm",), "max_epochs": mil_epochs}
            known = y.dropna()
            folds = None
            from lnmkit.models import make_patient_folds

            pids = [p for p in bags if p in known.index]
            folds = make_patient_folds(pids, known.loc[pids].to_numpy(), n_splits=n_splits, random_state=seed)
            stacked = nested_cross_fit({p: bags[p] for p in pids}, co.outcomes, folds=folds,
                                       estimator=MILClassifier(random_state=seed, **params), random_state=seed)
            table.frame = table.frame.loc[pids]
        run = run_lnm_models(table, y, out, model=model, stacked=stacked, n_splits=n_splits,
                             inner_splits=inner_splits, seed=seed, n_bootstrap=n_bootstrap)
    except (LnmkitError, ValueError, TypeError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2)
    typer.echo(run.comparison.table.to_string(float_format=lambda v: f"{v:.3f}"))
    typer.echo(f"-> {out} ({', '.join(sorted(run.files))})")


@app.command()
def report(
    cohort: str = typer.Argument(..., help="Cohort folder (outcomes, slides, radiology nodes)."),
    table: str = typer.Option(..., "--table", help="Fusion table written by `lnmkit fusion` (CSV + JSON)."),
    lnm_model: str = typer.Option(..., "--lnm-model", help="LNM model JSON written by an lnmkit model's save()."),
    out: str = typer.Option(..., "--out", help="Folder for <patient_id>.html, cohort.html and index.csv."),
    survival_model: Optional[str] = typer.Option(
        None, "--survival-model", help="Survival model JSON (Cox or XGBoost; model.json of `lnmkit survival`, "
                                       "fitted on the fusion table's columns): survival curves and their "
                                       "explanation."),
    endpoint: str = typer.Option("os", "--endpoint", help="Endpoint of the survival model (os or rfs)."),
    mil: Optional[str] = typer.Option(None, "--mil", help="MIL cross-fit folder (run by `lnmkit mil`): tile maps."),
    features: Optional[str] = typer.Option(None, "--features", help="Feature-bag folder (tile sizes for maps)."),
    patient: Optional[list[str]] = typer.Option(None, "--patient", help="Patient to report (repeat; default all)."),
    pngs: bool = typer.Option(False, "--pngs", help="Also write every figure as a PNG under png/."),
    otc_threshold: float = typer.Option(0.5, "--otc-threshold", help="OTC score that flags a pN0 patient."),
):
    """Write patient reports and the cohort report as self-contained HTML files."""
    import warnings

    from lnmkit.cohort import Cohort
    from lnmkit.exceptions import LnmkitError
    from lnmkit.fusion import FusionTable
    from lnmkit.models import load_model
    from lnmkit.report import write_reports

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            co = Cohort.from_dir(cohort)
        fusion = FusionTable.load(table)
        models = {"lnm": load_model(lnm_model)}
        if survival_model is not None:
            models["survival"] = load_model(survival_model)
            if not hasattr(models["survival"], "predict_survival_function"):
                raise ValueError(f"--survival-model {survival_model}: holds a {type(models['survival']).__name__}, "
                                 "not a survival model (CoxPH, XGBCoxSurvival or XGBAFTSurvival).")
        crossfit = None
        if mil is not None:
            from lnmkit.mil import CrossFitResult

            crossfit = CrossFitResult.load(mil)
        tile_size = None
        if features is not None:
            from lnmkit.features import open_features

            tile_size = open_features(features)
        index = write_reports(models, fusion, out, patient_ids=patient or None, outcomes=co,
                              crossfit=crossfit, tile_size_level0=tile_size, otc_threshold=otc_threshold,
                              pngs=pngs, progress=False, endpoint=endpoint)
    except (LnmkitError, ValueError, TypeError, OSError, KeyError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2)
    typer.echo(index.to_string(float_format=lambda v: f"{v:.3f}"))
    typer.echo(f"-> {out} ({len(index)} patient reports, cohort.html, index.csv)")


def main():
    """Entry point of the ``lnmkit`` console script."""
    app()


if __name__ == "__main__":
    main()
