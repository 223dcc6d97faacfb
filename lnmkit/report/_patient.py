"""Per-patient risk report: LNM probability, survival, SHAP from variable to tile, OTC flag."""

from __future__ import annotations

import datetime as _dt
import html
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lnmkit._io import atomic_path, atomic_write_text
from lnmkit.exceptions import ExplainError
from lnmkit.report._html import (Section, check_privacy, figure_png, forbidden_strings, fragment, frame_hash,
                                 img_tag, model_hash, page, table_html)

__all__ = ["PatientReport", "ReportContext", "patient_report"]

_PRIVATE_COLUMNS = ("path", "file", "name", "mrn", "label", "image", "dicom", "accession")


@dataclass
class PatientReport:
    """One patient's report: sections of HTML with embedded PNGs.

    Show it in Jupyter (``_repr_html_``), write it with :meth:`save` (one HTML
    file, images embedded, no scripts, no external requests) and :meth:`save_pngs`.

    Attributes
    ----------
    patient_id : str
    sections : list of Section
    meta : dict
        Provenance: lnmkit version, model hashes, data hash, creation time (UTC).
    summary : dict
        The headline numbers (LNM probability and its interval, risk group,
        survival at the horizons, OTC flag, dominant modality).
    """

    patient_id: str
    sections: list
    meta: dict
    summary: dict = field(default_factory=dict)
    forbidden: list = field(default_factory=list, repr=False)

    def _forbidden(self):
        # a slide named after the patient (slide_id == patient_id) is no extra identifier
        pid = self.patient_id.lower()
        return [s for s in self.forbidden if s.lower() not in pid]

    @property
    def images(self):
        """dict of str to bytes: every PNG, named ``<section>_<name>``."""
        return {f"{s.key}_{k}": v for s in self.sections for k, v in s.images.items()}

    def _fragment(self):
        line = (f"lnmkit {self.meta.get('lnmkit_version', '')} · created {self.meta.get('created_utc', '')} · "
                f"data {self.meta.get('data_hash', '')}")
        return fragment(f"Patient {self.patient_id}", line, self.sections)

    def to_html(self):
        """The whole report as one HTML document (str), privacy-checked."""
        text = page(f"lnmkit report, patient {self.patient_id}", self._fragment())
        check_privacy(text, self._forbidden(), where="PatientReport")
        return text

    def save(self, path):
        """Write the report as one self-contained HTML file.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        pathlib.Path
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, self.to_html())
        return path

    def save_pngs(self, folder):
        """Write every figure as a PNG into ``folder``; returns the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for name, png in self.images.items():
            target = folder / f"{self.patient_id}_{name}.png"
            with atomic_path(target) as tmp:
                Path(tmp).write_bytes(png)
            out.append(target)
        return out

    def _repr_html_(self):
        text = self._fragment()
        check_privacy(text, self._forbidden(), where="PatientReport")
        return text

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": self._repr_html_(), "text/plain": repr(self)}

    def __repr__(self):
        s = self.summary
        p = s.get("lnm_probability")
        part = f", P(LNM)={p:.2f}" if p is not None else ""
        grp = f" ({s['risk_group']})" if s.get("risk_group") else ""
        otc = ", OTC flag" if s.get("otc_flag") else ""
        return f"<PatientReport: {self.patient_id}{part}{grp}{otc}, {len(self.sections)} sections>"


# --------------------------------------------------------------------------- inputs
def _as_models(models):
    if isinstance(models, dict):
        out = dict(models)
    else:
        out = {}
        for m in models if isinstance(models, (list, tuple)) else [models]:
            role = "survival" if hasattr(m, "predict_survival_function") else "lnm"
            out[role] = m
    unknown = set(out) - {"lnm", "survival"}
    if unknown:
        raise ValueError(f"patient_report: models keys must be 'lnm' and/or 'survival'; got {sorted(unknown)}.")
    if not out:
        raise ValueError("patient_report: pass at least one fitted model, e.g. models={'lnm': model}.")
    return out


