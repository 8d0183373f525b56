"""The shared-seed noise of benchmarks/bench_coverage.py (--shared-seed-correlation): the errors of runs of one
shape and replicate index share a component, replicates and other shapes do not, and rho 0 keeps the independent
errors (and the random stream) of every earlier cell."""

import sys
from pathlib import Path

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


@pytest.mark.parametrize("argv, expected", [
    (["--shared-seed-correlation", "1.5"], "--shared-seed-correlation: expected a number in [0, 1)"),
    (["--runs", "2"], "--runs must be >= 8"),
])
def test_a_bad_flag_is_one_line_and_exit_status_2(argv, expected, tmp_path):
    import os
    import subprocess

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_coverage.py"), *argv, "--no-record"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr
