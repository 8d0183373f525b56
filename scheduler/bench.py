"""Compute-to-precision benchmark: adaptive proposals vs isoFLOP grids, random search and TPE.

    skillscale bench scheduler --truth chinchilla besiroglu knowledge-code --seeds 10 --concurrency 1 4 16 \
        --json benchmarks/results/scheduler.json --plot docs/bench_scheduler.png

Everything runs in-process on the simulated backend (no Ray, no sleep): the same Proposer, refit and
SimulatedBackend the controller uses. Concurrency k is simulated asynchronously, as the controller runs:
k workers, a run's duration proportional to its FLOPs (plus the assumed per-run overhead), a refit and a
new proposal (with the other runs in flight passed to Proposer.propose) each time one finishes, and the
FLOPs already spent by runs in flight counted when the study stops.

The question (issue #7): how many training FLOPs does each strategy spend before the 95% interval of
N*(C_target) is within ±`TOLERANCE` of its estimate for every target AND the estimate is within
`TOLERANCE` of the truth? FLOPs are 6·N·D of the runs only. The adaptive proposer additionally assumes a
fixed per-run cost (`overhead_flops`, 2e16 here: about a minute of an H100 at 40% MFU) when it ranks
candidates; that cost is not counted.

Strategies, on the same truths and noise seeds (a run's noise is drawn from (seed, run_id), so the same
point gets the same noise under every strategy):
- grid-BxS: the isoFLOP protocol (Hoffmann et al. 2022 Approach 2; arXiv:2503.10061): B log-spaced budgets,
  S log-spaced sizes per budget within ±`GRID_SPAN_DECADES` of a 20-tokens-per-parameter guess; parabola
  minima -> N* = k C^a -> C_target; 95% CI by the stratified bootstrap of fitting.isoflop. It reaches
  tolerance iff its final reading does; its FLOPs are the whole grid's. `grid-...-parametric` reads the
  same runs with the parametric fit the adaptive scheduler uses (scheduler.estimates.refit).
- random: log-uniform C, then log-uniform N within the feasible range (the proposer's candidate space);
  parametric fit; stops when every target's CI is within tolerance or at the FLOP cap.
- tpe: Optuna's TPESampler minimising the mean loss over skills, out of the box, on log10 N and log10 D
  (D clipped into the per-run FLOP bounds); parametric fit; same stop rule.
- adaptive: skillscale's Proposer at each concurrency; the controller's stop rule.
"""

from __future__ import annotations

import argparse
import heapq
import io
import json
import math
import platform
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from fitting.isoflop import bootstrap_isoflop, fit_isoflop
from fitting.law import interval
from scheduler.config import StudyConfig, parse_study_config
from scheduler.estimates import Estimates, derived_seed, refit, single_member
from scheduler.ledger import ledger_row
from scheduler.proposer import Point, Proposer, SearchSpace
from skillscale.atomic import atomic_write_bytes, atomic_write_text
from skillscale.errors import InputError
from trainers.simulated import PRESETS
from trainers.spec import RunSpec

TOLERANCE = 0.10  # relative 95% half-width of N*(C_target), and the allowed relative error vs truth
C_TARGET = 1e21  # FLOPs; 100x the largest run
GRID_SPAN_DECADES = 0.8  # sizes per budget span guess x 10^(±0.8)
TOKENS_PER_PARAM_GUESS = 20.0  # Hoffmann et al. 2022: the grid is centred on D = 20 N
ISOFLOP_BOOT = 200
MAX_RUNS = 600  # safety stop for sequential strategies (the FLOP cap normally binds first)
DENSE_REFIT_RUNS = 30  # random/tpe: check the stop rule after every run up to this many, then every ~n/15


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
    """One benchmark invocation."""

    truths: tuple[str, ...] = ("chinchilla", "besiroglu", "knowledge-code")
    seeds: int = 10
    concurrency: tuple[int, ...] = (1, 4, 16)
    strategies: tuple[str, ...] = ("grid", "random", "tpe", "adaptive")
    grids: tuple[GridSpec, ...] = GRIDS
    noise: float = 0.005
    max_flops: float = 3e20  # total FLOP cap per sequential strategy
    n_boot: int = 100
    inner_trials: int = 16
    n_candidates: int = 512
    overhead_flops: float = 2e16
    seed_runs: int = 12
    c_target: float = C_TARGET
    first_seed: int = 0


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

    @property
    def reached(self) -> bool:
        return bool(self.flops) and self.halfwidth[-1] <= TOLERANCE and self.rel_error[-1] <= TOLERANCE

    @property
    def flops_to_tolerance(self) -> float | None:
        return self.flops[-1] if self.reached else None

    def to_dict(self) -> dict:
        return {"truth": self.truth, "strategy": self.strategy, "concurrency": self.concurrency, "seed": self.seed,
                "flops": self.flops, "rel_error": self.rel_error, "halfwidth": self.halfwidth,
                "covered": self.covered, "n_runs": self.n_runs, "stop": self.stop, "seconds": self.seconds,
                "reached": self.reached}


