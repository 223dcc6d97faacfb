"""Measure every labelled node of one image/mask pair (numpy or pyradiomics backend)."""

from __future__ import annotations

import numpy as np

from lnmkit.radiology._shape import axial_axes, feret_diameter, mesh_measures, surface_mesh
from lnmkit.radiology._texture import discretize, first_order, glcm_features

__all__ = ["NODE_FEATURES", "FEATURE_INFO", "measure_case", "default_bin_width"]

#: Per-node features: name -> (meaning, unit).
FEATURE_INFO = {
    "voxel_count": ("voxels in the node mask", "count"),
    "volume_mm3": ("voxel count x voxel volume", "mm3"),
    "surface_mm2": ("marching-cubes surface area", "mm2"),
    "sphericity": ("(36 pi V^2)^(1/3) / A of the marching-cubes mesh", "ratio (0-1]"),
    "long_axis_mm": ("maximum 3-D Feret diameter", "mm"),
    "axial_long_axis_mm": ("largest in-plane long axis over axial slices", "mm"),
    "short_axis_mm": ("largest in-plane short axis (perpendicular to the in-plane long axis) over axial slices",
                      "mm"),
    "axis_ratio": ("short_axis_mm / axial_long_axis_mm (roundness)", "ratio (0-1]"),
    "intensity_mean": ("mean intensity", "HU / SUV / a.u."),
    "intensity_median": ("median intensity", "HU / SUV / a.u."),
    "intensity_p10": ("10th percentile of intensity", "HU / SUV / a.u."),
    "intensity_p90": ("90th percentile of intensity", "HU / SUV / a.u."),
    "intensity_std": ("standard deviation of intensity", "HU / SUV / a.u."),
    "intensity_min": ("minimum intensity", "HU / SUV / a.u."),
    "intensity_max": ("maximum intensity", "HU / SUV / a.u."),
    "intensity_skewness": ("skewness of intensity", "1"),
    "intensity_kurtosis": ("kurtosis of intensity (Pearson, normal = 3)", "1"),
    "intensity_entropy": ("Shannon entropy of the discretised intensities", "bits"),
    "suv_max": ("SUVmax (PET only)", "SUV"),
    "suv_mean": ("SUVmean (PET only)", "SUV"),
    "glcm_contrast": ("GLCM contrast, mean over 13 directions", "grey levels^2"),
    "glcm_homogeneity": ("GLCM homogeneity (inverse difference moment)", "1"),
    "glcm_energy": ("GLCM energy (angular second moment)", "1"),
    "glcm_correlation": ("GLCM correlation", "1"),
}
NODE_FEATURES = tuple(FEATURE_INFO)

_PET = ("PET", "PET-CT")
# Axis-aligned check: the third image axis must be the physical z axis for slice-wise measures.
_AXIAL_TOL = 1e-3


def default_bin_width(modality):
    """Fixed bin width for a modality: 25 HU for CT, 0.25 SUV for PET, None (32 bins) for MRI.

    Parameters
    ----------
    modality : str

    Returns
    -------
    float or None
    """
    return {"CT": 25.0, "PET": 0.25, "PET-CT": 0.25}.get(modality)


