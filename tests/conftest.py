"""Fixtures shared across test packages: one Ray cluster for the whole session and a small study.

The Ray head is started once with `ray start --head` (Ray takes seconds to start on 2 cores): the
test process attaches to it, and so do controller subprocesses that the fault tests kill and restart.
"""

import os
import shutil
import subprocess
import sys

import pytest

DASHBOARD_PORT = 8267


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    """Address of a local Ray head; this process is attached to it. Stopped at the end of the session."""
    ray = pytest.importorskip("ray")
    ray_bin = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    temp = tmp_path_factory.mktemp("ray")
    port = "6391"
    # A throwaway cluster on the loopback address only; token auth (Ray's default for local clusters)
    # is turned off for it so that the test's subprocesses attach without a token file.
    os.environ["RAY_AUTH_MODE"] = "disabled"
    # The dashboard (on loopback) hosts Ray's job server, which tests/faults/test_ray_job.py submits to.
    subprocess.run([ray_bin, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                    "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={DASHBOARD_PORT}",
                    "--disable-usage-stats", f"--temp-dir={temp}"],
                   check=True, capture_output=True, timeout=180)
    address = f"127.0.0.1:{port}"
    ray.init(address=address, namespace="skillscale-tests", logging_level="ERROR", log_to_driver=False)
    yield address
    ray.shutdown()
    subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=180)


@pytest.fixture(scope="session")
def ray_local(ray_head):
    """The Ray module, attached to the session's cluster."""
    import ray

    return ray


SMALL_STUDY = {
    "name": "small",
    "skills": ["knowledge", "code"],
    "domains": ["knowledge", "code", "general"],
    "mix": {"space": "fixed", "fixed": {"knowledge": 0.4, "code": 0.4, "general": 0.2}},
    "n_params": [1e7, 3e9],
    "n_tokens": [1e8, 1e11],
    "flops": [1e16, 1e19],
    "targets": [
        {"name": "knowledge", "weights": {"knowledge": 1.0}, "flops": 1e20},
        {"name": "code", "weights": {"code": 1.0}, "flops": 1e20},
    ],
    "tolerance": 0.10,
    "compute_cap": 1e21,
    "max_concurrent": 2,
    "resources": {"num_cpus": 0.5},
    "backend": {"name": "simulated", "settings": {"truth": "knowledge-code", "noise": 0.005}},
    "proposer": {"n_boot": 100, "overhead_flops": 1e17, "inner_trials": 16, "n_candidates": 512},
    "seed": 0,
}


@pytest.fixture
def small_study():
    import copy

    return copy.deepcopy(SMALL_STUDY)
