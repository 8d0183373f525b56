"""Nothing hangs and nothing ends in a traceback (issue #16, items 1, 3, 5, 6, 8, 10): each failure a new user
met is one line on stderr with exit status 2, within seconds, and the study's state is left consistent."""

import copy
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from scheduler.cli import main
from scheduler.lock import StudyLock
from tests.conftest import SMALL_STUDY

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path, **overrides) -> Path:
    study = copy.deepcopy(SMALL_STUDY)
    study.update(max_concurrent=1, **overrides)
    study["proposer"].update(n_boot=20, n_candidates=64, inner_trials=0, seed_runs=6)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, allow_unicode=True))
    return path


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_a_second_controller_exits_at_once_naming_the_holder(tmp_path, capsys):
    config = _write(tmp_path)
    with StudyLock(tmp_path / "study"):
        start = time.monotonic()
        assert main(["run", str(config), "--study-dir", str(tmp_path / "study")]) == 2
        assert time.monotonic() - start < 5  # before Ray starts
    err = _one_line(capsys)
    assert f"another controller is running this study (pid {os.getpid()} on host" in err


def test_an_address_with_no_cluster_fails_within_seconds(tmp_path, capsys):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    assert main(["run", str(_write(tmp_path)), "--study-dir", str(tmp_path / "s"), "--address",
                 f"127.0.0.1:{port}"]) == 2
    assert time.monotonic() - start < 10
    assert "no Ray cluster answers there" in _one_line(capsys)


@pytest.mark.parametrize("field, value, expected", [
    ("name", "../../escape", "name: must be a plain name"),
    ("name", "", "name: must be a plain name"),
    ("compute_cap", "1e400", "compute_cap: must be a finite number"),
    ("seed", -1, "seed: Input should be greater than or equal to 0"),
])
def test_config_values_that_cannot_work_are_refused(tmp_path, capsys, field, value, expected):
    assert main(["run", str(_write(tmp_path, **{field: value})), "--study-dir", str(tmp_path / "s")]) == 2
    assert expected in _one_line(capsys)
    assert not (tmp_path / "s").exists()


def test_a_binary_config_file_is_one_line(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    assert main(["run", str(path)]) == 2
    assert f"{path}: " in _one_line(capsys)


def test_a_study_dir_that_cannot_be_created_is_one_line(tmp_path, capsys):
    """(As root a read-only parent is writable, so the parent here is a file: the same OSError path.)"""
    (tmp_path / "a-file").write_text("")
    assert main(["run", str(_write(tmp_path)), "--study-dir", str(tmp_path / "a-file" / "study")]) == 2
    assert "cannot use as a study directory" in _one_line(capsys)


def test_a_gpu_no_node_has_fails_fast_naming_both(ray_local, tmp_path, capsys):
    config = _write(tmp_path, resources={"num_cpus": 0.5, "num_gpus": 1})
    start = time.monotonic()
    assert main(["run", str(config), "--study-dir", str(tmp_path / "s")]) == 2
    assert time.monotonic() - start < 30
    err = _one_line(capsys)
    assert "each worker asks for CPU 0.5, GPU 1, but no Ray node has that" in err


def test_unicode_names_run(ray_local, tmp_path, capsys):
    study = copy.deepcopy(SMALL_STUDY)
    config = _write(tmp_path, name="wissen-ü", max_runs=9,
                    targets=[{**t, "name": f"{t['name']}-名"} for t in study["targets"]])
    assert main(["run", str(config), "--study-dir", str(tmp_path / "s"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "knowledge-名" in out  # --quiet still prints the final table (README)
    assert json.loads((tmp_path / "s" / "result.json").read_text())["n_runs"] == 9


def test_a_full_disk_is_one_line_and_the_ledger_stays_whole(ray_local, tmp_path, capsys, monkeypatch):
    import scheduler.ledger
    from scheduler.ledger import Ledger

    real = scheduler.ledger.atomic_write_bytes
    writes = []

    def fills_up(path, data):
        writes.append(path)
        if len(writes) > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(scheduler.ledger, "atomic_write_bytes", fills_up)
    assert main(["run", str(_write(tmp_path, max_runs=6)), "--study-dir", str(tmp_path / "s")]) == 2
    assert "runs.parquet: No space left on device" in _one_line(capsys)
    assert len(Ledger(tmp_path / "s" / "runs.parquet")) == 2


def test_sigterm_ends_cleanly_without_a_stack_dump(tmp_path):
    config = _write(tmp_path, max_runs=50, flops=[1e18, 2e18])
    study = yaml.safe_load(config.read_text())
    study["backend"].update(sleep_per_flop=2.0 / 1e18, checkpoint_every_s=0.2)
    config.write_text(yaml.safe_dump(study))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen([sys.executable, "-m", "scheduler.cli", "run", str(config), "--study-dir",
                             str(tmp_path / "s"), "--num-cpus", "1"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # the loop has started once the study line is printed
            if "study 'small'" in line:
                break
        while not list((tmp_path / "s" / "runs").glob("*/sim_checkpoint.json")):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and "terminated" in lines[-1] and "rerun to resume" in lines[-1], err
    assert not any(marker in err for marker in ("*** SIGTERM", "Traceback", "@ 0x", "stack trace")), err
    assert not (tmp_path / "s" / "result.json").exists()  # a pause: the same command resumes


def test_zero_cpus_fails_fast_and_local_ray_listens_on_loopback(tmp_path):
    """`--num-cpus 0` used to print "waiting" forever. The one line names the node, whose address shows that a
    local Ray instance is bound to loopback (issue #16 item 10: its metrics agent listened on 0.0.0.0)."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "run", str(_write(tmp_path)), "--study-dir",
                           str(tmp_path / "s"), "--num-cpus", "0"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - start < 120
    line = proc.stderr.strip().splitlines()[-1]
    assert "asks for CPU 0.5, but no Ray node has that (nodes: 127.0.0.1: CPU 0)" in line, proc.stderr
