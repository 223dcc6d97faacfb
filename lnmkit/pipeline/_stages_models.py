"""Patient-level stages: nested MIL slide scores, fusion table, final models, nested evaluation."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from lnmkit._io import atomic_write_text
from lnmkit.exceptions import NomogramInputError
from lnmkit.pipeline._stage import StageResult

__all__ = ["run_mil_nested", "run_fusion", "run_models", "run_evaluation", "load_nested", "load_fusion"]

_SURVIVAL_MODELS = {"cox": "CoxPH", "random-forest": "RandomSurvivalForest",
                    "gradient-boosting": "GradientBoostedSurvival", "xgb-cox": "XGBCoxSurvival"}


def _csv(frame, path, **kwargs):
    from lnmkit._io import atomic_path

    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)
    return Path(path)


def _mil_estimator(config):
    from lnmkit.mil import MILClassifier

    return MILClassifier(tasks=tuple(config.mil.tasks), random_state=int(config.seed),
                         **config.mil.estimator_params())


# -- nested MIL slide scores -----------------------------------------------------------------------

def run_mil_nested(ctx) -> StageResult:
    """Slide scores out-of-fold at both levels, on the evaluation's outer folds."""
    from lnmkit.features import open_features
    from lnmkit.fusion import nested_cross_fit
    from lnmkit.mil import load_bags

    config = ctx.config
    cohort = ctx.cohort()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # load_bags' notes on slides without tiles are the MIL stage's
        bags = load_bags(open_features(ctx.output("features", "run")), cohort, progress=False)
    bags = {p: b for p, b in bags.items() if p in cohort.outcomes.index}
    columns = tuple(c for c, task in (("lnm_score", "lnm"), ("otc_score", "otc")) if task in config.mil.tasks)
    nested = nested_cross_fit(bags, cohort, n_splits=config.evaluation.n_splits,
                              inner_splits=config.evaluation.inner_splits, estimator=_mil_estimator(config),
                              columns=columns or ("lnm_score",), random_state=int(config.seed),
                              progress=ctx.progress)
    nested = _with_bagless_patients(nested, cohort.clinical.index.astype(str))
    out = ctx.stage_dir
    _csv(nested.folds.rename("fold").rename_axis("patient_id").to_frame(), out / "folds.csv")
    _csv(nested.final.rename_axis("patient_id"), out / "final.csv")
    for k in nested.train:
        _csv(nested.train[k].rename_axis("patient_id"), out / "train" / f"fold_{k}.csv")
        _csv(nested.test[k].rename_axis("patient_id"), out / "test" / f"fold_{k}.csv")
    meta = {k: v for k, v in nested.meta.items() if k != "final_crossfit"}
    atomic_write_text(out / "meta.json", json.dumps({"source": nested.source, **meta}, indent=2, default=str))
    return StageResult({"nested": out / "final.csv", "folds": out / "folds.csv", "train": out / "train",
                        "test": out / "test", "meta": out / "meta.json"},
                       {"n_patients": int(len(nested.final)), "n_outer": int(nested.folds.nunique()),
                        "columns": list(nested.columns)})


def _with_bagless_patients(nested, patients):
    """Give patients without a feature bag an outer fold and missing slide scores.

    The downstream evaluation covers every patient of the cohort; a patient whose
    slides had no usable tile has no slide score in any fold (missing, like any
    other missing value), so adding them cannot leak. They are spread over the
    folds in turn, in patient order.
    """
    from lnmkit.models import NestedFeatures

    missing = [p for p in patients if p not in nested.folds.index.astype(str)]
    if not missing:
        return nested
    folds = nested.folds.copy()
    folds.index = folds.index.astype(str)
    ks = sorted(int(k) for k in folds.unique())
    extra = pd.Series([ks[i % len(ks)] for i in range(len(missing))], index=missing, dtype=folds.dtype)
    folds = pd.concat([folds, extra]).rename(nested.folds.name)
    blank = pd.DataFrame(np.nan, index=pd.Index(missing), columns=nested.columns)

    def add(frame, ids):
        return pd.concat([frame, blank.loc[list(ids)]]) if len(ids) else frame

    train = {k: add(nested.train[k], [p for p in missing if extra[p] != k]) for k in nested.train}
    test = {k: add(nested.test[k], [p for p in missing if extra[p] == k]) for k in nested.test}
    meta = {**nested.meta, "patients_without_bags": missing}
    return NestedFeatures(folds=folds, train=train, test=test, final=add(nested.final, missing),
                          source=nested.source, meta=meta)


