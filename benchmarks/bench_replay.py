"""Replay benchmark: which runs of a finished ladder would each design have bought, and how well does the same fit
predict the ladder's held-out runs from them?

    python3 benchmarks/bench_replay.py                    # both ladders, shares 1/3/10%, 10 seeds (~1 h, 2 cores)
    python3 benchmarks/bench_replay.py --tiny             # the CI setting: simulated ladder, 2 seeds (< 60 s)
    python3 benchmarks/bench_replay.py --ladders data-constrained --shares 0.03 --seeds 10 --methods adaptive random

Ladders (each a train table the designs choose from and a held-out table nobody chooses):
- data-constrained: Muennighoff et al. 2023 (arXiv:2305.16264) as split by ScaleBench (arXiv:2604.22753),
  ../shared/data/real-ladders/data_constrained_{train,test}.csv relative to the repository (161 / 21 runs; the
  held-out runs are larger models and longer, more repeated training).
- simulated: a 9 x 7 grid (N 1e7..1e9, D/N 5..320) from Chinchilla's law (Hoffmann et al. 2022, eq. 10) with 1%
  log-normal noise; held out: N 3e9 and 1e10 at D/N 10, 20, 40. Its truth is inside the fitted family.

Designs, each spending at most `share` of the train table's FLOPs (6ND), each seed its own draw:
- adaptive: the skillscale loop itself (scheduler.Study with the replay backend, trainers/replay.py): proposals
  where the law is most uncertain about N*(C_target) per FLOP, each answered by the nearest unused table run,
  until the study stops (tolerance 10%) or the cap is spent. A replayed run may cost more than the proposal
  it answers, so its share can exceed the cap a little; it is reported as spent.
- random: table runs in a random order, each taken while it fits in the budget.
- isoflop: an isoFLOP-style subset: budgets log-spaced over the table's run sizes up to a fifth of the cap,
  per budget up to 5 runs of distinct N within a factor 1.6 of it, cheapest budgets first.
- uncertainty: pool-based uncertainty sampling in the manner of arXiv:2604.22753: 6 random cheap runs, then
  repeatedly the affordable pool run whose observation most reduces the ensemble's predictive variance of log loss
  at the held-out inputs (X_tar, known; their losses are not), per FLOP: sum_t Cov(y_t, y_x)^2 / (Var y_x +
  sigma^2) / C_x, refitting after each run.

Every design's runs go through the same fit (`fit_and_predict`: today's Chinchilla-form fit and parametric
bootstrap). Per cell (ladder, design, share), over the seeds: the share of the table's FLOPs used, held-out R^2 of
the losses, the share of held-out losses inside their 95% prediction intervals, and N*(C_target) with its interval,
against the fit of all the train runs ("in ref": the design's point estimate inside the all-runs 95% interval).
Medians and the worst seed are printed; one row per cell goes to benchmarks/results/replay.jsonl as the cell ends.

`--prior-check` adds the prior-runs experiment (issue #34): a simulated study to its tolerance from scratch, and the
same study given half of a simulated ladder as prior runs (`--prior-ladder`: a grid at D/N 10-80, an isoFLOP ladder
across D/N 5-640, or "study": the runs the study from scratch trained); FLOPs the study itself spent and coverage of
the true N*.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _provenance import append_rows, git_commit  # benchmarks/ is on sys.path when run as a script

from fitting.law import ParametricLaw, interval
from fitting.parametric import bootstrap_parametric, fit_parametric
from skillscale.errors import InputError, OneLineArgumentParser
from trainers.replay import CLAIMS_DIR
from trainers.run_table import RunTable, TableRun, read_run_table

ROOT = Path(__file__).resolve().parents[1]
REAL_LADDERS = ROOT.parent / "shared" / "data" / "real-ladders"  # shared/ beside the clone (CI and worktrees)
RESULTS = ROOT / "benchmarks" / "results" / "replay.jsonl"
CHINCHILLA = ParametricLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al. 2022, eq. 10
Z95 = 1.959964
METHODS = ("adaptive", "random", "isoflop", "uncertainty")
LADDERS = ("data-constrained", "simulated")
SKILL = "all"  # a ladder's one loss, as a one-skill study names it

# arXiv:2604.22753, Table 2 (ScaleBench README), data-constrained: test R^2 of their method at 1% / 5% / 10% of the
# pool's cost, mean over ten law forms; random at 10%; all data.
PAPER_REFERENCE = {"method": {0.01: 0.73, 0.05: 0.85, 0.10: 0.86}, "random": {0.10: 0.12}, "all data": 0.79}


# --------------------------------------------------------------------------------------------- the fit
@dataclass(frozen=True)
class Prediction:
    """What one fit says: per held-out row the predicted loss and its 95% prediction interval; N*(C) with its
    95% interval."""

    loss: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n_star: float
    n_star_ci95: tuple[float, float]


def fit_and_predict(chosen: list[TableRun], heldout: list[TableRun], target_flops: float, n_boot: int,
                    seed: int, law: str = "chinchilla") -> Prediction:
    """THE fit every design goes through (one function, so that it can move to `skillscale fit --predict`).

    Today's fit: the Chinchilla form by Huber loss on log loss (fitting.fit_parametric) and its parametric
    bootstrap (fitting.bootstrap_parametric). The 95% prediction interval of a held-out loss combines the
    ensemble's spread of predicted log loss with the fit's noise sigma at that (N, D):
    log L_hat +- 1.96 sqrt(Var_ens log L + sigma^2). N*(C): the point fit's closed form, its interval the
    bias-corrected percentile interval of the ensemble's (fitting.law.interval)."""
    n, d, loss = _arrays(chosen)
    hn, hd, _ = _arrays(heldout)
    if law != "chinchilla":
        return _predict_with_families(chosen, heldout, target_flops, n_boot, seed, law)
    fit = fit_parametric(n, d, loss)
    ensemble = bootstrap_parametric(n, d, loss, n_boot=n_boot, fit=fit, seed=seed)
    point = fit.law.loss(hn, hd)
    with np.errstate(all="ignore"):
        spread = np.nanvar(np.log(ensemble.loss(hn, hd)), axis=0)
    sigma = fit.noise.sigma(hn, hd) if fit.noise is not None else np.full(hn.size, fit.residual_std)
    half = Z95 * np.sqrt(spread + sigma ** 2)
    n_star = float(fit.law.optimum(target_flops)[0][0])
    with np.errstate(all="ignore"):
        members = ensemble.optimum(target_flops)[0]
    return Prediction(loss=point, lo=point * np.exp(-half), hi=point * np.exp(half), n_star=n_star,
                      n_star_ci95=interval(members, point=n_star))


