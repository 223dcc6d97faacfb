"""Node radiomics from image volumes and node masks, aggregated per patient."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from tqdm.auto import tqdm

from lnmkit._validation import check_int, check_positive
from lnmkit.exceptions import NotFittedError, RadiologyImageError, RadiologyWarning
from lnmkit.radiology._images import IMAGE_MODALITIES, load_image_and_mask, read_images_table
from lnmkit.radiology._node_measure import FEATURE_INFO, NODE_FEATURES, measure_case
from lnmkit.radiology._node_table import canonical_modality, validate_nodes
from lnmkit.radiology._nodes import resolve_patients

__all__ = ["NodeRadiomics"]

_BACKENDS = ("numpy", "pyradiomics", "auto")
_AGGREGATIONS = ("max", "mean", "min", "sum")


def pyradiomics_available():
    """Return True when the ``radiomics`` module (pyradiomics) can be imported.

    Returns
    -------
    bool
    """
    return importlib.util.find_spec("radiomics") is not None


class NodeRadiomics(BaseEstimator):
    """Shape, intensity and texture of every segmented node, aggregated per patient.

    Reads the volumes and node masks listed in ``radiology_images.csv`` (one label per
    node; the node table's ``mask_label`` column links labels to node rows), measures
    each node in physical millimetres and returns one row per patient with
    ``{prefix}{feature}_{aggregation}`` columns.

    Parameters
    ----------
    backend : {"numpy", "pyradiomics", "auto"}, default="numpy"
        Who computes intensity, texture and mesh (surface, sphericity) features.
        ``"numpy"``: lnmkit's own SimpleITK/numpy/scikit-image code. ``"pyradiomics"``:
        pyradiomics (``pip install "lnmkit[radiomics]"``); ImportError if missing.
        ``"auto"``: pyradiomics when importable, else numpy. Volume and axes are
        always lnmkit's own.
    modality : str or None, default=None
        Use only the images of this modality (``"CT"``, ``"MRI"``, ``"PET"``,
        ``"PET-CT"``). ``None`` requires the images table to hold one modality, since
        HU, SUV and MRI intensities cannot be pooled.
    texture_spacing_mm : float, default=1.0
        Isotropic voxel size on which GLCM texture is computed.
    bin_width : float or None, default=None
        Intensity bin width for entropy and GLCM; ``None``: 25 HU for CT, 0.25 SUV
        for PET, and ``n_bins`` bins over each node's range for MRI.
    n_bins : int, default=32
        Bins where no bin width applies.
    resample_mask : bool, default=False
        When a mask's grid differs from its image's, resample the mask (nearest
        neighbour) onto the image grid instead of raising ImageGeometryError.
    aggregations : tuple of str, default=("max", "mean")
        Per-patient summaries of each node feature, among "max", "mean", "min", "sum".
    prefix : str, default="rad_img_"
        Prefix of every output column (e.g. ``"rad_img_pet_"`` for a second run on PET).
    errors : {"raise", "warn"}, default="raise"
        On an unreadable or inconsistent case: raise, or warn, record it in
        ``output.attrs["failures"]`` and treat the patient as missing.

    Attributes
    ----------
    backend_ : str
        The backend actually used ("numpy" or "pyradiomics").

    Examples
    --------
    >>> from lnmkit.radiology import NodeRadiomics
    >>> rad = NodeRadiomics().fit()                                   # doctest: +SKIP
    >>> X = rad.transform("cohort/radiology_images.csv", nodes)      # doctest: +SKIP
    """

    def __init__(
        self,
        backend="numpy",
        *,
        modality=None,
        texture_spacing_mm=1.0,
        bin_width=None,
        n_bins=32,
        resample_mask=False,
        aggregations=("max", "mean"),
        prefix="rad_img_",
        errors="raise",
    ):
        self.backend = backend
        self.modality = modality
        self.texture_spacing_mm = texture_spacing_mm
        self.bin_width = bin_width
        self.n_bins = n_bins
        self.resample_mask = resample_mask
        self.aggregations = aggregations
        self.prefix = prefix
        self.errors = errors

    # -- parameters ---------------------------------------------------------------------------
    def _validate_params(self):
        name = type(self).__name__
        if self.backend not in _BACKENDS:
            raise ValueError(f"{name}: backend must be one of {list(_BACKENDS)}; got {self.backend!r} instead.")
        if self.modality is not None and canonical_modality(self.modality, IMAGE_MODALITIES) is None:
            raise ValueError(
                f"{name}: modality must be None or one of {list(IMAGE_MODALITIES)}; got {self.modality!r} instead."
            )
        check_positive(self.texture_spacing_mm, "texture_spacing_mm", name)
        if self.bin_width is not None:
            check_positive(self.bin_width, "bin_width", name)
        check_int(self.n_bins, "n_bins", name, minimum=2)
        aggs = (self.aggregations,) if isinstance(self.aggregations, str) else tuple(self.aggregations)
        if not aggs or any(a not in _AGGREGATIONS for a in aggs):
            raise ValueError(
                f"{name}: aggregations must be a non-empty subset of {list(_AGGREGATIONS)}; "
                f"got {self.aggregations!r} instead."
            )
        if self.errors not in ("raise", "warn"):
            raise ValueError(f"{name}: errors must be 'raise' or 'warn'; got {self.errors!r} instead.")
        if not isinstance(self.prefix, str):
            raise TypeError(f"{name}: prefix must be a str; got {type(self.prefix).__name__} instead.")
        if self.backend == "pyradiomics" and not pyradiomics_available():
            raise ImportError(
                f"{name}(backend='pyradiomics') needs pyradiomics: pip install \"lnmkit[radiomics]\" "
                "(installs pyradiomics-bhklab), or use backend='numpy'."
            )
        if self.backend == "auto":
            return "pyradiomics" if pyradiomics_available() else "numpy", aggs
        return self.backend, aggs

    def fit(self, images=None, nodes=None, y=None):
        """Check the parameters and choose the backend (nothing is learned from data).

        Parameters
        ----------
        images, nodes, y : ignored
            Accepted so that ``fit`` can be called like ``transform``.

        Returns
        -------
        self : NodeRadiomics
        """
        self.backend_, self._aggs = self._validate_params()
        return self

    def _check_fitted(self):
        if not hasattr(self, "backend_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; call fit first.")

    # -- per node -----------------------------------------------------------------------------
    def measure(self, image, mask, *, modality="CT", image_path="<image>", mask_path="<mask>"):
        """Measure every labelled node of one image and mask.

        Parameters
        ----------
        image, mask : SimpleITK.Image or str or path-like
            Volume and integer label mask (0 = background), as images or files.
        modality : {"CT", "MRI", "PET", "PET-CT"}, default="CT"
        image_path, mask_path : str, optional
            Names used in errors when images (not files) are given.

        Returns
        -------
        pandas.DataFrame
            One row per label: ``label`` and every per-node feature (see
            :meth:`describe_nodes`).

        Raises
        ------
        RadiologyImageError, ImageGeometryError
            On unreadable files or mismatched grids.
        """
        self._check_fitted()
        image, mask, image_path, mask_path = load_image_and_mask(
            image, mask, image_path, mask_path, resample_mask=self.resample_mask
        )
        modality = canonical_modality(modality, IMAGE_MODALITIES) or modality
        rows = measure_case(
            image, mask, modality=modality, texture_spacing_mm=float(self.texture_spacing_mm),
            bin_width=self.bin_width, n_bins=int(self.n_bins), backend=self.backend_,
        )
        return pd.DataFrame(rows, columns=["label", *NODE_FEATURES])

    def node_features(self, images, nodes=None, *, root=None):
        """Measure every node of every case in the images table.

        Parameters
        ----------
        images : str, path-like, pandas.DataFrame or lnmkit.Cohort
            ``radiology_images.csv`` (patient_id, image_path, mask_path, modality), its
            content, or a cohort whose folder holds it.
        nodes : pandas.DataFrame, optional
            Node table; its ``mask_label`` column names each node's label. Given a
            cohort, its ``radiology_nodes``. When given, every mask label must match a
            node row of the same patient.
        root : str or path-like, optional
            Folder for relative paths of a DataFrame ``images``.

        Returns
        -------
        pandas.DataFrame
            One row per node: patient_id, node_id (``"label<k>"`` without a node
            table), label, modality, image_path, mask_path, then the features.
            ``.attrs["failures"]`` lists failed cases (with ``errors="warn"``) as dicts with
            keys patient_id, image_path, mask_path, error.

        Raises
        ------
        RadiologyImageError
            When a mask holds a label that no node row of its patient carries, or a
            case cannot be read (with ``errors="raise"``).
        """
        self._check_fitted()
        table, nodes, _ = self._inputs(images, nodes, root)
        label_map = _label_map(nodes)
        frames, failures = [], []
        for row in tqdm(table.itertuples(index=False), total=len(table), desc="node radiomics", leave=False):
            try:
                measured = self.measure(
                    row.image_path, row.mask_path, modality=row.modality,
                    image_path=row.image_path, mask_path=row.mask_path,
                )
                measured.insert(0, "node_id", _node_ids(measured["label"], row, label_map))
            except (RadiologyImageError, ValueError) as exc:
                if self.errors == "raise":
                    raise
                warnings.warn(f"NodeRadiomics: case skipped: {exc}", RadiologyWarning, stacklevel=2)
                failures.append({"patient_id": row.patient_id, "image_path": row.image_path,
                                 "mask_path": row.mask_path, "error": str(exc)})
                continue
            for column, value in (("mask_path", row.mask_path), ("image_path", row.image_path),
                                  ("modality", row.modality), ("patient_id", row.patient_id)):
                measured.insert(0, column, value)
            frames.append(measured)
        if nodes is not None:
            _warn_unmatched_nodes(nodes, frames, table)
        columns = ["patient_id", "modality", "image_path", "mask_path", "node_id", "label", *NODE_FEATURES]
        out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
        out = out[columns]
        out.attrs["failures"] = failures
        return out

    # -- per patient --------------------------------------------------------------------------
    def transform(self, images, nodes=None, *, patient_ids=None, root=None):
        """Aggregate node features per patient.

        Parameters
        ----------
        images : str, path-like, pandas.DataFrame or lnmkit.Cohort
            See :meth:`node_features`.
        nodes : pandas.DataFrame, optional
            See :meth:`node_features`.
        patient_ids : array-like, pandas.Index, DataFrame or lnmkit.Cohort, optional
            The full patient list (default: a cohort's clinical index, else the
            patients of the images table, sorted). Patients without a usable case get
            ``{prefix}n_nodes = 0``, NaN features and ``{prefix}missing = 1``.
        root : str or path-like, optional
            See :meth:`node_features`.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``patient_id``; columns :meth:`get_feature_names_out`.
            ``.attrs["failures"]`` as in :meth:`node_features`.
        """
        self._check_fitted()
        table, nodes, cohort_patients = self._inputs(images, nodes, root)
        per_node = self.node_features(table, nodes)
        if patient_ids is None:
            patient_ids = cohort_patients
        if patient_ids is None:
            index = pd.Index(sorted(table["patient_id"].unique()), dtype=object, name="patient_id")
        else:
            index = resolve_patients(patient_ids, owner="NodeRadiomics.transform")
            unknown = sorted(set(table["patient_id"]) - set(index))
            if unknown:
                warnings.warn(
                    f"NodeRadiomics.transform: {len(unknown)} patient(s) of the images table are not in "
                    f"patient_ids and are left out: {unknown[:10]}.",
                    RadiologyWarning, stacklevel=2,
                )
        out = self._aggregate(per_node, index)
        out.attrs["failures"] = per_node.attrs["failures"]
        return out

    def fit_transform(self, images, nodes=None, y=None, *, patient_ids=None, root=None):
        """Fit, then transform (see :meth:`transform`).

        Parameters
        ----------
        images, nodes, patient_ids, root
            See :meth:`transform`.
        y : None
            Ignored.

        Returns
        -------
        pandas.DataFrame
        """
        return self.fit().transform(images, nodes, patient_ids=patient_ids, root=root)

    def get_feature_names_out(self, input_features=None):
        """Return the per-patient output column names.

        Parameters
        ----------
        input_features : None
            Ignored.

        Returns
        -------
        ndarray of str
        """
        _, aggs = self._validate_params() if not hasattr(self, "_aggs") else (None, self._aggs)
        names = [f"{self.prefix}missing", f"{self.prefix}n_nodes"]
        names += [f"{self.prefix}{f}_{a}" for f in NODE_FEATURES for a in aggs]
        return np.asarray(names, dtype=object)

    def describe(self):
        """Return the data dictionary of the per-patient output columns.

        Returns
        -------
        pandas.DataFrame
            Columns ``column``, ``meaning``, ``unit``, ``rule``.
        """
        _, aggs = self._validate_params()
        rows = [
            (f"{self.prefix}missing", "patient has no measured node image", "0/1",
             "1 when no case of the patient was listed or readable"),
            (f"{self.prefix}n_nodes", "segmented nodes measured", "count", "labels > 0 over the patient's masks"),
        ]
        for feature in NODE_FEATURES:
            meaning, unit = FEATURE_INFO[feature]
            for agg in aggs:
                rows.append((f"{self.prefix}{feature}_{agg}", f"{agg} over nodes of: {meaning}", unit,
                             "NaN when the patient has no measured node (or, for SUV, no PET)"))
        return pd.DataFrame(rows, columns=["column", "meaning", "unit", "rule"])

    @staticmethod
    def describe_nodes():
        """Return the data dictionary of the per-node features.

        Returns
        -------
        pandas.DataFrame
            Columns ``feature``, ``meaning``, ``unit``.
        """
        return pd.DataFrame([(k, *v) for k, v in FEATURE_INFO.items()], columns=["feature", "meaning", "unit"])

    # -- internals ----------------------------------------------------------------------------
    def _inputs(self, images, nodes, root):
        cohort_patients = None
        if hasattr(images, "clinical") and hasattr(images, "radiology_nodes"):
            cohort = images
            cohort_patients = cohort.clinical.index
            if nodes is None:
                nodes = cohort.radiology_nodes
            if "radiology_images" in (getattr(cohort, "files", None) or {}):
                images = cohort.radiology_images
            else:
                # Not loaded with the cohort: point at where it should be, so the error names it.
                images = Path(cohort.root or ".") / "radiology_images.csv"
        if isinstance(images, pd.DataFrame) and images.attrs.get("_lnmkit_checked"):
            table = images
        else:
            table = read_images_table(images, root=root)
            table.attrs["_lnmkit_checked"] = True
        modality = canonical_modality(self.modality, IMAGE_MODALITIES) if self.modality else None
        if modality is not None:
            table = table[table["modality"] == modality].reset_index(drop=True)
            table.attrs["_lnmkit_checked"] = True
        elif table["modality"].nunique() > 1:
            raise ValueError(
                f"NodeRadiomics: the images table holds several modalities {sorted(table['modality'].unique())}; "
                "intensities of different modalities cannot be pooled. Pass modality='CT' (and run again with "
                "modality='PET-CT', prefix='rad_img_pet_' for the other)."
            )
        if nodes is not None:
            nodes = validate_nodes(nodes)
        return table, nodes, cohort_patients

    def _aggregate(self, per_node, index):
        out = pd.DataFrame(index=index)
        p = self.prefix
        present = per_node["patient_id"].unique() if len(per_node) else []
        out[f"{p}missing"] = (~index.isin(present)).astype(np.int64)
        g = per_node.groupby("patient_id", sort=False)
        out[f"{p}n_nodes"] = g.size().reindex(index).fillna(0).astype(np.int64).to_numpy() if len(per_node) else 0
        numeric = per_node[list(NODE_FEATURES)].astype(float)
        numeric["patient_id"] = per_node["patient_id"].to_numpy()
        g = numeric.groupby("patient_id", sort=False)
        for agg in self._aggs:
            # min_count=1 keeps an all-NaN sum NaN (e.g. SUV on CT), like max and mean.
            table = g.sum(min_count=1) if agg == "sum" else g.agg(agg)
            for feature in NODE_FEATURES:
                out[f"{p}{feature}_{agg}"] = (
                    table[feature].reindex(index).to_numpy(float) if len(per_node) else np.nan
                )
        return out[list(self.get_feature_names_out())]


def _label_map(nodes):
    """{(patient_id, label): node_id} from the node table's mask_label column."""
    if nodes is None:
        return None
    sub = nodes[nodes["mask_label"].notna()]
    return {(p, int(lab)): n for p, lab, n in zip(sub["patient_id"], sub["mask_label"], sub["node_id"])}


def _node_ids(labels, row, label_map):
    if label_map is None:
        return [f"label{int(lab)}" for lab in labels]
    ids, unknown = [], []
    for lab in labels:
        node_id = label_map.get((row.patient_id, int(lab)))
        ids.append(node_id)
        if node_id is None:
            unknown.append(int(lab))
    if unknown:
        known = sorted(lab for (pid, lab) in label_map if pid == row.patient_id)
        raise RadiologyImageError(
            row.mask_path,
            f"mask label(s) {unknown} of patient {row.patient_id!r} match no node row in radiology_nodes.csv "
            f"(mask_label values of this patient: {known}). Add the node rows with their mask_label, or relabel "
            "the mask.",
        )
    return ids


def _warn_unmatched_nodes(nodes, frames, table):
    measured = {(p, int(lab)) for f in frames for p, lab in zip(f["patient_id"], f["label"])}
    imaged = set(table["patient_id"])
    sub = nodes[nodes["mask_label"].notna() & nodes["patient_id"].isin(imaged)]
    missing = [(p, n, int(lab)) for p, n, lab in zip(sub["patient_id"], sub["node_id"], sub["mask_label"])
               if (p, int(lab)) not in measured]
    if missing:
        shown = ", ".join(f"{p}/{n} (label {lab})" for p, n, lab in missing[:10])
        warnings.warn(
            f"NodeRadiomics: {len(missing)} node row(s) have a mask_label absent from their patient's masks: "
            f"{shown}. Those nodes get no image features.",
            RadiologyWarning, stacklevel=3,
        )
