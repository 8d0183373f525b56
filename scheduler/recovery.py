"""Crash-torn study state, recovered instead of fatal (Ray-free; the study's store, scheduler/store.py, calls
these while it holds the study lock, scheduler/lock.py).

    note = repair_journal(study_dir / "optuna.journal")     # None, or one line saying what was repaired
    rows, note = rebuild_ledger_rows(cfg, study_dir, trials) # when runs.parquet cannot be read
    write_run_record(run_dir, row)                           # beside every ledger append

What can tear, and what is done about it:

- `optuna.journal` is append-only; Optuna fsyncs each append, so a crash can leave only its *last*
  record torn (no newline, or half a JSON object). Optuna skips such a tail on reading but appends the
  next record onto it, and the merged line then breaks every later read. `repair_journal`
  drops a torn tail and, in a journal already damaged that way, keeps the whole record that was appended
  onto a torn one. A record broken in the middle of the file (not something a crash produces) is not
  guessed at: one line says so, exit status 2.
- `runs.parquet` is rewritten atomically, so a crash cannot tear it, but a disk can. Every finished run's
  ledger row is also written to `runs/<run_id>/ledger_row.json` (a few hundred bytes), so the ledger can be
  rebuilt exactly from the run directories; runs without a record (studies from before this file) are
  rebuilt from their COMPLETE Optuna trials (spec from the trial's params, losses from its values;
  throughput and wall time unknown).
- A journal cut deeper than its last record (a restore from an older copy) loses trials whose runs are
  in the ledger; `restore_lost_trials` adds them back (Optuna's `add_trial`), in trial order.
- `attempts.json` (retry counts) and `result.json` are atomic too; unreadable, they are set aside and
  rebuilt (retry counts start again; the study runs to its stop rule and writes its result again).

Each repair is said in one line and the damaged file is kept beside the new one as `<name>.damaged`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

from fitting.conventions import training_flops
from skillscale.atomic import atomic_write_bytes, atomic_write_text
from skillscale.errors import InputError

RUN_RECORD = "ledger_row.json"
RECORD_PREFIX = b'{"op_code":'  # how every Optuna journal record starts (json.dumps, compact separators)


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _salvage(line: bytes) -> bytes | None:
    """A whole record appended onto a torn one (`<torn>{"op_code":...}`): the whole record, else None."""
    start = line.rfind(RECORD_PREFIX)
    while start > 0:
        if _is_record(line[start:]):
            return line[start:]
        start = line.rfind(RECORD_PREFIX, 0, start)
    return None


def set_aside(path: Path) -> Path:
    """Keep a damaged file as <name>.damaged (replacing an older one) so nothing is silently destroyed."""
    aside = path.with_name(path.name + ".damaged")
    os.replace(path, aside)
    return aside


def repair_journal(path: str | os.PathLike) -> str | None:
    """Make a crash-torn Optuna journal file readable again; None if it needed nothing.

    Raises InputError when a record in the middle is broken in a way no crash produces."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the Optuna journal ({exc.strerror or exc})") from None
    if not data:
        return None
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends in a newline; else a record torn mid-write
    kept: list[bytes] = []
    torn_tail, salvaged = bool(tail), 0
    for i, line in enumerate(lines):
        if not line or _is_record(line):
            kept.append(line)
            continue
        whole = _salvage(line)
        if whole is not None:
            kept.append(whole)
            salvaged += 1
        elif i == len(lines) - 1 and not tail:  # the last record, torn then given its newline
            torn_tail = True
        else:
            raise InputError(f"{path}: Optuna journal record {i + 1} of {len(lines)} is damaged (not a crash-torn "
                             "tail); restore the file from a copy or start a new --study-dir")
    if not torn_tail and not salvaged:
        return None
    repaired = b"".join(line + b"\n" for line in kept)
    aside = path.with_name(path.name + ".damaged")
    atomic_write_bytes(aside, data)
    atomic_write_bytes(path, repaired)
    what = []
    if torn_tail:
        what.append("dropped its torn last record (a write cut short by a crash)")
    if salvaged:
        what.append(f"kept {salvaged} whole record(s) that had been appended onto a torn one")
    return f"{path}: repaired the Optuna journal: {'; '.join(what)} (the original is kept as {aside.name})"


