"""Truths outside the fitted family (fitting/truths.py): they reduce to the base law where they should,
their numerical optimum matches the closed form there, and they move N* where they should not."""

import numpy as np
import pytest

from fitting.truths import CrossTermLaw, RepeatedDataLaw

from ._data import CHINCHILLA


def test_zero_departures_give_the_base_law_and_its_closed_form_optimum():
    n, d = np.array([1e7, 1e8, 1e9]), np.array([1e9, 3e9, 1e11])
    for law in (CrossTermLaw(CHINCHILLA, kappa=0.0), RepeatedDataLaw(CHINCHILLA, unique_tokens=1e15)):
        np.testing.assert_allclose(law.loss(n, d), CHINCHILLA.loss(n, d), rtol=1e-12)
        np.testing.assert_allclose(law.optimum([1e19, 1e21])[0], CHINCHILLA.optimum([1e19, 1e21])[0], rtol=1e-6)


def test_repeated_data_is_worth_less_and_moves_the_optimum_to_larger_models():
    law = RepeatedDataLaw(CHINCHILLA, unique_tokens=1e10)
    assert law.effective_tokens(5e9) == 5e9
    assert law.effective_tokens(2e10) == pytest.approx(1e10 + 1e10 * 15.4 * (1 - np.exp(-1 / 15.4)))
    assert law.effective_tokens(1e13) == pytest.approx(1e10 * 16.4)  # saturates at U (1 + R*)
    assert law.optimum(1e21)[0][0] > 1.2 * CHINCHILLA.optimum(1e21)[0][0]


def test_cross_term_drifts_the_data_exponent_with_model_size():
    law = CrossTermLaw(CHINCHILLA, kappa=0.006, n_ref=1e8)
    assert law.loss(1e8, 1e10)[0] == pytest.approx(CHINCHILLA.loss(1e8, 1e10)[0])  # beta(n_ref) = beta
    assert law.loss(1e10, 1e10)[0] < CHINCHILLA.loss(1e10, 1e10)[0]  # larger beta at larger N
    assert law.to_dict()["form"] == "cross_term"
