"""The classic nomogram chart: a Points ruler, one axis per predictor, Total Points,
the linear predictor and the probability axes, optionally with a patient marked.

Predictor axes are drawn on the 0-100 points scale; Total Points and the axes below
it share one horizontal span, total points ``T`` sitting at ``T * 100 / T_max``.
Every tick label carries a matplotlib ``gid`` ``"tick|<axis>|<value>"`` so that a
program can read the chart back.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["plot_nomogram"]

_ROW = 1.0
_MIN_LABEL_GAP = 2.8  # in points (the chart is 100 wide)


def _label(v):
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.10g}"
    return str(v)


def _axis(ax, y, name, xs, labels, lw=1.0):
    xs = np.asarray(xs, dtype=float)
    ax.hlines(y, xs.min(), xs.max(), color="black", lw=lw)
    above = below = -np.inf
    for x, lab in zip(xs, labels):
        ax.vlines(x, y, y + 0.12, color="black", lw=lw)
        # a label too close to the previous one goes under the line; if that is taken
        # too, only the tick is drawn
        if x - above >= _MIN_LABEL_GAP:
            ax.text(x, y + 0.17, lab, ha="center", va="bottom", fontsize=7, gid=f"tick|{name}|{lab}")
            above = x
        elif x - below >= _MIN_LABEL_GAP:
            ax.text(x, y - 0.08, lab, ha="center", va="top", fontsize=7, gid=f"tick|{name}|{lab}")
            below = x
    ax.text(-4, y, name, ha="right", va="center", fontsize=9, gid=f"name|{name}")


def _patient_frame(nomo, patient):
    if isinstance(patient, pd.Series):
        patient = patient.to_frame().T
    if not isinstance(patient, pd.DataFrame) or len(patient) != 1:
        raise ValueError("Nomogram.plot: patient must be a pandas Series or a one-row DataFrame; got "
                         f"{type(patient).__name__} with {len(patient) if hasattr(patient, '__len__') else '?'} rows.")
    return patient


def plot_nomogram(nomo, patient=None, ax=None):
    """Draw ``nomo`` (see :meth:`Nomogram.plot`).

    Parameters
    ----------
    nomo : Nomogram
    patient : pandas.Series or one-row pandas.DataFrame, optional
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    scale = nomo.scale_
    n_rows = 1 + len(scale.axes) + 2 + len(scale.outcome_axes)
    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 0.55 * n_rows + 1.0))
    else:
        fig = ax.figure
    y = n_rows * _ROW
    rows = {}
    ticks = np.arange(0, 101, 10)
    _axis(ax, y, "Points", ticks, [f"{t:g}" for t in ticks])
    ax.hlines(y, 0, 100, color="black")
    for t in np.arange(0, 101, 2):
        ax.vlines(t, y, y + 0.06, color="black", lw=0.6)
    rows["Points"] = y
    for name, axis in scale.axes.items():
        y -= _ROW
        order = np.argsort(axis["points"].to_numpy(), kind="stable")
        _axis(ax, y, name, axis["points"].to_numpy()[order], [_label(v) for v in axis["value"].to_numpy()[order]])
        rows[name] = y
    total_max = float(scale.total_ticks.max())
    to_x = 100.0 / total_max
    y -= _ROW
    _axis(ax, y, "Total Points", scale.total_ticks * to_x, [f"{t:g}" for t in scale.total_ticks])
    rows["Total Points"] = y
    y -= _ROW
    lp = scale.lp_axis
    keep = (lp["points"] >= -1e-9) & (lp["points"] <= total_max + 1e-9)
    _axis(ax, y, "Linear Predictor", lp["points"][keep] * to_x, [f"{v:g}" for v in lp["value"][keep]])
    rows["Linear Predictor"] = y
    for label, axis in scale.outcome_axes.items():
        y -= _ROW
        keep = (axis["points"] >= -1e-9) & (axis["points"] <= total_max + 1e-9)
        _axis(ax, y, label, axis["points"][keep] * to_x, [f"{v:g}" for v in axis["value"][keep]])
        rows[label] = y
    if patient is not None:
        _mark_patient(ax, nomo, _patient_frame(nomo, patient), rows, to_x)
    ax.set_xlim(-30, 106)
    ax.set_ylim(y - 0.6, n_rows * _ROW + 0.8)
    ax.axis("off")
    title = "Nomogram: " + ("logistic model" if nomo.kind == "logistic" else "Cox model")
    ax.set_title(title, fontsize=10)
    return fig


def _mark_patient(ax, nomo, patient, rows, to_x):
    pts = nomo.points(patient).iloc[0]
    color = "C3"
    for name in nomo.scale_.axes:
        x, y = float(pts[name]), rows[name]
        ax.plot([x], [y], "o", color=color, ms=5, zorder=5)
        ax.vlines(x, y, rows["Points"], color=color, lw=0.8, ls="--", zorder=4)
    total = float(pts["total_points"])
    xt = total * to_x
    bottom = min(rows.values())
    ax.plot([xt], [rows["Total Points"]], "v", color=color, ms=7, zorder=5)
    ax.vlines(xt, bottom, rows["Total Points"], color=color, lw=1.0, ls="--", zorder=4)
    pred = nomo.predict(patient)
    values = ({pred.name: float(pred.iloc[0])} if isinstance(pred, pd.Series)
              else {f"S({t:g})": float(pred[t].iloc[0]) for t in pred.columns})
    for label, value in values.items():
        ax.plot([xt], [rows[label]], "o", color=color, ms=5, zorder=5)
        ax.text(xt + 1.2, rows[label] - 0.3, f"{value:.3f}", color=color, fontsize=8,
                gid=f"patient|{label}|{value:.6f}")
    pid = patient.index[0]
    ax.text(xt + 1.2, rows["Total Points"] - 0.3, f"{total:.1f} points", color=color, fontsize=8,
            gid=f"patient|total_points|{total:.6f}")
    ax.text(106, rows["Points"] + 0.5, f"patient {pid}", color=color, fontsize=8, ha="right")
