"""README's cluster path under Ray 2.60 token authentication (issue #16, item 4), against a loopback
`ray start --head` cluster started with RAY_AUTH_MODE=token: `skillscale run --address` connects with the token
(RAY_AUTH_TOKEN here; ~/.ray/auth_token on a real cluster) without being told the mode, and runs the study.

The head is this test's own (its own --temp-dir); it is stopped by killing exactly the processes that hold
that directory, never with `ray stop` (which would stop every Ray on the machine)."""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import SMALL_STUDY

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _own_processes(temp_dir: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", temp_dir], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


@pytest.fixture
def token_head():
    temp_dir = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    token = secrets.token_hex(16)
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    ray_bin = str(Path(sys.executable).parent / "ray")
    head = subprocess.Popen([ray_bin, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
                             "--include-dashboard=false", "--num-cpus=2", f"--temp-dir={temp_dir}",
                             "--disable-usage-stats"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        for line in head.stdout:
            if "Ray runtime started" in line:
                break
        else:
            pytest.fail("the token-auth head did not start")
        yield f"127.0.0.1:{port}", token
    finally:
        for pid in _own_processes(temp_dir) + [head.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        head.wait(timeout=30)


def test_skillscale_run_joins_a_token_cluster(token_head, tmp_path):
    address, token = token_head
    study = dict(SMALL_STUDY, name="token", max_concurrent=1, max_runs=3)
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(study))
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}  # the user did not say "token"
    env["RAY_AUTH_TOKEN"] = token
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # a driver of this loopback-only head must be on loopback too
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "run", str(config), "--study-dir",
                           str(tmp_path / "s"), "--address", address, "--quiet"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "s" / "result.json").read_text())["n_runs"] == 3
    assert time.monotonic() - start < 150