# ------------------------------------------------------------------------------------------- setup
def study_config(truth: str, seed: int, bench: BenchConfig, concurrency: int = 1) -> StudyConfig:
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
        "backend": {"name": "simulated", "truth": truth, "noise": bench.noise},
        "proposer": {"n_boot": bench.n_boot, "overhead_flops": bench.overhead_flops, "seed_runs": bench.seed_runs,
                     "inner_trials": bench.inner_trials, "n_candidates": bench.n_candidates},
        "seed": seed,
    }, source="bench study")


def true_optima(cfg: StudyConfig, truth: str) -> np.ndarray:
    """(T,) true N*(C_target) per target: the preset laws' optimum at the target's mix."""
    domains = tuple(cfg.domains)
    laws = PRESETS[truth]
    ensembles = {s: single_member(law, domains if law.transfer is not None else ()) for s, law in laws.items()}
    out = []
    for target in cfg.targets:
        mix = cfg.target_mix(target)
        weights = {s: w for s, w in target.weights.items() if w > 0}
        if len(weights) == 1:
            (skill,) = weights
            n_opt = ensembles[skill].optimum(target.flops, mix=mix)[0]
        else:
            from fitting.optimum import composition_optimum

            n_opt = composition_optimum({s: ensembles[s] for s in weights}, weights, target.flops, mix=mix)[0]
        out.append(float(n_opt[0]))
    return np.array(out)


class _Lab:
    """Trains points on the simulated backend and keeps ledger rows (in memory, not on disk) for refit."""

    def __init__(self, cfg: StudyConfig, seed: int):
        self.cfg = cfg
        self.seed = seed
        self.backend = cfg.backend.build()
        self.rows: list[dict] = []
        self.flops = 0.0

    def train(self, points: list[Point]) -> None:
        for p in points:
            spec = RunSpec(p.n_params, p.n_tokens, p.mix, seed=self.seed, trial_number=len(self.rows))
            result = self.backend.run(spec, Path("."))  # no sleep: nothing is written
            self.rows.append(ledger_row(spec, result))
            self.flops += spec.flops


def _judge(trace: Trace, flops: float, n_hat: np.ndarray, ci: np.ndarray, truth_n: np.ndarray) -> None:
    """Append one reading: n_hat (T,), ci (T, 2) against truth_n (T,)."""
    trace.flops.append(float(flops))
    trace.rel_error.append(float(np.max(np.abs(n_hat / truth_n - 1.0))))
    trace.halfwidth.append(float(np.max((ci[:, 1] - ci[:, 0]) / (2 * n_hat))))
    trace.covered.append(bool(np.all((ci[:, 0] <= truth_n) & (truth_n <= ci[:, 1]))))


def _judge_estimates(trace: Trace, flops: float, est: Estimates, truth_n: np.ndarray) -> bool:
    """Record a parametric refit; True when the stop rule (all CIs within tolerance) holds."""
    n_hat = np.array([t.n_params for t in est.targets])
    ci = np.array([t.n_params_ci95 for t in est.targets])
    _judge(trace, flops, n_hat, ci, truth_n)
    return est.converged(TOLERANCE)


