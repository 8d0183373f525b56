import numpy as np
import pytest

from fitting.isoflop import bootstrap_isoflop, fit_isoflop, group_budgets
from fitting.parametric import bootstrap_parametric, fit_parametric
from skillscale.errors import InputError

from ._data import BESIROGLU, CHINCHILLA, isoflop_design, noisy_loss


def test_budgets_within_five_percent_are_grouped():
    flops = np.array([1e18, 1.03e18, 0.99e18 * 1.0, 1e19, 1.04e19, 3e18])
    assert group_budgets(flops).tolist() == [0, 0, 0, 2, 2, 1]


@pytest.mark.parametrize("law", [CHINCHILLA, BESIROGLU])
def test_exponent_recovered_on_noiseless_grid(law):
    n, d = isoflop_design(law, n_sizes=9, spread=3.0)
    n = n * np.random.default_rng(0).uniform(0.99, 1.01, n.size)  # sizes rounded: budgets only ~equal
    fit = fit_isoflop(n, d, law.loss(n, d))
    assert fit.a[0] == pytest.approx(law.exponent_a, abs=0.01)


def test_parametric_and_isoflop_agree_within_their_intervals():
    law = CHINCHILLA
    n, d = isoflop_design(law, n_sizes=9, spread=4.0)
    exact = law.loss(n, d)
    c = 1e21  # 10x beyond the largest budget
    # noiseless: both point estimates land on the truth
    n_param = fit_parametric(n, d, exact).law.optimum(c)[0][0]
    n_iso = fit_isoflop(n, d, exact).optimum(c)[0][0]
    assert n_param == pytest.approx(law.optimum(c)[0][0], rel=0.01)
    assert n_iso == pytest.approx(n_param, rel=0.05)
    # with 0.5% noise the two bootstrap intervals overlap and each holds the other's point estimate
    loss = noisy_loss(law, n, d, 0.005, seed=7)
    ens = bootstrap_parametric(n, d, loss, n_boot=200, seed=1)
    iso = bootstrap_isoflop(n, d, loss, n_boot=200, seed=1)
    p_lo, p_hi = np.quantile(ens.optimum(c)[0], [0.025, 0.975])
    i_lo, i_hi = np.nanquantile(iso.optimum(c)[0], [0.025, 0.975])
    assert p_lo <= fit_isoflop(n, d, loss).optimum(c)[0][0] <= p_hi
    assert i_lo <= fit_parametric(n, d, loss).law.optimum(c)[0][0] <= i_hi


def test_too_few_budgets_is_an_input_error():
    n = np.array([1e7, 2e7, 4e7])
    with pytest.raises(InputError, match="needs >= 2 budgets"):
        fit_isoflop(n, 1e18 / (6 * n), [3.0, 2.9, 3.1])
