"""Coverage of the bootstrap 95% interval of N*(C_target) under 100x extrapolation.

100 simulated data sets from the Chinchilla law (5 budgets 1e18..1e20 x 7 sizes, multiplicative
log-normal noise cycling through 0.5%, 1%, 2%), C_target = 1e22. The interval must contain the true N*
in 85-99% of them: too low means overconfident (the trap in docs/design.md, Fitting), 100% means uselessly wide.
The interval is the one the report uses: residual bootstrap, bias-corrected percentile
(fitting.law.interval with the point estimate).
"""

import numpy as np

from fitting.conventions import FLOPS_PER_PARAM_TOKEN
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


# ------------------------------------------------------------------ inside a tokens-per-parameter band
BAND = (10.0, 100.0)  # the narrowest band practitioners use (issue #21); D/N of every run inside it
BAND_SETS = 30


def _band_design(rng, n_runs: int = 96):
    """Half the runs at each edge of the band, C log-uniform in [1e16, 1e18]: the shape of a FLOP-aware
    adaptive design (benchmarks/bench_coverage.py, design `edge`)."""
    c = np.exp(rng.uniform(np.log(1e16), np.log(1e18), n_runs))
    ratio = np.where(np.arange(n_runs) % 2 == 0, BAND[0], BAND[1])
    n = np.sqrt(c / (FLOPS_PER_PARAM_TOKEN * ratio))
    return n, c / (FLOPS_PER_PARAM_TOKEN * n)


def _band_intervals() -> np.ndarray:
    """(point, lo, hi, truth) rows of the default 95% interval of N* at 100x the largest run, over
    BAND_SETS data sets at 1% noise."""
    rows = []
    for i in range(BAND_SETS):
        rng = np.random.default_rng(21_000 + i)
        n, d = _band_design(rng)
        loss = CHINCHILLA.loss(n, d) * np.exp(0.01 * rng.standard_normal(n.size))
        c_target = 100 * float(np.max(FLOPS_PER_PARAM_TOKEN * n * d))
        fit = fit_parametric(n, d, loss)
        point = fit.law.optimum(c_target)[0][0]
        ens = bootstrap_parametric(n, d, loss, n_boot=100, seed=i, fit=fit)
        rows.append((point, *interval(ens.optimum(c_target)[0], point=point), CHINCHILLA.optimum(c_target)[0][0]))
    return np.array(rows)


def _calibration(rows: np.ndarray, shrink: float = 1.0) -> tuple[float, float]:
    """(coverage, needed scale) of intervals narrowed by `shrink` in log space about the point. Scaling
    every interval's side toward the truth by `needed` would give exactly 95% coverage."""
    point, lo, hi, truth = rows.T
    lo, hi = point * (lo / point) ** shrink, point * (hi / point) ** shrink
    err = np.log(point / truth)
    side = np.where(err > 0, np.log(point / lo), np.log(hi / point))
    return float(np.mean((lo <= truth) & (truth <= hi))), float(np.quantile(np.abs(err) / side, 0.95))


def test_default_interval_is_calibrated_inside_the_band():
    """Coverage near 95% and no wider than needed (needed ~ 1: calibrated; < 1 too wide; > 1 too narrow).
    The binomial spread of coverage at 30 sets is about +-0.08."""
    rows = _band_intervals()
    coverage, needed = _calibration(rows)
    assert 0.85 <= coverage <= 1.0, coverage
    assert 0.7 <= needed <= 1.4, needed
    narrowed, needed_narrow = _calibration(rows, shrink=0.5)  # the same check catches an overconfident method
    assert narrowed < 0.85 and needed_narrow > 1.4, (narrowed, needed_narrow)
    widened = _calibration(rows, shrink=2.0)[1]  # ... and one twice as wide as needed
    assert widened < 0.7, widened