def _predict_with_families(chosen, heldout, target_flops, n_boot, seed, law) -> Prediction:
    """fit_and_predict through the law families (`law`: auto or one family; fitting/averaging.py): the families'
    weighted prediction, its 95% prediction interval and the mixture's N*(C) with its interval."""
    from fitting.averaging import (
        AveragedFit,
        FamilyScore,
        bootstrap_average,
        fit_average,
        member_families,
        mixture_interval,
        prediction_interval,
    )

    n, d, loss = _arrays(chosen)
    hn, hd, _ = _arrays(heldout)
    unique = _unique(chosen)
    if law == "auto":
        avg = fit_average(n, d, loss, unique=unique)
    else:
        one = fit_parametric(n, d, loss, family=law, unique=unique)
        avg = AveragedFit({law: one}, {law: FamilyScore(law, 1.0, None, None, None)})
    ensemble = bootstrap_average(avg, n, d, loss, n_boot=n_boot, seed=seed, unique=unique)
    point = avg.predict_point(hn, hd, unique=_unique(heldout))
    _, lo, hi = prediction_interval(ensemble, avg, hn, hd, unique=_unique(heldout), seed=seed)
    n_star = avg.optimum_point(target_flops)[0]
    with np.errstate(all="ignore"):
        members = ensemble.optimum(target_flops)[0]
    points = {f: float(fit.law.optimum(target_flops)[0][0]) for f, fit in avg.fits.items()}
    return Prediction(loss=point, lo=lo, hi=hi, n_star=n_star,
                      n_star_ci95=mixture_interval(members, member_families(ensemble), points))


def _unique(runs: list[TableRun]) -> np.ndarray | None:
    """Unique tokens per run (inf where the table has none); None when no run repeated its data."""
    u = np.array([r.n_unique_tokens if r.n_unique_tokens else np.inf for r in runs], float)
    return u if np.any(np.isfinite(u)) else None


def _arrays(runs: list[TableRun]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.array([r.n_params for r in runs], float), np.array([r.n_tokens for r in runs], float),
            np.array([r.losses[SKILL] for r in runs], float))


