"""A study submitted as a Ray Job (`ray job submit -- skillscale run ...`) runs to its stop on the cluster."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

import tests.conftest as shared

pytestmark = pytest.mark.slow


def test_study_runs_as_a_ray_job(ray_head, tmp_path):
    """As README's cluster section submits it: `--working-dir .` uploads the checkout, so the relative config
    path resolves inside the upload; the study dir is absolute (the upload is temporary)."""
    ray_bin = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    study_dir = tmp_path / "study"
    address = f"http://127.0.0.1:{shared.DASHBOARD_PORT}"
    entry = [sys.executable, "-m", "scheduler.cli", "run", "configs/smoke.yaml", "--study-dir", str(study_dir),
             "--quiet"]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    deadline = time.monotonic() + 120
    while True:  # the job server comes up a little after the head
        proc = subprocess.run([ray_bin, "job", "submit", "--address", address, "--working-dir", ".", "--", *entry],
                              capture_output=True, text=True, timeout=600, cwd=root)
        if "succeeded" in proc.stdout + proc.stderr or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert "succeeded" in proc.stdout + proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((study_dir / "result.json").read_text())
    assert result["stop_reason"] == "max_runs" and result["n_runs"] == 3
