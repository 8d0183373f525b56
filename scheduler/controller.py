"""The controller: a thin Ray dispatcher around a Study (with scheduler/actor.py and scheduler/data_parallel.py, the
only modules that import Ray).

    run_study("configs/quickstart.yaml")          # the Python API of `skillscale run`: Ray up, run, Ray down
    Controller(cfg, study_dir).run()              # inside a Ray session: -> the result dict (result.json)

What the loop decides (proposals, refits, the stop rule) is the Study's (scheduler/study.py), and what it keeps on
disk (the ledger, the Optuna study, fit snapshots, result.json) its store's (scheduler/store.py). The controller
only moves RunSpecs and RunResults across Ray:

    resumed = study.reconcile()                     # re-dispatch what was in flight before a restart
    while not stopped (study.stop_reason(), or the time limit):
        pending += study.propose(free workers - pending)
        dispatch pending to TrainerActors (one per worker slot, reused across runs)
        ray.wait -> study.record(spec, result)       # or, when the task failed: retry / record_failure
        publish study.status()                       # log line, Ray metrics
    study.finish(reason)                            # result.json

Data-parallel runs (resources.gpus_per_run > 1, for runs of at least resources.data_parallel_min_flops): such a run
takes gpus_per_run free worker slots at once (it waits at the head of the queue until that many are free), their
actors are stopped so that their GPUs go to the run's Ray Train placement group, and it trains as one task
(scheduler/data_parallel.py) beside the single-slot runs; retries, pauses and resumes are those of any run.

Retries: a task that raised or whose actor died is re-dispatched on a fresh actor (the same spec, so it
resumes from its checkpoint) up to `max_tries`, counted in <study_dir>/attempts.json; then it is recorded as
failed. At the time limit the runs in flight are left as they are (their trials stay RUNNING) and the same
command resumes them; at any other stop they are cancelled and abandoned.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import time
from pathlib import Path

import ray
from ray.exceptions import RayActorError, RayError
from ray.util.metrics import Gauge

from scheduler.actor import start_actor
from scheduler.config import StudyConfig, check_backend, load_study_config
from scheduler.data_parallel import train_data_parallel
from scheduler.efficiency import SittingLog, gpus_held
from scheduler.lock import StudyLock
from scheduler.metrics import StudyMetrics
from scheduler.preflight import (
    LOCAL_RAY_ENV,
    check_address,
    check_resources,
    dashboard_lines,
    explain_ray_init_error,
    no_node_for,
    ray_env_for,
)
from scheduler.progress import Progress, one_line_ray_notices
from scheduler.recovery import set_aside
from scheduler.study import Study
from scheduler.trackers import Trackers
from skillscale.atomic import atomic_write_json
from skillscale.errors import InputError, Terminated
from trainers.spec import RunResult, RunSpec

CANCEL_MARGIN_S = 10.0  # beyond a command's kill grace: SIGKILL, reaping and the flag's polling interval
WAIT_TIMEOUT_S = 10.0  # how often the loop wakes up with nothing finished (progress heartbeat)
LOST_NODE_AVOID_S = 120.0  # new workers avoid a node a worker died on for this long (Ray marks a node whose raylet
# was killed dead only after its health checks fail, tens of seconds; a worker placed there meanwhile dies too)
PLACEMENT_TIMEOUT_S = 600.0  # a worker no node can host is given up on after this long (an autoscaler's time to add a
# node); a worker that a node could host but is busy is waited for without end


class Controller:
    """Runs one study to its stop (see the module docstring)."""

    def __init__(self, cfg: StudyConfig, study_dir: Path, progress: Progress | None = None,
                 time_limit_s: float | None = None, lock: StudyLock | None = None,
                 placement_timeout_s: float = PLACEMENT_TIMEOUT_S):
        self.cfg = cfg
        self.placement_timeout_s = placement_timeout_s
        self.deadline = time.monotonic() + time_limit_s if time_limit_s else None
        self.study_dir = Path(study_dir)
        self.progress = progress or Progress.silent()
        self.study = Study(cfg, self.study_dir, lock=lock)  # holds the study dir's lock until run() ends
        for note in self.study.store.notes:  # crash-torn state that was repaired (scheduler/store.py)
            self.progress.log(note)
        self.metrics = StudyMetrics(cfg, Gauge)
        self.trackers = Trackers.open(cfg.trackers, cfg.name, self.study_dir, cfg.frozen_dict())  # off: no-op
        self.attempts_path = self.study_dir / "attempts.json"
        self.attempts: dict[str, dict] = self._read_attempts()
        self.pending: collections.deque[RunSpec] = collections.deque()  # handed out by the Study, not dispatched
        self.in_flight: dict[ray.ObjectRef, tuple[RunSpec, int]] = {}  # ref -> (spec, worker slot)
        self.held_slots: dict[ray.ObjectRef, list[int]] = {}  # a data-parallel run's ref -> its other slots
        self.actors: list = [None] * cfg.max_concurrent
        self.placing: dict[int, tuple[ray.ObjectRef, float]] = {}  # slot -> (its actor's node() ref, since when)
        self.node_of: dict[int, str] = {}  # slot -> the Ray node its actor was placed on
        self.lost_nodes: dict[str, float] = {}  # node a worker died on -> when: new actors avoid it for a while
        self.terminate_requested = False
        self.sittings = SittingLog(self.study_dir)  # this sitting's wall time and GPU, for the efficiency
        self._device_ref: ray.ObjectRef | None = None  # a worker's answer to "which GPU?", asked once
        self._device_known = False

    def _read_attempts(self) -> dict:
        if not self.attempts_path.exists():
            return {}
        try:
            return json.loads(self.attempts_path.read_text())
        except (OSError, ValueError):  # retry counts only: start them again rather than refuse to resume
            aside = set_aside(self.attempts_path)
            self.progress.log(f"{self.attempts_path}: unreadable (kept as {aside.name}); retry counts start again")
            return {}

    # --------------------------------------------------------------------------------- dispatch
    def _actor(self, slot: int):
        if self.actors[slot] is None:
            res = self.cfg.resources
            actor = start_actor(self.cfg.backend, worker=f"w{slot}", num_cpus=res.num_cpus, num_gpus=res.num_gpus,
                                name=f"skillscale:{self.cfg.name}:w{slot}", avoid_nodes=self._nodes_to_avoid())
            self.actors[slot] = actor
            self.node_of.pop(slot, None)
            self.placing[slot] = (actor.node.remote(), time.monotonic())  # answered once Ray has placed the actor
            if self._device_ref is None and not self._device_known and res.num_gpus > 0:
                self._device_ref = actor.device.remote()
        return self.actors[slot]

    def _tick(self) -> None:
        """The sitting's wall time so far, and its GPU once a worker has answered (never waits for one)."""
        answer = None
        if self._device_ref is not None and ray.wait([self._device_ref], timeout=0)[0]:
            ref, self._device_ref = self._device_ref, None
            try:
                answer = ray.get(ref)
            except RayError:  # that worker died: the next one started asks again
                answer = None
            self._device_known = bool(answer)
        if answer:
            self.sittings.update(answer["device"], answer["peak_flops"])
        else:
            self.sittings.update()

    def _forget_actor(self, slot: int) -> None:
        """Kill a slot's actor (if any) and what is known of its placement; the slot starts a new one when needed."""
        if self.actors[slot] is not None:
            ray.kill(self.actors[slot])
            self.actors[slot] = None
        self.placing.pop(slot, None)
        self.node_of.pop(slot, None)

    # -------------------------------------------------------------------------------- placement
    def _nodes_to_avoid(self) -> frozenset[str]:
        """Nodes a worker died on in the last LOST_NODE_AVOID_S, as long as another alive node could host a worker
        (on a one-node cluster, or when only they could, avoiding them would leave the run with nowhere to go)."""
        now = time.monotonic()
        self.lost_nodes = {n: t for n, t in self.lost_nodes.items() if now - t < LOST_NODE_AVOID_S}
        if not self.lost_nodes:
            return frozenset()
        res = self.cfg.resources
        others = [n for n in ray.nodes() if n.get("NodeID") not in self.lost_nodes]
        if not others or no_node_for({"CPU": res.num_cpus, "GPU": res.num_gpus}, others) is not None:
            return frozenset()
        return frozenset(self.lost_nodes)

    def _poll_placement(self) -> None:
        """Note the nodes of actors that Ray has placed since the last look (without waiting)."""
        if not self.placing:
            return
        refs = {ref: slot for slot, (ref, _) in self.placing.items()}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
        for ref in ready:
            slot = refs[ref]
            del self.placing[slot]
            try:
                self.node_of[slot] = ray.get(ref)
            except RayError:  # the actor died before it was placed: its run's task fails too, and is retried
                pass

    def _unplaced_runs(self) -> int:
        """Runs in flight whose worker is not yet placed on a node (queued in Ray, not training)."""
        return sum(1 for ref, (_, slot) in self.in_flight.items()
                   if slot in self.placing and ref not in self.held_slots)

    def _release_idle_actors(self) -> None:
        """While a run's worker waits for a node, stop the actors of idle slots: an actor holds its CPUs and GPUs
        between runs, so after a lost node the replacement could otherwise wait for ever beside an idle one."""
        if not self._unplaced_runs():
            return
        busy = {slot for _, slot in self.in_flight.values()} | {s for held in self.held_slots.values() for s in held}
        for slot in range(self.cfg.max_concurrent):
            if slot not in busy and self.actors[slot] is not None:
                self._forget_actor(slot)

    def _check_placement(self) -> None:
        """A worker still unplaced after placement_timeout_s while no node could ever host one: one line, and the
        study pauses (its runs resume when the same command is run where a node can host them). A worker that a
        node could host but is busy elsewhere keeps waiting."""
        now = time.monotonic()
        waited = [now - since for slot, (_, since) in self.placing.items()
                  if any(s == slot for _, s in self.in_flight.values())]
        if not waited or max(waited) < self.placement_timeout_s:
            return
        res = self.cfg.resources
        line = no_node_for({"CPU": res.num_cpus, "GPU": res.num_gpus}, ray.nodes())
        if line is None:
            return
        self._pause_in_flight("no node for a worker")
        self.shutdown()
        raise InputError(f"{line}; {len(waited)} runs waited {max(waited):.0f} s for a node to be placed on; add "
                         "such a node or lower resources.num_gpus/num_cpus, then rerun to resume")

    def _free_slots(self) -> list[int]:
        busy = {slot for _, slot in self.in_flight.values()} | {s for held in self.held_slots.values() for s in held}
        return [s for s in range(self.cfg.max_concurrent) if s not in busy]

    def _dispatch(self) -> None:
        free = self._free_slots()
        while free:
            if not self.pending:
                return
            slot = free.pop(0)
            spec = self.pending.popleft()
            family = self.study.family_of(spec)
            if family is not None:  # a run family trains as one task; its other branches leave the queue with it
                for sibling in [s for s in self.pending if s.family_id == spec.family_id]:
                    self.pending.remove(sibling)
                run_dir = self.study_dir / "runs" / f"family-{family.family_id}"
                task_name = (f"family {family.family_id} N={family.n_params:.3g} "
                             f"D={family.n_tokens[0]:.3g}..{family.n_tokens[-1]:.3g}")
                ref = self._actor(slot).run_family.options(name=task_name).remote(family.to_dict(), str(run_dir))
                self.in_flight[ref] = (spec, slot)
                continue
            workers = self.cfg.resources.workers_for(spec.n_params, spec.n_tokens)
            if workers > 1:
                if len(free) < workers - 1:  # it waits, first in the queue, until enough slots are free
                    self.pending.appendleft(spec)
                    return
                self._dispatch_data_parallel(spec, [slot, *free[: workers - 1]])
                free = free[workers - 1 :]
                continue
            run_dir = self.study_dir / "runs" / spec.run_id
            task_name = f"run {spec.run_id} N={spec.n_params:.3g} D={spec.n_tokens:.3g}"
            ref = self._actor(slot).run.options(name=task_name).remote(spec.to_dict(), str(run_dir))
            self.in_flight[ref] = (spec, slot)

    def _dispatch_data_parallel(self, spec: RunSpec, slots: list[int]) -> None:
        """Train `spec` on len(slots) Ray Train workers; the slots' actors are stopped first, so that the GPUs
        and CPUs they held go to the run's placement group (they restart when a slot next takes a single run)."""
        for slot in slots:
            self._forget_actor(slot)
        res = self.cfg.resources
        run_dir = self.study_dir / "runs" / spec.run_id  # the same directory, and checkpoints, as a single-slot run
        task_name = f"run {spec.run_id} N={spec.n_params:.3g} D={spec.n_tokens:.3g} on {len(slots)} workers"
        ref = train_data_parallel.options(name=task_name).remote(
            self.cfg.backend, spec.to_dict(), str(run_dir), num_workers=len(slots), num_cpus=res.num_cpus,
            use_gpu=res.num_gpus > 0)
        self.in_flight[ref] = (spec, slots[0])
        self.held_slots[ref] = slots[1:]

    def _cancel_data_parallel(self, ref) -> None:
        """Stop a data-parallel run's task if `ref` is one: force-cancelled, its Ray Train workers go with it."""
        if self.held_slots.pop(ref, None) is not None:
            ray.cancel(ref, force=True)

    # ---------------------------------------------------------------------------------- results
    def _on_result(self, spec: RunSpec, result: RunResult) -> None:
        tries = self.attempts.get(spec.run_id, {}).get("tries", 0) + 1  # this attempt; earlier ones in attempts.json
        self._after_record(spec, self.study.record(spec, result, tries=tries))

    def _on_error(self, spec: RunSpec, slot: int, exc: Exception) -> None:
        """A run's task failed or its actor died: retry on a fresh actor, up to max_tries. The old actor is
        killed either way: a process that raised (a CUDA error, say) may be unusable for the next run."""
        if isinstance(exc, RayActorError):
            reason = f"worker died: {type(exc).__name__}"
            if slot in self.node_of:  # its replacement goes to another node if one can host it (start_actor)
                self.lost_nodes[self.node_of[slot]] = time.monotonic()
        else:
            cause = getattr(exc, "cause", None) or exc
            reason = f"{type(cause).__name__}: {cause}".splitlines()[0][:300]
        self._forget_actor(slot)  # replaced on next dispatch
        entry = self.attempts.setdefault(spec.run_id, {"tries": 0, "errors": []})
        entry["tries"] += 1
        entry["errors"].append(reason)
        atomic_write_json(self.attempts_path, self.attempts)
        if entry["tries"] >= self.cfg.max_tries:
            self.progress.log(f"run {spec.run_id} failed {entry['tries']} times, marked failed: {reason}")
            for branch in self._unit(spec):  # a family: every branch not yet recorded
                self._after_record(branch, self.study.record_failure(branch, reason, tries=entry["tries"]))
        else:
            self.progress.log(f"run {spec.run_id} interrupted ({reason}); re-queued, resumes from its checkpoint")
            self.pending.extendleft(reversed(self._unit(spec)))

    def _unit(self, spec: RunSpec) -> list[RunSpec]:
        """What one task trains: the spec, or for a family's branch every branch of it still outstanding."""
        branches = self.study.outstanding_branches(spec.family_id) if spec.family_id else []
        return branches or [spec]

    def _on_family_result(self, spec: RunSpec, results: list[RunResult]) -> None:
        """A family finished: its unrecorded branches are recorded (one row each), then one refit."""
        tries = self.attempts.get(spec.run_id, {}).get("tries", 0) + 1
        for result in self.study.record_family(results, tries=tries):
            self._after_record(spec, result)

    def _after_record(self, spec: RunSpec, result: RunResult) -> None:
        if result.status != "ok":
            self.progress.log(f"run {spec.run_id} {result.status}: excluded from fits ({result.error or 'no reason'})")
        status = self.study.status()
        self.progress.run_finished(status, result)
        self.metrics.publish(status)
        self.trackers.log_ledger(self.study.ledger.rows)
        self.trackers.log_estimates(status.n_runs, [t.to_dict() for t in status.targets])

    # ------------------------------------------------------------------------------------- loop
    def request_termination(self, signum=None, frame=None) -> None:
        """SIGTERM's handler (run_study installs it): the loop pauses at its next wake-up (within
        WAIT_TIMEOUT_S) as at a time limit, without result.json, and run() raises Terminated. A flag, not an
        exception raised in the handler: raised inside ray.wait's C call it surfaced as a SystemError."""
        self.terminate_requested = True

    def stop_reason(self) -> str | None:
        """The Study's stop rule, and the time limit (a pause: the same command resumes)."""
        if self.terminate_requested:
            return "terminated"
        stop = self.study.stop_reason()
        if stop is None and self.deadline is not None and time.monotonic() > self.deadline:
            return "time_limit"
        return stop

    def run(self) -> dict:
        """The loop (module docstring); the Study, and with it the study directory's lock, is closed at the end."""
        try:
            return self._run()
        finally:
            self.study.close()

    def _run(self) -> dict:
        previous = self.study.store.stopped_result()
        if previous is not None:
            self.progress.log(f"{self.study_dir / 'result.json'} exists: this study already stopped; its stored "
                              "result (delete the study dir to start over):")
            self.progress.finished(self.study.status(), previous, self.study_dir)
            return previous
        self.pending.extend(self.study.reconcile())
        if self.pending:
            self.progress.log(f"resuming: {self.study.status().n_runs} runs finished, {len(self.pending)} "
                              "re-dispatched from their checkpoints")
        self.metrics.publish(self.study.status())
        self.sittings.start(gpus_held(self.cfg.max_concurrent, self.cfg.resources.num_gpus), self.cfg.max_concurrent)
        while True:
            stop = self.stop_reason()
            if stop is not None:
                break
            n_new = len(self._free_slots()) - len(self.pending)
            if n_new > 0:
                self.pending.extend(self.study.propose(n_new))
            self._dispatch()
            if not self.in_flight:
                stop = self.study.stop_reason() or "budget_exhausted"
                break
            self.metrics.publish(self.study.status())
            timeout = min(WAIT_TIMEOUT_S, self.placement_timeout_s) if self.placing else WAIT_TIMEOUT_S
            ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=timeout)
            self._tick()
            self._poll_placement()
            self._release_idle_actors()
            if not ready:
                unplaced = self._unplaced_runs()
                self.progress.heartbeat(self.study.status(), training=len(self.in_flight) - unplaced, unplaced=unplaced)
                self._check_placement()
            for ref in ready:
                spec, slot = self.in_flight.pop(ref)
                self.held_slots.pop(ref, None)
                try:
                    value = ray.get(ref)
                except RayError as exc:  # the task raised, its worker died, ran out of memory, ...
                    self._on_error(spec, slot, exc)
                    continue
                if isinstance(value, list):  # a run family: one result per branch
                    self._on_family_result(spec, [RunResult.from_dict(v) for v in value])
                else:
                    self._on_result(spec, RunResult.from_dict(value))
        self._tick()
        if stop in ("time_limit", "terminated"):
            self._pause_in_flight()
        else:
            self._abandon_in_flight()
        if stop == "terminated":  # a pause that writes no result: the same command resumes
            self.shutdown()
            raise Terminated()
        result = self.study.finish(stop)
        self.trackers.log_result(result)
        self.progress.finished(self.study.status(), result, self.study_dir)
        self.shutdown()
        return result

    def _pause_in_flight(self, why: str = "time limit") -> None:
        """At the time limit (or another pause): stop the workers but leave their trials RUNNING, so that rerunning
        the same command re-dispatches them and they resume from their checkpoints."""
        if self.in_flight:
            self.progress.log(f"{why}: {len(self.in_flight)} runs in flight will resume from their checkpoints "
                              "when this command is run again")
        for ref in list(self.held_slots):  # actors stop at shutdown; a data-parallel run's task is stopped here
            self._cancel_data_parallel(ref)
        if self.cfg.backend.capabilities.stop_grace_s is not None:  # e.g. a program checkpoints on SIGTERM
            refs = [ref for ref in self.in_flight if ref not in self.held_slots]
            for ref in refs:
                ray.cancel(ref, force=False)
            self._await_cancelled(refs)
        self.in_flight.clear()
        self.pending.clear()

    def _abandon_in_flight(self) -> None:
        """On any stop but the time limit, stop the runs still training; their trials are marked failed.
        A later `skillscale run` of the same study does not restart them: result.json says it stopped."""
        for ref, (spec, _slot) in list(self.in_flight.items()):
            if ref in self.held_slots:
                self._cancel_data_parallel(ref)
            else:
                ray.cancel(ref, force=False)
            for branch in self._unit(spec):
                self.study.abandon(branch)
        self._await_cancelled(list(self.in_flight))
        self.in_flight.clear()
        self.pending.clear()

    def _await_cancelled(self, refs: list) -> None:
        """Give cancelled runs of a backend that declares `stop_grace_s` (the command backend: its program gets
        SIGTERM, then SIGKILL after `kill_grace_s`) the time to stop before shutdown kills their actors; other
        backends' calls cannot be interrupted mid-run (Ray sets only a flag on a sync actor), so they are not waited
        for."""
        grace_s = self.cfg.backend.capabilities.stop_grace_s
        if refs and grace_s is not None:
            ray.wait(refs, num_returns=len(refs), timeout=grace_s + CANCEL_MARGIN_S)

    def shutdown(self) -> None:
        self.trackers.close()
        for slot in range(self.cfg.max_concurrent):
            self._forget_actor(slot)


