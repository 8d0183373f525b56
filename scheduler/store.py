"""The study's store: everything one study keeps on disk, written so that a crash loses nothing, and read back
(and repaired) when the study resumes. The Study (scheduler/study.py) decides; the store persists and recovers,
as Optuna's JournalStorage decides and its BaseJournalBackend (`read_logs` / `append_logs`) keeps the log.

    store = StudyStore(cfg, study_dir)                   # lock taken, study.yaml frozen, journal repaired, Optuna open
    store.load(spec_of_trial)                            # once: ledger read (or rebuilt), prior runs, lost trials
    resumed, recovered = store.reconcile(spec_of_trial)  # once, before the first proposal: runs in flight at a stop
    store.record_run(spec, result, tries)                # each finished run: its run record, the ledger, Optuna's tell
    store.fail_trial(trial_number)                       # a run given up (or abandoned at the stop)
    store.write_fit_snapshot(estimates, forecast)        # after each refit
    store.write_result(result)                           # at the stop (or a time limit's pause)
    store.close()                                        # the lock released

`spec_of_trial(trial) -> RunSpec | None` is the Study's reading of a trial as a run (its params, the seed rule, its
family), passed in so that the store and the Study agree on every run_id. The Study asks new trials itself, through
`store.optuna` (enqueue_trial + ask only), and reads the finished runs from `store.ledger`.

What the store holds in <study_dir> (docs/design.md, "The study directory"):

    study.yaml                  the frozen config (scheduler/ledger.py, freeze_config): another estimand is refused
    controller.lock             held from opening to close() (scheduler/lock.py): one controller per study
    optuna.journal              the persistent Optuna study, one trial per run (or the `storage:` RDB URL); its user
                                attribute `run_seeds` names the seed rule (SEED_RULE_ATTR; scheduler/study.py run_seed)
    runs.parquet                the ledger: one row per finished run, prior runs first (scheduler/ledger.py)
    runs/<run_id>/ledger_row.json   a finished run's row beside its checkpoints: the ledger can be rebuilt from these
    fits/fit-NNNNN.json         a law snapshot after each refit, NNNNN the ledger's length; the newest KEEP_SNAPSHOTS
                                are kept, older ones thinned to every KEEP_EVERY-th
    result.json                 why the study stopped, its spend and estimates (or a time limit's pause)

Not the store's: attempts.json (the controller's retry counts), gpu_time.json (scheduler/efficiency.py), a run's
checkpoints (its backend) and report/ (scheduler/report.py).

Invariants:
- Every file but the journal is replaced whole (skillscale/atomic.py: a temporary file, fsync, rename), so a crash
  leaves the old file or the new one. The journal is append-only and Optuna fsyncs each record: only its last
  record can tear, and that is repaired on opening (scheduler/recovery.py).
- A finished run is written in this order: its ledger_row.json, the ledger, Optuna's tell (then the Study's refit
  writes a fit snapshot). A process killed between any two loses nothing: on reopening, a run whose record exists
  but which the ledger lacks enters the ledger, and a run in the ledger whose trial is still RUNNING is told.
- A finished run is recorded once: the ledger keeps a run_id's first row.
- On resume, damage is repaired and said in one line each (`notes`, for the caller to log), the damaged file kept
  as <name>.damaged: a torn journal tail is dropped, an unreadable ledger rebuilt from the run records and the
  journal's COMPLETE trials, trials the journal lost added back, an unreadable result.json set aside. Trials still
  RUNNING (or enqueued and never asked) are handed back by `reconcile`, to be trained again under the same run_id,
  resuming from their checkpoints.
- Without a study_dir the store is in memory (tests, benchmarks): the same calls, nothing written, no lock, and an
  in-memory Optuna study unless `storage:` names a database.

`read_frozen_config`, `read_ledger`, `read_result` and `read_fit_snapshot` read a study directory without opening it
(no lock, no Optuna, no repair), as `skillscale status` does.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from scheduler.config import StudyConfig
from scheduler.ledger import Ledger, freeze_config, ledger_row, row_unique_tokens
from scheduler.lock import StudyLock
from scheduler.prior_runs import prior_ledger_rows
from scheduler.proposer import Point, SearchSpace
from scheduler.recovery import (
    check_frozen_config,
    read_run_record,
    rebuild_ledger_rows,
    remove_stale_journal_lock,
    repair_journal,
    restore_lost_trials,
    set_aside,
    write_run_record,
)
from skillscale.atomic import atomic_write_json, finite_or_none
from skillscale.errors import InputError
from trainers.spec import RunResult, RunSpec

if TYPE_CHECKING:
    from scheduler.estimates import Estimates

KEEP_SNAPSHOTS = 20  # fit snapshots kept in full; older ones thinned to every KEEP_EVERY-th
KEEP_EVERY = 10
SEED_RULE_ATTR = "run_seeds"  # the Optuna study's attribute naming how its runs are seeded (scheduler/study.py)
LEGACY_SEEDS = 100_000  # "study" seeds are study seed + replicate index; "per-run" ones are 32-bit hashes

SpecOfTrial = Callable[[FrozenTrial], RunSpec | None]


class StudyStore:
    """One study's state on disk, or in memory when study_dir is None (see the module docstring for the order of
    calls and the invariants)."""

    def __init__(self, cfg: StudyConfig, study_dir: Path | None = None, lock: StudyLock | None = None):
        """Take the study directory's lock (`lock`: one the caller already holds), freeze the config, repair the
        journal and open the Optuna study. A second controller on the directory raises InputError at once."""
        self.cfg = cfg
        self.study_dir = Path(study_dir) if study_dir is not None else None
        self.notes: list[str] = []  # one line per repair made on opening or resuming
        self.lock: StudyLock | None = None
        self.space = SearchSpace(cfg)  # the trials' parameters
        self.distributions = self.space.optuna_distributions()
        if self.study_dir is not None:
            self.lock = (lock or StudyLock(self.study_dir)).acquire()
            self._note(check_frozen_config(self.study_dir / "study.yaml", cfg.frozen_dict()))
            freeze_config(self.study_dir, cfg.frozen_dict())
            if not cfg.storage:
                journal = self.study_dir / "optuna.journal"
                self._note(remove_stale_journal_lock(journal))
                self._note(repair_journal(journal))
        self.optuna = open_optuna_study(cfg, self.study_dir)
        self.seed_rule = seed_rule(self.optuna, cfg.seed, [])  # what a ledger rebuilt from the journal uses
        self.ledger = Ledger(None)  # load() reads it

    def _note(self, note: str | None) -> None:
        if note:
            self.notes.append(note)

    def close(self) -> None:
        """Release the study directory's lock (what is on disk is always consistent)."""
        if self.lock is not None:
            self.lock.release()

    # ------------------------------------------------------------------------------------------------ opening
    def load(self, spec_of_trial: SpecOfTrial) -> None:
        """Call once, after opening: the ledger (rebuilt when unreadable), the config's prior runs entered once, the
        seed rule fixed and recorded, and trials the journal lost added back."""
        self.ledger = self._open_ledger(spec_of_trial)
        self._enter_prior_runs()
        self.seed_rule = seed_rule(self.optuna, self.cfg.seed, [r["seed"] for r in self.ledger.rows if "seed" in r])
        if SEED_RULE_ATTR not in self.optuna.user_attrs:
            self.optuna.set_user_attr(SEED_RULE_ATTR, self.seed_rule)
        if self.study_dir is not None:
            self._note(restore_lost_trials(self.optuna, self.ledger.rows, self._params_of_row, self.distributions))

    def _open_ledger(self, spec_of_trial: SpecOfTrial) -> Ledger:
        """runs.parquet; one that cannot be read is set aside and rebuilt from the run records and the journal."""
        if self.study_dir is None:
            return Ledger(None)
        path = self.study_dir / "runs.parquet"
        try:
            return Ledger(path)
        except InputError as exc:
            aside = set_aside(path)
            ledger = Ledger(path)
            trials = list(self.optuna.get_trials(deepcopy=False))
            rows, how = rebuild_ledger_rows(self.cfg, self.study_dir, trials, spec_of_trial)
            ledger.write_rows(rows)
            self._note(f"{path}: {str(exc).split(': ', 1)[-1].split(';')[0]} (kept as {aside.name}); {how}")
            return ledger

    def _enter_prior_runs(self) -> None:
        """The config's prior runs enter the ledger once, first, in one atomic write (scheduler/prior_runs.py); on a
        resume they are there already (the frozen config guarantees the same file), and nothing is added twice."""
        if self.cfg.prior_runs is None:
            return
        have = self.ledger.run_ids()
        new = [r for r in prior_ledger_rows(self.cfg.prior_table(), list(self.cfg.domains))
               if r["run_id"] not in have]
        if new:
            self.ledger.write_rows(new + self.ledger.rows)

    def _params_of_row(self, row: dict) -> dict:
        """A ledger row's trial parameters, for a trial added back to the journal."""
        mix = {d: float(row.get(f"mix/{d}") or 0.0) for d in self.cfg.domains}
        return self.space.to_params(Point(int(row["requested_n_params"]), int(row["n_tokens"]), mix,
                                          row_unique_tokens(row)))

    # --------------------------------------------------------------------------------------------------- runs
    def reconcile(self, spec_of_trial: SpecOfTrial) -> tuple[list[RunSpec], bool]:
        """Call once, before the first proposal: the trials in flight when the last process stopped. Enqueued trials
        never asked are asked now; of the RUNNING ones, a trial whose run is in the ledger is told, one whose run left
        its record but not its ledger row (killed between the two) enters the ledger and is told, one whose
        parameters the journal lost is failed (a note). Returns the specs of the rest, to be trained again, and
        whether runs entered the ledger now (the Study then refits)."""
        while self.optuna.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            self.optuna.ask(self.distributions)  # pops the enqueued trial (now RUNNING), params as enqueued
        resumed, recovered = [], False
        for trial in list(self.optuna.get_trials(deepcopy=False, states=(TrialState.RUNNING,))):
            spec = spec_of_trial(trial)
            if spec is None:  # the journal lost its parameters: nothing to resume
                self.fail_trial(trial.number)
                self._note(f"trial {trial.number}: its parameters were lost from the Optuna journal; marked failed")
                continue
            row = self.ledger.row(spec.run_id)
            if row is None and self.study_dir is not None:  # finished, but killed before the ledger append
                record = read_run_record(self.study_dir / "runs" / spec.run_id)
                row = self.ledger.append_row(record) if record is not None else None
                recovered = recovered or row is not None
            if row is not None:
                self._tell(trial.number, row)
            else:
                resumed.append(spec)
        return resumed, recovered

    def record_run(self, spec: RunSpec, result: RunResult, tries: int = 1) -> dict:
        """A finished run (ok, diverged or failed): its record beside its checkpoints, then the ledger, then Optuna's
        tell. Returns its ledger row: the first one, when the run was recorded before (never twice)."""
        row = self.ledger.row(spec.run_id)
        if row is None:
            row = ledger_row(spec, result, tries)
            if self.study_dir is not None:  # first beside the run: the ledger can be rebuilt from these
                write_run_record(self.study_dir / "runs" / spec.run_id, row)
            row = self.ledger.append_row(row)
        self._tell(spec.trial_number, row)
        return row

    def fail_trial(self, trial_number: int) -> None:
        """A trial whose run will not finish (given up, abandoned at the stop, or its parameters lost)."""
        self.optuna.tell(trial_number, state=TrialState.FAIL, skip_if_finished=True)

    def _tell(self, trial_number: int, row: dict) -> None:
        if row["status"] == "ok":
            self.optuna.tell(trial_number, [row[f"loss/{s}"] for s in self.cfg.skills], skip_if_finished=True)
        else:
            self.fail_trial(trial_number)

    # ---------------------------------------------------------------------------------------- fits, result
    def write_fit_snapshot(self, estimates: Estimates | None, forecast: dict | None) -> None:
        """fits/fit-NNNNN.json (NNNNN: the ledger's length) of a refit's estimates; older snapshots thinned."""
        if estimates is None or self.study_dir is None:
            return
        snapshot = {"n_runs": estimates.n_runs, "flops_spent": self.ledger.flops_spent(),
                    "targets": [t.to_dict() for t in estimates.targets],
                    "laws": {s: f.law.to_dict() for s, f in estimates.fits.items()},
                    "families": {s: {f: score.to_dict() for f, score in avg.scores.items()}
                                 for s, avg in estimates.averages.items()},
                    "noise": estimates.noise, "forecast": forecast}
        atomic_write_json(self.study_dir / "fits" / f"fit-{len(self.ledger):05d}.json", finite_or_none(snapshot))
        self._prune_fit_snapshots()

    def _prune_fit_snapshots(self) -> None:
        """Keep the newest KEEP_SNAPSHOTS snapshots and every KEEP_EVERY-th older one: a snapshot holds every
        target, so keeping one per refit would grow the study directory with runs x targets."""
        snapshots = sorted((self.study_dir / "fits").glob("fit-*.json"))
        for path in snapshots[:-KEEP_SNAPSHOTS]:
            try:
                if int(path.stem.split("-")[1]) % KEEP_EVERY:
                    path.unlink(missing_ok=True)
            except ValueError:
                continue

    def write_result(self, result: dict) -> None:
        """result.json (the Study's `result`), replaced whole."""
        if self.study_dir is not None:
            atomic_write_json(self.study_dir / "result.json", result)

    def stopped_result(self) -> dict | None:
        """result.json of a study that already stopped (a time limit is a pause, not a stop), else None. One that
        cannot be read is set aside (a note): the study runs to its stop rule and writes it again."""
        try:
            previous = read_result(self.study_dir) if self.study_dir is not None else None
        except InputError:
            aside = set_aside(self.study_dir / "result.json")
            self._note(f"{self.study_dir / 'result.json'}: unreadable (kept as {aside.name}); the study resumes to "
                       "its stop and writes it again")
            previous = None
        return previous if previous is not None and previous.get("stop_reason") != "time_limit" else None


