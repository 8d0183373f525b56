"""benchmarks/bench_replay.py on its tiny CI setting (simulated ladder, 2 seeds): every design yields a cell with
the fields BENCHMARKS.md quotes, within its budget; a bad flag is one line, exit 2."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import benchmark_module

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_replay_benchmark_fills_every_cell(tmp_path):
    bench = benchmark_module("bench_replay")
    out = tmp_path / "replay.jsonl"
    assert bench.main(["--tiny", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    (ref,) = [r for r in rows if r["method"] == "all-runs"]
    assert ref["r2_median"] > 0.9 and ref["commit"] is not None and ref["tiny"] is True
    cells = {r["method"]: r for r in rows if r["method"] != "all-runs"}
    assert set(cells) == set(bench.METHODS)
    for method, cell in cells.items():
        assert cell["seeds"] == 2 and len(cell["per_seed"]) == 2
        assert cell["r2_worst"] <= cell["r2_median"] and 0 <= cell["coverage_worst"] <= cell["coverage_median"] <= 1
        assert 0 <= cell["n_star_in_ref"] <= 2 and cell["runs_median"] >= 6
        if method == "adaptive":  # a replayed run may cost more than the proposal it answers
            assert 0 < cell["share_used_max"] < 2 * cell["share_cap"]
        else:
            assert 0 < cell["share_used_max"] <= cell["share_cap"] + 1e-12


def test_bad_flag_is_one_line_exit_2():
    proc = subprocess.run([sys.executable, "benchmarks/bench_replay.py", "--shares", "0.03,2"], cwd=ROOT,
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--shares: each share" in proc.stderr
