"""Reading and checking radiology volumes, node masks and ``radiology_images.csv``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from lnmkit._io import atomic_path
from lnmkit.exceptions import ImageGeometryError, RadiologyImageError
from lnmkit.radiology._node_table import normalize_patient_id

__all__ = [
    "IMAGE_MODALITIES",
    "read_volume",
    "check_volume",
    "read_mask",
    "match_mask_to_image",
    "load_image_and_mask",
    "read_images_table",
    "write_volume",
]

IMAGE_MODALITIES = ("CT", "MRI", "PET", "PET-CT")
IMAGE_COLUMNS = ("patient_id", "image_path", "mask_path", "modality")
# Geometry tolerances: header round-off in NIfTI/NRRD writers is far below these.
_SPACING_RTOL = 1e-4
_ORIGIN_ATOL_MM = 1e-3
_DIRECTION_ATOL = 1e-4


def read_volume(path):
    """Read a 3-D scalar volume (NIfTI, NRRD, MHA or anything SimpleITK reads).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    SimpleITK.Image

    Raises
    ------
    RadiologyImageError
        If the file is missing, unreadable, not 3-D or not scalar.
    """
    import SimpleITK as sitk

    path = Path(path)
    if path.is_dir():
        raise RadiologyImageError(path, "is a folder, not an image file; convert a DICOM series to one NIfTI "
                                  "file (e.g. with dcm2niix) and list that file in radiology_images.csv")
    if not path.is_file():
        raise RadiologyImageError(path, "file not found; check image_path/mask_path in radiology_images.csv")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise RadiologyImageError(path, f"cannot be read as a medical image (NIfTI/NRRD/MHA): {first}") from None
    return check_volume(image, path)


def check_volume(image, path):
    """Return ``image`` if it is a 3-D scalar volume, else raise naming ``path``.

    Parameters
    ----------
    image : SimpleITK.Image
    path : str or path-like
        Name used in the error.

    Returns
    -------
    SimpleITK.Image

    Raises
    ------
    RadiologyImageError
    """
    if image.GetDimension() != 3:
        raise RadiologyImageError(
            path, f"is {image.GetDimension()}-D; a 3-D volume is needed (split 4-D series first)"
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise RadiologyImageError(
            path, f"has {image.GetNumberOfComponentsPerPixel()} components per voxel; a scalar volume is needed"
        )
    return image


def read_mask(path):
    """Read a node label mask: a 3-D volume of non-negative integer labels (0 = background).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    SimpleITK.Image
        Of pixel type UInt32.

    Raises
    ------
    RadiologyImageError
        If the file cannot be read or holds negative or non-integer labels.
    """
    import SimpleITK as sitk

    mask = read_volume(path)
    return _as_label_image(mask, path, sitk)


def _as_label_image(mask, path, sitk):
    values = sitk.GetArrayViewFromImage(mask)
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            raise RadiologyImageError(
                path, f"is a float volume with non-integer values (e.g. {values[bad].flat[0]!r}); a node mask "
                "holds integer labels, one per node"
            )
    if values.size and values.min() < 0:
        raise RadiologyImageError(path, f"has negative label {values.min()}; labels are >= 0 (0 = background)")
    return sitk.Cast(mask, sitk.sitkUInt32)


def _geometry_differences(image, mask):
    diffs = []
    if image.GetSize() != mask.GetSize():
        diffs.append(f"size {mask.GetSize()} vs image {image.GetSize()}")
    if not np.allclose(mask.GetSpacing(), image.GetSpacing(), rtol=_SPACING_RTOL, atol=0):
        diffs.append(f"spacing {_fmt(mask.GetSpacing())} mm vs image {_fmt(image.GetSpacing())} mm")
    if not np.allclose(mask.GetOrigin(), image.GetOrigin(), rtol=0, atol=_ORIGIN_ATOL_MM):
        diffs.append(f"origin {_fmt(mask.GetOrigin())} mm vs image {_fmt(image.GetOrigin())} mm")
    if not np.allclose(mask.GetDirection(), image.GetDirection(), rtol=0, atol=_DIRECTION_ATOL):
        diffs.append(f"direction {_fmt(mask.GetDirection())} vs image {_fmt(image.GetDirection())}")
    return diffs


def _fmt(values):
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _physical_bounds(image):
    """Axis-aligned physical bounding box of the voxel boxes (not only the centres)."""
    size = np.asarray(image.GetSize())
    corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in size], indexing="ij")).reshape(3, -1).T
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    points = np.asarray(image.GetOrigin()) + (corners * np.asarray(image.GetSpacing())) @ direction.T
    return points.min(axis=0), points.max(axis=0)


def match_mask_to_image(image, mask, image_path, mask_path, *, resample_mask=False):
    """Return the mask on the image's voxel grid, or raise if the grids differ.

    The image is never resampled or cropped. When ``resample_mask`` is True and the
    grids differ, the mask is resampled onto the image grid with nearest-neighbour
    interpolation (labels stay labels), provided the two physical extents overlap
    and every label survives.

    Parameters
    ----------
    image, mask : SimpleITK.Image
        Volume and label mask.
    image_path, mask_path : str or path-like
        Their files, named in errors.
    resample_mask : bool, default=False
        Resample a mismatched mask instead of raising.

    Returns
    -------
    SimpleITK.Image
        The mask, on the image grid.

    Raises
    ------
    ImageGeometryError
        If the grids differ and ``resample_mask`` is False, if the physical extents do
        not overlap, or if a label vanishes when resampled.
    """
    import SimpleITK as sitk

    diffs = _geometry_differences(image, mask)
    if not diffs:
        # Header round-off below the tolerances would make SimpleITK refuse to combine the two.
        mask = sitk.Image(mask)
        mask.CopyInformation(image)
        return mask
    if not resample_mask:
        raise ImageGeometryError(
            image_path, mask_path,
            "; ".join(diffs) + ". Export the mask on the image grid, or pass resample_mask=True to resample "
            "it (nearest neighbour) onto the image grid",
        )
    lo_i, hi_i = _physical_bounds(image)
    lo_m, hi_m = _physical_bounds(mask)
    if np.any(np.minimum(hi_i, hi_m) <= np.maximum(lo_i, lo_m)):
        raise ImageGeometryError(
            image_path, mask_path,
            f"the mask covers {_fmt(lo_m)}-{_fmt(hi_m)} mm and the image {_fmt(lo_i)}-{_fmt(hi_i)} mm: they do "
            "not overlap, so the mask cannot belong to this image",
        )
    before = set(np.unique(sitk.GetArrayViewFromImage(mask)).tolist()) - {0}
    resampled = sitk.Resample(mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, mask.GetPixelID())
    after = set(np.unique(sitk.GetArrayViewFromImage(resampled)).tolist()) - {0}
    lost = sorted(before - after)
    if lost:
        raise ImageGeometryError(
            image_path, mask_path,
            f"labels {lost} fall outside the image (or are thinner than one image voxel) after resampling "
            "the mask onto the image grid",
        )
    return resampled


def load_image_and_mask(image, mask, image_path="<image>", mask_path="<mask>", *, resample_mask=False):
    """A volume and its node label mask, from files or images, checked and on one voxel grid.

    Parameters
    ----------
    image, mask : SimpleITK.Image or str or path-like
        Volume and integer label mask (0 = background).
    image_path, mask_path : str, default="<image>", "<mask>"
        Names used in errors when images (not files) are given.
    resample_mask : bool, default=False
        Resample a mask whose grid differs from the image's (nearest neighbour)
        instead of raising.

    Returns
    -------
    image, mask : SimpleITK.Image
        The mask is of pixel type UInt32 on the image's grid.
    image_path, mask_path : str
        The file names when files were given, else the names passed in.

    Raises
    ------
    RadiologyImageError, ImageGeometryError
        On unreadable files, non-scalar or non-3-D volumes, or mismatched grids.
    """
    if isinstance(image, (str, os.PathLike)):
        image_path, image = str(image), read_volume(image)
    else:
        image = check_volume(image, image_path)
    if isinstance(mask, (str, os.PathLike)):
        mask_path, mask = str(mask), read_mask(mask)
    else:
        import SimpleITK as sitk

        mask = _as_label_image(check_volume(mask, mask_path), mask_path, sitk)
    mask = match_mask_to_image(image, mask, image_path, mask_path, resample_mask=resample_mask)
    return image, mask, image_path, mask_path


def read_images_table(images, root=None):
    """Read and check ``radiology_images.csv`` (patient_id, image_path, mask_path, modality).

    The checks are those of ``data_schemas/radiology_images.json``, run by the
    cohort schema engine (as ``lnmkit validate`` runs them); rows are numbered
    as a spreadsheet shows them (header = row 1).

    Parameters
    ----------
    images : str, path-like or pandas.DataFrame
        The CSV file or its content.
    root : str or path-like, optional
        Folder that relative paths are resolved against; default: the CSV's folder
        (for a DataFrame: ``images.attrs["root"]`` if set, else the working directory).

    Returns
    -------
    pandas.DataFrame
        Columns patient_id (str), image_path, mask_path (absolute str), modality,
        plus any extra columns; default index.

    Raises
    ------
    RadiologyImageError
        Naming the CSV, row, column and value of every problem (missing column,
        empty cell, unknown modality, file not found).
    """
    from lnmkit.cohort._read import read_csv_text
    from lnmkit.cohort._schemas import load_schemas
    from lnmkit.cohort._validate import _validate_raw, validate_frame

    schema = load_schemas()["radiology_images"]
    if isinstance(images, (str, os.PathLike)):
        source = str(images)
        raw, problems = read_csv_text(images)
        if raw is None or any(p.is_error for p in problems):  # the file itself is unusable
            raise RadiologyImageError(source, "; ".join(p.message if p.row is None else f"row {p.row}: {p.message}"
                                                        for p in problems))
        base = Path(images).parent if root is None else Path(root)
        table, problems = _validate_raw(schema, raw, base, True, problems)
        frame = raw.cells.copy()
    elif isinstance(images, pd.DataFrame):
        source = str(images.attrs.get("path") or "radiology_images.csv")
        base = Path(images.attrs.get("root", ".") if root is None else root)
        frame = images.reset_index(drop=True).copy()
        table, problems = validate_frame(schema, frame, source=source, root=base)
    else:
        raise TypeError(f"images must be a path to radiology_images.csv or a DataFrame; got {type(images).__name__}")
    errors = [p for p in problems if p.is_error]
    if errors:
        listed = "\n  - ".join(str(p).removeprefix("error: ").removeprefix(f"{source}, ") for p in errors)
        raise RadiologyImageError(source, f"{len(errors)} problem(s):\n  - {listed}")
    df = frame.reset_index(drop=True)
    df["patient_id"] = [normalize_patient_id(v) for v in table.columns.values["patient_id"]]
    df["modality"] = [str(v) for v in table.columns.values["modality"]]
    for column in ("image_path", "mask_path"):
        df[column] = [str(Path(v).resolve()) for v in table.paths[column]]
    return df


def write_volume(image, path):
    """Write a SimpleITK image atomically; the format follows the extension (``.nii.gz``, ``.nrrd``).

    Parameters
    ----------
    image : SimpleITK.Image
    path : str or path-like

    Returns
    -------
    pathlib.Path
    """
    import SimpleITK as sitk

    path = Path(path)
    suffix = ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix
    with atomic_path(path, suffix=suffix) as tmp:
        # SimpleITK chooses the writer from the extension, so write under the real suffix first.
        staged = tmp.with_name(tmp.name[: -len(".part")])
        try:
            sitk.WriteImage(image, str(staged), useCompression=True)
            os.replace(staged, tmp)
        finally:
            if staged.exists():
                staged.unlink()
    return path
