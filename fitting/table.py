"""A table of finished runs, read from CSV or parquet, validated, and fitted per skill.

Columns (one row per run and skill, "long" format):

    n_params   parameters N (fitting/conventions.py says which ones count)      required, > 0
    n_tokens   training tokens D                                                 required, > 0
    loss       validation loss of `skill` in nats per token                      required, > 0
    skill      which skill the loss is for                                       optional, default "all"
    flops      training compute C                                                optional, default 6 N D
    run_id     identity of the run (rows of one run share it)                    optional, default (N, D, mix)
    mix/<dom>  training-mix weight of domain <dom>                               optional (ignored if constant)
    n_unique_tokens  unique tokens the run's data held (repeated data: D > U)     optional, for data_constrained

A study's own ledger (`<study_dir>/runs.parquet`, "wide": one row per run with a `loss/<skill>` column per
skill and a `status`) is read too: each run gives one row per skill, and runs whose status is not "ok"
(diverged, failed) are left out, as the study's own fits leave them out.

A law is fitted only where the data can determine it: a skill needs more distinct (N, D[, mix]) points
than the law has parameters, and at least MIN_DISTINCT distinct N and distinct D (with fewer, N^-alpha or
D^-beta is a constant that E absorbs); 30 copies of one run are one point, not 30.

Every problem a user can fix raises skillscale.errors.InputError("<file>: <what is wrong>"), which the CLI
prints as one line with exit status 2.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from fitting.averaging import AUTO, AveragedFit, FamilyScore, bootstrap_average, fit_average
from fitting.conventions import FLOPS_PER_PARAM_TOKEN
from fitting.law import LawEnsemble
from fitting.parametric import (
    ParametricFit,
    bootstrap_parametric,
    fit_parametric,
)
from skillscale.errors import InputError

REQUIRED = ("n_params", "n_tokens", "loss")
MIX_PREFIX = "mix/"
LOSS_PREFIX = "loss/"  # a study ledger's per-skill loss columns
UNIQUE = "n_unique_tokens"
N_LAW_PARAMS = 5
MIN_DISTINCT = 3  # distinct N and distinct D values a skill needs (see the module docstring)


@dataclass(frozen=True)
class RunsTable:
    """Validated runs; every array has one entry per row."""

    path: str
    n_params: np.ndarray
    n_tokens: np.ndarray
    flops: np.ndarray
    loss: np.ndarray
    skill: np.ndarray  # (rows,) str
    run_index: np.ndarray  # (rows,) int in [0, n_runs): rows of one run share it
    mix: np.ndarray | None = None  # (rows, n_domains)
    domains: tuple[str, ...] = ()
    unique: np.ndarray | None = None  # (rows,) unique tokens per run (inf: never repeated)

    @property
    def skills(self) -> list[str]:
        return list(dict.fromkeys(self.skill.tolist()))

    @property
    def n_runs(self) -> int:
        return int(self.run_index.max()) + 1

    def rows(self, skill: str) -> np.ndarray:
        return np.flatnonzero(self.skill == skill)

    def own_domain(self, skill: str) -> str | None:
        """The mix domain a skill's transfer vector is anchored to (t_own = 1); None: plain law."""
        return skill if self.mix is not None and skill in self.domains else None

    def without_top(self, k: int) -> RunsTable:
        """The table without each skill's k highest-loss rows (often the smallest, least law-like runs)."""
        drop = np.concatenate([self.rows(s)[np.argsort(-self.loss[self.rows(s)], kind="stable")[:k]]
                               for s in self.skills])
        keep = np.setdiff1d(np.arange(self.loss.size), drop)
        take = lambda x: None if x is None else x[keep]  # noqa: E731
        return dataclasses.replace(self, n_params=self.n_params[keep], n_tokens=self.n_tokens[keep],
                                   flops=self.flops[keep], loss=self.loss[keep], skill=self.skill[keep],
                                   run_index=self.run_index[keep], mix=take(self.mix), unique=take(self.unique))

    def skill_arrays(self, skill: str) -> dict:
        """Keyword arguments for fit_parametric / bootstrap_parametric for one skill."""
        r = self.rows(skill)
        own = self.own_domain(skill)
        out = {"n_params": self.n_params[r], "n_tokens": self.n_tokens[r], "loss": self.loss[r]}
        if own is not None:
            out.update(mix=self.mix[r], domains=self.domains, own_domain=own)
        if self.unique is not None:
            out["unique"] = self.unique[r]
        return out


def _read(path: str):
    import pyarrow as pa

    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    try:
        if path.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            return pq.read_table(path)
        import pyarrow.csv as pcsv

        return pcsv.read_csv(path)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot read as {'parquet' if path.endswith('.parquet') else 'CSV'} "
                         f"({first})") from None


