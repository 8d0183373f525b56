"""Run families on CPU (tiny model): branches equal to the same runs trained alone, exact cost accounting, and a
family killed mid-branch and mid-stable-phase that resumes to every branch once, bitwise equal to an
uninterrupted family."""

import json
import math

import pytest

from fitting.conventions import training_flops
from skillscale.errors import InputError
from tests.conftest import Killed, kill_training_after
from tests.trainers.conftest import MIX
from trainers.checkpoint import CheckpointError
from trainers.spec import FamilySpec, family_branch_flops
from trainers.torch_backend import TorchBackend

# 70k params, 512-token steps: branches of 6, 9 and 12 steps whose cooldowns (25%) start at steps 4, 7 and 9
FAMILY = FamilySpec(n_params=70_000, n_tokens=(3072, 4608, 6144), mix=MIX, seed=1, hparams={"batch_tokens": 512},
                    cooldown_fraction=0.25)
STARTS, BATCH = (4, 7, 9), 512


def test_branches_are_the_runs_they_name_and_their_flops_sum_to_the_family_cost(tmp_path, tiny_settings):
    backend = TorchBackend(**tiny_settings)
    results = backend.run_family(FAMILY, tmp_path / "family")
    branches = FAMILY.branches()
    assert [r.branch for r in results] == [0, 1, 2] and {r.family_id for r in results} == {FAMILY.family_id}
    assert [r.run_id for r in results] == [b.run_id for b in branches] and len({b.run_id for b in branches}) == 3
    assert [backend.plan(b)[1].cooldown_start for b in branches] == list(STARTS)
    for i, (branch, result) in enumerate(zip(branches, results, strict=True)):
        assert result.status == "ok" and result.n_tokens == FAMILY.n_tokens[i]
        assert set(result.loss_errors) == set(result.losses) and all(e > 0 for e in result.loss_errors.values())
        alone = backend.run(branch, tmp_path / f"alone-{i}")  # the branch's spec trained on its own
        assert alone.losses == result.losses and alone.domain_losses == result.domain_losses, i
        stored = json.loads((tmp_path / "family" / f"branch-{i}" / "result.json").read_text())
        assert stored["losses"] == result.losses and stored["run_id"] == branch.run_id
    # cost: the stable phase to the last branch point once, plus every cooldown
    n = results[0].n_params
    cooldowns = sum(d - s * BATCH for d, s in zip(FAMILY.n_tokens, STARTS, strict=True))
    assert sum(r.flops for r in results) == pytest.approx(training_flops(n, STARTS[-1] * BATCH + cooldowns))
    assert results[0].flops < results[1].flops < results[2].flops
    stored = json.loads((tmp_path / "family" / "family.json").read_text())
    assert stored["flops"] == pytest.approx(sum(r.flops for r in results))
    assert stored["family"]["n_tokens"] == [3072, 4608, 6144]
    assert FAMILY.flops == pytest.approx(6 * FAMILY.n_params * (6144 + 0.25 * (3072 + 4608)))


def test_a_killed_family_resumes_to_every_branch_once_bitwise(tmp_path, tiny_settings, monkeypatch):
    """Work order: stable phase to step 4, branch 0's cooldown (steps 5-6), stable phase to step 7, branch 1's
    cooldown, the trunk to the end: 16 steps. Killed in branch 1's cooldown (step 10) and then in the trunk's last
    stretch, with no periodic checkpoints: each session resumes from the newest branch point."""
    uninterrupted = TorchBackend(**tiny_settings).run_family(FAMILY, tmp_path / "uninterrupted")
    calls = []
    original_run = TorchBackend.run
    monkeypatch.setattr(TorchBackend, "run", lambda self, spec, run_dir, **kw: (
        calls.append(spec.branch), original_run(self, spec, run_dir, **kw))[1])
    sessions = []
    for kill_after in (9, 3, None):  # steps trained by each session before it is killed
        with monkeypatch.context() as m:
            if kill_after is not None:
                kill_training_after(m, kill_after)
            calls.clear()
            try:
                results = TorchBackend(**tiny_settings).run_family(FAMILY, tmp_path / "killed")  # a fresh process
            except Killed:
                results = None
            sessions.append((list(calls), results))
    assert [calls for calls, _ in sessions] == [[2, 0, 2, 1], [1, 2], [2]]  # finished branches are never run again
    results = sessions[-1][1]
    for a, b in zip(results, uninterrupted, strict=True):
        assert a.losses == b.losses and a.domain_losses == b.domain_losses and a.flops == b.flops
    # run again once finished: everything is read back, nothing trains
    calls.clear()
    again = TorchBackend(**tiny_settings).run_family(FAMILY, tmp_path / "killed")
    assert calls == [] and [r.losses for r in again] == [r.losses for r in results]


def test_a_diverged_stable_phase_ends_every_branch_it_carries(tmp_path, tiny_settings):
    family = FamilySpec(n_params=70_000, n_tokens=(3072, 6144), mix=MIX,
                        hparams={"batch_tokens": 512, "lr": 1e8, "grad_clip": 1e30}, cooldown_fraction=0.25)
    results = TorchBackend(**tiny_settings).run_family(family, tmp_path)
    assert [r.status for r in results] == ["diverged", "diverged"]
    assert all(math.isnan(v) for r in results for v in r.losses.values())
    assert "stable phase" in results[0].error


def test_family_spec_validates_and_refuses_a_foreign_directory(tmp_path, tiny_settings):
    with pytest.raises(InputError, match="family.n_tokens"):
        FamilySpec(n_params=70_000, n_tokens=(3072, 3072), mix=MIX)
    with pytest.raises(InputError, match="family.hparams: schedule"):
        FamilySpec(n_params=70_000, n_tokens=(3072,), mix=MIX, hparams={"schedule": "cosine"})
    with pytest.raises(InputError, match="family.cooldown_shape"):
        FamilySpec(n_params=70_000, n_tokens=(3072,), mix=MIX, cooldown_shape="cosine")
    assert FamilySpec(n_params=70_000, n_tokens=[6144, 3072], mix=MIX).n_tokens == (3072, 6144)
    assert FamilySpec.from_dict(FAMILY.to_dict()) == FAMILY
    (tmp_path / "family.json").write_text(json.dumps({"family": {"family_id": "someoneelse"}}))
    with pytest.raises(CheckpointError, match="belongs to family someoneelse"):
        TorchBackend(**tiny_settings).run_family(FAMILY, tmp_path)


def test_branch_flops_share_the_stable_phase_among_the_branches_that_use_it():
    # stable segments [0, 10) shared by 2 branches, [10, 30) used by the second alone; cooldowns 5 and 10
    flops = family_branch_flops(1, [10, 30], [15, 40])
    assert flops == pytest.approx([6 * (5 + 10 / 2), 6 * (10 + 10 / 2 + 20)])
    assert sum(flops) == pytest.approx(6 * (30 + 5 + 10))
