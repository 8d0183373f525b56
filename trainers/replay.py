"""The replay backend: answer each proposed run with the nearest unused run of a finished table.

    backend: {name: replay, table: ladder.csv, max_distance: 1.0}

It turns any finished ladder (last quarter's sweep, a published table) into a benchmark of the loop: the fit
sees what was really trained there, with its real noise and its real departures from any law
(benchmarks/bench_replay.py).

Per proposed run (N, D, mix), `run` returns the table run (trainers/run_table.py) that

- lies inside the study's bounds (N, D, D/N and the FLOP range, and at the study's fixed mix),
- has not been returned to any run of this study before, and
- is nearest in  distance² = (ln N' - ln N)² + (ln D' - ln D)² + Σ_d (m'_d - m_d)²,  within `max_distance`,

reporting that run's own N, D, mix and losses (so a result's N and D differ from the spec's) and its FLOPs
(the table's `flops` column, else 6·N'·D'). When no unused run is near enough the run fails, with one line
saying so and 0 FLOPs; the Study passes the point to the proposer as seen, so that it moves on
(scheduler/study.py).

Never twice: a table run is claimed by creating `<runs dir>/.replay-claims/<key>` exclusively (O_EXCL, atomic
on a POSIX file system; `<runs dir>` is the directory holding every run's directory, `<study_dir>/runs`), whose
content is the claiming run's id; the claim is then written to `<run_dir>/replay.json`. A re-dispatched run (same
run_id, after a crash or a resume) finds its own claim and returns the same table run; concurrent runs on other
actors claim different ones. Keys are content hashes (TableRun.key), so a table edited between resumes still never
returns one run twice.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, PrivateAttr

from skillscale.atomic import atomic_write_json
from skillscale.config_types import Number
from skillscale.errors import InputError
from trainers.capabilities import BackendConfigBase
from trainers.run_table import RunTable, TableRun, read_run_table
from trainers.spec import RunResult, RunSpec

CLAIMS_DIR = ".replay-claims"  # under the directory that holds the runs' directories
CLAIM_FILE = "replay.json"  # in a run's own directory: the table run it was answered with


@dataclass(frozen=True)
class ReplayRegion:
    """What of the table a study may use: its skills and domains, its fixed mix (None: a simplex) and its
    bounds on N, D, D/N and C (None: no bound). Set from the study config (StudyConfig validation)."""

    skills: tuple[str, ...]
    domains: tuple[str, ...]
    fixed_mix: dict[str, float] | None
    n_params: tuple[float, float]
    n_tokens: tuple[float, float]
    tokens_per_param: tuple[float, float] | None = None
    flops: tuple[float, float] | None = None

    def contains(self, run: TableRun) -> bool:
        inside = lambda x, bounds: bounds is None or bounds[0] <= x <= bounds[1]  # noqa: E731
        return (inside(run.n_params, self.n_params) and inside(run.n_tokens, self.n_tokens)
                and inside(run.n_tokens / run.n_params, self.tokens_per_param) and inside(run.flops, self.flops))


class ReplayConfig(BackendConfigBase):
    """`backend: {name: replay, table: PATH}`: answer each run from a finished table (see the module docstring)."""

    name: Literal["replay"] = Field(description="selects this backend")
    table: str = Field(min_length=1, description="CSV or parquet of finished runs (trainers/run_table.py): n_params, "
                                                 "n_tokens, loss/<skill> (or loss), optional mix/<domain>")
    max_distance: Number = Field(default=1.0, gt=0, description="largest distance, in ln N, ln D and mix "
                                                                "weights, from a proposed run to the table run "
                                                                "that answers it (1.0: e.g. N within a factor e)")
    _region: ReplayRegion | None = PrivateAttr(default=None)  # set by for_study, not part of the YAML

    def for_study(self, study) -> ReplayConfig:
        """This config, knowing the study's skills, domains and bounds (StudyConfig validation calls it with
        itself; trainers/ does not import scheduler/, so `study` is read by its fields)."""
        pair = lambda r: (float(r.lo), float(r.hi)) if r is not None else None  # noqa: E731
        copy = self.model_copy()
        copy._region = ReplayRegion(
            skills=tuple(study.skills), domains=tuple(study.domains),
            fixed_mix=dict(study.mix.fixed) if study.mix.space == "fixed" else None,
            n_params=pair(study.n_params), n_tokens=pair(study.n_tokens),
            tokens_per_param=pair(study.tokens_per_param), flops=pair(study.flops))
        return copy

    @property
    def region(self) -> ReplayRegion:
        if self._region is None:
            raise InputError("backend: the replay backend needs the study's bounds (load it through a study config)")
        return self._region

    def read_table(self) -> RunTable:
        region = self.region
        return read_run_table(self.table, list(region.skills), list(region.domains), region.fixed_mix,
                              field="backend.table")

    def build(self) -> ReplayBackend:
        return ReplayBackend(self)

    def check(self, skills: list[str], spec: RunSpec) -> None:
        """Before a study starts: the table reads, has every skill, and holds runs inside the study's bounds."""
        table = self.read_table()
        if not any(self.region.contains(run) for run in table.runs):
            raise InputError(f"backend.table: none of the {len(table.runs)} runs of {self.table} lies inside the "
                             "study's n_params, n_tokens, tokens_per_param and flops bounds")


