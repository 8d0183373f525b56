"""Compute-to-precision benchmark of the scheduler: adaptive proposals vs isoFLOP grids, random search and TPE.

    python benchmarks/bench_scheduler.py --truth chinchilla besiroglu knowledge-code --seeds 10 \
        --concurrency 1 4 16 --json benchmarks/results/scheduler.json --plot docs/bench_scheduler.png

Every strategy drives the same `scheduler.Study` the controller drives (its ledger, Optuna study, refits and
stop rule), in memory, on the simulated backend (no Ray, no sleep). Concurrency k is simulated on a clock:
k workers, a run's duration proportional to its FLOPs plus the per-run overhead the proposer assumes; a heap
of finish events pops the next run to finish, which is recorded (refit, stop rule) before the freed worker
gets a new proposal, chosen with the other runs still in flight. When the study stops, the runs in flight
are abandoned and the FLOPs they had spent so far are counted.

The question (issue #7): how many training FLOPs does each strategy spend before the 95% interval of
N*(C_target) is within ±`TOLERANCE` of its estimate for every target AND the estimate is within
`TOLERANCE` of the truth? FLOPs are 6·N·D of the runs only. The adaptive proposer additionally assumes a
fixed per-run cost (`overhead_flops`, 2e16 here: about a minute of an H100 at 40% MFU) when it ranks
candidates; that cost is not counted.

Strategies (STRATEGIES: one function per strategy), on the same truths and noise seeds (a run's noise is
drawn from (seed, run_id), so the same point gets the same noise under every strategy):
- grid-BxS: the isoFLOP protocol (Hoffmann et al. 2022 Approach 2; arXiv:2503.10061): B log-spaced budgets,
  S log-spaced sizes per budget within ±`GRID_SPAN_DECADES` of a 20-tokens-per-parameter guess; parabola
  minima -> N* = k C^a -> C_target; 95% CI by the stratified bootstrap of fitting.isoflop. It reaches
  tolerance iff its final reading does; its FLOPs are the whole grid's. `grid-...-parametric` reads the
  same runs with the Study's parametric refit.
- random: log-uniform C, then log-uniform N within the feasible range (the proposer's candidate space,
  scheduler.proposer.SearchSpace); the Study's refit and stop rule, checked after every run up to
  `DENSE_REFIT_RUNS` runs and then every ~n/15 runs (refits are what the benchmark's time goes into).
- tpe: Optuna's TPESampler minimising the mean loss over skills, out of the box, on the Study's own
  distributions (log10 N, log10 D; D clipped into the per-run FLOP bounds); refit and stop as random.
- adaptive: the Study's own proposals at each concurrency, on the simulated clock.

A benchmark is a list of cells (Cell: strategy, truth, noise, seed and the strategy's argument, a grid or a
concurrency), built by `cells(bench)` from a BenchConfig; each cell yields Traces, summarised per (truth,
noise, strategy, concurrency). A new truth is a preset in trainers/simulated.py; a new strategy is a function
`run_<name>(cfg, cell, truth_n) -> list[Trace]` added to STRATEGIES.
"""

from __future__ import annotations

import argparse
import heapq
import io
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from fitting.conventions import FLOPS_PER_PARAM_TOKEN
from fitting.isoflop import bootstrap_isoflop, fit_isoflop
from fitting.law import interval
from scheduler.config import StudyConfig, parse_study_config
from scheduler.estimates import derived_seed, single_member, target_optimum
from scheduler.proposer import Point
from scheduler.study import Study, StudyStatus
from skillscale.atomic import atomic_write_bytes, atomic_write_text
from skillscale.errors import InputError, OneLineArgumentParser
from trainers.simulated import PRESETS

TOLERANCE = 0.10  # relative 95% half-width of N*(C_target), and the allowed relative error vs truth
C_TARGET = 1e21  # FLOPs; 100x the largest run
GRID_SPAN_DECADES = 0.8  # sizes per budget span guess x 10^(±0.8)
TOKENS_PER_PARAM_GUESS = 20.0  # Hoffmann et al. 2022: the grid is centred on D = 20 N
ISOFLOP_BOOT = 200
MAX_RUNS = 600  # safety stop for sequential strategies (the FLOP cap normally binds first)
DENSE_REFIT_RUNS = 30  # random/tpe: check the stop rule after every run up to this many, then every ~n/15
NO_RUN_DIR = Path(".")  # the simulated backend writes nothing without a sleep


