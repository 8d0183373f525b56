"""Bring your own trainer, end to end on the session's Ray instance: studies whose runs are programs (the
command backend) and Python functions (the python backend), the contract tested from config to ledger."""

import copy
import json
import os
import signal
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from fitting.law import ParametricLaw
from scheduler.config import parse_study_config
from scheduler.controller import Controller
from trainers.spec import RunSpec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "byo-trainer"
KNOWN_LAW = ["{python}", str(EXAMPLE / "known_law.py"), "--run-dir", "{run_dir}", "--params", "{n_params}",
             "--tokens", "{n_tokens}", "--run-id", "{run_id}", "--noise", "0.005"]


def _known_law_truth() -> dict[str, ParametricLaw]:
    sys.path.insert(0, str(EXAMPLE))
    try:
        import known_law
    finally:
        sys.path.remove(str(EXAMPLE))
    return {s: ParametricLaw(E=e, A=a, B=b, alpha=al, beta=be) for s, (e, a, b, al, be) in known_law.LAWS.items()}


def test_a_command_evaluating_a_known_law_drives_the_study_to_the_truth(ray_local, small_study, tmp_path):
    """The command backend in the closed loop: every run is a process that writes result.json; the study stops
    by itself and its N* lies within the tolerance of the law's own."""
    small_study.update(tolerance=0.15, backend={"name": "command", "command": KNOWN_LAW, "timeout_s": 60})
    small_study["proposer"].update(n_boot=40, inner_trials=0, n_candidates=128)  # the contract, not the fitting
    cfg = parse_study_config(small_study)
    result = Controller(cfg, tmp_path).run()
    assert result["stop_reason"] == "converged", result
    truth = _known_law_truth()
    for target in result["targets"]:
        (skill,) = target["weights"]
        true_n = float(truth[skill].optimum(target["flops"])[0][0])
        # Near the law's own optimum. (How often the interval covers it is the fitting's claim, tested under
        # tests/fitting; here a bound of twice the tolerance keeps this test about the contract.)
        assert abs(target["n_params"] / true_n - 1) <= 2 * cfg.tolerance, (target, true_n)
    rows = pq.read_table(tmp_path / "runs.parquet").to_pylist()
    assert rows and all(r["status"] == "ok" for r in rows)
    run_dir = tmp_path / "runs" / rows[0]["run_id"]
    spec = json.loads((run_dir / "spec.json").read_text())
    assert spec["skills"] == ["knowledge", "code"] and spec["run_id"] == rows[0]["run_id"]
    assert json.loads((run_dir / "result.json").read_text())["losses"]["code"] == rows[0]["loss/code"]


BAD_PROGRAM = """
import json, os, sys
from pathlib import Path
run_dir, run_id, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
# each run in turn gets the next kind of breakage (and keeps it when retried), whatever the run_ids are
kinds = run_dir.parents[2] / "kinds"  # beside the study directory
kinds.mkdir(exist_ok=True)
if not (kinds / run_id).exists():
    i = 0
    while True:
        try:
            os.close(os.open(kinds / f"claim-{i}", os.O_CREAT | os.O_EXCL))
            break
        except FileExistsError:
            i += 1
    (kinds / run_id).write_text(str(i))
kind = ["ok", "no_skill", "not_json", "nan", "exit"][int((kinds / run_id).read_text()) % 5]
if kind == "exit":
    print("Traceback (most recent call last):\\nValueError: bad batch", file=sys.stderr)
    sys.exit(4)
text = {"ok": json.dumps({"losses": {"knowledge": 3.0, "code": 2.0}}),
        "no_skill": json.dumps({"losses": {"knowledge": 3.0}}),
        "not_json": "{oops",
        "nan": json.dumps({"losses": {"knowledge": float("nan"), "code": 2.0}})}[kind]
(run_dir / "result.json").write_text(text)
"""


def test_bad_output_becomes_a_failed_or_diverged_run_and_the_study_goes_on(ray_local, small_study, tmp_path):
    program = tmp_path / "bad_trainer.py"
    program.write_text(BAD_PROGRAM)
    small_study.update(max_runs=12, max_tries=2, backend={
        "name": "command", "command": ["{python}", str(program), "{run_dir}", "{run_id}", "{n_params}"]})
    study_dir = tmp_path / "study"
    result = Controller(parse_study_config(small_study), study_dir).run()
    assert result["stop_reason"] == "max_runs" and result["n_runs"] == 12
    rows = pq.read_table(study_dir / "runs.parquet").to_pylist()
    by_kind = {}
    for row in rows:
        reason = row["error"] or ""
        kind = ("no_skill" if "losses.code: missing (skills: knowledge, code)" in reason else
                "not_json" if "result.json: not valid JSON" in reason else
                "nan" if "losses.knowledge is nan" in reason else
                "exit" if "exited with status 4" in reason and "ValueError: bad batch" in reason else
                "ok" if row["status"] == "ok" else f"unexpected: {row['status']} {reason}")
        by_kind.setdefault(kind, []).append(row)
        if kind in ("no_skill", "not_json", "nan"):
            assert str(study_dir / "runs" / row["run_id"] / "result.json") in reason
        if kind == "exit":
            assert row["tries"] == 2  # a non-zero exit is retried up to max_tries
    assert all(not k.startswith("unexpected") for k in by_kind), by_kind.keys()
    assert {r["status"] for r in by_kind.get("nan", [])} <= {"diverged"}
    assert {r["status"] for k in ("no_skill", "not_json", "exit") for r in by_kind.get(k, [])} <= {"failed"}
    assert len(by_kind) == 5, f"the 12 runs should show every kind of breakage, got {sorted(by_kind)}"


