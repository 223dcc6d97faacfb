"""One survival analysis of a table: fit a model, cross-validate it by patient, evaluate the
out-of-fold predictions, and write the results (what ``lnmkit survival`` runs)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lnmkit.exceptions import ModelInputError

__all__ = ["SURVIVAL_MODELS", "get_survival_model", "survival_analysis", "SurvivalAnalysis"]


def _registry():
    from lnmkit.models import (CoxPH, GradientBoostedSurvival, RandomSurvivalForest, XGBAFTSurvival,
                               XGBCoxSurvival)

    return {"cox": CoxPH, "rsf": RandomSurvivalForest, "gbs": GradientBoostedSurvival, "xgb-cox": XGBCoxSurvival,
            "xgb-aft": XGBAFTSurvival}


#: Names of the survival models :func:`get_survival_model` builds.
SURVIVAL_MODELS = ("cox", "gbs", "rsf", "xgb-aft", "xgb-cox")


def get_survival_model(name, **params):
    """A survival model by name.

    Parameters
    ----------
    name : {"cox", "gbs", "rsf", "xgb-aft", "xgb-cox"}
        :class:`~lnmkit.models.CoxPH`, :class:`~lnmkit.models.GradientBoostedSurvival`,
        :class:`~lnmkit.models.RandomSurvivalForest`, :class:`~lnmkit.models.XGBAFTSurvival`,
        :class:`~lnmkit.models.XGBCoxSurvival`.
    **params
        Constructor parameters.

    Returns
    -------
    estimator

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones).
    """
    models = _registry()
    if name not in models:
        raise ValueError(f"get_survival_model: model must be one of {sorted(models)}; got {name!r} instead.")
    return models[name](**params)


@dataclass(frozen=True)
class SurvivalAnalysis:
    """Fitted model and cross-validated evaluation of one survival analysis.

    Attributes
    ----------
    model : estimator
        Fitted on every patient.
    predictions : pandas.DataFrame
        Out-of-fold ``fold``, ``risk`` and ``S(t)`` at each horizon (:func:`lnmkit.models.cross_val_survival`).
    concordance : ConcordanceResult
        Harrell's C of the out-of-fold risk (pooled over folds).
    risk_groups : RiskGroupResult
        Kaplan-Meier by tertile of out-of-fold risk.
    calibration : dict of float -> SurvivalCalibrationResult
        Out-of-fold calibration at each horizon.
    ph_test : PHTestResult or None
        For Cox models, on the final fit.
    files : dict of str -> pathlib.Path
        What was written.
    """

    model: object
    predictions: pd.DataFrame
    concordance: object
    risk_groups: object
    calibration: dict
    ph_test: object = None
    files: dict = field(default_factory=dict)

    @property
    def table(self):
        """The headline numbers, one row per metric (``metric``, ``value``)."""
        c = self.concordance
        rows = [("patients", c.n), ("events", c.n_events), ("harrell_c", c.estimate), ("harrell_c_lower_95", c.lower),
                ("harrell_c_upper_95", c.upper), ("logrank_p_tertiles", self.risk_groups.logrank_p)]
        for h, cal in self.calibration.items():
            rows += [(f"calibration_slope_t{h:g}", cal.slope), (f"ici_t{h:g}", cal.ici), (f"e90_t{h:g}", cal.e90)]
        if self.ph_test is not None:
            rows.append(("ph_global_p", float(self.ph_test.table.loc["GLOBAL", "p"])))
        return pd.DataFrame(rows, columns=["metric", "value"]).set_index("metric")

    def to_frame(self):
        """The headline table (a copy)."""
        return self.table.copy()

    def __repr__(self):
        c = self.concordance
        return (f"<SurvivalAnalysis: {type(self.model).__name__}, {c.n} patients, {c.n_events} events, "
                f"cross-validated C={c.estimate:.3f} [{c.lower:.3f}, {c.upper:.3f}]>")

    def _repr_html_(self):
        return f"<p><code>{self!r}</code></p>" + self.table.to_html(float_format=lambda v: f"{v:.4g}")

    def plot(self, ax=None):
        """Kaplan-Meier curves by tertile of out-of-fold risk (see :meth:`RiskGroupResult.plot`)."""
        return self.risk_groups.plot(ax=ax)


def _frame_and_target(data, time, event, features, where):
    from sksurv.util import Surv

    missing = [c for c in (time, event) if c not in data.columns]
    if missing:
        raise ModelInputError(f"{where}: column(s) {missing} are not in the table; its columns are "
                              f"{list(data.columns)[:20]}.")
    bad = data[[time, event]].isna().any(axis=1)
    if bad.any():
        raise ModelInputError(f"{where}: {int(bad.sum())} patient(s) have no {time!r} or {event!r}, e.g. "
                              f"{[str(i) for i in data.index[bad][:5]]}; drop them first.")
    ev = pd.to_numeric(data[event], errors="coerce")
    odd = ~ev.isin([0, 1])
    if odd.any():
        raise ModelInputError(f"{where}: column {event!r} must be 0/1; got {data[event][odd].iloc[0]!r} for "
                              f"patient {str(data.index[odd][0])!r}.")
    cols = [c for c in data.columns if c not in (time, event)] if features is None else list(features)
    unknown = [c for c in cols if c not in data.columns]
    if unknown:
        raise ModelInputError(f"{where}: feature column(s) {unknown} are not in the table.")
    X = data[cols].copy()
    for c in cols:
        if X[c].dtype == object or pd.api.types.is_string_dtype(X[c].dtype):
            X[c] = X[c].astype("category")
    y = Surv.from_arrays(ev.to_numpy(dtype=bool), pd.to_numeric(data[time], errors="coerce").to_numpy(dtype=float))
    return X, y


def survival_analysis(data, time, event, *, model="cox", features=None, horizons=None, n_splits=5, impute=None,
                      random_state=0, out_dir=None, progress=False):
    """Fit a survival model, cross-validate it by patient and evaluate the out-of-fold predictions.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per patient (indexed by ``patient_id``), with the time and event columns.
    time, event : str
        Column names of the follow-up time (> 0) and the event indicator (0/1).
    model : str or estimator, default="cox"
        A name of :data:`SURVIVAL_MODELS` or an lnmkit survival model.
    features : list of str, optional
        Default: every other column (text columns become categoricals).
    horizons : list of float, optional
        Times for out-of-fold calibration (e.g. 36 and 60 months).
    n_splits : int, default=5
    impute : {None, "median"}, default=None
        Passed to models that take it (Cox, forests); XGBoost handles missing values itself.
    random_state : int, default=0
    out_dir : str or path-like, optional
        Folder for ``metrics.csv``, ``predictions.csv``, ``km.png``, ``calibration_t<h>.png``
        and, for Cox, ``summary.csv``, ``ph_test.csv``, ``ph_test.png``; for Cox and the
        XGBoost models ``model.json`` (the model fitted on every patient;
        :func:`lnmkit.models.load_model` reads it).
    progress : bool, default=False

    Returns
    -------
    SurvivalAnalysis

    Raises
    ------
    lnmkit.exceptions.ModelInputError
        On missing columns, missing outcomes or unusable values.
    """
    import matplotlib.pyplot as plt

    from sklearn.base import clone

    from lnmkit._io import atomic_path
    from lnmkit.evaluation._survival_calibration import survival_calibration
    from lnmkit.evaluation._survival_groups import km_by_risk_group
    from lnmkit.evaluation._survival_metrics import concordance_index
    from lnmkit.models import CoxPH, cross_val_survival

    where = "survival_analysis"
    X, y = _frame_and_target(data, time, event, features, where)
    X.index = X.index.astype(str)
    if isinstance(model, str):
        params = {"random_state": random_state} if model != "cox" else {}
        if impute is not None and model in ("cox", "rsf", "gbs"):
            params["impute"] = impute
        estimator = get_survival_model(model, **params)
    else:
        estimator = model
    fitted = clone(estimator).fit(X, y)
    hs = [] if horizons is None else [float(h) for h in horizons]
    oof = cross_val_survival(estimator, X, y, times=hs or None, n_splits=n_splits, random_state=random_state,
                             progress=progress)
    conc = concordance_index(y, oof["risk"].to_numpy(), random_state=random_state)
    groups = km_by_risk_group(y, oof["risk"].to_numpy())
    cal = {h: survival_calibration(y, oof[f"S({h:g})"].clip(1e-12, 1 - 1e-12).to_numpy(), h) for h in hs}
    ph = fitted.ph_test() if isinstance(fitted, CoxPH) else None
    files = {}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)

        def _csv(name, frame):
            with atomic_path(out / name) as tmp:
                frame.to_csv(tmp)
            files[name] = out / name

        def _png(name, fig):
            with atomic_path(out / name) as tmp:
                fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
            plt.close(fig)
            files[name] = out / name

        result = SurvivalAnalysis(fitted, oof, conc, groups, cal, ph)
        _csv("metrics.csv", result.table)
        _csv("predictions.csv", oof)
        _png("km.png", groups.plot())
        for h, c in cal.items():
            _png(f"calibration_t{h:g}.png", c.plot())
        if ph is not None:
            _csv("summary.csv", fitted.summary_)
            _csv("ph_test.csv", ph.table)
            _png("ph_test.png", ph.plot())
        if hasattr(fitted, "save"):
            files["model.json"] = fitted.save(out / "model.json")
        with atomic_path(out / "run.json") as tmp:
            Path(tmp).write_text(json.dumps({"model": type(fitted).__name__, "params": _jsonable(fitted.get_params()),
                                             "time": time, "event": event, "features": list(X.columns),
                                             "horizons": hs, "n_splits": n_splits,
                                             "random_state": random_state}, indent=2) + "\n", encoding="utf-8")
        files["run.json"] = out / "run.json"
    return SurvivalAnalysis(fitted, oof, conc, groups, cal, ph, files)


def _jsonable(params):
    return {k: (v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)) for k, v in params.items()
            if not isinstance(v, np.ndarray)}
