"""Patient-level lymph-node features from a radiology node table."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from lnmkit._validation import check_non_negative
from lnmkit.exceptions import NodeTableError, NotFittedError, RadiologyWarning
from lnmkit.radiology._node_table import NODE_MODALITIES, canonical_modality, normalize_patient_id, validate_nodes
from lnmkit.radiology._rules import (
    CANCER_TYPES,
    SUSPICIOUS_FEATURES,
    resolve_n_category,
    resolve_size_criteria,
)

__all__ = ["NodeFeatures", "resolve_patients"]

_COUNT_COLUMNS = (
    "rad_n_nodes", "rad_n_stations", "rad_n_size_positive", "rad_n_size_missing", "rad_n_suv_positive",
    "rad_n_suspicious", "rad_n_stations_suspicious",
)
_MEASURE_COLUMNS = (
    "rad_short_axis_max_mm", "rad_short_axis_mean_mm", "rad_long_axis_max_mm", "rad_axis_ratio_max",
    "rad_suv_max",
)
_FLAG_COLUMNS = (
    "rad_any_necrosis", "rad_any_irregular_margin", "rad_any_lost_hilum", "rad_any_heterogeneous_enhancement",
)


def resolve_patients(patient_ids, owner="NodeFeatures.transform"):
    """Return the patient list as a pandas Index of str named ``patient_id``.

    Parameters
    ----------
    patient_ids : array-like, pandas.Index, pandas.DataFrame, pandas.Series or lnmkit.Cohort
        A DataFrame or Series gives its index; a Cohort gives ``cohort.clinical.index``.
    owner : str, default="NodeFeatures.transform"
        Name used in error messages.

    Returns
    -------
    pandas.Index

    Raises
    ------
    ValueError
        If an identifier is empty or appears twice.
    """
    if hasattr(patient_ids, "clinical") and hasattr(patient_ids, "radiology_nodes"):
        patient_ids = patient_ids.clinical.index
    elif isinstance(patient_ids, (pd.DataFrame, pd.Series)):
        patient_ids = patient_ids.index
    elif isinstance(patient_ids, str):
        raise TypeError(f"{owner}: patient_ids must be a list of identifiers, not the single string {patient_ids!r}.")
    ids = [normalize_patient_id(v) for v in patient_ids]
    if any(v is None for v in ids):
        raise ValueError(f"{owner}: patient_ids contains an empty identifier at position {ids.index(None)}.")
    index = pd.Index(ids, dtype=object, name="patient_id")
    if index.has_duplicates:
        dup = index[index.duplicated()].unique().tolist()[:10]
        raise ValueError(f"{owner}: patient_ids must be unique; duplicated: {dup}.")
    return index


class NodeFeatures(TransformerMixin, BaseEstimator):
    """Turn a radiology node table (one row per node) into one row of features per patient.

    Each node is classified by documented rules (size criterion per station, SUV
    threshold, suspicious morphology) and the nodes of each patient are counted and
    summarised. Every output column is explained by :meth:`describe`.

    Parameters
    ----------
    cancer : {"gastric", "general"}, default="gastric"
        Sets the default size criterion and N-category cut-offs (see
        ``lnmkit.radiology.SIZE_PRESETS`` and ``N_CATEGORY_PRESETS``).
    size_criteria : None, str, float or dict, default=None
        Short-axis cut-off in mm for a node to count as enlarged (``>=``). ``None``
        uses the preset of ``cancer`` (gastric: 8 mm; general: 10 mm); a preset name
        (``"gastric"``, ``"gastric_perigastric"`` = 5 mm at JGCA stations 1-6 and 8 mm
        elsewhere, ``"general"``); one number for every station; or
        ``{station: mm, "default": mm}``.
    suv_threshold : float, default=2.5
        A node is SUV-positive when ``suv_max > suv_threshold``.
    n_category_thresholds : None, str or dict, default=None
        ``{label: minimum number of suspicious nodes}``; ``None`` uses the preset of
        ``cancer`` (gastric, AJCC 8th: cN0 0, cN1 1-2, cN2 3-6, cN3 >= 7).
    suspicious_features : tuple of str, default=("necrosis", "irregular_margin", "lost_hilum")
        Findings that make a node suspicious even below the size cut-off; any of
        ``"necrosis"``, ``"irregular_margin"``, ``"lost_hilum"``,
        ``"heterogeneous_enhancement"``, ``"suv"`` (SUV-positive). A node is suspicious
        when it meets the size criterion OR has one of these findings.
    modalities : tuple of str or None, default=None
        Keep only nodes reported on these modalities (e.g. ``("CT",)`` when the same
        nodes are also reported on PET-CT); ``None`` keeps all.
    absent_as_n0 : bool, default=False
        Give patients without node rows the lowest N category instead of NaN. Their
        ``rad_radiology_missing`` indicator stays 1 either way.
    include_categorical : bool, default=True
        Add the ordered categorical ``rad_n_category``; set False for a purely
        numeric output (e.g. inside a pipeline with an imputer).

    Attributes
    ----------
    size_criteria_ : lnmkit.radiology.SizeCriteria
        The resolved size rule.
    n_category_rule_ : lnmkit.radiology.NCategoryRule
        The resolved N-category rule.
    suv_threshold_ : float
        The SUV threshold.
    suspicious_features_ : tuple of str
        The findings that make a node suspicious besides its size.
    modalities_ : tuple of str or None
        The modalities kept (canonical spelling), None for all.
    feature_names_in_ : ndarray of str
        Columns of the node table seen in ``fit``.
    n_features_in_ : int
        Number of those columns.

    Examples
    --------
    >>> import pandas as pd
    >>> from lnmkit.radiology import NodeFeatures
    >>> nodes = pd.DataFrame({"patient_id": ["P1", "P1"], "node_id": ["a", "b"],
    ...                       "modality": "CT", "station": ["4sb", "7"], "short_axis_mm": [9.0, 4.0]})
    >>> X = NodeFeatures().fit_transform(nodes, patient_ids=["P1", "P2"])
    >>> X["rad_n_nodes"].tolist(), X["rad_radiology_missing"].tolist()
    ([2, 0], [0, 1])
    >>> X["rad_n_category"].tolist()
    ['cN1', nan]
    """

    def __init__(
        self,
        cancer="gastric",
        *,
        size_criteria=None,
        suv_threshold=2.5,
        n_category_thresholds=None,
        suspicious_features=("necrosis", "irregular_margin", "lost_hilum"),
        modalities=None,
        absent_as_n0=False,
        include_categorical=True,
    ):
        self.cancer = cancer
        self.size_criteria = size_criteria
        self.suv_threshold = suv_threshold
        self.n_category_thresholds = n_category_thresholds
        self.suspicious_features = suspicious_features
        self.modalities = modalities
        self.absent_as_n0 = absent_as_n0
        self.include_categorical = include_categorical

    # -- parameters ---------------------------------------------------------------------------
    def _resolve(self):
        name = type(self).__name__
        if self.cancer not in CANCER_TYPES:
            raise ValueError(f"{name}: cancer must be one of {list(CANCER_TYPES)}; got {self.cancer!r} instead.")
        size = resolve_size_criteria(self.size_criteria, self.cancer, owner=name)
        rule = resolve_n_category(self.n_category_thresholds, self.cancer, owner=name)
        thr = check_non_negative(self.suv_threshold, "suv_threshold", name)
        feats = self.suspicious_features
        if isinstance(feats, str) or feats is None:
            feats = () if feats is None else (feats,)
        unknown = [f for f in feats if f not in SUSPICIOUS_FEATURES]
        if unknown:
            raise ValueError(
                f"{name}: suspicious_features must be a subset of {list(SUSPICIOUS_FEATURES)}; "
                f"got unknown {unknown} instead."
            )
        modalities = None
        if self.modalities is not None:
            given = (self.modalities,) if isinstance(self.modalities, str) else tuple(self.modalities)
            modalities = tuple(canonical_modality(m) for m in given)
            if not given or None in modalities:
                raise ValueError(
                    f"{name}: modalities must be None or a non-empty subset of {list(NODE_MODALITIES)}; "
                    f"got {self.modalities!r} instead."
                )
        return size, rule, float(thr), tuple(feats), modalities

    # -- sklearn API --------------------------------------------------------------------------
    def fit(self, nodes, y=None, **fit_params):
        """Check the parameters and the node table.

        The rules are fixed by the parameters; nothing is estimated from the data,
        so the same fitted object can transform any cohort.

        Parameters
        ----------
        nodes : pandas.DataFrame or lnmkit.Cohort
            Node table (``radiology_nodes.csv`` columns), or a cohort.
        y : None
            Ignored.
        **fit_params : dict
            Ignored (accepts ``patient_ids`` so that pipelines can route it).

        Returns
        -------
        self : NodeFeatures
        """
        nodes, _ = _split_input(nodes)
        (self.size_criteria_, self.n_category_rule_, self.suv_threshold_, self.suspicious_features_,
         self.modalities_) = self._resolve()
        validate_nodes(nodes)
        self.feature_names_in_ = np.asarray([str(c) for c in nodes.columns], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def transform(self, nodes, patient_ids=None):
        """Compute one row of features per patient.

        Parameters
        ----------
        nodes : pandas.DataFrame or lnmkit.Cohort
            Node table, or a cohort (its ``radiology_nodes``; its clinical index is the
            patient list unless ``patient_ids`` is given).
        patient_ids : array-like, pandas.Index, DataFrame, Series or lnmkit.Cohort, optional
            The full patient list, in output order. Patients without node rows get
            zero counts, NaN measurements and ``rad_radiology_missing = 1``. Default:
            the patients of the node table, sorted.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``patient_id``; columns :meth:`get_feature_names_out`.

        Raises
        ------
        NotFittedError
            If called before ``fit``.
        NodeTableError
            If the node table is invalid.
        """
        self._check_fitted()
        nodes, cohort_patients = _split_input(nodes)
        table = validate_nodes(nodes)
        if self.modalities_ is not None:
            table = table[table["modality"].isin(self.modalities_)].reset_index(drop=True)
        if patient_ids is None:
            patient_ids = cohort_patients
        if patient_ids is None:
            index = pd.Index(sorted(table["patient_id"].unique()), dtype=object, name="patient_id")
        else:
            index = resolve_patients(patient_ids)
            unknown = table.loc[~table["patient_id"].isin(index), "patient_id"].unique()
            if len(unknown):
                warnings.warn(
                    f"NodeFeatures.transform: {len(unknown)} patient(s) of the node table are not in "
                    f"patient_ids and are left out: {sorted(unknown)[:10]}. Check the patient identifiers.",
                    RadiologyWarning,
                    stacklevel=2,
                )
                table = table[table["patient_id"].isin(index)].reset_index(drop=True)
        return self._features_frame(table, index)

    def fit_transform(self, nodes, y=None, patient_ids=None, **fit_params):
        """Fit, then transform.

        Parameters
        ----------
        nodes : pandas.DataFrame or lnmkit.Cohort
            See :meth:`transform`.
        y : None
            Ignored.
        patient_ids : array-like, optional
            See :meth:`transform`.
        **fit_params : dict
            Ignored.

        Returns
        -------
        pandas.DataFrame
        """
        return self.fit(nodes).transform(nodes, patient_ids=patient_ids)

    def get_feature_names_out(self, input_features=None):
        """Return the output column names.

        Parameters
        ----------
        input_features : None
            Ignored (the output does not depend on the input columns).

        Returns
        -------
        ndarray of str
        """
        names = ["rad_radiology_missing", *_COUNT_COLUMNS, *_MEASURE_COLUMNS, *_FLAG_COLUMNS]
        if self.include_categorical:
            names.append("rad_n_category")
        names.append("rad_n_category_code")
        return np.asarray(names, dtype=object)

    def describe(self):
        """Return the data dictionary of the output columns.

        Works before ``fit`` too (the rules come from the parameters).

        Returns
        -------
        pandas.DataFrame
            Columns ``column``, ``meaning``, ``unit``, ``rule``; one row per output column,
            in output order.
        """
        size, rule, suv, feats, modalities = self._resolve()
        susp = "meets the size criterion" + "".join(f" OR {_FEATURE_WORDS[f].format(suv=suv)}" for f in feats)
        kept = f"nodes on {', '.join(modalities)} only" if modalities else "nodes on every modality"
        absent = "lowest category" if self.absent_as_n0 else "NaN"
        rows = [
            ("rad_radiology_missing", "patient has no node row (after the modality filter)", "0/1",
             f"1 when the node table has no row for the patient; {kept}"),
            ("rad_n_nodes", "nodes reported", "count", f"rows of the patient; {kept}"),
            ("rad_n_stations", "distinct stations with any node", "count", "unknown stations not counted"),
            ("rad_n_size_positive", "nodes meeting the size criterion", "count", size.describe()),
            ("rad_n_size_missing", "nodes with unknown short axis", "count", "short_axis_mm empty"),
            ("rad_n_suv_positive", "nodes with SUVmax above the threshold", "count",
             f"suv_max > {suv:g}; empty suv_max never counts"),
            ("rad_n_suspicious", "suspicious nodes", "count",
             f"node {susp}; unknown findings count as absent"),
            ("rad_n_stations_suspicious", "distinct stations with a suspicious node", "count",
             "unknown stations not counted"),
            ("rad_short_axis_max_mm", "largest short axis", "mm", "max over nodes with a short axis; NaN if none"),
            ("rad_short_axis_mean_mm", "mean short axis", "mm", "mean over nodes with a short axis; NaN if none"),
            ("rad_long_axis_max_mm", "largest long axis", "mm", "max over nodes with a long axis; NaN if none"),
            ("rad_axis_ratio_max", "roundest node: max short/long axis ratio", "ratio (0-1]",
             "max over nodes with both axes; NaN if none"),
            ("rad_suv_max", "highest SUVmax", "SUV", "max over nodes with suv_max; NaN if none"),
            ("rad_any_necrosis", "any node with necrosis", "0/1",
             "1 if any node has necrosis = 1; 0 if assessed in some node and never present; NaN if never assessed"),
            ("rad_any_irregular_margin", "any node with an irregular margin", "0/1",
             "as rad_any_necrosis, from irregular_margin"),
            ("rad_any_lost_hilum", "any node with a lost fatty hilum", "0/1",
             "as rad_any_necrosis, from fatty_hilum = 0"),
            ("rad_any_heterogeneous_enhancement", "any node with heterogeneous enhancement", "0/1",
             "as rad_any_necrosis, from enhancement = heterogeneous"),
        ]
        if self.include_categorical:
            rows.append(("rad_n_category", "clinical N category (ordered categorical)", "category",
                         f"{rule.describe()}; patients without node rows: {absent}"))
        rows.append(("rad_n_category_code", "clinical N category as an integer code", "code",
                     f"index in {list(rule.labels)} (0 = {rule.labels[0]}); float so that NaN can mark "
                     f"patients without node rows ({absent})"))
        table = pd.DataFrame(rows, columns=["column", "meaning", "unit", "rule"])
        return table

    # -- internals ----------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "size_criteria_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit (or fit_transform) first."
            )

    def _node_flags(self, table):
        thresholds = np.array([self.size_criteria_.threshold_for(s) for s in table["station"]], dtype=float)
        short = table["short_axis_mm"].to_numpy(float)
        with np.errstate(invalid="ignore"):
            size_pos = short >= thresholds  # NaN compares False: unknown size never meets the criterion
            suv_pos = table["suv_max"].to_numpy(float) > self.suv_threshold_
        findings = {
            "necrosis": table["necrosis"].to_numpy(float) == 1,
            "irregular_margin": table["irregular_margin"].to_numpy(float) == 1,
            "lost_hilum": table["fatty_hilum"].to_numpy(float) == 0,
            "heterogeneous_enhancement": (table["enhancement"] == "heterogeneous").to_numpy(),
            "suv": suv_pos,
        }
        suspicious = size_pos.copy()
        for f in self.suspicious_features_:
            suspicious |= findings[f]
        return size_pos, suv_pos, suspicious

    def _features_frame(self, table, index):
        size_pos, suv_pos, suspicious = self._node_flags(table)
        short = table["short_axis_mm"].to_numpy(float)
        long_ = table["long_axis_mm"].to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(long_ > 0, short / long_, np.nan)
        work = pd.DataFrame({
            "patient_id": table["patient_id"].to_numpy(object),
            "station": table["station"].to_numpy(object),
            "size_pos": size_pos, "size_missing": np.isnan(short), "suv_pos": suv_pos,
            "suspicious": suspicious, "short": short, "long": long_, "ratio": ratio,
            "suv": table["suv_max"].to_numpy(float),
            "necrosis": table["necrosis"].to_numpy(float),
            "irregular": table["irregular_margin"].to_numpy(float),
            "lost_hilum": 1.0 - table["fatty_hilum"].to_numpy(float),
            "heterogeneous": table["enhancement"].map(
                {"heterogeneous": 1.0, "homogeneous": 0.0}).astype(float).to_numpy(),
        })
        work["susp_station"] = work["station"].where(work["suspicious"])
        g = work.groupby("patient_id", sort=False)
        out = pd.DataFrame(index=index)
        out["rad_radiology_missing"] = (~index.isin(work["patient_id"].unique())).astype(np.int64)
        counts = {
            "rad_n_nodes": g.size(),
            "rad_n_stations": g["station"].nunique(dropna=True),
            "rad_n_size_positive": g["size_pos"].sum(),
            "rad_n_size_missing": g["size_missing"].sum(),
            "rad_n_suv_positive": g["suv_pos"].sum(),
            "rad_n_suspicious": g["suspicious"].sum(),
            "rad_n_stations_suspicious": g["susp_station"].nunique(dropna=True),
        }
        for name, series in counts.items():
            out[name] = series.reindex(index).fillna(0).astype(np.int64).to_numpy()
        # pandas' max/mean skip NaN and give NaN for an all-NaN group: the documented rule.
        measures = {
            "rad_short_axis_max_mm": g["short"].max(), "rad_short_axis_mean_mm": g["short"].mean(),
            "rad_long_axis_max_mm": g["long"].max(), "rad_axis_ratio_max": g["ratio"].max(),
            "rad_suv_max": g["suv"].max(),
            "rad_any_necrosis": g["necrosis"].max(), "rad_any_irregular_margin": g["irregular"].max(),
            "rad_any_lost_hilum": g["lost_hilum"].max(),
            "rad_any_heterogeneous_enhancement": g["heterogeneous"].max(),
        }
        for name, series in measures.items():
            out[name] = series.reindex(index).astype(float).to_numpy()
        rule = self.n_category_rule_
        codes = np.array([rule.code(int(n)) for n in out["rad_n_suspicious"]], dtype=float)
        if not self.absent_as_n0:
            codes[out["rad_radiology_missing"].to_numpy() == 1] = np.nan
        if self.include_categorical:
            labels = np.array(rule.labels, dtype=object)
            values = [labels[int(c)] if np.isfinite(c) else np.nan for c in codes]
            out["rad_n_category"] = pd.Categorical(values, categories=list(rule.labels), ordered=True)
        out["rad_n_category_code"] = codes
        return out


_FEATURE_WORDS = {
    "necrosis": "necrosis = 1",
    "irregular_margin": "irregular_margin = 1",
    "lost_hilum": "fatty_hilum = 0 (lost hilum)",
    "heterogeneous_enhancement": "enhancement = heterogeneous",
    "suv": "suv_max > {suv:g}",
}


def _split_input(nodes):
    """Accept a node DataFrame or a Cohort; return (node table, cohort patients or None)."""
    if hasattr(nodes, "radiology_nodes") and hasattr(nodes, "clinical"):
        table = nodes.radiology_nodes
        if table is None:
            raise NodeTableError([f"cohort at {getattr(nodes, 'root', '?')} has no radiology_nodes.csv"])
        return table, nodes.clinical.index
    return nodes, None