@pytest.mark.slow
def test_the_example_trainer_study_runs_to_completion_on_cpu(ray_local, tmp_path):
    """examples/byo-trainer/study.yaml with tiny budgets: real (plain-torch) training runs, a few seconds each."""
    study = yaml.safe_load((EXAMPLE / "study.yaml").read_text())
    study = copy.deepcopy(study)
    study.update(n_tokens=[2e4, 6e4], tokens_per_param=None, max_runs=6, compute_cap=1e12,
                 proposer={"n_boot": 50, "n_candidates": 256, "inner_trials": 8})
    study["backend"]["command"][1] = str(EXAMPLE / "train.py")
    cfg = parse_study_config(study)
    result = Controller(cfg, tmp_path).run()
    assert result["n_runs"] == 6 and result["n_runs_ok"] == 6, result
    rows = pq.read_table(tmp_path / "runs.parquet").to_pylist()
    for row in rows:
        assert 0 < row["loss/code"] < 6 and 0 < row["loss/arithmetic"] < 6  # ln 256 = 5.55 is chance
        assert row["n_params"] != row["requested_n_params"]  # the exact count of the realised shape came back
        assert row["tokens_per_s"] > 0
        assert "done:" in (tmp_path / "runs" / row["run_id"] / "log.txt").read_text()


SIGTERM_PROGRAM = """
import os, signal, sys, time
from pathlib import Path
run_dir = Path(sys.argv[1])
def on_term(signum, frame):
    (run_dir / "got_sigterm").write_text("")
    sys.exit(143)
signal.signal(signal.SIGTERM, on_term)
(run_dir / "started").write_text(str(os.getpid()))
time.sleep(120)
"""


def _wait_for(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_a_killed_worker_takes_its_program_with_it(ray_local, small_study, tmp_path):
    """ray.kill (the controller replacing a worker) ends the actor process at once; its program must not
    outlive it and hold on to the GPU (Ray kills a dead worker's children; the backend also sets
    PR_SET_PDEATHSIG for where it does not)."""
    from ray.exceptions import RayActorError

    from scheduler.actor import start_actor

    program = tmp_path / "hang.py"
    program.write_text(SIGTERM_PROGRAM)
    small_study["backend"] = {"name": "command", "command": ["{python}", str(program), "{run_dir}"]}
    cfg = parse_study_config(small_study)
    actor = start_actor(cfg.backend, "w0", num_cpus=0.5, num_gpus=0, name=None)
    run_dir = tmp_path / "run"
    ref = actor.run.remote(RunSpec(n_params=10, n_tokens=10, mix={}).to_dict(), str(run_dir))
    assert _wait_for(run_dir / "started", 60), "the program never started"
    pid = int((run_dir / "started").read_text())
    assert _alive(pid)
    ray_local.kill(actor)
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert not _alive(pid), "the program outlived its worker"
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    with pytest.raises(RayActorError):
        ray_local.get(ref)


def test_a_cancelled_run_sends_its_program_sigterm(ray_local, small_study, tmp_path):
    """ray.cancel on the actor's call (the controller stopping or pausing a study) reaches the program as SIGTERM,
    so it can save what it needs, instead of a SIGKILL when its worker is killed (Ray only sets a flag on a sync
    actor's running call; the actor hands it to the backend as should_stop)."""
    from scheduler.actor import start_actor

    program = tmp_path / "hang.py"
    program.write_text(SIGTERM_PROGRAM)
    small_study["backend"] = {"name": "command", "command": ["{python}", str(program), "{run_dir}"],
                              "kill_grace_s": 5}
    cfg = parse_study_config(small_study)
    actor = start_actor(cfg.backend, "w0", num_cpus=0.5, num_gpus=0, name=None)
    run_dir = tmp_path / "run"
    ref = actor.run.remote(RunSpec(n_params=10, n_tokens=10, mix={}).to_dict(), str(run_dir))
    try:
        assert _wait_for(run_dir / "started", 60), "the program never started"
        ray_local.cancel(ref, force=False)
        assert _wait_for(run_dir / "got_sigterm", 30), "the program was not sent SIGTERM on cancellation"
    finally:
        ray_local.kill(actor)