# --------------------------------------------------------------------------------------- strategies
def run_adaptive(cfg: StudyConfig, truth: str, seed: int, k: int, truth_n: np.ndarray) -> Trace:
    """The controller's loop at concurrency k, asynchronous as on a cluster.

    k workers; a run occupies one for a time proportional to its FLOPs plus the per-run overhead the
    proposer assumes. Each time a run finishes the laws are refitted and the stop rule is checked, per
    finished run as the controller does, and one new run is proposed with the other k - 1 still in flight.
    On stopping, the runs in flight are abandoned and the FLOPs they had spent so far are counted.
    """
    trace, lab, proposer = Trace(truth, "adaptive", k, seed), _Lab(cfg, seed), Proposer(cfg)
    estimates, start, streak, clock, asked = None, time.perf_counter(), 0, 0.0, 0
    running: list[tuple[float, int, float, Point]] = []  # heap of (finish time, order, start time, point)
    overhead = cfg.proposer.overhead_flops

    def fill() -> None:
        nonlocal asked
        n_new = min(k - len(running), cfg.max_runs - asked)
        if n_new <= 0:
            return
        committed = lab.flops + sum(p.flops for *_, p in running)
        in_flight = [p for *_, p in sorted(running, key=lambda r: r[1])]
        for p in proposer.propose(n_new, estimates, in_flight, asked, budget_left=cfg.compute_cap - committed):
            heapq.heappush(running, (clock + p.flops + overhead, asked, clock, p))
            asked += 1

    fill()
    while running:
        clock, _, _, point = heapq.heappop(running)
        lab.train([point])
        spent = lab.flops + sum(p.flops * (clock - t0) / (t1 - t0) for t1, _, t0, p in running)
        estimates = refit(cfg, lab.rows)
        inside = (estimates is not None and _judge_estimates(trace, spent, estimates, truth_n)
                  and len(lab.rows) >= cfg.proposer.seed_runs)
        streak = streak + 1 if inside else 0  # the controller's rule: confirm_refits refits in a row
        if streak >= cfg.confirm_refits:
            trace.stop = "converged"
            break
        fill()
    else:
        trace.stop = "max_runs" if asked >= cfg.max_runs else "budget_exhausted"
    trace.n_runs, trace.seconds = len(lab.rows), time.perf_counter() - start
    return trace


def _sequential(cfg: StudyConfig, trace: Trace, truth_n: np.ndarray, next_point) -> Trace:
    """Train next_point(lab) one at a time until the stop rule holds, the cap is spent or it returns None."""
    lab, start, last_check, streak = _Lab(cfg, trace.seed), time.perf_counter(), 0, 0
    while True:
        if len(lab.rows) >= cfg.max_runs:
            trace.stop = "max_runs"
            break
        point = next_point(lab, cfg.compute_cap - lab.flops)
        if point is None:
            trace.stop = "budget_exhausted"
            break
        lab.train([point])
        n = len(lab.rows)
        if n > DENSE_REFIT_RUNS and n - last_check < max(1, n // 15):
            continue
        last_check = n
        estimates = refit(cfg, lab.rows)
        inside = estimates is not None and _judge_estimates(trace, lab.flops, estimates, truth_n)
        streak = streak + 1 if inside else 0
        if streak >= cfg.confirm_refits:
            trace.stop = "converged"
            break
    if trace.stop != "converged" and (not trace.flops or trace.flops[-1] < lab.flops):
        estimates = refit(cfg, lab.rows)  # a final reading of everything spent
        if estimates is not None:
            _judge_estimates(trace, lab.flops, estimates, truth_n)
    trace.n_runs, trace.seconds = len(lab.rows), time.perf_counter() - start
    return trace


def run_random(cfg: StudyConfig, truth: str, seed: int, truth_n: np.ndarray) -> Trace:
    space = SearchSpace(cfg)
    rng = np.random.default_rng(derived_seed(seed, "bench-random"))

    def next_point(lab: _Lab, budget_left: float) -> Point | None:
        max_flops = min(cfg.max_run_flops, budget_left)
        if max_flops < cfg.min_run_flops:
            return None
        n, d, mix = space.from_unit(rng.random((1, space.dims)), max_flops)
        return space.point(n[0], d[0], mix[0])

    return _sequential(cfg, Trace(truth, "random", 1, seed), truth_n, next_point)


def run_tpe(cfg: StudyConfig, truth: str, seed: int, truth_n: np.ndarray) -> Trace:
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=derived_seed(seed, "bench-tpe")))
    dist = {"log10_n_params": optuna.distributions.FloatDistribution(math.log10(cfg.n_params.lo),
                                                                     math.log10(cfg.n_params.hi)),
            "log10_n_tokens": optuna.distributions.FloatDistribution(math.log10(cfg.n_tokens.lo),
                                                                     math.log10(cfg.n_tokens.hi))}
    pending: list = []

    def next_point(lab: _Lab, budget_left: float) -> Point | None:
        if pending:  # tell the previous trial its mean loss
            row = lab.rows[-1]
            study.tell(pending.pop(), float(np.mean([row[f"loss/{s}"] for s in cfg.skills])))
        max_flops = min(cfg.max_run_flops, budget_left)
        if max_flops < cfg.min_run_flops:
            return None
        trial = study.ask(dist)
        n = 10 ** trial.params["log10_n_params"]
        d = float(np.clip(10 ** trial.params["log10_n_tokens"], cfg.min_run_flops / (6 * n), max_flops / (6 * n)))
        pending.append(trial)
        return Point(int(round(n)), int(round(d)), dict(cfg.mix.fixed))

    return _sequential(cfg, Trace(truth, "tpe", 1, seed), truth_n, next_point)


