"""Quality-control figure of one node: the axial slice where its short axis is measured."""

from __future__ import annotations

import numpy as np

from lnmkit.radiology._images import load_image_and_mask
from lnmkit.radiology._shape import axial_measurements

__all__ = ["plot_node"]

# Soft-tissue window (level 40 HU, width 400 HU): nodes and fat both stay readable.
_CT_WINDOW = (-160.0, 240.0)
_MARGIN_MM = 10.0


def plot_node(image, mask, label, *, modality="CT", window=None, resample_mask=False, ax=None):
    """Draw a node on the axial slice of its largest short axis, with both axes measured.

    The outline is the node mask; the red segment is the in-plane long axis and the
    yellow one the short axis, exactly as :class:`NodeRadiomics` measures them
    (``short_axis_mm`` is the largest short axis over slices).

    Parameters
    ----------
    image, mask : SimpleITK.Image or str or path-like
        Volume and label mask (files or images), on the same grid.
    label : int
        Mask label of the node.
    modality : str, default="CT"
        ``"CT"`` uses a soft-tissue window (-160 to 240 HU) unless ``window`` is given.
    window : tuple of 2 float, optional
        Display range; default: CT window, else the 1st-99th percentile of the crop.
    resample_mask : bool, default=False
        As in :class:`NodeRadiomics`.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure otherwise.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If the label is absent from the mask, or the volume is not an axial
        acquisition (its third axis is not the cranio-caudal axis).
    """
    import matplotlib.pyplot as plt
    import SimpleITK as sitk

    image, mask, image_path, mask_path = load_image_and_mask(image, mask, resample_mask=resample_mask)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    if abs(abs(direction[2, 2]) - 1.0) > 1e-3:
        raise ValueError(
            f"plot_node: {image_path} is not an axial acquisition (direction {direction.round(3).tolist()}); "
            "resample it to an axial grid to draw it"
        )
    labels = sitk.GetArrayViewFromImage(mask)
    inside = labels == int(label)
    if not inside.any():
        present = sorted(set(np.unique(labels).tolist()) - {0})
        raise ValueError(f"plot_node: label {label} is not in mask {mask_path}; labels present: {present}")
    spacing = image.GetSpacing()
    z, y, x = (np.flatnonzero(inside.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1)))
    my, mx = int(np.ceil(_MARGIN_MM / spacing[1])), int(np.ceil(_MARGIN_MM / spacing[0]))
    box = (slice(z[0], z[-1] + 1), slice(max(y[0] - my, 0), y[-1] + 1 + my), slice(max(x[0] - mx, 0), x[-1] + 1 + mx))
    node = inside[box]
    slices = axial_measurements(node, spacing)
    best = max(slices, key=lambda m: m["short_mm"])
    k = best["slice"]
    values = np.asarray(sitk.GetArrayViewFromImage(image)[box][k], dtype=float)
    if window is None:
        window = _CT_WINDOW if modality == "CT" else tuple(np.percentile(values, [1, 99]))
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 5))
    else:
        fig = ax.figure
    ax.imshow(values, cmap="gray", vmin=window[0], vmax=window[1], aspect=spacing[1] / spacing[0],
              interpolation="nearest")
    ax.contour(node[k].astype(float), levels=[0.5], colors=["#00c0ff"], linewidths=1.0)
    for ends, colour, name in ((best["long_ends"], "red", "long"), (best["short_ends"], "yellow", "short")):
        ax.plot(ends[:, 1], ends[:, 0], color=colour, linewidth=1.5, label=f"{name} axis")
    ax.set_title(
        f"label {label}: short {best['short_mm']:.1f} mm, long {best['long_mm']:.1f} mm "
        f"(slice {z[0] + k})", fontsize=9,
    )
    ax.legend(loc="lower right", fontsize=7)
    ax.set_axis_off()
    return fig
