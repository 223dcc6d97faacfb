"""Cox proportional-hazards model (lifelines' Efron fit) with an rms-style summary and
the Schoenfeld-residual test of proportional hazards as R's ``survival::cox.zph`` computes it."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator

from lnmkit._validation import check_fraction, check_non_negative, check_positive
from lnmkit.exceptions import ModelInputError, NotFittedError
from lnmkit.models._survival_base import SavedSurvivalMixin, SurvivalModelMixin, step_values

__all__ = ["CoxPH", "PHTestResult"]

_T, _E = "__lnmkit_time__", "__lnmkit_event__"


class CoxPH(SavedSurvivalMixin, SurvivalModelMixin, BaseEstimator):
    """Cox proportional-hazards model, Efron ties, optional L2 / elastic-net penalty.

    Fitted by ``lifelines.CoxPHFitter`` (Newton-Raphson on the Efron partial
    likelihood). Pandas categorical columns are dummy-coded against their first
    level and the terms are named ``column=level``, as rms names them.

    Parameters
    ----------
    penalizer : float, default=0.0
        Penalty strength; 0 gives the ordinary (unpenalised) partial-likelihood fit.
        As in lifelines, the penalty ``penalizer * (l1_ratio * |b| + (1 - l1_ratio) * b**2 / 2)``
        applies to the coefficients of standardised columns.
    l1_ratio : float, default=0.0
        Elastic-net mixing: 0 is ridge (L2), 1 is lasso (lifelines smooths |b|).
    level : float, default=0.95
        Level of the confidence intervals in :attr:`summary_`; the column names
        carry it (``hr_lower_95``).
    impute : {None, "median"}, default=None
        None: missing values raise. ``"median"``: fill them with the training median
        (numeric) or most frequent level (categorical), learned in ``fit``, so that
        inside cross-validation the fill never sees test patients.
    tol : float, default=1e-9
        Convergence tolerance of the Newton steps (lifelines' ``precision``; its
        default 1e-7 leaves near-zero coefficients a few percent off R's).

    Attributes
    ----------
    coef_ : pandas.Series
        Log hazard ratios, indexed by term (``age``, ``tgrade=II``, ...).
    summary_ : pandas.DataFrame
        Indexed by term; columns ``coef``, ``se``, ``hr``, ``hr_lower_95``,
        ``hr_upper_95``, ``z``, ``p`` (Wald).
    var_ : pandas.DataFrame
        Covariance matrix of :attr:`coef_` (inverse observed information).
    centre_ : pandas.Series
        Mean of each design column in the training data. The linear predictor
        :meth:`predict` and :attr:`baseline_survival_` are relative to it:
        ``S(t | x) = baseline_survival_(t) ** exp((x - centre_) @ coef_)``.
    baseline_survival_ : pandas.Series
        Breslow baseline survival at :attr:`centre_`, indexed by the distinct training
        event times (a right-continuous step function, 1 before the first event).
    baseline_cumulative_hazard_ : pandas.Series
        ``-log(baseline_survival_)``, same index.
    encoding_ : dict of str -> list of str
        For each categorical column, its levels with the reference level first; the
        other levels are the ``column=level`` terms.
    terms_ : dict of str -> list of str
        For each input column, its design terms.
    design_columns_ : list of str
        Every term, in the order of :attr:`coef_`.
    log_likelihood_ : float
        Log partial likelihood at the estimate.
    n_events_ : int
    max_time_ : float
        Longest training time; survival curves are defined on ``[0, max_time_]``.
    event_times_ : ndarray
        Distinct training event times.

    Examples
    --------
    >>> from sksurv.datasets import load_gbsg2
    >>> from lnmkit.models import CoxPH
    >>> X, y = load_gbsg2()
    >>> cox = CoxPH().fit(X[["age", "tsize", "pnodes", "tgrade"]], y)
    >>> list(cox.coef_.index)
    ['age', 'tsize', 'pnodes', 'tgrade=II', 'tgrade=III']
    >>> cox.predict_survival_function(X.iloc[:2][["age", "tsize", "pnodes", "tgrade"]], [365, 730]).shape
    (2, 2)
    """

    def __init__(self, penalizer=0.0, *, l1_ratio=0.0, level=0.95, tol=1e-9, impute=None):
        self.penalizer = penalizer
        self.impute = impute
        self.l1_ratio = l1_ratio
        self.level = level
        self.tol = tol

    def fit(self, X, y):
        """Fit the model.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n, p)
            Numeric, bool or pandas categorical columns; no missing values unless
            ``impute="median"``.
        y : structured ndarray
            Fields ``event`` (bool) and ``time`` (float > 0).

        Returns
        -------
        self

        Raises
        ------
        lnmkit.exceptions.ModelInputError
            On missing values, all-censored targets, times <= 0, fewer events than
            terms, or a constant column.
        """
        from lifelines import CoxPHFitter

        where = "CoxPH.fit"
        penalizer = check_non_negative(self.penalizer, "penalizer", where)
        l1_ratio = check_fraction(self.l1_ratio, "l1_ratio", where)
        level = check_fraction(self.level, "level", where)
        tol = check_positive(self.tol, "tol", where)
        if not 0 < level < 1:
            raise ValueError(f"{where}: level must be in (0, 1); got {self.level!r} instead.")
        design, event, time = self._fit_checks(X, y)
        terms = list(design.columns)
        n_events = int(event.sum())
        if n_events < len(terms) + 1 and penalizer == 0:
            raise ModelInputError(f"{where}: {n_events} events cannot support {len(terms)} terms; an unpenalised "
                                  f"Cox model needs more events than terms (10-20 per term is the usual rule). "
                                  f"Use fewer columns or set penalizer > 0.")
        constant = [c for c in terms if np.ptp(design[c].to_numpy()) == 0]
        if constant:
            raise ModelInputError(f"{where}: column(s) {constant} are constant in the training data; drop them.")
        frame = design.reset_index(drop=True)
        frame[_T], frame[_E] = time, event.astype(int)
        fitter = CoxPHFitter(penalizer=penalizer, l1_ratio=l1_ratio, alpha=1 - level)
        from lifelines.exceptions import ConvergenceError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=RuntimeWarning)
                fitter.fit(frame, duration_col=_T, event_col=_E, show_progress=False,
                           fit_options={"precision": tol, "max_steps": 200})
        except ConvergenceError as err:
            _check_collinear(design, where)  # names the columns when that is the cause
            raise ModelInputError(f"{where}: the partial-likelihood fit did not converge ({str(err)[:120]}...). "
                                  f"Usual causes: a column that separates events perfectly, or nearly collinear "
                                  f"columns; set penalizer > 0 (e.g. 0.1) or drop columns.") from err
        self.coef_ = fitter.params_.reindex(terms).rename("coef")
        self.coef_.index.name = "term"
        self.var_ = fitter.variance_matrix_.reindex(index=terms, columns=terms)
        self.centre_ = pd.Series(fitter._norm_mean.reindex(terms).to_numpy(), index=self.coef_.index, name="centre")
        base = fitter.baseline_survival_.iloc[:, 0]
        base = base[base.index.isin(self.event_times_)]
        self.baseline_survival_ = pd.Series(base.to_numpy(), index=pd.Index(base.index.to_numpy(float), name="time"),
                                            name="baseline_survival")
        self.baseline_cumulative_hazard_ = (-np.log(self.baseline_survival_)).rename("baseline_cumulative_hazard")
        self.log_likelihood_ = float(fitter.log_likelihood_)
        self.n_events_ = n_events
        self.encoding_ = dict(self.design_.encoding_)
        self.terms_ = dict(self.design_.terms_)
        self.design_columns_ = terms
        self.summary_ = self._summary(level)
        self.n_patients_ = len(time)
        # kept for ph_test(): the Schoenfeld test needs the training risk sets
        self._train = (design.to_numpy(dtype=float), time, event)
        return self

    def _summary(self, level):
        coef = self.coef_.to_numpy()
        se = np.sqrt(np.diag(self.var_.to_numpy()))
        zcrit = stats.norm.ppf(0.5 + level / 2)
        pct = f"{100 * level:g}".replace(".", "_")
        z = coef / se
        return pd.DataFrame({
            "coef": coef, "se": se, "hr": np.exp(coef),
            f"hr_lower_{pct}": np.exp(coef - zcrit * se), f"hr_upper_{pct}": np.exp(coef + zcrit * se),
            "z": z, "p": 2 * stats.norm.sf(np.abs(z)),
        }, index=self.coef_.index)

    def _risk(self, design):
        return (design.to_numpy(dtype=float) - self.centre_.to_numpy()) @ self.coef_.to_numpy()

    def _survival(self, design, times):
        lp = self._risk(design)
        s0 = step_values(self.baseline_survival_.index.to_numpy(), self.baseline_survival_.to_numpy(), times)
        return s0[None, :] ** np.exp(lp)[:, None]

    def ph_test(self, transform="km"):
        """Test of proportional hazards from scaled Schoenfeld residuals, per term and global.

        The score test for adding ``x * g(t)`` to the model, as R's
        ``survival::cox.zph`` (survival >= 3.0) computes it, on the training data.
        A categorical column is one multi-df term.

        Parameters
        ----------
        transform : {"km", "rank", "identity", "log"}, default="km"
            Time scale ``g(t)``; ``"km"`` is one minus the left-continuous Kaplan-Meier.

        Returns
        -------
        PHTestResult
        """
        self._check_fitted()
        if self._train is None:
            raise NotFittedError("CoxPH.ph_test: this model was loaded from a file, which keeps no training data; "
                                 "the Schoenfeld test needs them. Run ph_test on the fitted model before save().")
        return proportional_hazards_test(self, transform=transform)

    # ---------------------------------------------------------- persistence
    # save() keeps the coefficients, their covariance, centring and the baseline
    # survival; not the training data, so ph_test() is refused on a loaded model.
    def _model_state(self):
        return {"terms": list(self.coef_.index), "coef": self.coef_.tolist(), "var": self.var_.to_numpy().tolist(),
                "centre": self.centre_.tolist(), "baseline_times": self.baseline_survival_.index.tolist(),
                "baseline_survival": self.baseline_survival_.tolist(), "log_likelihood": self.log_likelihood_,
                "n_events": self.n_events_, "n_patients": self.n_patients_}

    def _load_model_state(self, state):
        terms = pd.Index(state["terms"], name="term")
        self.coef_ = pd.Series(state["coef"], index=terms, name="coef", dtype=float)
        self.var_ = pd.DataFrame(state["var"], index=terms, columns=terms, dtype=float)
        self.centre_ = pd.Series(state["centre"], index=terms, name="centre", dtype=float)
        self.baseline_survival_ = pd.Series(state["baseline_survival"], name="baseline_survival", dtype=float,
                                            index=pd.Index(np.asarray(state["baseline_times"], float), name="time"))
        self.baseline_cumulative_hazard_ = (-np.log(self.baseline_survival_)).rename("baseline_cumulative_hazard")
        self.log_likelihood_ = float(state["log_likelihood"])
        self.n_events_, self.n_patients_ = int(state["n_events"]), int(state["n_patients"])
        self.encoding_, self.terms_ = dict(self.design_.encoding_), dict(self.design_.terms_)
        self.summary_ = self._summary(self.level)
        self._train = None

    def __repr__(self, N_CHAR_MAX=700):
        if hasattr(self, "coef_"):
            return f"<CoxPH: {self.n_patients_} patients, {self.n_events_} events, {len(self.coef_)} terms>"
        return super().__repr__(N_CHAR_MAX)


def _rank(x):
    # eigenvalues of the p x p cross-product: cheap for n >> p, exact collinearity gives ~0
    ev = np.linalg.eigvalsh(np.einsum("ij,ik->jk", x, x))
    return int((ev > max(ev.max(), 1e-300) * 1e-11).sum())


def _check_collinear(design, where):
    """Raise naming the columns that are linear combinations of earlier ones (a singular fit)."""
    x = design.to_numpy(dtype=float)
    x = x - x.mean(axis=0)
    scale = np.abs(x).max(axis=0)
    x = x / np.where(scale > 0, scale, 1)
    if _rank(x) == x.shape[1]:
        return
    redundant, kept = [], []
    for j, name in enumerate(design.columns):
        if _rank(x[:, kept + [j]]) == len(kept) + 1:
            kept.append(j)
        else:
            redundant.append(name)
    raise ModelInputError(f"{where}: column(s) {redundant} are linear combinations of other columns (a Cox "
                          f"model cannot separate their effects); drop them, or set penalizer > 0.")


def _g_of_time(time, event, transform):
    if transform == "identity":
        return time.astype(float)
    if transform == "log":
        return np.log(time)
    if transform == "rank":
        return stats.rankdata(time)
    if transform == "km":
        # Kaplan-Meier just before each time (left-continuous), as cox.zph does
        ut = np.unique(time[event])
        at_risk = np.array([(time >= u).sum() for u in ut], dtype=float)
        deaths = np.array([((time == u) & event).sum() for u in ut], dtype=float)
        surv = np.cumprod(1 - deaths / at_risk)
        idx = np.searchsorted(ut, time, side="left")  # number of event times strictly before t
        return 1.0 - np.concatenate([[1.0], surv])[idx]
    raise ValueError(f"ph_test: transform must be one of 'km', 'rank', 'identity', 'log'; got {transform!r} instead.")


def _zph_score(x, time, event, eta, gtime):
    """Score vector and 2p x 2p information of the model with ``x * g(t)`` added (Efron ties)."""
    n, p = x.shape
    x = x - x.mean(axis=0)
    order = np.lexsort((~event, time))  # by time; censored and deaths at a tie are all at risk
    x, time, event, eta, gtime = x[order], time[order], event[order], eta[order], gtime[order]
    w = np.exp(eta - eta.max())
    # sums over the risk set {time >= t}: reverse cumulative sums
    wx = w[:, None] * x
    wxx = wx[:, :, None] * x[:, None, :]
    s0 = np.cumsum(w[::-1])[::-1]
    s1 = np.cumsum(wx[::-1], axis=0)[::-1]
    s2 = np.cumsum(wxx[::-1], axis=0)[::-1]
    u = np.zeros(2 * p)
    imat = np.zeros((2 * p, 2 * p))
    schoen = np.zeros((int(event.sum()), p))
    ut, first = np.unique(time, return_index=True)
    row = 0
    for t, start in zip(ut, first):
        dead = np.flatnonzero((time == t) & event)
        if dead.size == 0:
            continue
        d = dead.size
        g = gtime[dead[0]]
        d0, d1, d2 = w[dead].sum(), wx[dead].sum(axis=0), wxx[dead].sum(axis=0)
        means = np.zeros(p)
        v = np.zeros((p, p))
        for r in range(d):
            f = r / d
            den = s0[start] - f * d0
            m = (s1[start] - f * d1) / den
            means += m
            v += (s2[start] - f * d2) / den - np.outer(m, m)
        xs = x[dead].sum(axis=0)
        u[:p] += xs - means
        u[p:] += g * (xs - means)
        imat[:p, :p] += v
        imat[:p, p:] += g * v
        imat[p:, p:] += g * g * v
        schoen[row:row + d] = x[dead] - means / d
        row += d
    imat[p:, :p] = imat[:p, p:].T
    return u, imat, schoen, time[event]


def proportional_hazards_test(model, transform="km"):
    """Schoenfeld-residual test of proportional hazards of a fitted :class:`CoxPH`.

    Parameters
    ----------
    model : CoxPH
        Fitted (its training data are used).
    transform : {"km", "rank", "identity", "log"}, default="km"

    Returns
    -------
    PHTestResult
    """
    x, time, event = model._train
    p = x.shape[1]
    beta = model.coef_.to_numpy()
    eta = x @ beta
    g = _g_of_time(time, event, transform)
    gtime = g - g[event].mean()
    u, imat, schoen, etimes = _zph_score(x, time, event, eta, gtime)
    u0 = np.concatenate([np.zeros(p), u[p:]])
    cols = model.design_columns_
    rows = []
    for term, names in model.terms_.items():
        jj = [cols.index(c) for c in names]
        kk = list(range(p)) + [p + j for j in jj]
        sub = u0[kk]
        chisq = float(sub @ np.linalg.solve(imat[np.ix_(kk, kk)], sub))
        rows.append((term, chisq, len(jj)))
    chisq = float(u0 @ np.linalg.solve(imat, u0))
    rows.append(("GLOBAL", chisq, p))
    table = pd.DataFrame(rows, columns=["term", "chisq", "df"]).set_index("term")
    table["p"] = stats.chi2.sf(table["chisq"], table["df"])
    n_events = int(event.sum())
    scaled = schoen @ model.var_.to_numpy() * n_events + beta
    order = np.lexsort((~event, time))
    residuals = pd.DataFrame(scaled, columns=cols)
    residuals.insert(0, "g_time", g[order][event[order]])
    residuals.insert(0, "time", etimes)
    term_of = {c: term for term, names in model.terms_.items() for c in names}
    return PHTestResult(table=table, residuals=residuals, coef=model.coef_.copy(), transform=transform,
                        term_of=term_of)


class PHTestResult:
    """Proportional-hazards test: per-term and global chi-square, and scaled Schoenfeld residuals.

    Attributes
    ----------
    table : pandas.DataFrame
        Indexed by term and ``GLOBAL``; columns ``chisq``, ``df``, ``p``.
    residuals : pandas.DataFrame
        One row per event: ``time``, ``g_time`` (the transformed time) and the
        scaled Schoenfeld residual of each design column (an estimate of the
        coefficient at that time, ``beta(t)``).
    coef : pandas.Series
        The fitted coefficients.
    transform : str
    """

    def __init__(self, table, residuals, coef, transform, term_of=None):
        self.table = table
        self.term_of = dict(term_of or {})
        self.residuals = residuals
        self.coef = coef
        self.transform = transform

    def to_frame(self):
        """The test table (a copy)."""
        return self.table.copy()

    def __repr__(self):
        g = self.table.loc["GLOBAL"]
        return f"<PHTestResult: {len(self.table) - 1} terms, global chisq={g['chisq']:.2f} on {int(g['df'])} df, " \
               f"p={g['p']:.3g}>"

    def _repr_html_(self):
        return f"<p>{self!r}</p>" + self.table.to_html(float_format=lambda v: f"{v:.4g}")

    def plot(self, ax=None, terms=None):
        """Scaled Schoenfeld residuals against time with a lowess smooth, one panel per term.

        A flat smooth at the fitted coefficient (dashed line) is what proportional
        hazards predicts.

        Parameters
        ----------
        ax : matplotlib.axes.Axes or array of Axes, optional
            One axes per design column plotted; new figure when None.
        terms : list of str, optional
            Design columns to draw (default: all).

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt
        from statsmodels.nonparametric.smoothers_lowess import lowess

        names = list(self.coef.index) if terms is None else list(terms)
        if ax is None:
            ncol = min(3, len(names))
            nrow = int(np.ceil(len(names) / ncol))
            fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
            axes = axes.ravel()
            for extra in axes[len(names):]:
                extra.set_visible(False)
        else:
            axes = np.atleast_1d(ax).ravel()
            fig = axes[0].figure
        x = self.residuals["time"].to_numpy()
        for a, name in zip(axes, names):
            y = self.residuals[name].to_numpy()
            a.scatter(x, y, s=6, alpha=0.35, color="0.4")
            smooth = lowess(y, self.residuals["g_time"].to_numpy(), frac=2 / 3, it=0, return_sorted=False)
            o = np.argsort(x)
            a.plot(x[o], smooth[o], color="C0", lw=2)
            a.axhline(self.coef[name], color="C3", ls="--", lw=1)
            p = self.table["p"].get(self.term_of.get(name, name), np.nan)
            a.set_title(f"{name}" + ("" if np.isnan(p) else f" (p={p:.3g})"), fontsize=9)
            a.set_xlabel("time")
            a.set_ylabel("beta(t)")
        fig.tight_layout()
        return fig
