"""The study's store (scheduler/store.py), driven directly, without a Study: a finished run's writes and their
order, a reopened directory that resumes its ledger and hands back what was in flight, fit snapshots written,
read back and thinned, result.json written atomically, and the in-memory store that writes nothing."""

import copy
import json
import os
from contextlib import closing

import pytest
from optuna.trial import TrialState

from scheduler.config import parse_study_config
from scheduler.estimates import TargetEstimate, refit
from scheduler.ledger import ledger_row
from scheduler.lock import StudyLocked
from scheduler.proposer import Point
from scheduler.recovery import RUN_RECORD, trial_params, write_run_record
from scheduler.store import (
    KEEP_EVERY,
    KEEP_SNAPSHOTS,
    StudyStore,
    read_fit_snapshot,
    read_frozen_config,
    read_ledger,
    read_result,
)
from skillscale.errors import InputError
from tests.conftest import SMALL_STUDY
from trainers.spec import RunSpec


def _config():
    study = copy.deepcopy(SMALL_STUDY)
    study.update(name="store")
    study["proposer"].update(n_boot=20, n_candidates=64, inner_trials=0)
    return parse_study_config(study)


CFG = _config()
MIX = dict(CFG.mix.fixed)
GRID = [Point(int(n), int(k * n), MIX) for n in (2e7, 5e7, 1.2e8) for k in (20, 50, 100)]  # 9 runs: a fit


def _spec_of_trial(store: StudyStore):
    """A trial read back as its run: its params as a RunSpec (the Study adds seeds and families)."""
    def spec_of_trial(trial):
        params = trial_params(trial, store.distributions)
        if params is None:
            return None
        point = store.space.from_params(params)
        return RunSpec(point.n_params, point.n_tokens, point.mix, trial_number=trial.number)
    return spec_of_trial


def _ask(store: StudyStore, point: Point) -> RunSpec:
    store.optuna.enqueue_trial(store.space.to_params(point))
    return _spec_of_trial(store)(store.optuna.ask(store.distributions))


def _open(study_dir=None) -> StudyStore:
    store = StudyStore(CFG, study_dir)
    store.load(_spec_of_trial(store))
    return store


@pytest.fixture(scope="module")
def grid_rows(tmp_path_factory):
    """Ledger rows of the GRID's runs, trained by the simulated backend, and the fit they give."""
    store, backend = _open(), CFG.backend.build()
    run_dir = tmp_path_factory.mktemp("runs")
    for point in GRID:
        spec = _ask(store, point)
        store.record_run(spec, backend.run(spec, run_dir / spec.run_id))
    estimates = refit(CFG, store.ledger.rows)
    assert estimates is not None
    return store.ledger.rows, estimates


def test_a_finished_run_is_written_beside_its_checkpoints_then_the_ledger_then_told_once(tmp_path):
    backend = CFG.backend.build()
    with closing(_open(tmp_path)) as store:
        spec = _ask(store, GRID[0])
        result = backend.run(spec, tmp_path / "runs" / spec.run_id)
        row = store.record_run(spec, result)
        record = json.loads((tmp_path / "runs" / spec.run_id / RUN_RECORD).read_text())
        assert record["run_id"] == row["run_id"] == spec.run_id and record["status"] == "ok"
        assert [r["run_id"] for r in read_ledger(tmp_path).rows] == [spec.run_id]
        (trial,) = store.optuna.get_trials()
        assert trial.state == TrialState.COMPLETE and trial.values == [row[f"loss/{s}"] for s in CFG.skills]
        again = store.record_run(spec, result, tries=3)  # a finished run is never recorded twice
        assert again == row and len(store.ledger) == 1 and again["tries"] == 1


def test_reopening_a_directory_resumes_the_ledger_and_hands_back_what_was_in_flight(tmp_path):
    backend = CFG.backend.build()
    store = _open(tmp_path)
    with pytest.raises(StudyLocked, match="another controller is running this study"):
        StudyStore(CFG, tmp_path)  # one controller per study directory
    done = [_ask(store, p) for p in GRID[:2]]
    for spec in done:
        store.record_run(spec, backend.run(spec, tmp_path / "runs" / spec.run_id))
    training = _ask(store, GRID[2])  # asked, still training at the crash
    finished = _ask(store, GRID[3])  # its record written, then killed before the ledger append
    write_run_record(tmp_path / "runs" / finished.run_id,
                     ledger_row(finished, backend.run(finished, tmp_path / "runs" / finished.run_id)))
    store.optuna.enqueue_trial(store.space.to_params(GRID[4]))  # enqueued, never asked
    store.close()

    resumed = _open(tmp_path)
    assert [r["run_id"] for r in resumed.ledger.rows] == [s.run_id for s in done]
    specs, recovered = resumed.reconcile(_spec_of_trial(resumed))
    assert recovered and [s.run_id for s in specs] == [training.run_id, _spec_of_trial(resumed)(
        resumed.optuna.get_trials()[4]).run_id]
    assert [r["run_id"] for r in resumed.ledger.rows] == [s.run_id for s in done] + [finished.run_id]
    states = [t.state for t in resumed.optuna.get_trials()]
    assert states == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING, TrialState.COMPLETE, TrialState.RUNNING]
    assert resumed.notes == [] and resumed.seed_rule == "per-run"
    resumed.close()
    assert read_frozen_config(tmp_path)["name"] == "store"  # read without opening: no lock needed
    with pytest.raises(InputError, match="not a study directory"):
        read_frozen_config(tmp_path / "runs")