class ReplayBackend:
    """Backend (trainers.backend) answering runs from a table; see the module docstring. Holds the table once read."""

    def __init__(self, config: ReplayConfig):
        self.config = config
        self._table: RunTable | None = None

    @property
    def table(self) -> RunTable:
        if self._table is None:
            self._table = self.config.read_table()
        return self._table

    def run(self, spec: RunSpec, run_dir: Path) -> RunResult:
        run_dir = Path(run_dir)
        start = time.perf_counter()
        by_key = {run.key(): run for run in self.table.runs}
        claims = run_dir.parent / CLAIMS_DIR
        own = self._own_claim(run_dir, claims, spec.run_id)
        if own is not None and own in by_key:
            return self._result(spec, by_key[own], time.perf_counter() - start)
        region = self.config.region
        candidates = [run for run in self.table.runs if region.contains(run)]
        distance = np.array([self._distance(spec, run) for run in candidates])
        claims.mkdir(parents=True, exist_ok=True)
        for i in np.argsort(distance, kind="stable"):
            if distance[i] > self.config.max_distance:
                break
            run = candidates[i]
            try:
                fd = os.open(claims / run.key(), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                continue  # returned to another run already
            with os.fdopen(fd, "w") as handle:
                handle.write(spec.run_id)
                handle.flush()
                os.fsync(handle.fileno())
            atomic_write_json(run_dir / CLAIM_FILE, {"key": run.key(), "row": run.row, "table": self.table.path,
                                                     "table_sha256": self.table.sha256})
            return self._result(spec, run, time.perf_counter() - start)
        used = sum(1 for run in candidates if (claims / run.key()).exists())
        reason = (f"replay: no unused run of {self.table.path} within distance {self.config.max_distance:g} of "
                  f"N={spec.n_params:.3g}, D={spec.n_tokens:.3g} ({used} of the {len(candidates)} runs inside the "
                  "bounds used)")
        return RunResult(run_id=spec.run_id, status="failed", n_params=spec.n_params, n_tokens=spec.n_tokens,
                         flops=0.0, losses={s: math.nan for s in region.skills}, error=reason,
                         wall_s=time.perf_counter() - start, shape={"replay": True})

    def _distance(self, spec: RunSpec, run: TableRun) -> float:
        mix = sum((run.mix.get(d, 0.0) - spec.mix.get(d, 0.0)) ** 2 for d in self.config.region.domains)
        return math.sqrt(math.log(run.n_params / spec.n_params) ** 2 + math.log(run.n_tokens / spec.n_tokens) ** 2
                         + mix)

    @staticmethod
    def _own_claim(run_dir: Path, claims: Path, run_id: str) -> str | None:
        """The key of the table run this run was answered with before (a re-dispatch), else None."""
        path = run_dir / CLAIM_FILE
        if path.exists():
            try:
                return str(json.loads(path.read_text())["key"])
            except (OSError, ValueError, KeyError):
                pass  # torn by a crash before the atomic write existed: look among the claims
        if claims.is_dir():
            for claim in claims.iterdir():
                try:
                    if claim.read_text() == run_id:
                        return claim.name
                except OSError:
                    continue
        return None

    def _result(self, spec: RunSpec, run: TableRun, wall_s: float) -> RunResult:
        return RunResult(run_id=spec.run_id, status="ok", n_params=run.n_params, n_tokens=run.n_tokens,
                         flops=run.flops, losses=dict(run.losses), mix=dict(run.mix), wall_s=wall_s,
                         shape={"replay_row": run.row, "replay_key": run.key()})