def _features(model, frame):
    names = getattr(model, "feature_names_in_", None)
    if names is None and hasattr(model, "get_booster"):
        names = model.get_booster().feature_names
    names = list(frame.columns) if names is None else [str(n) for n in names]
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise ExplainError(f"patient_report: the fusion table lacks the model's column(s) {missing}.")
    return names


def _slide_paths(slides):
    if slides is None:
        return {}
    if hasattr(slides, "slides") and not isinstance(slides, pd.DataFrame):
        slides = slides.slides
    if isinstance(slides, pd.DataFrame):
        col = "path" if "path" in slides.columns else slides.columns[0]
        ids = slides["slide_id"] if "slide_id" in slides.columns else slides.index
        return {str(i): (None if pd.isna(p) else str(p)) for i, p in zip(ids, slides[col])}
    return {str(k): (None if v is None else str(v)) for k, v in dict(slides).items()}


def _tile_sizes(tile_size_level0, slide_ids):
    if tile_size_level0 is None:
        return {}
    if isinstance(tile_size_level0, (int, float)):
        return {s: float(tile_size_level0) for s in slide_ids}
    if isinstance(tile_size_level0, dict):
        return {str(k): float(v) for k, v in tile_size_level0.items()}
    if hasattr(tile_size_level0, "bag_path"):  # a FeatureSet: read only the HDF5 attributes
        import h5py

        out = {}
        for s in slide_ids:
            p = tile_size_level0.bag_path(s)
            if Path(p).is_file():
                with h5py.File(p, "r") as f:
                    if "tile_size_level0" in f.attrs:
                        out[s] = float(f.attrs["tile_size_level0"])
        return out
    raise TypeError(f"patient_report: tile_size_level0 must be a number, a dict or a FeatureSet; got "
                    f"{type(tile_size_level0).__name__}.")


def _scorable(model, X, where):
    """Rows the model can score (models without native NaN handling refuse missing values)."""
    try:
        model.predict(X.iloc[:1])
        ok = pd.Series(True, index=X.index)
        if X.isna().any().any():
            try:
                model.predict(X)
            except (ValueError, TypeError):
                ok = ~X.isna().any(axis=1)
        return ok
    except (ValueError, TypeError):
        return ~X.isna().any(axis=1)


