"""Cohort report: performance and validation tables, global explanations, TRIPOD+AI checklist."""

from __future__ import annotations

import datetime as _dt
import html
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lnmkit._io import atomic_path, atomic_write_text
from lnmkit.report._html import (Section, check_privacy, figure_png, forbidden_strings, fragment, frame_hash,
                                 img_tag, model_hash, page, table_html)

__all__ = ["CohortReport", "cohort_report", "TRIPOD_ITEMS"]

#: TRIPOD+AI (Collins et al., BMJ 2024) items the report addresses, as (item, topic).
TRIPOD_ITEMS = [
    ("1", "Title: development / validation, population, outcome"),
    ("2", "Abstract"),
    ("3", "Background: healthcare context, rationale, existing models"),
    ("4", "Objectives: intended use, target population, outcome"),
    ("5", "Data sources: study design, dates of accrual and follow-up"),
    ("6", "Participants: eligibility, setting, treatments"),
    ("7", "Data preparation: pre-processing, data quality"),
    ("8", "Outcome: definition, how and when assessed"),
    ("9", "Predictors: definition, measurement, how chosen"),
    ("10", "Sample size: patients, events, events per predictor"),
    ("11", "Missing data: amount per predictor and how handled"),
    ("12", "Analytical methods: model type, hyperparameters, internal validation"),
    ("13", "Class imbalance: methods and recalibration"),
    ("14", "Fairness: subgroup performance"),
    ("15", "Model output: scale and thresholds"),
    ("16", "Training versus evaluation data differences"),
    ("17", "Ethical approval"),
    ("18", "Funding and conflicts of interest"),
    ("19", "Protocol and registration"),
    ("20", "Data and code availability"),
    ("21", "Patient and public involvement"),
    ("22", "Participants: flow, characteristics"),
    ("23", "Model development: specification, features"),
    ("24", "Model performance with confidence intervals"),
    ("25", "Model updating / recalibration"),
    ("26", "Interpretation: limitations, usability in context"),
    ("27", "Explainability: how predictions are explained"),
]


@dataclass
class CohortReport:
    """The model report of a cohort: what was fitted, how well it performs, what drives it.

    Attributes
    ----------
    sections : list of Section
    checklist : pandas.DataFrame
        TRIPOD+AI items: ``topic``, ``status`` (``filled`` / ``to do``), ``content``.
    meta : dict
    """

    sections: list
    checklist: pd.DataFrame
    meta: dict
    title: str = "lnmkit cohort report"
    forbidden: list = field(default_factory=list, repr=False)

    @property
    def todo(self):
        """list of str: checklist items the analyst still has to write."""
        c = self.checklist
        todo = c[c["status"] == "to do"]
        return [f"{i}: {t}" for i, t in zip(todo.index, todo["topic"])]

    @property
    def images(self):
        """dict of str to bytes: every PNG by name."""
        return {f"{s.key}_{k}": v for s in self.sections for k, v in s.images.items()}

    def _fragment(self):
        line = f"lnmkit {self.meta.get('lnmkit_version', '')} · created {self.meta.get('created_utc', '')} · " \
               f"data {self.meta.get('data_hash', '')}"
        return fragment(self.title, line, self.sections)

    def to_html(self):
        """One self-contained HTML document (str), privacy-checked."""
        text = page(self.title, self._fragment())
        check_privacy(text, self.forbidden, where="CohortReport")
        return text

    def save(self, path):
        """Write the report as one HTML file; returns its path."""
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
            with atomic_path(folder / f"cohort_{name}.png") as tmp:
                Path(tmp).write_bytes(png)
            out.append(folder / f"cohort_{name}.png")
        return out

    def _repr_html_(self):
        text = self._fragment()
        check_privacy(text, self.forbidden, where="CohortReport")
        return text

    def __repr__(self):
        filled = int((self.checklist["status"] == "filled").sum())
        return (f"<CohortReport: {len(self.sections)} sections, TRIPOD+AI {filled}/{len(self.checklist)} items "
                f"filled, {len(self.todo)} to do>")


