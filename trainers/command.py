"""The command backend: run any program once per run, the contract of trainers/contract.py in between.

    backend: {name: command, command: ["{python}", "train.py", "--out", "{run_dir}", "--params", "{n_params}"],
              timeout_s: 3600}

Per run, on the actor that holds the run's resources (Ray sets CUDA_VISIBLE_DEVICES in the actor process;
the program inherits the actor's environment):

1. `{run_dir}/result.json` already there and valid (the run finished but its result was never recorded,
   e.g. the controller was killed): it is read back and the program is not run again.
2. The spec is written to `{run_dir}/spec.json` (atomically).
3. The command's arguments are filled in (placeholders below, each replaced inside any argument; `{{` and
   `}}` are literal braces) and the program is started directly (a list argv, never a shell, so nothing
   in the config is interpreted by one), in its own process group, stdin closed, stdout and stderr
   appended to `{run_dir}/log.txt`. Environment: the actor's, plus SKILLSCALE_RUN_DIR, SKILLSCALE_RUN_ID,
   SKILLSCALE_SPEC and the config's `env`.
4. Exit 0: `{run_dir}/result.json` is read (trainers.contract.parse_result: bad content becomes a failed or
   diverged run with a one-line reason). A non-zero exit, a timeout or a cancellation raises
   CommandFailed, which the controller counts as a failed attempt and retries up to `max_tries` (the
   program resumes from whatever it left in `{run_dir}`); a program that cannot be started is a failed run.

Stopping the program (timeout, cancellation through `should_stop`, an exception in the actor): SIGTERM to
its process group, then SIGKILL after `kill_grace_s`. If the actor process itself dies (ray.kill, a lost
node), the program dies with it, so a trainer never outlives its worker: Ray kills a dead worker's child
processes (SIGKILL), and where it does not, Linux sends SIGTERM (PR_SET_PDEATHSIG, set here). No grace period
is possible then, so a trainer should checkpoint regularly, not only on SIGTERM.
"""

from __future__ import annotations

import collections
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator

from skillscale.config_types import FieldError, Number
from skillscale.errors import InputError
from trainers.capabilities import BackendConfigBase, Capabilities
from trainers.contract import (
    LOG_FILE,
    REPEATS_DESCRIPTION,
    RESULT_FILE,
    failed_result,
    parse_result,
    read_result_file,
    spec_payload,
    write_spec,
)
from trainers.spec import RunResult, RunSpec

PLACEHOLDERS = ("run_dir", "run_id", "n_params", "n_tokens", "seed", "mix_json", "flops", "spec", "python")
"""What `{name}` in a command argument becomes: run_dir (absolute path), run_id, n_params and n_tokens
(integers), seed, mix_json (the mix as compact JSON), flops (6ND), spec (path of spec.json), python (the
actor's Python interpreter, sys.executable)."""

_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
STDERR_TAIL_LINES = 8  # lines of stderr kept for a failed attempt's reason
STDERR_REASON_CHARS = 160  # of which at most this many (the end) are quoted: the ledger's reasons are one line
POLL_S = 0.2  # how often a running program is checked for a timeout or a cancellation


class CommandFailed(RuntimeError):
    """A failed attempt (non-zero exit, timeout, cancellation): raised so that the controller retries it."""


def check_command(command: Sequence[str], field: str = "backend.command") -> None:
    """InputError naming the argument if `command` is empty or has an unknown or unbalanced placeholder."""
    if not command:
        raise InputError(f"{field}: expected a non-empty list of strings (the program and its arguments)")
    for i, arg in enumerate(command):
        if not isinstance(arg, str):
            raise InputError(f"{field}[{i}]: expected a string, got {type(arg).__name__}")
        for match in _FIELD.finditer(arg):
            token, name = match.group(0), match.group(1)
            if token in ("{{", "}}"):
                continue
            if name is None or name not in PLACEHOLDERS:
                raise InputError(f"{field}[{i}]: unknown placeholder {token!r} in {arg!r} (known: "
                                 f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}; write {{{{ }}}} for a brace)")


def fill_placeholders(arg: str, values: Mapping[str, str]) -> str:
    """One argument with each `{name}` replaced by values[name], in a single pass (a value is never re-read)."""
    def replace(match: re.Match) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return values[match.group(1)]

    return _FIELD.sub(replace, arg)


def placeholder_values(spec: RunSpec, run_dir: Path) -> dict[str, str]:
    run_dir = Path(run_dir).absolute()
    return {"run_dir": str(run_dir), "run_id": spec.run_id, "n_params": str(int(spec.n_params)),
            "n_tokens": str(int(spec.n_tokens)), "seed": str(int(spec.seed)),
            "mix_json": json.dumps(spec.mix, sort_keys=True, separators=(",", ":")), "flops": f"{spec.flops:.6g}",
            "spec": str(run_dir / "spec.json"), "python": sys.executable}


