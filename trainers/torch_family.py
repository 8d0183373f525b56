"""Run families on the torch trainer: several D from one warmup-stable-decay training (TorchBackend.run_family).

A run family (FamilySpec in trainers/spec.py): the branches are wsd runs that share
their steps up to each one's cooldown start. The longest branch is the trunk: it is trained to the branch point
of the shortest branch, checkpointed, and that checkpoint is forked into the branch's directory (its own
fingerprint, timing reset); the branch cools down from it as an ordinary resumed run; then the trunk continues to
the next branch point, and so on; the trunk's own cooldown comes last. Layout of the family directory:

    <run_dir>/family.json          the FamilySpec, its branches' run_ids, their FLOPs and the family's total
    <run_dir>/branch-<i>/          branch i's run directory (checkpoints, loss curve, run.json) ...
    <run_dir>/branch-<i>/result.json   ... and its RunResult, written atomically once it is finished

A family killed at any point and run again resumes from the newest checkpoints: a branch with a result.json is
never trained again, a branch with a checkpoint resumes from it, and the trunk from its own. Cost accounting:
a branch's `flops` is its own cooldown plus its share of the stable phase (trainers.spec.family_branch_flops);
the branches' flops sum to the family's true cost, the stable phase once plus every cooldown. A branch's
`wall_s` counts its own sessions only (the stable phase is in the trunk's), so wall times sum as well.

FamilyTraining is a mixin of TorchBackend: it trains through the backend's `run` (with `stop_after_steps` for the
stable phase up to a branch point) and its checkpoints, so a branch is an ordinary resumed run and nothing here
knows how a step is trained.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

from skillscale.atomic import atomic_write_json
from skillscale.errors import InputError
from trainers import checkpoint
from trainers.checkpoint import CheckpointError
from trainers.data import skill_names
from trainers.spec import FamilySpec, RunResult, RunSpec, family_branch_flops


class RunStopped(Exception):
    """Raised by run(..., stop_after_steps=k) after checkpointing step k (a simulated preemption; the family's
    stable phase stops at each branch point this way)."""


class FamilyTraining:
    """run_family for TorchBackend (which provides run, _plan_run, check_fits and data)."""

    def run_family(self, family: FamilySpec, run_dir: Path) -> list[RunResult]:
        """Train a run family (module docstring): the stable phase once, every branch's cooldown from its branch
        point; one RunResult per branch, in order of D, each also kept as <run_dir>/branch-<i>/result.json.

        Run again after a kill it resumes: finished branches are read back, never trained again."""
        if self.trainer.seed_replicas > 1:
            raise InputError(f"trainer.seed_replicas: run families train one model per branch; got "
                             f"{self.trainer.seed_replicas} (set seed_replicas: 1, or train plain runs)")
        family_dir = Path(run_dir)
        branches = family.branches()
        plans = [self._plan_run(b) for b in branches]
        if len({(p.cfg, p.hp.lr, p.hp.batch_seqs, p.hp.warmup_steps) for p in plans}) != 1:
            raise InputError(f"family {family.family_id}: its branches resolve to different shapes or "
                             "hyperparameters, so they cannot share a stable phase")
        self.check_fits(plans[-1].cfg, plans[-1].hp)
        starts = [p.hp.cooldown_start for p in plans]  # branch points, in optimizer steps
        batch_tokens = plans[-1].hp.batch_tokens
        flops = family_branch_flops(plans[-1].n_params, [s * batch_tokens for s in starts],
                                    [b.n_tokens for b in branches])
        self._claim_family_dir(family, branches, family_dir, flops)
        trunk, trunk_plan = branches[-1], plans[-1]  # the longest branch trains the stable phase
        trunk_dir = family_dir / f"branch-{len(branches) - 1}"
        results: list[RunResult] = []
        stable_diverged: RunResult | None = None  # the trunk's result if it diverged before a branch point
        for i, (branch, plan) in enumerate(zip(branches, plans, strict=True)):
            branch_dir = family_dir / f"branch-{i}"
            result = _read_branch_result(branch_dir, branch)
            if result is None:
                needs_fork = branch is not trunk and starts[i] > 0 and not checkpoint.list_checkpoints(branch_dir)
                if needs_fork and stable_diverged is None:
                    stable_diverged = self._train_trunk_to(trunk, trunk_dir, starts[i])
                    if stable_diverged is None:
                        checkpoint.fork(trunk_dir, trunk_plan.fingerprint, branch_dir, plan.fingerprint)
                if stable_diverged is not None and (needs_fork or branch is trunk):
                    result = RunResult(run_id=branch.run_id, status="diverged", n_params=plan.n_params,
                                       n_tokens=int(branch.n_tokens), flops=0.0,
                                       losses={s: float("nan") for s in skill_names(self.data)},
                                       shape=plan.cfg.to_dict(),
                                       error=f"the family's stable phase: {stable_diverged.error}",
                                       family_id=branch.family_id, branch=branch.branch)
                else:
                    result = self.run(branch, branch_dir)
                result = dataclasses.replace(result, flops=flops[i])  # its cooldown and its share of the stable phase
                atomic_write_json(branch_dir / "result.json", result.to_dict(), sort_keys=True)
            results.append(result)
        return results

    def _train_trunk_to(self, trunk: RunSpec, trunk_dir: Path, step: int) -> RunResult | None:
        """Train the family's trunk to `step` (a branch point) and checkpoint it there; None when it got there,
        its diverged RunResult when its loss became non-finite on the way."""
        at = checkpoint.newest_step(trunk_dir) or 0
        if at == step:
            return None
        if at > step:
            raise CheckpointError(
                f"checkpoint: the stable phase in {trunk_dir} is at step {at}, past the branch point {step} of a "
                f"branch that has no checkpoint; delete {trunk_dir.parent} to train the family afresh")
        try:
            return self.run(trunk, trunk_dir, stop_after_steps=step)  # returns only if it diverged
        except RunStopped:
            return None

    @staticmethod
    def _claim_family_dir(family: FamilySpec, branches: list[RunSpec], family_dir: Path, flops: list[float]) -> None:
        """Write <family_dir>/family.json (the spec, the branches' run_ids, the exact FLOPs per branch and in all),
        or check that the directory holds this family."""
        path = family_dir / "family.json"
        if path.exists():
            try:
                found = json.loads(path.read_text()).get("family", {}).get("family_id")
            except (OSError, ValueError, AttributeError) as exc:
                raise CheckpointError(f"family: {path} is unreadable ({exc}); delete {family_dir} to start "
                                      "afresh") from None
            if found != family.family_id:
                raise CheckpointError(f"family: {family_dir} belongs to family {found}, not {family.family_id}; "
                                      "use a new directory or delete this one")
            return
        atomic_write_json(path, {"family": family.to_dict(), "branches": [b.run_id for b in branches],
                                 "branch_flops": flops, "flops": float(sum(flops))}, sort_keys=True)


def _read_branch_result(branch_dir: Path, branch: RunSpec) -> RunResult | None:
    """A finished branch's RunResult from <branch_dir>/result.json (None: not finished, or unreadable)."""
    path = branch_dir / "result.json"
    if not path.exists():
        return None
    try:
        result = RunResult.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        warnings.warn(f"{path} is unreadable ({exc}); the branch is evaluated again", stacklevel=3)
        return None
    if result.run_id != branch.run_id:
        raise CheckpointError(f"family: {path} holds run {result.run_id}, not branch {branch.branch} "
                              f"({branch.run_id}); delete {branch_dir.parent} to train the family afresh")
    return result
