"""``fit_nomogram`` and the :class:`Nomogram` it returns."""

from __future__ import annotations

import html
import numbers
import warnings

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from lnmkit.exceptions import NomogramInputError, NotFittedError
from lnmkit.nomogram._design import _is_categorical, build_design, check_predictor_values
from lnmkit.nomogram._fit import FitFailure, cox_fit_from_coef, fit_cox, fit_logistic, logistic_fit_from_coef
from lnmkit.nomogram._newton import refit_cox_coef, refit_logistic
from lnmkit.nomogram._impute import PredictorImputer
from lnmkit.nomogram._points import OutcomeAxis, compute_scale, term_contributions

__all__ = ["Nomogram", "fit_nomogram"]


def _show(value):
    """repr of a value as the user wrote it (numpy scalars as plain Python numbers)."""
    return repr(value.item() if isinstance(value, np.generic) else value)

_KINDS = ("logistic", "cox")


def _check_frame(data, where):
    if not isinstance(data, pd.DataFrame):
        data = getattr(data, "frame", data)
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"{where}: data must be a pandas DataFrame; got {type(data).__name__} instead.")
    if data.empty:
        raise NomogramInputError(f"{where}: data has no rows.")
    return data


def _row(data, pos):
    return f"row {pos + 1} (index {data.index[pos]!r})"


def _binary(data, col, where, what):
    if col not in data.columns:
        raise NomogramInputError(f"{where}: outcome column {col!r} not found in the data; columns are "
                                 f"{list(data.columns)}.")
    s = data[col]
    if s.isna().any():
        pos = int(np.flatnonzero(s.isna().to_numpy())[0])
        raise NomogramInputError(f"{where}: {what} column {col!r} is missing at {_row(data, pos)}; "
                                 "drop rows without an outcome.")
    if pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=int)
    v = pd.to_numeric(s, errors="coerce")
    bad = ~v.isin([0, 1]).to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise NomogramInputError(f"{where}: {what} column {col!r} must be 0/1; got {_show(s.iloc[pos])} at "
                                 f"{_row(data, pos)}.")
    return v.to_numpy(dtype=int)


def _check_outcome(data, outcome, kind, where):
    if kind == "logistic":
        if not isinstance(outcome, str):
            raise NomogramInputError(f"{where}: for kind='logistic' outcome must name one 0/1 column; got "
                                     f"{outcome!r} instead.")
        y = _binary(data, outcome, where, "outcome")
        if y.min() == y.max():
            raise NomogramInputError(f"{where}: outcome column {outcome!r} holds only the value {y[0]}; a "
                                     "logistic model needs both 0 and 1.")
        return y
    if isinstance(outcome, str) or not hasattr(outcome, "__len__") or len(outcome) != 2:
        raise NomogramInputError(f"{where}: for kind='cox' outcome must be a (time_column, event_column) "
                                 f"pair; got {outcome!r} instead.")
    time_col, event_col = outcome
    if time_col not in data.columns:
        raise NomogramInputError(f"{where}: time column {time_col!r} not found in the data; columns are "
                                 f"{list(data.columns)}.")
    t = pd.to_numeric(data[time_col], errors="coerce")
    bad = (t.isna() | (t < 0)).to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise NomogramInputError(f"{where}: time column {time_col!r} must hold numbers >= 0; got "
                                 f"{_show(data[time_col].iloc[pos])} at {_row(data, pos)}.")
    e = _binary(data, event_col, where, "event")
    if e.sum() == 0:
        raise NomogramInputError(f"{where}: event column {event_col!r} has no event (all 0); a Cox model "
                                 "needs events.")
    return t.to_numpy(dtype=float), e


def _check_times(times, kind, y, where):
    if kind == "logistic":
        if times is not None:
            raise NomogramInputError(f"{where}: times applies to kind='cox' only; got {times!r} for "
                                     "kind='logistic'.")
        return ()
    if times is None:
        raise NomogramInputError(f"{where}: kind='cox' needs times, the horizons of the survival axes "
                                 "(e.g. times=[36, 60]).")
    if isinstance(times, numbers.Real):
        times = [times]
    follow_up = float(np.max(y[0]))
    out = []
    for t in times:
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not np.isfinite(t) or t <= 0:
            raise NomogramInputError(f"{where}: times must be positive numbers; got {t!r}.")
        if t > follow_up:
            raise NomogramInputError(f"{where}: time {t:g} is beyond follow-up (last observed time "
                                     f"{follow_up:g}); survival there is not estimable. Choose times <= "
                                     f"{follow_up:g}.")
        out.append(float(t))
    return tuple(out)


