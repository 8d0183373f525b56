import numpy as np
import pytest

from fitting.law import ParametricLaw
from fitting.mixture import fit_mixture
from fitting.parametric import bootstrap_parametric

from ._data import isoflop_design

DOMAINS = ("code", "web", "books")
TRUTH = ParametricLaw(1.8, 450.0, 900.0, 0.33, 0.31, transfer={"code": 1.0, "web": 0.3, "books": 0.05})
MIXES = np.array([[1.0, 0.0, 0.0], [0.6, 0.3, 0.1], [0.3, 0.5, 0.2], [0.1, 0.5, 0.4], [0.2, 0.2, 0.6]])


def _runs(sigma, seed):
    n0, d0 = isoflop_design(ParametricLaw(1.8, 450.0, 900.0, 0.33, 0.31), budgets=np.geomspace(1e18, 1e20, 4),
                            n_sizes=5)
    n, d = np.tile(n0, len(MIXES)), np.tile(d0, len(MIXES))
    mix = np.repeat(MIXES, n0.size, axis=0)
    loss = TRUTH.loss(n, d, mix) * np.exp(np.random.default_rng(seed).normal(0, sigma, n.size))
    return n, d, loss, mix


def test_joint_fit_recovers_the_transfer_vector():
    n, d, loss, mix = _runs(0.0, 0)
    fit = fit_mixture(n, d, loss, mix, DOMAINS, "code").joint
    for dom, t in TRUTH.transfer.items():
        assert fit.law.transfer[dom] == pytest.approx(t, rel=1e-3, abs=1e-3), dom
    assert fit.law.alpha == pytest.approx(TRUTH.alpha, rel=1e-3)


def test_noisy_transfer_inside_its_interval():
    n, d, loss, mix = _runs(0.01, 3)
    ens = bootstrap_parametric(n, d, loss, n_boot=100, mix=mix, domains=DOMAINS, own_domain="code", seed=1)
    assert np.all(ens.transfer[:, 0] == 1.0)
    lo, hi = np.quantile(ens.transfer[:, 1], [0.025, 0.975])
    assert lo <= 0.3 <= hi
    assert hi - lo < 0.3  # and the runs actually pin it down
    m = {"code": 0.5, "web": 0.5, "books": 0.0}
    lo, hi = np.quantile(ens.optimum(1e22, m)[0], [0.025, 0.975])
    assert lo <= TRUTH.optimum(1e22, m)[0][0] <= hi


def test_per_mix_fallback_when_transfer_form_is_wrong():
    n, d, _, mix = _runs(0.0, 0)
    # each mix follows its own unrelated law: no linear transfer explains them
    exponents = [0.25, 0.45, 0.3, 0.5, 0.35]
    loss = np.concatenate([ParametricLaw(1.8, 450.0, 900.0 * (1 + 3 * i), 0.33, b).loss(n[:20], d[:20])
                           for i, b in enumerate(exponents)])
    result = fit_mixture(n, d, loss, mix, DOMAINS, "code")
    assert result.use_per_mix
    assert len(result.per_mix) == len(MIXES)
    clean = fit_mixture(*_runs(0.005, 1), DOMAINS, "code")
    assert not clean.use_per_mix
