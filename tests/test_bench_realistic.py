"""The reduced harder benchmark (benchmarks/bench_realistic.py) runs in seconds: every strategy on one cell,
runs inside the band, the metrics and the verdict in their schema, bad flags are one line. The mix cell (issue
#21, item 6: `mix.space: simplex`, a mixture-aware truth, targets at mixes no run used): adaptive and the grid
baseline report the metrics per target, each target's truth is its skill's true law at the target's own mix, and
runs are scored by the truth at the run's mix."""

import math

import numpy as np
import pytest

from scheduler.study import Study
from tests.conftest import benchmark_module
from trainers.simulated import PRESETS
from trainers.spec import RunSpec


@pytest.fixture(scope="module")
def bench():
    return benchmark_module("bench_realistic")


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


CELL = "knowledge-code-simplex"
TINY_SIMPLEX = ["--truths", CELL, "--noise", "0.005", "--seeds", "1", "--max-runs", "30", "--n-boot", "20",
        "--n-candidates", "64", "--inner-trials", "0", "--grid", "3", "6", "--strategies", "adaptive", "grid",
        "--no-record"]


def test_simplex_cell_reports_every_metric_per_target_and_strategy(bench):
    lines = []
    rows = bench.main(TINY_SIMPLEX, log=lines.append)
    assert {(r["truth"], r["strategy"]) for r in rows} == {(f"{CELL}/{t}", s) for t in ("knowledge", "code")
                                                          for s in ("adaptive", "grid")}
    for r in rows:
        assert r["seeds"] == 1 and r["runs_median"] <= 30
        assert r["coverage"] in (0.0, 1.0)
        assert math.isfinite(r["final_rel_error_median"]) and r["final_halfwidth_median"] > 0
        assert r["flops_to_median_5pct"] is None or 0 < r["flops_to_median_5pct"] <= r["flops_spent_median"]
        assert "flops_to_tolerance_median" in r and 0.0 <= r["reached_fraction"] <= 1.0
    grid = [r for r in rows if r["strategy"] == "grid"]
    assert all(r["runs_median"] == 3 * 3 * 2 for r in grid)  # 3 budgets x 3 mixes x ceil(6 / 3) sizes
    assert sum("ratio_same_error" in line for line in lines) == 2  # a verdict per target


def test_each_target_is_scored_against_the_truth_at_its_own_mix(bench):
    args = bench.parser().parse_args(TINY_SIMPLEX)
    cfg = bench.study_config(0.005, 0, args, CELL)
    assert cfg.mix.space == "simplex" and [t.mix for t in cfg.targets] == list(bench.TARGET_MIXES.values())
    true_n = bench.true_optima(CELL, cfg)
    for skill, mix in bench.TARGET_MIXES.items():
        law = PRESETS["knowledge-code"][skill]
        assert true_n[skill] == pytest.approx(float(law.optimum(1e21, mix=mix)[0][0]), rel=1e-12)
        assert abs(true_n[skill] / float(law.optimum(1e21)[0][0]) - 1) > 0.05  # the mix moves N*
    assert abs(true_n["knowledge"] / true_n["code"] - 1) > 0.2
    # no grid or pool mix sits at a target's mix
    targets = np.array([[m[d] for d in bench.DOMAINS] for m in bench.TARGET_MIXES.values()])
    assert min(np.abs(targets - np.array(g)).max() for g in bench.GRID_MIXES) > 1e-3


def test_a_run_is_scored_by_the_truth_at_the_run_s_own_mix(bench):
    args = bench.parser().parse_args(TINY_SIMPLEX)
    cfg = bench.study_config(0.0, 0, args, CELL)
    lab = bench.Lab(Study(cfg, None), bench.MIXTURE_TRUTHS[CELL], 0.0, 0, {}, {})
    knowledge_heavy = RunSpec(n_params=10**8, n_tokens=2 * 10**9, mix={"knowledge": 0.9, "code": 0.05,
                                                                       "general": 0.05}, run_id="a")
    code_heavy = RunSpec(n_params=10**8, n_tokens=2 * 10**9, mix={"knowledge": 0.05, "code": 0.9,
                                                                  "general": 0.05}, run_id="b")
    a, b = lab.losses(knowledge_heavy), lab.losses(code_heavy)
    assert set(a) == {"knowledge", "code"}
    assert a["knowledge"] < b["knowledge"] and a["code"] > b["code"]  # more of a skill's own data: lower loss
    law = PRESETS["knowledge-code"]["code"]
    assert b["code"] == pytest.approx(float(law.loss(10**8, 2 * 10**9, code_heavy.mix)[0]), rel=1e-12)