def fit_nomogram(data, predictors, outcome, kind="logistic", times=None, splines=None, knots=4, *,
                 categorical=None, impute=None):
    """Fit a logistic or Cox model and lay it out as an rms-style nomogram.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per patient (indexed by ``patient_id``), predictors and outcome.
    predictors : sequence of str
        Predictor columns. Numeric columns enter linearly unless named in
        ``splines``; object, category and bool columns are dummy-coded against their
        first level.
    outcome : str or (str, str)
        A 0/1 column for ``kind="logistic"``; a ``(time_column, event_column)`` pair
        for ``kind="cox"``.
    kind : {"logistic", "cox"}, default="logistic"
    times : sequence of float, optional
        Cox only (required): horizons of the S(t) axes, e.g. ``[36, 60]``.
    splines : sequence of str or dict of str to int, optional
        Numeric predictors fitted as restricted cubic splines (rms ``rcs``); a dict
        gives each its number of knots.
    knots : int, default=4
        Knots of each spline (Hmisc default placement).
    categorical : sequence of str, optional
        Numeric columns to treat as categorical (e.g. 0/1 codes).
    impute : {None, "median"} or scikit-learn imputer, default=None
        None refuses missing predictor values. ``"median"`` fills numeric columns
        with the median and categorical ones with the mode; an imputer object
        (e.g. ``IterativeImputer()``) fills the numeric columns. :func:`validate`
        and :func:`calibrate` refit the imputation in every bootstrap sample.

    Returns
    -------
    Nomogram

    Raises
    ------
    NomogramInputError
        For a missing or constant predictor, a spline on a column with fewer
        distinct values than knots, missing values without ``impute``, an outcome
        that is not 0/1 (or not a time/event pair), or ``times`` beyond follow-up.

    Examples
    --------
    >>> from sksurv.datasets import load_gbsg2
    >>> from lnmkit.nomogram import fit_nomogram
    >>> X, y = load_gbsg2()
    >>> df = X.assign(time=y["time"], event=y["cens"].astype(int))
    >>> nomo = fit_nomogram(df, ["tsize", "age", "tgrade"], ("time", "event"), kind="cox",
    ...                     times=[1095, 1825], splines=["tsize"])
    >>> nomo.predict(df.iloc[:2]).shape
    (2, 2)
    """
    where = "fit_nomogram"
    data = _check_frame(data, where)
    if kind not in _KINDS:
        raise NomogramInputError(f"{where}: kind must be one of {list(_KINDS)}; got {kind!r} instead.")
    if isinstance(predictors, str):
        predictors = [predictors]
    predictors = list(predictors)
    missing = [p for p in predictors if p not in data.columns]
    if missing:
        raise NomogramInputError(f"{where}: predictor column(s) {missing} not found in the data; columns are "
                                 f"{list(data.columns)}.")
    y = _check_outcome(data, outcome, kind, where)
    times = _check_times(times, kind, y, where)
    raw = data[predictors].copy()
    imputer = None
    if impute is None:
        na = raw.isna().to_numpy()
        if na.any():
            r, c = map(int, np.argwhere(na)[0])
            raise NomogramInputError(
                f"{where}: column {predictors[c]!r} has {int(na[:, c].sum())} missing value(s), first at "
                f"{_row(raw, r)}: NaN. Drop those rows, or pass impute='median' (or a scikit-learn "
                "imputer) to impute, and refit the imputation in every bootstrap sample of validate().")
        filled = raw
    else:
        if not (impute == "median" if isinstance(impute, str) else hasattr(impute, "fit")):
            raise NomogramInputError(f"{where}: impute must be None, 'median' or a scikit-learn imputer; got "
                                     f"{impute!r} instead.")
        cat = set(categorical or ())
        cats = [p for p in predictors if p in cat or _is_categorical(raw[p])]
        imputer = PredictorImputer(impute, [p for p in predictors if p not in cats], cats)
        filled = imputer.fit_transform(raw)
    design = build_design(filled, predictors, splines=splines, knots=knots, categorical=categorical,
                          where=where)
    nomo = Nomogram(kind=kind, design=design, outcome=outcome, times=times)
    nomo._train = {"raw": raw, "y": y, "impute": impute}
    X = design.matrix(filled, where)
    try:
        fit = nomo._fit_matrix(X, y)
    except FitFailure as exc:
        found = _separating_predictors(filled, predictors, y) if kind == "logistic" else ""
        raise NomogramInputError(
            f"{where}: the {kind} model cannot be fitted ({exc}).{found} A predictor (or a combination) that "
            "separates the outcome, a category without events or collinear predictors are the usual "
            "causes; merge sparse categories or drop a predictor.") from exc
    nomo._set_fit(fit, X)
    nomo.imputer_ = imputer
    if kind == "logistic":
        p = expit(nomo.fit_.linear_predictor(X))
        # |lp| > 18: a sign of (quasi-)separation, where the maximum likelihood is at infinity
        if np.any((p < 1e-8) | (p > 1 - 1e-8)):
            from sklearn.exceptions import ConvergenceWarning

            warnings.warn(f"{where}: fitted probabilities within 1e-8 of 0 or 1: a predictor (or a "
                          "combination) separates the outcome, so some coefficients run off to infinity and "
                          "the chart is not trustworthy. Merge sparse categories or drop the predictor.",
                          ConvergenceWarning, stacklevel=2)
    return nomo