# --------------------------------------------------------------------------- context
class ReportContext:
    """Everything the patient reports of one cohort share, computed once.

    Build it once and call :meth:`patient_report` per patient: SHAP values, tile
    shares, cohort predictions and OTC flags are computed for the whole cohort
    here, so each report only draws its figures (the heatmap reuses the stored
    tile coordinates and contributions and reads only the slide thumbnail).

    Parameters
    ----------
    models : dict or estimator
        ``{"lnm": classifier, "survival": survival model}`` (either may be left
        out), fitted lnmkit models or any model :func:`lnmkit.explain.explain`
        takes.
    fusion_table : FusionTable or pandas.DataFrame
        Indexed by patient_id; its ``provenance`` gives the modality view (a plain
        DataFrame needs ``provenance=``).
    outcomes : pandas.DataFrame or lnmkit.Cohort, optional
        ``pn_status`` (for the OTC flag) and survival columns (for the cohort
        curve); a Cohort also gives ``slides`` and ``radiology_nodes``.
    crossfit : lnmkit.mil.CrossFitResult or pandas.DataFrame, optional
        The MIL run whose scores are in the fusion table (its ``attention`` tile
        table, or the tile table itself).
    slides : dict, DataFrame or Cohort, optional
        ``slide_id -> path`` to draw heatmaps and tiles. Paths never appear in a
        report.
    tile_size_level0 : float, dict or FeatureSet, optional
        Tile side in level-0 pixels per slide (a FeatureSet is read for it).
    nomogram : lnmkit.nomogram.Nomogram, optional
        Drawn with the patient's position marked.
    radiology_nodes : pandas.DataFrame, optional
        Node table (``patient_id`` column); defaults to the Cohort's.
    provenance : dict, optional
        Column -> modality when ``fusion_table`` has none.
    horizons : sequence of float, optional
        Times at which S(t) is reported (default: 1/3 and 2/3 of follow-up).
    risk_thresholds : (float, float), optional
        LNM probability cut points of the low / intermediate / high groups
        (default: the cohort's tertiles of predicted probability).
    otc_threshold : float, default=0.5
    level : float, default=0.95
        Level of the LNM probability's interval (delta method on the linear
        predictor, for models with a coefficient covariance).
    n_tiles : int, default=6
        Tiles per row of the montages.
    thumbnail_size : int, default=768
    endpoint : str, default="os"
        Survival endpoint of the cohort curve and the OTC comparison.
    lnm_intervals : pandas.DataFrame, optional
        Columns ``lower`` and ``upper`` indexed by patient_id: intervals of P(LNM)
        computed elsewhere (e.g. by bootstrap), shown for models without a
        coefficient covariance (tree ensembles).
    """

    def __init__(self, models, fusion_table, *, outcomes=None, crossfit=None, slides=None, tile_size_level0=None,
                 nomogram=None, radiology_nodes=None, provenance=None, horizons=None, risk_thresholds=None,
                 otc_threshold=0.5, level=0.95, n_tiles=6, thumbnail_size=768, endpoint="os", lnm_intervals=None):
        from lnmkit.explain import explain, provenance_of
        from lnmkit.explain._shap import _frame_of, model_spec

        self.models = _as_models(models)
        self.frame = _frame_of(fusion_table).copy()
        self.frame.index = self.frame.index.astype(str)
        prov_source = provenance if provenance is not None else getattr(fusion_table, "provenance", None)
        self.provenance = provenance_of(prov_source) if prov_source is not None else None
        cohort = outcomes if (outcomes is not None and hasattr(outcomes, "outcomes")
                              and not isinstance(outcomes, pd.DataFrame)) else None
        self.outcomes = cohort.outcomes if cohort is not None else outcomes
        if self.outcomes is not None:
            self.outcomes = self.outcomes.copy()
            self.outcomes.index = self.outcomes.index.astype(str)
        if slides is None and cohort is not None:
            try:
                slides = cohort.slides
            except (KeyError, AttributeError, ValueError):
                slides = None
        if radiology_nodes is None and cohort is not None:
            try:
                radiology_nodes = cohort.radiology_nodes
            except (KeyError, AttributeError, ValueError):
                radiology_nodes = None
        self.radiology_nodes = radiology_nodes
        self.slides = _slide_paths(slides)
        self.attention = crossfit if isinstance(crossfit, pd.DataFrame) or crossfit is None else crossfit.attention
        if self.attention is not None:
            self.attention = self.attention.copy()
            self.attention["patient_id"] = self.attention["patient_id"].astype(str)
            self.attention["slide_id"] = self.attention["slide_id"].astype(str)
        self.oof = None if isinstance(crossfit, pd.DataFrame) else getattr(crossfit, "oof", None)
        sids = sorted(set(self.slides) | (set(self.attention["slide_id"]) if self.attention is not None else set()))
        self.tile_sizes = _tile_sizes(tile_size_level0, sids)
        self.nomogram = nomogram
        self.level = float(level)
        self.n_tiles = int(n_tiles)
        self.thumbnail_size = int(thumbnail_size)
        self.endpoint = endpoint
        self.otc_threshold = float(otc_threshold)
        self.lnm_intervals = lnm_intervals
        self.forbidden = forbidden_strings({**{s: None for s in sids}, **self.slides})
        self.explanations, self.modality, self.tiles, self.rows = {}, {}, {}, {}
        self._lazy, self._lazy_cache = {}, {}
        for role, model in self.models.items():
            feats = _features(model, self.frame)
            X = self.frame[feats]
            ok = _scorable(model, X, "patient_report")
            self.rows[role] = ok
            Xok = X[ok]
            slide_feats = [f for f in feats if any(k in f for k in ("lnm_score", "otc_score", "risk_score"))]
            if model_spec(model, Xok).kind == "sampled":
                # sampled SHAP costs seconds per patient: explained when its report is built, against the cohort
                self._lazy[role] = (model, Xok, slide_feats)
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                ex = explain(model, Xok)
            self._store(role, ex, slide_feats)
        self.lnm_prob = None
        if "lnm" in self.models:
            m = self.models["lnm"]
            X = self.frame[_features(m, self.frame)][self.rows["lnm"]]
            self.lnm_prob = pd.Series(m.predict_proba(X)[:, 1], index=X.index, name="lnm_probability")
            if risk_thresholds is None:
                risk_thresholds = tuple(np.quantile(self.lnm_prob, [1 / 3, 2 / 3]))
                self.risk_rule = "cohort tertiles of predicted P(LNM)"
            else:
                self.risk_rule = "given cut points"
            self.risk_thresholds = tuple(float(t) for t in risk_thresholds)
        self.survival = None
        if "survival" in self.models:
            self._survival_curves(horizons)
        self.otc = None
        otc_col = next((c for c in self.frame.columns if "otc_score" in c), None)
        if self.outcomes is not None and "pn_status" in self.outcomes.columns:
            from lnmkit.explain import otc_flags

            if otc_col is not None:
                scores, col = self.frame, otc_col
            elif self.oof is not None and "otc_score" in self.oof.columns:
                scores, col = self.oof, "otc_score"
            else:
                scores = None
            if scores is not None:
                att = (self.attention if self.attention is not None and "contribution_otc" in self.attention.columns
                       else None)
                self.otc = otc_flags(scores, self.outcomes, att, threshold=self.otc_threshold, score_column=col,
                                     endpoint=endpoint, k=self.n_tiles)
        self.meta = {
            "lnmkit_version": _version(),
            "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "data_hash": frame_hash(self.frame),
            "models": {role: {"class": type(m).__name__, "hash": model_hash(m)} for role, m in self.models.items()},
            "packages": _package_versions(),
        }

    def _store(self, role, ex, slide_feats, reference="mean"):
        from lnmkit.explain import modality_shap, tile_shap

        self.explanations[role] = ex
        if self.provenance is not None:
            self.modality[role] = modality_shap(ex, self.provenance)
        if self.attention is not None and slide_feats:
            self.tiles[role] = tile_shap(ex, self.attention, slide_feats, reference=reference)

    def _ensure(self, pid):
        """Explain ``pid`` with the sampled explainer where a model has no exact SHAP."""
        from lnmkit.explain import explain

        if not self._lazy or self._lazy_cache.get("pid") == pid:
            return
        for role, (model, X, slide_feats) in self._lazy.items():
            if pid not in X.index:
                self.explanations.pop(role, None)
                self.modality.pop(role, None)
                self.tiles.pop(role, None)
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                ex = explain(model, X.loc[[pid]], background=X, n_background=30, n_permutations=6)
            self._store(role, ex, slide_feats, reference={f: float(X[f].mean()) for f in slide_feats})
        self._lazy_cache["pid"] = pid

    def _survival_curves(self, horizons):
        m = self.models["survival"]
        X = self.frame[_features(m, self.frame)][self.rows["survival"]]
        tmax = getattr(m, "max_time_", None)
        if tmax is None and self.outcomes is not None and f"{self.endpoint}_months" in self.outcomes.columns:
            tmax = float(pd.to_numeric(self.outcomes[f"{self.endpoint}_months"], errors="coerce").max())
        if tmax is None:
            self.survival = None
            return
        times = np.linspace(0.0, 0.98 * float(tmax), 80)
        if horizons is None:
            horizons = [round(float(tmax) / 3), round(2 * float(tmax) / 3)]
        self.horizons = [float(h) for h in horizons]
        curves = _predict_curves(m, X, times)
        at = _predict_curves(m, X, np.asarray(self.horizons))
        self.survival = {"times": times, "curves": curves, "at_horizons": at}

    # ----------------------------------------------------------------- sections
    def patient_report(self, patient_id):
        """Build the report of one patient.

        Parameters
        ----------
        patient_id : str

        Returns
        -------
        PatientReport

        Raises
        ------
        KeyError
            The patient is not in the fusion table.
        """
        pid = str(patient_id)
        if pid not in self.frame.index:
            raise KeyError(f"patient_report: patient_id {pid!r} is not in the fusion table.")
        self._ensure(pid)
        sections, summary = [], {}
        sections.append(self._summary_section(pid, summary))
        for role in self.models:
            sec = self._shap_section(pid, role, summary)
            if sec is not None:
                sections.append(sec)
        if self.survival is not None:
            sections.append(self._survival_section(pid, summary))
        if self.nomogram is not None:
            sec = self._nomogram_section(pid)
            if sec is not None:
                sections.append(sec)
        sec = self._slide_section(pid)
        if sec is not None:
            sections.append(sec)
        sec = self._otc_section(pid, summary)
        if sec is not None:
            sections.append(sec)
        sec = self._radiology_section(pid)
        if sec is not None:
            sections.append(sec)
        sections.append(self._provenance_section())
        return PatientReport(pid, sections, dict(self.meta), summary, list(self.forbidden))

    def _summary_section(self, pid, summary):
        cards = []
        body = []
        if self.lnm_prob is not None:
            if pid in self.lnm_prob.index:
                p = float(self.lnm_prob[pid])
                lo, hi = _probability_interval(self.models["lnm"], self.frame.loc[[pid]], self.level)
                if lo is None and self.lnm_intervals is not None and pid in self.lnm_intervals.index:
                    lo, hi = (float(self.lnm_intervals.loc[pid, "lower"]), float(self.lnm_intervals.loc[pid, "upper"]))
                t1, t2 = self.risk_thresholds
                group = "low" if p < t1 else ("intermediate" if p < t2 else "high")
                summary.update(lnm_probability=p, lnm_lower=lo, lnm_upper=hi, risk_group=group)
                pct = int(round(self.level * 100))
                ci = f"{pct}% CI {lo:.2f}–{hi:.2f}" if lo is not None else "no CI for this model type"
                cards.append(("P(LNM)", f"{p:.2f}", ci))
                cards.append(("risk group", group, f"{self.risk_rule}: {t1:.2f} / {t2:.2f}"))
            else:
                body.append("<p class=\"note\">The LNM model cannot score this patient (missing values).</p>")
        mod = self.modality.get("lnm") or next(iter(self.modality.values()), None)
        if mod is not None and pid in mod.table.index:
            dom = mod.dominant()[pid]
            summary["dominant_modality"] = dom
            share = mod.shares().loc[pid, dom]
            cards.append(("largest modality", dom, f"{share:.0%} of |SHAP|"))
        card_html = "".join(f"<div class=\"card\"><div class=\"l\">{html.escape(a)}</div><div class=\"v\">"
                            f"{html.escape(b)}</div><div class=\"l\">{html.escape(c)}</div></div>"
                            for a, b, c in cards)
        return Section("summary", "Summary", f"<div class=\"cards\">{card_html}</div>" + "".join(body))

    def _shap_section(self, pid, role, summary):
        from lnmkit.explain import plot_waterfall

        ex = self.explanations.get(role)
        if ex is None:
            return None
        names = [str(i) for i in ex.instance_names]
        if pid not in names:
            return None
        i = names.index(pid)
        label = "LNM model" if role == "lnm" else "survival model"
        images = {"waterfall": figure_png(plot_waterfall(ex[i], max_display=10))}
        body = [f"<p class=\"note\">SHAP values of the {label} ({html.escape(type(self.models[role]).__name__)}) on "
                f"the {html.escape(str(ex.output_names))} scale: each bar moves the cohort's base value "
                f"({float(np.ravel(ex.base_values)[i]):.3f}) to this patient's output.</p>",
                "<div class=\"row\">", img_tag(images["waterfall"], f"SHAP waterfall, {label}")]
        mod = self.modality.get(role)
        if mod is not None:
            images["modality"] = figure_png(mod.plot(patient_id=pid))
            body.append(img_tag(images["modality"], "SHAP by modality"))
            body.append("</div>")
            row = mod.table.loc[[pid], mod.modalities + ["base_value", "output"]]
            body.append(table_html(row.round(4), digits=4))
        else:
            body.append("</div>")
        return Section(f"shap_{role}", f"Why: SHAP of the {label}", "".join(body), images)

    def _survival_section(self, pid, summary):
        import matplotlib.pyplot as plt

        sv = self.survival
        if pid not in sv["curves"].index:
            return Section("survival", "Predicted survival",
                           "<p class=\"note\">The survival model cannot score this patient (missing values).</p>")
        fig, ax = plt.subplots(figsize=(5.2, 3.4))
        t = sv["times"]
        ax.step(t, sv["curves"].mean(axis=0), where="post", color="0.55", label="cohort (mean predicted)")
        if self.outcomes is not None and {f"{self.endpoint}_months", f"{self.endpoint}_event"} <= set(self.outcomes):
            from lifelines import KaplanMeierFitter

            o = self.outcomes[[f"{self.endpoint}_months", f"{self.endpoint}_event"]].apply(pd.to_numeric,
                                                                                          errors="coerce").dropna()
            if len(o):
                km = KaplanMeierFitter().fit(o.iloc[:, 0], o.iloc[:, 1])
                sf = km.survival_function_.iloc[:, 0]
                ax.step(sf.index, sf.to_numpy(), where="post", color="0.3", ls="--", lw=0.9,
                        label="cohort (Kaplan-Meier)")
        ax.step(t, sv["curves"].loc[pid].to_numpy(), where="post", color="#C44E52", lw=2, label=f"patient {pid}")
        for h in self.horizons:
            ax.axvline(h, color="0.8", lw=0.8)
        ax.set(xlabel="months", ylabel="survival probability", ylim=(0, 1.02),
               title=f"Predicted {self.endpoint.upper()} ({type(self.models['survival']).__name__})")
        ax.legend(fontsize=8, loc="lower left")
        fig.tight_layout()
        png = figure_png(fig)
        at = sv["at_horizons"]
        tab = pd.DataFrame({"time": self.horizons, "patient S(t)": at.loc[pid].to_numpy(),
                            "cohort mean S(t)": at.mean(axis=0).to_numpy()}).set_index("time")
        summary["survival"] = dict(zip(self.horizons, at.loc[pid].to_numpy().tolist()))
        return Section("survival", "Predicted survival", img_tag(png, "predicted survival curve")
                       + table_html(tab.round(3), digits=3), {"curve": png})

    def _nomogram_section(self, pid):
        row = self.frame.loc[[pid]]
        fig = None
        for arg in (row, row.iloc[0]):
            try:
                fig = self.nomogram.plot(patient=arg)
                break
            except (TypeError, ValueError, KeyError):
                continue
        if fig is None:
            return None
        png = figure_png(fig)
        body = img_tag(png, "nomogram with the patient's position")
        if hasattr(self.nomogram, "points"):
            try:
                pts = self.nomogram.points(row)
                body += table_html(pts.round(1), digits=4)
            except (TypeError, ValueError, KeyError):
                pass
        return Section("nomogram", "Position on the nomogram", body, {"nomogram": png})

    def _slide_section(self, pid):
        if self.attention is None:
            return None
        tiles = self.attention[self.attention["patient_id"] == pid]
        if tiles.empty:
            return Section("slides", "Slide evidence", "<p class=\"note\">No tiles for this patient (no usable slide).</p>")
        ts = next((t for t in self.tiles.values() if pid in t.patients.index and t.patients.loc[pid, "n_tiles"] > 0),
                  None)
        images, body = {}, []
        slide_ids = list(dict.fromkeys(tiles["slide_id"]))
        if ts is not None:
            phi = float(ts.patients.loc[pid, "shap_slide"])
            top = ts.top(pid, 12)
            body.append(f"<p class=\"note\">The slide features' SHAP value ({phi:+.3f} {html.escape(ts.scale)}) "
                        f"spread over the patient's {int(ts.patients.loc[pid, 'n_tiles'])} tiles by their "
                        "contribution to the MIL logit (shares sum to the SHAP value). The 12 tiles with the largest "
                        f"share carry {top['share'].sum():+.3f}. The attention map beside the shares ranks "
                        "every tile by the network's attention.</p>")
        else:
            body.append("<p class=\"note\">The model has no slide feature: the map shows MIL attention.</p>")
        for n, sid in enumerate(slide_ids, start=1):
            path, size = self.slides.get(sid), self.tile_sizes.get(sid)
            label = f"slide {n} of {len(slide_ids)}"
            if path is None or size is None or not Path(path).exists():
                continue
            from lnmkit.mil import attention_heatmap, top_tiles

            st = tiles[tiles["slide_id"] == sid]
            xy = st[["x", "y"]].to_numpy()
            # The attention map shows where the network looked; with tile shares it is drawn
            # beside them, because a pooling close to a maximum gives the score to its top tiles
            # and the shares alone leave the rest of a tumour blank.
            attention = attention_heatmap(path, xy, st["attention_pct"].to_numpy(), size,
                                          title=f"patient {pid}, {label}: attention", label="attention percentile",
                                          thumbnail_size=self.thumbnail_size)
            if ts is not None:
                lim = float(np.abs(ts.patient(pid)["share"]).max()) or 1.0  # one colour scale for all slides
                shares = ts.heatmap(pid, path, slide_id=sid, tile_size_level0=size, title=f"patient {pid}, {label}",
                                    thumbnail_size=self.thumbnail_size, vmin=-lim, vmax=lim)
                mont = ts.montage(pid, path, slide_id=sid, tile_size_level0=size, k=self.n_tiles,
                                  title=f"patient {pid}, {label}: tiles by share of slide SHAP")
                images[f"heatmap_{n}"] = figure_png(shares)
            else:
                mont = top_tiles(path, xy, st["attention"].to_numpy(), size, k=self.n_tiles,
                                 title=f"patient {pid}, {label}: tiles by attention")
            images[f"attention_{n}"] = figure_png(attention)
            images[f"tiles_{n}"] = figure_png(mont)
            maps = [img_tag(images[f"heatmap_{n}"], f"tile shares, {label}")] if ts is not None else []
            maps.append(img_tag(images[f"attention_{n}"], f"attention, {label}"))
            body.append(f"<h3>{html.escape(label)}</h3><div class=\"row\">" + "".join(maps) + "</div>"
                        + img_tag(images[f"tiles_{n}"], f"top tiles, {label}"))
        if not images:
            body.append("<p class=\"note\">Slide files or tile sizes were not given: no images drawn.</p>")
        if ts is not None:
            top = ts.top(pid, 12)[["x", "y", "attention", "share"]].reset_index(drop=True)
            top.index = pd.RangeIndex(1, len(top) + 1, name="rank")
            body.append(table_html(top, digits=3))
        return Section("slides", "Slide evidence: tiles behind the slide score", "".join(body), images)

    def _otc_section(self, pid, summary):
        if self.otc is None or pid not in self.otc.table.index:
            return None
        flagged = self.otc.is_flagged(pid)
        summary["otc_flag"] = flagged
        score = float(self.otc.table.loc[pid, "otc_score"])
        if not flagged:
            return Section("otc", "Occult tumour cells (pN0)",
                           f"<p>pN0 patient, OTC score {score:.2f} below the flag threshold "
                           f"{self.otc.threshold:.2f}: no flag.</p>")
        images = {}
        body = [f"<div class=\"flag\"><b>OTC flag</b>: pN0 patient with OTC score {score:.2f} "
                f"(≥ {self.otc.threshold:.2f}). Consider review of the nodes for occult tumour cells.</div>"]
        ev = self.otc.evidence_tiles(pid)
        for n, (sid, g) in enumerate(ev.groupby("slide_id", sort=False), start=1):
            path, size = self.slides.get(sid), self.tile_sizes.get(sid)
            if path is None or size is None or not Path(path).exists():
                continue
            from lnmkit.mil import top_tiles

            all_t = self.attention[(self.attention["patient_id"] == pid) & (self.attention["slide_id"] == sid)]
            fig = top_tiles(path, all_t[["x", "y"]].to_numpy(), all_t["contribution_otc"].to_numpy(), size,
                            k=min(self.n_tiles, len(g)), label="OTC contribution",
                            title=f"patient {pid}: OTC evidence tiles")
            images[f"evidence_{n}"] = figure_png(fig)
            body.append(img_tag(images[f"evidence_{n}"], "OTC evidence tiles"))
        tab = ev[["x", "y", "attention", "contribution_otc", "rank"]].set_index("rank")
        body.append(table_html(tab, digits=3))
        return Section("otc", "Occult tumour cells (pN0)", "".join(body), images)

    def _radiology_section(self, pid):
        nodes = self.radiology_nodes
        if nodes is None or "patient_id" not in getattr(nodes, "columns", []):
            return None
        rows = nodes[nodes["patient_id"].astype(str) == pid]
        keep = [c for c in rows.columns if c != "patient_id" and not any(k in c.lower() for k in _PRIVATE_COLUMNS)]
        if rows.empty:
            return Section("radiology", "Radiology nodes", "<p class=\"note\">No node recorded.</p>")
        return Section("radiology", "Radiology nodes", table_html(rows[keep].reset_index(drop=True), digits=3))

    def _provenance_section(self):
        m = self.meta
        rows = [("lnmkit version", m["lnmkit_version"]), ("created", m["created_utc"]), ("data hash", m["data_hash"])]
        for role, info in m["models"].items():
            rows.append((f"{role} model", f"{info['class']} ({info['hash']})"))
        rows += [(k, v) for k, v in m["packages"].items()]
        tab = pd.DataFrame(rows, columns=["item", "value"]).set_index("item")
        return Section("provenance", "Provenance", table_html(tab) + "<p class=\"note\">Hashes are SHA-256 "
                       "prefixes of the fitted model state and of the fusion table.</p>")


