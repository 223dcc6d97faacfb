"""Binary (LNM) evaluation: discrimination, threshold metrics, calibration, decision curve.

Every piece is a frozen result object with ``.table``, ``.plot(ax=None)`` returning
a matplotlib Figure and ``_repr_html_``; :func:`evaluate_binary` gathers them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit, logit
from scipy.stats import norm

from lnmkit.evaluation._delong import auc_delong
from lnmkit.exceptions import ModelInputError

__all__ = ["BinaryEvaluation", "CalibrationResult", "DecisionCurveResult", "RocResult", "ThresholdResult",
           "calibration", "decision_curve", "evaluate_binary", "roc_auc", "threshold_metrics", "youden_threshold"]


def _pct(level):
    return int(round(level * 100))


def _fig_ax(ax, size=(4.5, 4.5)):
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size) if ax is None else (ax.figure, ax)


def check_binary(y_true, y_prob, where, probabilities=True):
    """Validated 0/1 labels and scores as float arrays (NaN pairs dropped).

    Raises
    ------
    ModelInputError
        Mismatched lengths, labels other than 0/1, a single class, or probabilities
        outside [0, 1].
    """
    y = pd.to_numeric(pd.Series(np.asarray(y_true).ravel()), errors="coerce").to_numpy(dtype=float)
    p = np.asarray(y_prob, dtype=float).ravel()
    if y.shape != p.shape:
        raise ModelInputError(f"{where}: y_true has {y.size} values but y_prob has {p.size}.")
    ok = ~np.isnan(y) & ~np.isnan(p)
    y, p = y[ok], p[ok]
    bad = ~np.isin(y, [0, 1])
    if bad.any():
        raise ModelInputError(f"{where}: y_true must be 0/1; got {y[bad][0]!r} at position {int(np.flatnonzero(bad)[0])}.")
    if len(np.unique(y)) < 2:
        raise ModelInputError(f"{where}: y_true holds a single class ({sorted(set(y.astype(int)))}) among "
                              f"{y.size} patients; discrimination and calibration need both classes.")
    if probabilities and ((p < 0) | (p > 1)).any():
        raise ModelInputError(f"{where}: y_prob must be probabilities in [0, 1]; got values from {p.min():.4g} "
                              f"to {p.max():.4g}.")
    return y.astype(int), p


# ------------------------------------------------------------------------------ ROC
@dataclass(frozen=True)
class RocResult:
    """ROC AUC with DeLong and stratified-bootstrap confidence intervals.

    Attributes
    ----------
    auc, se : float
    lower, upper : float
        DeLong interval (``pROC::ci.auc``).
    boot_lower, boot_upper : float
        Stratified bootstrap percentile interval (NaN when ``n_bootstrap=0``).
    level : float
    fpr, tpr, thresholds : ndarray
    n, n_pos : int
    """

    auc: float
    se: float
    lower: float
    upper: float
    boot_lower: float
    boot_upper: float
    level: float
    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)
    thresholds: np.ndarray = field(repr=False)
    n: int = 0
    n_pos: int = 0

    @property
    def table(self):
        """Metrics indexed by name (``auc``, ``auc_lower_95``, ...), one ``value`` column."""
        pct = _pct(self.level)
        return pd.DataFrame({"value": {
            "auc": self.auc, f"auc_lower_{pct}": self.lower, f"auc_upper_{pct}": self.upper, "auc_se": self.se,
            f"auc_boot_lower_{pct}": self.boot_lower, f"auc_boot_upper_{pct}": self.boot_upper}})

    def to_frame(self):
        """The ROC curve: fpr, tpr, threshold."""
        return pd.DataFrame({"fpr": self.fpr, "tpr": self.tpr, "threshold": self.thresholds})

    def plot(self, ax=None, label=None, **kwargs):
        """ROC curve; returns the matplotlib Figure."""
        fig, ax = _fig_ax(ax)
        text = f"AUC {self.auc:.3f} [{self.lower:.3f}, {self.upper:.3f}]"
        ax.plot(self.fpr, self.tpr, label=f"{label}: {text}" if label else text, **kwargs)
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
        ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
        ax.set_aspect("equal")
        ax.legend(loc="lower right", fontsize=8)
        return fig

    def __repr__(self):
        return (f"<RocResult: {self.n} patients, {self.n_pos} positive, AUC={self.auc:.3f} "
                f"[{self.lower:.3f}, {self.upper:.3f}]>")

    def _repr_html_(self):
        return f"<p><code>{self!r}</code></p>" + self.table.to_html(float_format="%.4f")


def _bootstrap_auc(y, p, n_bootstrap, level, random_state):
    from scipy.stats import rankdata

    if n_bootstrap <= 0:
        return np.nan, np.nan
    rng = np.random.default_rng(random_state)
    pos, neg = p[y == 1], p[y == 0]
    m, n = len(pos), len(neg)
    aucs = np.empty(n_bootstrap)
    for b in range(n_bootstrap):  # stratified: cases and controls resampled separately (pROC's default)
        bp = pos[rng.integers(0, m, m)]
        bn = neg[rng.integers(0, n, n)]
        r = rankdata(np.concatenate([bp, bn]))
        aucs[b] = (r[:m].sum() - m * (m + 1) / 2.0) / (m * n)
    a = (1 - level) / 2
    return float(np.quantile(aucs, a)), float(np.quantile(aucs, 1 - a))


def roc_auc(y_true, y_score, level=0.95, n_bootstrap=1000, random_state=0):
    """ROC AUC with a DeLong CI and a stratified bootstrap CI.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        0/1.
    y_score : array-like of shape (n,)
        Higher = more likely positive.
    level : float, default=0.95
    n_bootstrap : int, default=1000
        Stratified resamples (0 skips the bootstrap).
    random_state : int, default=0

    Returns
    -------
    RocResult
    """
    from sklearn.metrics import roc_curve

    y, p = check_binary(y_true, y_score, "roc_auc", probabilities=False)
    d = auc_delong(y, p, level)
    lo, hi = _bootstrap_auc(y, p, int(n_bootstrap), level, random_state)
    fpr, tpr, thr = roc_curve(y, p)
    return RocResult(auc=d["auc"], se=d["se"], lower=d["lower"], upper=d["upper"], boot_lower=lo, boot_upper=hi,
                     level=level, fpr=fpr, tpr=tpr, thresholds=thr, n=d["n"], n_pos=d["n_pos"])


# ---------------------------------------------------------------------- thresholds
def youden_threshold(y_true, y_score):
    """Cut-off maximising Youden's J = sensitivity + specificity - 1 (positive when score >= cut-off).

    Returns
    -------
    float
    """
    from sklearn.metrics import roc_curve

    y, p = check_binary(y_true, y_score, "youden_threshold", probabilities=False)
    fpr, tpr, thr = roc_curve(y, p)
    j = tpr - fpr
    k = int(np.argmax(j[1:]) + 1)  # thr[0] is +inf (nobody positive)
    return float(thr[k])


def _wilson(k, n, level):
    if n == 0:
        return np.nan, np.nan
    z = norm.ppf(0.5 + level / 2)
    ph = k / n
    centre = (ph + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


@dataclass(frozen=True)
class ThresholdResult:
    """Sensitivity, specificity, PPV and NPV at a cut-off, with Wilson CIs.

    Attributes
    ----------
    threshold : float or ndarray
        The cut-off (one per outer fold when chosen inside training folds).
    source : str
        ``"given"``, ``"youden (training folds)"`` or ``"youden (same data)"``.
    counts : dict
        tp, fp, tn, fn.
    level : float
    """

    threshold: object
    source: str
    counts: dict
    level: float

    @property
    def table(self):
        """``sensitivity``, ``specificity``, ``ppv``, ``npv`` with their CIs, indexed by metric name."""
        pct = _pct(self.level)
        c = self.counts
        out = {}
        for name, k, n in (("sensitivity", c["tp"], c["tp"] + c["fn"]), ("specificity", c["tn"], c["tn"] + c["fp"]),
                           ("ppv", c["tp"], c["tp"] + c["fp"]), ("npv", c["tn"], c["tn"] + c["fn"])):
            lo, hi = _wilson(k, n, self.level)
            out[name] = k / n if n else np.nan
            out[f"{name}_lower_{pct}"] = lo
            out[f"{name}_upper_{pct}"] = hi
        thr = np.atleast_1d(np.asarray(self.threshold, dtype=float))
        out["threshold"] = float(np.median(thr))
        return pd.DataFrame({"value": out})

    def plot(self, ax=None):
        """Bar chart of the four metrics with their CIs; returns the Figure."""
        fig, ax = _fig_ax(ax, (4.5, 3.2))
        t = self.table["value"]
        names = ["sensitivity", "specificity", "ppv", "npv"]
        pct = _pct(self.level)
        vals = t[names].to_numpy()
        err = np.vstack([vals - t[[f"{n}_lower_{pct}" for n in names]].to_numpy(),
                         t[[f"{n}_upper_{pct}" for n in names]].to_numpy() - vals])
        ax.bar(names, vals, yerr=err, capsize=4, color="C0")
        ax.set(ylim=(0, 1), title=f"at threshold {t['threshold']:.3f} ({self.source})")
        return fig

    def __repr__(self):
        t = self.table["value"]
        return (f"<ThresholdResult: threshold={t['threshold']:.3f} ({self.source}), sensitivity="
                f"{t['sensitivity']:.3f}, specificity={t['specificity']:.3f}>")

    def _repr_html_(self):
        return f"<p><code>{self!r}</code></p>" + self.table.to_html(float_format="%.4f")


def threshold_metrics(y_true, y_prob, threshold=None, folds=None, level=0.95):
    """Classification metrics at a cut-off (positive when ``y_prob >= threshold``).

    Parameters
    ----------
    y_true, y_prob : array-like of shape (n,)
    threshold : float, optional
        The cut-off. When None, Youden's cut-off is chosen inside the training folds
        (for each fold, on the predictions of the other folds) if ``folds`` is given,
        else on the same data (optimistic; the source says so).
    folds : array-like of shape (n,), optional
        Fold of each patient (e.g. the outer folds of :func:`lnmkit.models.nested_cv`).
    level : float, default=0.95

    Returns
    -------
    ThresholdResult
    """
    y, p = check_binary(y_true, y_prob, "threshold_metrics")
    if threshold is not None:
        thr = float(threshold)
        pred = p >= thr
        source = "given"
    elif folds is not None:
        f = np.asarray(folds)
        if f.shape[0] != np.asarray(y_true).ravel().shape[0]:
            raise ModelInputError("threshold_metrics: folds must have one value per patient.")
        ok = ~np.isnan(pd.to_numeric(pd.Series(np.asarray(y_true).ravel()), errors="coerce").to_numpy(dtype=float)) & \
            ~np.isnan(np.asarray(y_prob, dtype=float).ravel())
        f = f[ok]
        pred = np.zeros(len(y), dtype=bool)
        thr = []
        for k in np.unique(f):
            t = youden_threshold(y[f != k], p[f != k])
            pred[f == k] = p[f == k] >= t
            thr.append(t)
        thr = np.asarray(thr)
        source = "youden (training folds)"
    else:
        thr = youden_threshold(y, p)
        pred = p >= thr
        source = "youden (same data)"
    counts = {"tp": int((pred & (y == 1)).sum()), "fp": int((pred & (y == 0)).sum()),
              "tn": int((~pred & (y == 0)).sum()), "fn": int((~pred & (y == 1)).sum())}
    return ThresholdResult(threshold=thr, source=source, counts=counts, level=level)


# ---------------------------------------------------------------------- calibration
@dataclass(frozen=True)
class CalibrationResult:
    """Calibration of predicted probabilities.

    Intercept from ``glm(y ~ offset(logit(p)), binomial)`` (calibration-in-the-large),
    slope from ``glm(y ~ logit(p), binomial)``; the smoothed curve is
    ``lowess(p, y, iter = 0)`` (as ``rms::calibrate``). Emax, E50, E90 and ICI are
    the maximum, median, 90th percentile and mean of |smoothed - p| over the
    patients (Austin & Steyerberg, 2019).

    Attributes
    ----------
    intercept, intercept_lower, intercept_upper, slope, slope_lower, slope_upper : float
    emax, e50, e90, ici : float
    curve : pandas.DataFrame
        ``predicted``, ``observed`` (smoothed), sorted by predicted.
    groups : pandas.DataFrame
        Deciles of predicted risk: mean predicted, observed rate, n.
    level : float
    """

    intercept: float
    intercept_lower: float
    intercept_upper: float
    slope: float
    slope_lower: float
    slope_upper: float
    emax: float
    e50: float
    e90: float
    ici: float
    curve: pd.DataFrame = field(repr=False)
    groups: pd.DataFrame = field(repr=False)
    level: float = 0.95

    @property
    def table(self):
        """Metrics indexed by name (``calibration_intercept``, ``calibration_slope``, ``emax``, ``ici``...)."""
        pct = _pct(self.level)
        return pd.DataFrame({"value": {
            "calibration_intercept": self.intercept, f"calibration_intercept_lower_{pct}": self.intercept_lower,
            f"calibration_intercept_upper_{pct}": self.intercept_upper, "calibration_slope": self.slope,
            f"calibration_slope_lower_{pct}": self.slope_lower, f"calibration_slope_upper_{pct}": self.slope_upper,
            "emax": self.emax, "e50": self.e50, "e90": self.e90, "ici": self.ici}})

    def plot(self, ax=None, label=None, **kwargs):
        """Smoothed calibration curve with decile points; returns the Figure."""
        fig, ax = _fig_ax(ax)
        text = f"slope {self.slope:.2f}, intercept {self.intercept:.2f}, ICI {self.ici:.3f}"
        ax.plot(self.curve["predicted"], self.curve["observed"], label=f"{label}: {text}" if label else text,
                **kwargs)
        ax.scatter(self.groups["predicted"], self.groups["observed"], s=14, color=ax.lines[-1].get_color())
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
        ax.set(xlabel="predicted probability", ylabel="observed proportion", title="Calibration",
               xlim=(0, 1), ylim=(0, 1))
        ax.set_aspect("equal")
        ax.legend(loc="upper left", fontsize=8)
        return fig

    def __repr__(self):
        return (f"<CalibrationResult: intercept={self.intercept:.3f}, slope={self.slope:.3f}, "
                f"Emax={self.emax:.3f}, ICI={self.ici:.3f}>")

    def _repr_html_(self):
        return f"<p><code>{self!r}</code></p>" + self.table.to_html(float_format="%.4f")


def _glm_logit(y, X, offset=None):
    import statsmodels.api as sm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sm.GLM(y, X, family=sm.families.Binomial(), offset=offset).fit()


def calibration(y_true, y_prob, level=0.95, frac=2 / 3, n_groups=10):
    """Calibration intercept and slope (logistic refits), smoothed curve, Emax and ICI.

    Parameters
    ----------
    y_true, y_prob : array-like of shape (n,)
        0/1 outcomes and predicted probabilities (clipped to [1e-8, 1 - 1e-8]
        before the logit).
    level : float, default=0.95
        Wald CIs of intercept and slope.
    frac : float, default=2/3
        Span of the lowess smoother (R's ``lowess`` default ``f = 2/3``).
    n_groups : int, default=10
        Quantile groups for the points of the plot.

    Returns
    -------
    CalibrationResult
    """
    from statsmodels.nonparametric.smoothers_lowess import lowess

    y, p = check_binary(y_true, y_prob, "calibration")
    lp = logit(np.clip(p, 1e-8, 1 - 1e-8))
    z = norm.ppf(0.5 + level / 2)
    fit_int = _glm_logit(y, np.ones((len(y), 1)), offset=lp)
    a, se_a = float(fit_int.params[0]), float(fit_int.bse[0])
    fit_slope = _glm_logit(y, np.column_stack([np.ones(len(y)), lp]))
    b, se_b = float(fit_slope.params[1]), float(fit_slope.bse[1])
    smooth = lowess(y, p, frac=frac, it=0, return_sorted=False)
    smooth = np.clip(smooth, 0, 1)
    err = np.abs(smooth - p)
    order = np.argsort(p)
    curve = pd.DataFrame({"predicted": p[order], "observed": smooth[order]})
    bins = pd.qcut(pd.Series(p).rank(method="first"), q=min(n_groups, len(p)), labels=False)
    groups = pd.DataFrame({"p": p, "y": y, "g": bins}).groupby("g").agg(
        predicted=("p", "mean"), observed=("y", "mean"), n=("y", "size"))
    return CalibrationResult(intercept=a, intercept_lower=a - z * se_a, intercept_upper=a + z * se_a, slope=b,
                             slope_lower=b - z * se_b, slope_upper=b + z * se_b, emax=float(err.max()),
                             e50=float(np.median(err)), e90=float(np.quantile(err, 0.9)), ici=float(err.mean()),
                             curve=curve, groups=groups, level=level)


# -------------------------------------------------------------------- decision curve
@dataclass(frozen=True)
class DecisionCurveResult:
    """Net benefit of treating patients above each threshold probability (``dcurves``).

    Net benefit = TP/n - FP/n · pt / (1 - pt); ``treat all`` treats everyone,
    ``treat none`` no one.

    Attributes
    ----------
    curves : pandas.DataFrame
        Long table: model, threshold, net_benefit, tp_rate, fp_rate, ...
    """

    curves: pd.DataFrame = field(repr=False)

    @property
    def table(self):
        """Net benefit per threshold (rows) and strategy (columns)."""
        return self.curves.pivot(index="threshold", columns="model", values="net_benefit")

    def plot(self, ax=None, **kwargs):
        """Net benefit against threshold probability; returns the Figure."""
        fig, ax = _fig_ax(ax, (5, 3.8))
        t = self.table
        for col in t.columns:
            style = {"color": "0.5", "ls": "--"} if col == "treat all" else (
                {"color": "k", "lw": 0.8} if col == "treat none" else kwargs)
            ax.plot(t.index, t[col], label=col, **style)
        top = np.nanmax(t.to_numpy())
        ax.set(xlabel="threshold probability", ylabel="net benefit", title="Decision curve",
               ylim=(-0.05 * max(top, 0.01), max(top, 0.01) * 1.1))
        ax.legend(fontsize=8)
        return fig

    def __repr__(self):
        models = [m for m in self.curves["model"].unique() if m not in ("treat all", "treat none")]
        return f"<DecisionCurveResult: {len(self.table)} thresholds, models {models}>"

    def _repr_html_(self):
        return f"<p><code>{self!r}</code></p>" + self.table.to_html(float_format="%.4f")


def decision_curve(y_true, y_prob, thresholds=None, name="model"):
    """Decision curve of one or more predicted risks (via ``dcurves.dca``).

    Parameters
    ----------
    y_true : array-like of shape (n,)
    y_prob : array-like of shape (n,) or dict name -> array-like
    thresholds : array-like, optional
        Threshold probabilities; default 0.01 to 0.99 by 0.01.
    name : str, default="model"
        Name of a single ``y_prob``.

    Returns
    -------
    DecisionCurveResult
    """
    import dcurves

    probs = dict(y_prob) if isinstance(y_prob, dict) else {name: y_prob}
    y = pd.to_numeric(pd.Series(np.asarray(y_true).ravel()), errors="coerce").to_numpy(dtype=float)
    data = pd.DataFrame({"_y": y})
    # dcurves names its reference strategies "all" and "none": give the models private names
    names = {f"_model{i}": k for i, k in enumerate(probs)}
    for key, k in names.items():
        check_binary(y, probs[k], "decision_curve")
        data[key] = np.asarray(probs[k], dtype=float).ravel()
    data = data.dropna()
    thresholds = np.round(np.arange(0.01, 1.0, 0.01), 2) if thresholds is None else np.asarray(thresholds, float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        curves = dcurves.dca(data=data, outcome="_y", modelnames=list(names), thresholds=list(thresholds))
    curves = curves.reset_index(drop=True)
    curves["model"] = curves["model"].map(lambda m: names.get(m, f"treat {m}"))
    return DecisionCurveResult(curves=curves)


# ------------------------------------------------------------------------ gathered
@dataclass(frozen=True)
class BinaryEvaluation:
    """Everything :func:`evaluate_binary` measured.

    Attributes
    ----------
    roc : RocResult
    thresholds : ThresholdResult
    calibration : CalibrationResult
    decision : DecisionCurveResult
    brier : float
    n, n_pos : int
    level : float
    """

    roc: RocResult
    thresholds: ThresholdResult
    calibration: CalibrationResult
    decision: DecisionCurveResult
    brier: float
    n: int
    n_pos: int
    level: float = 0.95
    name: str = "model"

    @property
    def table(self):
        """Every metric, indexed by name (``auc``, ``auc_lower_95``, ``brier``, ``calibration_slope``...)."""
        head = pd.DataFrame({"value": {"n": self.n, "n_pos": self.n_pos}})
        brier = pd.DataFrame({"value": {"brier": self.brier}})
        return pd.concat([head, self.roc.table, brier, self.calibration.table, self.thresholds.table])

    def to_frame(self):
        """The table as a one-row-per-metric DataFrame (same as ``table``)."""
        return self.table

    def plot(self, ax=None, kind="all"):
        """ROC, calibration and decision curve side by side (``kind="all"``) or one of them.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Only for a single ``kind``.
        kind : {"all", "roc", "calibration", "decision"}, default="all"

        Returns
        -------
        matplotlib.figure.Figure
        """
        if kind == "roc":
            return self.roc.plot(ax=ax, label=self.name)
        if kind == "calibration":
            return self.calibration.plot(ax=ax, label=self.name)
        if kind == "decision":
            return self.decision.plot(ax=ax)
        if kind != "all":
            raise ValueError(f"BinaryEvaluation.plot: kind must be 'all', 'roc', 'calibration' or 'decision'; "
                             f"got {kind!r} instead.")
        if ax is not None:
            raise ValueError("BinaryEvaluation.plot: kind='all' draws three panels; pass ax only with a single kind.")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(14, 4.5))
        self.roc.plot(ax=axes[0], label=self.name)
        self.calibration.plot(ax=axes[1], label=self.name)
        self.decision.plot(ax=axes[2])
        fig.tight_layout()
        return fig

    def __repr__(self):
        return (f"<BinaryEvaluation: {self.n} patients, {self.n_pos} positive, AUC={self.roc.auc:.3f} "
                f"[{self.roc.lower:.3f}, {self.roc.upper:.3f}], Brier={self.brier:.3f}, "
                f"slope={self.calibration.slope:.2f}>")

    def _repr_html_(self):
        return f"<p><code>{self!r}</code></p>" + self.table.to_html(float_format="%.4f")


def evaluate_binary(y_true, y_prob, threshold=None, *, folds=None, level=0.95, n_bootstrap=1000, random_state=0,
                    dca_thresholds=None, name="model"):
    """Evaluate predicted probabilities of a binary outcome (pN+).

    Parameters
    ----------
    y_true : array-like of shape (n,)
        0/1; patients with a missing label or probability are left out.
    y_prob : array-like of shape (n,)
        Predicted probabilities (out-of-fold ones for an honest estimate).
    threshold : float, optional
        Cut-off for sensitivity, specificity, PPV and NPV; by default Youden's cut-off
        chosen inside the training folds when ``folds`` is given (see
        :func:`threshold_metrics`).
    folds : array-like of shape (n,), optional
    level : float, default=0.95
    n_bootstrap : int, default=1000
        Stratified bootstrap resamples for the AUC (0 skips).
    random_state : int, default=0
    dca_thresholds : array-like, optional
    name : str, default="model"

    Returns
    -------
    BinaryEvaluation

    Raises
    ------
    ModelInputError
        A single class, labels other than 0/1, or probabilities outside [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> p = rng.random(200); y = (rng.random(200) < p).astype(int)
    >>> ev = evaluate_binary(y, p, threshold=0.5, n_bootstrap=0)
    >>> round(ev.table.loc["calibration_slope", "value"], 1)
    1.1
    """
    y, p = check_binary(y_true, y_prob, "evaluate_binary")
    roc = roc_auc(y, p, level, n_bootstrap, random_state)
    if folds is not None:
        f = np.asarray(folds)
        keep = ~np.isnan(pd.to_numeric(pd.Series(np.asarray(y_true).ravel()), errors="coerce").to_numpy(float)) & \
            ~np.isnan(np.asarray(y_prob, dtype=float).ravel())
        thr = threshold_metrics(y, p, threshold, folds=f[keep], level=level)
    else:
        thr = threshold_metrics(y, p, threshold, level=level)
    cal = calibration(y, p, level)
    dca = decision_curve(y, p, dca_thresholds, name=name)
    return BinaryEvaluation(roc=roc, thresholds=thr, calibration=cal, decision=dca,
                            brier=float(np.mean((p - y) ** 2)), n=int(len(y)), n_pos=int(y.sum()), level=level,
                            name=name)
