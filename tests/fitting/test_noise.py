"""The noise model (fitting/noise.py): sigma recovered from residuals and replicates, a slope in log N
only where the data show one, and lack of fit visible when replicates disagree with the residuals."""

import numpy as np
import pytest

from fitting.noise import NoiseModel, estimate_noise, replicate_groups
from fitting.parametric import fit_parametric

from ._data import CHINCHILLA, noisy_loss


def _band_design(rng, n_runs, band=(5.0, 640.0)):
    c = np.exp(rng.uniform(np.log(1e17), np.log(1e19), n_runs))
    ratio = np.exp(rng.uniform(*np.log(band), n_runs))
    n = np.sqrt(c / (6 * ratio))
    return n, c / (6 * n)


def test_constant_noise_is_recovered_from_fit_residuals_without_a_spurious_slope():
    rng = np.random.default_rng(1)
    n, d = _band_design(rng, 120)
    estimates, slopes = [], []
    for seed in range(6):
        fit = fit_parametric(n, d, noisy_loss(CHINCHILLA, n, d, 0.01, seed=seed))
        estimates.append(fit.noise.sigma_ref)
        slopes.append(fit.noise.slope_n)
    assert 0.0085 < np.median(estimates) < 0.0115, estimates
    assert sum(s != 0.0 for s in slopes) <= 1, slopes  # a 2-s.e. test: about 5% false slopes


def test_noise_falling_with_model_size_is_found():
    rng = np.random.default_rng(2)
    n, d = _band_design(rng, 200)
    sigma = 0.02 * (n / 1e8) ** -0.4
    residuals = sigma * rng.standard_normal(n.size)
    model = estimate_noise(n, d, residuals)
    assert -0.6 < model.slope_n < -0.2, model
    assert model.sigma(1e8, 3e9)[()] == pytest.approx(0.02, rel=0.2)
    flat = estimate_noise(n, d, residuals, vary=False)
    assert flat.slope_n == 0.0 and flat.slope_d == 0.0


def test_replicates_measure_pure_noise_and_expose_lack_of_fit():
    rng = np.random.default_rng(3)
    n, d = _band_design(rng, 40)
    n, d = np.repeat(n, 3), np.repeat(d, 3)  # every point three times (three seeds)
    assert replicate_groups(n, d).max() == 39
    pure = 0.01 * rng.standard_normal(n.size)
    fits_well = estimate_noise(n, d, pure)
    assert fits_well.replicate_dof == 80
    assert fits_well.replicate_sigma == pytest.approx(0.01, rel=0.2)
    assert 0.7 < fits_well.lack_of_fit < 1.5
    misfit = np.repeat(0.03 * rng.standard_normal(40), 3)  # the same error at every replicate: the law is off
    misspecified = estimate_noise(n, d, pure + misfit)
    assert misspecified.replicate_sigma == pytest.approx(0.01, rel=0.2)
    assert misspecified.lack_of_fit > 3.0
    assert misspecified.sigma_ref > 2 * fits_well.sigma_ref  # what the fit sees includes the misfit


def test_constant_model_and_bad_inputs():
    model = NoiseModel.constant(0.005)
    assert np.allclose(model.sigma([1e7, 1e9], [1e8, 1e10]), 0.005)
    assert NoiseModel.constant(0.0).sigma(1e7, 1e8) == pytest.approx(1e-4)  # the floor
    with pytest.raises(ValueError, match="lengths"):
        estimate_noise([1e7, 1e8], [1e8], [0.0, 0.1])
