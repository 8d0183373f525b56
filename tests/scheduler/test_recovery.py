"""Crash-torn state is repaired, not fatal (scheduler/recovery.py): the Optuna journal cut at any byte, a
journal whose torn tail was appended onto, a ledger rebuilt from the run records and the journal."""

import json
import math
import warnings

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.distributions import FloatDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from scheduler.recovery import (
    read_run_records,
    rebuild_ledger_rows,
    repair_journal,
    restore_lost_trials,
    trial_params,
    write_run_record,
)
from skillscale.errors import InputError

optuna.logging.set_verbosity(optuna.logging.ERROR)
DIST = {"log10_n_params": FloatDistribution(7, 9.5), "log10_n_tokens": FloatDistribution(8, 11)}
SKILLS = ["knowledge", "code"]


def _open(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(path))), study_name="s",
                                    load_if_exists=True, directions=["minimize"] * 2)
        if study.metric_names is None:
            study.set_metric_names([f"loss/{s}" for s in SKILLS])
    return study


def _one_trial(study, i):
    """What the controller does per run: enqueue, ask, tell."""
    study.enqueue_trial({"log10_n_params": 7 + 0.3 * i, "log10_n_tokens": 8 + 0.2 * i})
    trial = study.ask(DIST)
    study.tell(trial.number, [3.0 - 0.1 * i, 2.0 - 0.05 * i])


@pytest.fixture(scope="module")
def journal_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("journal") / "optuna.journal"
    study = _open(path)
    for i in range(5):
        _one_trial(study, i)
    study.enqueue_trial({"log10_n_params": 8.5, "log10_n_tokens": 9.5})
    study.ask(DIST)  # the last run in flight
    return path.read_bytes()


def _trials(path):
    return [(t.number, t.state, t.params, t.values) for t in _open(path).trials]


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0, 1))
def test_a_journal_cut_at_any_byte_is_repaired_and_stays_writable(journal_bytes, tmp_path_factory, cut):
    path = tmp_path_factory.mktemp("cut") / "optuna.journal"
    full = tmp_path_factory.mktemp("full") / "optuna.journal"
    full.write_bytes(journal_bytes)
    original = {n: (state, params, values) for n, state, params, values in _trials(full)}
    path.write_bytes(journal_bytes[: int(cut * len(journal_bytes))])
    note = repair_journal(path)
    assert note is None or ("\n" not in note and "repaired" in note)
    survived = _trials(path)
    for number, state, params, values in survived:  # a prefix of what was written, never something else
        o_state, o_params, o_values = original[number]
        assert params.items() <= o_params.items()
        assert state in (o_state, TrialState.RUNNING, TrialState.WAITING)
        assert values is None or values == o_values
    _one_trial(_open(path), 9)  # the resumed controller writes on ...
    assert len(_trials(path)) == len(survived) + 1  # ... and the next one reads it all back
    assert repair_journal(path) is None


def test_a_torn_tail_that_was_appended_onto_is_salvaged(journal_bytes, tmp_path):
    """What the old code did: `truncate -s -37`, then a resume appends onto the torn line, and the merged
    line breaks that resume and every later one."""
    path = tmp_path / "optuna.journal"
    path.write_bytes(journal_bytes[:-37])
    study = _open(path)  # Optuna skips the torn tail on reading, and appends onto it
    n_before = len(study.trials)
    with pytest.raises(ValueError):  # Optuna's own JSONDecodeError: the traceback of issue #16
        _one_trial(study, 7)
    note = repair_journal(path)
    assert "kept 1 whole record(s)" in note and "optuna.journal.damaged" in note and "\n" not in note
    assert (tmp_path / "optuna.journal.damaged").read_bytes() != path.read_bytes()
    complete = sum(t[1] == TrialState.COMPLETE for t in _trials(path))
    assert len(_trials(path)) >= n_before
    _one_trial(_open(path), 8)  # resumes, and stays readable
    assert sum(t[1] == TrialState.COMPLETE for t in _trials(path)) == complete + 1
    assert repair_journal(path) is None


