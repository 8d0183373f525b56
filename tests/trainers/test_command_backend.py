"""The command backend (trainers/command.py) and the result contract (trainers/contract.py), without Ray:
real programs (small Python scripts) run through CommandBackend.run."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from skillscale.errors import InputError
from trainers.command import CommandBackend, CommandFailed, check_command, fill_placeholders
from trainers.contract import parse_result
from trainers.spec import RunSpec

SPEC = RunSpec(n_params=2_000_000, n_tokens=40_000_000, mix={"code": 0.25, "general": 0.75}, seed=3)
SKILLS = ["math", "code"]


def script(tmp_path: Path, *parts: str) -> Path:
    """A Python program in tmp_path whose parts see `argv`, `run_dir` (argv[1]), `json`, `os`, `sys`."""
    path = tmp_path / "prog.py"
    path.write_text("import json, os, signal, sys, time\nfrom pathlib import Path\nargv = sys.argv\n"
                    "run_dir = Path(argv[1])\n" + "".join(textwrap.dedent(part) for part in parts))
    return path


def backend(prog: Path, *extra: str, **kwargs) -> CommandBackend:
    return CommandBackend(["{python}", str(prog), "{run_dir}", *extra], skills=SKILLS, **kwargs)


GOOD = """
(run_dir / "result.json").write_text(json.dumps({"losses": {"math": 2.5, "code": 1.5}, "n_params": 1994752,
                                                 "tokens_per_s": 1000.0}))