def _result_section(key, title, results):
    images, body = {}, []
    for n, (name, res) in enumerate(results.items()):
        body.append(f"<h3>{html.escape(str(name))}</h3>")
        if hasattr(res, "__repr__") and not isinstance(res, pd.DataFrame):
            body.append(f"<p class=\"note\"><code>{html.escape(repr(res))}</code></p>")
        table = res if isinstance(res, pd.DataFrame) else getattr(res, "table", None)
        if callable(table):
            table = table()
        if isinstance(table, pd.Series):
            table = table.to_frame()
        if isinstance(table, pd.DataFrame):
            body.append(table_html(table, digits=4))
        if hasattr(res, "plot") and not isinstance(res, pd.DataFrame):
            import matplotlib.pyplot as plt

            try:
                fig = res.plot()
            except (TypeError, ValueError) as err:
                body.append(f"<p class=\"note\">No plot: {html.escape(str(err))}</p>")
                continue
            if isinstance(fig, plt.Figure):
                images[f"{n}"] = figure_png(fig)
                body.append(img_tag(images[f"{n}"], f"{name}"))
    return Section(key, title, "".join(body), images)


def _describe_model(model):
    params = model.get_params(deep=False) if hasattr(model, "get_params") else {}
    shown = {k: v for k, v in params.items() if not hasattr(v, "fit")}
    return f"{type(model).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