def _separating_predictors(data, predictors, y):
    """Sentences naming each numeric predictor that alone splits the outcome perfectly, with the cut."""
    found = []
    for name in predictors:
        values = pd.to_numeric(data[name], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(values)
        pos, neg = values[ok & (y == 1)], values[ok & (y == 0)]
        if pos.size == 0 or neg.size == 0:
            continue
        if pos.min() > neg.max():
            found.append(f"{name!r} separates the outcome: every row with {name} > {neg.max():.6g} has outcome 1 "
                         f"and every row with {name} <= {neg.max():.6g} has outcome 0")
        elif pos.max() < neg.min():
            found.append(f"{name!r} separates the outcome: every row with {name} < {neg.min():.6g} has outcome 1 "
                         f"and every row with {name} >= {neg.min():.6g} has outcome 0")
    return "".join(f" {sentence}." for sentence in found)


class Nomogram:
    """A fitted logistic or Cox model drawn as an rms nomogram.

    Build one with :func:`fit_nomogram` or :meth:`from_model`.

    Parameters
    ----------
    kind : {"logistic", "cox"}
    design : Design
        Terms, knots, levels and axes.
    outcome : str or (str, str)
    times : tuple of float
        Survival horizons (Cox).

    Attributes
    ----------
    coef_ : pandas.Series
        Coefficients by design column (rms names: ``age``, ``age'``, ``tgrade=II``).
    intercept_ : float
        Logistic intercept (NaN for Cox).
    center_ : float
        Cox centring constant ``sum(means * coef)`` (0 for logistic).
    knots_ : dict of str to list of float
        Knots of every spline term.
    scale_ : PointsScale
        Points per unit of linear predictor (``scale_.sc``), axis ranges and ticks.
    imputer_ : PredictorImputer or None
    """

    def __init__(self, kind, design, outcome, times=()):
        self.kind = kind
        self.design = design
        self.outcome = outcome
        self.times = tuple(times)
        self.imputer_ = None
        self._train = None
        self._penalised = False

    @classmethod
    def from_model(cls, model, data=None, outcome=None, times=None):
        """Nomogram of a fitted ``lnmkit.models`` logistic or Cox model.

        The chart uses the model's own coefficients (a model with the MIL slide
        score among its columns gets a slide-score axis like any other). Axes span
        the training data: ``CoxPH`` keeps its training design, so ``data`` is
        optional there; ``LNMLogisticRegression`` does not, so pass its training
        table. With the outcome known, :func:`validate` and :func:`calibrate` work
        as for :func:`fit_nomogram` (bootstrap refits are unpenalised maximum
        likelihood, so a penalised model is refused there).

        Parameters
        ----------
        model : lnmkit.models.LNMLogisticRegression or lnmkit.models.CoxPH
            Fitted; numeric and categorical terms (no missing-value indicators,
            no recalibration, no class weights).
        data : pandas.DataFrame, optional
            The training table (required for LNMLogisticRegression).
        outcome : str or (str, str), optional
            Outcome column(s) in ``data`` (needed for validation).
        times : sequence of float, optional
            Cox: horizons of the S(t) axes (required).

        Returns
        -------
        Nomogram

        Raises
        ------
        TypeError
            For a model that is not linear (XGBoost, forests).
        NomogramInputError
            If the training data needed for the axes is missing, or the model has
            terms a nomogram cannot draw.
        """
        from lnmkit.nomogram._from_model import nomogram_from_model

        return nomogram_from_model(model, data=data, outcome=outcome, times=times)

    # ------------------------------------------------------------------ fitting
    def _fit_matrix(self, X, y):
        if self.kind == "logistic":
            return fit_logistic(X, y)
        return fit_cox(X, y[0], y[1])

    def _refit_matrix(self, X, y):
        """The model refitted on other rows (a bootstrap sample), started at this fit's coefficients."""
        fit = self.fit_
        if self.kind == "logistic":
            intercept, coef, loglik = refit_logistic(X, y, fit.intercept, fit.coef)
            return logistic_fit_from_coef(intercept, coef, loglik, y)
        return cox_fit_from_coef(refit_cox_coef(X, y[0], y[1], fit.coef), X, y[0], y[1])

    def _set_fit(self, fit, X):
        self.fit_ = fit
        cols = self.design.columns
        self.coef_ = pd.Series(np.asarray(fit.coef, dtype=float), index=cols, name="coef")
        self.coef_.index.name = "term"
        if self.kind == "logistic":
            self.intercept_, self.center_ = float(fit.intercept), 0.0
            beta0 = self.intercept_
        else:
            self.intercept_, self.center_ = float("nan"), float(fit.center)
            beta0 = -self.center_
        self.knots_ = {t.name: list(t.knots) for t in self.design.terms if t.kind == "rcs"}
        fitted_lp = fit.linear_predictor(X)
        self.scale_ = compute_scale(self.design, self.coef_.to_numpy(), beta0, fitted_lp,
                                    self.outcome_axes, self._lp_to_prob, self._prob_to_lp)
        return self

    @property
    def outcome_axes(self):
        """The probability axes: P(outcome) or S(t) for each of ``times``.

        Returns
        -------
        list of OutcomeAxis
        """
        if self.kind == "logistic":
            return [OutcomeAxis(label=f"P({self.outcome})")]
        return [OutcomeAxis(label=f"S({t:g})", time=t) for t in self.times]

    def _lp_to_prob(self, lp, ax):
        if ax.time is None:
            return expit(lp)
        return self.fit_.survival(lp, ax.time)

    def _prob_to_lp(self, prob, ax):
        prob = np.asarray(prob, dtype=float)
        if ax.time is None:
            return logit(prob)
        s0 = self.fit_.survival(np.zeros(1), ax.time)[0]
        return np.log(np.log(prob) / np.log(s0))

    def _check_fitted(self):
        if not hasattr(self, "fit_"):
            raise NotFittedError("This Nomogram is not fitted; build it with fit_nomogram or "
                                 "Nomogram.from_model.")

    # --------------------------------------------------------------- prediction
    def _prepared(self, df, where):
        df = _check_frame(df, where)
        if self.imputer_ is not None:
            check = [t.name for t in self.design.terms if t.name not in df.columns]
            if check:
                raise NomogramInputError(f"{where}: predictor column(s) {check} not found in the data.")
            df = self.imputer_.transform(df[self.design.predictors])
        check_predictor_values(df, self.design.terms, where)
        return df

    def linear_predictor(self, df):
        """Linear predictor of each row (logistic: with intercept; Cox: centred).

        Parameters
        ----------
        df : pandas.DataFrame

        Returns
        -------
        pandas.Series
        """
        self._check_fitted()
        df = self._prepared(df, "Nomogram.linear_predictor")
        X = self.design.matrix(df)
        return pd.Series(self.fit_.linear_predictor(X), index=df.index, name="lp")

    def points(self, df):
        """Points of each predictor and the total, per row.

        Parameters
        ----------
        df : pandas.DataFrame
            Holds every predictor column.

        Returns
        -------
        pandas.DataFrame
            One column per predictor plus ``total_points``, indexed like ``df``.
        """
        self._check_fitted()
        df = self._prepared(df, "Nomogram.points")
        contrib = term_contributions(self.design, self.coef_.to_numpy(), df)
        pts = (contrib - self.scale_.ranges["R1"]) * self.scale_.sc
        pts["total_points"] = pts.sum(axis=1)
        return pts

    def predict(self, df):
        """Predicted probability (logistic) or S(t) at each of ``times`` (Cox).

        Parameters
        ----------
        df : pandas.DataFrame

        Returns
        -------
        pandas.Series or pandas.DataFrame
            Logistic: a Series of P(outcome), named ``P(<outcome>)``. Cox: patients x
            times, S(t) with one column per time of ``times`` (column labels are the
            times, as ``predict_survival_function`` of lnmkit's survival models).
        """
        lp = self.linear_predictor(df)
        axes = self.outcome_axes
        if self.kind == "logistic":
            return pd.Series(expit(lp.to_numpy()), index=lp.index, name=axes[0].label)
        out = pd.DataFrame({ax.time: self.fit_.survival(lp.to_numpy(), ax.time) for ax in axes},
                           index=lp.index)
        out.columns = pd.Index(out.columns, name="time")
        return out

    def predict_from_points(self, total_points):
        """Probabilities read from total points, as the bottom axes of the chart do.

        Parameters
        ----------
        total_points : array-like

        Returns
        -------
        pandas.DataFrame
            One column per outcome axis.
        """
        self._check_fitted()
        total = np.atleast_1d(np.asarray(total_points, dtype=float))
        lp = self.scale_.lp_from_points(total)
        return pd.DataFrame({ax.label: self._lp_to_prob(lp, ax) for ax in self.outcome_axes})

    def table(self, step=1.0):
        """The chart as numbers: axis value -> points, and total points -> probability.

        Parameters
        ----------
        step : float, default=1.0
            Spacing of the total-points grid of the outcome rows.

        Returns
        -------
        pandas.DataFrame
            Columns ``axis``, ``value``, ``points``. Predictor rows give the points
            of each axis tick; ``Linear predictor`` rows and one block per outcome
            axis (``P(...)`` or ``S(t)``) give the value reached at each total
            (``points`` is then total points).
        """
        self._check_fitted()
        rows = []
        for name, axis in self.scale_.axes.items():
            rows.append(pd.DataFrame({"axis": name, "value": axis["value"].astype(object),
                                      "points": axis["points"]}))
        top = float(self.scale_.total_ticks.max())
        grid = np.arange(0.0, top + step / 2, step)
        lp = self.scale_.lp_from_points(grid)
        rows.append(pd.DataFrame({"axis": "Linear predictor", "value": lp.astype(object), "points": grid}))
        for ax in self.outcome_axes:
            rows.append(pd.DataFrame({"axis": ax.label, "value": self._lp_to_prob(lp, ax).astype(object),
                                      "points": grid}))
        return pd.concat(rows, ignore_index=True)

    # -------------------------------------------------------------- validation
    def validate(self, B=200, **kwargs):
        """Bootstrap internal validation (see :func:`lnmkit.nomogram.validate`).

        Parameters
        ----------
        B : int, default=200
        **kwargs
            Passed on to :func:`lnmkit.nomogram.validate`.

        Returns
        -------
        ValidationResult
        """
        from lnmkit.nomogram._validate import validate

        return validate(self, B=B, **kwargs)

    def calibrate(self, B=200, **kwargs):
        """Bootstrap-corrected calibration (see :func:`lnmkit.nomogram.calibrate`).

        Parameters
        ----------
        B : int, default=200
        **kwargs
            Passed on to :func:`lnmkit.nomogram.calibrate`.

        Returns
        -------
        CalibrationResult
        """
        from lnmkit.nomogram._calibrate import calibrate

        return calibrate(self, B=B, **kwargs)

    # ----------------------------------------------------------------- display
    def plot(self, patient=None, ax=None):
        """Draw the nomogram in the classic layout.

        Parameters
        ----------
        patient : pandas.Series or one-row pandas.DataFrame, optional
            A patient's predictor values; their points and total are marked.
        ax : matplotlib.axes.Axes, optional

        Returns
        -------
        matplotlib.figure.Figure
        """
        from lnmkit.nomogram._plot import plot_nomogram

        self._check_fitted()
        return plot_nomogram(self, patient=patient, ax=ax)

    @property
    def n_(self):
        """Number of fitted rows."""
        return self.fit_.n

    def __repr__(self):
        if not hasattr(self, "fit_"):
            return f"<Nomogram: {self.kind}, not fitted>"
        events = int(np.sum(self._outcome_events())) if self._train is not None else None
        ev = f", {events} events" if events is not None else ""
        return (f"<Nomogram: {self.kind}, {self.n_} patients{ev}, {len(self.design.terms)} predictors, "
                f"{self.scale_.sc:.3g} points per unit of linear predictor>")

    def _outcome_events(self):
        y = self._train["y"]
        return y if self.kind == "logistic" else y[1]

    def _repr_html_(self):
        if not hasattr(self, "fit_"):
            return f"<p>{html.escape(repr(self))}</p>"
        coef = self.coef_.to_frame()
        if self.kind == "logistic":
            coef = pd.concat([pd.DataFrame({"coef": [self.intercept_]}, index=["Intercept"]), coef])
        return (f"<p>{html.escape(repr(self))}</p>" + coef.to_html(float_format=lambda v: f"{v:.5g}")
                + self.scale_.ranges.to_html(float_format=lambda v: f"{v:.5g}"))

    def _repr_mimebundle_(self, **kwargs):
        return {"text/plain": repr(self), "text/html": self._repr_html_()}
