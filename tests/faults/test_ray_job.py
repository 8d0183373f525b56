"""A study submitted as a Ray Job (`ray job submit -- skillscale run ...`) runs to its stop on the cluster."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

import tests.conftest as shared

pytestmark = pytest.mark.slow


def test_study_runs_as_a_ray_job(ray_head, small_study, tmp_path):
    ray_bin = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    small_study.update(name="as-a-job", compute_cap=2e18, max_concurrent=1)
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(small_study))
    study_dir = tmp_path / "study"
    address = f"http://127.0.0.1:{shared.DASHBOARD_PORT}"
    entry = f"{sys.executable} -m scheduler.cli run {config} --study-dir {study_dir} --quiet"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    deadline = time.monotonic() + 120
    while True:  # the job server comes up a little after the head
        proc = subprocess.run([ray_bin, "job", "submit", "--address", address, "--", *entry.split()],
                              capture_output=True, text=True, timeout=600, cwd=root)
        if "succeeded" in proc.stdout + proc.stderr or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert "succeeded" in proc.stdout + proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((study_dir / "result.json").read_text())
    assert result["stop_reason"] == "budget_exhausted" and result["flops_spent"] <= 2e18