def test_damage_in_the_middle_is_one_line_not_a_guess(journal_bytes, tmp_path):
    path = tmp_path / "optuna.journal"
    lines = journal_bytes.split(b"\n")
    lines[2] = lines[2][:10] + b"#garbage"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(InputError, match=r"optuna.journal: Optuna journal record 3 of \d+ is damaged"):
        repair_journal(path)


def _row(i, status="ok"):
    return {"run_id": f"r{i:02d}", "trial_number": i, "status": status, "error": None, "requested_n_params": 10**7 + i,
            "n_params": 10**7 + i, "n_tokens": 10**8, "flops": 6.0 * (10**7 + i) * 10**8,
            "mix/code": 0.5, "mix/knowledge": 0.5,
            "loss/code": 2.0 if status == "ok" else math.nan, "loss/knowledge": 3.0 if status == "ok" else math.nan,
            "wall_s": 1.5, "tokens_per_s": 1e6, "mfu": 0.1, "tries": 1, "finished_at": 1000.0 + i}


def _same(a, b):
    return a.keys() == b.keys() and all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)


def test_the_ledger_is_rebuilt_exactly_from_the_run_records(tmp_path):
    rows = [_row(i, "failed" if i == 2 else "ok") for i in range(5)]
    for row in rows:
        write_run_record(tmp_path / "runs" / row["run_id"], row)
    (tmp_path / "runs" / "r09").mkdir()
    (tmp_path / "runs" / "r09" / "ledger_row.json").write_text('{"run_id": "r0')  # torn: skipped, said
    rebuilt, note = rebuild_ledger_rows(type("Cfg", (), {"skills": SKILLS}), tmp_path, [], lambda t: None)
    assert len(rebuilt) == 5 and all(_same(a, b) for a, b in zip(rows, rebuilt, strict=True))
    assert "5 from runs/*/ledger_row.json, 0 from COMPLETE Optuna trials (1 unreadable" in note
    assert read_run_records(tmp_path)[1] == 1


def test_runs_without_a_record_are_rebuilt_from_their_complete_trials(journal_bytes, tmp_path):
    from trainers.spec import RunSpec

    path = tmp_path / "optuna.journal"
    path.write_bytes(journal_bytes)
    trials = _open(path).trials

    def spec_of(trial):
        p = trial_params(trial, DIST)
        return RunSpec(round(10 ** p["log10_n_params"]), round(10 ** p["log10_n_tokens"]), {"code": 1.0},
                       trial_number=trial.number)

    rows, note = rebuild_ledger_rows(type("Cfg", (), {"skills": SKILLS}), tmp_path, trials, spec_of)
    assert [r["trial_number"] for r in rows] == [0, 1, 2, 3, 4]  # the one in flight is not a finished run
    assert rows[1]["loss/knowledge"] == pytest.approx(2.9) and rows[1]["status"] == "ok"
    assert "0 from runs/*/ledger_row.json, 5 from COMPLETE Optuna trials" in note


def test_trials_lost_from_the_journal_are_added_back_in_order(journal_bytes, tmp_path):
    path = tmp_path / "optuna.journal"
    path.write_bytes(journal_bytes)
    study = _open(path)
    rows = [{**_row(i), "loss/knowledge": t.values[0], "loss/code": t.values[1]}
            for i, t in enumerate(study.trials) if t.state == TrialState.COMPLETE]
    lines = journal_bytes.split(b"\n")
    creates = [i for i, line in enumerate(lines) if line.startswith(b'{"op_code":4,')]
    path.write_bytes(b"\n".join(lines[:creates[2]]) + b"\n")  # trials 2.. gone, their runs in the ledger
    study = _open(path)
    assert len(study.trials) == 2
    note = restore_lost_trials(study, rows, lambda r: {"log10_n_params": 7 + 0.3 * r["trial_number"],
                                                       "log10_n_tokens": 8 + 0.2 * r["trial_number"]}, DIST)
    assert "lost 3 trials" in note
    trials = _open(path).trials
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert [t.values for t in trials] == [[r["loss/knowledge"], r["loss/code"]] for r in rows]
    assert restore_lost_trials(study, rows, None, DIST) is None


def test_run_record_is_json_with_nan_losses(tmp_path):
    write_run_record(tmp_path, _row(0, "failed"))
    assert math.isnan(json.loads((tmp_path / "ledger_row.json").read_text())["loss/code"])
