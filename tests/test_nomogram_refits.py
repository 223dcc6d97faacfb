"""Bootstrap refits of validate/calibrate (Newton in array code and compiled sums) against the library fits.

Every refit must land where statsmodels (logistic) and lifelines (Cox, Efron ties)
land on the same bootstrap sample, on public data sets with tied event times, a
factor and a spline; Somers' Dxy against censored survival must equal the pair-by-pair
definition.
"""

from __future__ import annotations

import numpy as np
import pytest

from lnmkit.nomogram import fit_nomogram
from lnmkit.nomogram._fit import FitFailure, efron_loglik, fit_cox, fit_logistic
from lnmkit.nomogram._indices import cox_dxy
from lnmkit.nomogram._newton import EfronTies, cox_slope, refit_cox_coef, refit_logistic
from lnmkit.nomogram._resample import bootstrap_indices, original


@pytest.fixture(scope="module")
def rossi_cox():
    """Rossi recidivism (lifelines): weekly times, so heavy ties; a spline on age."""
    from lifelines.datasets import load_rossi

    df = load_rossi()
    df["fin"] = df["fin"].map({0: "no", 1: "yes"})
    return fit_nomogram(df, ["age", "fin", "prio", "wexp"], ("week", "arrest"), kind="cox", times=[26, 52],
                        splines=["age"])


@pytest.fixture(scope="module")
def whas_logistic():
    from sksurv.datasets import load_whas500

    X, y = load_whas500()
    df = X[["age", "gender", "hr", "bmi"]].assign(died=y["fstat"].astype(int))
    return fit_nomogram(df, ["age", "gender", "hr", "bmi"], "died", splines=["age", "bmi"])


def test_cox_refits_reach_lifelines_maximum_on_bootstrap_samples(rossi_cox):
    X, (time, event) = original(rossi_cox)
    for rows in bootstrap_indices(len(time), 8, seed=3):
        Xb, tb, eb = X[rows], time[rows], event[rows]
        reference = fit_cox(Xb, tb, eb).coef
        refit = refit_cox_coef(Xb, tb, eb, rossi_cox.fit_.coef)
        # lifelines stops with a score up to 1e-2 on these samples; the refit goes on to
        # the maximum, so its likelihood is at least lifelines' and the coefficients agree
        # to lifelines' own precision
        assert efron_loglik(Xb @ refit, tb, eb) >= efron_loglik(Xb @ reference, tb, eb) - 1e-10
        np.testing.assert_allclose(refit, reference, rtol=1e-3, atol=1e-5)
        score = EfronTies(tb, eb).objective(Xb)(refit)[1]
        assert np.max(np.abs(score)) < 1e-8


def test_logistic_refits_equal_statsmodels_on_bootstrap_samples(whas_logistic):
    X, y = original(whas_logistic)
    fit = whas_logistic.fit_
    for rows in bootstrap_indices(len(y), 8, seed=4):
        reference = fit_logistic(X[rows], y[rows])
        intercept, coef, loglik = refit_logistic(X[rows], y[rows], fit.intercept, fit.coef)
        np.testing.assert_allclose(coef, reference.coef, rtol=1e-6, atol=1e-8)
        assert intercept == pytest.approx(reference.intercept, rel=1e-6, abs=1e-8)
        assert loglik == pytest.approx(reference.loglik, rel=1e-10)


def test_efron_loglik_against_lifelines_at_its_maximum(rossi_cox):
    from lifelines import CoxPHFitter
    from lifelines.datasets import load_rossi

    df = load_rossi()[["week", "arrest", "age", "prio"]]
    cph = CoxPHFitter().fit(df, "week", "arrest")
    lp = df[["age", "prio"]].to_numpy() @ cph.params_.to_numpy()
    assert efron_loglik(lp, df["week"], df["arrest"]) == pytest.approx(cph.log_likelihood_, rel=1e-10)


def test_cox_slope_is_one_for_the_fitted_predictor_and_scales_inversely(rossi_cox):
    X, (time, event) = original(rossi_cox)
    ties = EfronTies(time, event)
    lp = rossi_cox.fit_.linear_predictor(X)
    slope, loglik = cox_slope(lp, ties)
    assert slope == pytest.approx(1.0, abs=1e-6)  # the maximum-likelihood predictor needs no shrinkage
    assert loglik == pytest.approx(rossi_cox.fit_.loglik, rel=1e-10)
    assert cox_slope(3.0 * lp, ties)[0] == pytest.approx(1 / 3, abs=1e-6)


def _dxy_by_pairs(x, time, event):
    conc = disc = tied = 0
    for i in np.flatnonzero(event):
        usable = (time > time[i]) | ((time == time[i]) & (event == 0))
        conc += np.sum(usable & (x[i] > x))
        disc += np.sum(usable & (x[i] < x))
        tied += np.sum(usable & (x[i] == x))
    total = conc + disc + tied
    return np.nan if total == 0 else 2 * ((conc + tied / 2) / total - 0.5)


@pytest.mark.parametrize("seed", range(6))
def test_cox_dxy_equals_its_pairwise_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = [7, 40, 300][seed % 3]
    x = rng.integers(0, 6, n).astype(float)  # ties in the score
    time = rng.integers(1, 10, n).astype(float)  # ties in time, censored and events mixed
    event = rng.integers(0, 2, n)
    expected = _dxy_by_pairs(x, time, event)
    got = cox_dxy(x, time, event)
    assert (np.isnan(got) and np.isnan(expected)) or got == pytest.approx(expected, abs=1e-12)


def test_refit_failures():
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    y = (x > 0).astype(float)
    with pytest.raises(FitFailure, match="separation"):
        refit_logistic(x[:, None], y, 0.0, np.ones(1))
    singular = np.column_stack([x, 2 * x])
    with pytest.raises(FitFailure, match="singular"):
        refit_cox_coef(singular, rng.exponential(size=60), y, np.zeros(2))
