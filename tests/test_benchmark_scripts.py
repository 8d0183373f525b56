"""The GPU benchmark scripts, run where CI runs them (no GPU): a bad flag or a missing GPU is one line on
stderr with exit status 2, before any work, never a traceback."""

import os
import subprocess
from pathlib import Path

import pytest
import torch

from tests.conftest import run_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
@pytest.mark.parametrize("script", ["bench_kernels", "bench_trainer", "bench_compile_shapes", "family_parity"])
def test_gpu_benchmark_without_gpu_exits_2_with_one_line(script):
    proc = run_script(f"benchmarks/{script}.py")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "needs CUDA" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv, expected", [
    (["benchmarks/bench_trainer.py", "--sizes", "12x"], "expected DxL such as 256x4"),
    (["benchmarks/bench_compile_shapes.py", "--modes", "fast"], "--modes: expected compile and/or eager"),
    (["benchmarks/family_parity.py", "--tokens-per-param", "20"], "--tokens-per-param: expected two or more"),
    (["benchmarks/bench_packing.py", "configs/skills-h200.yaml", "--runs", "1e6"], "--runs: expected N@C items"),
    (["benchmarks/bench_packing.py", "configs/skills-h200.yaml", "--runs", "1e6@1e14", "--layouts", "6x0.5"],
     "need A >= 1, 0 < G <= 1 and A x G <= 1 GPU"),
])
def test_benchmark_bad_flag_exits_2_with_one_line(argv, expected):
    proc = run_script(*argv)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("env, args, expected", [
    ({}, ["0"], "TIME_LIMIT_S: expected a positive whole number"),
    ({"LAYOUT": "6by0.16"}, [], "LAYOUT: expected AxG"),
    ({"MPS": "yes"}, [], "MPS: expected 0 or 1"),
    ({"CONFIG": "configs/missing.yaml"}, [], "CONFIG: configs/missing.yaml: no such file"),
])
def test_gpu_study_sitting_bad_argument_exits_2_with_one_line(env, args, expected, tmp_path):
    proc = subprocess.run(["bash", "benchmarks/run_gpu_study.sh", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "OUT": str(tmp_path), **env}, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr


def test_packing_summary_says_where_the_runs_time_went():
    from benchmarks.bench_packing import summarise

    results = [{"flops": 6e14, "n_tokens": 1e8, "tokens_per_s": 1e7, "wall_s": 40.0, "mfu": 0.02,
                "time_s": {"setup": 4.0, "first_step": 20.0, "train": 10.0, "evaluate": 6.0}},
               {"flops": 6e14, "n_tokens": 1e8, "tokens_per_s": 1e7, "wall_s": 20.0, "mfu": 0.02,
                "time_s": {"setup": 4.0, "first_step": 0.0, "train": 10.0, "evaluate": 6.0}}]
    row = {"actors": 2, "gpus_per_actor": 0.5, "runs": 2, "wall_s": 60.0, "results": results}
    out = summarise(row, peak=1e15)
    assert out["runs_per_gpu_min"] == pytest.approx(2.0) and out["efficiency"] == pytest.approx(1.2e15 / 6e16)
    assert out["phase_shares"] == {"setup": 0.133, "first_step": 0.333, "train": 0.333, "evaluate": 0.2}
    assert out["train_fraction"] == pytest.approx(20 / 60)
