"""The validated multimodal cohort analysts work with."""

from __future__ import annotations

import html
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from lnmkit.cohort._frames import empty_frame, to_frame
from lnmkit.cohort._problem import Problem, has_errors
from lnmkit.cohort._schemas import load_schemas
from lnmkit.cohort._validate import folder_problem, standard_files, validate_files
from lnmkit.exceptions import CohortValidationError, CohortValidationWarning

__all__ = ["Cohort"]


class Cohort:
    """Clinical, outcome, radiology and slide tables of one cohort, validated.

    Build one with :meth:`from_dir` or :meth:`from_files`; both check every table
    against its schema in ``data_schemas/`` and the tables against each other, and
    raise one :class:`~lnmkit.exceptions.CohortValidationError` listing every
    error. Warnings do not stop loading; they are kept in :attr:`problems`.

    Parameters
    ----------
    tables : dict of str to pandas.DataFrame
        Table name to DataFrame, as :func:`lnmkit.cohort._frames.to_frame` makes
        them. Absent tables are represented by empty, typed frames.
    root : str or path-like, optional
        Cohort folder.
    files : dict of str to pathlib.Path, optional
        The CSV file each table was read from.
    problems : list of Problem, optional
        Warnings found when loading.

    Attributes
    ----------
    clinical : pandas.DataFrame
        One row per patient, indexed by ``patient_id`` (text).
    outcomes : pandas.DataFrame
        One row per patient with a known outcome, indexed by ``patient_id``.
    radiology_nodes : pandas.DataFrame
        One row per imaged node; ``patient_id`` is a column.
    slides : pandas.DataFrame
        One row per slide, indexed by ``slide_id``; ``path`` is absolute.
    radiology_images : pandas.DataFrame
        One row per radiology image (when that table has a schema).
    root : pathlib.Path or None
        The cohort folder.
    files : dict of str to pathlib.Path
        Which CSV file each loaded table came from.
    problems : list of Problem
        Warnings found when loading (errors prevent loading).

    Examples
    --------
    >>> from lnmkit import Cohort
    >>> cohort = Cohort.from_dir("cohort/")  # doctest: +SKIP
    >>> y = cohort.survival("os")  # doctest: +SKIP
    """

    def __init__(self, tables, *, root=None, files=None, problems=()):
        self.tables = dict(tables)
        self.root = Path(root) if root is not None else None
        self.files = dict(files or {})
        self.problems = list(problems)
        self._rows = {}

    # -- construction -------------------------------------------------------------

    @classmethod
    def _load(cls, files, root, stacklevel, check_files):
        schemas = load_schemas()
        files = {k: v for k, v in files.items() if v is not None or k == "clinical"}
        parsed, problems = validate_files(files, schemas, check_files)
        if has_errors(problems):
            raise CohortValidationError(problems)
        tables = {name: to_frame(table) for name, table in parsed.items()}
        for name, schema in schemas.items():
            tables.setdefault(name, empty_frame(schema))
        cohort = cls(tables, root=root, files={k: Path(v) for k, v in files.items() if v is not None},
                     problems=problems)
        cohort._rows = {name: table.raw.row_numbers for name, table in parsed.items()}
        if problems:
            shown = "\n".join(f"  - {p}" for p in problems[:5])
            more = f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else ""
            warnings.warn(CohortValidationWarning(
                f"cohort loaded with {len(problems)} warning(s) (all in Cohort.problems):\n{shown}{more}"),
                stacklevel=stacklevel)
        return cohort

    @classmethod
    def from_files(cls, clinical, outcomes=None, radiology_nodes=None, slides=None, radiology_images=None,
                   *, root=None, check_files=True) -> "Cohort":
        """Load and validate cohort tables from explicit files.

        Parameters
        ----------
        clinical : str or path-like
            ``clinical.csv``: one row per patient (required).
        outcomes, radiology_nodes, slides, radiology_images : str or path-like, optional
            The optional tables. Slide paths are relative to the folder holding
            the slides table.
        root : str or path-like, optional
            Cohort folder; defaults to the clinical file's folder.
        check_files : bool, default=True
            Require every slide and image file named in the tables to exist
            (see :meth:`from_dir`).

        Returns
        -------
        Cohort

        Raises
        ------
        lnmkit.exceptions.CohortValidationError
            Listing every error (file, row, column, value, what is wrong).
        TypeError
            If ``radiology_images`` is given but lnmkit has no schema for it.

        Warns
        -----
        lnmkit.exceptions.CohortValidationWarning
            When validation found warnings only; they are in :attr:`problems`.
        """
        files = dict(clinical=clinical, outcomes=outcomes, radiology_nodes=radiology_nodes, slides=slides,
                     radiology_images=radiology_images)
        root = Path(root) if root is not None else Path(clinical).parent
        return cls._load(files, root=root, stacklevel=3, check_files=check_files)

    @classmethod
    def from_dir(cls, directory, *, check_files=True) -> "Cohort":
        """Load and validate the standard table files of a cohort folder.

        Reads ``clinical.csv`` (required) and, where present, ``outcomes.csv``,
        ``radiology_nodes.csv``, ``slides.csv`` and ``radiology_images.csv``.

        Parameters
        ----------
        directory : str or path-like
            Cohort folder.
        check_files : bool, default=True
            Require every slide and image file named in the tables to exist.
            False for work that needs only the tables and features computed
            earlier (MIL on feature bags, fusion), e.g. on a machine without
            the slides; paths are still resolved.

        Returns
        -------
        Cohort

        Raises
        ------
        lnmkit.exceptions.CohortValidationError
            Listing every error found, or saying the folder does not exist.

        Warns
        -----
        lnmkit.exceptions.CohortValidationWarning
            When validation found warnings only; they are in :attr:`problems`.
        """
        directory = Path(directory).expanduser()
        if not directory.is_dir():
            raise CohortValidationError([folder_problem(directory)])
        return cls._load(standard_files(directory), root=directory, stacklevel=3, check_files=check_files)

    # -- tables -------------------------------------------------------------------

    def _table(self, name):
        if name in self.tables:
            return self.tables[name]
        return pd.DataFrame()

    @property
    def clinical(self) -> pd.DataFrame:
        """pandas.DataFrame: One row per patient, indexed by ``patient_id``."""
        return self._table("clinical")

    @property
    def outcomes(self) -> pd.DataFrame:
        """pandas.DataFrame: Outcomes, indexed by ``patient_id`` (empty if not given)."""
        return self._table("outcomes")

    @property
    def radiology_nodes(self) -> pd.DataFrame:
        """pandas.DataFrame: One row per imaged node, ``patient_id`` as a column."""
        return self._table("radiology_nodes")

    @property
    def slides(self) -> pd.DataFrame:
        """pandas.DataFrame: One row per slide, indexed by ``slide_id``, absolute ``path``."""
        return self._table("slides")

    @property
    def radiology_images(self) -> pd.DataFrame:
        """pandas.DataFrame: One row per radiology image (empty if not given)."""
        return self._table("radiology_images")

    @property
    def patients(self) -> pd.Index:
        """pandas.Index: Every patient id, in clinical.csv order."""
        return self.clinical.index

    def subset(self, patient_ids) -> "Cohort":
        """The same cohort restricted to some patients (in every table).

        Parameters
        ----------
        patient_ids : iterable of str
            Patients to keep; each must be in :attr:`patients`.

        Returns
        -------
        Cohort

        Raises
        ------
        KeyError
            Naming the patient ids that are not in the cohort.
        """
        keep = pd.Index(list(patient_ids))
        unknown = keep.difference(self.patients)
        if len(unknown):
            raise KeyError(f"patient_id(s) not in the cohort: {', '.join(map(repr, unknown[:10]))}"
                           f"{' ...' if len(unknown) > 10 else ''}")
        wanted = set(keep)
        tables, rows = {}, {}
        for name, frame in self.tables.items():
            if frame.index.name == "patient_id":
                mask = frame.index.isin(wanted)
            elif "patient_id" in frame.columns:
                mask = frame["patient_id"].isin(wanted).to_numpy()
            else:
                mask = np.ones(len(frame), dtype=bool)
            tables[name] = frame[mask]
            if name in self._rows:
                rows[name] = self._rows[name][np.asarray(mask)]
        if "clinical" in tables:
            tables["clinical"] = tables["clinical"].loc[keep]
        out = Cohort(tables, root=self.root, files=self.files, problems=self.problems)
        out._rows = rows
        return out

    # -- targets ------------------------------------------------------------------

    def endpoints(self) -> list[str]:
        """Survival endpoints available: ``e`` for each ``e_months`` / ``e_event`` column pair.

        Returns
        -------
        list of str
        """
        columns = set(self.outcomes.columns)
        return [c[: -len("_months")] for c in self.outcomes.columns
                if c.endswith("_months") and f"{c[: -len('_months')]}_event" in columns]

    def survival(self, endpoint="os", patients=None) -> np.ndarray:
        """Survival target as a scikit-survival structured array.

        Parameters
        ----------
        endpoint : str, default="os"
            ``"os"`` (overall) or ``"rfs"`` (recurrence-free), or any ``e`` with
            ``e_months`` and ``e_event`` columns in the outcomes table.
        patients : sequence of str, optional
            Patients, in the order wanted (e.g. ``X.index``); by default every
            row of :attr:`outcomes`, in its order.

        Returns
        -------
        numpy.ndarray
            Structured array with fields ``event`` (bool) and ``time`` (float,
            months), one entry per patient, built by ``sksurv.util.Surv``.

        Raises
        ------
        ValueError
            If ``endpoint`` is unknown.
        lnmkit.exceptions.CohortValidationError
            Listing every requested patient without a row in the outcomes table
            or with an empty time or event, so they can be dropped first; or,
            for an endpoint read from extra columns (which no schema checks),
            an event other than 0/1 or a time <= 0.
        """
        available = self.endpoints()
        if endpoint not in available:
            raise ValueError(f"survival: endpoint must be one of {', '.join(map(repr, available)) or '(none)'}; "
                             f"got {endpoint!r} instead")
        time_col, event_col = f"{endpoint}_months", f"{endpoint}_event"
        out = self.outcomes
        file = str(self.files.get("outcomes", "outcomes.csv"))
        ids = out.index if patients is None else pd.Index(list(patients))
        problems = []
        row_of = {pid: int(r) for pid, r in zip(out.index, self._rows.get("outcomes", []))}
        for pid in ids.difference(out.index, sort=False):
            problems.append(Problem(file, None, "patient_id", str(pid),
                                    f"no outcome row for this patient; drop it before asking for {endpoint} "
                                    f"survival, e.g. cohort.survival({endpoint!r}, patients=ids) with ids "
                                    f"limited to cohort.outcomes.index"))
        known = ids[ids.isin(out.index)]
        frame = out.loc[known, [time_col, event_col]]
        for pid, (time, event) in zip(known, frame.itertuples(index=False)):
            for column, value in ((time_col, time), (event_col, event)):
                if pd.isna(value):
                    problems.append(Problem(file, row_of.get(pid), column, None,
                                            f"patient {pid!r} has no {column}; keep only patients with a "
                                            f"known {endpoint} outcome, e.g. cohort.outcomes.dropna("
                                            f"subset=[{time_col!r}, {event_col!r}]).index"))
        if problems:
            raise CohortValidationError(problems)
        from sksurv.util import Surv  # scikit-survival is slow to import; only needed here

        event = frame[event_col].to_numpy(dtype=float)
        time = frame[time_col].to_numpy(dtype=float)
        # endpoints beyond os/rfs come from columns no schema checked
        odd = ~np.isin(event, (0.0, 1.0)) | ~(time > 0)
        if odd.any():
            problems = [Problem(file, row_of.get(pid), f"{event_col} / {time_col}", None,
                                f"patient {pid!r}: the event must be 0 or 1 and the time > 0; got "
                                f"{ev:g} and {t:g}") for pid, ev, t in zip(known[odd], event[odd], time[odd])]
            raise CohortValidationError(problems)
        event = event == 1.0
        return Surv.from_arrays(event=event, time=time, name_event="event", name_time="time")

    # -- overview -----------------------------------------------------------------

    def overview(self) -> pd.Series:
        """Headline counts of the cohort.

        Returns
        -------
        pandas.Series
            ``patients``, ``patients_with_outcomes``, ``pn_known``,
            ``pn_positive``, ``pn_positive_rate``, ``otc_positive_pn0``, one
            ``<endpoint>_events`` per survival endpoint, ``slides``,
            ``patients_with_slides``, ``node_rows``, ``patients_with_nodes``,
            ``radiology_images``, ``warnings``.
        """
        out, slides, nodes = self.outcomes, self.slides, self.radiology_nodes
        stats = {"patients": len(self.clinical), "patients_with_outcomes": len(out)}
        status = out["pn_status"] if "pn_status" in out else pd.Series([], dtype=object)
        stats["pn_known"] = int(status.notna().sum())
        stats["pn_positive"] = int((status == "pN+").sum())
        stats["pn_positive_rate"] = stats["pn_positive"] / stats["pn_known"] if stats["pn_known"] else np.nan
        if "otc" in out and "pn_status" in out:
            stats["otc_positive_pn0"] = int(((out["pn_status"] == "pN0") & (out["otc"] == 1)).sum())
        for endpoint in self.endpoints():
            stats[f"{endpoint}_events"] = int((out[f"{endpoint}_event"] == 1).sum())
        stats["slides"] = len(slides)
        stats["patients_with_slides"] = int(slides["patient_id"].nunique()) if "patient_id" in slides else 0
        stats["node_rows"] = len(nodes)
        stats["patients_with_nodes"] = int(nodes["patient_id"].nunique()) if "patient_id" in nodes else 0
        stats["radiology_images"] = len(self.radiology_images)
        stats["warnings"] = len(self.problems)
        return pd.Series(stats, name="value", dtype=object)

    def summary(self) -> pd.DataFrame:
        """Missingness of every column of every loaded table.

        Returns
        -------
        pandas.DataFrame
            Indexed by (``table``, ``column``); columns ``dtype``, ``n_rows``,
            ``n_missing``, ``missing_fraction``, ``n_unique``.
        """
        records = []
        for name in self.files:
            frame = self.tables[name]
            for column in frame.columns:
                series = frame[column]
                missing = int(series.isna().sum())
                records.append({
                    "table": name, "column": column, "dtype": str(series.dtype), "n_rows": len(series),
                    "n_missing": missing,
                    "missing_fraction": missing / len(series) if len(series) else np.nan,
                    "n_unique": int(series.nunique(dropna=True)),
                })
        columns = ["table", "column", "dtype", "n_rows", "n_missing", "missing_fraction", "n_unique"]
        return pd.DataFrame.from_records(records, columns=columns).set_index(["table", "column"])

    def __repr__(self):
        s = self.overview()
        parts = [f"{s['patients']} patients", f"{s['slides']} slides", f"{s['node_rows']} node rows"]
        if s["pn_known"]:
            parts.append(f"pN+ {s['pn_positive_rate']:.0%} ({s['pn_positive']}/{s['pn_known']})")
        for endpoint in self.endpoints():
            if self.outcomes[f"{endpoint}_months"].notna().any():
                parts.append(f"{endpoint.upper()} events {s[f'{endpoint}_events']}")
        if self.problems:
            parts.append(f"{len(self.problems)} warning(s)")
        root = f", root={str(self.root)!r}" if self.root is not None else ""
        return f"<Cohort: {', '.join(parts)}{root}>"

    def _repr_html_(self):
        stats = self.overview().to_frame()
        stats["value"] = [f"{v:.1%}" if k == "pn_positive_rate" and pd.notna(v) else v
                          for k, v in stats["value"].items()]
        summary = self.summary()
        missing = summary[summary["n_missing"] > 0][["n_rows", "n_missing", "missing_fraction"]]
        missing_html = (missing.to_html(float_format=lambda x: f"{x:.1%}") if len(missing)
                        else "<p>No missing values.</p>")
        title = html.escape(f"Cohort at {self.root}" if self.root is not None else "Cohort")
        return (f"<div><strong>{title}</strong>{stats.to_html(header=False)}"
                f"<details><summary>Missing values per column</summary>{missing_html}</details></div>")

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": repr(self), "text/html": self._repr_html_()}