@dataclass(frozen=True)
class GridSpec:
    """An isoFLOP grid: `n_budgets` log-spaced budgets in [c_lo, c_hi], `n_sizes` sizes per budget."""

    name: str
    n_budgets: int
    n_sizes: int
    c_lo: float = 1e17
    c_hi: float = 1e19


GRIDS = (GridSpec("grid-3x5", 3, 5), GridSpec("grid-4x7", 4, 7), GridSpec("grid-5x9", 5, 9),
         GridSpec("grid-4x7-lo", 4, 7, 1e16, 1e18), GridSpec("grid-8x15", 8, 15),
         GridSpec("grid-12x20", 12, 20), GridSpec("grid-16x30", 16, 30))


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark invocation: which cells to run and the study settings they share."""

    truths: tuple[str, ...] = ("chinchilla", "besiroglu", "knowledge-code")
    seeds: int = 10
    concurrency: tuple[int, ...] = (1, 4, 16)
    strategies: tuple[str, ...] = ("grid", "random", "tpe", "adaptive")
    grids: tuple[GridSpec, ...] = GRIDS
    noise: tuple[float, ...] = (0.005,)  # log-normal loss noise levels (one set of cells each)
    max_flops: float = 3e20  # total FLOP cap per sequential strategy
    n_boot: int = 100
    inner_trials: int = 16
    n_candidates: int = 512
    overhead_flops: float = 2e16
    seed_runs: int = 12
    c_target: float = C_TARGET
    first_seed: int = 0


@dataclass(frozen=True)
class Cell:
    """One unit of work: a strategy on one truth, noise level and seed (`grid` for grids, `concurrency` for
    adaptive)."""

    strategy: str
    truth: str
    noise: float
    seed: int
    grid: GridSpec | None = None
    concurrency: int = 1


@dataclass
class Trace:
    """One strategy on one truth and seed: the error/half-width curve and the verdict."""

    truth: str
    strategy: str
    concurrency: int
    seed: int
    flops: list[float] = field(default_factory=list)  # cumulative 6ND at each reading
    rel_error: list[float] = field(default_factory=list)  # max over targets |N_hat / N_true - 1|
    halfwidth: list[float] = field(default_factory=list)  # max over targets of the relative 95% half-width
    covered: list[bool] = field(default_factory=list)  # every target's CI contains the truth
    n_runs: int = 0
    stop: str = ""
    seconds: float = 0.0
    noise: float = 0.005

    @property
    def reached(self) -> bool:
        return bool(self.flops) and self.halfwidth[-1] <= TOLERANCE and self.rel_error[-1] <= TOLERANCE

    @property
    def flops_to_tolerance(self) -> float | None:
        return self.flops[-1] if self.reached else None

    def to_dict(self) -> dict:
        return {"truth": self.truth, "strategy": self.strategy, "concurrency": self.concurrency, "seed": self.seed,
                "noise": self.noise, "flops": self.flops, "rel_error": self.rel_error, "halfwidth": self.halfwidth,
                "covered": self.covered, "n_runs": self.n_runs, "stop": self.stop, "seconds": self.seconds,
                "reached": self.reached}


# ------------------------------------------------------------------------------------------- setup
def study_config(truth: str, seed: int, bench: BenchConfig, concurrency: int = 1,
                 noise: float | None = None) -> StudyConfig:
    """The study a researcher would write for this truth (configs/quickstart.yaml as the template)."""
    if truth not in PRESETS:
        raise InputError(f"--truth: unknown preset {truth!r} (presets: {', '.join(PRESETS)})")
    if truth == "knowledge-code":
        skills, domains = ["knowledge", "code"], ["knowledge", "code", "general"]
        fixed = {"knowledge": 0.4, "code": 0.4, "general": 0.2}
        targets = [{"name": "knowledge", "weights": {"knowledge": 1.0}, "flops": bench.c_target},
                   {"name": "code", "weights": {"code": 1.0}, "flops": bench.c_target},
                   {"name": "half-half", "weights": {"knowledge": 0.5, "code": 0.5}, "flops": bench.c_target}]
    else:
        skills, domains, fixed = ["all"], ["all"], {"all": 1.0}
        targets = [{"name": "all", "weights": {"all": 1.0}, "flops": bench.c_target}]
    return parse_study_config({
        "name": f"bench-{truth}-{seed}", "skills": skills, "domains": domains,
        "mix": {"space": "fixed", "fixed": fixed},
        "n_params": [1e7, 3e9], "n_tokens": [1e8, 1e11], "flops": [1e16, 1e19],
        "targets": targets, "tolerance": TOLERANCE, "compute_cap": bench.max_flops,
        "max_concurrent": concurrency, "max_runs": MAX_RUNS,
        "law": "chinchilla",  # strategies compared under one fit, in Chinchilla-form worlds (bench_realistic: auto)
        "backend": {"name": "simulated", "truth": truth, "noise": bench.noise[0] if noise is None else noise},
        "proposer": {"n_boot": bench.n_boot, "overhead_flops": bench.overhead_flops, "seed_runs": bench.seed_runs,
                     "inner_trials": bench.inner_trials, "n_candidates": bench.n_candidates},
        "seed": seed,
    }, source="bench study")


def true_optima(cfg: StudyConfig, truth: str) -> np.ndarray:
    """(T,) true N*(C_target) per target: the preset laws' optimum (the Study's target_optimum) at the target's
    mix."""
    domains = tuple(cfg.domains)
    ensembles = {s: single_member(law, domains if law.transfer is not None else ())
                 for s, law in PRESETS[truth].items()}
    return np.array([float(target_optimum(ensembles, cfg, t, mix=cfg.target_mix(t))[0][0]) for t in cfg.targets])


def _judge(trace: Trace, flops: float, n_hat: np.ndarray, ci: np.ndarray, truth_n: np.ndarray) -> None:
    """Append one reading: n_hat (T,), ci (T, 2) against truth_n (T,)."""
    trace.flops.append(float(flops))
    trace.rel_error.append(float(np.max(np.abs(n_hat / truth_n - 1.0))))
    trace.halfwidth.append(float(np.max((ci[:, 1] - ci[:, 0]) / (2 * n_hat))))
    trace.covered.append(bool(np.all((ci[:, 0] <= truth_n) & (truth_n <= ci[:, 1]))))


def _judge_status(trace: Trace, flops: float, status: StudyStatus, truth_n: np.ndarray) -> None:
    """Record the Study's current estimates (nothing while its laws are not yet fitted)."""
    if status.targets:
        _judge(trace, flops, np.array([t.n_params for t in status.targets]),
               np.array([t.n_params_ci95 for t in status.targets]), truth_n)