def _predict_curves(model, X, times):
    times = np.asarray(times, float)
    try:
        out = model.predict_survival_function(X, times)
    except TypeError:
        out = model.predict_survival_function(X, return_array=False)
        out = np.array([[fn(t) for t in times] for fn in out])
    if isinstance(out, pd.DataFrame):
        if out.shape[0] == len(times) and out.shape[1] == len(X) and out.shape[0] != len(X):
            out = out.T  # lifelines: times x patients
        return pd.DataFrame(out.to_numpy(float), index=X.index, columns=times)
    return pd.DataFrame(np.asarray(out, float), index=X.index, columns=times)


def _probability_interval(model, row, level):
    """Delta-method interval of P(LNM) for logistic models with a coefficient covariance."""
    from scipy.special import expit
    from scipy.stats import norm

    cov = getattr(model, "cov_", None)
    if cov is None or not hasattr(model, "encoder_") or getattr(model, "calibrator_", None) is not None:
        return None, None
    d = model.encoder_.transform(row).to_numpy(float)[0]
    z = np.concatenate([[1.0], d])
    c = cov.to_numpy(float)
    if not np.isfinite(c).all():
        return None, None
    lp = float(model.decision_function(row)[0])
    se = float(np.sqrt(z @ c @ z))
    q = norm.ppf(0.5 + level / 2)
    return float(expit(lp - q * se)), float(expit(lp + q * se))