def load_nested(stage_dir):
    """The :class:`lnmkit.models.NestedFeatures` written by the ``mil_nested`` stage.

    Parameters
    ----------
    stage_dir : str or path-like

    Returns
    -------
    lnmkit.models.NestedFeatures
    """
    from lnmkit.models import NestedFeatures

    stage_dir = Path(stage_dir)

    def read(path):
        return pd.read_csv(path, index_col="patient_id", dtype={"patient_id": str})

    folds = read(stage_dir / "folds.csv")["fold"].astype(int)
    train = {int(p.stem.removeprefix("fold_")): read(p) for p in sorted((stage_dir / "train").glob("fold_*.csv"))}
    test = {int(p.stem.removeprefix("fold_")): read(p) for p in sorted((stage_dir / "test").glob("fold_*.csv"))}
    meta = json.loads((stage_dir / "meta.json").read_text())
    return NestedFeatures(folds=folds, train=train, test=test, final=read(stage_dir / "final.csv"),
                          source=meta.pop("source", "slide"), meta=meta)


# -- fusion ----------------------------------------------------------------------------------------

def run_fusion(ctx) -> StageResult:
    """One row per patient: encoded clinical table, radiology features, out-of-fold slide scores."""
    from lnmkit.fusion import build_fusion_table

    cohort = ctx.cohort()
    slide = radiology = None
    if "mil_nested" in ctx.records:
        slide = load_nested(ctx.output("mil_nested", "nested").parent)
    elif "mil" in ctx.records and ctx.config.mil.enabled:
        oof = pd.read_csv(ctx.output("mil", "oof_scores"), index_col="patient_id", dtype={"patient_id": str})
        slide = oof[[c for c in oof.columns if c in ("lnm_score", "otc_score", "risk_score", "fold")]]
    if "radiology" in ctx.records:
        radiology = pd.read_csv(ctx.output("radiology", "features"), index_col="patient_id",
                                dtype={"patient_id": str})
    table = build_fusion_table(cohort, slide=slide, radiology=radiology)
    path = table.save(ctx.stage_dir / "fusion_table.csv")
    _csv(table.describe(), ctx.stage_dir / "dictionary.csv")
    counts = pd.Series(table.provenance).value_counts().to_dict()
    return StageResult({"table": path, "sidecar": Path(str(path) + ".json"),
                        "dictionary": ctx.stage_dir / "dictionary.csv"},
                       {"n_patients": int(len(table)), "columns": {k: int(v) for k, v in counts.items()}})


def load_fusion(ctx):
    """The fusion table of this run, with the cohort's outcomes attached."""
    from lnmkit.fusion import FusionTable

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = FusionTable.load(ctx.output("fusion", "table"))
    return FusionTable(table.frame, table.provenance, table.indicators, table.dictionary, table.slide_source,
                       outcomes=ctx.cohort().outcomes)


def _lnm_estimator(config):
    from lnmkit.models import LNMLogisticRegression, LNMXGBClassifier

    if config.models.lnm == "xgboost":
        return LNMXGBClassifier(random_state=int(config.seed))
    return LNMLogisticRegression(penalty="l2", random_state=int(config.seed))


def _survival_estimator(config):
    import lnmkit.models as models

    cls = getattr(models, _SURVIVAL_MODELS[config.models.survival])
    if config.models.survival == "cox":
        return cls(penalizer=config.models.penalizer, impute="median")
    return cls(random_state=int(config.seed)) if "random_state" in cls().get_params() else cls()


