"""The harder scheduler benchmark of issue #21: realistic noise, a tokens-per-parameter band, truths outside
the fitted family, and baselines that use the same fitter.

    PYTHONPATH=. python3 benchmarks/bench_realistic.py --truths besiroglu cross-term repetition \\
        --noise 0.005 0.015 0.03 --seeds 3 --strategies adaptive random grid pool

Every strategy drives the same Ray-free `scheduler.study.Study` (in memory), so the fit, the intervals and
the stop rule are the study's own; only who chooses the runs differs. Runs are "trained" here, on a
simulated clock, k = 1: the loss is the truth's at (N, D) times exp(sigma z), z drawn from (seed, run_id),
so the same run gets the same noise under every strategy. Every run lies inside the config's
`tokens_per_param` band (the study's default unless --band is given). One skill "all", one target
N*(C_target = 1e21), 100x the largest allowed run (1e19 FLOPs), tolerance +-10%.

Truths: besiroglu (Besiroglu et al. 2024, inside the fitted family), cross-term (fitting.truths.CrossTermLaw
on besiroglu: the D exponent drifts with N, Farseer-like, arXiv:2506.10972) and repetition
(fitting.truths.RepeatedDataLaw on besiroglu, 1e10 unique tokens; Muennighoff et al. 2023) and farseer
(fitting.truths.FARSEER_SINGLE_EPOCH: a Farseer-form law fitted to real single-epoch runs).

The mix cell (issue #21, item 6), truth `knowledge-code-simplex`: `mix.space: simplex` over the domains knowledge,
code and general (floor 0.05), skills knowledge and code observed per run under the simulated backend's
mixture-aware truth (trainers.simulated PRESETS["knowledge-code"]: D_eff = D * T_s(mix), transfers between
domains), and two targets N*(1e21), one per skill, each at its own mix that no run uses (TARGET_MIXES; the truth
of each is its skill's true law's optimum at that mix). Same bounds, band, tolerance and cap as the other cells.
One study yields one trace per target, labelled `knowledge-code-simplex/<target>`, so every metric below is per
target. The baselines spread over the simplex: random draws the mix uniformly on the floored simplex; grid and
pool use fixed GRID_MIXES (each domain leaning 0.6 in turn), the grid splitting each budget's sizes over them so
it costs about what the one-mix grid costs.

Strategies:
- adaptive: `Study.propose` (the proposer and its stop rule).
- random: C log-uniform over the per-run FLOP range, log N uniform over what the band allows at that C;
  refit after every run up to 30, then every ~n/15 runs; same stop rule.
- grid: the isoFLOP protocol inside the band: `--grid` budgets log-spaced over [1e17, 1e19] x sizes whose
  D/N is log-spaced across the band, trained budget by budget (cheapest first), a reading after each budget;
  no stop rule (it trains the whole grid).
- pool: pool-based selection in the manner of arXiv:2604.22753: a fixed pool of candidate runs (a dense
  isoFLOP grid inside the band, 12 budgets over [1e16, 1e19] x 9 D/N values); after a 12-run random seed
  from the pool, each next run is the unused pool point with the largest ensemble variance of predicted
  log-loss per FLOP (uncertainty sampling); same refit schedule and stop rule as random.

Metrics per (truth, noise, strategy), over seeds: `flops_to_median_5pct` -- the FLOPs at which the median
over seeds of |N*_hat / N*_true - 1| first falls below 5% (each seed's latest reading at that spend, a
stopped seed keeping its last); `flops_to_tolerance` -- the median FLOPs at which the stop rule fired with
the estimate also within the tolerance (and the fraction of seeds that did); `coverage` -- the fraction of
seeds whose final 95% interval holds the truth; final error and half-width. Rows are appended to
benchmarks/results/realistic.jsonl with provenance.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import math
import os
import platform
import time
from dataclasses import dataclass, field

import numpy as np
from _provenance import append_rows, git_commit  # benchmarks/ is on sys.path when run as a script

from fitting.conventions import FLOPS_PER_PARAM_TOKEN
from fitting.law import ParametricLaw
from fitting.truths import FARSEER_SINGLE_EPOCH, CrossTermLaw, RepeatedDataLaw
from scheduler.config import StudyConfig, parse_study_config
from scheduler.proposer import Point, SearchSpace
from scheduler.study import Study
from skillscale.errors import InputError, OneLineArgumentParser
from trainers.simulated import PRESETS, observed
from trainers.spec import RunResult, RunSpec

RESULTS = os.path.join(os.path.dirname(__file__), "results", "realistic.jsonl")
BESIROGLU = ParametricLaw(1.82, 482.01, 2085.43, 0.3478, 0.3658)  # Besiroglu et al. 2024, Table 1
TRUTHS = {
    "besiroglu": BESIROGLU,
    "cross-term": CrossTermLaw(BESIROGLU, kappa=0.006, n_ref=1e8),
    "farseer": FARSEER_SINGLE_EPOCH,
    "repetition": RepeatedDataLaw(BESIROGLU, unique_tokens=1e10),
}
# Cells whose truth is a mixture-aware law per skill: studied with `mix.space: simplex` (the module docstring).
MIXTURE_TRUTHS = {"knowledge-code-simplex": PRESETS["knowledge-code"]}
DOMAINS = ("knowledge", "code", "general")
MIX_FLOOR = 0.05
# One target per skill, each at a mix no run uses (as tests/scheduler/test_simplex_study.py).
TARGET_MIXES = {"knowledge": {"knowledge": 0.55, "code": 0.25, "general": 0.20},
                "code": {"knowledge": 0.20, "code": 0.62, "general": 0.18}}
GRID_MIXES = ((0.6, 0.2, 0.2), (0.2, 0.6, 0.2), (0.2, 0.2, 0.6))  # over DOMAINS: each domain leans in turn
C_TARGET = 1e21
TOLERANCE = 0.10
MEDIAN_ERROR_GOAL = 0.05
DENSE_REFIT_RUNS = 30


@dataclass
class Trace:
    """One strategy on one cell and seed: readings (cumulative FLOPs, |relative error|, half-width, covered)."""

    truth: str
    noise: float
    strategy: str
    seed: int
    flops: list[float] = field(default_factory=list)
    rel_error: list[float] = field(default_factory=list)
    halfwidth: list[float] = field(default_factory=list)
    covered: list[bool] = field(default_factory=list)
    n_runs: int = 0
    stop: str = ""
    seconds: float = 0.0

    @property
    def reached(self) -> bool:
        return self.stop == "converged" and bool(self.rel_error) and self.rel_error[-1] <= TOLERANCE


def study_config(noise: float, seed: int, args, truth: str = "besiroglu") -> StudyConfig:
    data = {
        "name": f"realistic-{seed}", "skills": ["all"], "domains": ["all"], "mix": {"space": "fixed"},
        "n_params": [1e6, 3e9], "n_tokens": [1e7, 1e12], "flops": [1e16, 1e19],
        "targets": [{"name": "all", "weights": {"all": 1.0}, "flops": C_TARGET}],
        "tolerance": TOLERANCE, "compute_cap": args.max_flops, "max_runs": args.max_runs,
        "backend": {"name": "simulated", "truth": "besiroglu", "noise": noise, "seed_replicas": args.seed_replicas},
        "proposer": {"n_boot": args.n_boot, "overhead_flops": args.overhead_flops, "inner_trials": args.inner_trials,
                     "n_candidates": args.n_candidates},
        "seed": seed, "law": getattr(args, "law", "auto"),
    }
    if truth in MIXTURE_TRUTHS:  # the mix cell: simplex mixes, two skills, one target per skill at its own mix
        data.update({
            "skills": list(TARGET_MIXES), "domains": list(DOMAINS), "mix": {"space": "simplex", "floor": MIX_FLOOR},
            "targets": [{"name": s, "weights": {s: 1.0}, "flops": C_TARGET, "mix": m} for s, m in TARGET_MIXES.items()],
            "backend": {"name": "simulated", "truth": "knowledge-code", "noise": noise,
                        "seed_replicas": args.seed_replicas},
        })
    if isinstance(TRUTHS.get(truth), RepeatedDataLaw):  # the target's data are as limited as the runs' were
        data["targets"][0]["unique_tokens"] = TRUTHS[truth].unique_tokens
    if args.band is not None:
        data["tokens_per_param"] = list(args.band)
    cfg = parse_study_config(data, source="bench_realistic study")
    if args.bootstrap is not None or args.inflation is not None:  # interval settings under test
        update = {k: v for k, v in (("bootstrap", args.bootstrap), ("interval_inflation", args.inflation))
                  if v is not None}
        cfg = cfg.model_copy(update={"proposer": cfg.proposer.model_copy(update=update)})
    return cfg


class Lab:
    """Trains specs against a truth with seeded log-normal noise and records them in the Study.

    `truth` is one law (skill "all", fixed mix) or, for a mix cell, skill -> mixture-aware law evaluated at the
    run's mix; `traces` and `true_n` are keyed by target name (one target "all" outside the mix cell)."""

    def __init__(self, study: Study, truth, noise: float, seed: int, traces: dict[str, Trace],
                 true_n: dict[str, float]):
        self.study, self.noise, self.seed = study, noise, seed
        self.replicas = study.models_per_run  # a run of R models reports their mean and costs R x 6ND
        self.mixture = isinstance(truth, dict)
        self.laws = truth if self.mixture else {"all": truth}
        self.traces, self.true_n = traces, true_n

    def losses(self, spec: RunSpec) -> dict[str, float]:
        """Per skill, the truth at (N, D[, mix]) times exp(noise z), averaged over the run's models
        (trainers.simulated.observed); z drawn in skill order from (seed, run_id)."""
        z_seed = int.from_bytes(hashlib.sha256(f"{self.seed}:{spec.run_id}".encode()).digest()[:8], "little")
        rng = np.random.default_rng(z_seed)
        out = {}
        for skill, law in self.laws.items():
            if isinstance(law, RepeatedDataLaw) and spec.unique_tokens:  # a run on fewer of the world's tokens
                law = dataclasses.replace(law, unique_tokens=min(law.unique_tokens, spec.unique_tokens))
            loss = law.loss(spec.n_params, spec.n_tokens, spec.mix) if self.mixture else law.loss(spec.n_params,
                                                                                                  spec.n_tokens)
            out[skill] = observed(float(loss[0]), self.noise, rng, self.replicas)
        return out

    def train(self, spec: RunSpec, refit_now: bool = True) -> None:
        law = self.laws.get("all")  # a world of U unique tokens: its runs report their epochs, as the trainer does
        unique = min(law.unique_tokens, spec.unique_tokens or math.inf) if isinstance(law, RepeatedDataLaw) else None
        epochs = {"all": spec.n_tokens / unique} if unique is not None else {}
        result = RunResult(run_id=spec.run_id, status="ok", n_params=spec.n_params, n_tokens=spec.n_tokens,
                           flops=spec.flops * self.replicas, losses=self.losses(spec), data_epochs=epochs)
        self.study.record(spec, result, refit_now=refit_now)

    def read(self) -> None:
        """Append the study's current estimate of each target to its trace."""
        est = self.study.estimates
        if est is None:
            return
        for t in est.targets:
            trace, true_n = self.traces[t.name], self.true_n[t.name]
            trace.flops.append(self.study.ledger.flops_spent())
            trace.rel_error.append(abs(t.n_params / true_n - 1.0))
            trace.halfwidth.append(t.rel_halfwidth)
            trace.covered.append(bool(t.n_params_ci95[0] <= true_n <= t.n_params_ci95[1]))

    def stop(self, reason: str) -> None:
        for trace in self.traces.values():
            trace.stop = reason

    @property
    def read_flops(self) -> list[float]:
        """The FLOPs of every reading so far (the same for every target)."""
        return next(iter(self.traces.values())).flops


