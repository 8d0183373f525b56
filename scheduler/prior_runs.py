"""Prior runs: a study that starts from the runs a team already has (`prior_runs: PATH` in the study config).

    prior_runs: runs/last-quarter.csv      # n_params, n_tokens, loss/<skill> (or loss), optional mix/<domain>,
                                           # seed, n_unique_tokens, flops (trainers/run_table.py)

The file's runs enter the ledger once, before the study's first proposal, as rows with `source: prior` and
`prior_sha256` (the file's hash): they count in every fit and in the seed design's count, are never proposed or
trained again, and are not charged to `compute_cap` (Ledger.flops_spent leaves them out; Ledger.flops_prior
reports them apart). The file's hash is frozen into study.yaml, so a resume with a changed file is refused like
any other change to the config. A bad row is refused before Ray starts, in one line naming the file, the row and
the column (InputError, exit 2).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from pydantic import Field, model_validator

from scheduler.ledger import SOURCE_PRIOR
from skillscale.config_types import ConfigModel
from trainers.run_table import RunTable, file_sha256, read_run_table


class PriorRunsConfig(ConfigModel):
    """`prior_runs: PATH` (or `{path: PATH}`): runs the study starts from (see the module docstring)."""

    path: str = Field(min_length=1, description="CSV or parquet of finished runs (trainers/run_table.py)")
    sha256: str | None = Field(default=None, description="written, not read: the file's hash as frozen into "
                                                         "study.yaml, so that a resume with a changed file is refused")

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value

    def read(self, skills: list[str], domains: list[str], fixed_mix: dict[str, float] | None) -> RunTable:
        """The runs, validated against the study's skills, domains and fixed mix (InputError naming file, row
        and column); StudyConfig.prior_table() passes them."""
        return read_run_table(self.path, skills, domains, fixed_mix, field="prior_runs")

    def frozen(self) -> dict:
        """What study.yaml keeps: the path and the hash of the file as it is now."""
        return {"path": self.path, "sha256": file_sha256(self.path, "prior_runs")}


def is_prior(row: dict) -> bool:
    """Whether a ledger row is a prior run (not trained by the study)."""
    return row.get("source") == SOURCE_PRIOR


def prior_ledger_rows(table: RunTable, domains: list[str]) -> list[dict]:
    """The ledger rows of a table's runs (scheduler/ledger.py columns, plus source, prior_sha256, prior_row and
    n_unique_tokens). A run's id is `prior-` and a hash of the file's hash and its row, so it is the same on every
    resume and never collides with a trained run's id."""
    rows = []
    for run in table.runs:
        run_id = "prior-" + hashlib.sha256(f"{table.sha256}:{run.row}".encode()).hexdigest()[:12]
        rows.append({
            "run_id": run_id, "trial_number": -1, "status": "ok", "source": SOURCE_PRIOR,
            "prior_sha256": table.sha256, "prior_row": run.row,
            "seed": int(run.seed) if run.seed is not None else -1, "family_id": "", "branch": -1, "error": "",
            "requested_n_params": run.n_params, "n_params": run.n_params, "n_tokens": run.n_tokens,
            "flops": float(run.flops),
            **{f"mix/{d}": float(run.mix.get(d, 0.0)) for d in sorted(domains)},
            **{f"loss/{s}": float(v) for s, v in sorted(run.losses.items())},
            "n_unique_tokens": float(run.n_unique_tokens) if run.n_unique_tokens is not None else math.nan,
            "wall_s": 0.0, "tokens_per_s": 0.0, "mfu": 0.0, "tries": 0, "finished_at": 0.0,
        })
    return rows