def cohort_report(models, fusion_table, outcomes, *, performance=None, validation=None, provenance=None,
                  crossfit=None, endpoint="os", otc_threshold=0.5, explain_models=True, outcome_definition=None,
                  internal_validation=None, title="lnmkit cohort report", max_sampled=50):
    """Build the cohort's model report.

    Parameters
    ----------
    models : dict of str to estimator
        Fitted final models by name (``{"lnm": ..., "survival": ...}``).
    fusion_table : FusionTable or pandas.DataFrame
        The patients the models were developed on (indexed by patient_id).
    outcomes : pandas.DataFrame or lnmkit.Cohort
        ``pn_status`` and survival columns (``<endpoint>_months`` / ``_event``).
    performance : dict of str to result, optional
        Honest (out-of-fold / nested) performance results by name, e.g. lnmkit
        evaluation objects (``BinaryEvaluation``, ``ConcordanceResult``,
        ``compare_models`` results) or DataFrames; each is shown with its
        ``.table`` and ``.plot()``. The report never computes in-sample metrics.
    validation : dict of str to result, optional
        Internal validation results (e.g. nomogram ``validate`` / ``calibrate``).
    provenance : dict, optional
        Column -> modality when ``fusion_table`` has none.
    crossfit : lnmkit.mil.CrossFitResult, optional
        For the OTC view (out-of-fold ``otc_score``, tile contributions).
    endpoint : str, default="os"
    otc_threshold : float, default=0.5
    explain_models : bool, default=True
        Add beeswarm, bar and modality-share views of every model.
    outcome_definition : str, optional
        Free text for TRIPOD+AI item 8 (default: derived from the columns).
    internal_validation : str, optional
        How performance was estimated (e.g. "nested 5 x 5 cross-validation by
        patient"), for item 12.
    title : str
    max_sampled : int, default=50
        Patients explained for models that need the sampled explainer (random
        survival forests): a random subset, since each costs seconds.

    Returns
    -------
    CohortReport
    """
    from lnmkit.explain import explain, modality_shap, otc_flags, plot_bar, plot_beeswarm, provenance_of
    from lnmkit.explain._shap import _frame_of, model_spec
    from lnmkit.report._patient import _as_models, _features, _package_versions, _scorable, _version

    models = _as_models(models)
    frame = _frame_of(fusion_table).copy()
    frame.index = frame.index.astype(str)
    if hasattr(outcomes, "outcomes") and not isinstance(outcomes, pd.DataFrame):
        outcomes = outcomes.outcomes
    outcomes = outcomes.copy()
    outcomes.index = outcomes.index.astype(str)
    prov_src = provenance if provenance is not None else getattr(fusion_table, "provenance", None)
    prov = provenance_of(prov_src) if prov_src is not None else {}
    sections, items = [], {}
    n = len(frame)
    o = outcomes.reindex(frame.index)

    # ------------------------------------------------------------------ participants
    rows = [("patients", n)]
    lnm_n = None
    if "pn_status" in o.columns:
        status = o["pn_status"].astype("string").str.upper()
        lnm_n = int(status.eq("PN+").sum())
        rows += [("pN+", lnm_n), ("pN0", int(status.eq("PN0").sum())), ("pN unknown", int(status.isna().sum()))]
    tcol, ecol = f"{endpoint}_months", f"{endpoint}_event"
    n_events = None
    if {tcol, ecol} <= set(o.columns):
        ev = pd.to_numeric(o[ecol], errors="coerce")
        n_events = int(ev.sum())
        t = pd.to_numeric(o[tcol], errors="coerce")
        rows += [(f"{endpoint.upper()} events", n_events), (f"median {endpoint.upper()} follow-up (months)",
                                                            round(float(t.median()), 1))]
    part = pd.DataFrame(rows, columns=["", "n"]).set_index("")
    sections.append(Section("participants", "Participants and outcomes", table_html(part)))
    n_pred = {role: len(_features(m, frame)) for role, m in models.items()}
    parts = [f"{n} patients"]
    if lnm_n is not None:
        parts.append(f"{lnm_n} pN+ ({lnm_n / max(n, 1):.0%})")
    if n_events is not None:
        parts.append(f"{n_events} {endpoint.upper()} events")
    epv = "; ".join(f"{role}: {len(_features(m, frame))} predictors" +
                    (f", {((lnm_n if role == 'lnm' else n_events) or 0) / max(n_pred[role], 1):.1f} events per "
                     "predictor" if (lnm_n if role == "lnm" else n_events) is not None else "")
                    for role, m in models.items())
    items["10"] = ", ".join(parts) + ". " + epv
    items["22"] = items["10"]
    if outcome_definition is None:
        defs = []
        if lnm_n is not None:
            defs.append("LNM: pathological nodal status (pN+ vs pN0) from 'pn_status'")
        if n_events is not None:
            defs.append(f"{endpoint.upper()}: time '{tcol}' (months), event '{ecol}'")
        outcome_definition = "; ".join(defs)
    if outcome_definition:
        items["8"] = outcome_definition

    # ------------------------------------------------------------------ missing data
    used = sorted({c for m in models.values() for c in _features(m, frame)}, key=list(frame.columns).index)
    miss = pd.DataFrame({"modality": [prov.get(c, "") for c in used],
                         "missing": [int(frame[c].isna().sum()) for c in used],
                         "missing %": [round(100 * float(frame[c].isna().mean()), 1) for c in used]},
                        index=pd.Index(used, name="predictor"))
    sections.append(Section("missing", "Predictors and missing data", table_html(miss)))
    items["9"] = f"{len(used)} predictors: " + ", ".join(f"{c} ({prov.get(c, '?')})" for c in used)
    handling = []
    for role, m in models.items():
        kind = type(m).__name__
        if hasattr(m, "booster_") or "XGB" in kind:
            handling.append(f"{role}: {kind} learns a default direction for missing values")
        elif hasattr(m, "encoder_"):
            handling.append(f"{role}: {kind} imputes median / most frequent level inside each training fold")
        else:
            handling.append(f"{role}: {kind} needs complete cases")
    items["11"] = f"{int(miss['missing'].gt(0).sum())} predictor(s) with missing values (table above). " + \
        "; ".join(handling)

    # ------------------------------------------------------------------ model specification
    spec_rows = [(role, _describe_model(m), model_hash(m)) for role, m in models.items()]
    spec = pd.DataFrame(spec_rows, columns=["role", "model", "hash"]).set_index("role")
    sections.append(Section("models", "Model specification", table_html(spec)))
    items["23"] = "; ".join(f"{r}: {d}" for r, d, _ in spec_rows)
    items["12"] = items["23"] + (f". Internal validation: {internal_validation}" if internal_validation else "")
    scales = []

    # ------------------------------------------------------------------ performance / validation
    if performance:
        sections.append(_result_section("performance", "Performance (out-of-fold)", performance))
        items["24"] = "See 'Performance': " + ", ".join(map(str, performance))
    if validation:
        sections.append(_result_section("validation", "Internal validation", validation))
        if not internal_validation:
            items["12"] += ". Internal validation: see 'Internal validation'"

    # ------------------------------------------------------------------ explanations
    if explain_models:
        for role, m in models.items():
            feats = _features(m, frame)
            X = frame[feats]
            X = X[_scorable(m, X, "cohort_report")]
            background = X
            if model_spec(m, X).kind == "sampled" and len(X) > max_sampled:
                # the sampled explainer costs seconds per patient: a random subset stands for the cohort
                X = X.sample(max_sampled, random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                ex = explain(m, X, background=background, n_background=30, n_permutations=6)
            scales.append(f"{role}: {ex.output_names}")
            images = {"beeswarm": figure_png(plot_beeswarm(ex)), "bar": figure_png(plot_bar(ex))}
            body = ["<div class=\"row\">", img_tag(images["beeswarm"], "SHAP beeswarm"),
                    img_tag(images["bar"], "mean |SHAP|")]
            if prov:
                mod = modality_shap(ex, prov)
                images["modality"] = figure_png(mod.plot())
                body.append(img_tag(images["modality"], "modality share"))
                body.append("</div>")
                body.append(table_html(mod.shares().mean(axis=0).rename("mean share of |SHAP|").to_frame()))
            else:
                body.append("</div>")
            sections.append(Section(f"explain_{role}", f"What drives the {role} model (SHAP, {ex.output_names})",
                                    "".join(body), images))
        items["27"] = ("SHAP values (exact TreeSHAP / linear SHAP, or a permutation sampler for forests) per "
                       "patient and per modality; slide SHAP spread over tiles in patient reports")
    items["15"] = ("; ".join(scales) + ". " if scales else "") + "LNM output: probability of pN+"

    # ------------------------------------------------------------------ OTC
    oof = getattr(crossfit, "oof", None)
    otc_col = next((c for c in frame.columns if "otc_score" in c), None)
    if "pn_status" in outcomes.columns and (otc_col is not None or (oof is not None and "otc_score" in oof)):
        scores, col = (frame, otc_col) if otc_col is not None else (oof, "otc_score")
        otc = otc_flags(scores, outcomes, getattr(crossfit, "attention", None), threshold=otc_threshold,
                        score_column=col, endpoint=endpoint)
        png = figure_png(otc.plot())
        lr = otc.logrank
        txt = (f"{int(otc.table['flagged'].sum())} of {len(otc.table)} pN0 patients flagged (OTC score ≥ "
               f"{otc_threshold:.2f}).")
        if lr:
            txt += (f" Log-rank test of {endpoint.upper()}, flagged vs unflagged: χ² = {lr['statistic']:.2f}, "
                    f"p = {lr['p']:.3g} ({lr['events_flagged']}/{lr['n_flagged']} vs "
                    f"{lr['events_unflagged']}/{lr['n_unflagged']} events).")
        sections.append(Section("otc", "Occult tumour cells in pN0: prognosis of the flag",
                                f"<p>{html.escape(txt)}</p>" + img_tag(png, "KM of OTC flag"), {"km": png}))

    # ------------------------------------------------------------------ checklist
    items["20"] = f"lnmkit {_version()}; " + ", ".join(f"{k} {v}" for k, v in _package_versions().items())
    items["7"] = "Fusion table built by lnmkit (data hash " + frame_hash(frame) + ")"
    checklist = pd.DataFrame(
        [{"item": i, "topic": topic, "status": "filled" if i in items else "to do",
          "content": items.get(i, "to be written by the analyst")} for i, topic in TRIPOD_ITEMS]).set_index("item")
    status = "".join(
        f"<tr><td class=\"t\">{html.escape(i)}</td><td class=\"t\">{html.escape(r['topic'])}</td>"
        f"<td class=\"t {'done' if r['status'] == 'filled' else 'todo'}\">{html.escape(r['status'])}</td>"
        f"<td class=\"t\">{html.escape(r['content'])}</td></tr>" for i, r in checklist.iterrows())
    sections.append(Section("tripod", "TRIPOD+AI checklist",
                            "<p class=\"note\">Filled from what this run knows; items marked 'to do' need the "
                            "analyst.</p><table><thead><tr><th class=\"t\">item</th><th class=\"t\">topic</th>"
                            f"<th class=\"t\">status</th><th class=\"t\">content</th></tr></thead><tbody>{status}"
                            "</tbody></table>"))
    meta = {"lnmkit_version": _version(), "data_hash": frame_hash(frame),
            "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    sids = set()
    att = getattr(crossfit, "attention", None)
    if att is not None:
        sids = set(att["slide_id"].astype(str))
    return CohortReport(sections, checklist, meta, title, forbidden_strings({s: None for s in sids}))