def grid_points(cfg: StudyConfig, grid: GridSpec) -> list[Point]:
    """The grid's runs: per budget, sizes log-spaced around D = 20 N, clipped to the N and D bounds."""
    points = []
    for c in np.geomspace(grid.c_lo, grid.c_hi, grid.n_budgets):
        guess = math.sqrt(c / (6 * TOKENS_PER_PARAM_GUESS))
        n_lo, n_hi = cfg.n_bounds(c)
        lo = max(math.log10(guess) - GRID_SPAN_DECADES, math.log10(n_lo))
        hi = min(math.log10(guess) + GRID_SPAN_DECADES, math.log10(n_hi))
        for log_n in np.linspace(lo, hi, grid.n_sizes):
            n = int(round(10 ** log_n))
            d = min(max(round(c / (6 * n)), int(cfg.n_tokens.lo)), int(cfg.n_tokens.hi))  # rounding stays in bounds
            points.append(Point(n, d, dict(cfg.mix.fixed)))
    return points


def run_grid(cfg: StudyConfig, truth: str, seed: int, grid: GridSpec, truth_n: np.ndarray) -> list[Trace]:
    """The isoFLOP reading and the parametric reading of one grid."""
    start = time.perf_counter()
    lab = _Lab(cfg, seed)
    lab.train(grid_points(cfg, grid))
    n_params = np.array([r["n_params"] for r in lab.rows], float)
    n_tokens = np.array([r["n_tokens"] for r in lab.rows], float)
    iso = Trace(truth, grid.name, 1, seed, n_runs=len(lab.rows), stop="grid_done")
    n_hat, ci = [], []
    for t in cfg.targets:  # an isoFLOP analysis of the target's validation composition Σ w_s L_s
        loss = sum(w * np.array([r[f"loss/{s}"] for r in lab.rows]) for s, w in t.weights.items())
        point = fit_isoflop(n_params, n_tokens, loss).optimum(t.flops)[0][0]
        boot = bootstrap_isoflop(n_params, n_tokens, loss, n_boot=ISOFLOP_BOOT,
                                 seed=derived_seed(seed, "bench-isoflop", t.name)).optimum(t.flops)[0]
        n_hat.append(point)
        ci.append(interval(boot))
    _judge(iso, lab.flops, np.array(n_hat), np.array(ci), truth_n)
    iso.seconds = time.perf_counter() - start
    par = Trace(truth, f"{grid.name}-parametric", 1, seed, n_runs=len(lab.rows), stop="grid_done")
    estimates = refit(cfg, lab.rows)
    if estimates is not None:
        _judge_estimates(par, lab.flops, estimates, truth_n)
    par.seconds = time.perf_counter() - start - iso.seconds
    return [iso, par]


