"""The Study: everything a study decides, in one Ray-free object that the controller, the benchmark and the
tests all drive.

    study = Study(cfg, study_dir)            # study_dir=None: in memory (benchmarks, tests)
    resumed = study.reconcile()              # once, first: runs that were in flight when a process stopped
    while study.stop_reason() is None:
        specs = study.propose(k)             # up to k new runs (fewer when the budget is short)
        ...train them anywhere...
        study.record(spec, result)           # as each one finishes, in any order
        study.status()                       # a frozen StudyStatus snapshot: what progress/metrics/CLI show
    result = study.finish(study.stop_reason())   # result.json

Lifecycle, like Ray Tune's Searcher (suggest / on_trial_complete) and Optuna's ask/tell. Between
`propose` and `record` a run is *outstanding*: the Study counts its FLOPs as committed, conditions further
proposals on it, and does not stop for max_runs or the budget while it trains. A dispatcher that gives up
on a run calls `abandon(spec)` (its trial is failed), one that retries simply dispatches the same spec
again (same run_id: the backend resumes from its checkpoint), and one that is stopped by a time limit
leaves it outstanding: the next process's `reconcile()` hands it back.

What it decides:
- which runs to train: each proposal is enqueued into the persistent Optuna study and asked (ask/enqueue_trial
  only), so a trial's params are the run's spec, and a trial is read back as the same run (`_spec_of_trial`),
- the refits (scheduler/estimates.py), from the ledger of finished runs,
- the stop rule: "converged" once `confirm_refits` consecutive refits (each after a new ok run) have every
  target's 95% half-width within tolerance, with at least `seed_runs` ok runs, and a confirming refit with
  CONFIRM_MEMBERS times the ensemble agrees (module constant, below); "max_runs" once that many
  trials were asked and none is outstanding; "budget_exhausted" when nothing is outstanding and nothing
  affordable is left to propose. (A time limit is the dispatcher's: the controller adds "time_limit".)

What is on disk (the frozen config, the lock, the Optuna journal, the ledger, fit snapshots, result.json) is its
store's, `self.store` (scheduler/store.py), which also repairs crash-torn state on opening and hands back the runs
that were in flight; with study_dir None the store is in memory.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fitting.conventions import conventions_dict
from fitting.forecast import forecast_to_tolerance
from fitting.report import averaged_skill_report
from scheduler.config import StudyConfig
from scheduler.efficiency import efficiency, read_sittings
from scheduler.estimates import Estimates, TargetEstimate, fit_inputs, init_seed, refit
from scheduler.families import FamilyPoint, branch_spec, family_spec, in_flight_points, make_proposer
from scheduler.ledger import Ledger, row_unique_tokens
from scheduler.lock import StudyLock
from scheduler.proposer import Point, SearchSpace
from scheduler.recovery import trial_params
from scheduler.store import StudyStore, read_fit_snapshot, read_frozen_config, read_ledger, read_result
from skillscale.atomic import finite_or_none
from trainers.spec import FamilySpec, RunResult, RunSpec

# Law ensembles can hold members a fit left on a bound (a parameter at 0 or huge): numpy then warns (log of zero in
# scheduler/acquisition.py's _pack, overflow, NaN in a matmul) while the proposer and the refit already treat such
# members as non-finite (acquisition() scores them -inf, the bootstrap drops them). Those warnings would reach the
# console and say nothing a user can act on, so the proposal and the refit run under this errstate. The sources
# stay to be fixed where the laws are fitted.
NUMERIC_ERRSTATE = {"divide": "ignore", "over": "ignore", "invalid": "ignore", "under": "ignore"}

STOP_REASONS = ("converged", "max_runs", "budget_exhausted")  # the Study's; the controller adds "time_limit"


CONFIRM_MEMBERS = 4  # the stop's confirming refit draws this many times proposer.n_boot members. An interval's
# ends are percentiles of the ensemble, so with 100-200 members its width wobbles ~15% (cv) from refit to refit;
# stopping at the first refit whose width dips under the tolerance would pick the too-narrow draws. The larger
# ensemble (cv ~8%) confirms the stop and is the interval the result reports.


@dataclass(frozen=True)
class StudyStatus:
    """Where a study stands: a frozen snapshot for logs, metrics, `skillscale status` and reports."""

    name: str
    n_runs: int  # finished: ok, diverged or failed (rows of the ledger)
    n_runs_ok: int
    n_runs_diverged: int
    n_runs_failed: int
    n_in_flight: int  # proposed (or resumed) and not yet recorded
    n_asked: int  # trials of the persistent study
    flops_spent: float  # 6ND of the finished runs
    flops_in_flight: float  # 6ND of the outstanding runs
    flops_abandoned: float  # 6ND of runs abandoned at a stop
    compute_cap: float
    tolerance: float
    targets: tuple[TargetEstimate, ...]  # current estimate and 95% interval per target; () until identifiable
    converged_streak: int  # consecutive refits with every target within tolerance
    confirm_refits: int  # the streak needed to stop
    stop_reason: str | None  # None while the study should go on
    forecast: dict | None = None  # FLOPs/runs expected to reach the tolerance (fitting.forecast); None until
    # every target is identifiable. Compare flops_needed / runs_needed with compute_cap and max_runs.
    run_price: float | None = None  # FLOPs charged per run in the next proposal's ranking (Study.run_price)
    overhead_flops: float | None = None  # the price while the FLOP cap is the binding budget
    efficiency: dict | None = None  # model FLOPs over the GPUs' peak (scheduler/efficiency.py); None: no GPU known
    n_prior_runs: int = 0  # prior runs (scheduler/prior_runs.py): in every fit, not counted in n_runs
    flops_prior: float = 0.0  # their FLOPs, not charged to compute_cap (not in flops_spent)
    repeated: tuple[int, float] = (0, 1.0)  # runs that repeated their data, and the most epochs (Ledger.repeated)

    @property
    def precision(self) -> dict[str, float]:
        """Per target: the relative 95% half-width of N*(C_target) (inf while not identifiable)."""
        return {t.name: t.rel_halfwidth for t in self.targets}


def run_seed(study_seed: int, point: Point, replicate: int, rule: str = "per-run") -> int:
    """The seed of a run, which draws its initialisation (the data order is the study's: trainers/data.py).

    "per-run": a hash of the study seed, the run's (N, D, mix) and its replicate index, so no two runs of a
    study start from one initialisation. A seed's deviation from the mean persists across runs of one shape with
    other hyperparameters (docs/gpu.md, What the trainer's losses are like), so runs of one shape sharing a seed
    would share an error that the fit treats as independent.
    "study" (the older rule, kept for studies that started under it: scheduler/store.py, `seed_rule`): the study
    seed plus the replicate index."""
    if rule == "study":
        return study_seed + replicate
    return init_seed(study_seed, "init", point.n_params, point.n_tokens, point.mix, replicate)


class Study:
    """One study's decisions and state (see the module docstring for the lifecycle)."""

    def __init__(self, cfg: StudyConfig, study_dir: Path | None = None, lock: StudyLock | None = None):
        """With a study_dir, the Study's store (scheduler/store.py) holds the directory's lock until close(): a
        second Study (another controller) on it raises InputError at once. `lock`: one the caller already holds
        (the CLI takes it before Ray starts). Crash-torn state is repaired on opening; each repair is one line in
        `store.notes`, for the caller to log."""
        self.cfg = cfg
        self.space = SearchSpace(cfg)
        self.families: dict[str, FamilySpec] = {}  # family_id -> spec, of every family asked or resumed
        self.store = StudyStore(cfg, study_dir, lock)
        self.store.load(self._spec_of_trial)
        self.proposer = make_proposer(cfg)  # a FamilyProposer when families are enabled (scheduler/families.py)
        self.outstanding: dict[str, RunSpec] = {}  # run_id -> spec: proposed or resumed, not yet recorded
        self.flops_abandoned = 0.0
        self.estimates: Estimates | None = None
        self.converged_streak = 0
        self.confirmed = False  # the confirming refit agreed: the study has converged (stop_reason)
        self._nothing_left = False  # the last proposal found nothing affordable while nothing was outstanding
        self._reconciled = False
        self.precision_history: list[tuple[float, int, float]] = []  # (FLOPs spent, ok runs, worst half-width)
        self._restore_fit()

    @property
    def ledger(self) -> Ledger:
        """The finished runs (the store's runs.parquet, or its rows in memory), which every refit reads."""
        return self.store.ledger

    def close(self) -> None:
        """Release the study directory's lock (the Study's state on disk is always consistent)."""
        self.store.close()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------- lifecycle
    def reconcile(self) -> list[RunSpec]:
        """Call once, before the first `propose`: trials whose run is already in the ledger are told; the
        specs of trials still RUNNING (or enqueued and WAITING) are returned, outstanding, to be dispatched
        again (same run_id, so the backend resumes from the run's last checkpoint)."""
        self._reconciled = True
        resumed, recovered = self.store.reconcile(self._spec_of_trial)
        self.outstanding.update({s.run_id: s for s in resumed})
        if recovered:  # runs recorded just now join the fit, and the stop rule's streak is replayed
            self.converged_streak, self.confirmed = 0, False
            self._restore_fit()
        return resumed

    def propose(self, k: int) -> list[RunSpec]:
        """Up to k new runs (fewer at max_runs or when the budget left affords fewer), each a new trial of
        the persistent study, chosen given every outstanding run (scheduler/proposer.py)."""
        if not self._reconciled:
            raise RuntimeError("Study.reconcile() must be called once before propose()")
        k = min(k, self.cfg.max_runs - self.n_asked)
        points = []
        if k > 0:
            in_flight = in_flight_points(list(self.outstanding.values()) + self._unanswered(), self.families)
            self.proposer.run_price = self.run_price()
            left = (self.cfg.compute_cap - self.flops_committed) / self.models_per_run  # the proposer prices one model
            # prior runs count towards the seed design: a study that starts from a ladder need not fill space again
            n_seen = self.n_asked + len(self.ledger.prior_rows())
            with np.errstate(**NUMERIC_ERRSTATE):
                points = self.proposer.propose(k, self.estimates, in_flight, n_seen, budget_left=left)
        self._nothing_left = not points and not self.outstanding and k > 0
        return self.ask(points)

    def _unanswered(self) -> list[RunSpec]:
        """Runs that failed with nothing trained (0 FLOPs: a replay backend with no unused table run near them,
        trainers/replay.py). They go to the proposer as if in flight, so that it moves on instead of asking for
        the same point again."""
        return [RunSpec(n_params=int(r["requested_n_params"]), n_tokens=int(r["n_tokens"]),
                        mix={d: float(r.get(f"mix/{d}") or 0.0) for d in self.cfg.domains}, run_id=r["run_id"],
                        unique_tokens=row_unique_tokens(r))
                for r in self.ledger.trained_rows() if r["status"] == "failed" and r["flops"] == 0]

    def ask(self, points: list[Point]) -> list[RunSpec]:
        """Make trials of the given points (enqueue + ask) and hand out their specs, outstanding. `propose`
        uses it; a benchmark baseline (grid, random) may call it with its own points."""
        distributions = self.space.optuna_distributions()
        specs = []
        for point in points:
            if isinstance(point, FamilyPoint):
                specs += self._ask_family(point, distributions)
                continue
            self.store.optuna.enqueue_trial(self.space.to_params(point))
            trial = self.store.optuna.ask(distributions)
            spec = self._spec(trial.number, trial.params)
            self.outstanding[spec.run_id] = spec
            specs.append(spec)
        return specs

    def _ask_family(self, point: FamilyPoint, distributions: dict) -> list[RunSpec]:
        """One trial per branch of a run family, enqueued together and asked at once; each carries the family in
        its user_attrs, so a resumed study rebuilds the same FamilySpec (scheduler/families.py)."""
        family = family_spec(self.cfg, point)
        attrs = {"family": family.to_dict()}
        trials = []
        for i, d in enumerate(family.n_tokens):
            self.store.optuna.enqueue_trial(self.space.to_params(Point(family.n_params, d, family.mix)),
                                            user_attrs={**attrs, "branch": i})
        for _ in family.n_tokens:
            trials.append(self.store.optuna.ask(distributions))
        specs = [self._branch_of_trial(t.number, t.user_attrs) for t in trials]
        self.outstanding.update({s.run_id: s for s in specs})
        return specs

    def _branch_of_trial(self, trial_number: int, user_attrs: dict) -> RunSpec:
        family = FamilySpec.from_dict({**user_attrs["family"], "trial_number": -1})
        self.families.setdefault(family.family_id, family)
        return branch_spec(family, int(user_attrs["branch"]), trial_number)

    def family_of(self, spec: RunSpec) -> FamilySpec | None:
        """The run family `spec` is a branch of (None for a plain run)."""
        return self.families.get(spec.family_id) if spec.family_id else None

    def outstanding_branches(self, family_id: str) -> list[RunSpec]:
        """The branches of a family not yet recorded, in order of D."""
        return sorted((s for s in self.outstanding.values() if s.family_id == family_id), key=lambda s: s.branch)

    def record_family(self, results: list[RunResult], tries: int = 1) -> list[RunResult]:
        """A family's results (backend.run_family): each branch still outstanding is recorded (a branch already in
        the ledger is skipped, never recorded twice), then one refit. Returns the results as recorded."""
        recorded = []
        for result in results:
            spec = self.outstanding.get(result.run_id)
            if spec is not None:
                recorded.append(self.record(spec, result, tries=tries, refit_now=False))
        if recorded:
            self.refit()
        return recorded

    @property
    def models_per_run(self) -> int:
        """Models each run trains, as the backend declares (trainers/capabilities.py; seed replicas)."""
        return self.cfg.backend.capabilities.models_per_run

    def spec_flops(self, spec: RunSpec) -> float:
        """What a run costs: 6ND (times the models per run), or for a family's branch its share of the family's
        true cost."""
        family = self.family_of(spec)
        return family.branch_flops()[spec.branch] if family is not None else spec.flops * self.models_per_run

    def record(self, spec: RunSpec, result: RunResult, tries: int = 1, refit_now: bool = True) -> RunResult:
        """A run finished (ok, diverged or failed): ledger, Optuna's tell, refit, stop rule. Returns the result
        as recorded: "ok" without a loss for every skill becomes "failed", a non-finite loss "diverged".
        `refit_now=False` defers the refit to an explicit `refit()` (benchmarks that refit every few runs)."""
        missing = [s for s in self.cfg.skills if s not in result.losses]
        if result.status == "ok" and missing:
            result = RunResult(**{**result.to_dict(), "status": "failed",
                                  "losses": {s: result.losses.get(s, math.nan) for s in self.cfg.skills},
                                  "error": f"backend reported no loss for skills {missing}"})
        elif result.status == "ok" and not result.finite:
            result = RunResult(**{**result.to_dict(), "status": "diverged", "error": "non-finite loss"})
        self.store.record_run(spec, result, tries)  # run record, ledger, Optuna's tell; never twice
        self.outstanding.pop(spec.run_id, None)
        if refit_now:
            self.refit()
        return result

    def record_failure(self, spec: RunSpec, reason: str, tries: int) -> RunResult:
        """A run that could not be trained (its tries used up): recorded as failed, excluded from fits."""
        result = RunResult(run_id=spec.run_id, status="failed", n_params=spec.n_params, n_tokens=spec.n_tokens,
                           flops=self.spec_flops(spec), losses={s: math.nan for s in self.cfg.skills},
                           error=reason, family_id=spec.family_id, branch=spec.branch)
        return self.record(spec, result, tries=tries)

    def abandon(self, spec: RunSpec) -> None:
        """A run stopped unfinished at the study's stop: its trial is failed and its FLOPs counted as abandoned."""
        self.flops_abandoned += self.spec_flops(spec)
        self.store.fail_trial(spec.trial_number)
        self.outstanding.pop(spec.run_id, None)

    def stop_reason(self) -> str | None:
        """Why the study should stop now (one of STOP_REASONS), or None."""
        if self.confirmed:
            return "converged"
        if self.n_asked >= self.cfg.max_runs and not self.outstanding:
            return "max_runs"
        if self._nothing_left and not self.outstanding:
            return "budget_exhausted"
        return None

    def finish(self, stop: str) -> dict:
        """The study's result (written to <study_dir>/result.json): why it stopped, spend, estimates, laws."""
        result = self.result(stop)
        self.store.write_result(result)
        return result

    # ---------------------------------------------------------------------------------- reading
    @property
    def n_asked(self) -> int:
        """Trials of the persistent study (its `trials` property would deep-copy every one)."""
        return len(self.store.optuna.get_trials(deepcopy=False))

    @property
    def flops_committed(self) -> float:
        """FLOPs of finished runs plus those of outstanding runs: what the budget has left to give."""
        return self.ledger.flops_spent() + sum(self.spec_flops(s) for s in self.outstanding.values())

    def status(self) -> StudyStatus:
        rows = self.ledger.trained_rows()
        count = lambda status: sum(r["status"] == status for r in rows)  # noqa: E731
        return StudyStatus(
            name=self.cfg.name, n_runs=len(rows), n_runs_ok=count("ok"), n_runs_diverged=count("diverged"),
            n_runs_failed=count("failed"), n_in_flight=len(self.outstanding), n_asked=self.n_asked,
            flops_spent=self.ledger.flops_spent(),
            flops_in_flight=sum(self.spec_flops(s) for s in self.outstanding.values()),
            flops_abandoned=self.flops_abandoned, compute_cap=self.cfg.compute_cap, tolerance=self.cfg.tolerance,
            targets=tuple(self.estimates.targets) if self.estimates is not None else (),
            converged_streak=self.converged_streak, confirm_refits=self.cfg.confirm_refits,
            stop_reason=self.stop_reason(), forecast=self.forecast(), run_price=self.run_price(),
            overhead_flops=float(self.cfg.proposer.overhead_flops), n_prior_runs=len(self.ledger.prior_rows()),
            flops_prior=self.ledger.flops_prior(), repeated=self.ledger.repeated())

    def run_price(self) -> float:
        """FLOPs charged per run when candidates are ranked (the acquisition is information per FLOP + price).

        `proposer.overhead_flops` while the FLOP cap is the budget that binds. When the runs the tolerance needs
        exceed max_runs ("shadow" pricing, proposer.run_price), a run is scarcer than its FLOPs say: its price
        becomes the FLOPs left per run left, the Lagrangian price that spends both budgets together, so the loop
        buys fewer, larger, more informative runs instead of running out of runs with most of the cap unspent
        (BENCHMARKS.md, Realistic band, noise and replicas). The runs needed are read from the current fit alone
        (fitting.forecast from one reading: the worst half-width falling as runs^-1/2), not from this process's
        refit history, so that a resumed study prices, and so proposes, exactly as an uninterrupted one. Not
        before a quarter of max_runs: earlier the half-width still falls faster than that rate, and the
        extrapolation would overstate the runs needed."""
        base = float(self.cfg.proposer.overhead_flops)
        runs_left = self.cfg.max_runs - self.n_asked
        if (self.cfg.proposer.run_price != "shadow" or self.estimates is None or runs_left <= 0
                or self.n_asked < self.cfg.max_runs / 4):
            return base
        worst = max(t.rel_halfwidth for t in self.estimates.targets)
        if not np.isfinite(worst):
            return base
        # one reading: the forecast's rate is its prior, RATE_PRIOR
        now = forecast_to_tolerance([max(self.ledger.flops_spent(), 1.0)], [self.estimates.n_runs], [worst],
                                    self.cfg.tolerance)
        if now.runs_needed <= self.cfg.max_runs:
            return base
        return max(base, (self.cfg.compute_cap - self.flops_committed) / runs_left)

    def forecast(self) -> dict | None:
        """FLOPs and runs at which the worst target is expected to reach the tolerance, extrapolated from this
        process's refits (fitting.forecast); `reachable` compares them with compute_cap and max_runs. None until
        every target is identifiable."""
        if not self.precision_history or not np.isfinite(self.precision_history[-1][2]):
            return None
        flops, runs, halfwidth = (np.array(x, float) for x in zip(*self.precision_history, strict=True))
        fc = forecast_to_tolerance(flops, runs, halfwidth, self.cfg.tolerance)
        return {**fc.to_dict(), "reachable": fc.reachable(self.cfg.compute_cap, self.cfg.max_runs)}

    def result(self, stop: str) -> dict:
        """The result.json dict (see `finish`)."""
        status, cfg, estimates = self.status(), self.cfg, self.estimates
        targets = [{**t.to_dict(), "identifiable": math.isfinite(t.rel_halfwidth),
                    "outside_searched_n": self._outside_searched(t.n_params)} for t in status.targets]
        return finite_or_none({
            "stop_reason": stop,
            "tolerance": cfg.tolerance,
            "flops_spent": status.flops_spent,
            "flops_abandoned": status.flops_abandoned,
            "compute_cap": cfg.compute_cap,
            "n_runs": status.n_runs,
            "n_runs_ok": status.n_runs_ok,
            "n_runs_diverged": status.n_runs_diverged,
            "n_runs_failed": status.n_runs_failed,
            "n_prior_runs": status.n_prior_runs,
            "flops_prior": status.flops_prior,
            "n_runs_repeating_data": status.repeated[0],  # runs on fewer unique tokens than they read (docs/laws.md)
            "most_epochs": status.repeated[1],
            "prior_runs": ({"path": cfg.prior_runs.path, "sha256": self.ledger.prior_rows()[0]["prior_sha256"]}
                           if cfg.prior_runs is not None else None),
            "conventions": conventions_dict(),
            "interval": "95% bias-corrected bootstrap percentile interval; rel_halfwidth = (hi - lo) / (2 * point)",
            "forecast": status.forecast,
            "run_price": status.run_price,
            "efficiency": (efficiency(status.flops_spent, read_sittings(self.store.study_dir), self.ledger.rows)
                           if self.store.study_dir is not None else None),
            "targets": targets,
            "laws": self._laws() if estimates is not None else {},
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })

    def _outside_searched(self, n_params: float) -> str | None:
        """'above' / 'below' when a target's N* lies outside the config's n_params range (where no run trained:
        the law's extrapolation in N, to be read with care), None inside or when there is no N*."""
        if not math.isfinite(n_params):
            return None
        if n_params > self.cfg.n_params.hi:
            return "above"
        return "below" if n_params < self.cfg.n_params.lo else None

    # ------------------------------------------------------------------------------ refit, rule
    def refit(self) -> None:
        """Refit after runs were recorded. The stop rule's streak moves only when a new ok run joined the fit:
        a failed or diverged run changes nothing the fit sees, so it must not count as a confirmation."""
        n_ok_before = self.estimates.n_runs if self.estimates is not None else 0
        rows = self.ledger.rows
        with np.errstate(**NUMERIC_ERRSTATE):
            self.estimates = refit(self.cfg, rows)
        n_ok = self.estimates.n_runs if self.estimates is not None else 0
        if self.estimates is not None and n_ok != n_ok_before:
            worst = max(t.rel_halfwidth for t in self.estimates.targets)
            self.precision_history.append((self.ledger.flops_spent(), n_ok, worst))
        if n_ok != n_ok_before or self.estimates is None:
            self.converged_streak = self.converged_streak + 1 if self._inside(self.estimates, rows) else 0
            self._confirm(rows)
        self.store.write_fit_snapshot(self.estimates, self.forecast())

    def _confirm(self, rows: list[dict]) -> None:
        """Once the streak is long enough, refit with CONFIRM_MEMBERS times the members: converged only if that
        refit is within tolerance too, and then its estimates are the study's. A refit that does not confirm
        changes nothing else (the next ok run's refit tries again while the streak holds), so the rule depends
        on the last `confirm_refits` refits alone and replays exactly on restart (_restore_fit)."""
        self.confirmed = False
        if self.converged_streak < self.cfg.confirm_refits:
            return
        with np.errstate(**NUMERIC_ERRSTATE):
            confirming = refit(self.cfg, rows, n_boot=CONFIRM_MEMBERS * self.cfg.proposer.n_boot)
        if self._inside(confirming, rows):
            self.estimates, self.confirmed = confirming, True

    def _inside(self, estimates: Estimates | None, rows: list[dict]) -> bool:
        n_ok = sum(r["status"] == "ok" for r in rows)
        return (estimates is not None and n_ok >= self.cfg.proposer.seed_runs
                and estimates.converged(self.cfg.tolerance))

    def _restore_fit(self) -> None:
        """On (re)start: the current fit, and the stop rule's streak replayed over the refits that followed the
        last ok runs, so a restarted study stops exactly where an uninterrupted one would."""
        rows = self.ledger.rows
        if not rows:
            return
        with np.errstate(**NUMERIC_ERRSTATE):
            self.estimates = refit(self.cfg, rows)
        ok_ends = [i + 1 for i, r in enumerate(rows) if r["status"] == "ok"]  # prefixes ending in an ok run
        for j, end in enumerate(reversed(ok_ends[-self.cfg.confirm_refits:])):
            prefix = rows[:end]
            est = self.estimates if j == 0 else refit(self.cfg, prefix)
            if not self._inside(est, prefix):
                break
            self.converged_streak += 1
        self._confirm(rows)
        self.store.write_fit_snapshot(self.estimates, self.forecast())

    def _laws(self) -> dict:
        """Per skill, the law block `skillscale fit` reports (fitting/report.py), from this study's own fits,
        plus the measured noise; optima at the targets' budgets (a simplex study's at the runs' mean mix)."""
        flops = sorted({t.flops for t in self.cfg.targets})
        mix = None
        if self.cfg.mix.space == "simplex":
            mix = fit_inputs(self.cfg, self.ledger.rows)["mix"].mean(axis=0)
        with np.errstate(all="ignore"):  # a degenerate fit's optimum is 0 or inf; written as null
            return {s: {**averaged_skill_report(self.estimates.averages[s], self.estimates.ensembles[s], flops, mix),
                        "noise_log_std": self.estimates.noise[s]} for s in self.cfg.skills}

    # ----------------------------------------------------------------------------- trials as runs
    def _spec_of_trial(self, trial) -> RunSpec | None:
        """The run a trial of the persistent study is (the store reads trials back through this, so run_ids agree);
        None when the journal lost its parameters."""
        if "family" in trial.user_attrs:  # a branch of a run family: the family's own spec, as it was asked
            return self._branch_of_trial(trial.number, trial.user_attrs)
        params = trial_params(trial, self.space.optuna_distributions(), self.space.optional_params())
        return self._spec(trial.number, params) if params is not None else None

    def _spec(self, trial_number: int, params: dict) -> RunSpec:
        point = self.space.from_params(params)
        return RunSpec(n_params=point.n_params, n_tokens=point.n_tokens, mix=point.mix,
                       seed=run_seed(self.cfg.seed, point, self._replicate_index(trial_number, params),
                                     self.store.seed_rule),
                       hparams=self.cfg.hparams.overrides(), trial_number=trial_number,
                       unique_tokens=point.unique_tokens)

    def _replicate_index(self, trial_number: int, params: dict) -> int:
        """How many earlier trials asked for exactly these params: a replicate (same N, D, mix) trains with the
        next seed, so it is a new run (its own run_id) and its spread measures the noise (fitting/noise.py).
        Read from the persistent study, so a resumed study gives every trial the same seed again."""
        optional = self.space.optional_params()  # a trial from before the study could repeat data lacks these
        return sum(1 for t in self.store.optuna.get_trials(deepcopy=False)
                   if t.number < trial_number and {**optional, **t.params} == params)


def read_status(study_dir: Path) -> StudyStatus:
    """The status of a study on disk, read without opening it (no Optuna, no lock, no refit): the ledger, the
    newest fit snapshot and result.json, as `skillscale status` shows them."""
    study_dir = Path(study_dir)
    frozen = read_frozen_config(study_dir)
    ledger = read_ledger(study_dir)
    rows = ledger.trained_rows()
    result = read_result(study_dir)
    if result is not None:
        targets, forecast = result["targets"], result.get("forecast")
    else:
        snapshot = read_fit_snapshot(study_dir) or {}
        targets, forecast = snapshot.get("targets", []), snapshot.get("forecast")
    count = lambda status: sum(r["status"] == status for r in rows)  # noqa: E731
    return StudyStatus(
        name=str(frozen.get("name", study_dir.name)), n_runs=len(rows), n_runs_ok=count("ok"),
        n_runs_diverged=count("diverged"), n_runs_failed=count("failed"), n_in_flight=0, n_asked=len(rows),
        flops_spent=ledger.flops_spent(), flops_in_flight=0.0,
        flops_abandoned=float((result or {}).get("flops_abandoned") or 0.0),
        compute_cap=float(frozen.get("compute_cap") or math.nan), tolerance=float(frozen.get("tolerance") or math.nan),
        targets=tuple(TargetEstimate.from_dict(t) for t in targets), converged_streak=0,
        confirm_refits=int(frozen.get("confirm_refits") or 0),
        stop_reason=result["stop_reason"] if result is not None else None, forecast=forecast,
        efficiency=efficiency(ledger.flops_spent(), read_sittings(study_dir), rows),
        n_prior_runs=len(ledger.prior_rows()), flops_prior=ledger.flops_prior(), repeated=ledger.repeated())
