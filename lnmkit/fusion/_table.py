"""The fusion table: one row per patient, clinical + radiology + slide scores, with provenance."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from lnmkit._io import atomic_path, atomic_write_text
from lnmkit._version import __version__
from lnmkit.exceptions import LeakageError, LeakageWarning, ModelInputError, VersionWarning

__all__ = ["FusionTable", "build_fusion_table", "ORDINAL_CODES"]

#: Ordered clinical meanings become numbers; "cannot be assessed" levels become missing.
ORDINAL_CODES = {
    "ct_stage": {"cT1": 1, "cT1a": 1, "cT1b": 1, "cT2": 2, "cT3": 3, "cT4": 4, "cT4a": 4, "cT4b": 4, "cTX": np.nan},
    "grade": {"G1": 1, "G2": 2, "G3": 3, "G4": 4, "GX": np.nan},
}
_ORDINAL_MEANING = {"ct_stage": "clinical T stage 1-4 (cT1a/b -> 1, cT4a/b -> 4; cTX -> missing)",
                    "grade": "histological grade 1-4 (GX -> missing)"}

_SLIDE_MEANING = {
    "lnm_score": "out-of-fold MIL probability of pN+ from the patient's slides",
    "otc_score": "out-of-fold MIL probability of occult tumour cells (trained on pN0 patients)",
    "risk_score": "out-of-fold MIL log hazard ratio (survival head)",
}
_SCORE_COLUMNS = tuple(_SLIDE_MEANING)
_FORMAT = "lnmkit.fusion.FusionTable"


class FusionTable:
    """One row per patient (indexed by ``patient_id``) with the provenance of every column.

    Build it with :func:`build_fusion_table`; pass it to :func:`lnmkit.models.nested_cv`,
    :func:`lnmkit.models.compare_models` or any estimator (it behaves as its
    ``frame`` there).

    Parameters
    ----------
    frame : pandas.DataFrame
    provenance : dict column -> {"clinical", "radiology", "slide", "extra"}
    indicators : list of str
        Missing-modality indicator columns (0/1).
    dictionary : pandas.DataFrame
        Data dictionary (``column``, ``source``, ``meaning``, ``unit``, ``type``, ``levels``).
    slide_source : str or None
        ``"crossfit"``, ``"nested"`` (final scores of a nested cross-fit), ``"in-sample"``
        (accepted on request, leaky) or None.
    outcomes : pandas.DataFrame, optional
        The cohort's outcomes (not part of the features).
    """

    def __init__(self, frame, provenance, indicators=(), dictionary=None, slide_source=None, outcomes=None):
        self.frame = frame
        self.provenance = dict(provenance)
        self.indicators = list(indicators)
        self.dictionary = dictionary if dictionary is not None else pd.DataFrame(
            {"column": list(frame.columns), "source": [self.provenance.get(c) for c in frame.columns]})
        self.slide_source = slide_source
        self.outcomes = outcomes

    # -- views --------------------------------------------------------------------
    @property
    def index(self):
        """The patients (``patient_id``)."""
        return self.frame.index

    @property
    def columns(self):
        """Column names."""
        return self.frame.columns

    @property
    def shape(self):
        """(patients, columns)."""
        return self.frame.shape

    def __len__(self):
        return len(self.frame)

    def __getitem__(self, key):
        return self.frame[key]

    def modality_columns(self, modality):
        """Columns of one modality (``"clinical"``, ``"radiology"``, ``"slide"``, ``"extra"``), in order."""
        return [c for c in self.frame.columns if self.provenance.get(c) == modality]

    def lnm_labels(self):
        """pN status as 0/1 (NaN when unknown), indexed by patient_id.

        Raises
        ------
        ModelInputError
            If the table was built without outcomes.
        """
        if self.outcomes is None or "pn_status" not in self.outcomes:
            raise ModelInputError("FusionTable.lnm_labels: the table holds no outcomes with pn_status; build it "
                                  "from a Cohort with outcomes.csv.")
        s = self.outcomes["pn_status"].reindex(self.frame.index).astype(object)
        return s.map({"pN+": 1.0, "pN0": 0.0, 1: 1.0, 0: 0.0, "1": 1.0, "0": 0.0}).astype(float).rename("pn_positive")

    def describe(self):
        """The data dictionary: one row per column with source, meaning, unit, type and levels."""
        return self.dictionary.copy()

    def __repr__(self):
        counts = ", ".join(f"{m} {len(self.modality_columns(m))}" for m in ("clinical", "radiology", "slide", "extra")
                           if self.modality_columns(m))
        src = f", slide scores {self.slide_source}" if self.slide_source else ""
        return f"<FusionTable: {len(self.frame)} patients, {self.frame.shape[1]} columns ({counts}){src}>"

    def _repr_html_(self):
        return (f"<p><code>{self!r}</code></p>" + self.frame.head(10).to_html(float_format="%.3f")
                + "<p>Data dictionary</p>" + self.dictionary.to_html(index=False))

    # -- persistence ----------------------------------------------------------------
    def save(self, path):
        """Write ``<path>`` (CSV, one row per patient) and ``<path>.json`` (dtypes, levels, provenance).

        Parameters
        ----------
        path : str or path-like
            The CSV file; the JSON sidecar is written next to it.

        Returns
        -------
        pathlib.Path
            The CSV path.
        """
        path = Path(path)
        with atomic_path(path) as tmp:
            self.frame.to_csv(tmp)
        dtypes = {}
        for c in self.frame.columns:
            s = self.frame[c]
            if isinstance(s.dtype, pd.CategoricalDtype):
                dtypes[c] = {"kind": "category", "levels": [str(v) for v in s.cat.categories],
                             "ordered": bool(s.cat.ordered)}
            else:
                dtypes[c] = {"kind": str(s.dtype)}
        meta = {"format": _FORMAT, "lnmkit_version": __version__, "columns": list(self.frame.columns),
                "dtypes": dtypes, "provenance": self.provenance, "indicators": self.indicators,
                "slide_source": self.slide_source, "dictionary": self.dictionary.to_dict(orient="records")}
        atomic_write_text(_sidecar(path), json.dumps(meta, indent=1, default=str))
        return path

    @classmethod
    def load(cls, path):
        """Read a table written by :meth:`save` with every dtype restored.

        Warns
        -----
        VersionWarning
            If another lnmkit version wrote it.
        """
        path = Path(path)
        side = _sidecar(path)
        if not side.is_file():
            raise FileNotFoundError(f"FusionTable.load: {side} not found; it is written next to the CSV by save().")
        meta = json.loads(side.read_text(encoding="utf-8"))
        if meta.get("format") != _FORMAT:
            raise ValueError(f"FusionTable.load: {side} is not a fusion-table description.")
        if meta.get("lnmkit_version") != __version__:
            warnings.warn(f"FusionTable.load: {side} was written by lnmkit {meta.get('lnmkit_version')!r}; this "
                          f"is lnmkit {__version__}.", VersionWarning, stacklevel=2)
        raw = pd.read_csv(path, dtype={"patient_id": str}, keep_default_na=True).set_index("patient_id")
        out = {}
        for c in meta["columns"]:
            d = meta["dtypes"][c]
            s = raw[c]
            if d["kind"] == "category":
                out[c] = pd.Categorical(s.astype(object).where(s.notna(), None).map(
                    lambda v: None if v is None else str(v)), categories=d["levels"], ordered=d["ordered"])
            else:
                out[c] = s.astype(d["kind"])
        frame = pd.DataFrame(out, index=raw.index)
        return cls(frame, meta["provenance"], meta["indicators"], pd.DataFrame(meta["dictionary"]),
                   meta.get("slide_source"))


def _sidecar(path):
    return Path(str(path) + ".json")


def _encode_clinical(clinical, schema_columns):
    """Encoded clinical columns and their dictionary rows."""
    out, rows = {}, []
    for col in clinical.columns:
        s = clinical[col]
        spec = schema_columns.get(col)
        if col in ORDINAL_CODES:
            codes = ORDINAL_CODES[col]
            values = s.astype(object).map(lambda v: codes.get(str(v), np.nan) if pd.notna(v) else np.nan)
            unknown = s[s.notna() & ~s.astype(object).astype(str).isin(codes)]
            if len(unknown):
                raise ModelInputError(f"build_fusion_table: column {col!r} of clinical.csv has level "
                                      f"{unknown.iloc[0]!r} for patient_id {unknown.index[0]!r}; expected one of "
                                      f"{sorted(codes)}.")
            out[col] = values.astype(float)
            rows.append((col, "clinical", _ORDINAL_MEANING[col], "", "ordinal (numeric)", ""))
            continue
        if spec is not None and "enum" in spec and spec.get("type") == "string":
            levels = [str(v) for v in spec["enum"]]
            out[col] = pd.Categorical(s.astype(object).where(s.notna(), None), categories=levels)
            rows.append((col, "clinical", spec.get("description", ""), "", "categorical",
                         f"{levels[0]} (reference), " + ", ".join(levels[1:])))
            continue
        if spec is not None:
            out[col] = pd.to_numeric(s, errors="coerce").astype(float)
            rows.append((col, "clinical", spec.get("description", ""), spec.get("x-unit", ""), "numeric", ""))
            continue
        enc, kind, levels = _infer(s)
        out[col] = enc
        rows.append((col, "clinical", "column not in the schema (kept with its inferred type)", "", kind, levels))
    return pd.DataFrame(out, index=clinical.index), rows


def _infer(s):
    """A user column with its inferred type: numeric when every value is a number, else categorical."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s, "categorical", ", ".join(map(str, s.cat.categories))
    num = pd.to_numeric(s, errors="coerce")
    if (num.notna() == s.notna()).all():
        return num.astype(float), "numeric", ""
    levels = sorted(s.dropna().astype(str).unique())
    return pd.Categorical(s.astype(object).where(s.notna(), None).map(lambda v: None if v is None else str(v)),
                          categories=levels), "categorical", ", ".join(levels)


