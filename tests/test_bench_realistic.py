"""The reduced harder benchmark (benchmarks/bench_realistic.py) runs in seconds: every strategy on one cell,
runs inside the band, the metrics and the verdict in their schema, bad flags are one line."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its sibling _provenance
    spec = importlib.util.spec_from_file_location("bench_realistic", BENCHMARKS / "bench_realistic.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_realistic"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


TINY = ["--truths", "cross-term", "--noise", "0.01", "--seeds", "1", "--band", "5", "640", "--max-runs", "24",
        "--n-boot", "20", "--n-candidates", "64", "--inner-trials", "0", "--grid", "3", "4", "--no-record"]


def test_reduced_benchmark_runs_every_strategy_and_reports_the_verdict(bench):
    lines = []
    rows = bench.main(TINY, log=lines.append)
    assert {r["strategy"] for r in rows} == {"adaptive", "random", "grid", "pool"}
    for r in rows:
        assert r["seeds"] == 1 and r["runs_median"] <= 24
        assert r["flops_spent_median"] is None or r["flops_spent_median"] <= 3e20
        assert 0.0 <= r["reached_fraction"] <= 1.0
    assert any("ratio_same_error" in line for line in lines)  # the verdict is printed


def test_band_grid_and_a_study_stay_inside_the_band(bench):
    args = bench.parser().parse_args(TINY)
    cfg = bench.study_config(0.01, 0, args)
    points = bench.band_grid(cfg, np.geomspace(1e16, 1e19, 4), 5)
    ratios = np.array([p.n_tokens / p.n_params for p in points])
    assert len(points) == 20 and ratios.min() >= 5 * 0.99 and ratios.max() <= 640 * 1.01
    (trace,) = bench.run_one("besiroglu", 0.01, "adaptive", 0, args)  # one target: one trace
    assert trace.n_runs <= 24 and trace.flops == sorted(trace.flops)


def test_bad_flag_is_one_line_and_exit_2(bench, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--truths", "nope"])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
