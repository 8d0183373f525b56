"""The controller: the closed loop of a study (the other module that imports Ray).

    Controller(cfg, study_dir).run()      # -> the result dict also written to result.json

Loop: propose -> ask (persistent Optuna study) -> dispatch to TrainerActors -> ray.wait -> record
(runs.parquet, then tell) -> refit -> publish -> stop rule. Order of writes on a finished run:
the ledger first, then Optuna's tell, then the fit snapshot; a controller killed between any two is
reconciled on restart (a run in the ledger whose trial is still RUNNING is told then).

Restart (same command, same study dir): the frozen config is compared, finished runs are read from
the ledger, trials still RUNNING (or enqueued and WAITING) are re-dispatched with the same spec —
the same run_id, so the backend resumes from the run's last checkpoint — and nothing is recorded twice.
"""

from __future__ import annotations

import collections
import math
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import ray
from optuna.trial import TrialState
from ray.exceptions import RayActorError, RayError

from fitting.conventions import conventions_dict
from fitting.law import interval
from scheduler.actor import start_actor
from scheduler.config import StudyConfig
from scheduler.estimates import Estimates, refit
from scheduler.ledger import Ledger, freeze_config, read_result
from scheduler.metrics import StudyMetrics
from scheduler.progress import Progress
from scheduler.proposer import Point, Proposer, SearchSpace
from skillscale.atomic import atomic_write_json, finite_or_none
from skillscale.errors import InputError
from trainers.spec import RunResult, RunSpec

WAIT_TIMEOUT_S = 10.0  # how often the loop wakes up with nothing finished (progress heartbeat)


