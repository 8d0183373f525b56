"""The mix cell of benchmarks/bench_realistic.py (issue #21, item 6: `mix.space: simplex`, a mixture-aware truth,
targets at mixes no run used), reduced to seconds: adaptive and the grid baseline run end to end and report the
metrics per target, each target's truth is its skill's true law at the target's own mix, and runs are scored by
the truth at the run's mix."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from scheduler.study import Study
from trainers.simulated import PRESETS
from trainers.spec import RunSpec

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
CELL = "knowledge-code-simplex"
TINY = ["--truths", CELL, "--noise", "0.005", "--seeds", "1", "--max-runs", "30", "--n-boot", "20",
        "--n-candidates", "64", "--inner-trials", "0", "--grid", "3", "6", "--strategies", "adaptive", "grid",
        "--no-record"]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its sibling _provenance
    spec = importlib.util.spec_from_file_location("bench_realistic", BENCHMARKS / "bench_realistic.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_realistic"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_simplex_cell_reports_every_metric_per_target_and_strategy(bench):
    lines = []
    rows = bench.main(TINY, log=lines.append)
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
    args = bench.parser().parse_args(TINY)
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
    args = bench.parser().parse_args(TINY)
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