class _FoldSafe(TransformerMixin, BaseEstimator):
    """Keep a survival model fittable on every training fold of a small cohort.

    Learned from the training patients' X only (never the outcome): columns
    constant there are dropped (no effect to estimate), and category levels
    absent there become missing (the model then imputes them). A rare level, one
    patient with ``tumour_site = cardia``, is otherwise absent from an outer
    training fold, and lnmkit's survival models refuse an unseen level.
    """

    def fit(self, X, y=None):
        self.columns_ = [c for c in X.columns if X[c].nunique(dropna=True) > 1]
        self.levels_ = {c: set(X[c].dropna().astype(str)) for c in self.columns_
                        if isinstance(X[c].dtype, pd.CategoricalDtype)}
        return self

    def transform(self, X):
        X = X[self.columns_].copy()
        for column, levels in self.levels_.items():
            values = X[column]
            unseen = values.notna() & ~values.astype(str).isin(levels)
            if unseen.any():
                X[column] = values.mask(unseen)
        return X


def _survival_evaluator(config):
    """The survival model inside the nested evaluation, behind :class:`_FoldSafe`."""
    from sklearn.pipeline import make_pipeline

    return make_pipeline(_FoldSafe(), _survival_estimator(config))


def _survival_target(cohort, endpoint, index):
    """(patients with a complete ``endpoint``, structured target) in ``index`` order."""
    out = cohort.outcomes.reindex(index)
    keep = out[f"{endpoint}_months"].notna() & out[f"{endpoint}_event"].notna()
    patients = index[keep.to_numpy()]
    return patients, cohort.survival(endpoint, patients=patients)


def _varying(frame, columns):
    """``columns`` that take at least two values in ``frame`` (a constant column has no effect to estimate)."""
    return [c for c in columns if c not in frame.columns or frame[c].nunique(dropna=True) > 1]


def _feature_sets(table, stacked=None, patients=None):
    """The default feature sets (clinical, + radiology, + slide, all) without constant columns."""
    from lnmkit.models import default_feature_sets

    frame = table.frame if patients is None else table.frame.loc[patients]
    return {name: _varying(frame, cols) for name, cols in default_feature_sets(table, stacked).items()}


def _feature_columns(table, patients=None):
    sets = _feature_sets(table, patients=patients)
    return sets["all"] if "all" in sets else list(sets.values())[-1]


# -- final models ----------------------------------------------------------------------------------

def run_models(ctx) -> StageResult:
    """Fit the final LNM and survival models on every patient (all fusion columns)."""
    config, cohort = ctx.config, ctx.cohort()
    table = load_fusion(ctx)
    columns = _feature_columns(table)
    outputs, summary = {}, {"features": columns}
    X = table.frame[columns]
    if "lnm" in config.endpoints.binary:
        y = table.lnm_labels()
        known = y.notna()
        model = _lnm_estimator(config).fit(X[known], y[known].astype(int))
        outputs["lnm"] = model.save(ctx.stage_dir / "lnm_model.json") or ctx.stage_dir / "lnm_model.json"
        summary["lnm"] = {"n": int(known.sum()), "n_pos": int(y[known].sum())}
    for endpoint in config.endpoints.survival:
        patients, y = _survival_target(cohort, endpoint, X.index)
        cols = _varying(X.loc[patients], columns)
        model = _survival_estimator(config).fit(X.loc[patients, cols], y)
        if isinstance(getattr(model, "summary_", None), pd.DataFrame):
            outputs[f"survival_{endpoint}"] = _csv(model.summary_, ctx.stage_dir / f"survival_{endpoint}_summary.csv")
        if hasattr(model, "save"):
            outputs[f"model_{endpoint}"] = model.save(ctx.stage_dir / f"survival_{endpoint}_model.json")
        risk = pd.Series(np.asarray(model.predict(X.loc[patients, cols]), dtype=float), index=patients, name="risk")
        outputs[f"risk_{endpoint}"] = _csv(risk.rename_axis("patient_id").to_frame(),
                                           ctx.stage_dir / f"survival_{endpoint}_risk.csv")
        summary[f"survival_{endpoint}"] = {"n": int(len(patients)), "events": int(y["event"].sum())}
    return StageResult(outputs, summary)


# -- nested evaluation -----------------------------------------------------------------------------