def _open(cfg: StudyConfig) -> tuple[Study, object]:
    """An in-memory Study and the simulated backend of its config."""
    study = Study(cfg)
    study.reconcile()
    return study, cfg.backend.build()


def _train(study: Study, backend, spec, refit_now: bool = True) -> None:
    study.record(spec, backend.run(spec, NO_RUN_DIR), refit_now=refit_now)


# --------------------------------------------------------------------------------------- strategies
def _on_the_clock(study: Study, trace: Trace, truth_n: np.ndarray, k: int, start: float,
                  propose_units, finish) -> Trace:
    """k workers on the simulated clock: a unit (a run, or a whole family) takes its FLOPs plus the per-run overhead;
    at each finish it is recorded (`finish(unit)`), the study is judged (FLOPs of units in flight counted pro rata)
    and the free workers get `propose_units(n)`."""
    overhead = study.cfg.proposer.overhead_flops
    running: list[tuple[float, int, float, object]] = []  # heap of (finish time, trial, start time, unit)
    clock = 0.0

    def fill() -> None:
        for trial, unit in propose_units(k - len(running)):
            heapq.heappush(running, (clock + unit.flops + overhead, trial, clock, unit))

    fill()
    while running:
        clock, _, _, unit = heapq.heappop(running)
        finish(unit)
        status = study.status()
        partial = sum(u.flops * (clock - t0) / (t1 - t0) for t1, _, t0, u in running)  # spent by units in flight
        _judge_status(trace, status.flops_spent + partial, status, truth_n)
        if study.stop_reason() is not None:
            break
        fill()
    trace.stop = study.stop_reason() or "budget_exhausted"
    trace.n_runs, trace.seconds = len(study.ledger), time.perf_counter() - start
    return trace