def open_optuna_study(cfg: StudyConfig, study_dir: Path) -> optuna.Study:
    """The persistent study: a journal file in the study dir, or the configured RDB URL."""
    if cfg.storage:
        storage = cfg.storage
    else:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = study_dir / "optuna.journal"
        try:
            storage = JournalStorage(JournalFileBackend(str(path)))
        except Exception as exc:  # a truncated/corrupt journal fails to replay
            raise InputError(f"{path}: Optuna journal is unreadable ({type(exc).__name__}: {exc})") from None
    try:
        study = optuna.create_study(storage=storage, study_name=cfg.name, load_if_exists=True,
                                    directions=["minimize"] * len(cfg.skills))
    except (ImportError, ValueError, RuntimeError, OSError) as exc:  # a bad RDB URL, an unreachable database
        raise InputError(f"storage: cannot open Optuna storage {cfg.storage or 'journal'!r} "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    except Exception as exc:  # SQLAlchemy's own errors (optional dependency) are not importable here
        if type(exc).__module__.startswith("sqlalchemy"):
            raise InputError(f"storage: cannot open Optuna storage {cfg.storage!r} ({type(exc).__name__})") from None
        raise
    if study.metric_names is None:
        with warnings.catch_warnings():  # marked experimental by Optuna; only labels the values
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([f"loss/{s}" for s in cfg.skills])
    return study


class Controller:
    """Runs one study to its stop (see the module docstring)."""

    def __init__(self, cfg: StudyConfig, study_dir: Path, progress: Progress | None = None,
                 time_limit_s: float | None = None):
        self.cfg = cfg
        self.deadline = time.monotonic() + time_limit_s if time_limit_s else None
        self.study_dir = Path(study_dir)
        self.progress = progress or Progress(quiet=True)
        self.study_dir.mkdir(parents=True, exist_ok=True)
        freeze_config(self.study_dir, cfg.frozen_dict())
        self.ledger = Ledger(self.study_dir / "runs.parquet")
        self.study = open_optuna_study(cfg, self.study_dir)
        self.space = SearchSpace(cfg)
        self.proposer = Proposer(cfg)
        self.metrics = StudyMetrics(cfg)
        self.attempts_path = self.study_dir / "attempts.json"
        self.attempts: dict[str, dict] = self._read_attempts()
        self.pending: collections.deque[RunSpec] = collections.deque()
        self.in_flight: dict[ray.ObjectRef, tuple[RunSpec, int]] = {}  # ref -> (spec, worker slot)
        self.actors: list = [None] * cfg.max_concurrent
        self.estimates: Estimates | None = None
        self.converged_streak = 0  # consecutive refits with every target within tolerance
        self.flops_abandoned = 0.0

    # ------------------------------------------------------------------------------ bookkeeping
    def _read_attempts(self) -> dict:
        import json

        if not self.attempts_path.exists():
            return {}
        try:
            return json.loads(self.attempts_path.read_text())
        except (OSError, ValueError):
            raise InputError(f"{self.attempts_path}: unreadable; delete it to reset retry counts") from None

    def _spec(self, trial_number: int, params: dict) -> RunSpec:
        point = self.space.from_params(params)
        return RunSpec(n_params=point.n_params, n_tokens=point.n_tokens, mix=point.mix, seed=self.cfg.seed,
                       hparams=self.cfg.hparams.overrides(), trial_number=trial_number)

    def _reconcile(self) -> None:
        """On (re)start: tell trials whose run is in the ledger, re-queue the ones in flight."""
        by_id = {r["run_id"]: r for r in self.ledger.rows}
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            spec = self._spec(trial.number, trial.params)
            if spec.run_id in by_id:
                self._tell(trial.number, by_id[spec.run_id])
            else:
                self.pending.append(spec)
        distributions = self.space.optuna_distributions()
        while self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            trial = self.study.ask(distributions)  # pops the enqueued trial, params as enqueued
            self.pending.append(self._spec(trial.number, trial.params))
        if self.pending:
            self.progress.log(f"resuming: {len(self.ledger)} runs finished, {len(self.pending)} re-dispatched "
                              "from their checkpoints")

    def _tell(self, trial_number: int, row: dict) -> None:
        if row["status"] == "ok":
            values = [row[f"loss/{s}"] for s in self.cfg.skills]
            self.study.tell(trial_number, values, skip_if_finished=True)
        else:
            self.study.tell(trial_number, state=TrialState.FAIL, skip_if_finished=True)

    # --------------------------------------------------------------------------------- dispatch
    def _actor(self, slot: int):
        if self.actors[slot] is None:
            res = self.cfg.resources
            self.actors[slot] = start_actor(self.cfg.backend, worker=f"w{slot}", num_cpus=res.num_cpus,
                                            num_gpus=res.num_gpus, name=f"skillscale:{self.cfg.name}:w{slot}")
        return self.actors[slot]

    def _free_slots(self) -> list[int]:
        busy = {slot for _, slot in self.in_flight.values()}
        return [s for s in range(self.cfg.max_concurrent) if s not in busy]

    def _dispatch(self) -> None:
        for slot in self._free_slots():
            if not self.pending:
                return
            spec = self.pending.popleft()
            run_dir = self.study_dir / "runs" / spec.run_id
            task_name = f"run {spec.run_id} N={spec.n_params:.3g} D={spec.n_tokens:.3g}"
            ref = self._actor(slot).run.options(name=task_name).remote(spec.to_dict(), str(run_dir))
            self.in_flight[ref] = (spec, slot)

    def _ask(self, points: list[Point]) -> None:
        distributions = self.space.optuna_distributions()
        for point in points:
            self.study.enqueue_trial(self.space.to_params(point))
            trial = self.study.ask(distributions)
            self.pending.append(self._spec(trial.number, trial.params))

    # ---------------------------------------------------------------------------------- results
    def _flops_committed(self) -> float:
        return (self.ledger.flops_spent() + sum(s.flops for s, _ in self.in_flight.values())
                + sum(s.flops for s in self.pending))

    def _on_error(self, spec: RunSpec, slot: int, exc: Exception) -> None:
        """A run's task failed or its actor died: retry on a fresh actor, up to max_tries. The old actor is
        killed either way: a process that raised (a CUDA error, say) may be unusable for the next run."""
        if isinstance(exc, RayActorError):
            reason = f"worker died: {type(exc).__name__}"
        else:
            cause = getattr(exc, "cause", None) or exc
            reason = f"{type(cause).__name__}: {cause}".splitlines()[0][:300]
        if self.actors[slot] is not None:
            ray.kill(self.actors[slot])
            self.actors[slot] = None  # replaced on next dispatch
        entry = self.attempts.setdefault(spec.run_id, {"tries": 0, "errors": []})
        entry["tries"] += 1
        entry["errors"].append(reason)
        atomic_write_json(self.attempts_path, self.attempts)
        if entry["tries"] >= self.cfg.max_tries:
            self.progress.log(f"run {spec.run_id} failed {entry['tries']} times, marked failed: {reason}")
            result = RunResult(run_id=spec.run_id, status="failed", n_params=spec.n_params, n_tokens=spec.n_tokens,
                               flops=spec.flops, losses={s: math.nan for s in self.cfg.skills}, error=reason)
            self._record(spec, result, tries=entry["tries"])
        else:
            self.progress.log(f"run {spec.run_id} interrupted ({reason}); re-queued, resumes from its checkpoint")
            self.pending.appendleft(spec)

    def _record(self, spec: RunSpec, result: RunResult, tries: int | None = None) -> None:
        missing = [s for s in self.cfg.skills if s not in result.losses]
        if result.status == "ok" and missing:
            result = RunResult(**{**result.to_dict(), "status": "failed",
                                  "losses": {s: result.losses.get(s, math.nan) for s in self.cfg.skills},
                                  "error": f"backend reported no loss for skills {missing}"})
        elif result.status == "ok" and not result.finite:
            result = RunResult(**{**result.to_dict(), "status": "diverged", "error": "non-finite loss"})
        if tries is None:  # this attempt finished; earlier ones are in attempts.json
            tries = self.attempts.get(spec.run_id, {}).get("tries", 0) + 1
        self.ledger.append(spec, result, tries=tries)
        row = next(r for r in self.ledger.rows if r["run_id"] == result.run_id)
        self._tell(spec.trial_number, row)
        if result.status != "ok":
            self.progress.log(f"run {spec.run_id} {result.status}: excluded from fits ({result.error or 'no reason'})")
        self._refit()
        self.progress.run_finished(self, spec, result)

    def _inside(self, estimates: Estimates | None, rows: list[dict]) -> bool:
        n_ok = sum(r["status"] == "ok" for r in rows)
        return (estimates is not None and n_ok >= self.cfg.proposer.seed_runs
                and estimates.converged(self.cfg.tolerance))

    def _refit(self) -> None:
        """Refit after a run was recorded. The stop rule's streak moves only when a new ok run joined the
        fit: a failed or diverged run changes nothing the fit sees, so it must not count as a confirmation."""
        n_ok_before = self.estimates.n_runs if self.estimates is not None else 0
        self.estimates = refit(self.cfg, self.ledger.rows)
        n_ok = self.estimates.n_runs if self.estimates is not None else 0
        if n_ok != n_ok_before or self.estimates is None:
            self.converged_streak = self.converged_streak + 1 if self._inside(self.estimates, self.ledger.rows) else 0
        self._publish_fit()

    def _restore_fit(self) -> None:
        """On (re)start: the current fit, and the stop rule's streak replayed over the refits that followed
        the last ok runs, so a restarted controller stops exactly where an uninterrupted one would."""
        rows = self.ledger.rows
        self.estimates = refit(self.cfg, rows)
        ok_ends = [i + 1 for i, r in enumerate(rows) if r["status"] == "ok"]  # prefixes ending in an ok run
        self.converged_streak = 0
        for j, end in enumerate(reversed(ok_ends[-self.cfg.confirm_refits:])):
            prefix = rows[:end]
            est = self.estimates if j == 0 else refit(self.cfg, prefix)
            if not self._inside(est, prefix):
                break
            self.converged_streak += 1
        self._publish_fit()

    def _publish_fit(self) -> None:
        if self.estimates is not None:
            snapshot = {"n_runs": self.estimates.n_runs, "flops_spent": self.ledger.flops_spent(),
                        "targets": [t.to_dict() for t in self.estimates.targets],
                        "laws": {s: f.law.to_dict() for s, f in self.estimates.fits.items()},
                        "noise": self.estimates.noise}
            atomic_write_json(self.study_dir / "fits" / f"fit-{len(self.ledger):05d}.json", finite_or_none(snapshot))
        self.metrics.publish(self)

    # ------------------------------------------------------------------------------------- loop
    def stop_reason(self) -> str | None:
        cfg = self.cfg
        if self.converged_streak >= cfg.confirm_refits:
            return "converged"
        if len(self.study.trials) >= cfg.max_runs and not self.in_flight and not self.pending:
            return "max_runs"
        if self.deadline is not None and time.monotonic() > self.deadline:
            return "time_limit"
        return None

    def run(self) -> dict:
        previous = read_result(self.study_dir)
        if previous is not None and previous["stop_reason"] != "time_limit":  # a time limit is a pause
            self.progress.log(f"{self.study_dir / 'result.json'} exists: this study already stopped")
            return previous
        self._reconcile()
        self._restore_fit()
        stop = None
        while True:
            stop = self.stop_reason()
            if stop is not None:
                break
            n_new = len(self._free_slots()) - len(self.pending)
            if n_new > 0 and len(self.study.trials) < self.cfg.max_runs:
                n_new = min(n_new, self.cfg.max_runs - len(self.study.trials))
                in_flight_points = [Point(s.n_params, s.n_tokens, s.mix) for s in
                                    [*(s for s, _ in self.in_flight.values()), *self.pending]]
                points = self.proposer.propose(n_new, self.estimates, in_flight_points, len(self.study.trials),
                                               budget_left=self.cfg.compute_cap - self._flops_committed())
                self._ask(points)
            self._dispatch()
            if not self.in_flight:
                stop = "budget_exhausted"
                break
            self.metrics.publish(self)
            ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=WAIT_TIMEOUT_S)
            if not ready:
                self.progress.heartbeat(self)
            for ref in ready:
                spec, slot = self.in_flight.pop(ref)
                try:
                    result = RunResult.from_dict(ray.get(ref))
                except RayError as exc:  # the task raised, its worker died, ran out of memory, ...
                    self._on_error(spec, slot, exc)
                    continue
                self._record(spec, result)
        if stop == "time_limit":
            self._pause_in_flight()
        else:
            self._abandon_in_flight()
        return self._finish(stop)

    def _pause_in_flight(self) -> None:
        """At the time limit: stop the workers but leave their trials RUNNING, so that rerunning the same
        command re-dispatches them and they resume from their checkpoints."""
        if self.in_flight:
            self.progress.log(f"time limit: {len(self.in_flight)} runs in flight will resume from their checkpoints "
                              "when this command is run again")
        self.in_flight.clear()
        self.pending.clear()

    def _abandon_in_flight(self) -> None:
        """On any stop but the time limit, stop the runs still training; their trials are marked failed.
        A later `skillscale run` of the same study does not restart them: result.json says it stopped."""
        for ref, (spec, _slot) in list(self.in_flight.items()):
            self.flops_abandoned += spec.flops
            ray.cancel(ref, force=False)
            self.study.tell(spec.trial_number, state=TrialState.FAIL, skip_if_finished=True)
            self.in_flight.pop(ref)
        self.pending.clear()

    def _finish(self, stop: str) -> dict:
        result = study_result(self.cfg, self.ledger, self.estimates, stop, self.flops_abandoned)
        atomic_write_json(self.study_dir / "result.json", result)
        self.progress.finished(self, result)
        self.shutdown()
        return result

    def shutdown(self) -> None:
        for actor in self.actors:
            if actor is not None:
                ray.kill(actor)
        self.actors = [None] * self.cfg.max_concurrent


