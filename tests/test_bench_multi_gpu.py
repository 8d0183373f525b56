"""benchmarks/bench_multi_gpu.py where CI runs it (no GPU): one line on stderr and exit status 2, before any work."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="checks the path of a machine without 2 GPUs")
@pytest.mark.parametrize("argv, expected", [([], "needs at least 2 CUDA GPUs"),
                                            (["--parts", "fast"], "--parts: expected data-parallel and/or actors")])
def test_multi_gpu_benchmark_refuses_with_one_line(argv, expected):
    proc = subprocess.run([sys.executable, "benchmarks/bench_multi_gpu.py", *argv], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr and "Traceback" not in proc.stderr