def _slide_scores(slide, allow_in_sample):
    """(scores DataFrame, source, dictionary rows) from the ``slide`` argument."""
    from lnmkit.models._stacking import NestedFeatures

    if isinstance(slide, NestedFeatures):
        scores = slide.final.copy()
        scores.columns = [c if c.startswith("slide_") else f"slide_{c}" for c in scores.columns]
        source = "nested"
    elif hasattr(slide, "oof") and hasattr(slide, "models"):  # a CrossFitResult
        scores = slide.oof[[c for c in _SCORE_COLUMNS if c in slide.oof.columns]].add_prefix("slide_")
        source = "crossfit"
    elif isinstance(slide, pd.DataFrame):
        emb = [c for c in slide.columns if str(c).startswith(("emb_", "slide_emb_"))]
        if emb:
            raise ModelInputError(
                f"build_fusion_table: slide columns {emb[:3]}... are MIL embeddings; each fold network has its "
                f"own embedding basis, so they are not comparable across patients of different folds. Pass only "
                f"score columns ({list(_SCORE_COLUMNS)}).")
        cols = [c for c in slide.columns if c != "fold"]
        scores = slide[cols].rename(columns=lambda c: c if str(c).startswith("slide_") else f"slide_{c}")
        if "fold" in slide.columns:
            source = "crossfit"
        elif allow_in_sample:
            warnings.warn("build_fusion_table: slide scores without a 'fold' column have no out-of-fold "
                          "provenance; accepted because allow_in_sample=True. Any model evaluated on them is "
                          "optimistic.", LeakageWarning, stacklevel=3)
            source = "in-sample"
        else:
            raise LeakageError(
                "build_fusion_table: slide scores given as a DataFrame without a 'fold' column have no "
                "out-of-fold provenance (a model may have seen the patient it scored). Pass the CrossFitResult of "
                "lnmkit.mil.cross_fit, the NestedFeatures of lnmkit.fusion.nested_cross_fit, or the oof table "
                "with its 'fold' column; allow_in_sample=True accepts them, flagged as leaky.")
    else:
        raise TypeError(f"build_fusion_table: slide must be a CrossFitResult, NestedFeatures or DataFrame; got "
                        f"{type(slide).__name__} instead.")
    scores = scores.copy()
    scores.index = scores.index.astype(str)
    rows = [(c, "slide", _SLIDE_MEANING.get(c.removeprefix("slide_"), "slide score") +
             ("" if source != "in-sample" else " (IN-SAMPLE: not out-of-fold)"), "", "numeric", "")
            for c in scores.columns]
    return scores.astype(float), source, rows