def remove_stale_journal_lock(journal: str | os.PathLike) -> str | None:
    """Optuna's journal lock (`<journal>.lock`, a symlink) left by a killed process makes the next one wait
    30 s for its grace period. Call only while holding the study lock: no live controller can own it then."""
    lock = Path(str(journal) + ".lock")
    if not os.path.lexists(lock):
        return None
    try:
        os.unlink(lock)
    except FileNotFoundError:
        return None
    return f"{lock}: removed a stale Optuna journal lock left by a stopped controller"


def check_frozen_config(path: str | os.PathLike, frozen: dict) -> str | None:
    """study.yaml cut short (unparseable, or its leading fields only, as a truncation leaves it) is set aside so
    that the given config is frozen again; None if it is whole (a whole one that differs is freeze_config's to
    refuse). Only a strict, in-order prefix of the given config's fields counts as cut short."""
    import yaml

    path = Path(path)
    if not path.exists():
        return None
    try:
        old = yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        old = None
    keys = list(frozen)
    if isinstance(old, dict) and old:
        present = list(old)
        prefix = present == keys[: len(present)] and len(present) < len(keys)
        if not (prefix and all(old[k] == frozen[k] for k in present[:-1])):
            return None  # whole (or a different config): freeze_config decides
    aside = set_aside(path)
    return (f"{path}: the frozen config was cut short (kept as {aside.name}); froze the given config again, "
            "its fields that survived matched")


# ----------------------------------------------------------------------------------------- run records
def _json_row(row: dict) -> dict:
    """A ledger row as JSON can hold it: NaN losses (failed runs) are kept as NaN (Python's json reads them)."""
    return {k: (float(v) if isinstance(v, float) else v) for k, v in row.items()}


def write_run_record(run_dir: str | os.PathLike, row: dict) -> None:
    """The finished run's ledger row, beside its checkpoints (atomic); rebuild_ledger_rows reads it back."""
    atomic_write_text(Path(run_dir) / RUN_RECORD, json.dumps(_json_row(row), sort_keys=True) + "\n")