class CommandConfig(BackendConfigBase):
    """`backend: {name: command, command: [...], ...}`: run a program per run (see the module docstring)."""

    name: Literal["command"] = Field(description="selects this backend")
    command: list[str] = Field(min_length=1, description="the program and its arguments (a list, no shell); "
                                                         "placeholders: " + ", ".join(PLACEHOLDERS))
    timeout_s: Number | None = Field(default=None, gt=0, description="seconds one attempt may run before it is "
                                                                     "stopped (SIGTERM) and counted as failed")
    kill_grace_s: Number = Field(default=30.0, ge=0, description="seconds between SIGTERM and SIGKILL")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment variables for the program")
    cwd: str | None = Field(default=None, description="working directory of the program (default: the worker's; "
                                                      "relative program paths resolve against it)")
    repeats: bool = Field(default=False, description=REPEATS_DESCRIPTION)
    _skills: tuple[str, ...] = PrivateAttr(default=())  # the study's skills (with_skills), not part of the YAML
    _skill_evals: dict[str, str] = PrivateAttr(default_factory=dict)  # skill -> eval file, for the trainer

    @field_validator("command")
    @classmethod
    def _placeholders(cls, command: list[str]) -> list[str]:
        try:
            check_command(command, field="")
        except InputError as exc:  # "[i]: message" -> the field below `command`
            where, _, message = str(exc).partition(": ")
            raise FieldError(where, message) from None
        return command

    def with_skills(self, skills: Sequence[str], skill_evals: Mapping[str, str] | None = None) -> CommandConfig:
        """This config, knowing the study's skills (written to spec.json; each must be in result.json)."""
        copy = self.model_copy()
        copy._skills = tuple(skills)
        copy._skill_evals = dict(skill_evals or {})
        return copy

    @property
    def capabilities(self) -> Capabilities:
        """A cancelled run's program gets SIGTERM, then SIGKILL after kill_grace_s (run() takes should_stop); runs
        on fewer unique tokens than they train on where the config says the program honours them (`repeats`)."""
        return Capabilities(stop_grace_s=float(self.kill_grace_s), repeats=bool(self.repeats))

    def build(self) -> CommandBackend:
        return CommandBackend(self.command, timeout_s=self.timeout_s, kill_grace_s=self.kill_grace_s, env=self.env,
                              cwd=self.cwd, skills=self._skills, skill_evals=self._skill_evals)

    def check(self, skills: list[str], spec: RunSpec) -> None:
        """Before a study starts: a bare program name is on this machine's PATH, a path exists. (A program
        that only the workers have fails there instead, as a failed run naming it.)"""
        program = fill_placeholders(self.command[0], placeholder_values(spec, Path(self.cwd or ".") / "run"))
        if _resolve_program(program, os.environ.get("PATH"), self.cwd) is None:
            raise InputError(f"backend.command[0]: program {program!r} not found"
                             + (f" in {self.cwd}" if self.cwd else " (on PATH, or relative to this directory)"))


class CommandBackend:
    """Backend (trainers.backend) that runs a program per run; see the module docstring.

    Lifecycle: built once per actor; `run(spec, run_dir)` per run, sequentially. `skills` are the study's
    skills: each must be in result.json's `losses`; `skill_evals` the evaluation files the study config names
    for some of them (passed on in spec.json: the trainer evaluates them its own way).
    """

    def __init__(self, command: Sequence[str], timeout_s: float | None = None, kill_grace_s: float = 30.0,
                 env: Mapping[str, str] | None = None, cwd: str | None = None, skills: Sequence[str] = (),
                 skill_evals: Mapping[str, str] | None = None):
        check_command(command)
        self.command = list(command)
        self.timeout_s = timeout_s
        self.kill_grace_s = float(kill_grace_s)
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.cwd = cwd
        self.skills = list(skills)
        self.skill_evals = dict(skill_evals or {})

    def run(self, spec: RunSpec, run_dir: Path, *, should_stop: Callable[[], bool] | None = None) -> RunResult:
        """Run the program for `spec` in `run_dir`; `should_stop()` true (polled) stops it as a cancellation."""
        run_dir = Path(run_dir).absolute()
        run_dir.mkdir(parents=True, exist_ok=True)
        result_path = run_dir / RESULT_FILE
        if result_path.exists():  # finished before, never recorded: read it back instead of training again
            previous = self._read(result_path, spec, wall_s=0.0)
            if previous.status == "ok":
                return previous
            result_path.unlink(missing_ok=True)
        spec_path = write_spec(run_dir, spec_payload(spec, run_dir, self.skills, self.skill_evals))
        values = placeholder_values(spec, run_dir)
        argv = [fill_placeholders(arg, values) for arg in self.command]
        env = {**os.environ, "SKILLSCALE_RUN_DIR": str(run_dir), "SKILLSCALE_RUN_ID": spec.run_id,
               "SKILLSCALE_SPEC": str(spec_path), **self.env}
        start = time.perf_counter()
        program = _resolve_program(argv[0], env.get("PATH"), self.cwd)
        if program is None:
            where = f" in {self.cwd}" if self.cwd else ""
            return failed_result(spec, self.skills, f"backend.command[0]: program {argv[0]!r} not found{where} "
                                                    f"(PATH of the worker: {env.get('PATH', '')})")
        rc, reason = _run_program([program, *argv[1:]], env, self.cwd, run_dir / LOG_FILE, self.timeout_s,
                                  self.kill_grace_s, should_stop)
        wall_s = time.perf_counter() - start
        if reason is not None and rc is None:  # could not start (permissions, not an executable)
            return failed_result(spec, self.skills, reason, wall_s)
        if reason is not None:
            raise CommandFailed(reason)
        return self._read(result_path, spec, wall_s)

    def _read(self, path: Path, spec: RunSpec, wall_s: float) -> RunResult:
        data, problem = read_result_file(path)
        if problem is not None:
            return failed_result(spec, self.skills, problem, wall_s)
        return parse_result(data, spec, self.skills, source=str(path), wall_s=wall_s)


