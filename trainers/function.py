"""The python backend: call a `package.module:function` inside the actor, once per run.

    backend: {name: python, function: "mytrainer.entry:train"}

    def train(spec: dict, run_dir: pathlib.Path) -> dict:     # mytrainer/entry.py
        ...                                                    # train spec["n_params"], spec["n_tokens"], ...
        return {"losses": {"math": 2.31, "code": 1.72}, "n_params": 1994752}

`spec` is the dict trainers/contract.py describes (also written to `{run_dir}/spec.json`); the return value
follows the same result contract as a command's result.json, and bad content becomes a failed or diverged
run with a one-line reason naming the function and the key. An exception raised by the function is a
failed attempt (the controller retries it up to `max_tries`, the exception in the reason); `run_dir` is
the same on every attempt, so a function that checkpoints there resumes. The function runs in the actor's
process, on its resources (CUDA_VISIBLE_DEVICES set by Ray), one run at a time.

The function is imported when the backend is built; `load_function` raises InputError (one line naming the
function string) for a malformed string, a module that does not import or a missing attribute.
"""

from __future__ import annotations

import importlib
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator

from skillscale.errors import InputError
from trainers.capabilities import BackendConfigBase, Capabilities
from trainers.contract import LOG_FILE, REPEATS_DESCRIPTION, parse_result, spec_payload, write_spec
from trainers.spec import RunResult, RunSpec


class FunctionFailed(RuntimeError):
    """The function raised: a failed attempt, retried by the controller."""


def load_function(target: str, field: str = "backend.function") -> Callable:
    """The callable named by 'package.module:function' (attributes may be dotted: 'mod:Class.method')."""
    module_name, sep, attr = str(target).partition(":")
    if not sep or not module_name or not attr:
        raise InputError(f"{field}: expected 'package.module:function', got {target!r}")
    try:
        obj = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module raises while importing
        raise InputError(f"{field}: cannot import {target!r} ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise InputError(f"{field}: cannot import {target!r} (module {module_name!r} has no {attr!r})") from None
    if not callable(obj):
        raise InputError(f"{field}: {target!r} is a {type(obj).__name__}, not a callable")
    return obj


class PythonConfig(BackendConfigBase):
    """`backend: {name: python, function: "package.module:function"}` (see the module docstring)."""

    name: Literal["python"] = Field(description="selects this backend")
    function: str = Field(description="`package.module:function` called with each run's spec "
                                      "([byo-trainer.md](byo-trainer.md))")
    repeats: bool = Field(default=False, description=REPEATS_DESCRIPTION)
    _skills: tuple[str, ...] = PrivateAttr(default=())  # the study's skills (with_skills), not part of the YAML
    _skill_evals: dict[str, str] = PrivateAttr(default_factory=dict)  # skill -> eval file, for the trainer

    @field_validator("function")
    @classmethod
    def _well_formed(cls, function: str) -> str:
        module_name, sep, attr = function.partition(":")
        if not sep or not module_name or not attr:
            raise ValueError(f"expected 'package.module:function', got {function!r}")
        return function

    def with_skills(self, skills: Sequence[str], skill_evals: Mapping[str, str] | None = None) -> PythonConfig:
        """This config, knowing the study's skills (in the spec; each must be in the returned losses)."""
        copy = self.model_copy()
        copy._skills = tuple(skills)
        copy._skill_evals = dict(skill_evals or {})
        return copy

    @property
    def capabilities(self) -> Capabilities:
        """Runs on fewer unique tokens than they train on where the config says the function honours them."""
        return Capabilities(repeats=bool(self.repeats))

    def build(self) -> FunctionBackend:
        return FunctionBackend(self.function, skills=self._skills, skill_evals=self._skill_evals)

    def check(self, skills: list[str], spec: RunSpec) -> None:
        """Before a study starts: the function imports here (one line naming it if not)."""
        load_function(self.function)


class FunctionBackend:
    """Backend (trainers.backend) that calls a Python function per run; see the module docstring.

    Lifecycle: built once per actor (importing the function); `run(spec, run_dir)` per run, sequentially.
    """

    def __init__(self, function: str, skills: Sequence[str] = (), skill_evals: Mapping[str, str] | None = None):
        self.function_name = str(function)
        self.function = load_function(self.function_name)
        self.skills = list(skills)
        self.skill_evals = dict(skill_evals or {})

    def run(self, spec: RunSpec, run_dir: Path) -> RunResult:
        run_dir = Path(run_dir).absolute()
        run_dir.mkdir(parents=True, exist_ok=True)
        payload = spec_payload(spec, run_dir, self.skills, self.skill_evals)
        write_spec(run_dir, payload)
        start = time.perf_counter()
        try:
            returned = self.function(dict(payload), run_dir)
        except Exception as exc:
            # The traceback goes to the run's log; the exception crossing Ray carries only a line of text, so
            # the driver never needs to unpickle the user's exception types.
            with open(run_dir / LOG_FILE, "a") as log:
                log.write(f"=== skillscale {time.strftime('%Y-%m-%dT%H:%M:%S')}: {self.function_name} raised\n")
                log.write("".join(traceback.format_exception(exc)))
            message = str(exc).splitlines()[0] if str(exc) else ""
            raise FunctionFailed(f"{self.function_name} raised {type(exc).__name__}: {message} "
                                 f"(traceback: {run_dir / LOG_FILE})") from None
        return parse_result(returned, spec, self.skills, source=self.function_name,
                            wall_s=time.perf_counter() - start)