def run_adaptive(cfg: StudyConfig, truth: str, seed: int, k: int, truth_n: np.ndarray) -> Trace:
    """The Study's proposals at concurrency k on the simulated clock (module docstring)."""
    trace, start = Trace(truth, "adaptive", k, seed, noise=cfg.backend.noise), time.perf_counter()
    study, backend = _open(cfg)
    return _on_the_clock(study, trace, truth_n, k, start,
                         lambda n: [(spec.trial_number, spec) for spec in study.propose(n)],
                         lambda spec: _train(study, backend, spec))


def run_adaptive_families(cfg: StudyConfig, truth: str, seed: int, k: int, truth_n: np.ndarray) -> Trace:
    """run_adaptive with run families (issue #17, scheduler/families.py): each of the k workers trains a whole
    family, its duration the family's true FLOPs (stable phase plus every cooldown) plus one overhead; its
    branches are recorded together when it finishes. Same truths, noise levels, seeds and stop rule; the
    simulated family's noise is correlated between its branches (trainers/simulated.py)."""
    cfg = cfg.model_copy(update={"families": cfg.families.model_copy(update={"enabled": True})})
    trace, start = Trace(truth, "adaptive-families", k, seed, noise=cfg.backend.noise), time.perf_counter()
    study, backend = _open(cfg)

    def propose_families(n: int) -> list:  # one unit per family: its branches come out of propose together
        return [(spec.trial_number, study.family_of(spec)) for spec in study.propose(n) if spec.branch == 0]

    return _on_the_clock(study, trace, truth_n, k, start, propose_families,
                         lambda family: study.record_family(backend.run_family(family, NO_RUN_DIR)))


def _sequential(cfg: StudyConfig, trace: Trace, truth_n: np.ndarray, next_point) -> Trace:
    """Train next_point(study, budget_left) one at a time through the Study until its stop rule holds, the cap
    is spent or next_point returns None."""
    study, backend = _open(cfg)
    start, last_check = time.perf_counter(), 0
    while True:
        if study.n_asked >= cfg.max_runs:
            trace.stop = "max_runs"
            break
        point = next_point(study, cfg.compute_cap - study.flops_committed)
        if point is None:
            trace.stop = "budget_exhausted"
            break
        (spec,) = study.ask([point])
        _train(study, backend, spec, refit_now=False)
        n = len(study.ledger)
        if n > DENSE_REFIT_RUNS and n - last_check < max(1, n // 15):
            continue
        last_check = n
        study.refit()
        _judge_status(trace, study.status().flops_spent, study.status(), truth_n)
        if study.stop_reason() == "converged":
            trace.stop = "converged"
            break
    spent = study.status().flops_spent
    if trace.stop != "converged" and (not trace.flops or trace.flops[-1] < spent):
        study.refit()  # a final reading of everything spent
        _judge_status(trace, spent, study.status(), truth_n)
    trace.n_runs, trace.seconds = len(study.ledger), time.perf_counter() - start
    return trace


def run_random(cfg: StudyConfig, truth: str, seed: int, truth_n: np.ndarray) -> Trace:
    rng = np.random.default_rng(derived_seed(seed, "bench-random"))

    def next_point(study: Study, budget_left: float) -> Point | None:
        max_flops = min(cfg.max_run_flops, budget_left)
        if max_flops < cfg.min_run_flops:
            return None
        space = study.space
        u = rng.random((1, space.dims))  # with a repeating target, the last coordinate places the run's epochs
        n, d, mix = space.from_unit(u, max_flops)
        return space.point(n[0], d[0], mix[0], space.unique_from_unit(u, d)[0])

    return _sequential(cfg, Trace(truth, "random", 1, seed, noise=cfg.backend.noise), truth_n, next_point)


def run_tpe(cfg: StudyConfig, truth: str, seed: int, truth_n: np.ndarray) -> Trace:
    import optuna

    sampler_study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=derived_seed(seed, "bench-tpe")))
    asked: list = []  # the trial of the previous point (trained and recorded: the ledger's last row)

    def next_point(study: Study, budget_left: float) -> Point | None:
        if asked:  # tell the previous trial its mean loss
            row = study.ledger.rows[-1]
            sampler_study.tell(asked.pop(), float(np.mean([row[f"loss/{s}"] for s in cfg.skills])))
        max_flops = min(cfg.max_run_flops, budget_left)
        if max_flops < cfg.min_run_flops:
            return None
        trial = sampler_study.ask(study.space.optuna_distributions())
        n = 10 ** trial.params["log10_n_params"]
        d = float(np.clip(10 ** trial.params["log10_n_tokens"], cfg.min_run_flops / (FLOPS_PER_PARAM_TOKEN * n),
                          max_flops / (FLOPS_PER_PARAM_TOKEN * n)))
        point = Point(int(round(n)), int(round(d)), dict(cfg.mix.fixed))
        asked.append(trial)
        return point

    return _sequential(cfg, Trace(truth, "tpe", 1, seed, noise=cfg.backend.noise), truth_n, next_point)