def run_adaptive(lab: Lab) -> None:
    study = lab.study
    while study.stop_reason() is None:
        specs = study.propose(1)
        if not specs:
            break
        lab.train(specs[0])
        lab.read()
    lab.stop(study.stop_reason() or "budget_exhausted")


def _sequential(lab: Lab, next_point) -> None:
    """Train next_point() one at a time; refit densely early, then every ~n/15 runs; the study's stop rule."""
    study, last = lab.study, 0
    while True:
        if study.n_asked >= study.cfg.max_runs:
            lab.stop("max_runs")
            break
        point = next_point()
        if point is None or point.flops > study.cfg.compute_cap - study.flops_committed:
            lab.stop("budget_exhausted")
            break
        (spec,) = study.ask([point])
        lab.train(spec, refit_now=False)
        n = len(study.ledger)
        if n > DENSE_REFIT_RUNS and n - last < max(1, n // 15):
            continue
        last = n
        study.refit()
        lab.read()
        if study.stop_reason() == "converged":
            lab.stop("converged")
            break
    if not lab.read_flops or lab.read_flops[-1] < study.ledger.flops_spent():
        study.refit()
        lab.read()


def run_random(lab: Lab, rng: np.random.Generator) -> None:
    space, cfg = SearchSpace(lab.study.cfg), lab.study.cfg

    def next_point() -> Point | None:
        u = rng.random((1, space.dims))  # with a repeating target, the last coordinate places the run's epochs
        n, d, mix = space.from_unit(u, cfg.max_run_flops)
        return space.point(n[0], d[0], mix[0], space.unique_from_unit(u, d)[0]) if np.isfinite(n[0]) else None

    _sequential(lab, next_point)


def grid_mixes(cfg: StudyConfig) -> list[np.ndarray]:
    """The mixes of the grid and pool baselines: the one fixed mix, or GRID_MIXES on the simplex."""
    if cfg.mix.space == "simplex":
        return [np.array(m) for m in GRID_MIXES]
    return [np.array([1.0])]


def band_grid(cfg: StudyConfig, budgets: np.ndarray, n_sizes: int,
              mixes: list[np.ndarray] | None = None) -> list[Point]:
    """Per budget (and mix: default the fixed one), n_sizes runs whose D/N is log-spaced across the band (within
    the study's bounds)."""
    space, points = SearchSpace(cfg), []
    for c in budgets:
        lo, hi = cfg.n_bounds(c)
        if lo > hi:
            continue
        for mix in mixes or [np.array([1.0])]:
            for n in np.geomspace(lo, hi, n_sizes):
                points.append(space.point(round(n), round(c / (FLOPS_PER_PARAM_TOKEN * round(n))), mix))
    return points


def run_grid(lab: Lab, n_budgets: int, n_sizes: int) -> None:
    """Budget by budget, cheapest first; on the simplex each budget's n_sizes are split over the grid mixes."""
    cfg = lab.study.cfg
    mixes = grid_mixes(cfg)
    sizes_per_mix = n_sizes if len(mixes) == 1 else max(2, -(-n_sizes // len(mixes)))
    for c in np.geomspace(1e17, 1e19, n_budgets):
        for spec in lab.study.ask(band_grid(cfg, np.array([c]), sizes_per_mix, mixes)):
            lab.train(spec, refit_now=False)
        lab.study.refit()
        lab.read()
    lab.stop("grid_done")


def run_pool(lab: Lab, rng: np.random.Generator) -> None:
    cfg = lab.study.cfg
    pool = band_grid(cfg, np.geomspace(1e16, 1e19, 12), 9, grid_mixes(cfg))
    used: set[int] = set()

    def next_point() -> Point | None:
        free = [i for i in range(len(pool)) if i not in used]
        if not free:
            return None
        est = lab.study.estimates
        if est is None or len(used) < cfg.proposer.seed_runs:
            choice = int(rng.choice(free))
        else:
            n = np.array([pool[i].n_params for i in free], float)
            d = np.array([pool[i].n_tokens for i in free], float)
            spread = 0.0
            for ens in est.ensembles.values():  # summed over skills
                mix = None if cfg.mix.space != "simplex" else np.array(
                    [[pool[i].mix[dom] for dom in ens.domains] for i in free], float)  # (M, n_domains)
                with np.errstate(all="ignore"):
                    spread = spread + np.log(np.maximum(ens.loss(n, d, mix), 1e-12)).var(axis=0)  # (M,) variance
            choice = free[int(np.nanargmax(spread / (FLOPS_PER_PARAM_TOKEN * n * d)))]
        used.add(choice)
        return pool[choice]

    _sequential(lab, next_point)


def true_optima(truth_name: str, cfg: StudyConfig) -> dict[str, float]:
    """Target name -> the true N*(C_target): the truth's optimum, or in a mix cell the optimum of the target's
    skill's true law at the target's own mix."""
    if truth_name not in MIXTURE_TRUTHS:
        return {"all": float(TRUTHS[truth_name].optimum(C_TARGET)[0][0])}
    laws, out = MIXTURE_TRUTHS[truth_name], {}
    for target in cfg.targets:
        (skill,) = [s for s, w in target.weights.items() if w == 1.0]
        out[target.name] = float(laws[skill].optimum(target.flops, mix=target.mix)[0][0])
    return out


def run_one(truth_name: str, noise: float, strategy: str, seed: int, args) -> list[Trace]:
    """One strategy on one cell and seed: one trace per target (one outside the mix cell)."""
    cfg = study_config(noise, seed, args, truth_name)
    truth = MIXTURE_TRUTHS.get(truth_name) or TRUTHS[truth_name]
    true_n = true_optima(truth_name, cfg)
    label = (lambda name: f"{truth_name}/{name}") if truth_name in MIXTURE_TRUTHS else (lambda name: truth_name)
    traces = {name: Trace(label(name), noise, strategy, seed) for name in true_n}
    study = Study(cfg, None)
    study.reconcile()
    lab = Lab(study, truth, noise, seed, traces, true_n)
    rng = np.random.default_rng([seed, len(strategy)])
    start = time.perf_counter()
    if strategy == "adaptive":
        run_adaptive(lab)
    elif strategy == "random":
        run_random(lab, rng)
    elif strategy == "grid":
        run_grid(lab, *args.grid)
    elif strategy == "pool":
        run_pool(lab, rng)
    else:
        raise InputError(f"--strategies: unknown strategy {strategy!r} (adaptive, random, grid, pool)")
    for trace in traces.values():
        trace.n_runs, trace.seconds = len(study.ledger), time.perf_counter() - start
    return list(traces.values())


def flops_to_median_error(traces: list[Trace], goal: float = MEDIAN_ERROR_GOAL) -> float | None:
    """First FLOP level at which the median over seeds of the latest |error| is below `goal`."""
    traces = [t for t in traces if t.flops]
    if not traces:
        return None
    levels = np.unique(np.concatenate([t.flops for t in traces]))
    for level in levels:
        errors = []
        for t in traces:
            i = np.searchsorted(t.flops, level, side="right") - 1
            errors.append(t.rel_error[i] if i >= 0 else np.inf)
        if np.median(errors) < goal:
            return float(level)
    return None


def summarize(traces: list[Trace]) -> list[dict]:
    groups: dict[tuple, list[Trace]] = {}
    for t in traces:
        groups.setdefault((t.truth, t.noise, t.strategy), []).append(t)
    rows = []
    for (truth, noise, strategy), group in groups.items():
        reached = [t.flops[-1] for t in group if t.reached]
        finals = [t for t in group if t.flops]
        rows.append({
            "truth": truth, "noise": noise, "strategy": strategy, "seeds": len(group),
            "flops_to_median_5pct": flops_to_median_error(group),
            "flops_to_tolerance_median": float(np.median(reached)) if reached else None,
            "reached_fraction": len(reached) / len(group),
            "coverage": float(np.mean([t.covered[-1] for t in finals])) if finals else None,
            "final_rel_error_median": float(np.median([t.rel_error[-1] for t in finals])) if finals else None,
            "final_halfwidth_median": float(np.median([t.halfwidth[-1] for t in finals])) if finals else None,
            "flops_spent_median": float(np.median([t.flops[-1] for t in finals])) if finals else None,
            "runs_median": float(np.median([t.n_runs for t in group])),
            "seconds_median": float(np.median([t.seconds for t in group])),
            "stops": sorted({t.stop for t in group}),
        })
    return rows


def verdict(rows: list[dict], traces: list[Trace]) -> list[dict]:
    """Per cell, issue #21's goal: adaptive reaches the tolerance (in at least half the seeds) with coverage
    >= 0.9 for at most half the FLOPs the best baseline needs to reach the same median error -- the median
    over seeds of adaptive's final |error| (`ratio_same_error`). Also given: the ratio to the best baseline's
    FLOPs to tolerance (`ratio_tolerance`) and to its FLOPs to a 5% median error (`ratio_5pct`)."""
    out = []
    for truth, noise in dict.fromkeys((r["truth"], r["noise"]) for r in rows):
        cell = [r for r in rows if (r["truth"], r["noise"]) == (truth, noise)]
        mine = next((r for r in cell if r["strategy"] == "adaptive"), None)
        if mine is None:
            continue
        flops = mine["flops_to_tolerance_median"]
        error = mine["final_rel_error_median"]
        same_error = {}
        for r in cell:
            if r["strategy"] != "adaptive" and error is not None:
                group = [t for t in traces if (t.truth, t.noise, t.strategy) == (truth, noise, r["strategy"])]
                same_error[r["strategy"]] = flops_to_median_error(group, goal=max(error, 1e-9) * (1 + 1e-9))

        def best(values: dict):
            finite = {k: v for k, v in values.items() if v is not None}
            return min(finite.items(), key=lambda kv: kv[1]) if finite else (None, None)

        base = [r for r in cell if r["strategy"] != "adaptive"]
        tol_name, tol_flops = best({r["strategy"]: r["flops_to_tolerance_median"] for r in base
                                    if r["reached_fraction"] >= 0.5})
        pct_name, pct_flops = best({r["strategy"]: r["flops_to_median_5pct"] for r in base})
        same_name, same_flops = best(same_error)
        ratio = lambda other, mine_flops=flops: mine_flops / other if mine_flops and other else None  # noqa: E731
        out.append({"truth": truth, "noise": noise, "adaptive_flops_to_tolerance": flops,
                    "adaptive_final_error_median": error, "adaptive_reached": mine["reached_fraction"],
                    "coverage": mine["coverage"],
                    "best_baseline_same_error": same_name, "baseline_flops_same_error": same_flops,
                    "ratio_same_error": ratio(same_flops),
                    "best_baseline_tolerance": tol_name, "ratio_tolerance": ratio(tol_flops),
                    "best_baseline_5pct": pct_name, "ratio_5pct": ratio(pct_flops),
                    "goal_met": bool(ratio(same_flops) is not None and ratio(same_flops) <= 0.5
                                     and (mine["coverage"] or 0) >= 0.9 and mine["reached_fraction"] >= 0.5)})
    return out


def format_table(rows: list[dict]) -> str:
    fmt = lambda x: "-" if x is None else f"{x:.3g}"  # noqa: E731
    lines = ["| truth | noise | strategy | seeds | FLOPs to median err < 5% | FLOPs to tol | reached | coverage | "
             "final err | final hw | runs |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['truth']} | {r['noise']:.3f} | {r['strategy']} | {r['seeds']} | "
                     f"{fmt(r['flops_to_median_5pct'])} | {fmt(r['flops_to_tolerance_median'])} | "
                     f"{r['reached_fraction']:.2f} | {fmt(r['coverage'])} | {fmt(r['final_rel_error_median'])} | "
                     f"{fmt(r['final_halfwidth_median'])} | {r['runs_median']:.0f} |")
    return "\n".join(lines)


def parser() -> OneLineArgumentParser:
    p = OneLineArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--truths", nargs="+", default=["besiroglu", "cross-term", "repetition"],
                   choices=sorted(TRUTHS) + sorted(MIXTURE_TRUTHS))
    p.add_argument("--noise", type=float, nargs="+", default=[0.005, 0.015, 0.03])
    p.add_argument("--strategies", nargs="+", default=["adaptive", "random", "grid", "pool"],
                   choices=["adaptive", "random", "grid", "pool"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--band", type=float, nargs=2, default=None, help="tokens per parameter (default: the study's)")
    p.add_argument("--grid", type=int, nargs=2, default=[8, 12], help="budgets and sizes of the grid baseline")
    p.add_argument("--max-flops", type=float, default=3e20)
    p.add_argument("--max-runs", type=int, default=500)
    p.add_argument("--seed-replicas", type=int, default=1, help="models per run (the mean of R noisy observations, "
                   "R x 6ND each; trainers/replicas.py)")
    p.add_argument("--n-boot", type=int, default=100)
    p.add_argument("--inner-trials", type=int, default=16)
    p.add_argument("--n-candidates", type=int, default=512)
    p.add_argument("--overhead-flops", type=float, default=2e16,
                   help="per-run fixed cost the proposer assumes (not counted in FLOPs; default 2e16)")
    p.add_argument("--bootstrap", choices=["parametric", "residual", "pairs", "laplace"], default=None,
                   help="interval method (default: the study's)")
    p.add_argument("--inflation", type=float, default=None, help="interval_inflation (default: the study's)")
    p.add_argument("--law", default="auto", choices=["auto", "chinchilla", "farseer", "data_constrained"],
                   help="the studies' law (default auto: every family, weighted; chinchilla: the earlier default)")
    p.add_argument("--no-record", action="store_true")
    return p


def main(argv=None, log=print) -> list[dict]:
    args = parser().parse_args(argv)
    if args.seeds < 1 or args.max_runs < 20 or args.n_boot < 20 or any(s < 0 for s in args.noise):
        raise InputError("--seeds must be >= 1, --max-runs >= 20, --n-boot >= 20, --noise >= 0")
    start, traces = time.perf_counter(), []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for truth in args.truths:
            for noise in args.noise:
                for strategy in args.strategies:
                    for t in run_one(truth, noise, strategy, seed, args):  # one trace per target
                        traces.append(t)
                        log(f"{t.truth} noise {noise:.3f} {strategy} seed {seed}: {t.n_runs} runs, "
                            f"{t.flops[-1]:.3g} FLOPs, err {t.rel_error[-1]:.3f}, hw {t.halfwidth[-1]:.3f}, "
                            f"covered {t.covered[-1]}, {t.stop}, {t.seconds:.0f} s"
                            if t.flops else f"{t.truth} {noise} {strategy} seed {seed}: no reading")
    rows = summarize(traces)
    log(format_table(rows))
    verdicts = verdict(rows, traces)
    for v in verdicts:
        log(str(v))
    if not args.no_record:
        provenance = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                      "commit": git_commit(), "cpu": platform.processor() or platform.machine(),
                      "n_cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                      "wall_s": round(time.perf_counter() - start, 1), "settings": vars(args)}
        append_rows(RESULTS, [{**row, **provenance} for row in rows]
                    + [{"verdict": v, **provenance} for v in verdicts]
                    + [{"trace": t.__dict__, **provenance} for t in traces])
    return rows


if __name__ == "__main__":
    main()