def law_summary(estimates: Estimates, skill: str, target_flops: list[float]) -> dict:
    """One skill's law as `skillscale fit` reports it: point, 95% CIs, exponent a and optima."""
    with np.errstate(all="ignore"):  # a degenerate fit's optimum is 0 or inf; written as null
        return _law_summary(estimates, skill, target_flops)


def _law_summary(estimates: Estimates, skill: str, target_flops: list[float]) -> dict:
    fit, ens = estimates.fits[skill], estimates.ensembles[skill]
    point = fit.law.to_dict()
    ci = {p: list(interval(v, point=point[p])) for p, v in ens.params().items()}
    optima = []
    for c in target_flops:
        n_b, d_b = ens.optimum(c)
        n_hat, d_hat = fit.law.optimum(c)
        optima.append({"flops": c, "n_params": float(n_hat[0]), "n_params_ci95": list(interval(n_b, point=n_hat[0])),
                       "n_tokens": float(d_hat[0]), "n_tokens_ci95": list(interval(d_b, point=d_hat[0]))})
    return {"law": fit.law.to_dict(), "ci95": ci, "exponent_a": fit.law.exponent_a,
            "exponent_a_ci95": list(interval(ens.exponent_a, point=fit.law.exponent_a)),
            "noise_log_std": estimates.noise[skill],
            "optimum": optima}


def study_result(cfg: StudyConfig, ledger: Ledger, estimates: Estimates | None, stop: str,
                 flops_abandoned: float = 0.0) -> dict:
    rows = ledger.rows
    flops = sorted({t.flops for t in cfg.targets})
    targets = [{**t.to_dict(), "identifiable": math.isfinite(t.rel_halfwidth)} for t in estimates.targets] \
        if estimates else []
    return finite_or_none({
        "stop_reason": stop,
        "tolerance": cfg.tolerance,
        "flops_spent": ledger.flops_spent(),
        "flops_abandoned": flops_abandoned,
        "compute_cap": cfg.compute_cap,
        "n_runs": len(rows),
        "n_runs_ok": sum(r["status"] == "ok" for r in rows),
        "n_runs_diverged": sum(r["status"] == "diverged" for r in rows),
        "n_runs_failed": sum(r["status"] == "failed" for r in rows),
        "conventions": conventions_dict(),
        "interval": "95% bias-corrected bootstrap percentile interval; rel_halfwidth = (hi - lo) / (2 * point)",
        "targets": targets,
        "laws": {s: law_summary(estimates, s, flops) for s in cfg.skills} if estimates else {},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
