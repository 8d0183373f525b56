"""The simulated backend: a known scaling law per skill plus noise, instead of training.

It makes the whole closed loop testable on 2 CPU cores and is how the scheduler's efficiency is
benchmarked. It never stands in for the trainer in a claim about models.

Per skill s, the truth is a mixture-aware Chinchilla law (fitting.law.ParametricLaw):

    L_s(N, D, m) = E + A·N^-α + B·(D·T_s(m))^-β,   T_s(m) = Σ_j t_sj·m_j,  t_ss = 1

A run limited to U unique tokens (RunSpec.unique_tokens, or the world's `unique_tokens`, whichever is fewer) sees
its D repeated: the law is read at Muennighoff et al.'s effective data D' (fitting.truths.RepeatedDataLaw), and
the run reports its epochs D / U. Observed with multiplicative log-normal noise, L_obs = L_s·exp(σ·z), z ~ N(0, 1)
drawn from (seed, run_id) so a re-dispatched run reports the same losses. With `seed_replicas: R` a run stands
for R models trained from R seeds (the torch trainer's trainer.seed_replicas, trainers/replicas.py): it reports
the mean of R such observations and costs R x 6ND. An optional sleep proportional to FLOPs stands in for training
time; progress is checkpointed so a resumed run sleeps only the rest.

Configured in a study as `backend: {name: simulated, truth: knowledge-code, noise: 0.005}` (SimulatedConfig).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from fitting.law import ParametricLaw
from fitting.truths import FARSEER_SINGLE_EPOCH, RepeatedDataLaw
from skillscale.atomic import atomic_write_json
from skillscale.config_types import FieldError, Number
from skillscale.errors import InputError
from trainers.capabilities import BackendConfigBase, Capabilities
from trainers.spec import FamilySpec, RunResult, RunSpec

# Hoffmann et al. 2022 (Chinchilla), Approach 3 fit, eq. 10.
CHINCHILLA = ParametricLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
# Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt", their refit (Table 1).
BESIROGLU = ParametricLaw(E=1.82, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)

# A knowledge-vs-code pair in the spirit of arXiv:2503.10061: knowledge is capacity-hungry (larger A,
# smaller B), code is data-hungry. With equal exponents the ratio of their compute-optimal N is
# ((A_k B_c)/(A_c B_k))^(1/(α+β)) = 2.0 at every C. Transfers: how much a token of another
# domain counts as a token of this skill's own domain.
KNOWLEDGE = ParametricLaw(E=2.0, A=480.0, B=380.0, alpha=0.34, beta=0.28,
                          transfer={"knowledge": 1.0, "code": 0.05, "general": 0.30})
CODE = ParametricLaw(E=1.2, A=340.0, B=420.0, alpha=0.34, beta=0.28,
                     transfer={"code": 1.0, "knowledge": 0.05, "general": 0.20})

# Correlation of one skill's noise between the branches of a run family (they share the stable phase, the seed and
# the data order, so a lucky trunk is lucky for every branch): the correlation of the seed-to-seed log-loss
# deviations of a family's branches in the GPU parity runs (BENCHMARKS.md, Run-family parity), from few families,
# so a rough value.
FAMILY_NOISE_CORRELATION = 0.8

PRESETS: dict[str, dict] = {
    "chinchilla": {"all": CHINCHILLA},
    "besiroglu": {"all": BESIROGLU},
    "farseer": {"all": FARSEER_SINGLE_EPOCH},  # outside the Chinchilla form: fitted to real runs (fitting/truths.py)
    "knowledge-code": {"knowledge": KNOWLEDGE, "code": CODE},
}


def resolve_truth(truth: str | dict) -> dict[str, ParametricLaw]:
    """A preset name, or a mapping skill -> {E, A, B, alpha, beta[, transfer]}."""
    if isinstance(truth, str):
        if truth not in PRESETS:
            raise InputError(f"backend.truth: unknown preset {truth!r} (presets: {', '.join(PRESETS)})")
        return PRESETS[truth]
    if not isinstance(truth, dict) or not truth:
        raise InputError("backend.truth: expected a preset name or a mapping skill -> law parameters")
    laws = {}
    for skill, params in truth.items():
        try:
            laws[skill] = ParametricLaw(**params)
        except TypeError:
            expected = "expected keys E, A, B, alpha, beta[, transfer]"
            raise InputError(f"backend.truth.{skill}: {expected}") from None
    return laws


class SimulatedConfig(BackendConfigBase):
    """`backend: {name: simulated, ...}`: known laws plus noise instead of training (see the module docstring)."""

    name: Literal["simulated"] = Field(description="selects this backend (the default when `name` is left out)")
    truth: str | dict[str, dict] = Field(
        default="knowledge-code", description=f"a preset ({', '.join(PRESETS)}) or skill -> {{E, A, B, alpha, beta"
                                              "[, transfer]}")
    noise: Number = Field(default=0.01, ge=0, le=1, allow_inf_nan=False,
                          description="log-normal loss noise (std of log L; 1 is far past any trainer)")
    sleep_per_flop: Number = Field(default=0.0, ge=0, description="seconds slept per FLOP of 6ND (tests, demos)")
    checkpoint_every_s: Number = Field(default=0.5, gt=0, description="seconds between progress checkpoints")
    diverge_above_params: Number | None = Field(default=None, description="report N above this as diverged "
                                                                          "(fault-injection tests)")
    family_noise_correlation: Number = Field(
        default=FAMILY_NOISE_CORRELATION, ge=0, le=1,
        description="run families: correlation of a skill's log-noise between branches of one family")
    seed_replicas: int = Field(default=1, ge=1, description="models per run: the mean of this many noisy "
                                                            "observations, at this many times 6ND")
    unique_tokens: Number | None = Field(
        default=None, gt=0, description="unique tokens the simulated world's data hold: a longer run repeats them "
                                        "and its repeated tokens are worth less (Muennighoff et al. 2023); null: "
                                        "unlimited")

    @field_validator("truth")
    @classmethod
    def _known_truth(cls, truth):
        try:
            resolve_truth(truth)
        except InputError as exc:  # "backend.truth[.skill]: message" -> the field below `truth`
            where, _, message = str(exc).partition(": ")
            raise FieldError(where.removeprefix("backend.truth").lstrip("."), message) from None
        return truth

    def build(self) -> SimulatedBackend:
        return SimulatedBackend(**self.model_dump(exclude={"name"}))

    @property
    def capabilities(self) -> Capabilities:
        """Run families (run_family), seed_replicas models per run (a run costs that many times 6ND), and runs on
        fewer unique tokens than they train on (RunSpec.unique_tokens)."""
        return Capabilities(families=True, models_per_run=int(self.seed_replicas), repeats=True)

    def check(self, skills: list[str], spec: RunSpec) -> None:
        """Before a study starts: every skill of the study has a simulated truth."""
        truth = resolve_truth(self.truth)
        missing = [s for s in skills if s not in truth]
        if missing:
            raise InputError(f"skills: {missing} have no simulated truth (truth has: {', '.join(truth)})")


def _run_seed(seed: int, run_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{run_id}".encode()).digest()[:8], "little")


def observed(loss: float, noise: float, rng: np.random.Generator, replicas: int = 1) -> float:
    """What a run of `replicas` models reports for a true loss: the mean of loss * exp(noise * z_r), z_r ~ N(0, 1)
    drawn in turn from rng (one model: loss * exp(noise * z), one draw)."""
    return sum(loss * math.exp(noise * rng.standard_normal()) for _ in range(replicas)) / replicas


class SimulatedBackend:
    """Backend (trainers.backend) that evaluates known laws; see the module docstring."""

    def __init__(self, truth: str | dict = "knowledge-code", noise: float = 0.01,
                 sleep_per_flop: float = 0.0, checkpoint_every_s: float = 0.5,
                 diverge_above_params: float | None = None,
                 family_noise_correlation: float = FAMILY_NOISE_CORRELATION, seed_replicas: int = 1,
                 unique_tokens: float | None = None):
        self.truth = resolve_truth(truth)
        if not (0 <= noise <= 1):
            raise InputError(f"backend.noise: expected a number in [0, 1] (std of log L), got {noise!r}")
        self.noise = float(noise)
        self.sleep_per_flop = float(sleep_per_flop)
        self.checkpoint_every_s = float(checkpoint_every_s)
        self.diverge_above_params = diverge_above_params  # for fault-injection tests
        self.family_noise_correlation = float(family_noise_correlation)
        if int(seed_replicas) < 1:
            raise InputError(f"backend.seed_replicas: expected a positive integer, got {seed_replicas!r}")
        self.seed_replicas = int(seed_replicas)
        self.unique_tokens = None if unique_tokens is None else float(unique_tokens)

    def unique(self, spec: RunSpec) -> float:
        """Unique tokens the run reads: the fewer of its own limit and the world's (inf: unlimited)."""
        return min(float(spec.unique_tokens or math.inf), self.unique_tokens or math.inf)

    def true_losses(self, spec: RunSpec) -> dict[str, float]:
        """Noiseless losses of every skill for this spec (at the effective data of its repeated tokens)."""
        unique = self.unique(spec)
        laws = {s: RepeatedDataLaw(law, unique_tokens=unique) if math.isfinite(unique) else law
                for s, law in self.truth.items()}
        return {skill: float(law.loss(spec.n_params, spec.n_tokens, spec.mix or None)[0])
                for skill, law in laws.items()}

    def data_epochs(self, spec: RunSpec) -> dict[str, float]:
        """Times the run reads its unique tokens, per domain of its mix ({} where its data are unlimited)."""
        unique = self.unique(spec)
        return {d: spec.n_tokens / unique for d in spec.mix} if math.isfinite(unique) else {}

    def run(self, spec: RunSpec, run_dir: Path) -> RunResult:
        run_dir = Path(run_dir)
        start = time.perf_counter()
        self._sleep_with_checkpoints(spec, run_dir)
        rng = np.random.default_rng(_run_seed(spec.seed, spec.run_id))
        losses = {skill: observed(loss, self.noise, rng, self.seed_replicas)
                  for skill, loss in self.true_losses(spec).items()}
        status = "ok"
        if self.diverge_above_params is not None and spec.n_params > self.diverge_above_params:
            losses, status = {skill: float("nan") for skill in losses}, "diverged"
        return RunResult(run_id=spec.run_id, status=status, n_params=spec.n_params, n_tokens=spec.n_tokens,
                         flops=spec.flops * self.seed_replicas, losses=losses, wall_s=time.perf_counter() - start,
                         shape={"simulated": True}, data_epochs=self.data_epochs(spec))

    def run_family(self, family: FamilySpec, run_dir: Path) -> list[RunResult]:
        """A run family, simulated honestly: branch i reports the truth at (N, D_i) with log-noise
        sigma * (sqrt(rho) * c + sqrt(1 - rho) * e_i) per skill (c shared by the family, e_i the branch's own, both
        N(0, 1) from (seed, family_id): rho = family_noise_correlation, and a rerun reports the same losses), and
        costs what the family costs: each branch's FLOPs are its share of the stable phase plus its own cooldown
        (FamilySpec.branch_flops), summing to the family's true cost. The sleep covers the whole family and is
        checkpointed in run_dir, so a resumed family sleeps only the rest."""
        if self.seed_replicas > 1:
            raise InputError(f"backend.seed_replicas: run families simulate one model per branch; got "
                             f"{self.seed_replicas} (set seed_replicas: 1, or train plain runs)")
        run_dir = Path(run_dir)
        start = time.perf_counter()
        self._sleep_with_checkpoints(family.branches()[-1], run_dir, flops=family.flops)
        rng = np.random.default_rng(_run_seed(family.seed, family.family_id))
        skills = list(self.truth)
        common = rng.standard_normal(len(skills))
        own = rng.standard_normal((len(family.n_tokens), len(skills)))
        rho = self.family_noise_correlation
        z = math.sqrt(rho) * common[None, :] + math.sqrt(1.0 - rho) * own  # (branches, skills)
        wall = (time.perf_counter() - start) / len(family.n_tokens)
        results = []
        for i, (branch, flops) in enumerate(zip(family.branches(), family.branch_flops(), strict=True)):
            losses = {s: loss * math.exp(self.noise * z[i, j]) for j, (s, loss) in
                      enumerate(self.true_losses(branch).items())}
            status = "ok"
            if self.diverge_above_params is not None and branch.n_params > self.diverge_above_params:
                losses, status = {s: float("nan") for s in losses}, "diverged"
            results.append(RunResult(run_id=branch.run_id, status=status, n_params=branch.n_params,
                                     n_tokens=branch.n_tokens, flops=flops, losses=losses, wall_s=wall,
                                     shape={"simulated": True}, family_id=family.family_id, branch=i,
                                     data_epochs=self.data_epochs(branch)))
        return results

    def _sleep_with_checkpoints(self, spec: RunSpec, run_dir: Path, flops: float | None = None) -> None:
        total = self.sleep_per_flop * (spec.flops if flops is None else flops)
        if total <= 0:
            return
        ckpt = run_dir / "sim_checkpoint.json"
        done = 0.0
        if ckpt.exists():
            done = float(json.loads(ckpt.read_text())["seconds_done"])
        run_dir.mkdir(parents=True, exist_ok=True)
        while done < total:
            step = min(self.checkpoint_every_s, total - done)
            time.sleep(step)
            done += step
            atomic_write_json(ckpt, {"seconds_done": done, "seconds_total": total})