def _long_from_ledger(table, path: str):
    """A study ledger (one row per run, `loss/<skill>` columns) as one row per (run, skill), ok runs only."""
    import pyarrow as pa
    import pyarrow.compute as pc

    skills = [c[len(LOSS_PREFIX):] for c in table.column_names if c.startswith(LOSS_PREFIX)]
    if "status" in table.column_names:
        table = table.filter(pc.equal(table.column("status"), "ok"))
    if table.num_rows == 0:
        raise InputError(f"{path}: no runs with status 'ok' to fit")
    keep = [c for c in ("n_params", "n_tokens", "flops", "run_id", UNIQUE) if c in table.column_names]
    keep += [c for c in table.column_names if c.startswith(MIX_PREFIX)]
    parts = []
    for skill in skills:
        part = table.select(keep).append_column("loss", table.column(LOSS_PREFIX + skill))
        parts.append(part.append_column("skill", pa.array([skill] * table.num_rows, pa.string())))
    return pa.concat_tables(parts)


def _numeric(table, name: str, path: str) -> np.ndarray:
    col = table.column(name)
    try:
        values = np.asarray(col.to_numpy(zero_copy_only=False), dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{path}: column {name!r} must be numeric (got {col.type})") from None
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise InputError(f"{path}: column {name!r} has NaN/inf/empty values (first at row {bad[0] + 1})")
    return values


def load_runs(path) -> RunsTable:
    """Read and validate a runs table (CSV, or parquet by extension .parquet/.pq)."""
    path = os.fspath(path)
    table = _read(path)
    if "loss" not in table.column_names and any(c.startswith(LOSS_PREFIX) for c in table.column_names):
        table = _long_from_ledger(table, path)
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; need {', '.join(REQUIRED)}")
    if table.num_rows == 0:
        raise InputError(f"{path}: no rows")
    values = {c: _numeric(table, c, path) for c in REQUIRED}
    for c in REQUIRED:
        bad = np.flatnonzero(values[c] <= 0)
        if bad.size:
            raise InputError(f"{path}: column {c!r} must be positive; "
                             f"row {bad[0] + 1} has {values[c][bad[0]]:g}")
    flops = (_numeric(table, "flops", path) if "flops" in table.column_names
             else FLOPS_PER_PARAM_TOKEN * values["n_params"] * values["n_tokens"])
    if np.any(flops <= 0):
        raise InputError(f"{path}: column 'flops' must be positive")
    skill = (np.array([str(s) for s in table.column("skill").to_pylist()]) if "skill" in table.column_names
             else np.full(table.num_rows, "all"))
    domains = tuple(c[len(MIX_PREFIX):] for c in table.column_names if c.startswith(MIX_PREFIX))
    mix = None
    if domains:
        mix = np.stack([_numeric(table, MIX_PREFIX + d, path) for d in domains], axis=1)
        if np.any(mix < 0) or np.any(np.abs(mix.sum(1) - 1) > 1e-3):
            raise InputError(f"{path}: mix/* columns must be non-negative and sum to 1 in every row")
        if np.all(np.abs(mix - mix[0]) < 1e-9):  # one mix for every run (a fixed-mix study): no transfer to fit
            mix, domains = None, ()
    if "run_id" in table.column_names:
        keys = [str(k) for k in table.column("run_id").to_pylist()]
    else:
        parts = [values["n_params"], values["n_tokens"]] + ([mix[:, j] for j in range(mix.shape[1])]
                                                            if mix is not None else [])
        keys = list(zip(*[p.tolist() for p in parts], strict=True))
    run_ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    run_index = np.array([run_ids[k] for k in keys])
    unique = None
    if UNIQUE in table.column_names:
        unique = _numeric(table, UNIQUE, path)
        bad = np.flatnonzero(unique <= 0)
        if bad.size:
            raise InputError(f"{path}: column {UNIQUE!r} must be positive; row {bad[0] + 1} has {unique[bad[0]]:g}")
    runs = RunsTable(path, values["n_params"], values["n_tokens"], flops, values["loss"], skill, run_index,
                     mix, domains, unique)
    for s in runs.skills:
        _check_identifiable(runs, s)
    return runs


def _check_identifiable(runs: RunsTable, skill: str) -> None:
    """InputError unless `skill`'s rows can determine its law (see the module docstring)."""
    r = runs.rows(skill)
    n_par = N_LAW_PARAMS + (len(runs.domains) - 1 if runs.own_domain(skill) else 0)
    columns = [runs.n_params[r], runs.n_tokens[r]] + ([runs.mix[r]] if runs.mix is not None else [])
    points = np.unique(np.column_stack(columns), axis=0).shape[0]
    n_distinct, d_distinct = np.unique(runs.n_params[r]).size, np.unique(runs.n_tokens[r]).size
    if points <= n_par or min(n_distinct, d_distinct) < MIN_DISTINCT:
        raise InputError(f"{runs.path}: skill {skill!r}: the law is not identifiable from {r.size} rows at "
                         f"{points} distinct (N, D) points ({n_distinct} distinct N, {d_distinct} distinct D), "
                         f"fewer than needed to fit {n_par} law parameters (at least {n_par + 1} distinct points, "
                         f"{MIN_DISTINCT} distinct N and {MIN_DISTINCT} distinct D)")


def fit_skills(table: RunsTable, *, exclude_top: int = 0,
               huber_delta: float = 1e-3) -> dict[str, ParametricFit]:
    """Point estimate of every skill's law."""
    return {s: fit_parametric(**table.skill_arrays(s), exclude_top=exclude_top, huber_delta=huber_delta)
            for s in table.skills}


def bootstrap_skills(table: RunsTable, n_boot: int, seed: int, *, exclude_top: int = 0,
                     huber_delta: float = 1e-3, method: str = "residual",
                     fits: dict[str, ParametricFit] | None = None) -> dict[str, LawEnsemble]:
    """One ensemble per skill; member k of every skill is refit on the SAME resample k of runs.

    Runs (not rows) are drawn with replacement, so a run's losses on all skills enter or leave a resample
    together (pairs) or lend their residuals together (residual), and a composition of skills can be
    evaluated member by member. A skill without a row for a drawn run keeps its own row in that slot.
    """
    rng = np.random.default_rng(seed)
    run_draws = rng.integers(0, table.n_runs, size=(n_boot, table.n_runs))  # (K, n_runs)
    fits = fits or fit_skills(table, exclude_top=exclude_top, huber_delta=huber_delta)
    out = {}
    for s in table.skills:
        out[s] = bootstrap_parametric(**table.skill_arrays(s), n_boot=n_boot, exclude_top=exclude_top,
                                      huber_delta=huber_delta, resamples=_skill_resamples(table, s, run_draws),
                                      method=method, fit=fits[s])
    return out


def fit_skill_laws(table: RunsTable, law: str = AUTO, *, huber_delta: float = 1e-3) -> dict[str, AveragedFit]:
    """Every skill's law: the weighted families (`auto`) or one named family, as an AveragedFit each."""
    out = {}
    for s in table.skills:
        if law == AUTO:
            out[s] = fit_average(**table.skill_arrays(s), huber_delta=huber_delta)
        else:
            fit = fit_parametric(**table.skill_arrays(s), huber_delta=huber_delta, family=law)
            out[s] = AveragedFit({law: fit}, {law: FamilyScore(law, 1.0, None, None, None, "chosen with --law")})
    return out


def bootstrap_skill_laws(table: RunsTable, averages: dict[str, AveragedFit], n_boot: int, seed: int, *,
                         huber_delta: float = 1e-3, method: str = "residual") -> dict:
    """One ensemble per skill, drawn from its families by weight; member k of every skill used the same
    resample k of runs (as `bootstrap_skills` does)."""
    rng = np.random.default_rng(seed)
    run_draws = rng.integers(0, table.n_runs, size=(n_boot, table.n_runs))
    out = {}
    for s in table.skills:
        out[s] = bootstrap_average(averages[s], **table.skill_arrays(s), n_boot=n_boot, huber_delta=huber_delta,
                                   seed=seed, resamples=_skill_resamples(table, s, run_draws), method=method)
    return out


def _skill_resamples(table: RunsTable, skill: str, run_draws: np.ndarray) -> np.ndarray:
    """Run draws (K, n_runs) as indices among one skill's rows; a run without a row keeps the slot's own row."""
    rows = table.rows(skill)
    row_of_run = np.full(table.n_runs, -1)
    row_of_run[table.run_index[rows]] = np.arange(rows.size)
    resamples = row_of_run[run_draws[:, table.run_index[rows]]]
    return np.where(resamples >= 0, resamples, np.arange(rows.size)[None, :])


def load_plan(path, runs: RunsTable) -> dict:
    """Read a plan of runs to predict (CSV or parquet): n_params, n_tokens, and optionally skill,
    n_unique_tokens and the runs table's mix/<domain> columns. Arrays keyed as `predict_report` takes them."""
    path = os.fspath(path)
    table = _read(path)
    missing = [c for c in ("n_params", "n_tokens") if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; a plan needs n_params, n_tokens")
    if table.num_rows == 0:
        raise InputError(f"{path}: no rows")
    plan = {c: _numeric(table, c, path) for c in ("n_params", "n_tokens")}
    for c, values in plan.items():
        bad = np.flatnonzero(values <= 0)
        if bad.size:
            raise InputError(f"{path}: column {c!r} must be positive; row {bad[0] + 1} has {values[bad[0]]:g}")
    plan["skill"] = None
    if "skill" in table.column_names:
        plan["skill"] = np.array([str(x) for x in table.column("skill").to_pylist()])
        unknown = sorted(set(plan["skill"].tolist()) - set(runs.skills))
        if unknown:
            raise InputError(f"{path}: column 'skill' names {unknown[0]!r}, which the runs do not have "
                             f"(skills: {', '.join(runs.skills)})")
    plan["unique"] = _numeric(table, UNIQUE, path) if UNIQUE in table.column_names else None
    plan["mix"] = None
    if runs.mix is not None:
        absent = [d for d in runs.domains if MIX_PREFIX + d not in table.column_names]
        if absent:
            raise InputError(f"{path}: missing column {MIX_PREFIX + absent[0]!r}: the runs' laws depend on the mix")
        plan["mix"] = np.stack([_numeric(table, MIX_PREFIX + d, path) for d in runs.domains], axis=1)
    return plan