# ------------------------------------------------------------------------------------------- ladders
@dataclass(frozen=True)
class Ladder:
    name: str
    train: RunTable
    heldout: RunTable
    target_flops: float  # C at which N* is compared

    @property
    def flops(self) -> float:
        return self.train.flops


def _read(path: Path) -> RunTable:
    return read_run_table(path, [SKILL], [SKILL], {SKILL: 1.0}, field="ladder")


def data_constrained_ladder(root: Path = REAL_LADDERS) -> Ladder:
    train, test = root / "data_constrained_train.csv", root / "data_constrained_test.csv"
    if not train.exists():
        raise InputError(f"{train}: not found (the published ladders live in shared/data/real-ladders beside the "
                         "repository; see its README)")
    return Ladder("data-constrained", _read(train), _read(test), target_flops=1e22)


def simulated_ladder(folder: Path, noise: float = 0.01, seed: int = 0) -> Ladder:
    """The simulated ladder of the module docstring, written as CSVs into `folder`."""
    rng = np.random.default_rng(seed)

    def write(path: Path, points: list[tuple[float, float]]) -> RunTable:
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["n_params", "n_tokens", "loss"])
            for n, d in points:
                true = float(CHINCHILLA.loss(n, d)[0])
                writer.writerow([int(n), int(d), true * math.exp(noise * rng.standard_normal())])
        return _read(path)

    grid = [(n, n * r) for n in np.geomspace(1e7, 1e9, 9) for r in (5, 10, 20, 40, 80, 160, 320)]
    held = [(n, n * r) for n in (3e9, 1e10) for r in (10, 20, 40)]
    return Ladder("simulated", write(folder / "simulated_train.csv", grid),
                  write(folder / "simulated_test.csv", held), target_flops=1e22)


# ------------------------------------------------------------------------------------------- designs
def _within(runs: list[TableRun], budget: float) -> list[TableRun]:
    chosen, spent = [], 0.0
    for run in runs:
        if spent + run.flops <= budget:
            chosen.append(run)
            spent += run.flops
    return chosen


def design_random(ladder: Ladder, budget: float, seed: int, settings: Settings) -> list[TableRun]:
    rng = np.random.default_rng(seed)
    runs = list(ladder.train.runs)
    return _within([runs[i] for i in rng.permutation(len(runs))], budget)


def design_isoflop(ladder: Ladder, budget: float, seed: int, settings: Settings) -> list[TableRun]:
    rng = np.random.default_rng(seed)
    runs = list(ladder.train.runs)
    log_c = np.log10([r.flops for r in runs])
    top = min(log_c.max(), math.log10(budget / 5))
    levels = np.linspace(log_c.min() + 0.2, max(top, log_c.min() + 0.4), 5) + rng.uniform(-0.1, 0.1)
    chosen = []
    for level in levels:
        near = [i for i in rng.permutation(len(runs)) if abs(log_c[i] - level) < math.log10(1.6)]
        picked, sizes = [], set()
        for i in sorted(near, key=lambda i: abs(log_c[i] - level)):
            if runs[i].n_params not in sizes and runs[i] not in chosen and len(picked) < 5:
                picked.append(runs[i])
                sizes.add(runs[i].n_params)
        chosen += _within(sorted(picked, key=lambda r: r.n_params), budget - sum(r.flops for r in chosen))
    return chosen


