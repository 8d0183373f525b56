"""A study whose state files were cut short at any byte resumes to the same result as one never interrupted
(issue #16, item 2): the Study repairs a torn Optuna journal, rebuilds a ledger it cannot read from the run
records and the journal, adds back trials the journal lost, and says each repair in one line.

In-process, no Ray: the simulated backend driven through the Study's lifecycle at max_concurrent 1, where a
study is deterministic (the same config and seed give the same runs and the same estimates)."""

import copy
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.config import parse_study_config
from scheduler.study import Study
from tests.conftest import SMALL_STUDY

STOP_AFTER = 8  # records before the snapshot whose files are cut


def _config():
    study = copy.deepcopy(SMALL_STUDY)
    study.update(max_concurrent=1, max_runs=12, name="torn")
    study["proposer"].update(n_boot=20, n_candidates=64, inner_trials=0, seed_runs=6)
    return parse_study_config(study)


CFG = _config()


def drive(study_dir: Path, stop_after: int | None = None) -> tuple[dict | None, list[str]]:
    """Run the study in study_dir to its stop (or `stop_after` records); returns (result, repair notes)."""
    backend = CFG.backend.build()
    with Study(CFG, study_dir) as study:
        notes = list(study.store.notes)
        pending, n = list(study.reconcile()), 0
        while study.stop_reason() is None:
            if not pending:
                pending = study.propose(1)
                if not pending:
                    break
            spec = pending.pop(0)
            study.record(spec, backend.run(spec, study_dir / "runs" / spec.run_id))
            n += 1
            if stop_after is not None and n >= stop_after:
                return None, notes
        return study.finish(study.stop_reason() or "budget_exhausted"), notes


def _summary(result: dict, study_dir: Path) -> tuple:
    from scheduler.ledger import Ledger

    runs = sorted((r["trial_number"], r["run_id"], r["status"]) for r in Ledger(study_dir / "runs.parquet").rows)
    return (result["stop_reason"], result["n_runs"], result["flops_spent"], runs,
            [(t["name"], t["n_params"], t["n_params_ci95"]) for t in result["targets"]])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(summary of an uninterrupted study, a snapshot of the same study after STOP_AFTER runs)."""
    uninterrupted = tmp_path_factory.mktemp("reference")
    result, _ = drive(uninterrupted)
    snapshot = tmp_path_factory.mktemp("snapshot")
    drive(snapshot, stop_after=STOP_AFTER)
    return _summary(result, uninterrupted), snapshot


def test_the_same_config_and_seed_give_the_same_study(reference, tmp_path):
    """Reproducibility at max_concurrent 1 (README: what varies above that), and a plain resume."""
    want, snapshot = reference
    again = tmp_path / "again"
    shutil.copytree(snapshot, again)
    result, notes = drive(again)
    assert _summary(result, again) == want and notes == []


def _state_files(snapshot: Path) -> list[str]:
    files = ["optuna.journal", "runs.parquet", "study.yaml"]
    files += sorted(str(p.relative_to(snapshot)) for p in (snapshot / "runs").glob("*/ledger_row.json"))[-2:]
    files += sorted(str(p.relative_to(snapshot)) for p in (snapshot / "fits").glob("fit-*.json"))[-1:]
    return files


@pytest.mark.parametrize("name, cut_bytes, said", [
    ("optuna.journal", 37, "repaired the Optuna journal: dropped its torn last record"),  # issue #16's truncate -s -37
    ("runs.parquet", None, "rebuilt 8 ledger rows: 8 from runs/*/ledger_row.json"),
    ("study.yaml", None, "the frozen config was cut short"),
])
def test_the_cuts_of_issue_16_are_repaired_and_said(reference, tmp_path, name, cut_bytes, said):
    want, snapshot = reference
    study_dir = tmp_path / "study"
    shutil.copytree(snapshot, study_dir)
    path = study_dir / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - cut_bytes] if cut_bytes else data[: len(data) // 2])
    result, notes = drive(study_dir)
    assert _summary(result, study_dir) == want
    assert len(notes) == 1 and said in notes[0] and "\n" not in notes[0], notes
    assert (study_dir / f"{name}.damaged").read_bytes() == data[: len(data) - cut_bytes] if cut_bytes else True


@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 5), cut=st.floats(0.0, 1.0))
def test_a_state_file_cut_at_any_byte_resumes_to_the_same_result(reference, tmp_path_factory, which, cut):
    want, snapshot = reference
    study_dir = tmp_path_factory.mktemp("cut")
    shutil.copytree(snapshot, study_dir, dirs_exist_ok=True)
    files = _state_files(snapshot)
    path = study_dir / files[which % len(files)]
    data = path.read_bytes()
    path.write_bytes(data[: int(cut * len(data))])
    result, notes = drive(study_dir)
    assert _summary(result, study_dir) == want, (path.name, int(cut * len(data)), len(data), notes)
    assert all("\n" not in note for note in notes)
