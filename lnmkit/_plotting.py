"""Figures shared by every plot that draws over a slide or image view."""

from __future__ import annotations

__all__ = ["image_axes"]


def image_axes(image, ax=None):
    """Show ``image`` on ``ax``, or on a new figure about 6 inches on its long side.

    Parameters
    ----------
    image : ndarray of shape (h, w, 3)
        Background to draw.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new pyplot figure is made when None (like every lnmkit
        plot, so it shows inline in Jupyter; close it with ``plt.close(fig)``
        when drawing many in a loop).

    Returns
    -------
    fig : matplotlib.figure.Figure
    ax : matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    if ax is None:
        h, w = image.shape[:2]
        scale = 6.0 / max(h, w)
        # Room for a one-line title above thin images.
        fig, ax = plt.subplots(figsize=(max(2.0, w * scale), max(2.0, h * scale) + 0.4))
    else:
        fig = ax.figure
    ax.imshow(image)
    return fig, ax
