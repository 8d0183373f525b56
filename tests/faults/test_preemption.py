"""Faults a study meets on preemptible nodes: the controller killed (SIGKILL) and restarted, a worker
killed mid-run, corrupt state files. Nothing is lost and nothing is trained twice."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import ray
import yaml

from scheduler.config import parse_study_config
from scheduler.controller import Controller
from scheduler.ledger import Ledger, freeze_config
from skillscale.errors import InputError

pytestmark = pytest.mark.slow


def _config(small_study, tmp_path, **overrides):
    small_study.update(max_concurrent=1, **overrides)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(small_study))
    return path


def _run_cli(config, study_dir, address, kill_after=None):
    """Run `skillscale run` as a subprocess; SIGKILL it after `kill_after` seconds. Returns exit code."""
    cmd = [sys.executable, "-m", "scheduler.cli", "run", str(config), "--study-dir", str(study_dir),
           "--address", address, "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=kill_after if kill_after is not None else 600)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return -9
    return proc.returncode


def _runs(study_dir):
    rows = pq.read_table(study_dir / "runs.parquet").to_pylist()
    return sorted((r["trial_number"], r["run_id"], r["status"]) for r in rows)


def test_sigkill_ten_times_ends_like_an_uninterrupted_study(ray_head, small_study, tmp_path):
    # a cheaper study (~45 runs, ~20 s of fitting): the kills land among its proposals and refits all the same
    cheap = {**small_study["proposer"], "n_boot": 24, "inner_trials": 4, "n_candidates": 128}
    config = _config(small_study, tmp_path, tolerance=0.2, proposer=cheap)
    reference = tmp_path / "reference"
    assert _run_cli(config, reference, ray_head) == 0

    resumed = tmp_path / "resumed"
    rng = random.Random(7)
    kills = 0
    while kills < 10:
        code = _run_cli(config, resumed, ray_head, kill_after=rng.uniform(2.0, 7.0))
        if code != -9:
            break  # it finished before the kill
        kills += 1
        if (resumed / "runs.parquet").exists():
            runs = _runs(resumed)
            assert len(runs) == len({r[1] for r in runs})  # never recorded twice, even mid-way
    if not (resumed / "result.json").exists():
        assert _run_cli(config, resumed, ray_head) == 0
    assert kills >= 5, f"the study finished before enough kills ({kills})"

    assert _runs(resumed) == _runs(reference)
    a = json.loads((reference / "result.json").read_text())
    b = json.loads((resumed / "result.json").read_text())
    assert a["stop_reason"] == b["stop_reason"] == "converged"
    assert a["flops_spent"] == b["flops_spent"]
    for ta, tb in zip(a["targets"], b["targets"], strict=True):
        assert ta["n_params"] == pytest.approx(tb["n_params"], rel=1e-9)
        assert ta["n_params_ci95"] == pytest.approx(tb["n_params_ci95"], rel=1e-9)


def test_resume_with_a_changed_config_is_refused(tmp_path, small_study):
    cfg = parse_study_config(small_study)
    freeze_config(tmp_path, cfg.frozen_dict())
    changed = dict(small_study, tolerance=0.2, max_concurrent=8)
    with pytest.raises(InputError, match=r"changed: tolerance \(was 0.1, now 0.2\)\)"):
        freeze_config(tmp_path, parse_study_config(changed).frozen_dict())
    # speed-only fields may change on resume
    freeze_config(tmp_path, parse_study_config(dict(small_study, max_concurrent=8)).frozen_dict())


def test_a_trainer_default_changed_since_the_study_started_is_named_on_resume(tmp_path, small_study):
    """A torch study frozen under the defaults of 2026-12-01 (no QK-norm, gpt2 init) names what moved, the
    per-run defaults included, and a setting written out by hand does not get past the defaults it cannot set."""
    torch_study = dict(small_study, backend={"name": "torch", "trainer": {"device": "cpu"}})
    frozen = parse_study_config(torch_study).frozen_dict()
    assert frozen["trainer_defaults"]["init_scheme"] == "small-init" and "trainer_defaults" not in (
        parse_study_config(small_study).frozen_dict())  # the simulated backend has no trainer defaults
    frozen["backend"]["trainer"]["qk_norm"] = False
    frozen["trainer_defaults"]["init_scheme"] = "gpt2"
    freeze_config(tmp_path, frozen)
    with pytest.raises(InputError, match=r"changed: backend\.trainer\.qk_norm \(was False, now True\), "
                                         r"trainer_defaults\.init_scheme \(was 'gpt2', now 'small-init'\)\);"):
        freeze_config(tmp_path, parse_study_config(torch_study).frozen_dict())
    pinned = dict(torch_study, backend={"name": "torch", "trainer": {"device": "cpu", "qk_norm": False}})
    with pytest.raises(InputError, match=r"changed: trainer_defaults\.init_scheme \(was 'gpt2', now 'small-init'\)\);"):
        freeze_config(tmp_path, parse_study_config(pinned).frozen_dict())
    older = tmp_path / "older"  # frozen before trainer_defaults existed: every default shows as new
    del frozen["trainer_defaults"]
    freeze_config(older, frozen)
    with pytest.raises(InputError, match=r"trainer_defaults\.adam_eps \(was None, now 1e-08\).* and \d+ more\);"):
        freeze_config(older, parse_study_config(pinned).frozen_dict())


def test_worker_killed_mid_run_is_requeued_and_resumes_from_checkpoint(ray_local, small_study, tmp_path):
    """Simulated runs that 'train' for a while, checkpointing every 0.2 s; a worker is killed mid-run."""
    small_study.update(max_concurrent=1, max_runs=3, name="killworker", flops=[1e18, 2e18])
    small_study["backend"].update(sleep_per_flop=1.5 / 1e18, checkpoint_every_s=0.2)  # 1.5-3 s a run
    cfg = parse_study_config(small_study)
    ctl = Controller(cfg, tmp_path)

    killed = []

    def kill_when_half_done():
        import threading

        def watch():
            while not killed:
                for ckpt in (tmp_path / "runs").glob("*/sim_checkpoint.json"):
                    state = json.loads(ckpt.read_text())
                    if state["seconds_done"] >= 0.4 and state["seconds_done"] < state["seconds_total"] - 0.3:
                        ray.kill(ray.get_actor(f"skillscale:{cfg.name}:w0", namespace="skillscale-tests"))
                        killed.append((ckpt.parent.name, state["seconds_done"]))
                        return
                time.sleep(0.05)

        threading.Thread(target=watch, daemon=True).start()

    kill_when_half_done()
    result = ctl.run()
    assert killed, "no run was long enough to be killed mid-way"
    run_id, done_at_kill = killed[0]
    rows = {r["run_id"]: r for r in pq.read_table(tmp_path / "runs.parquet").to_pylist()}
    assert rows[run_id]["status"] == "ok" and rows[run_id]["tries"] == 2
    assert result["n_runs"] == 3 == len(rows)
    attempts = json.loads((tmp_path / "attempts.json").read_text())
    assert attempts[run_id]["tries"] == 1 and "worker died" in attempts[run_id]["errors"][0]


def test_a_result_missing_a_skill_is_recorded_as_failed(ray_local, small_study, tmp_path):
    small_study.update(max_concurrent=1, max_runs=2, name="badtruth")
    # a custom truth without the 'code' skill: the backend reports only knowledge losses
    small_study["backend"]["truth"] = {"knowledge": {"E": 2, "A": 480, "B": 380, "alpha": 0.34,
                                                                 "beta": 0.28}}
    cfg = parse_study_config(small_study)
    result = Controller(cfg, tmp_path).run()
    rows = pq.read_table(tmp_path / "runs.parquet").to_pylist()
    assert result["n_runs_failed"] == len(rows) == 2
    assert all(r["status"] == "failed" and "no loss for skills ['code']" in r["error"] for r in rows)


def test_a_run_that_keeps_failing_is_marked_failed_after_max_tries(ray_local, small_study, tmp_path):
    from ray.exceptions import ActorDiedError

    from scheduler.proposer import Point

    small_study.update(max_tries=3, name="retries")
    cfg = parse_study_config(small_study)
    ctl = Controller(cfg, tmp_path)
    ctl.study.reconcile()
    (spec,) = ctl.study.ask([Point(10_000_000, 200_000_000, cfg.mix.fixed)])
    for attempt in range(1, 4):
        ctl._on_error(spec, 0, ActorDiedError() if attempt == 1 else RuntimeError("CUDA error: out of memory"))
        assert len(ctl.study.ledger) == (1 if attempt == 3 else 0)
        if attempt < 3:
            assert ctl.pending.popleft() == spec  # re-queued at the front, as dispatch would take it
    assert not ctl.pending and not ctl.study.outstanding
    (row,) = ctl.study.ledger.rows
    assert row["status"] == "failed" and "out of memory" in row["error"] and row["tries"] == 3
    assert json.loads((tmp_path / "attempts.json").read_text())[spec.run_id]["tries"] == 3


def test_truncated_ledger_is_detected(tmp_path, small_study):
    cfg = parse_study_config(small_study)
    from trainers.spec import RunResult, RunSpec

    ledger = Ledger(tmp_path / "runs.parquet")
    spec = RunSpec(10_000_000, 200_000_000, cfg.mix.fixed)
    ledger.append(spec, RunResult(spec.run_id, "ok", spec.n_params, spec.n_tokens, spec.flops, {"knowledge": 3.0}))
    data = (tmp_path / "runs.parquet").read_bytes()
    (tmp_path / "runs.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="runs.parquet: run ledger is corrupt or truncated"):
        Ledger(tmp_path / "runs.parquet")


def test_corrupt_journal_is_detected_and_a_torn_tail_is_tolerated(tmp_path, small_study):
    from scheduler.store import open_optuna_study

    cfg = parse_study_config(small_study)
    study = open_optuna_study(cfg, tmp_path)
    study.enqueue_trial({"log10_n_params": 7.5, "log10_n_tokens": 9.0})
    study.ask()
    journal = tmp_path / "optuna.journal"
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines)[:-7])  # a crash mid-append: Optuna drops the torn last record
    assert len(open_optuna_study(cfg, tmp_path).trials) == 1
    lines[1] = lines[1][:10] + "#garbage\n"  # damage in the middle cannot be repaired
    journal.write_text("".join(lines))
    with pytest.raises(InputError, match="optuna.journal: Optuna journal is unreadable"):
        open_optuna_study(cfg, tmp_path)


def test_time_limit_pauses_and_the_same_command_resumes(ray_local, small_study, tmp_path):
    """A time limit stops cleanly with runs in flight; running again resumes them from their checkpoints."""
    import threading

    small_study.update(max_concurrent=2, max_runs=4, name="paused", flops=[1e18, 2e18])
    small_study["backend"].update(sleep_per_flop=2.0 / 1e18, checkpoint_every_s=0.2)  # 2-4 s a run
    cfg = parse_study_config(small_study)
    ctl = Controller(cfg, tmp_path, time_limit_s=3600)

    def expire_when_training():  # the limit falls while runs are mid-way, whatever Ray's start-up time
        while not list((tmp_path / "runs").glob("*/sim_checkpoint.json")):
            time.sleep(0.05)
        ctl.deadline = time.monotonic()

    threading.Thread(target=expire_when_training, daemon=True).start()
    first = ctl.run()
    assert first["stop_reason"] == "time_limit"
    done = {r["run_id"] for r in pq.read_table(tmp_path / "runs.parquet").to_pylist()} \
        if (tmp_path / "runs.parquet").exists() else set()
    paused = {p.parent.name: json.loads(p.read_text())["seconds_done"]
              for p in (tmp_path / "runs").glob("*/sim_checkpoint.json") if p.parent.name not in done}
    assert paused and all(0 < v for v in paused.values())  # stopped mid-run, not abandoned
    second = Controller(cfg, tmp_path).run()
    assert second["stop_reason"] == "max_runs" and second["n_runs"] == 4
    rows = pq.read_table(tmp_path / "runs.parquet").to_pylist()
    assert len({r["run_id"] for r in rows}) == 4 and all(r["status"] == "ok" for r in rows)
    assert set(paused) <= {r["run_id"] for r in rows}  # the paused runs were finished, not replaced
    assert all(r["tries"] == 1 for r in rows)  # a pause is not a failure
