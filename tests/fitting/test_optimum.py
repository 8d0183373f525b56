import numpy as np
import pytest

from fitting.law import LawEnsemble
from fitting.optimum import composition_exponent, composition_optimum, composition_whatif

from ._data import BESIROGLU, CHINCHILLA


def _ensemble(law, k, jitter, seed):
    rng = np.random.default_rng(seed)
    scale = lambda v: v * np.exp(jitter * rng.standard_normal(k))
    return LawEnsemble(scale(law.E), scale(law.A), scale(law.B), scale(law.alpha), scale(law.beta))


def test_composition_matches_brute_force():
    ensembles = {"knowledge": _ensemble(CHINCHILLA, 6, 0.05, 0), "code": _ensemble(BESIROGLU, 6, 0.05, 1)}
    weights = {"knowledge": 0.6, "code": 0.4}
    c = 3e21
    n_opt, d_opt = composition_optimum(ensembles, weights, c)
    grid = np.geomspace(1e7, 1e13, 600_001)
    for k in range(6):
        total = sum(w * ensembles[s].member(k).loss(grid, c / (6 * grid)) for s, w in weights.items())
        assert n_opt[k] == pytest.approx(grid[np.argmin(total)], rel=1e-4)
    np.testing.assert_allclose(6 * n_opt * d_opt, c)


def test_single_skill_composition_is_the_closed_form():
    ens = _ensemble(CHINCHILLA, 5, 0.1, 2)
    np.testing.assert_allclose(composition_optimum({"s": ens}, {"s": 1.0}, 1e22)[0], ens.optimum(1e22)[0],
                               rtol=1e-6)  # golden section on a flat minimum
    np.testing.assert_allclose(composition_exponent({"s": ens}, {"s": 1.0}, 1e22), ens.exponent_a, rtol=1e-5)


def test_whatif_moves_n_star_toward_the_heavier_skill():
    # Chinchilla (a = 0.45) wants fewer params at 1e22 than Besiroglu (a = 0.51) in these units
    ensembles = {"k": _ensemble(CHINCHILLA, 4, 0.0, 0), "c": _ensemble(BESIROGLU, 4, 0.0, 0)}
    c = 1e22
    rows = composition_whatif(ensembles, c, [{"k": 1.0}, {"k": 0.5, "c": 0.5}, {"c": 1.0}])
    n_star = [r["n_params"] for r in rows]
    assert n_star[0] == pytest.approx(CHINCHILLA.optimum(c)[0][0], rel=1e-6)
    assert n_star[2] == pytest.approx(BESIROGLU.optimum(c)[0][0], rel=1e-6)
    assert min(n_star[0], n_star[2]) < n_star[1] < max(n_star[0], n_star[2])
    assert rows[0]["n_params_ratio"] == pytest.approx(1.0)