def measure_case(image, mask, *, modality="CT", texture_spacing_mm=1.0, bin_width=None, n_bins=32,
                 backend="numpy"):
    """Measure every labelled node of an image whose mask is already on its grid.

    Parameters
    ----------
    image : SimpleITK.Image
        The volume (HU for CT, SUV for PET).
    mask : SimpleITK.Image
        Integer labels on the image grid (0 = background).
    modality : {"CT", "MRI", "PET", "PET-CT"}, default="CT"
    texture_spacing_mm : float, default=1.0
        Isotropic spacing of the grid on which GLCM texture is computed.
    bin_width : float or None, default=None
        Discretisation; ``None``: :func:`default_bin_width` of the modality.
    n_bins : int, default=32
        Number of bins where no bin width applies (MRI).
    backend : {"numpy", "pyradiomics"}, default="numpy"
        Who computes intensity, texture and mesh features; axes and volume are
        always lnmkit's own.

    Returns
    -------
    list of dict
        One dict per label, ascending: ``label`` plus every name of ``NODE_FEATURES``.
    """
    import SimpleITK as sitk
    from scipy import ndimage

    width = default_bin_width(modality) if bin_width is None else float(bin_width)
    pet = modality in _PET
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    origin = np.asarray(image.GetOrigin(), dtype=float)
    values = sitk.GetArrayViewFromImage(image)
    labels = sitk.GetArrayViewFromImage(mask)
    present = np.unique(labels)
    present = present[present > 0]
    rows = []
    objects = ndimage.find_objects(labels) if present.size else []
    for label in present.tolist():
        box = objects[label - 1]
        # One voxel of margin so that mesh and texture see the node's edge.
        box = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, labels.shape))
        start_zyx = np.array([s.start for s in box])
        inside = labels[box] == label
        crop = np.asarray(values[box], dtype=float)
        row = {"label": int(label)}
        count = int(inside.sum())
        row["voxel_count"] = count
        row["volume_mm3"] = float(count * spacing.prod())
        verts, faces = surface_mesh(inside, spacing)
        row["long_axis_mm"] = feret_diameter(verts)[0]
        axial_mask, axial_spacing = _axial_grid(inside, start_zyx, spacing, origin, direction, sitk)
        row["axial_long_axis_mm"], row["short_axis_mm"] = axial_axes(axial_mask, axial_spacing)
        row["axis_ratio"] = row["short_axis_mm"] / row["axial_long_axis_mm"]
        if backend == "pyradiomics":
            row.update(_pyradiomics_features(image, mask, label, pet, width, n_bins, texture_spacing_mm))
        else:
            row["surface_mm2"], _, row["sphericity"] = mesh_measures(verts, faces)
            row.update(first_order(crop[inside], bin_width=width, n_bins=n_bins, pet=pet))
            iso_values, iso_inside = _isotropic(crop, inside, start_zyx, image, texture_spacing_mm, sitk)
            levels = np.zeros(iso_inside.shape, dtype=np.int64)
            levels[iso_inside] = discretize(iso_values[iso_inside], width, n_bins)
            row.update(glcm_features(levels, iso_inside))
        rows.append({"label": row["label"], **{k: row.get(k, np.nan) for k in NODE_FEATURES}})
    return rows


def _crop_image(array, start_zyx, spacing, origin, direction, sitk):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetDirection(tuple(float(d) for d in direction.ravel()))
    img.SetOrigin(tuple(float(o) for o in origin + (start_zyx[::-1] * spacing) @ direction.T))
    return img


def _axial_grid(inside, start_zyx, spacing, origin, direction, sitk):
    """The node on a grid whose slices are physical axial planes (resampled only if needed)."""
    if abs(abs(direction[2, 2]) - 1.0) < _AXIAL_TOL:
        return inside, spacing
    src = _crop_image(inside.astype(np.uint8), start_zyx, spacing, origin, direction, sitk)
    corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in inside.shape[::-1]], indexing="ij")).reshape(3, -1).T
    phys = np.asarray(src.GetOrigin()) + (corners * spacing) @ direction.T
    lo, hi = phys.min(axis=0), phys.max(axis=0)
    step = np.full(3, spacing.min())
    size = np.maximum(np.ceil((hi - lo) / step).astype(int), 1)
    ref = sitk.Image([int(n) for n in size], sitk.sitkUInt8)
    ref.SetSpacing(tuple(float(s) for s in step))
    ref.SetOrigin(tuple(float(v) for v in lo + step / 2))
    out = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(out).astype(bool), step


