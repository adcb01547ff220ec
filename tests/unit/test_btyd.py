"""BG/NBD and Gamma-Gamma against the published CDNOW estimates and a reference implementation.

Fader, Hardie and Lee (2005) fitted the BG/NBD on a 2,357-customer sample of CDNOW, 39-week
calibration, in weeks: r = 0.243, alpha = 4.414, a = 0.793, b = 2.426, log-likelihood -9,582.4;
and the Gamma-Gamma on the same sample's repeat buyers: p = 6.25, q = 3.74, gamma = 15.44. The
sample and a reference implementation come with the `lifetimes` package (a dev dependency; its
data file is read from the installed package, nothing is downloaded).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from models.segments.btyd import BGNBD, GammaGamma, fit_bgnbd, fit_gamma_gamma, simulate_bgnbd

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value

PUBLISHED_BGNBD = BGNBD(r=0.243, alpha=4.414, a=0.793, b=2.426)
PUBLISHED_GG = GammaGamma(p=6.25, q=3.74, gamma=15.44)


@pytest.fixture(scope="module")
def cdnow() -> dict[str, np.ndarray]:
    s = load_cdnow_summary_data_with_monetary_value()
    return {k: s[k].to_numpy(dtype=np.float64) for k in ("frequency", "recency", "T", "monetary_value")}


def close(got: dict[str, float], want: dict[str, float], rel: float) -> list[str]:
    return [f"{k}: {got[k]:.4f} vs {v:.4f}" for k, v in want.items() if abs(got[k] - v) > rel * abs(v)]


def test_bgnbd_on_cdnow_matches_the_published_fit_within_1_percent(cdnow: dict[str, np.ndarray]) -> None:
    x, t_x, T = cdnow["frequency"], cdnow["recency"], cdnow["T"]
    assert len(x) == 2357
    assert PUBLISHED_BGNBD.log_likelihood(x, t_x, T).sum() == pytest.approx(-9582.4, abs=0.1)
    fit = fit_bgnbd(x, t_x, T)
    assert close(fit.as_dict(), PUBLISHED_BGNBD.as_dict(), 0.01) == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = BetaGeoFitter(penalizer_coef=0.0).fit(x, t_x, T)
    assert close(fit.as_dict(), {k: float(ref.params_[k]) for k in ("r", "alpha", "a", "b")}, 0.01) == []


def test_gamma_gamma_on_cdnow_matches_the_published_fit_within_1_percent(
    cdnow: dict[str, np.ndarray],
) -> None:
    repeat = cdnow["frequency"] > 0
    x, m = cdnow["frequency"][repeat], cdnow["monetary_value"][repeat]
    fit = fit_gamma_gamma(x, m)
    assert close(fit.as_dict(), PUBLISHED_GG.as_dict(), 0.01) == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = GammaGammaFitter(penalizer_coef=0.0).fit(x, m)
    assert (
        close(fit.as_dict(), {"p": ref.params_["p"], "q": ref.params_["q"], "gamma": ref.params_["v"]}, 0.01)
        == []
    )
    expected = fit.expected_spend(x, m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = np.asarray(ref.conditional_expected_average_profit(x, m))
    np.testing.assert_allclose(expected, reference, rtol=0.01)


def test_per_customer_closed_forms_equal_the_reference(cdnow: dict[str, np.ndarray]) -> None:
    """P(alive) and expected purchases for every customer, at the published parameters."""
    x, t_x, T = cdnow["frequency"], cdnow["recency"], cdnow["T"]
    ref = BetaGeoFitter()
    ref.params_ = pd.Series(PUBLISHED_BGNBD.as_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alive = ref.conditional_probability_alive(x, t_x, T)
        purchases = ref.conditional_expected_number_of_purchases_up_to_time(39, x, t_x, T)
    np.testing.assert_allclose(PUBLISHED_BGNBD.p_alive(x, t_x, T), alive, rtol=1e-9)
    np.testing.assert_allclose(PUBLISHED_BGNBD.expected_purchases(39, x, t_x, T), purchases, rtol=1e-6)


def test_the_fit_recovers_the_parameters_of_simulated_customers() -> None:
    truth = BGNBD(r=0.8, alpha=20.0, a=1.5, b=6.0)
    x, t_x, T = simulate_bgnbd(truth, 20_000, 365.0, np.random.default_rng(7))
    fit = fit_bgnbd(x, t_x, T)
    assert close(fit.as_dict(), {"r": 0.8, "alpha": 20.0}, 0.06) == []
    assert close(fit.as_dict(), {"a": 1.5, "b": 6.0}, 0.35) == []  # weakly identified in a year
    # What matters downstream is identified well: the expected purchases of a new customer.
    new = (np.zeros(1), np.zeros(1), np.zeros(1))
    assert fit.expected_purchases(90, *new)[0] == pytest.approx(
        truth.expected_purchases(90, *new)[0], rel=0.03
    )


@pytest.mark.parametrize("theta", [[-1.4, 1.5, -0.2, 0.9], [0.0, 3.0, 0.4, 1.8], [-3.0, -1.0, 2.0, -2.0]])
def test_the_bgnbd_gradient_is_the_likelihoods(cdnow: dict[str, np.ndarray], theta: list[float]) -> None:
    """The fit's closed-form gradient against finite differences (scipy's check_grad) of the mean
    log-likelihood (as the fit scales it), near the published optimum (in log-parameters) and
    away from it."""
    from scipy.optimize import check_grad

    from models.segments.btyd import _bgnbd_ll, _bgnbd_ll_grad

    x, t_x, T = cdnow["frequency"], cdnow["recency"], cdnow["T"]
    n = len(x)
    scale = max(1.0, float(np.linalg.norm(_bgnbd_ll_grad(np.array(theta), x, t_x, T) / n)))
    err = check_grad(
        lambda th: _bgnbd_ll(th, x, t_x, T).sum() / n,
        lambda th: _bgnbd_ll_grad(th, x, t_x, T) / n,
        np.array(theta),
    )
    assert err < 1e-6 * scale


@pytest.mark.parametrize("theta", [[1.8, 1.3, 2.7], [0.0, 0.5, 1.0], [3.0, 2.0, 5.0]])
def test_the_gamma_gamma_gradient_is_the_objectives(cdnow: dict[str, np.ndarray], theta: list[float]) -> None:
    """The same for the Gamma-Gamma fit's objective (penalised, as minimised)."""
    from scipy.optimize import check_grad

    from models.segments.btyd import _gamma_gamma_objective

    repeat = cdnow["frequency"] > 0
    x, m = cdnow["frequency"][repeat], cdnow["monetary_value"][repeat]
    args = (x, m, np.log(m), np.log(x), np.log([6.0, 4.0, float(np.median(m))]))
    point = np.array(theta)
    scale = max(1.0, float(np.linalg.norm(_gamma_gamma_objective(point, *args)[1])))
    err = check_grad(
        lambda th: _gamma_gamma_objective(th, *args)[0],
        lambda th: _gamma_gamma_objective(th, *args)[1],
        point,
    )
    assert err < 1e-6 * scale