def grid_points(cfg: StudyConfig, grid: GridSpec) -> list[Point]:
    """The grid's runs: per budget, sizes log-spaced around D = 20 N, clipped to the N and D bounds."""
    points = []
    for c in np.geomspace(grid.c_lo, grid.c_hi, grid.n_budgets):
        guess = math.sqrt(c / (FLOPS_PER_PARAM_TOKEN * TOKENS_PER_PARAM_GUESS))
        n_lo, n_hi = cfg.n_bounds(c)
        lo = max(math.log10(guess) - GRID_SPAN_DECADES, math.log10(n_lo))
        hi = min(math.log10(guess) + GRID_SPAN_DECADES, math.log10(n_hi))
        for log_n in np.linspace(lo, hi, grid.n_sizes):
            n = int(round(10 ** log_n))
            d = min(max(round(c / (FLOPS_PER_PARAM_TOKEN * n)), int(cfg.n_tokens.lo)), int(cfg.n_tokens.hi))
            points.append(Point(n, d, dict(cfg.mix.fixed)))
    return points


def run_grid(cfg: StudyConfig, truth: str, seed: int, grid: GridSpec, truth_n: np.ndarray) -> list[Trace]:
    """The isoFLOP reading and the parametric reading of one grid."""
    start = time.perf_counter()
    study, backend = _open(cfg)
    for spec in study.ask(grid_points(cfg, grid)):
        _train(study, backend, spec, refit_now=False)
    rows = study.ledger.rows
    spent = study.status().flops_spent
    n_params = np.array([r["n_params"] for r in rows], float)
    n_tokens = np.array([r["n_tokens"] for r in rows], float)
    iso = Trace(truth, grid.name, 1, seed, n_runs=len(rows), stop="grid_done", noise=cfg.backend.noise)
    n_hat, ci = [], []
    for t in cfg.targets:  # an isoFLOP analysis of the target's validation composition Σ w_s L_s
        loss = sum(w * np.array([r[f"loss/{s}"] for r in rows]) for s, w in t.weights.items())
        point = fit_isoflop(n_params, n_tokens, loss).optimum(t.flops)[0][0]
        boot = bootstrap_isoflop(n_params, n_tokens, loss, n_boot=ISOFLOP_BOOT,
                                 seed=derived_seed(seed, "bench-isoflop", t.name)).optimum(t.flops)[0]
        n_hat.append(point)
        ci.append(interval(boot))
    _judge(iso, spent, np.array(n_hat), np.array(ci), truth_n)
    iso.seconds = time.perf_counter() - start
    par = Trace(truth, f"{grid.name}-parametric", 1, seed, n_runs=len(rows), stop="grid_done",
                noise=cfg.backend.noise)
    study.refit()
    _judge_status(par, spent, study.status(), truth_n)
    par.seconds = time.perf_counter() - start - iso.seconds
    return [iso, par]


def _grid_cell(cfg, cell, truth_n):
    return run_grid(cfg, cell.truth, cell.seed, cell.grid, truth_n)


def _random_cell(cfg, cell, truth_n):
    return [run_random(cfg, cell.truth, cell.seed, truth_n)]


def _tpe_cell(cfg, cell, truth_n):
    return [run_tpe(cfg, cell.truth, cell.seed, truth_n)]


def _adaptive_cell(cfg, cell, truth_n):
    return [run_adaptive(cfg, cell.truth, cell.seed, cell.concurrency, truth_n)]


def _adaptive_families_cell(cfg, cell, truth_n):
    return [run_adaptive_families(cfg, cell.truth, cell.seed, cell.concurrency, truth_n)]


STRATEGIES = {"grid": _grid_cell, "random": _random_cell, "tpe": _tpe_cell, "adaptive": _adaptive_cell,
              "adaptive-families": _adaptive_families_cell}


