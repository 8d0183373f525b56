"""Fixtures shared across test packages: one Ray cluster for the whole session, a small study, and the tiny
CPU trainer settings every real-training test builds on.

The cluster is started once, in this process (Ray takes seconds to start on 2 cores); controller
subprocesses that the fault tests kill and restart attach to it by address. Only this cluster is stopped
at the end: nothing else running Ray on the machine is touched.
"""

import contextlib
import importlib.util
import io
import os
import runpy
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
EXPERIMENTS = ROOT / "experiments"

DASHBOARD_PORT = 0  # set by ray_head to a free port

# A CPU torch backend whose data and evaluation sets build in well under a second (models of ~70k params).
TINY_TORCH_SETTINGS = dict(device="cpu", seq_len=32, knowledge_entities=50, domain_tokens=20_000,
                           heldout_tokens=4_000, eval_samples=16, heldout_rows=4, checkpoint_every=0, log_every=1)


def benchmark_module(name: str):
    """benchmarks/<name>.py imported as a module (the scripts import their siblings, e.g. _provenance, and their
    dataclasses look their module up, so benchmarks/ goes on sys.path and the module into sys.modules)."""
    return _script_module(BENCHMARKS, name)


def experiment_module(name: str):
    """experiments/<name>.py imported as a module, as benchmark_module does; the experiments also import from
    benchmarks/ (_provenance, _trainer_flags), so both folders go on sys.path."""
    return _script_module(EXPERIMENTS, name)


def run_script(script: str, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python SCRIPT ARGV...` (SCRIPT relative to the repository root) run in this process, as its `__main__`:
    its exit status, stdout and stderr, as subprocess.run would give them. A bad-flag check then costs
    milliseconds instead of a fresh interpreter importing torch. An exception that escapes the script (a
    traceback in a real run) is raised here and fails the test."""
    out, err = io.StringIO(), io.StringIO()
    argv0, here, code = sys.argv, os.getcwd(), 0
    try:
        sys.argv = [str(ROOT / script), *argv]
        os.chdir(cwd or ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(str(ROOT / script), run_name="__main__")
            except SystemExit as exc:
                if exc.code is None or isinstance(exc.code, int):
                    code = exc.code or 0
                else:  # sys.exit("message"): Python prints it and exits 1
                    print(exc.code, file=sys.stderr)
                    code = 1
    finally:
        sys.argv = argv0
        os.chdir(here)
    return subprocess.CompletedProcess([script, *argv], code, out.getvalue(), err.getvalue())


def _script_module(folder: Path, name: str):
    for path in (BENCHMARKS, folder):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def torch_backend_section(settings: dict) -> dict:
    """Flat settings like TINY_TORCH_SETTINGS as a study's typed `backend:` section (trainer and data fields)."""
    from trainers.data import DataSettings

    data_fields = set(DataSettings.model_fields)
    return {"name": "torch", "trainer": {k: v for k, v in settings.items() if k not in data_fields},
            "data": {k: v for k, v in settings.items() if k in data_fields}}


class Killed(Exception):
    """Stands in for a preemption: raised from inside a training step, so nothing after it runs (no checkpoint)."""


@dataclass
class StepKiller:
    """What kill_training_after installed: set kill_after (None: never) and reset steps between sessions."""

    kill_after: int | None
    steps: int = 0  # training steps taken since the last reset


def kill_training_after(monkeypatch, kill_after: int | None) -> StepKiller:
    """Make TorchBackend raise Killed once `kill_after` training steps have run in this process."""
    from trainers.torch_backend import TorchBackend

    killer, original = StepKiller(kill_after), TorchBackend._train_step

    def step(self, *args, **kwargs):
        if killer.steps == killer.kill_after:
            raise Killed(f"killed after {killer.kill_after} steps")
        killer.steps += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TorchBackend, "_train_step", step)
    return killer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def ray_head():
    """GCS address of a local Ray cluster that this process started (and alone stops): subprocess
    controllers attach to it, and its dashboard, on loopback, serves Ray's job API to test_ray_job.py."""
    ray = pytest.importorskip("ray")
    # A throwaway single-machine cluster on loopback; token auth (Ray's default for clusters it starts) is
    # off so the test's subprocesses attach without a token file. Subprocesses inherit the setting.
    os.environ["RAY_AUTH_MODE"] = "disabled"
    global DASHBOARD_PORT
    DASHBOARD_PORT = _free_port()
    context = ray.init(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=DASHBOARD_PORT,
                       namespace="skillscale-tests", logging_level="ERROR", log_to_driver=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()


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
    "law": "chinchilla",  # the loop's mechanics in a Chinchilla world, fast; law: auto has tests of its own
    "compute_cap": 1e21,
    "max_concurrent": 2,
    "resources": {"num_cpus": 0.5},
    "backend": {"name": "simulated", "truth": "knowledge-code", "noise": 0.005},
    "proposer": {"n_boot": 100, "overhead_flops": 1e17, "inner_trials": 16, "n_candidates": 512},
    "seed": 0,
}


@pytest.fixture
def tiny_settings():
    """TINY_TORCH_SETTINGS, a fresh copy per test."""
    return dict(TINY_TORCH_SETTINGS)


@pytest.fixture
def small_study():
    import copy

    return copy.deepcopy(SMALL_STUDY)
