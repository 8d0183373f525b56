"""The bring-your-own-trainer contract: what skillscale hands your trainer, and what it reads back.

Both the command backend (trainers/command.py: any program) and the python backend (trainers/function.py:
a `module:function` callable) speak it. Per run, skillscale gives the trainer a *spec* (a JSON object):

    {"run_id": "3f2a...", "n_params": 2000000, "n_tokens": 40000000, "mix": {"code": 0.5, "general": 0.5},
     "seed": 0, "hparams": {}, "trial_number": 7, "unique_tokens": null, "flops": 4.8e14,
     "skills": ["math", "code"], "skill_evals": {"math": "/abs/data/math.jsonl"},
     "run_dir": "/abs/studies/x/runs/3f2a..."}

`unique_tokens` is null (train on all the data) unless the backend's config says `repeats: true`; then a run may
get an integer: train on that many distinct tokens, read n_tokens / unique_tokens times over (the loop buys such
runs for targets that declare `unique_tokens`, to learn what repeated data costs them).

and reads back a *result* (a JSON object; for a program, the file `{run_dir}/result.json`):

    {"losses": {"math": 2.31, "code": 1.72},      # required: every study skill, nats per token
     "n_params": 1994752,                          # optional: the exact N trained (default: the spec's)
     "n_tokens": 40000000,                         # optional: the exact D trained (default: the spec's)
     "flops": 4.79e14,                             # optional (default: C = 6*N*D, fitting/conventions.py)
     "status": "ok",                               # optional: "ok" (default), "diverged" or "failed"
     "error": "",                                  # optional: why, for "diverged"/"failed"
     "tokens_per_s": 1.2e6, "mfu": 0.31,           # optional diagnostics
     "domain_losses": {"general": 3.1}}            # optional: held-out loss per training domain

Keys not listed are ignored. A result that breaks the contract is not an exception: `parse_result` turns it
into a RunResult with status "failed" (or "diverged" for a NaN/inf/null loss) whose `error` is one line
naming the file (or function) and the key, e.g. `runs/3f2a/result.json: losses.math: missing (skills: math,
code)`, so the study records it and goes on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fitting.conventions import training_flops
from skillscale.atomic import atomic_write_json
from trainers.spec import RunResult, RunSpec

SPEC_FILE = "spec.json"
REPEATS_DESCRIPTION = ("the trainer honours the spec's unique_tokens (an integer: train on that many distinct "
                       "tokens, read repeatedly; null: all the data): the loop may then buy runs that repeat their "
                       "data for targets with unique_tokens")
RESULT_FILE = "result.json"
LOG_FILE = "log.txt"
STATUSES = ("ok", "diverged", "failed")


def spec_payload(spec: RunSpec, run_dir: Path, skills: Sequence[str],
                 skill_evals: Mapping[str, str] | None = None) -> dict:
    """The spec as the trainer sees it: RunSpec.to_dict() plus its FLOPs, the skills to report, the evaluation
    files the study config gave for some of them (absolute paths) and the run dir."""
    return {**spec.to_dict(), "flops": spec.flops, "skills": list(skills),
            "skill_evals": {k: str(Path(v).absolute()) for k, v in (skill_evals or {}).items()},
            "run_dir": str(Path(run_dir).absolute())}


def write_spec(run_dir: Path, payload: dict) -> Path:
    """`{run_dir}/spec.json`, written atomically (a trainer never sees half of it)."""
    path = Path(run_dir) / SPEC_FILE
    atomic_write_json(path, payload)
    return path


def failed_result(spec: RunSpec, skills: Sequence[str], error: str, wall_s: float = 0.0) -> RunResult:
    """A run that produced no usable losses: status failed, NaN for every skill, `error` one line."""
    return RunResult(run_id=spec.run_id, status="failed", n_params=spec.n_params, n_tokens=spec.n_tokens,
                     flops=spec.flops, losses={s: math.nan for s in skills}, wall_s=wall_s, error=one_line(error))


def one_line(text: str, limit: int = 300) -> str:
    """`text` with its lines joined by ' | ' and cut to `limit` characters (the ledger's error column)."""
    joined = " | ".join(line.strip() for line in str(text).splitlines() if line.strip())
    return joined if len(joined) <= limit else joined[: limit - 3] + "..."


def read_result_file(path: Path) -> tuple[Any, str | None]:
    """(parsed JSON, None), or (None, a one-line reason naming the file) when it is missing or not JSON."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None, f"{path}: missing (the trainer exited 0 without writing it)"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{path}: unreadable ({type(exc).__name__}: {exc})"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"


class _Broken(Exception):
    """A result that breaks the contract; `status` is what the run is recorded as."""

    def __init__(self, message: str, status: str = "failed"):
        super().__init__(message)
        self.status = status


def parse_result(data: Any, spec: RunSpec, skills: Sequence[str], source: str, wall_s: float = 0.0) -> RunResult:
    """A trainer's result object -> RunResult, never raising for bad content (see the module docstring).

    `skills` are the study's skills (each must be in `losses`); `source` names where the object came from
    (a file path or a function) in every error.
    """
    try:
        return _parse(data, spec, skills, source, wall_s)
    except _Broken as broken:
        result = failed_result(spec, skills, str(broken), wall_s)
        if broken.status == "diverged":
            losses = data.get("losses") if isinstance(data, dict) else None
            kept = {k: _as_float(v) for k, v in losses.items()} if isinstance(losses, dict) else {}
            result = RunResult(**{**result.to_dict(), "status": "diverged", "losses": {**result.losses, **kept}})
        return result


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def _parse(data: Any, spec: RunSpec, skills: Sequence[str], source: str, wall_s: float) -> RunResult:
    if not isinstance(data, dict):
        raise _Broken(f"{source}: expected a JSON object with \"losses\", got {type(data).__name__}")
    status = data.get("status", "ok")
    if status not in STATUSES:
        raise _Broken(f"{source}: status: expected one of {', '.join(STATUSES)}, got {status!r}")
    error = data.get("error", "")
    if not isinstance(error, str):
        raise _Broken(f"{source}: error: expected a string, got {type(error).__name__}")
    if status == "failed":
        raise _Broken(f"{source}: the trainer reported status failed" + (f": {error}" if error else ""))

    losses = data.get("losses")
    if not isinstance(losses, dict):
        got = "missing" if losses is None else f"expected {{skill: nats}}, got {type(losses).__name__}"
        raise _Broken(f"{source}: losses: {got}")
    for skill in skills:
        if skill not in losses:
            raise _Broken(f"{source}: losses.{skill}: missing (skills: {', '.join(skills)})")
    parsed: dict[str, float] = {}
    non_finite = []
    for skill, value in losses.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _Broken(f"{source}: losses.{skill}: expected a number (nats per token), got {value!r}")
        number = math.nan if value is None else float(value)
        if not math.isfinite(number):
            non_finite.append(f"losses.{skill} is {'null' if value is None else number}")
        elif number <= 0:
            raise _Broken(f"{source}: losses.{skill}: expected a positive number of nats, got {value!r}")
        parsed[str(skill)] = number
    if status == "diverged" or non_finite:
        raise _Broken(f"{source}: " + ("; ".join(non_finite) if non_finite else "the trainer reported status diverged")
                      + (f": {error}" if error and status == "diverged" else ""), status="diverged")

    n_params = _positive_int(data, "n_params", spec.n_params, source)
    n_tokens = _positive_int(data, "n_tokens", spec.n_tokens, source)
    flops = _number(data, "flops", float(training_flops(n_params, n_tokens)), source, positive=True)
    domain_losses = data.get("domain_losses", {})
    if not isinstance(domain_losses, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in domain_losses.values()):
        raise _Broken(f"{source}: domain_losses: expected {{domain: nats}}, got {domain_losses!r}"[:300])
    return RunResult(run_id=spec.run_id, status="ok", n_params=n_params, n_tokens=n_tokens, flops=flops,
                     losses=parsed, domain_losses={str(k): float(v) for k, v in domain_losses.items()},
                     wall_s=float(wall_s), tokens_per_s=_number(data, "tokens_per_s", 0.0, source),
                     mfu=_number(data, "mfu", 0.0, source), error=error)


def _positive_int(data: dict, key: str, default: int, source: str) -> int:
    value = data.get(key)
    if value is None:
        return int(default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value <= 0 or value != int(value):
        raise _Broken(f"{source}: {key}: expected a positive integer, got {value!r}")
    return int(value)


def _number(data: dict, key: str, default: float, source: str, positive: bool = False) -> float:
    value = data.get(key)
    if value is None:
        return float(default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0 or (positive and value == 0):
        expected = "a positive number" if positive else "a finite number >= 0"
        raise _Broken(f"{source}: {key}: expected {expected}, got {value!r}")
    return float(value)