def _save_plot(result, path, **kwargs):
    import matplotlib.pyplot as plt

    fig = result.plot(**kwargs)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def run_evaluation(ctx) -> StageResult:
    """Nested cross-validation of every feature set: AUC (LNM) and C-index (survival) with CIs."""
    from lnmkit.evaluation import compare_survival_models
    from lnmkit.models import compare_models

    config, cohort = ctx.config, ctx.cohort()
    ev = config.evaluation
    table = load_fusion(ctx)
    stacked = load_nested(ctx.output("mil_nested", "nested").parent) if "mil_nested" in ctx.records else None
    outputs, summary = {}, {}
    if "lnm" in config.endpoints.binary:
        cmp = compare_models(table, table.lnm_labels(), _feature_sets(table, stacked),
                             estimator=_lnm_estimator(config), stacked=stacked,
                             n_splits=ev.n_splits, inner_splits=ev.inner_splits, level=ev.level,
                             n_bootstrap=ev.n_bootstrap, missing_outcome="drop", random_state=int(config.seed))
        outputs["lnm_table"] = _csv(cmp.table, ctx.stage_dir / "lnm_comparison.csv")
        outputs["lnm_predictions"] = _csv(cmp.predictions, ctx.stage_dir / "lnm_predictions.csv")
        outputs["lnm_roc"] = _save_plot(cmp, ctx.stage_dir / "lnm_roc.png")
        summary["lnm"] = _rows(cmp.table, "auc", ev.level)
    for endpoint in config.endpoints.survival:
        patients, y = _survival_target(cohort, endpoint, table.index)
        X = table.frame.loc[patients]
        cmp = compare_survival_models(X, y, feature_sets=_feature_sets(table, stacked, patients), stacked=stacked,
                                      estimator=_survival_evaluator(config), n_splits=ev.n_splits,
                                      inner_splits=ev.inner_splits, n_bootstrap=ev.n_bootstrap, level=ev.level,
                                      random_state=int(config.seed))
        outputs[f"survival_{endpoint}_table"] = _csv(cmp.table, ctx.stage_dir / f"survival_{endpoint}_comparison.csv")
        summary[f"survival_{endpoint}"] = _rows(cmp.table, "c", ev.level)
    atomic_write_text(ctx.stage_dir / "summary.json", json.dumps(summary, indent=2, default=_json_number))
    outputs["summary"] = ctx.stage_dir / "summary.json"
    return StageResult(outputs, summary)


def _rows(frame, metric, level):
    """``{model: {metric, lower, upper, n}}`` from a comparison table."""
    pct = int(round(level * 100))
    lower = next((c for c in frame.columns if c.startswith(f"{metric}_lower")), f"{metric}_lower_{pct}")
    upper = next((c for c in frame.columns if c.startswith(f"{metric}_upper")), f"{metric}_upper_{pct}")
    out = {}
    for name, row in frame.iterrows():
        out[str(name)] = {metric: _num(row.get(metric)), "lower": _num(row.get(lower)),
                          "upper": _num(row.get(upper)), "n": _num(row.get("n"))}
    return out