def open_optuna_study(cfg: StudyConfig, study_dir: Path | None) -> optuna.Study:
    """The persistent study: a journal file in the study dir, the configured RDB URL, or (no study dir and no
    storage) an in-memory study."""
    if cfg.storage:
        storage = cfg.storage
    elif study_dir is None:
        storage = None
    else:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = Path(study_dir) / "optuna.journal"
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


def seed_rule(study: optuna.Study, study_seed: int, ledger_seeds: list[int]) -> str:
    """The study's seed rule, as recorded in the persistent study (the store records it on loading): "per-run" for
    a study created now. A study without the record was created before the rule existed, or lost its journal:
    it keeps "study" when it has trials or runs and every recorded run's seed is the study seed plus a small
    replicate index, so a resumed run keeps its run_id."""
    rule = study.user_attrs.get(SEED_RULE_ATTR)
    if rule is None:
        started = bool(ledger_seeds) or bool(study.get_trials(deepcopy=False))
        legacy = all(0 <= int(s) - study_seed < LEGACY_SEEDS for s in ledger_seeds)
        rule = "study" if started and legacy else "per-run"
    return rule


# ------------------------------------------------------------------------------ reading without opening
def read_frozen_config(study_dir: Path) -> dict:
    """<study_dir>/study.yaml as written (InputError when it is missing: not a study directory, or unreadable)."""
    path = Path(study_dir) / "study.yaml"
    if not path.exists():
        raise InputError(f"{study_dir}: not a study directory (no study.yaml)")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        raise InputError(f"{path}: frozen study config is unreadable") from None


def read_ledger(study_dir: Path) -> Ledger:
    """<study_dir>/runs.parquet, read only (empty before the first run finished; InputError if it is corrupt)."""
    path = Path(study_dir) / "runs.parquet"
    return Ledger(path) if path.exists() else Ledger(None)


def read_result(study_dir: Path) -> dict | None:
    """<study_dir>/result.json, None if absent; InputError if it is not valid JSON."""
    path = Path(study_dir) / "result.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise InputError(f"{path}: unreadable result (delete it to let `skillscale run` write it again)") from None


def read_fit_snapshot(study_dir: Path) -> dict | None:
    """The newest fits/fit-NNNNN.json, None before the first refit; InputError if it is not valid JSON."""
    fits = Path(study_dir) / "fits"
    snapshots = sorted(fits.glob("fit-*.json")) if fits.exists() else []
    if not snapshots:
        return None
    try:
        return json.loads(snapshots[-1].read_text())
    except (OSError, ValueError):
        raise InputError(f"{snapshots[-1]}: unreadable fit snapshot (delete it; the next refit writes a new one)") \
            from None
