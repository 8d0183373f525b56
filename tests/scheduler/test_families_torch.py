"""A study with run families on the real trainer (tiny CPU model): a family killed mid-branch, the process gone,
the study reopened: the same family (same family_id) is handed back, resumes from its checkpoints and every
branch is recorded once."""

import collections

import pytest

from scheduler.config import parse_study_config
from scheduler.families import FamilyPoint
from scheduler.study import Study
from tests.conftest import TINY_TORCH_SETTINGS, Killed, kill_training_after, torch_backend_section

MIX = {"knowledge": 0.4, "code": 0.4, "general": 0.2}
# 70k params, 512-token steps: branches of 6, 9 and 12 steps whose 25% cooldowns start at steps 4, 7 and 9; the
# family trains 16 steps in all (tests/trainers/test_torch_backend_families.py has the trainer's side)
POINT = FamilyPoint(70_000, (3072, 4608, 6144), MIX, 0.25)
FAMILY_STEPS = 16


def _config():
    return parse_study_config({
        "name": "torch-families", "skills": ["knowledge", "code"], "domains": ["knowledge", "code", "general"],
        "mix": {"space": "fixed", "fixed": MIX}, "n_params": [6e4, 8e4], "n_tokens": [3e3, 7e3],
        "tokens_per_param": [0.01, 1],
        "targets": [{"name": "knowledge", "weights": {"knowledge": 1.0}, "flops": 1e12}],
        "compute_cap": 1e13, "max_runs": 3, "backend": torch_backend_section(TINY_TORCH_SETTINGS),
        "hparams": {"batch_tokens": 512}, "proposer": {"n_boot": 20},
        "families": {"enabled": True, "max_branches": 3, "branch_span": 2, "cooldown_fraction": 0.25},
    })


def test_a_torch_family_killed_mid_branch_finishes_with_every_branch_recorded_once(tmp_path, monkeypatch):
    cfg = _config()
    backend = cfg.backend.build()
    # session 1: the family is asked, trains its stable phase and branch 0, and dies in branch 1's cooldown
    killer = kill_training_after(monkeypatch, 9)
    study = Study(cfg, tmp_path)
    assert study.reconcile() == []
    specs = study.ask([POINT])
    family = study.family_of(specs[0])
    run_dir = tmp_path / "runs" / f"family-{family.family_id}"
    with pytest.raises(Killed):
        backend.run_family(family, run_dir)
    assert (run_dir / "branch-0" / "result.json").exists() and not (run_dir / "branch-1" / "result.json").exists()
    study.close()  # the process is gone: nothing was recorded

    # session 2: the same family is handed back and resumes: only the 7 steps not yet trained are trained
    killer.kill_after, killer.steps = None, 0
    study = Study(cfg, tmp_path)
    resumed = study.reconcile()
    assert [s.run_id for s in resumed] == [s.run_id for s in specs]
    assert study.family_of(resumed[0]) == family and {s.family_id for s in resumed} == {family.family_id}
    recorded = study.record_family(backend.run_family(family, run_dir))
    assert killer.steps == FAMILY_STEPS - 9
    assert [r.status for r in recorded] == ["ok"] * 3 and study.stop_reason() == "max_runs"
    study.close()

    # session 3: nothing is trained or recorded again
    study = Study(cfg, tmp_path)
    assert study.reconcile() == [] and study.stop_reason() == "max_runs"
    rows = study.ledger.rows
    assert len(rows) == 3 and max(collections.Counter(r["run_id"] for r in rows).values()) == 1
    assert [(r["family_id"], r["branch"], r["n_tokens"]) for r in rows] == [
        (family.family_id, i, d) for i, d in enumerate(POINT.n_tokens)]
    # the family's exact cost: the stable phase to step 9 once, plus the cooldowns of 2, 2 and 3 steps of 512 tokens
    assert sum(r["flops"] for r in rows) == pytest.approx(6 * rows[0]["n_params"] * 512 * (9 + 2 + 2 + 3))
    study.close()
