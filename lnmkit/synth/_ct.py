"""Synthetic CT volumes with ellipsoid lymph nodes of known size, for tests and demos.

The background is fat-like (-100 HU) and the nodes soft-tissue-like (about 40 HU),
the contrast a radiologist relies on to see nodes in the perigastric fat. Node
axes, orientation, spacing and noise are known exactly, so measured short and long
axes and volumes can be checked against the truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["make_ct_volume", "write_ct_case", "rotation_matrix"]


def rotation_matrix(rotation):
    """Return a 3x3 rotation matrix from a node's ``rotation`` entry.

    Parameters
    ----------
    rotation : None, float, sequence of 3 floats or array of shape (3, 3)
        ``None``: no rotation; a float: degrees about the z (cranio-caudal) axis, i.e.
        a rotation within the axial plane; three floats: degrees about x, then y,
        then z (``R = Rz @ Ry @ Rx``); or the matrix itself (orthonormal).

    Returns
    -------
    ndarray of shape (3, 3)
        Columns are the node's own axes in physical (x, y, z) coordinates.

    Raises
    ------
    ValueError
        If a matrix is given that is not a rotation.
    """
    if rotation is None:
        return np.eye(3)
    arr = np.asarray(rotation, dtype=float)
    if arr.ndim == 0:
        arr = np.array([0.0, 0.0, float(arr)])
    if arr.shape == (3, 3):
        if not np.allclose(arr @ arr.T, np.eye(3), atol=1e-6):
            raise ValueError(f"rotation matrix must be orthonormal; got {arr.tolist()}")
        return arr
    if arr.shape != (3,):
        raise ValueError(f"rotation must be None, degrees, 3 angles or a 3x3 matrix; got {rotation!r}")
    ax, ay, az = np.deg2rad(arr)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_ct_volume(
    shape=(96, 96, 24),
    spacing=(0.7, 0.7, 3.0),
    nodes=None,
    seed=0,
    *,
    origin=(0.0, 0.0, 0.0),
    background_hu=-100.0,
    noise_hu=12.0,
    blur_mm=0.0,
):
    """Make a small CT volume with ellipsoid nodes and its label mask.

    Parameters
    ----------
    shape : tuple of 3 int, default=(96, 96, 24)
        Number of voxels along x, y, z (SimpleITK ``GetSize()`` order).
    spacing : tuple of 3 float, default=(0.7, 0.7, 3.0)
        Voxel size in mm along x, y, z; anisotropic like a clinical CT.
    nodes : list of dict, optional
        One dict per node with keys ``center_mm`` (x, y, z physical position),
        ``axes_mm`` (full diameters along the node's own axes, mm), ``hu``
        (default 40), ``label`` (default: position + 1) and ``rotation`` (see
        :func:`rotation_matrix`; default none). Default: one 20 x 12 x 15 mm node in
        the middle.
    seed : int, default=0
        Seed of the noise.
    origin : tuple of 3 float, default=(0, 0, 0)
        Physical position (mm) of the first voxel's centre.
    background_hu : float, default=-100
        Fat-like background value.
    noise_hu : float, default=12
        Standard deviation of the Gaussian noise.
    blur_mm : float, default=0
        Gaussian blur (sigma, mm) applied to the image before the noise, to mimic
        partial-volume edges; the mask is never blurred.

    Returns
    -------
    image : SimpleITK.Image
        Float32 volume in HU.
    mask : SimpleITK.Image
        UInt16 label mask on the same grid; a voxel belongs to a node when its
        centre lies inside the ellipsoid (later nodes win where they overlap).

    Raises
    ------
    ValueError
        On a malformed node (wrong number of axes, non-positive axes, duplicate label).

    Examples
    --------
    >>> from lnmkit.synth import make_ct_volume
    >>> image, mask = make_ct_volume(nodes=[dict(center_mm=(33, 33, 36), axes_mm=(16, 10, 12))])
    >>> image.GetSize(), image.GetSpacing()
    ((96, 96, 24), (0.7, 0.7, 3.0))
    """
    import SimpleITK as sitk
    from scipy import ndimage

    shape = tuple(int(n) for n in shape)
    spacing = tuple(float(s) for s in spacing)
    origin = tuple(float(o) for o in origin)
    if len(shape) != 3 or len(spacing) != 3 or min(shape) < 1 or min(spacing) <= 0:
        raise ValueError(f"shape and spacing need 3 positive values; got shape={shape}, spacing={spacing}")
    if nodes is None:
        extent = np.asarray(shape) * np.asarray(spacing)
        nodes = [dict(center_mm=tuple(np.asarray(origin) + extent / 2), axes_mm=(20.0, 12.0, 15.0))]
    rng = np.random.default_rng(seed)
    image = np.full(shape[::-1], background_hu, dtype=np.float32)
    labels = np.zeros(shape[::-1], dtype=np.uint16)
    seen = set()
    for i, node in enumerate(nodes):
        label = int(node.get("label", i + 1))
        axes = np.asarray(node["axes_mm"], dtype=float)
        if axes.shape != (3,) or np.any(axes <= 0):
            raise ValueError(f"node {i}: axes_mm needs 3 positive diameters; got {node['axes_mm']!r}")
        if label in seen or not 0 < label < 65536:
            raise ValueError(f"node {i}: label {label} is a duplicate or outside 1..65535")
        seen.add(label)
        rot = rotation_matrix(node.get("rotation"))
        center = np.asarray(node["center_mm"], dtype=float)
        # Only the box around the node is evaluated, so large volumes stay cheap.
        lo = np.maximum(np.floor((center - axes.max() / 2 - np.asarray(origin)) / spacing).astype(int), 0)
        hi = np.minimum(np.ceil((center + axes.max() / 2 - np.asarray(origin)) / spacing).astype(int) + 1, shape)
        if np.any(hi <= lo):
            raise ValueError(f"node {i}: centre {tuple(center)} mm puts the node outside the volume")
        box = tuple(slice(lo[d], hi[d]) for d in (2, 1, 0))
        zz, yy, xx = np.meshgrid(*(np.arange(lo[d], hi[d]) for d in (2, 1, 0)), indexing="ij")
        points = np.stack([xx, yy, zz], axis=-1) * np.asarray(spacing) + np.asarray(origin)
        local = (points - center) @ rot  # coordinates on the node's own axes
        inside = np.sum((local / (axes / 2.0)) ** 2, axis=-1) <= 1.0
        image[box][inside] = float(node.get("hu", 40.0))
        labels[box][inside] = label
    if blur_mm > 0:
        image = ndimage.gaussian_filter(image, sigma=[blur_mm / s for s in spacing[::-1]]).astype(np.float32)
    image += rng.normal(0.0, noise_hu, size=image.shape).astype(np.float32)
    img = sitk.GetImageFromArray(image)
    msk = sitk.GetImageFromArray(labels)
    for volume in (img, msk):
        volume.SetSpacing(spacing)
        volume.SetOrigin(origin)
    return img, msk


def write_ct_case(out_dir, case_id="case", **kwargs):
    """Write a synthetic CT volume and its node mask as NIfTI (``.nii.gz``).

    Parameters
    ----------
    out_dir : str or path-like
        Folder (created if needed).
    case_id : str, default="case"
        File stem: writes ``<case_id>_ct.nii.gz`` and ``<case_id>_mask.nii.gz``.
    **kwargs
        Passed to :func:`make_ct_volume`.

    Returns
    -------
    image_path, mask_path : pathlib.Path
        The two files written (atomically).
    """
    from lnmkit.radiology._images import write_volume

    out_dir = Path(out_dir)
    image, mask = make_ct_volume(**kwargs)
    image_path, mask_path = out_dir / f"{case_id}_ct.nii.gz", out_dir / f"{case_id}_mask.nii.gz"
    write_volume(image, image_path)
    write_volume(mask, mask_path)
    return image_path, mask_path
