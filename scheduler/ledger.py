"""Two of the files a study's store keeps (scheduler/store.py): the frozen config and the run ledger.

<study_dir>/study.yaml      frozen copy of the config; a resume with a different config is refused
<study_dir>/runs.parquet    one row per finished run (ok, diverged or failed)

Every write goes through skillscale.atomic (temporary file, fsync, rename), so a crash (SIGKILL included)
leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from skillscale.atomic import atomic_write_bytes, atomic_write_text
from skillscale.errors import InputError
from trainers.spec import RunResult, RunSpec

SOURCE_PRIOR = "prior"  # a row's `source` for a prior run (scheduler/prior_runs.py); rows of trained runs have none

# Fields that may differ between the frozen config and a resume: they change how fast the study
# runs, not what it estimates.
RESUMABLE_FIELDS = ("max_concurrent", "resources")
MAX_CHANGES_SHOWN = 4  # a refused resume names this many changed fields, so that its message stays one line


def _changed_fields(old, new, prefix: str = "") -> list[str]:
    """'field.path (was X, now Y)' for every leaf that differs between two frozen configs, in sorted order: a
    trainer default that changed since the study started shows as, say, backend.trainer.qk_norm."""
    sections = [side for side in (old, new) if side is not None]
    if sections and all(isinstance(side, dict) for side in sections):
        old, new = old or {}, new or {}  # a section one side lacks: every field of the other one is a change
        return [change for key in sorted(set(old) | set(new), key=str)
                for change in _changed_fields(old.get(key), new.get(key), f"{prefix}{key}.")]
    if old == new:
        return []
    return [f"{prefix.rstrip('.')} (was {old!r}, now {new!r})"]


def freeze_config(study_dir: Path, frozen: dict) -> None:
    """Write study.yaml on first start; on resume, refuse a config whose estimand changed."""
    path = Path(study_dir) / "study.yaml"
    if not path.exists():
        atomic_write_text(path, yaml.safe_dump(frozen, sort_keys=False))
        return
    try:
        old = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        raise InputError(f"{path}: frozen study config is unreadable; restore it or use a new --study-dir") from None
    changed = _changed_fields(*({k: v for k, v in cfg.items() if k not in RESUMABLE_FIELDS} for cfg in (old, frozen)))
    if changed:
        shown = ", ".join(changed[:MAX_CHANGES_SHOWN]) + (
            f" and {len(changed) - MAX_CHANGES_SHOWN} more" if len(changed) > MAX_CHANGES_SHOWN else "")
        raise InputError(f"{path}: this study was started with a different config (changed: {shown}); "
                         "use the original config or a new --study-dir")
    if any(old.get(k) != frozen.get(k) for k in RESUMABLE_FIELDS):
        atomic_write_text(path, yaml.safe_dump(frozen, sort_keys=False))


class Ledger:
    """runs.parquet: one row per finished run, rewritten atomically on every append (path None: in memory).

    Columns: run_id, trial_number, family_id, branch, status, error, requested_n_params, n_params, n_tokens, flops,
    mix/<domain>..., loss/<skill>..., domain_loss/<domain>..., epochs/<domain>... (how often the run read each
    domain's training text; torch backend only), time/<phase>... (where a torch run's wall_s went: setup, first_step,
    train, evaluate, checkpoint, other), wall_s, tokens_per_s, mfu, tries, finished_at (unix seconds).
    Prior runs (scheduler/prior_runs.py) add source ("prior"), prior_sha256, prior_row and n_unique_tokens; a run
    limited to fewer unique tokens than it trained on (RunSpec.unique_tokens) adds n_unique_tokens too.
    """

    def __init__(self, path: Path | None):
        self.path = Path(path) if path is not None else None
        self._rows: list[dict] = self._read() if self.path is not None and self.path.exists() else []
        self._by_id = {r["run_id"]: r for r in self._rows}

    def _read(self) -> list[dict]:
        try:
            table = pq.read_table(self.path)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{self.path}: run ledger is corrupt or truncated ({exc}); "
                             "restore it from a backup or start a new --study-dir") from None
        missing = {"run_id", "status", "n_params", "n_tokens", "flops"} - set(table.column_names)
        if missing:
            raise InputError(f"{self.path}: run ledger lacks columns {sorted(missing)}")
        return table.to_pylist()

    @property
    def rows(self) -> list[dict]:
        return list(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def run_ids(self) -> set[str]:
        return set(self._by_id)

    def row(self, run_id: str) -> dict | None:
        """The row of a finished run, None if it has not finished."""
        return self._by_id.get(run_id)

    def append(self, spec: RunSpec, result: RunResult, tries: int = 1) -> dict:
        """Record a finished run and return its row; a run already recorded keeps its first row (returned)."""
        if result.run_id in self._by_id:
            return self._by_id[result.run_id]  # a finished run is never recorded twice
        return self.append_row(ledger_row(spec, result, tries))

    def append_row(self, row: dict) -> dict:
        """Record a row made by ledger_row (the store writes it to the run's directory first); a run already
        recorded keeps its first row (returned)."""
        if row["run_id"] in self._by_id:
            return self._by_id[row["run_id"]]
        self.write_rows(self._rows + [row])
        return row

    def write_rows(self, rows: list[dict]) -> None:
        """Replace the ledger by `rows` (atomically on disk): every append, and a ledger rebuilt by recovery."""
        if self.path is not None:
            columns = sorted({k for r in rows for k in r}, key=_column_order)
            table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows])
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink)
            atomic_write_bytes(self.path, sink.getvalue().to_pybytes())
        self._rows = list(rows)
        self._by_id = {r["run_id"]: r for r in self._rows}

    def flops_spent(self) -> float:
        """FLOPs of the runs the study trained: what compute_cap is charged (prior runs are not)."""
        return float(sum(r["flops"] for r in self._rows if r.get("source") != SOURCE_PRIOR))

    def trained_rows(self) -> list[dict]:
        """The rows of runs the study trained (ok, diverged or failed), without its prior runs."""
        return [r for r in self._rows if r.get("source") != SOURCE_PRIOR]

    def prior_rows(self) -> list[dict]:
        """The study's prior runs (scheduler/prior_runs.py), as they entered the ledger."""
        return [r for r in self._rows if r.get("source") == SOURCE_PRIOR]

    def flops_prior(self) -> float:
        """FLOPs of the prior runs, reported apart and not charged to compute_cap."""
        return float(sum(r["flops"] for r in self.prior_rows()))

    def repeated(self) -> tuple[int, float]:
        """(runs the study trained on fewer unique tokens than they read, the most epochs among them; 1.0: none)."""
        epochs = [r["n_tokens"] / u for r in self.trained_rows() if (u := row_unique_tokens(r)) is not None]
        return len(epochs), max(epochs, default=1.0)


def ledger_row(spec: RunSpec, result: RunResult, tries: int = 1) -> dict:
    """One finished run as the ledger stores it (and as `scheduler.estimates.refit` reads it)."""
    return {
        "run_id": result.run_id, "trial_number": spec.trial_number, "status": result.status,
        "seed": int(spec.seed),  # replicates (same N, D, mix) differ only here (Study._replicate_index)
        "family_id": spec.family_id, "branch": int(spec.branch),  # "" and -1: a plain run (scheduler/families.py)
        "error": result.error, "requested_n_params": spec.n_params, "n_params": result.n_params,
        "n_tokens": result.n_tokens, "flops": float(result.flops),
        **{f"mix/{d}": float(w) for d, w in sorted((result.mix or spec.mix).items())},  # replay: the table run's
        **{f"loss/{s}": float(v) for s, v in sorted(result.losses.items())},
        **{f"domain_loss/{d}": float(v) for d, v in sorted(result.domain_losses.items())},
        **{f"epochs/{d}": float(v) for d, v in sorted(result.data_epochs.items())},  # torch: times over the text
        **{f"time/{p}": float(v) for p, v in result.time_s.items()},  # torch: where wall_s went (setup, ...)
        "wall_s": float(result.wall_s), "tokens_per_s": float(result.tokens_per_s),
        "mfu": float(result.mfu), "tries": int(tries), "finished_at": time.time(),
        **({"n_unique_tokens": float(spec.unique_tokens)} if spec.unique_tokens is not None else {}),
    }


def row_unique_tokens(row: dict) -> int | None:
    """The unique tokens a ledger row's run read repeatedly (fewer than its n_tokens); None: it did not repeat."""
    unique = row.get("n_unique_tokens")
    if unique is None or not math.isfinite(unique) or unique >= row["n_tokens"]:
        return None
    return int(unique)


def _column_order(name: str) -> tuple[int, str]:
    head = ["run_id", "trial_number", "family_id", "branch", "status", "error", "requested_n_params", "n_params",
            "n_tokens", "flops"]
    if name in head:
        return (0, f"{head.index(name):02d}")
    for i, prefix in enumerate(("mix/", "loss/", "domain_loss/", "epochs/", "time/"), start=1):
        if name.startswith(prefix):
            return (i, name)
    return (9, name)

