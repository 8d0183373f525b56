"""benchmarks/bench_scheduler.py on a tiny configuration: schema, FLOP accounting, truths, summary maths."""

import json
import math

import numpy as np
import pytest

from tests.conftest import benchmark_module

bench = benchmark_module("bench_scheduler")
GRIDS, BenchConfig, GridSpec, Trace = bench.GRIDS, bench.BenchConfig, bench.GridSpec, bench.Trace
grid_points, run_adaptive, run_grid, study_config = bench.grid_points, bench.run_adaptive, bench.run_grid, \
    bench.study_config
summarize, true_optima, verdict = bench.summarize, bench.true_optima, bench.verdict

RESULT_KEYS = {"truth", "strategy", "concurrency", "seeds", "flops_to_tolerance_median", "flops_to_tolerance_iqr",
               "reached_fraction", "final_rel_error_median", "coverage"}
TINY = BenchConfig(truths=("chinchilla",), seeds=1, concurrency=(4,), max_flops=2e19, n_boot=30)


def test_true_optima_match_the_quickstart_numbers():
    cfg = study_config("knowledge-code", 0, TINY)
    n_opt = true_optima(cfg, "knowledge-code")
    assert [t.name for t in cfg.targets] == ["knowledge", "code", "half-half"]
    assert n_opt[0] == pytest.approx(1.94e9, rel=0.01) and n_opt[1] == pytest.approx(0.93e9, rel=0.01)
    assert n_opt[1] < n_opt[2] < n_opt[0]  # the 50/50 composition lies between its skills
    chin = true_optima(study_config("chinchilla", 0, TINY), "chinchilla")[0]
    g = (0.34 * 406.4 / (0.28 * 410.7)) ** (1 / 0.62)  # Hoffmann et al. 2022 eq. 4 with their eq. 10 fit
    assert chin == pytest.approx(g * (1e21 / 6) ** (0.28 / 0.62), rel=1e-6)


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: g.name)
def test_grid_points_sit_on_their_budgets_within_bounds(grid):
    cfg = study_config("chinchilla", 0, TINY)
    points = grid_points(cfg, grid)
    assert len(points) == grid.n_budgets * grid.n_sizes
    budgets = np.geomspace(grid.c_lo, grid.c_hi, grid.n_budgets)
    for i, p in enumerate(points):
        assert p.flops == pytest.approx(budgets[i // grid.n_sizes], rel=1e-3)
        assert cfg.n_params.lo <= p.n_params <= cfg.n_params.hi and cfg.n_tokens.lo <= p.n_tokens <= cfg.n_tokens.hi
    assert len({p.n_params for p in points[:grid.n_sizes]}) == grid.n_sizes


def test_grid_flops_are_the_sum_of_its_runs_6nd():
    cfg = study_config("chinchilla", 0, TINY)
    grid = GridSpec("grid-3x5", 3, 5)
    iso, par = run_grid(cfg, "chinchilla", 0, grid, true_optima(cfg, "chinchilla"))
    total = sum(6.0 * p.n_params * p.n_tokens for p in grid_points(cfg, grid))
    assert iso.flops == [total] and par.flops == [total]
    assert iso.n_runs == par.n_runs == 15
    assert 0 < iso.rel_error[0] < 1 and 0 < iso.halfwidth[0] < 10


def test_adaptive_respects_the_cap_and_records_a_monotone_curve():
    cfg = study_config("chinchilla", 0, TINY, concurrency=4)
    tr = run_adaptive(cfg, "chinchilla", 0, 4, true_optima(cfg, "chinchilla"))
    assert tr.flops and tr.flops[-1] <= cfg.compute_cap
    assert all(b > a for a, b in zip(tr.flops, tr.flops[1:], strict=False))
    assert tr.n_runs >= cfg.proposer.seed_runs
    assert tr.stop in {"converged", "budget_exhausted", "max_runs"}
    assert tr.reached == (tr.halfwidth[-1] <= 0.10 and tr.rel_error[-1] <= 0.10)


def test_summary_statistics_of_known_traces():
    def trace(seed, flops, err, hw, covered):
        return Trace("t", "s", 1, seed, flops=[flops], rel_error=[err], halfwidth=[hw], covered=[covered])

    traces = [trace(0, 1e19, 0.01, 0.05, True), trace(1, 3e19, 0.02, 0.09, True), trace(2, 5e19, 0.2, 0.05, False),
              trace(3, 9e19, 0.03, 0.5, True)]  # seeds 2 (wrong) and 3 (too wide) do not reach
    (row,) = summarize(traces)
    assert row["seeds"] == 4 and row["reached_fraction"] == 0.5
    assert row["flops_to_tolerance_median"] == pytest.approx(2e19)
    assert row["flops_to_tolerance_iqr"] == pytest.approx([1.5e19, 2.5e19])
    assert row["final_rel_error_median"] == pytest.approx(0.025) and row["coverage"] == 0.75


def test_verdict_compares_with_the_cheapest_grid_that_reaches():
    rows = [{"truth": "t", "strategy": "grid-a", "concurrency": 1, "reached_fraction": 1.0,
             "flops_to_tolerance_median": 4e20, "coverage": 1.0},
            {"truth": "t", "strategy": "grid-b", "concurrency": 1, "reached_fraction": 0.6,
             "flops_to_tolerance_median": 2e20, "coverage": 1.0},
            {"truth": "t", "strategy": "grid-c", "concurrency": 1, "reached_fraction": 0.1,
             "flops_to_tolerance_median": 1e19, "coverage": 1.0},
            {"truth": "t", "strategy": "adaptive", "concurrency": 1, "reached_fraction": 0.9,
             "flops_to_tolerance_median": 4e19, "coverage": 0.8}]
    (v,) = verdict(rows)
    assert v["cheapest_grid"] == "grid-b" and v["flops_ratio_vs_cheapest_grid"] == pytest.approx(0.2)
    assert v["meets_flops_target"] and not v["meets_coverage_target"]
    # no grid reaching it in most seeds: undecided, with the ratio to the densest grid's spend instead
    rows = [{**r, "reached_fraction": 0.1, "flops_spent_median": 3e20} if r["strategy"].startswith("grid") else r
            for r in rows]
    (v,) = verdict(rows)
    assert v["cheapest_grid"] is None and v["meets_flops_target"] is None
    assert v["flops_ratio_vs_densest_grid_spend"] == pytest.approx(4e19 / 3e20)


def test_command_writes_the_results_json(tmp_path):
    out, png = tmp_path / "scheduler.json", tmp_path / "plot.png"
    rc = bench.main(["--truth", "chinchilla", "--seeds", "1", "--concurrency", "4", "--strategies", "grid", "adaptive",
                     "--max-flops", "2e19", "--n-boot", "30", "--json", str(out), "--plot", str(png)])
    assert rc == 0 and png.stat().st_size > 0
    data = json.loads(out.read_text())
    strategies = {r["strategy"] for r in data["results"]}
    assert {g.name for g in GRIDS} | {f"{g.name}-parametric" for g in GRIDS} | {"adaptive"} == strategies
    for r in data["results"]:
        assert RESULT_KEYS <= set(r) and r["truth"] == "chinchilla" and r["seeds"] == 1
        assert 0 <= r["reached_fraction"] <= 1 and r["coverage"] in (0.0, 1.0)
        assert r["final_rel_error_median"] is not None and math.isfinite(r["final_rel_error_median"])
        if r["reached_fraction"]:
            q1, q3 = r["flops_to_tolerance_iqr"]
            assert q1 <= r["flops_to_tolerance_median"] <= q3
        else:
            assert r["flops_to_tolerance_median"] is None and r["flops_to_tolerance_iqr"] is None
    adaptive = next(r for r in data["results"] if r["strategy"] == "adaptive")
    assert adaptive["concurrency"] == 4
    assert adaptive["flops_to_tolerance_median"] is None or adaptive["flops_to_tolerance_median"] <= 2e19


def test_unknown_truth_exits_2(capsys):
    assert bench.main(["--truth", "gpt5"]) == 2
    assert "unknown preset 'gpt5'" in capsys.readouterr().err


def test_families_on_the_clock_respect_the_cap_and_record_whole_families():
    """The families strategy shares run_adaptive's simulated clock: a monotone curve under the cap, and every
    family's branches recorded together."""
    cfg = study_config("chinchilla", 0, TINY, concurrency=4)
    tr = bench.run_adaptive_families(cfg, "chinchilla", 0, 4, true_optima(cfg, "chinchilla"))
    assert tr.flops and tr.flops[-1] <= cfg.compute_cap
    assert all(b > a for a, b in zip(tr.flops, tr.flops[1:], strict=False))
    assert tr.strategy == "adaptive-families" and tr.n_runs >= cfg.proposer.seed_runs
