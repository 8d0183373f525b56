"""The shared-seed noise of benchmarks/bench_coverage.py (--shared-seed-correlation): the errors of runs of one
shape and replicate index share a component, replicates and other shapes do not, and rho 0 keeps the independent
errors (and the random stream) of every earlier cell."""

import numpy as np
import pytest

from tests.conftest import benchmark_module


@pytest.fixture(scope="module")
def coverage():
    return benchmark_module("bench_coverage")


def test_runs_of_one_shape_and_replicate_share_their_seed_component(coverage):
    n = np.array([1e7, 1e7, 1e7, 1.01e7, 3e7, 3e7])  # 1.01e7 is the same shape (within 2%)
    d = np.array([1e8, 4e8, 1e8, 2e8, 1e8, 4e8])  # the third run replicates the first: replicate index 1
    z = np.array([coverage.seed_shared_noise(n, d, 0.98, np.random.default_rng(i)) for i in range(4000)])
    corr = np.corrcoef(z.T)
    assert corr[0, 1] > 0.9 and corr[0, 3] > 0.9 and corr[4, 5] > 0.9  # one shape, replicate 0
    assert abs(corr[0, 2]) < 0.1 and abs(corr[0, 4]) < 0.1  # a replicate (next seed), another shape
    assert z.std(axis=0) == pytest.approx(np.ones(6), abs=0.05)  # each error stays standard normal
    independent = coverage.seed_shared_noise(n, d, 0.0, np.random.default_rng(5))
    assert np.array_equal(independent, np.random.default_rng(5).standard_normal(6))
