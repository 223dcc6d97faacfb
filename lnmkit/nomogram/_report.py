"""``write_nomogram``: fit, validate and write every nomogram output to one folder
(what ``lnmkit nomogram`` runs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lnmkit._io import atomic_path

__all__ = ["NomogramReport", "write_nomogram"]


@dataclass(frozen=True)
class NomogramReport:
    """What :func:`write_nomogram` fitted and wrote.

    Attributes
    ----------
    nomogram : Nomogram
    validation : ValidationResult or None
    calibration : CalibrationResult or None
    files : dict of str to pathlib.Path
        ``points``, ``table``, ``predictions``, ``validate``, ``calibrate``, ``plot``.
    """

    nomogram: object
    validation: object
    calibration: object
    files: dict


def _csv(frame, path, index=True):
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=index)
    return Path(path)


def write_nomogram(data, predictors, outcome, out_dir, kind="logistic", times=None, splines=None, knots=4, *,
                   categorical=None, impute=None, B=200, seed=0, progress=False):
    """Fit a nomogram, validate and calibrate it, and write the results to ``out_dir``.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per patient.
    predictors, outcome, kind, times, splines, knots, categorical, impute
        As for :func:`fit_nomogram`.
    out_dir : str or path-like
        Receives ``points.csv`` (points per predictor and total, per patient),
        ``table.csv`` (:meth:`Nomogram.table`), ``predictions.csv`` (total points,
        linear predictor and probability or S(t) per patient), ``validate.csv``,
        ``calibrate.csv`` and ``nomogram.png``.
    B : int, default=200
        Bootstrap resamples of validate and calibrate; 0 skips both files.
    seed : int, default=0
    progress : bool, default=False

    Returns
    -------
    NomogramReport
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    from lnmkit.nomogram._calibrate import calibrate
    from lnmkit.nomogram._nomogram import fit_nomogram
    from lnmkit.nomogram._validate import validate

    out = Path(out_dir)
    nomo = fit_nomogram(data, predictors, outcome, kind=kind, times=times, splines=splines, knots=knots,
                        categorical=categorical, impute=impute)
    files = {}
    points = nomo.points(data)
    files["points"] = _csv(points, out / "points.csv")
    files["table"] = _csv(nomo.table(), out / "table.csv", index=False)
    pred = nomo.predict(data)
    pred = pred.to_frame() if isinstance(pred, pd.Series) else pred.rename(columns=lambda t: f"S({t:g})")
    predictions = pd.concat([points[["total_points"]], nomo.linear_predictor(data), pred], axis=1)
    files["predictions"] = _csv(predictions, out / "predictions.csv")
    validation = calibration = None
    if B:
        validation = validate(nomo, B=B, seed=seed, progress=progress)
        files["validate"] = _csv(validation.table, out / "validate.csv")
        calibration = calibrate(nomo, B=B, seed=seed, progress=progress)
        files["calibrate"] = _csv(calibration.table, out / "calibrate.csv")
    fig = nomo.plot()
    try:
        with atomic_path(out / "nomogram.png") as tmp:
            fig.savefig(tmp, dpi=150, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    files["plot"] = out / "nomogram.png"
    return NomogramReport(nomogram=nomo, validation=validation, calibration=calibration, files=files)