def _isotropic(crop, inside, start_zyx, image, spacing_mm, sitk):
    """Resample a node crop to isotropic voxels: linear for intensities, nearest for the mask."""
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    origin = np.asarray(image.GetOrigin(), dtype=float)
    if np.allclose(spacing, spacing_mm, rtol=1e-3):
        return crop, inside
    src_img = _crop_image(crop.astype(np.float32), start_zyx, spacing, origin, direction, sitk)
    src_msk = _crop_image(inside.astype(np.uint8), start_zyx, spacing, origin, direction, sitk)
    size = np.maximum(np.round(np.asarray(src_img.GetSize()) * spacing / spacing_mm).astype(int), 1)
    ref = sitk.Image([int(n) for n in size], sitk.sitkFloat32)
    ref.SetSpacing((float(spacing_mm),) * 3)
    ref.SetDirection(src_img.GetDirection())
    # Keep the outer edge of the crop in place: the first voxel's corner is shared.
    corner = np.asarray(src_img.GetOrigin()) - (0.5 * spacing) @ direction.T
    ref.SetOrigin(tuple(float(v) for v in corner + (0.5 * np.full(3, spacing_mm)) @ direction.T))
    img = sitk.Resample(src_img, ref, sitk.Transform(), sitk.sitkLinear, float(crop.min()))
    msk = sitk.Resample(src_msk, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(img).astype(float), sitk.GetArrayFromImage(msk).astype(bool)


_PYRADIOMICS_MAP = {
    "original_shape_SurfaceArea": "surface_mm2",
    "original_shape_Sphericity": "sphericity",
    "original_firstorder_Mean": "intensity_mean",
    "original_firstorder_Median": "intensity_median",
    "original_firstorder_10Percentile": "intensity_p10",
    "original_firstorder_90Percentile": "intensity_p90",
    "original_firstorder_Minimum": "intensity_min",
    "original_firstorder_Maximum": "intensity_max",
    "original_firstorder_Skewness": "intensity_skewness",
    "original_firstorder_Kurtosis": "intensity_kurtosis",
    "original_firstorder_Entropy": "intensity_entropy",
    "original_glcm_Contrast": "glcm_contrast",
    "original_glcm_Idm": "glcm_homogeneity",
    "original_glcm_JointEnergy": "glcm_energy",
    "original_glcm_Correlation": "glcm_correlation",
}


def _pyradiomics_features(image, mask, label, pet, bin_width, n_bins, texture_spacing_mm):
    """Intensity, texture and mesh features from pyradiomics, renamed to lnmkit's names.

    Shape and first-order features come from the original grid; GLCM from a second
    extraction on the isotropic grid, so that both backends use the same grids.
    """
    from radiomics import featureextractor

    common = {"label": int(label), "binWidth": bin_width} if bin_width else {"label": int(label), "binCount": n_bins}
    original = featureextractor.RadiomicsFeatureExtractor(**common)
    original.disableAllFeatures()
    original.enableFeaturesByName(
        shape=["SurfaceArea", "Sphericity"],
        firstorder=["Mean", "Median", "10Percentile", "90Percentile", "Minimum", "Maximum", "Skewness",
                    "Kurtosis", "Entropy", "Variance"],
    )
    texture = featureextractor.RadiomicsFeatureExtractor(
        **common, resampledPixelSpacing=[float(texture_spacing_mm)] * 3, interpolator="sitkLinear"
    )
    texture.disableAllFeatures()
    texture.enableFeaturesByName(glcm=["Contrast", "Idm", "JointEnergy", "Correlation"])
    result = {**original.execute(image, mask), **texture.execute(image, mask)}
    out = {name: float(result[key]) for key, name in _PYRADIOMICS_MAP.items() if key in result}
    out["intensity_std"] = float(np.sqrt(float(result["original_firstorder_Variance"])))
    out["suv_max"] = out["intensity_max"] if pet else np.nan
    out["suv_mean"] = out["intensity_mean"] if pet else np.nan
    return out