# ---------------------------------------------------------------------------------------- summary
def summarize(traces: list[Trace]) -> list[dict]:
    """One row per (truth, strategy, concurrency) in the issue's schema."""
    groups: dict[tuple, list[Trace]] = {}
    for tr in traces:
        groups.setdefault((tr.truth, tr.strategy, tr.concurrency), []).append(tr)
    rows = []
    for (truth, strategy, k), group in groups.items():
        reached = [tr.flops_to_tolerance for tr in group if tr.reached]
        errors = [tr.rel_error[-1] for tr in group if tr.rel_error]
        rows.append({
            "truth": truth, "strategy": strategy, "concurrency": k, "seeds": len(group),
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
    """Per truth: adaptive's FLOPs vs the cheapest grid reading that reaches tolerance in most seeds.

    When no grid reaches it, `meets_flops_target` is None (undecided, not passed) and the ratio to the
    most expensive grid's spend is given instead: what this family of grids spent without getting there.
    """
    out = []
    for truth in dict.fromkeys(r["truth"] for r in rows):
        mine = [r for r in rows if r["truth"] == truth]
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
            out.append({"truth": truth, "concurrency": r["concurrency"],
                        "cheapest_grid": cheapest["strategy"] if cheapest else None,
                        "flops_ratio_vs_cheapest_grid": ratio,
                        "flops_ratio_vs_densest_grid_spend": mine_flops / densest if mine_flops and densest else None,
                        "meets_flops_target": None if cheapest is None and all_grids else meets,
                        "coverage": r["coverage"],
                        "meets_coverage_target": r["coverage"] is not None and r["coverage"] >= 0.85})
    return out


def plot(traces: list[Trace], path: Path, tolerance: float = TOLERANCE) -> None:
    """Median (over seeds) max relative error of N*(C_target) vs FLOPs spent, one panel per truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truths = list(dict.fromkeys(tr.truth for tr in traces))
    fig, axes = plt.subplots(1, len(truths), figsize=(5.5 * len(truths), 5.0), squeeze=False)
    grid_f = np.geomspace(1e17, max(max(tr.flops) for tr in traces if tr.flops), 60)
    for ax, truth in zip(axes[0], truths, strict=True):
        groups: dict[tuple, list[Trace]] = {}
        for tr in traces:
            if tr.truth == truth and tr.flops:
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
        ax.set(xscale="log", yscale="log", title=f"truth: {truth}", xlabel="training FLOPs spent (6ND)",
               ylabel="median max |N*/N*_true - 1| at C_target")
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
def _one_job(job: tuple) -> list[Trace]:
    kind, truth, seed, arg, bench = job
    cfg = study_config(truth, seed, bench, concurrency=arg if kind == "adaptive" else 1)
    truth_n = true_optima(cfg, truth)
    if kind == "grid":
        return run_grid(cfg, truth, seed, arg, truth_n)
    if kind == "random":
        return [run_random(cfg, truth, seed, truth_n)]
    if kind == "tpe":
        return [run_tpe(cfg, truth, seed, truth_n)]
    return [run_adaptive(cfg, truth, seed, arg, truth_n)]


def jobs(bench: BenchConfig) -> list[tuple]:
    out = []
    for seed in range(bench.first_seed, bench.first_seed + bench.seeds):
        for truth in bench.truths:
            for strategy in bench.strategies:
                if strategy == "grid":
                    out += [("grid", truth, seed, g, bench) for g in bench.grids]
                elif strategy == "adaptive":
                    out += [("adaptive", truth, seed, k, bench) for k in bench.concurrency]
                else:
                    out.append((strategy, truth, seed, None, bench))
    return out


def run_bench(bench: BenchConfig, workers: int = 1, log=print) -> list[Trace]:
    todo, traces = jobs(bench), []
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            for i, result in enumerate(pool.map(_one_job, todo)):
                traces += result
                log(_progress_line(i, len(todo), result))
    else:
        for i, job in enumerate(todo):
            result = _one_job(job)
            traces += result
            log(_progress_line(i, len(todo), result))
    return traces


def _progress_line(i: int, n: int, result: list[Trace]) -> str:
    last = lambda xs: xs[-1] if xs else float("nan")
    return "\n".join(f"[{i + 1}/{n}] {tr.truth} {tr.strategy} k={tr.concurrency} seed={tr.seed}: {tr.n_runs} runs, "
                     f"{last(tr.flops):.3g} FLOPs, err {last(tr.rel_error):.3f}, hw {last(tr.halfwidth):.3f}, "
                     f"{tr.stop}, {tr.seconds:.1f}s" for tr in result)


def environment() -> dict:
    import optuna
    import scipy

    try:
        import subprocess

        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=False).stdout.strip() or None
    except OSError:
        commit = None
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": date.today().isoformat(), "cpu": cpu, "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "optuna": optuna.__version__, "commit": commit}


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks of the scheduler (simulated backend)")
    kinds = bench.add_subparsers(dest="bench", required=True)
    p = kinds.add_parser("scheduler", description=__doc__.split("\n\n")[0],
                         help="FLOPs to a ±10%% CI of N*(C_target): adaptive vs isoFLOP grids, random, TPE")
    p.add_argument("--truth", nargs="+", default=["chinchilla", "besiroglu", "knowledge-code"],
                   help=f"simulated truths (presets: {', '.join(PRESETS)})")
    p.add_argument("--seeds", type=int, default=10, help="noise/proposer seeds per truth (default 10)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16], help="adaptive: runs in flight at once")
    p.add_argument("--strategies", nargs="+", default=["grid", "random", "tpe", "adaptive"],
                   choices=["grid", "random", "tpe", "adaptive"])
    p.add_argument("--max-flops", type=float, default=3e20, help="FLOP cap per sequential strategy (default 3e20)")
    p.add_argument("--noise", type=float, default=0.005, help="log-normal loss noise (default 0.005)")
    p.add_argument("--n-boot", type=int, default=100, help="proposer/refit bootstrap members (default 100)")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("--json", type=Path, default=None, help="write results JSON here")
    p.add_argument("--traces", type=Path, default=None, help="write per-seed curves (JSON lines) here")
    p.add_argument("--plot", type=Path, default=None, help="write the error-vs-FLOPs PNG here")
    p.add_argument("--merge", type=Path, nargs="+", default=None,
                   help="summarise these --traces files (e.g. seed ranges run on several machines) instead of running")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    for name in args.truth:
        if name not in PRESETS:
            raise InputError(f"--truth: unknown preset {name!r} (presets: {', '.join(PRESETS)})")
    if args.seeds < 1 or any(k < 1 for k in args.concurrency) or args.workers < 1:
        raise InputError("--seeds, --concurrency and --workers must be >= 1")
    if not (args.max_flops > 0 and args.noise >= 0 and args.n_boot >= 20):
        raise InputError("--max-flops must be > 0, --noise >= 0, --n-boot >= 20")
    bench = BenchConfig(truths=tuple(args.truth), seeds=args.seeds, concurrency=tuple(args.concurrency),
                        strategies=tuple(args.strategies), noise=args.noise, max_flops=args.max_flops,
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
            traces.append(Trace(**d))
    return traces


def format_table(rows: list[dict]) -> str:
    fmt = lambda x: "-" if x is None else f"{x:.3g}"
    lines = ["| truth | strategy | k | seeds | FLOPs to tol (median) | IQR | reached | final rel err | coverage |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        iqr = r["flops_to_tolerance_iqr"]
        iqr = "-" if iqr is None else f"{iqr[0]:.3g}-{iqr[1]:.3g}"
        lines.append(f"| {r['truth']} | {r['strategy']} | {r['concurrency']} | {r['seeds']} | "
                     f"{fmt(r['flops_to_tolerance_median'])} | {iqr} | "
                     f"{r['reached_fraction']:.2f} | {fmt(r['final_rel_error_median'])} | {fmt(r['coverage'])} |")
    return "\n".join(lines)
