"""Coverage of the bootstrap 95% interval of N*(C_target) under 100x extrapolation.

100 simulated data sets from the Chinchilla law (5 budgets 1e18..1e20 x 7 sizes, multiplicative
log-normal noise cycling through 0.5%, 1%, 2%), C_target = 1e22. The interval must contain the true N*
in 85-99% of them: too low means overconfident (the DESIGN.md trap), 100% means uselessly wide.
The interval is the one the report uses: residual bootstrap, bias-corrected percentile
(fitting.law.interval with the point estimate).
"""

import numpy as np

from fitting.law import interval
from fitting.parametric import bootstrap_parametric, fit_parametric

from ._data import C_TARGET, CHINCHILLA, isoflop_design, noisy_loss

N_DATA_SETS = 100
N_BOOT = 200
SIGMAS = (0.005, 0.01, 0.02)


def _coverage(method: str) -> tuple[float, float]:
    n, d = isoflop_design(CHINCHILLA)
    truth = CHINCHILLA.optimum(C_TARGET)[0][0]
    hits, widths = 0, []
    for i in range(N_DATA_SETS):
        loss = noisy_loss(CHINCHILLA, n, d, SIGMAS[i % len(SIGMAS)], seed=10_000 + i)
        fit = fit_parametric(n, d, loss)
        ens = bootstrap_parametric(n, d, loss, n_boot=N_BOOT, seed=i, fit=fit, method=method)
        lo, hi = interval(ens.optimum(C_TARGET)[0], point=fit.law.optimum(C_TARGET)[0][0])
        hits += lo <= truth <= hi
        widths.append(np.log(hi / lo))
    return hits / N_DATA_SETS, float(np.median(widths))


def test_default_bootstrap_covers_n_star_under_extrapolation():
    coverage, width = _coverage("residual")
    assert 0.85 <= coverage <= 0.99, coverage
    assert width < np.log(10.0)  # and the interval is informative (median less than a factor of 10)