def _version():
    from lnmkit import __version__

    return __version__


def _package_versions():
    import importlib.metadata as md

    out = {}
    for name in ("shap", "xgboost", "scikit-survival", "lifelines", "scikit-learn"):
        try:
            out[name] = md.version(name if name != "xgboost" else "xgboost-cpu")
        except md.PackageNotFoundError:
            try:
                out[name] = md.version(name)
            except md.PackageNotFoundError:
                continue
    return out


def patient_report(models, fusion_table, patient_id, **kwargs):
    """A patient's risk report: LNM probability, survival, SHAP from variable to tile, OTC flag.

    For many patients build one :class:`ReportContext` and call its
    ``patient_report`` per patient (the cohort-wide SHAP values are then
    computed once).

    Parameters
    ----------
    models : dict or estimator
        ``{"lnm": classifier, "survival": survival model}``.
    fusion_table : FusionTable or pandas.DataFrame
    patient_id : str
    **kwargs
        Passed to :class:`ReportContext` (``outcomes``, ``crossfit``, ``slides``,
        ``tile_size_level0``, ``nomogram``, ``provenance``, ``horizons``, ...).

    Returns
    -------
    PatientReport

    Examples
    --------
    >>> rep = patient_report({"lnm": model}, table, "P001", crossfit=mil, slides=cohort)  # doctest: +SKIP
    >>> rep.save("P001.html")  # doctest: +SKIP
    """
    return ReportContext(models, fusion_table, **kwargs).patient_report(patient_id)
