import numpy as np
import pytest

from fitting.parametric import bootstrap_parametric, fit_parametric
from skillscale.errors import InputError

from ._data import BESIROGLU, C_TARGET, CHINCHILLA, DATA_HUNGRY, isoflop_design, noisy_loss


@pytest.mark.parametrize("law", [CHINCHILLA, BESIROGLU, DATA_HUNGRY])
def test_noiseless_fit_recovers_the_law(law):
    n, d = isoflop_design(law)
    fit = fit_parametric(n, d, law.loss(n, d))
    got = fit.law
    assert got.alpha == pytest.approx(law.alpha, rel=1e-3)
    assert got.beta == pytest.approx(law.beta, rel=1e-3)
    assert got.E == pytest.approx(law.E, rel=1e-3)
    assert got.optimum(C_TARGET)[0][0] == pytest.approx(law.optimum(C_TARGET)[0][0], rel=1e-2)
    assert fit.residual_std < 1e-4


@pytest.mark.parametrize("law,sigma,seed", [(CHINCHILLA, 0.005, 1), (BESIROGLU, 0.01, 2),
                                            (DATA_HUNGRY, 0.02, 3), (CHINCHILLA, 0.02, 4)])
def test_noisy_fit_truth_inside_intervals(law, sigma, seed):
    n, d = isoflop_design(law)
    loss = noisy_loss(law, n, d, sigma, seed)
    fit = fit_parametric(n, d, loss)
    ens = bootstrap_parametric(n, d, loss, n_boot=200, seed=seed, fit=fit)
    for name in ("alpha", "beta", "E"):
        lo, hi = np.quantile(getattr(ens, name), [0.025, 0.975])
        assert lo <= getattr(law, name) <= hi, name
    lo, hi = np.quantile(ens.optimum(C_TARGET)[0], [0.025, 0.975])
    assert lo <= law.optimum(C_TARGET)[0][0] <= hi
    assert fit.residual_std == pytest.approx(sigma, rel=0.5)  # the noise estimate is in the right range


def test_exclude_top_drops_the_outliers():
    n, d = isoflop_design(CHINCHILLA)
    loss = CHINCHILLA.loss(n, d)
    loss[[3, 10]] *= 1.5  # two broken runs with much higher loss
    fit = fit_parametric(n, d, loss, exclude_top=2)
    assert fit.excluded == (3, 10)
    assert fit.n_points == n.size - 2
    assert fit.law.alpha == pytest.approx(CHINCHILLA.alpha, rel=1e-3)


def test_shared_resamples_are_used():
    n, d = isoflop_design(CHINCHILLA)
    loss = noisy_loss(CHINCHILLA, n, d, 0.01, 0)
    idx = np.random.default_rng(5).integers(0, n.size, size=(20, n.size))
    a = bootstrap_parametric(n, d, loss, n_boot=20, resamples=idx, method="residual")
    b = bootstrap_parametric(n, d, loss, n_boot=20, resamples=idx, seed=99, method="residual")
    c = bootstrap_parametric(n, d, loss, n_boot=20, seed=99, method="residual")
    np.testing.assert_allclose(a.alpha, b.alpha)
    assert not np.allclose(a.alpha, c.alpha)


def test_shared_normal_draws_are_used_by_the_parametric_bootstrap():
    n, d = isoflop_design(CHINCHILLA)
    loss = noisy_loss(CHINCHILLA, n, d, 0.01, 0)
    draws = np.random.default_rng(5).standard_normal((20, n.size))
    a = bootstrap_parametric(n, d, loss, n_boot=20, draws=draws)
    b = bootstrap_parametric(n, d, loss, n_boot=20, draws=draws, seed=99)
    c = bootstrap_parametric(n, d, loss, n_boot=20, seed=99)
    np.testing.assert_allclose(a.alpha, b.alpha)
    assert not np.allclose(a.alpha, c.alpha)


def test_laplace_draws_match_the_parametric_bootstrap_spread():
    """The sandwich covariance under the noise model and refits of simulated data agree on log N*."""
    n, d = isoflop_design(CHINCHILLA)
    loss = noisy_loss(CHINCHILLA, n, d, 0.01, 1)
    fit = fit_parametric(n, d, loss)
    boot = np.log(bootstrap_parametric(n, d, loss, n_boot=200, fit=fit).optimum(1e22)[0])
    lap = np.log(bootstrap_parametric(n, d, loss, n_boot=2000, fit=fit, method="laplace").optimum(1e22)[0])
    assert np.std(lap) == pytest.approx(np.std(boot), rel=0.3)
    assert fit.noise is not None and fit.noise.sigma_ref == pytest.approx(0.01, rel=0.3)


def test_too_few_points_is_an_input_error():
    with pytest.raises(InputError, match="5 points to fit 5 parameters"):
        fit_parametric([1e7, 2e7, 3e7, 4e7, 5e7], [1e9] * 5, [3.0, 2.9, 2.8, 2.7, 2.6])


def test_exponents_at_bounds_flags_only_pinned_exponents():
    from dataclasses import replace

    from fitting._solver import ALPHA_BOUNDS
    from fitting.law import ParametricLaw
    from fitting.parametric import ParametricFit

    fit = ParametricFit(law=ParametricLaw(E=1.7, A=400.0, B=400.0, alpha=0.34, beta=0.28), residual_std=0.01,
                        n_points=20, excluded=())
    assert fit.exponents_at_bounds() == ()
    pinned_high = replace(fit, law=replace(fit.law, alpha=ALPHA_BOUNDS[1] * 0.99))
    pinned_low = replace(fit, law=replace(fit.law, beta=ALPHA_BOUNDS[0]))
    assert pinned_high.exponents_at_bounds() == ("alpha=2.97",)
    assert pinned_low.exponents_at_bounds() == ("beta=0.01",)
    near = replace(fit, law=replace(fit.law, alpha=ALPHA_BOUNDS[1] * 0.93, beta=ALPHA_BOUNDS[0] * 1.1))
    assert near.exponents_at_bounds() == ()  # within reach of the bounds, but not on them