# ---------------------------------------------------------------------------------------- summary
def summarize(traces: list[Trace]) -> list[dict]:
    """One row per (truth, noise, strategy, concurrency) in the issue's schema."""
    groups: dict[tuple, list[Trace]] = {}
    for tr in traces:
        groups.setdefault((tr.truth, tr.noise, tr.strategy, tr.concurrency), []).append(tr)
    rows = []
    for (truth, noise, strategy, k), group in groups.items():
        reached = [tr.flops_to_tolerance for tr in group if tr.reached]
        errors = [tr.rel_error[-1] for tr in group if tr.rel_error]
        rows.append({
            "truth": truth, "noise": noise, "strategy": strategy, "concurrency": k, "seeds": len(group),
            "flops_to_tolerance_median": float(np.median(reached)) if reached else None,
            "flops_to_tolerance_iqr": [float(q) for q in np.percentile(reached, [25, 75])] if reached else None,
            "reached_fraction": len(reached) / len(group),
            "final_rel_error_median": float(np.median(errors)) if errors else None,
            "coverage": float(np.mean([tr.covered[-1] for tr in group if tr.covered])) if errors else None,
            "flops_spent_median": float(np.median([tr.flops[-1] for tr in group if tr.flops])) if errors else None,
            "runs_median": float(np.median([tr.n_runs for tr in group])),
            "seconds_median": float(np.median([tr.seconds for tr in group])),
        })
    return rows


def verdict(rows: list[dict]) -> list[dict]:
    """Per truth and noise: adaptive's FLOPs vs the cheapest grid reading that reaches tolerance in most seeds.

    When no grid reaches it, `meets_flops_target` is None (undecided, not passed) and the ratio to the
    most expensive grid's spend is given instead: what this family of grids spent without getting there.
    """
    out = []
    for truth, noise in dict.fromkeys((r["truth"], r.get("noise")) for r in rows):
        mine = [r for r in rows if r["truth"] == truth and r.get("noise") == noise]
        all_grids = [r for r in mine if r["strategy"].startswith("grid")]
        grids = [r for r in all_grids if r["reached_fraction"] >= 0.5 and r["flops_to_tolerance_median"] is not None]
        cheapest = min(grids, key=lambda r: r["flops_to_tolerance_median"]) if grids else None
        densest = max((r.get("flops_spent_median") or 0.0 for r in all_grids), default=0.0)
        for r in mine:
            if r["strategy"] != "adaptive":
                continue
            mine_flops = r["flops_to_tolerance_median"]
            ratio = mine_flops / cheapest["flops_to_tolerance_median"] if cheapest and mine_flops else None
            meets = ratio is not None and ratio <= 0.25 and r["reached_fraction"] >= 0.5
            out.append({"truth": truth, "noise": noise, "concurrency": r["concurrency"],
                        "cheapest_grid": cheapest["strategy"] if cheapest else None,
                        "flops_ratio_vs_cheapest_grid": ratio,
                        "flops_ratio_vs_densest_grid_spend": mine_flops / densest if mine_flops and densest else None,
                        "meets_flops_target": None if cheapest is None and all_grids else meets,
                        "coverage": r["coverage"],
                        "meets_coverage_target": r["coverage"] is not None and r["coverage"] >= 0.85})
    return out