"""


def test_placeholders_spec_environment_and_log(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # what Ray sets in an actor with a GPU
    prog = script(tmp_path, """
    print("hello on stdout")
    print("hello on stderr", file=sys.stderr)
    spec = json.loads(Path(os.environ["SKILLSCALE_SPEC"]).read_text())
    seen = {"argv": argv[2:], "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "spec": spec,
            "env_run_dir": os.environ["SKILLSCALE_RUN_DIR"], "extra": os.environ["EXTRA"], "cwd": os.getcwd()}
    (run_dir / "seen.json").write_text(json.dumps(seen))
    """, GOOD)
    run_dir = tmp_path / "runs" / SPEC.run_id
    args = ["{run_id}", "{n_params}", "{n_tokens}", "{seed}", "{mix_json}", "--x={n_params}x{seed}", "{{lit}}"]
    result = backend(prog, *args, env={"EXTRA": "yes"}, cwd=str(tmp_path)).run(SPEC, run_dir)

    assert result.status == "ok" and result.losses == {"math": 2.5, "code": 1.5}
    assert result.n_params == 1994752 and result.n_tokens == SPEC.n_tokens
    assert result.flops == pytest.approx(6 * 1994752 * SPEC.n_tokens)  # C = 6ND with the exact N
    assert result.tokens_per_s == 1000.0 and result.wall_s > 0
    seen = json.loads((run_dir / "seen.json").read_text())
    assert seen["argv"] == [SPEC.run_id, "2000000", "40000000", "3", '{"code":0.25,"general":0.75}',
                            "--x=2000000x3", "{lit}"]
    assert seen["cuda"] == "3" and seen["extra"] == "yes" and seen["cwd"] == str(tmp_path)
    assert seen["env_run_dir"] == str(run_dir.absolute())
    spec = seen["spec"]
    assert spec["run_id"] == SPEC.run_id and spec["skills"] == SKILLS and spec["mix"] == SPEC.mix
    assert spec["flops"] == SPEC.flops and spec["run_dir"] == str(run_dir.absolute())
    log = (run_dir / "log.txt").read_text()
    assert "hello on stdout" in log and "hello on stderr" in log


def test_arguments_reach_the_program_verbatim_no_shell(tmp_path):
    marker = tmp_path / "pwned"
    prog = script(tmp_path, """
    (run_dir / "argv.json").write_text(json.dumps(argv[2:]))
    """, GOOD)
    hostile = [f"$(touch {marker})", f"; touch {marker}", "`id`", "*", "a b"]
    backend(prog, *hostile).run(SPEC, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "argv.json").read_text()) == hostile
    assert not marker.exists()


def test_a_substituted_value_is_never_read_as_a_placeholder():
    values = {"mix_json": '{"run_id":1}', "run_id": "abc"}
    assert fill_placeholders("{mix_json}/{run_id}", values) == '{"run_id":1}/abc'


@pytest.mark.parametrize("command, where", [
    ([], "backend.command:"),
    (["prog", "{rundir}"], "backend.command[1]: unknown placeholder '{rundir}'"),
    (["prog", "a{b"], "backend.command[1]: unknown placeholder '{'"),
    (["prog", "}"], "backend.command[1]: unknown placeholder '}'"),
    (["prog", 3], "backend.command[1]: expected a string"),
])
def test_bad_commands_are_refused_naming_the_argument(command, where):
    with pytest.raises(InputError, match=r"^" + where.replace("[", r"\[").replace("]", r"\]")
                                        .replace("{", r"\{").replace("}", r"\}")):
        check_command(command)


def test_non_zero_exit_raises_with_the_stderr_tail(tmp_path):
    prog = script(tmp_path, """
    print("step 10 loss 3.1")
    print("Traceback (most recent call last):", file=sys.stderr)
    print("RuntimeError: CUDA out of memory", file=sys.stderr)
    sys.exit(3)
    """)
    with pytest.raises(CommandFailed) as info:
        backend(prog).run(SPEC, tmp_path / "run")
    reason = str(info.value)
    assert "exited with status 3" in reason and "RuntimeError: CUDA out of memory" in reason
    assert str(tmp_path / "run" / "log.txt") in reason and "\n" not in reason


def test_missing_program_is_a_failed_run_naming_it(tmp_path):
    result = CommandBackend(["no-such-trainer-xyz", "{run_dir}"], skills=SKILLS).run(SPEC, tmp_path / "run")
    assert result.status == "failed"
    assert result.error.startswith("backend.command[0]: program 'no-such-trainer-xyz' not found")
    assert all(math.isnan(v) for v in result.losses.values()) and set(result.losses) == set(SKILLS)


@pytest.mark.parametrize("body, status, reason", [
    ("pass", "failed", "result.json: missing"),
    ("(run_dir / 'result.json').write_text('{\"losses\": ')", "failed", "result.json: not valid JSON"),
    ("(run_dir / 'result.json').write_text(json.dumps({'losses': {'code': 1.5}}))", "failed",
     "result.json: losses.math: missing (skills: math, code)"),
    ("(run_dir / 'result.json').write_text(json.dumps({'losses': {'code': 1.5, 'math': float('nan')}}))",
     "diverged", "result.json: losses.math is nan"),
    ("(run_dir / 'result.json').write_text(json.dumps({'losses': {'code': 1.5, 'math': 'low'}}))", "failed",
     "result.json: losses.math: expected a number"),
    ("(run_dir / 'result.json').write_text(json.dumps([1, 2]))", "failed",
     "result.json: expected a JSON object"),
])
def test_bad_output_is_one_line_naming_file_and_key(tmp_path, body, status, reason):
    result = backend(script(tmp_path, body)).run(SPEC, tmp_path / "run")
    assert result.status == status
    assert reason in result.error and str(tmp_path / "run" / "result.json") in result.error
    assert "\n" not in result.error and set(result.losses) >= set(SKILLS)


@pytest.mark.parametrize("data, status, reason", [
    ({"losses": {"math": 2, "code": 1}, "status": "diverged", "error": "loss spike"}, "diverged", "loss spike"),
    ({"losses": {"math": 2, "code": None}}, "diverged", "losses.code is null"),
    ({"losses": {"math": 2, "code": 1}, "status": "failed", "error": "bad shard"}, "failed", "bad shard"),
    ({"losses": {"math": 2, "code": 1}, "status": "done"}, "failed", "status: expected one of ok, diverged"),
    ({"losses": {"math": 2, "code": -1}}, "failed", "losses.code: expected a positive number of nats"),
    ({"losses": {"math": 2, "code": 1}, "n_params": 1.5}, "failed", "n_params: expected a positive integer"),
    ({"losses": {"math": 2, "code": 1}, "flops": "many"}, "failed", "flops: expected a positive number"),
    ({"losses": {"math": 2, "code": 1}, "tokens_per_s": -3}, "failed", "tokens_per_s: expected a finite number"),
    ({"losses": [2, 1]}, "failed", "losses: expected {skill: nats}, got list"),
    ({}, "failed", "losses: missing"),
])
def test_parse_result_maps_contract_breaches_to_statuses(data, status, reason):
    result = parse_result(data, SPEC, SKILLS, source="x/result.json")
    assert result.status == status, result
    assert result.error.startswith("x/result.json: ") and reason in result.error


def test_parse_result_accepts_extra_skills_and_keys():
    data = {"losses": {"math": 2.0, "code": 1.0, "extra": 3.0}, "n_tokens": 39_999_744, "flops": 5e14,
            "domain_losses": {"general": 3.5}, "mfu": 0.3, "notes": "ignored"}
    result = parse_result(data, SPEC, SKILLS, source="f")
    assert result.status == "ok" and result.losses["extra"] == 3.0 and result.n_tokens == 39_999_744
    assert result.flops == 5e14 and result.domain_losses == {"general": 3.5} and result.mfu == 0.3


def test_timeout_sends_sigterm_then_the_run_resumes_from_its_run_dir(tmp_path):
    """First attempt: the program checkpoints, then hangs until SIGTERM (which it answers by saving and exiting);
    the retry in the same run_dir finds the checkpoint and finishes."""
    prog = script(tmp_path, """
    ckpt = run_dir / "ckpt.json"
    if ckpt.exists():
        resumed_from = json.loads(ckpt.read_text())["step"]
        (run_dir / "result.json").write_text(json.dumps({"losses": {"math": 2.0, "code": 1.0},
                                                         "resumed_from": resumed_from}))
        sys.exit(0)
    def on_term(signum, frame):
        ckpt.write_text(json.dumps({"step": 5}))
        sys.exit(143)
    signal.signal(signal.SIGTERM, on_term)
    (run_dir / "started").write_text("")
    time.sleep(60)
    """)
    command = backend(prog, timeout_s=1.0, kill_grace_s=10.0)
    start = time.monotonic()
    with pytest.raises(CommandFailed, match=r"timed out after 1 s \(backend.timeout_s\)"):
        command.run(SPEC, tmp_path / "run")
    assert time.monotonic() - start < 20
    assert json.loads((tmp_path / "run" / "ckpt.json").read_text()) == {"step": 5}
    result = command.run(SPEC, tmp_path / "run")
    assert result.status == "ok"
    assert json.loads((tmp_path / "run" / "result.json").read_text())["resumed_from"] == 5
    assert (tmp_path / "run" / "log.txt").read_text().count("=== skillscale") == 2  # both attempts logged


def test_a_program_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path):
    prog = script(tmp_path, """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)
    """)
    start = time.monotonic()
    with pytest.raises(CommandFailed, match="timed out"):
        backend(prog, timeout_s=0.5, kill_grace_s=0.5).run(SPEC, tmp_path / "run")
    assert time.monotonic() - start < 15


def test_should_stop_cancels_the_program(tmp_path):
    prog = script(tmp_path, """
    (run_dir / "started").write_text("")
    time.sleep(60)
    """)
    run_dir = tmp_path / "run"
    with pytest.raises(CommandFailed, match="cancelled"):
        backend(prog, kill_grace_s=5).run(SPEC, run_dir, should_stop=lambda: (run_dir / "started").exists())


def test_a_valid_result_from_an_earlier_attempt_is_read_back_not_retrained(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "result.json").write_text(json.dumps({"losses": {"math": 2.0, "code": 1.0}}))
    prog = script(tmp_path, "sys.exit(9)")  # would fail if it were run
    assert backend(prog).run(SPEC, run_dir).status == "ok"


def test_an_invalid_leftover_result_is_replaced_by_a_new_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "result.json").write_text("{half")
    assert backend(script(tmp_path, GOOD)).run(SPEC, run_dir).losses == {"math": 2.5, "code": 1.5}


DRIVER = """
import sys
from pathlib import Path
from trainers.command import CommandBackend
from trainers.spec import RunSpec
CommandBackend([sys.executable, sys.argv[1], "{run_dir}"], skills=["math"]).run(
    RunSpec(n_params=10, n_tokens=10, mix={}), Path(sys.argv[2]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_the_program_gets_sigterm_when_its_worker_process_dies(tmp_path):
    """A worker killed with SIGKILL (ray.kill, a lost node) cannot stop its program; the kernel does."""
    prog = script(tmp_path, """
    def on_term(signum, frame):
        (run_dir / "got_sigterm").write_text("")
        sys.exit(143)
    signal.signal(signal.SIGTERM, on_term)
    (run_dir / "started").write_text(str(os.getpid()))
    time.sleep(60)
    """)
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    worker = subprocess.Popen([sys.executable, "-c", DRIVER, str(prog), str(run_dir)], env=env)
    try:
        deadline = time.monotonic() + 30
        while not (run_dir / "started").exists() and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.05)
        assert (run_dir / "started").exists(), "the program never started"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        deadline = time.monotonic() + 10
        while not (run_dir / "got_sigterm").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (run_dir / "got_sigterm").exists()
    finally:
        if worker.poll() is None:
            worker.kill()
        if (run_dir / "started").exists() and not (run_dir / "got_sigterm").exists():
            try:  # the test failed: do not leave the orphaned program running
                os.kill(int((run_dir / "started").read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