def run_study(config: StudyConfig | str | Path, study_dir: str | Path | None = None, *, address: str | None = None,
              num_cpus: int | None = None, dashboard: bool = False, dashboard_host: str = "127.0.0.1",
              progress: Progress | None = None, time_limit_s: float | None = None) -> dict:
    """Run (or resume) a study to its stop and return its result (also <study_dir>/result.json).

    `config`: a StudyConfig or the path of a study YAML; `study_dir` defaults to studies/<name>. Ray: the
    cluster at `address` (default $RAY_ADDRESS), else a local instance with `num_cpus` and, if asked, the
    dashboard; a Ray session already initialised in this process is used as is (and left running). The
    backend's config is checked (scheduler.config.check_backend), and the prior runs read, before Ray starts.

    What cannot work ends before or right after Ray starts, with one line (InputError, scheduler/preflight.py):
    the study dir's lock held by another controller, an address with nothing listening, a Ray that refuses the
    credentials ("auth"), a worker no node can host. A local instance listens on loopback only (LOCAL_RAY_ENV).
    SIGTERM ends the study like Ctrl-C (Terminated): runs in flight stay RUNNING and the same command resumes.
    """
    cfg = config if isinstance(config, StudyConfig) else load_study_config(config)
    check_backend(cfg)
    if cfg.prior_runs is not None:  # a bad row: one line naming file, row and column, before Ray starts
        cfg.prior_table()
    cfg.trackers.check()
    study_dir = Path(study_dir or Path("studies") / cfg.name)
    progress = progress or Progress.silent()
    address = address or (os.environ.get("RAY_ADDRESS") if not ray.is_initialized() else None)
    if address:
        check_address(address)
    lock = StudyLock(study_dir).acquire()  # a second controller stops here, before Ray starts
    owns_ray = not ray.is_initialized()
    saved_env = {k: os.environ.get(k) for k in (*LOCAL_RAY_ENV, "RAY_AUTH_MODE")}
    previous_sigterm = None
    stack = contextlib.ExitStack()
    try:
        if owns_ray:  # Ray's notices (a node marked dead: several lines) then print as one line each
            stack.enter_context(one_line_ray_notices())
            context = _init_ray(address, num_cpus, dashboard, dashboard_host)
            if dashboard and not address:
                for line in dashboard_lines(context.dashboard_url):
                    progress.log(line)
        res = cfg.resources
        waiting = check_resources({"CPU": res.num_cpus, "GPU": res.num_gpus}, ray.nodes(), can_grow=bool(address))
        if waiting:
            progress.log(waiting)
        progress.log(f"study {cfg.name!r} in {study_dir}: {len(cfg.targets)} targets, tolerance "
                     f"±{100 * cfg.tolerance:.0f}%, cap {cfg.compute_cap:.3g} FLOPs, {cfg.max_concurrent} workers "
                     f"({cfg.backend.name} backend)")
        controller = Controller(cfg, study_dir, progress, time_limit_s=time_limit_s, lock=lock)
        if owns_ray:  # after ray.init, whose own SIGTERM handler ended the process with a C++ stack dump
            previous_sigterm = signal.signal(signal.SIGTERM, controller.request_termination)
        return controller.run()
    finally:
        lock.release()
        if owns_ray:
            ray.shutdown()
            stack.close()
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


def _init_ray(address: str | None, num_cpus: int | None, dashboard: bool, dashboard_host: str):
    """ray.init for `skillscale run`: a cluster at `address`, else a local instance on loopback."""
    init = {"namespace": "skillscale", "logging_level": "WARNING", "log_to_driver": False}
    os.environ.update({k: v for k, v in ray_env_for(address).items() if k not in os.environ})  # see ray_env_for
    if address:
        init["address"] = address
    else:
        if num_cpus is not None and num_cpus < 0:
            raise InputError(f"--num-cpus: expected a number >= 0, got {num_cpus}")
        init.update(include_dashboard=dashboard, dashboard_host=dashboard_host, num_cpus=num_cpus)
    try:
        return ray.init(**init)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        raise explain_ray_init_error(exc, address) from None
