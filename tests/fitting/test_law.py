import numpy as np
import pytest

from fitting.law import LawEnsemble, ParametricLaw

from ._data import BESIROGLU, CHINCHILLA


@pytest.mark.parametrize("law", [CHINCHILLA, BESIROGLU])
def test_closed_form_optimum_is_the_isoflop_minimum(law):
    c = 1e21
    n_opt, d_opt = law.optimum(c)
    grid = np.geomspace(n_opt[0] / 100, n_opt[0] * 100, 400_001)
    brute = grid[np.argmin(law.loss(grid, c / (6 * grid)))]
    assert n_opt[0] == pytest.approx(brute, rel=1e-4)
    assert 6 * n_opt[0] * d_opt[0] == pytest.approx(c)


def test_transfer_scales_effective_data():
    law = ParametricLaw(1.7, 400.0, 400.0, 0.34, 0.28, transfer={"code": 1.0, "web": 0.25})
    plain = ParametricLaw(1.7, 400.0, 400.0, 0.34, 0.28)
    mix = {"code": 0.4, "web": 0.6}  # T = 0.4 + 0.6*0.25 = 0.55
    assert law.loss(1e8, 1e9, mix)[0] == pytest.approx(plain.loss(1e8, 0.55e9)[0])
    # the optimum with a mix is the plain optimum with B' = B T^-beta
    shifted = ParametricLaw(1.7, 400.0, 400.0 * 0.55 ** -0.28, 0.34, 0.28)
    assert law.optimum(1e21, mix)[0][0] == pytest.approx(shifted.optimum(1e21)[0][0])
    assert law.to_dict()["transfer"] == {"code": 1.0, "web": 0.25}


def test_ensemble_matches_its_members():
    rng = np.random.default_rng(0)
    k = 7
    ens = LawEnsemble(1.7 + 0.1 * rng.random(k), 400 * (1 + rng.random(k)), 500 * (1 + rng.random(k)),
                      0.3 + 0.1 * rng.random(k), 0.3 + 0.1 * rng.random(k),
                      transfer=np.column_stack([np.ones(k), rng.random(k)]), domains=("a", "b"))
    n, d = np.array([1e7, 1e8, 1e9]), np.array([1e9, 3e9, 2e10])
    mix = np.array([[1.0, 0.0], [0.5, 0.5], [0.2, 0.8]])
    losses = ens.loss(n, d, mix)
    assert losses.shape == (k, 3)
    n_opt, d_opt = ens.optimum(1e21, {"a": 0.3, "b": 0.7})
    for i in range(k):
        np.testing.assert_allclose(losses[i], ens.member(i).loss(n, d, mix))
        assert n_opt[i] == pytest.approx(ens.member(i).optimum(1e21, {"a": 0.3, "b": 0.7})[0][0])
    assert ens.size == k
    assert ens.with_params(E=np.zeros(k)).E.sum() == 0
