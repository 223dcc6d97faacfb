"""Global and per-patient SHAP views that return matplotlib Figures.

Thin wrappers over ``shap.plots``: they draw on a new (or given) figure, never
call ``plt.show``, and label the axis with the explanation's scale.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_bar", "plot_beeswarm", "plot_dependence", "plot_waterfall"]


def _scale(explanation):
    out = explanation.output_names
    return out if isinstance(out, str) else "model output"


def _check_2d(explanation, where):
    if np.ndim(explanation.values) != 2:
        raise ValueError(f"{where}: needs a 2-D Explanation (patients x features); got "
                         f"{np.ndim(explanation.values)}-D. Pass the cohort's explanation.")


def plot_beeswarm(explanation, max_display=12, ax=None):
    """Beeswarm of every patient's SHAP values, features by mean |SHAP|.

    Parameters
    ----------
    explanation : shap.Explanation
        Two-dimensional.
    max_display : int, default=12
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import shap

    _check_2d(explanation, "plot_beeswarm")
    fig, ax = (plt.subplots(figsize=(7, 0.35 * min(max_display, explanation.shape[1]) + 1.6)) if ax is None
               else (ax.figure, ax))
    shap.plots.beeswarm(explanation, max_display=max_display, ax=ax, show=False, plot_size=None)
    ax.set_xlabel(f"SHAP value ({_scale(explanation)})")
    return fig


def plot_bar(explanation, max_display=12, ax=None):
    """Mean |SHAP| per feature over the cohort (or one patient's values for a 1-D explanation).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import shap

    n = explanation.shape[-1]
    fig, ax = (plt.subplots(figsize=(7, 0.35 * min(max_display, n) + 1.4)) if ax is None else (ax.figure, ax))
    shap.plots.bar(explanation, max_display=max_display, ax=ax, show=False)
    ax.set_xlabel(f"mean |SHAP| ({_scale(explanation)})" if np.ndim(explanation.values) == 2
                  else f"SHAP ({_scale(explanation)})")
    return fig


def plot_dependence(explanation, feature, color=None, ax=None):
    """SHAP value of ``feature`` against its value, one point per patient.

    Parameters
    ----------
    explanation : shap.Explanation
    feature : str
    color : str, optional
        Feature to colour the points by.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import shap

    _check_2d(explanation, "plot_dependence")
    names = list(explanation.feature_names)
    for f in [feature] + ([color] if color else []):
        if f not in names:
            raise KeyError(f"plot_dependence: {f!r} is not a feature; features are {names[:15]}.")
    fig, ax = (plt.subplots(figsize=(5, 3.6)) if ax is None else (ax.figure, ax))
    shap.plots.scatter(explanation[:, feature], color=explanation[:, color] if color else None, ax=ax, show=False)
    ax.set_ylabel(f"SHAP of {feature} ({_scale(explanation)})")
    return fig


def plot_waterfall(explanation, max_display=10):
    """Waterfall of one patient's SHAP values, from the base value to the model output.

    Parameters
    ----------
    explanation : shap.Explanation
        One row, e.g. ``explanation[i]``.
    max_display : int, default=10

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import shap

    if np.ndim(explanation.values) != 1:
        raise ValueError("plot_waterfall: needs one patient's explanation; pass explanation[i] "
                         "(or explanation[explanation.instance_names.index(patient_id)]).")
    fig = plt.figure(figsize=(7, 0.38 * max_display + 1.5))
    shap.plots.waterfall(explanation, max_display=max_display, show=False)
    fig = plt.gcf()
    fig.axes[0].set_xlabel(f"{_scale(explanation)}")
    return fig