def read_run_record(run_dir: str | os.PathLike) -> dict | None:
    """The ledger row a finished run left in its directory, None if there is none (or it is unreadable)."""
    try:
        row = json.loads((Path(run_dir) / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) and row.get("run_id") == Path(run_dir).name else None


def read_run_records(study_dir: str | os.PathLike) -> tuple[dict[str, dict], int]:
    """{run_id: ledger row} from runs/*/ledger_row.json, and how many records were unreadable (skipped)."""
    records, unreadable = {}, 0
    for path in sorted((Path(study_dir) / "runs").glob(f"*/{RUN_RECORD}")):
        try:
            row = json.loads(path.read_text())
        except (OSError, ValueError):
            unreadable += 1
            continue
        if isinstance(row, dict) and row.get("run_id") == path.parent.name:
            records[row["run_id"]] = row
        else:
            unreadable += 1
    return records, unreadable


def _row_from_trial(cfg, trial, spec, study_dir: Path) -> dict:
    """A ledger row from a COMPLETE trial: its spec and per-skill values; the realised N from the run's
    run.json when the trainer wrote one (the torch backend rounds N to a shape)."""
    n_params = spec.n_params
    try:
        n_params = int(json.loads((study_dir / "runs" / spec.run_id / "run.json").read_text())["n_params"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return {"run_id": spec.run_id, "trial_number": trial.number, "status": "ok",
            "error": "ledger row rebuilt from the Optuna journal", "requested_n_params": spec.n_params,
            "n_params": n_params, "n_tokens": spec.n_tokens, "flops": training_flops(n_params, spec.n_tokens),
            **{f"mix/{d}": float(w) for d, w in sorted(spec.mix.items())},
            **{f"loss/{s}": float(v) for s, v in zip(cfg.skills, trial.values, strict=True)},
            "wall_s": math.nan, "tokens_per_s": math.nan, "mfu": math.nan, "tries": 1,
            "finished_at": trial.datetime_complete.timestamp() if trial.datetime_complete else math.nan,
            **({"n_unique_tokens": float(spec.unique_tokens)} if spec.unique_tokens is not None else {})}


def rebuild_ledger_rows(cfg, study_dir: str | os.PathLike, trials: Iterable, spec_of) -> tuple[list[dict], str]:
    """The ledger's rows rebuilt from the run records and the journal's trials, in the order they finished.

    `spec_of(trial) -> RunSpec` maps a trial to its run (the Study's own mapping, so run_ids agree).
    Returns (rows, one line saying where they came from)."""
    from optuna.trial import TrialState

    study_dir = Path(study_dir)
    records, unreadable = read_run_records(study_dir)
    rows, from_journal = dict(records), 0
    for trial in trials:
        if trial.state != TrialState.COMPLETE or trial.values is None or len(trial.values) != len(cfg.skills):
            continue
        spec = spec_of(trial)
        if spec is not None and spec.run_id not in rows:
            rows[spec.run_id] = _row_from_trial(cfg, trial, spec, study_dir)
            from_journal += 1
    ordered = sorted(rows.values(), key=lambda r: (_finite(r.get("finished_at")), r.get("trial_number", -1)))
    note = (f"rebuilt {len(ordered)} ledger rows: {len(ordered) - from_journal} from runs/*/{RUN_RECORD}, "
            f"{from_journal} from COMPLETE Optuna trials")
    if unreadable:
        note += f" ({unreadable} unreadable run records skipped)"
    return ordered, note


def _finite(value) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else math.inf


# ------------------------------------------------------------------------------------ journal vs ledger
def trial_params(trial, names: Iterable[str], optional: dict[str, float] | None = None) -> dict | None:
    """A trial's run parameters `names`: its params, or, when the journal lost some of the records that set
    them (a cut between `ask` and its parameters), the parameters it was enqueued with; None if neither
    holds them all (the controller enqueues every trial it asks, so the second always survives). A name in
    `optional` that the trial lacks takes the value given there (a parameter the study did not ask for then)."""
    optional = optional or {}
    names = list(names)
    sources = (trial.params, getattr(trial, "system_attrs", {}).get("fixed_params") or {})
    for params in sources:  # a source with every name first: a cut journal may hold all but the last one set
        if all(n in params for n in names):
            return {n: params[n] for n in names}
    for params in sources:
        if all(n in params or n in optional for n in names):
            return {n: params.get(n, optional.get(n)) for n in names}
    return None


def restore_lost_trials(study, rows: list[dict], params_of_row, distributions: dict) -> str | None:
    """Add back (Optuna's add_trial, in trial order) the trials of ledger rows that the journal no longer
    holds, so the study's trial count, and the proposals indexed by it, are what they were.

    `params_of_row(row) -> dict` gives a row's trial parameters (the store's SearchSpace.to_params)."""
    import optuna
    from optuna.trial import TrialState

    n_trials = len(study.get_trials(deepcopy=False))
    lost = sorted((r for r in rows if r.get("trial_number", -1) >= n_trials), key=lambda r: r["trial_number"])
    if not lost:
        return None
    skills = [name.removeprefix("loss/") for name in study.metric_names or ()]
    for row in lost:
        number = len(study.get_trials(deepcopy=False))
        while number < row["trial_number"]:  # a run that was in flight when the journal was cut: gone
            study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
            number += 1
        ok = row["status"] == "ok" and skills and all(math.isfinite(row.get(f"loss/{s}", math.nan)) for s in skills)
        study.add_trial(optuna.trial.create_trial(
            params=params_of_row(row), distributions=distributions,
            values=[row[f"loss/{s}"] for s in skills] if ok else None,
            state=TrialState.COMPLETE if ok else TrialState.FAIL))
    return (f"the Optuna journal had lost {len(lost)} trials whose runs are in the ledger; added them back "
            "in trial order")