def _num(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def _json_number(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


# -- nomogram --------------------------------------------------------------------------------------

def _nomogram_data(ctx, table, predictors):
    missing = [p for p in predictors if p not in table.frame.columns]
    if missing:
        from lnmkit.exceptions import ConfigError

        raise ConfigError([f"nomogram.predictors: {missing} are not columns of the fusion table "
                           f"({ctx.output('fusion', 'table')}); its columns are {list(table.frame.columns)}"])
    return table.frame[list(predictors)].copy()


def run_nomogram(ctx) -> StageResult:
    """rms-style nomograms (logistic for LNM, Cox for the first survival endpoint), validated by bootstrap.

    A nomogram whose model cannot be fitted on this cohort (a predictor that separates
    the outcome, a predictor with one value, ...) is not fatal: the reason goes to the
    stage summary under ``not_fitted`` and to the log, and the other nomogram and the
    later stages go on.
    """
    from lnmkit.nomogram import write_nomogram

    config, cohort = ctx.config, ctx.cohort()
    nomo = config.nomogram
    table = load_fusion(ctx)
    data = _nomogram_data(ctx, table, nomo.predictors)
    outputs, summary, not_fitted = {}, {}, {}
    splines = [s for s in nomo.splines if s in nomo.predictors] or None
    jobs = []
    if "lnm" in config.endpoints.binary:
        y = table.lnm_labels()
        jobs.append(("lnm", data.assign(pn_positive=y)[y.notna()], "pn_positive", {"kind": "logistic"}))
    if config.endpoints.survival:
        endpoint = config.endpoints.survival[0]
        patients, y = _survival_target(cohort, endpoint, table.index)
        frame = data.loc[patients].assign(time=y["time"], event=y["event"].astype(int))
        jobs.append((endpoint, frame, ("time", "event"), {"kind": "cox", "times": list(nomo.times)}))
    for name, frame, outcome, kind in jobs:
        try:
            report = write_nomogram(frame, list(nomo.predictors), outcome, ctx.stage_dir / name, splines=splines,
                                    impute="median", B=nomo.bootstrap, seed=int(config.seed), **kind)
        except NomogramInputError as exc:
            not_fitted[name] = str(exc)
            warnings.warn(f"nomogram ({name}) not fitted: {exc}", stacklevel=2)
            continue
        outputs[name] = ctx.stage_dir / name
        summary[name] = _validation_summary(report)
    if not_fitted:
        summary["not_fitted"] = not_fitted
    return StageResult(outputs, summary)


def _validation_summary(report):
    if report.validation is None:
        return {}
    frame = report.validation.table
    out = {}
    for index in ("Dxy", "Slope"):
        if index in frame.index:
            row = frame.loc[index]
            out[index] = {k: _num(row.get(k)) for k in ("index_orig", "optimism", "index_corrected")
                          if k in row.index}
    return out


def load_nomogram_model(ctx, kind):
    """Refit the nomogram of ``kind`` (``"lnm"`` or the survival endpoint) for a report (deterministic)."""
    from lnmkit.nomogram import fit_nomogram

    config, cohort = ctx.config, ctx.cohort()
    nomo = config.nomogram
    table = load_fusion(ctx)
    data = _nomogram_data(ctx, table, nomo.predictors)
    splines = [s for s in nomo.splines if s in nomo.predictors] or None
    if kind == "lnm":
        y = table.lnm_labels()
        frame = data.assign(pn_positive=y)[y.notna()]
        return fit_nomogram(frame, list(nomo.predictors), "pn_positive", kind="logistic", splines=splines,
                            impute="median")
    patients, y = _survival_target(cohort, kind, table.index)
    frame = data.loc[patients].assign(time=y["time"], event=y["event"].astype(int))
    return fit_nomogram(frame, list(nomo.predictors), ("time", "event"), kind="cox", times=list(nomo.times),
                        splines=splines, impute="median")


# -- final models in memory (explanations, reports) ------------------------------------------------

def final_models(ctx):
    """``{"lnm": ..., "survival": ...}``: the models read from their JSON files.

    A survival model without a file format (the forests: scikit-survival offers
    none that avoids pickle) is refitted; on the same table with the same
    configuration that gives the same model.
    """
    from lnmkit.models import load_model

    config = ctx.config
    models = {}
    outputs = ctx.records["models"].outputs
    if "lnm" in outputs:
        models["lnm"] = load_model(ctx.output("models", "lnm"))
    if config.endpoints.survival:
        endpoint = config.endpoints.survival[0]
        if f"model_{endpoint}" in outputs:
            models["survival"] = load_model(ctx.output("models", f"model_{endpoint}"))
            return models
        table = load_fusion(ctx)
        columns = _feature_columns(table)
        patients, y = _survival_target(ctx.cohort(), endpoint, table.index)
        cols = _varying(table.frame.loc[patients, columns], columns)
        models["survival"] = _survival_estimator(config).fit(table.frame.loc[patients, cols], y)
    return models


# -- explanations ----------------------------------------------------------------------------------

def run_explanations(ctx) -> StageResult:
    """SHAP values of the final models for every patient, modality shares, global plots."""
    import matplotlib.pyplot as plt

    from lnmkit.explain import explain, modality_shap, plot_bar, plot_beeswarm

    table = load_fusion(ctx)
    outputs, summary = {}, {}
    for role, model in final_models(ctx).items():
        names = getattr(model, "feature_names_in_", None)
        features = list(table.frame.columns) if names is None else [str(n) for n in names]
        X = table.frame[features]
        expl = explain(model, X, random_state=int(ctx.config.seed))
        values = pd.DataFrame(np.asarray(expl.values), index=X.index, columns=list(expl.feature_names))
        values.insert(0, "base_value", np.asarray(expl.base_values, dtype=float).reshape(len(X), -1)[:, 0])
        outputs[f"{role}_shap"] = _csv(values.rename_axis("patient_id"), ctx.stage_dir / f"{role}_shap.csv")
        shares = modality_shap(expl, table.provenance)
        share_table = getattr(shares, "table", shares)
        outputs[f"{role}_modality"] = _csv(share_table, ctx.stage_dir / f"{role}_modality_shap.csv")
        for name, plot in (("beeswarm", plot_beeswarm), ("bar", plot_bar)):
            fig = plot(expl)
            fig.savefig(ctx.stage_dir / f"{role}_{name}.png", dpi=110, bbox_inches="tight")
            plt.close(fig)
            outputs[f"{role}_{name}"] = ctx.stage_dir / f"{role}_{name}.png"
        mean_abs = values.drop(columns="base_value").abs().mean().sort_values(ascending=False)
        summary[role] = {"top_features": [str(c) for c in mean_abs.index[:5]]}
    return StageResult(outputs, summary)


# -- reports ---------------------------------------------------------------------------------------

def _read_table(path):
    return pd.read_csv(path, index_col=0)


def run_reports(ctx) -> StageResult:
    """The cohort's model report (``report.html``) and patient reports, self-contained HTML."""
    from lnmkit.features import open_features
    from lnmkit.mil import CrossFitResult
    from lnmkit.report import ReportContext, cohort_report

    config, cohort = ctx.config, ctx.cohort()
    table = load_fusion(ctx)
    models = final_models(ctx)
    endpoint = config.endpoints.survival[0] if config.endpoints.survival else "os"
    crossfit = CrossFitResult.load(ctx.output("mil", "oof_scores").parent) if "mil" in ctx.records else None
    performance, validation = {}, {}
    if "evaluation" in ctx.records:
        outputs = ctx.records["evaluation"].outputs
        if "lnm_table" in outputs:
            performance["LNM: nested cross-validation by feature set"] = _read_table(ctx.output("evaluation",
                                                                                                "lnm_table"))
        for name in outputs:
            if name.startswith("survival_") and name.endswith("_table"):
                ep = name.removeprefix("survival_").removesuffix("_table")
                performance[f"{ep.upper()}: nested cross-validation by feature set"] = _read_table(
                    ctx.output("evaluation", name))
    nomograms = {}
    if "nomogram" in ctx.records:
        for kind in ctx.records["nomogram"].outputs:
            folder = ctx.output("nomogram", kind)
            if (folder / "validate.csv").is_file():
                validation[f"nomogram ({kind}): bootstrap validation"] = _read_table(folder / "validate.csv")
            nomograms[kind] = load_nomogram_model(ctx, kind)
        for kind, reason in ctx.records["nomogram"].summary.get("not_fitted", {}).items():
            validation[f"nomogram ({kind}): not fitted"] = pd.DataFrame({"reason": [reason]})
    ev = config.evaluation
    how = (f"nested {ev.n_splits} x {ev.inner_splits} cross-validation split by patient; slide scores "
           "out-of-fold at both levels" if config.evaluation.enabled else None)
    report = cohort_report(models, table, cohort, performance=performance or None, validation=validation or None,
                           crossfit=crossfit, endpoint=endpoint, internal_validation=how)
    path = report.save(ctx.stage_dir / "report.html")
    outputs = {"report": Path(path) if path is not None else ctx.stage_dir / "report.html"}
    patients = list(config.reports.patients) or list(table.index[: config.reports.n_patients])
    unknown = [p for p in patients if p not in table.index]
    if unknown:
        from lnmkit.exceptions import ConfigError

        raise ConfigError([f"reports.patients: {unknown} are not patients of the cohort"])
    if patients:
        context = ReportContext(models, table, outcomes=cohort, crossfit=crossfit, slides=cohort,
                                tile_size_level0=open_features(ctx.output("features", "run"))
                                if "features" in ctx.records else None,
                                nomogram=nomograms.get("lnm", nomograms.get(endpoint)), endpoint=endpoint)
        for pid in patients:
            context.patient_report(pid).save(ctx.stage_dir / "patients" / f"{pid}.html")
        outputs["patients"] = ctx.stage_dir / "patients"
    return StageResult(outputs, {"n_patient_reports": len(patients)})