def test_a_fit_snapshot_is_read_back_as_written(tmp_path, grid_rows):
    rows, estimates = grid_rows
    with closing(_open(tmp_path)) as store:
        assert read_fit_snapshot(tmp_path) is None  # before the first refit
        store.ledger.write_rows(rows)
        forecast = {"flops_needed": 3e20, "runs_needed": 40.0, "reachable": True}
        store.write_fit_snapshot(estimates, forecast)
        store.write_fit_snapshot(None, None)  # no fit yet: nothing written
    assert [p.name for p in (tmp_path / "fits").iterdir()] == [f"fit-{len(rows):05d}.json"]
    snapshot = read_fit_snapshot(tmp_path)
    assert snapshot["n_runs"] == estimates.n_runs == len(rows)
    assert snapshot["flops_spent"] == pytest.approx(sum(r["flops"] for r in rows))
    assert snapshot["forecast"] == forecast and set(snapshot["laws"]) == set(CFG.skills)
    for written, target in zip(snapshot["targets"], estimates.targets, strict=True):
        back = TargetEstimate.from_dict(written)
        assert back.name == target.name and back.n_params == pytest.approx(target.n_params)
    (tmp_path / "fits" / f"fit-{len(rows):05d}.json").write_text('{"n_runs": 9, "tar')  # a disk cut it short
    with pytest.raises(InputError, match="unreadable fit snapshot"):
        read_fit_snapshot(tmp_path)


def test_pruning_keeps_the_newest_snapshots_and_every_tenth_older_one(tmp_path, grid_rows):
    rows, estimates = grid_rows
    n_runs = 33
    many = [{**rows[i % len(rows)], "run_id": f"run{i:02d}"} for i in range(n_runs)]
    (tmp_path / "fits").mkdir()
    for n in range(1, n_runs):  # the snapshots of the refits before: one per run
        (tmp_path / "fits" / f"fit-{n:05d}.json").write_text("{}")
    with closing(_open(tmp_path)) as store:
        store.ledger.write_rows(many)
        store.write_fit_snapshot(estimates, None)
    kept = sorted(int(p.stem.split("-")[1]) for p in (tmp_path / "fits").glob("fit-*.json"))
    newest = list(range(n_runs - KEEP_SNAPSHOTS + 1, n_runs + 1))
    assert kept == [n for n in range(1, newest[0]) if n % KEEP_EVERY == 0] + newest
    assert read_fit_snapshot(tmp_path)["n_runs"] == estimates.n_runs  # the newest is the one just written


def test_the_result_is_replaced_whole_and_read_back(tmp_path, monkeypatch):
    with closing(_open(tmp_path)) as store:
        assert store.stopped_result() is None
        paused = {"stop_reason": "time_limit", "flops_spent": 1e18}
        store.write_result(paused)
        assert read_result(tmp_path) == paused and store.stopped_result() is None  # a pause is not a stop
        stopped = {"stop_reason": "converged", "flops_spent": 2e18, "targets": []}
        with monkeypatch.context() as m:  # the disk fails mid-write: the old result stays, whole
            m.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device")))
            with pytest.raises(OSError, match="No space left on device"):
                store.write_result(stopped)
        assert read_result(tmp_path) == paused and not list(tmp_path.glob(".result.json.*"))
        store.write_result(stopped)
        assert read_result(tmp_path) == stopped and store.stopped_result() == stopped
        (tmp_path / "result.json").write_text('{"stop_reason": "conv')
        assert store.stopped_result() is None  # unreadable: set aside, the study runs to its stop again
        assert (tmp_path / "result.json.damaged").exists() and not (tmp_path / "result.json").exists()
        assert store.notes == [f"{tmp_path / 'result.json'}: unreadable (kept as result.json.damaged); the study "
                               "resumes to its stop and writes it again"]


def test_an_in_memory_store_keeps_everything_in_memory_and_writes_nothing(tmp_path, monkeypatch, grid_rows):
    cwd = tmp_path / "cwd"  # where a store that wrote relative paths would leave them
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    backend = CFG.backend.build()
    store = _open()
    assert store.study_dir is None and store.lock is None
    spec = _ask(store, GRID[0])
    row = store.record_run(spec, backend.run(spec, tmp_path / "runs" / spec.run_id))
    assert store.ledger.rows == [row] and store.optuna.get_trials()[0].state == TrialState.COMPLETE
    in_flight = _ask(store, GRID[1])
    assert store.reconcile(_spec_of_trial(store)) == ([in_flight], False)
    store.fail_trial(in_flight.trial_number)
    store.write_fit_snapshot(grid_rows[1], None)
    store.write_result({"stop_reason": "converged"})
    assert store.stopped_result() is None
    store.close()
    assert list(cwd.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["cwd"]

