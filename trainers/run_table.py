"""A table of finished training runs (CSV or parquet), read and validated: a study's prior runs
(scheduler/prior_runs.py) and the replay backend's table (trainers/replay.py).

    table = read_run_table("ladder.csv", skills=["knowledge", "code"], domains=["knowledge", "code"],
                           fixed_mix={"knowledge": 0.5, "code": 0.5}, field="prior_runs")

One row per run ("wide" layout, as a study's own runs.parquet):

    n_params          parameters N (fitting/conventions.py says which count)          required, > 0
    n_tokens          training tokens D                                                required, > 0
    loss/<skill>      validation loss of each study skill, nats per token              required per skill
    loss              the loss, for a study with one skill                             instead of loss/<skill>
    mix/<domain>      training-mix weight of each domain (a missing domain weighs 0)   optional; required when
                                                                                       the study's mix is a simplex
    seed              the run's seed                                                   optional, integer >= 0
    n_unique_tokens   distinct tokens the run saw (repeated data: Muennighoff et al.   optional, > 0
                      2023, arXiv:2305.16264)
    flops             training compute C                                               optional, default 6·N·D

Other columns (a model name, a date) are ignored. Every problem raises InputError naming the file, the row
(1-based, counting data rows, not the header) and the column, e.g.
`runs.csv: row 7, column loss/code: expected a positive number, got 'n/a'`.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

from fitting.conventions import training_flops
from skillscale.errors import InputError

LOSS_PREFIX = "loss/"
MIX_PREFIX = "mix/"
MIX_ATOL = 1e-3  # a row's mix must sum to 1 within this (published tables round their proportions)
FIXED_MIX_ATOL = 1e-6  # a row of a fixed-mix study must be at the study's mix within this


@dataclass(frozen=True)
class TableRun:
    """One row of a run table: what was trained and what it measured."""

    row: int  # 1-based data row in the file
    n_params: int
    n_tokens: int
    losses: dict[str, float]  # per study skill, nats per token
    mix: dict[str, float]  # per study domain (the study's fixed mix when the file has no mix columns)
    flops: float
    seed: int | None = None
    n_unique_tokens: float | None = None

    def key(self) -> str:
        """A content hash (12 hex digits) identifying this run independently of its row number."""
        content = repr((self.n_params, self.n_tokens, sorted(self.losses.items()), sorted(self.mix.items()),
                        self.seed, self.n_unique_tokens))
        return hashlib.sha256(content.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RunTable:
    """A validated run table: its path, the sha256 of its bytes and its runs in file order."""

    path: str
    sha256: str
    runs: tuple[TableRun, ...]

    @property
    def flops(self) -> float:
        return float(sum(r.flops for r in self.runs))


def file_sha256(path: str | os.PathLike, field: str) -> str:
    """The sha256 of a file's bytes; InputError naming `field` and the path when it cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise InputError(f"{field}: cannot read {os.fspath(path)} ({exc.strerror or exc})") from None


def _read_columns(path: str) -> dict[str, list]:
    import pyarrow as pa

    try:
        if path.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(path)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        kind = "parquet" if path.endswith((".parquet", ".pq")) else "CSV"
        raise InputError(f"{path}: cannot read as {kind} ({first[:200]})") from None
    return table.to_pydict()


def _number(path: str, row: int, column: str, value, *, positive: bool = True, integer: bool = False):
    """A cell as a finite (positive) number, else InputError naming file, row and column."""
    what = "an integer >= 0" if integer else "a positive number" if positive else "a number >= 0"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    ok = math.isfinite(number) and (number > 0 if positive else number >= 0)
    if integer:
        ok = ok and number.is_integer()
    if not ok:
        shown = "an empty or NA cell" if value is None or value == "" else repr(value)
        raise InputError(f"{path}: row {row}, column {column}: expected {what}, got {shown}")
    return int(number) if integer else number


def read_run_table(path: str | os.PathLike, skills: list[str], domains: list[str],
                   fixed_mix: dict[str, float] | None, field: str) -> RunTable:
    """Read and validate a run table for a study with these skills and domains (see the module docstring).

    `fixed_mix`: the study's mix when it is fixed (rows must be at it; a file without mix columns is read as
    trained at it), None when the study's mix is a simplex (mix columns required). `field` names the config
    field the path came from, for a file that cannot be read at all."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{field}: no such file {path!r}")
    sha = file_sha256(path, field)
    columns = _read_columns(path)
    n_rows = len(next(iter(columns.values()), []))
    for name in ("n_params", "n_tokens"):
        if name not in columns:
            raise InputError(f"{path}: missing column {name!r} (a run table has n_params, n_tokens, "
                             f"loss/<skill> per skill; see trainers/run_table.py)")
    loss_columns = {}
    for skill in skills:
        column = f"{LOSS_PREFIX}{skill}"
        if column not in columns and len(skills) == 1 and "loss" in columns:
            column = "loss"
        if column not in columns:
            alt = " (or 'loss', as the study has one skill)" if len(skills) == 1 else ""
            raise InputError(f"{path}: missing column {column!r}{alt}: every study skill needs a loss column")
        loss_columns[skill] = column
    mix_columns = [c for c in columns if c.startswith(MIX_PREFIX)]
    for column in mix_columns:
        if column[len(MIX_PREFIX):] not in domains:
            raise InputError(f"{path}: column {column!r} names no domain of the study (domains: "
                             f"{', '.join(domains)})")
    if fixed_mix is None and not mix_columns:
        raise InputError(f"{path}: no mix/<domain> columns, but the study's mix is a simplex: each run needs its "
                         "training mix")
    if n_rows == 0:
        raise InputError(f"{path}: no rows")
    runs = []
    for i in range(n_rows):
        row = i + 1
        n_params = _number(path, row, "n_params", columns["n_params"][i])
        n_tokens = _number(path, row, "n_tokens", columns["n_tokens"][i])
        losses = {s: _number(path, row, c, columns[c][i]) for s, c in loss_columns.items()}
        if mix_columns:
            mix = {d: 0.0 for d in domains}
            for column in mix_columns:
                mix[column[len(MIX_PREFIX):]] = _number(path, row, column, columns[column][i], positive=False)
            total = sum(mix.values())
            if abs(total - 1.0) > MIX_ATOL:
                raise InputError(f"{path}: row {row}, column {mix_columns[-1]}: the mix/* weights sum to {total:g}, "
                                 "not 1")
            mix = {d: w / total for d, w in mix.items()}
            if fixed_mix is not None:
                for d in domains:
                    if abs(mix[d] - fixed_mix.get(d, 0.0)) > FIXED_MIX_ATOL:
                        raise InputError(f"{path}: row {row}, column mix/{d}: {mix[d]:g}, but the study's mix is "
                                         f"fixed at {fixed_mix.get(d, 0.0):g} (a run at another mix would bias "
                                         "the fit)")
        else:
            mix = dict(fixed_mix)
        seed = _number(path, row, "seed", columns["seed"][i], integer=True) if "seed" in columns else None
        unique = (_number(path, row, "n_unique_tokens", columns["n_unique_tokens"][i])
                  if "n_unique_tokens" in columns else None)
        n_params_int, n_tokens_int = int(round(n_params)), int(round(n_tokens))
        flops = (_number(path, row, "flops", columns["flops"][i]) if "flops" in columns
                 else training_flops(n_params_int, n_tokens_int))
        runs.append(TableRun(row=row, n_params=n_params_int, n_tokens=n_tokens_int, losses=losses, mix=mix,
                             flops=float(flops), seed=seed, n_unique_tokens=unique))
    return RunTable(path=path, sha256=sha, runs=tuple(runs))