def plot(traces: list[Trace], path: Path, tolerance: float = TOLERANCE) -> None:
    """Median (over seeds) max relative error of N*(C_target) vs FLOPs spent, one panel per truth and noise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truths = list(dict.fromkeys((tr.truth, tr.noise) for tr in traces))
    fig, axes = plt.subplots(1, len(truths), figsize=(5.5 * len(truths), 5.0), squeeze=False)
    grid_f = np.geomspace(1e17, max(max(tr.flops) for tr in traces if tr.flops), 60)
    for ax, truth in zip(axes[0], truths, strict=True):
        groups: dict[tuple, list[Trace]] = {}
        for tr in traces:
            if (tr.truth, tr.noise) == truth and tr.flops:
                groups.setdefault((tr.strategy, tr.concurrency), []).append(tr)
        grid_names = sorted({s.removesuffix("-parametric") for s, _ in groups if s.startswith("grid")},
                            key=lambda name: np.median([tr.flops[-1] for tr in groups[(name, 1)]]))
        shade = {name: plt.cm.Greys(0.35 + 0.6 * i / max(1, len(grid_names) - 1))  # darker = more FLOPs
                 for i, name in enumerate(grid_names)}
        for (strategy, k), group in groups.items():
            if strategy.startswith("grid"):
                f = np.median([tr.flops[-1] for tr in group])
                e = np.median([tr.rel_error[-1] for tr in group])
                ax.scatter([f], [e], marker="s" if strategy.endswith("parametric") else "o", s=30,
                           color=shade[strategy.removesuffix("-parametric")], edgecolors="k", linewidths=0.4,
                           label=strategy)
                continue
            curves = []
            for tr in group:  # step function: the latest reading at or before each FLOP level
                idx = np.searchsorted(tr.flops, grid_f, side="right") - 1
                curves.append(np.where(idx >= 0, np.array(tr.rel_error)[np.maximum(idx, 0)], np.nan))
                curves[-1][grid_f > tr.flops[-1]] = np.nan
            with np.errstate(all="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    med = np.nanmedian(np.array(curves), axis=0)
            label = f"{strategy} k={k}" if strategy == "adaptive" else strategy
            ax.plot(grid_f, med, label=label)
        ax.axhline(tolerance, color="k", ls="--", lw=0.8)
        ax.set(xscale="log", yscale="log", title=f"truth: {truth[0]}, noise {truth[1]:g}",
               xlabel="training FLOPs spent (6ND)", ylabel="median max |N*/N*_true - 1| at C_target")
    handles = {}
    for ax in axes[0]:  # one legend for all panels, below them: every panel shows the same strategies
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=7, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, png.getvalue())


# ---------------------------------------------------------------------------------------- driver
def cells(bench: BenchConfig) -> list[Cell]:
    """Every cell of a benchmark, as data (seed-major, so a partial run covers every strategy)."""
    out = []
    for seed in range(bench.first_seed, bench.first_seed + bench.seeds):
        for noise in bench.noise:
            for truth in bench.truths:
                for strategy in bench.strategies:
                    if strategy == "grid":
                        out += [Cell("grid", truth, noise, seed, grid=g) for g in bench.grids]
                    elif strategy in ("adaptive", "adaptive-families"):
                        out += [Cell(strategy, truth, noise, seed, concurrency=k) for k in bench.concurrency]
                    else:
                        out.append(Cell(strategy, truth, noise, seed))
    return out


def run_cell(cell: Cell, bench: BenchConfig) -> list[Trace]:
    cfg = study_config(cell.truth, cell.seed, bench, concurrency=cell.concurrency, noise=cell.noise)
    return STRATEGIES[cell.strategy](cfg, cell, true_optima(cfg, cell.truth))


def _run_job(job: tuple[Cell, BenchConfig]) -> list[Trace]:
    return run_cell(*job)


def run_bench(bench: BenchConfig, workers: int = 1, log=print) -> list[Trace]:
    todo, traces = [(cell, bench) for cell in cells(bench)], []
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            for i, result in enumerate(pool.map(_run_job, todo)):
                traces += result
                log(_progress_line(i, len(todo), result))
    else:
        for i, job in enumerate(todo):
            result = _run_job(job)
            traces += result
            log(_progress_line(i, len(todo), result))
    return traces


def _progress_line(i: int, n: int, result: list[Trace]) -> str:
    last = lambda xs: xs[-1] if xs else float("nan")
    return "\n".join(f"[{i + 1}/{n}] {tr.truth} noise={tr.noise:g} {tr.strategy} k={tr.concurrency} seed={tr.seed}: "
                     f"{tr.n_runs} runs, {last(tr.flops):.3g} FLOPs, err {last(tr.rel_error):.3f}, "
                     f"hw {last(tr.halfwidth):.3f}, {tr.stop}, {tr.seconds:.1f}s" for tr in result)


def environment() -> dict:
    """Date, CPU, versions and commit (_provenance.git_commit) for a row of this CPU-only benchmark."""
    import optuna
    import scipy
    from _provenance import git_commit  # benchmarks/ is on sys.path when run as a script

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": date.today().isoformat(), "cpu": cpu, "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "optuna": optuna.__version__, "commit": git_commit()}


def build_parser() -> argparse.ArgumentParser:
    """The flags of `python benchmarks/bench_scheduler.py`."""
    p = OneLineArgumentParser(prog="bench_scheduler.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--truth", nargs="+", default=["chinchilla", "besiroglu", "knowledge-code"],
                   help=f"simulated truths (presets: {', '.join(PRESETS)})")
    p.add_argument("--seeds", type=int, default=10, help="noise/proposer seeds per truth (default 10)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16], help="adaptive: runs in flight at once")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    p.add_argument("--max-flops", type=float, default=3e20, help="FLOP cap per sequential strategy (default 3e20)")
    p.add_argument("--noise", type=float, nargs="+", default=[0.005],
                   help="log-normal loss noise levels, one set of cells each (default 0.005)")
    p.add_argument("--n-boot", type=int, default=100, help="proposer/refit bootstrap members (default 100)")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("--json", type=Path, default=None, help="write results JSON here")
    p.add_argument("--traces", type=Path, default=None, help="write per-seed curves (JSON lines) here")
    p.add_argument("--plot", type=Path, default=None, help="write the error-vs-FLOPs PNG here")
    p.add_argument("--merge", type=Path, nargs="+", default=None,
                   help="summarise these --traces files (e.g. seed ranges run on several machines) instead of running")
    return p


def cmd_bench(args: argparse.Namespace) -> int:
    for name in args.truth:
        if name not in PRESETS:
            raise InputError(f"--truth: unknown preset {name!r} (presets: {', '.join(PRESETS)})")
    if args.seeds < 1 or any(k < 1 for k in args.concurrency) or args.workers < 1:
        raise InputError("--seeds, --concurrency and --workers must be >= 1")
    if not (args.max_flops > 0 and all(n >= 0 for n in args.noise) and args.n_boot >= 20):
        raise InputError("--max-flops must be > 0, --noise >= 0, --n-boot >= 20")
    bench = BenchConfig(truths=tuple(args.truth), seeds=args.seeds, concurrency=tuple(args.concurrency),
                        strategies=tuple(args.strategies), noise=tuple(args.noise), max_flops=args.max_flops,
                        n_boot=args.n_boot, first_seed=args.first_seed)
    start = time.perf_counter()
    traces = load_traces(args.merge) if args.merge else run_bench(bench, workers=args.workers)
    rows = summarize(traces)
    result = {"results": rows, "verdict": verdict(rows), "environment": environment(),
              "settings": {**{k: v for k, v in bench.__dict__.items() if k != "grids"},
                           "grids": [g.__dict__ for g in bench.grids], "tolerance": TOLERANCE,
                           "grid_span_decades": GRID_SPAN_DECADES, "flops": "6ND of the runs only",
                           "workers": args.workers},
              "wall_seconds": time.perf_counter() - start}
    print(format_table(rows))
    if args.json:  # results are written whole or not at all (skillscale.atomic, which also creates the folder)
        atomic_write_text(args.json, json.dumps(result, indent=1))
    if args.traces:
        atomic_write_text(args.traces, "".join(json.dumps(tr.to_dict()) + "\n" for tr in traces))
    if args.plot:
        plot(traces, args.plot)
    return 0


def load_traces(paths: list[Path]) -> list[Trace]:
    """Traces written by --traces (one JSON object per line)."""
    traces = []
    for path in paths:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise InputError(f"{path}: cannot read traces ({exc.strerror or exc})") from None
        for line in lines:
            d = json.loads(line)
            d.pop("reached", None)
            d.setdefault("noise", 0.005)  # traces written before noise levels were cells
            traces.append(Trace(**d))
    return traces


def format_table(rows: list[dict]) -> str:
    fmt = lambda x: "-" if x is None else f"{x:.3g}"
    lines = ["| truth | noise | strategy | k | seeds | FLOPs to tol (median) | IQR | reached | final rel err "
             "| coverage |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        iqr = r["flops_to_tolerance_iqr"]
        iqr = "-" if iqr is None else f"{iqr[0]:.3g}-{iqr[1]:.3g}"
        lines.append(f"| {r['truth']} | {r.get('noise', '-')} | {r['strategy']} | {r['concurrency']} | {r['seeds']} | "
                     f"{fmt(r['flops_to_tolerance_median'])} | {iqr} | "
                     f"{r['reached_fraction']:.2f} | {fmt(r['final_rel_error_median'])} | {fmt(r['coverage'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python benchmarks/bench_scheduler.py [flags]` (build_parser); bad input: one line, exit status 2."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return cmd_bench(args)
    except InputError as exc:
        print(f"bench_scheduler.py: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