def _resolve_program(program: str, path_var: str | None, cwd: str | None) -> str | None:
    """The executable to start: a bare name is looked up on PATH, a path is taken relative to `cwd`."""
    if os.sep in program or (os.altsep and os.altsep in program):
        candidate = Path(program) if Path(program).is_absolute() else Path(cwd or os.getcwd()) / program
        return str(candidate) if candidate.exists() else None
    return shutil.which(program, path=path_var)


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn that asks Linux to SIGTERM the child when the actor dies (PR_SET_PDEATHSIG); None elsewhere.
    libc's prctl is looked up here, before the fork, so the child runs only the call itself."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1  # <linux/prctl.h>
    parent = os.getpid()

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os._exit(143)

    return preexec


def _run_program(argv: list[str], env: dict, cwd: str | None, log_path: Path, timeout_s: float | None,
                 kill_grace_s: float, should_stop: Callable[[], bool] | None) -> tuple[int | None, str | None]:
    """Run to exit; (exit status, None) on exit 0, (status or None, one-line reason) otherwise."""
    with open(log_path, "ab") as log:
        log.write(f"\n=== skillscale {time.strftime('%Y-%m-%dT%H:%M:%S')}: {json.dumps(argv)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.PIPE, env=env,
                                    cwd=cwd, start_new_session=True, preexec_fn=_parent_death_signal())
        except OSError as exc:
            return None, f"backend.command[0]: cannot start {argv[0]!r} ({exc.strerror or exc})"
        tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        copier = threading.Thread(target=_copy_stderr, args=(proc.stderr, log, tail), daemon=True)
        copier.start()
        deadline = time.monotonic() + timeout_s if timeout_s else None
        stopped = None
        try:
            while proc.poll() is None:
                if deadline is not None and time.monotonic() > deadline:
                    stopped = f"timed out after {timeout_s:g} s (backend.timeout_s)"
                elif should_stop is not None and should_stop():
                    stopped = "cancelled"
                if stopped:
                    _terminate(proc, kill_grace_s)
                    break
                try:
                    proc.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    pass
        except BaseException:  # KeyboardInterrupt, SystemExit in the actor: never leave the program running
            _terminate(proc, kill_grace_s)
            raise
        finally:
            copier.join(timeout=5.0)  # a grandchild holding stderr open must not hang the actor
    rc = proc.returncode
    if stopped is None and rc == 0:
        return rc, None
    how = stopped or (f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with status {rc}")
    stderr = " | ".join(tail)
    if len(stderr) > STDERR_REASON_CHARS:  # the last lines say most (a traceback ends with the exception)
        stderr = "..." + stderr[-STDERR_REASON_CHARS:]
    return rc, f"command {how}" + (f"; stderr: {stderr}" if stderr else "") + f" (log: {log_path})"


def _copy_stderr(stream, log, tail: collections.deque) -> None:
    """Append the program's stderr to log.txt line by line, keeping the last lines for the failure reason."""
    for line in iter(stream.readline, b""):
        log.write(line)
        log.flush()
        text = line.decode(errors="replace").rstrip()
        if text:
            tail.append(text)
    stream.close()


def _terminate(proc: subprocess.Popen, kill_grace_s: float) -> None:
    """SIGTERM to the program's process group, SIGKILL after the grace period if it is still there."""
    for sig, wait_s in ((signal.SIGTERM, kill_grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