def build_fusion_table(cohort, slide=None, radiology=None, extra=None, *, allow_in_sample=False):
    """One row per patient: encoded clinical columns, radiology features, slide scores.

    Clinical columns are encoded from the schema (``data_schemas/clinical.json``),
    never from the levels present in the data: ordered meanings become numbers
    (``ct_stage`` -> 1-4 with ``cTX`` missing; ``grade`` -> 1-4 with ``GX``
    missing), nominal ones are categoricals with every schema level, the first
    being the reference; 0/1 and numeric columns are floats. Columns the schema
    does not know keep their inferred type (numeric when every value is a number).

    Parameters
    ----------
    cohort : lnmkit.Cohort
        Supplies ``clinical`` (every patient is a row) and ``outcomes``.
    slide : CrossFitResult, NestedFeatures or pandas.DataFrame, optional
        Out-of-fold MIL scores (``lnm_score``, ``otc_score``, ``risk_score``; never
        ``emb_*``), written as ``slide_<score>``. A DataFrame needs its ``fold``
        column as proof of out-of-fold provenance.
    radiology : pandas.DataFrame, lnmkit.radiology.NodeFeatures or True, optional
        Patient-level radiology features (``rad_*``); an estimator (or True, for
        ``NodeFeatures("gastric")``) is applied to the cohort's node table.
        ``rad_n_category`` is left out (``rad_n_category_code`` holds the same
        ordered meaning as a number).
    extra : pandas.DataFrame, optional
        More columns indexed by patient_id (provenance ``extra``), inferred types.
    allow_in_sample : bool, default=False
        Accept slide scores without out-of-fold provenance (flagged, LeakageWarning).

    Returns
    -------
    FusionTable

    Raises
    ------
    LeakageError
        Slide scores without out-of-fold provenance.
    ModelInputError
        Embedding columns as slide scores, a level outside the schema.

    Examples
    --------
    >>> from lnmkit.fusion import build_fusion_table  # doctest: +SKIP
    >>> table = build_fusion_table(cohort, slide=crossfit_result, radiology=True)  # doctest: +SKIP
    >>> table.describe()  # doctest: +SKIP
    """
    from lnmkit.cohort import load_schemas

    clinical = cohort.clinical.copy()
    clinical.index = clinical.index.astype(str)
    schema = load_schemas()["clinical"].columns
    frame, rows = _encode_clinical(clinical, schema)
    provenance = {c: "clinical" for c in frame.columns}
    indicators = []
    parts = [frame]
    if radiology is not None:
        if radiology is True:
            from lnmkit.radiology import NodeFeatures

            radiology = NodeFeatures("gastric")
        described = None
        if hasattr(radiology, "fit_transform"):
            described = radiology.describe()
            radiology = radiology.fit_transform(cohort)
        rad = radiology.copy()
        rad.index = rad.index.astype(str)
        rad = rad.drop(columns=[c for c in ("rad_n_category",) if c in rad.columns])
        rad = rad.reindex(frame.index)
        indicator = "rad_radiology_missing" if "rad_radiology_missing" in rad.columns else "rad_missing"
        if indicator == "rad_missing":
            rad[indicator] = rad.isna().all(axis=1).astype(float)
        rad[indicator] = rad[indicator].fillna(1.0).astype(float)
        meanings = {} if described is None else described.set_index("column").to_dict(orient="index")
        for c in rad.columns:
            m = meanings.get(c, {})
            if not isinstance(rad[c].dtype, pd.CategoricalDtype):
                rad[c] = pd.to_numeric(rad[c], errors="coerce").astype(float)
            rows.append((c, "radiology", m.get("meaning", "radiology patient feature"), m.get("unit", ""),
                         "indicator (0/1)" if c == indicator else "numeric", ""))
            provenance[c] = "radiology"
        indicators.append(indicator)
        parts.append(rad)
    slide_source = None
    if slide is not None:
        scores, slide_source, srows = _slide_scores(slide, allow_in_sample)
        unknown = scores.index.difference(frame.index)
        if len(unknown):
            raise ModelInputError(f"build_fusion_table: slide scores name patient(s) not in clinical.csv: "
                                  f"{unknown[:5].tolist()}.")
        scores = scores.reindex(frame.index)
        scores["slide_missing"] = scores.isna().all(axis=1).astype(float)
        srows.append(("slide_missing", "slide", "patient has no slide score (no usable slide)", "0/1",
                      "indicator (0/1)", ""))
        for c in scores.columns:
            provenance[c] = "slide"
        indicators.append("slide_missing")
        rows += srows
        parts.append(scores)
    if extra is not None:
        ex = extra.copy()
        ex.index = ex.index.astype(str)
        clash = [c for c in ex.columns if any(c in p.columns for p in parts)]
        if clash:
            raise ModelInputError(f"build_fusion_table: extra column(s) {clash} already exist in the table.")
        ex = ex.reindex(frame.index)
        for c in ex.columns:
            ex[c], kind, levels = _infer(ex[c])
            provenance[c] = "extra"
            rows.append((c, "extra", "user column", "", kind, levels))
        parts.append(ex)
    table = pd.concat(parts, axis=1)
    table.index.name = "patient_id"
    dictionary = pd.DataFrame(rows, columns=["column", "source", "meaning", "unit", "type", "levels"])
    outcomes = getattr(cohort, "outcomes", None)
    return FusionTable(table, provenance, indicators, dictionary, slide_source, outcomes)