def design_uncertainty(ladder: Ladder, budget: float, seed: int, settings: Settings) -> list[TableRun]:
    rng = np.random.default_rng(seed)
    pool = list(ladder.train.runs)
    cheap = sorted(pool, key=lambda r: r.flops)[: max(len(pool) // 2, 8)]
    chosen = _within([cheap[i] for i in rng.permutation(len(cheap))][:6], budget)
    hn, hd, _ = _arrays(list(ladder.heldout.runs))
    while True:
        spent = sum(r.flops for r in chosen)
        left = [r for r in pool if r not in chosen and spent + r.flops <= budget]
        if not left:
            return chosen
        n, d, loss = _arrays(chosen)
        try:
            fit = fit_parametric(n, d, loss)
            ens = bootstrap_parametric(n, d, loss, n_boot=settings.design_boot, fit=fit, seed=seed)
        except (InputError, ValueError):  # too few distinct runs to fit yet: a random affordable one
            chosen.append(left[int(rng.integers(len(left)))])
            continue
        cn, cd, _ = _arrays(left)
        with np.errstate(all="ignore"):
            y_t = np.log(ens.loss(hn, hd))  # (K, T)
            y_x = np.log(ens.loss(cn, cd))  # (K, P)
        ok = np.all(np.isfinite(y_t), axis=1) & np.all(np.isfinite(y_x), axis=1)
        y_t, y_x = y_t[ok] - y_t[ok].mean(0), y_x[ok] - y_x[ok].mean(0)
        cov = y_t.T @ y_x / max(ok.sum() - 1, 1)  # (T, P)
        sigma = fit.noise.sigma(cn, cd) if fit.noise is not None else np.full(cn.size, fit.residual_std)
        value = (cov ** 2).sum(0) / (y_x.var(0) + sigma ** 2) / np.array([r.flops for r in left])
        chosen.append(left[int(np.argmax(value))])


def design_adaptive(ladder: Ladder, budget: float, seed: int, settings: Settings) -> list[TableRun]:
    """The loop (scheduler.Study, in process) replaying the ladder's train table through the replay backend."""
    from scheduler import Study, parse_study_config

    runs = ladder.train.runs
    cfg = parse_study_config({
        "name": f"replay-{ladder.name}", "skills": [SKILL], "domains": [SKILL],
        "mix": {"space": "fixed", "fixed": {SKILL: 1.0}},
        "n_params": [min(r.n_params for r in runs), max(r.n_params for r in runs)],
        "n_tokens": [min(r.n_tokens for r in runs), max(r.n_tokens for r in runs)], "tokens_per_param": None,
        "targets": [{"name": SKILL, "weights": {SKILL: 1.0}, "flops": ladder.target_flops}],
        "tolerance": 0.10, "compute_cap": budget, "max_runs": settings.loop_max_runs,
        "backend": {"name": "replay", "table": ladder.train.path, "max_distance": settings.max_distance},
        "proposer": {"n_boot": settings.loop_boot, "n_candidates": 256, "inner_trials": 0,
                     "overhead_flops": settings.loop_overhead_flops, "seed_runs": 8},
        "seed": seed})
    backend = cfg.backend.build()
    by_key = {r.key(): r for r in runs}
    with tempfile.TemporaryDirectory() as tmp:
        study = Study(cfg, None)
        study.reconcile()
        while study.stop_reason() is None:
            specs = study.propose(1)
            if not specs:
                break
            for spec in specs:
                result = backend.run(spec, Path(tmp) / "runs" / spec.run_id)
                # a run that found no table run near changes nothing the fit sees: no refit (saves half the time)
                study.record(spec, result, refit_now=result.status == "ok")
        claims = Path(tmp) / "runs" / CLAIMS_DIR  # one per table run the backend answered with
        return [by_key[p.name] for p in sorted(claims.iterdir()) if p.name in by_key] if claims.is_dir() else []


DESIGNS = {"adaptive": design_adaptive, "random": design_random, "isoflop": design_isoflop,
           "uncertainty": design_uncertainty}


# ------------------------------------------------------------------------------------------ the cells
@dataclass(frozen=True)
class Settings:
    eval_boot: int = 100  # bootstrap members of the evaluation fit
    loop_boot: int = 60  # the adaptive loop's ensemble
    design_boot: int = 30  # the uncertainty design's ensemble
    max_distance: float = 1.0  # the replay backend's
    loop_overhead_flops: float = 0.0  # the loop's proposer.overhead_flops (0: runs priced at their FLOPs alone,
    # as every design here is charged; the product default is 1e17)
    loop_max_runs: int = 200  # the loop's max_runs (proposals that found no table run near count too)
    law: str = "chinchilla"  # the evaluation fit's law (auto: the law families, fitting/averaging.py)


@dataclass(frozen=True)
class SeedScore:
    share: float
    n_runs: int
    r2: float
    coverage: float
    n_star: float
    n_star_ci95: tuple[float, float]
    in_ref: bool


def score(ladder: Ladder, chosen: list[TableRun], ref: Prediction, settings: Settings, seed: int) -> SeedScore:
    heldout = list(ladder.heldout.runs)
    y = np.array([r.losses[SKILL] for r in heldout])
    share = sum(r.flops for r in chosen) / ladder.flops
    try:
        pred = fit_and_predict(chosen, heldout, ladder.target_flops, settings.eval_boot, seed, settings.law)
    except (InputError, ValueError):  # too few distinct runs to fit at all
        return SeedScore(share, len(chosen), -math.inf, 0.0, math.nan, (math.nan, math.nan), False)
    r2 = 1.0 - float(np.sum((y - pred.loss) ** 2) / np.sum((y - y.mean()) ** 2))
    coverage = float(np.mean((y >= pred.lo) & (y <= pred.hi)))
    lo, hi = ref.n_star_ci95
    return SeedScore(share, len(chosen), r2, coverage, pred.n_star, pred.n_star_ci95,
                     bool(lo <= pred.n_star <= hi))


def run_cell(ladder: Ladder, method: str, share: float, seeds: list[int], ref: Prediction,
             settings: Settings) -> dict:
    budget = share * ladder.flops
    start = time.perf_counter()
    scores = [score(ladder, DESIGNS[method](ladder, budget, seed, settings), ref, settings, seed) for seed in seeds]
    r2 = np.array([s.r2 for s in scores])
    coverage = np.array([s.coverage for s in scores])
    used = np.array([s.share for s in scores])
    rel_hw = np.array([(s.n_star_ci95[1] - s.n_star_ci95[0]) / (2 * s.n_star) for s in scores])
    return {
        "ladder": ladder.name, "method": method, "share_cap": share, "seeds": len(seeds),
        "share_used_median": float(np.median(used)), "share_used_max": float(used.max()),
        "runs_median": float(np.median([s.n_runs for s in scores])),
        "r2_median": float(np.median(r2)), "r2_worst": float(r2.min()),
        "coverage_median": float(np.median(coverage)), "coverage_worst": float(coverage.min()),
        "n_star_median": float(np.nanmedian([s.n_star for s in scores])),
        "n_star_rel_halfwidth_median": float(np.nanmedian(rel_hw)),
        "n_star_in_ref": int(sum(s.in_ref for s in scores)),
        "per_seed": [{"seed": seed, "share": s.share, "runs": s.n_runs, "r2": s.r2, "coverage": s.coverage,
                      "n_star": s.n_star, "n_star_ci95": list(s.n_star_ci95), "in_ref": s.in_ref}
                     for seed, s in zip(seeds, scores, strict=True)],
        "seconds": time.perf_counter() - start, "settings": dataclasses.asdict(settings),
    }


# --------------------------------------------------------------------------------- prior-runs check
PRIOR_LADDERS = {  # (N, D) of the simulated ladder whose random half the prior-runs check gives the study (and
    # "study": the runs the study from scratch trained)
    "grid": [(n, n * r) for n in np.geomspace(1e7, 3e8, 6) for r in (10, 20, 40, 80)],  # 24 runs, D/N 10-80
    "isoflop": [(n, c / (6 * n)) for c in (1e17, 1e18, 1e19)  # 18 runs: 6 sizes per budget, D/N 5-640
                for n in np.geomspace(math.sqrt(c / (6 * 640)), math.sqrt(c / (6 * 5)), 6)],
}


def _write_prior(path: Path, table: list[tuple]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["n_params", "n_tokens", "loss", "seed"])
        writer.writerows(table)


def prior_check(seeds: list[int], settings: Settings, ladder_kind: str = "grid") -> list[dict]:
    """A simulated study to its tolerance from scratch vs with half of a simulated ladder as prior runs."""
    from scheduler import Study, parse_study_config
    from trainers.simulated import SimulatedBackend
    from trainers.spec import RunSpec

    rows = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            sim = SimulatedBackend(truth="chinchilla", noise=0.005)
            rng = np.random.default_rng(seed)
            prior, study = Path(tmp) / "prior.csv", None
            if ladder_kind != "study":
                ladder = PRIOR_LADDERS[ladder_kind]
                half = [ladder[i] for i in sorted(rng.permutation(len(ladder))[: len(ladder) // 2])]
                specs = [RunSpec(n_params=int(n), n_tokens=int(d), mix={SKILL: 1.0}, seed=10_000 + seed)
                         for n, d in half]
                _write_prior(prior, [(s.n_params, s.n_tokens, sim.run(s, Path(tmp)).losses[SKILL], s.seed)
                                     for s in specs])
            for start in ("scratch", "prior"):
                if start == "prior" and ladder_kind == "study":  # a random half of the runs the scratch study trained
                    ok = [r for r in study.ledger.trained_rows() if r["status"] == "ok"]
                    half = [ok[i] for i in sorted(rng.permutation(len(ok))[: len(ok) // 2])]
                    _write_prior(prior, [(r["n_params"], r["n_tokens"], r[f"loss/{SKILL}"], r["seed"]) for r in half])
                cfg = parse_study_config({
                    "name": "prior-check", "skills": [SKILL], "domains": [SKILL],
                    "mix": {"space": "fixed", "fixed": {SKILL: 1.0}}, "n_params": [1e7, 3e9],
                    "n_tokens": [1e8, 1e11], "flops": [1e16, 1e19],
                    "targets": [{"name": SKILL, "weights": {SKILL: 1.0}, "flops": 1e21}], "tolerance": 0.15,
                    "compute_cap": 1e21, "max_runs": 150,
                    "backend": {"name": "simulated", "truth": "chinchilla", "noise": 0.005},
                    "proposer": {"n_boot": settings.loop_boot, "n_candidates": 256, "inner_trials": 0,
                                 "seed_runs": 8},
                    **({"prior_runs": str(prior)} if start == "prior" else {}), "seed": seed})
                backend = cfg.backend.build()
                study = Study(cfg, None)
                study.reconcile()
                while study.stop_reason() is None:
                    specs = study.propose(1)
                    if not specs:
                        break
                    for spec in specs:
                        study.record(spec, backend.run(spec, Path(tmp) / spec.run_id))
                status = study.status()
                (target,) = status.targets
                true_n = float(backend.truth[SKILL].optimum(1e21)[0][0])
                lo, hi = target.n_params_ci95
                rows.append({"check": "prior_runs", "ladder": ladder_kind, "seed": seed, "start": start,
                             "stop": study.stop_reason(),
                             "flops_spent": status.flops_spent, "runs": status.n_runs,
                             "prior_runs": status.n_prior_runs, "flops_prior": status.flops_prior,
                             "covered": bool(lo <= true_n <= hi), "rel_halfwidth": target.rel_halfwidth})
                print(f"prior-runs check ({ladder_kind} ladder), seed {seed}, {start:<8}: {study.stop_reason()} after "
                      f"{status.n_runs} runs, "
                      f"{status.flops_spent:.3g} FLOPs spent ({status.n_prior_runs} prior runs, "
                      f"{status.flops_prior:.3g} FLOPs not charged); N* ±{target.rel_halfwidth:.0%}, truth "
                      f"{'inside' if lo <= true_n <= hi else 'OUTSIDE'}", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------- main
def _shares(text: str) -> list[float]:
    try:
        shares = [float(x) for x in text.split(",")]
    except ValueError:
        raise InputError(f"--shares: expected comma-separated fractions such as 0.01,0.03, got {text!r}") from None
    if not shares or not all(0 < s <= 1 for s in shares):
        raise InputError(f"--shares: each share must be in (0, 1], got {text!r}")
    return shares


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(prog="bench_replay.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ladders", nargs="*", choices=LADDERS, default=list(LADDERS),
                        help="ladders to replay (none: only --prior-check)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--shares", default="0.01,0.03,0.10", help="FLOP shares of the train table (default "
                                                                     "0.01,0.03,0.10)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds per cell (default 10)")
    parser.add_argument("--tiny", action="store_true", help="the CI setting: simulated ladder, share 0.05, 2 seeds, "
                                                            "small ensembles")
    parser.add_argument("--loop-overhead", type=float, default=0.0, metavar="FLOPS",
                        help="the adaptive loop's proposer.overhead_flops (default 0; the product default is 1e17)")
    parser.add_argument("--prior-check", action="store_true", help="also the prior-runs experiment")
    parser.add_argument("--prior-ladder", choices=sorted([*PRIOR_LADDERS, "study"]), default="grid",
                        help="the simulated ladder whose half --prior-check gives the study (default grid)")
    parser.add_argument("--law", choices=["chinchilla", "auto", "farseer", "data_constrained"], default="chinchilla",
                        help="the evaluation fit's law (default chinchilla, as BENCHMARKS.md's rows were measured; "
                             "auto: the law families weighted)")
    parser.add_argument("--out", default=str(RESULTS), help="JSON lines file the rows are appended to")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        shares = _shares(args.shares)
        if args.seeds < 1:
            raise InputError(f"--seeds: expected >= 1, got {args.seeds}")
        if not (args.loop_overhead >= 0 and math.isfinite(args.loop_overhead)):
            raise InputError(f"--loop-overhead: expected FLOPs >= 0, got {args.loop_overhead}")
        settings = Settings(loop_overhead_flops=args.loop_overhead, law=args.law)
        ladders, seeds = args.ladders, list(range(args.seeds))
        if args.tiny:
            ladders, shares, seeds = ["simulated"], [0.05], [0, 1]
            settings = Settings(eval_boot=30, loop_boot=20, design_boot=20, loop_overhead_flops=args.loop_overhead,
                                law=args.law)
        provenance = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                      "commit": git_commit(), "python": platform.python_version(), "cpus": os.cpu_count(),
                      "tiny": bool(args.tiny)}
        record = lambda row: append_rows(args.out, [{**row, **provenance}])  # noqa: E731 (each cell as it ends)
        with tempfile.TemporaryDirectory() as tmp:
            built = [data_constrained_ladder() if name == "data-constrained" else simulated_ladder(Path(tmp))
                     for name in ladders]
            _run(built, args.methods, shares, seeds, settings, record)
            if args.prior_check:
                for row in prior_check(seeds[: max(2, min(len(seeds), 5))], settings, args.prior_ladder):
                    record(row)
    except InputError as exc:
        print(f"bench_replay.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _run(ladders: list[Ladder], methods: list[str], shares: list[float], seeds: list[int], settings: Settings,
         record) -> None:
    """Every cell, printed as a table and handed to `record` as it ends."""
    for ladder in ladders:
        ref = fit_and_predict(list(ladder.train.runs), list(ladder.heldout.runs), ladder.target_flops,
                              settings.eval_boot, seed=0, law=settings.law)
        y = np.array([r.losses[SKILL] for r in ladder.heldout.runs])
        ref_r2 = 1.0 - float(np.sum((y - ref.loss) ** 2) / np.sum((y - y.mean()) ** 2))
        ref_cov = float(np.mean((y >= ref.lo) & (y <= ref.hi)))
        lo, hi = ref.n_star_ci95
        print(f"\n{ladder.name}: {len(ladder.train.runs)} train runs ({ladder.flops:.3g} FLOPs), "
              f"{len(ladder.heldout.runs)} held out; all-runs fit: R2 {ref_r2:.3f}, PI coverage {ref_cov:.2f}, "
              f"N*({ladder.target_flops:.0e}) = {ref.n_star:.3g} [{lo:.3g}, {hi:.3g}]")
        record({"ladder": ladder.name, "method": "all-runs", "share_cap": 1.0, "r2_median": ref_r2,
                     "coverage_median": ref_cov, "n_star_median": ref.n_star, "n_star_ci95": [lo, hi]})
        print(f"{'method':<12}{'cap':>6}{'used med/max':>15}{'runs':>6}{'R2 med':>8}{'R2 worst':>9}"
              f"{'PI cov med':>11}{'worst':>7}{'N* med':>10}{'±N*':>7}{'in ref':>8}{'s':>6}")
        for share in shares:
            for method in methods:
                row = run_cell(ladder, method, share, seeds, ref, settings)
                record(row)
                print(f"{method:<12}{share:>6.0%}{row['share_used_median']:>8.2%}/{row['share_used_max']:<6.2%}"
                      f"{row['runs_median']:>6.0f}{row['r2_median']:>8.3f}{row['r2_worst']:>9.3f}"
                      f"{row['coverage_median']:>11.2f}{row['coverage_worst']:>7.2f}{row['n_star_median']:>10.3g}"
                      f"{row['n_star_rel_halfwidth_median']:>7.0%}{row['n_star_in_ref']:>5}/{len(seeds):<2}"
                      f"{row['seconds']:>6.0f}", flush=True)
        if ladder.name == "data-constrained":
            ref_text = ", ".join(f"{k:.0%}: {v}" for k, v in PAPER_REFERENCE["method"].items())
            print(f"arXiv:2604.22753 on this split (mean over ten law forms, their protocol): {ref_text}; random at "
                  f"10%: {PAPER_REFERENCE['random'][0.10]}; all data: {PAPER_REFERENCE['all data']}")


if __name__ == "__main__":
    sys.exit(main())
