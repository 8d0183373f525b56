"""RunSpec and RunResult: the only objects that cross the Ray boundary; FamilySpec, a run family.

A run's identity (`run_id`) is a hash of what it trains, so a re-dispatched run finds its own
checkpoints and a finished run is never recorded twice. A family's identity (`family_id`) is the same
kind of hash; each of its branches is an ordinary RunSpec with its own run_id, and carries the family's id
and its branch index.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Literal

from fitting.conventions import training_flops

RunStatus = Literal["ok", "diverged", "failed"]


def _canonical_mix(mix: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 6) for k, v in sorted(mix.items())}


def make_run_id(n_params: int, n_tokens: int, mix: dict[str, float], seed: int, hparams: dict,
                unique_tokens: int | None = None) -> str:
    """Deterministic id for a run: same spec, same id (12 hex digits). `unique_tokens` enters only when set, so
    a run on all of its data keeps the id it had before runs could repeat theirs."""
    fields = {"n_params": int(n_params), "n_tokens": int(n_tokens), "mix": _canonical_mix(mix),
              "seed": int(seed), "hparams": hparams}
    if unique_tokens is not None:
        fields["unique_tokens"] = int(unique_tokens)
    key = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RunSpec:
    """What to train: a target parameter count, a token budget, a data mix and a seed.

    `n_params` is the *requested* N; the trainer realises the nearest shape and reports the exact N
    in RunResult. `unique_tokens` (None: all the data there is) limits the run to that many distinct tokens,
    read n_tokens / unique_tokens times over; only a backend that declares `Capabilities.repeats` is given one.
    """

    n_params: int
    n_tokens: int
    mix: dict[str, float]
    seed: int = 0
    hparams: dict = field(default_factory=dict)
    run_id: str = ""
    trial_number: int = -1  # Optuna trial that proposed it (-1: not from a study)
    family_id: str = ""  # the FamilySpec this run is a branch of ("": a plain run); not part of run_id
    branch: int = -1  # index of this branch in its family, in order of n_tokens (-1: a plain run)
    unique_tokens: int | None = None  # distinct tokens the run reads (None: all the data there is)

    def __post_init__(self):
        if self.n_params <= 0 or self.n_tokens <= 0:
            raise ValueError(f"RunSpec: n_params and n_tokens must be positive, got {self.n_params}, {self.n_tokens}")
        if self.unique_tokens is not None and self.unique_tokens <= 0:
            raise ValueError(f"RunSpec: unique_tokens must be positive or None, got {self.unique_tokens}")
        if not self.run_id:
            object.__setattr__(self, "run_id", make_run_id(self.n_params, self.n_tokens, self.mix,
                                                           self.seed, self.hparams, self.unique_tokens))

    @property
    def epochs(self) -> float:
        """Times the run reads its unique tokens (1.0 when it is not limited to fewer than it trains on)."""
        return max(self.n_tokens / self.unique_tokens, 1.0) if self.unique_tokens else 1.0

    @property
    def flops(self) -> float:
        return training_flops(self.n_params, self.n_tokens)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        return cls(**d)


# epochs of a domain's training text past which a run is flagged (a warning, the progress line): up to ~4 epochs
# repeated data is worth almost as much as fresh data, beyond that less and less (Muennighoff et al. 2023,
# arXiv:2305.16264, "Scaling Data-Constrained Language Models")
REPEATED_DATA_EPOCHS = 4.0


def repeated_domains(data_epochs: dict[str, float]) -> dict[str, float]:
    """The domains read more than REPEATED_DATA_EPOCHS times over, with their epochs, by name."""
    return {d: e for d, e in sorted(data_epochs.items()) if e > REPEATED_DATA_EPOCHS}


@dataclass(frozen=True)
class RunResult:
    """What a run produced. `losses` are per-skill validation losses (nats/token)."""

    run_id: str
    status: RunStatus
    n_params: int
    n_tokens: int
    flops: float
    losses: dict[str, float]
    domain_losses: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    tokens_per_s: float = 0.0
    mfu: float = 0.0
    shape: dict = field(default_factory=dict)
    error: str = ""
    family_id: str = ""  # as in the RunSpec: the family this run is a branch of ("": a plain run)
    branch: int = -1  # the branch index (-1: a plain run)
    compile_fallbacks: int = 0  # times torch.compile gave up and ran eagerly during this run (0: it never did)
    loss_errors: dict[str, float] = field(default_factory=dict)  # standard error of each skill loss (eval set size)
    data_epochs: dict[str, float] = field(default_factory=dict)  # times over each domain's training text (torch)
    replica_losses: list[dict[str, float]] = field(default_factory=list)  # seed replicas: each one's skill losses
    mix: dict[str, float] = field(default_factory=dict)  # the mix trained, when not the spec's (replay); {}: the spec's
    time_s: dict[str, float] = field(default_factory=dict)  # where wall_s went, by phase (torch: torch_backend.PHASES)

    @property
    def repeated_domains(self) -> dict[str, float]:
        """The domains this run read more than REPEATED_DATA_EPOCHS times over, with their epochs."""
        return repeated_domains(self.data_epochs)

    @property
    def finite(self) -> bool:
        return self.status == "ok" and all(math.isfinite(v) for v in self.losses.values())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunResult:
        return cls(**d)


def family_branch_flops(n_params: int, cooldown_starts: list[float], n_tokens: list[float]) -> list[float]:
    """Training FLOPs of each branch of a family, in order of D; they sum to the family's true cost.

    Branch i trains the stable phase to its cooldown start s_i (tokens), then its own cooldown to D_i. The
    stable phase is one training: its segment between consecutive branch points, [s_(j-1), s_j), is used by
    branches j..k and is shared equally among them. A branch's FLOPs are its own cooldown plus its shares:

        flops_i = C(D_i - s_i) + sum_(j <= i) C(s_j - s_(j-1)) / (k - j + 1),    C(d) = 6*N*d

    so sum_i flops_i = C(s_k) + sum_i C(D_i - s_i): the stable phase once plus every cooldown."""
    from fitting.conventions import training_flops

    k = len(n_tokens)
    if len(cooldown_starts) != k or list(cooldown_starts) != sorted(cooldown_starts):
        raise ValueError("family_branch_flops: one cooldown start per branch, in increasing order")
    flops, shared, previous = [], 0.0, 0.0
    for i, (start, end) in enumerate(zip(cooldown_starts, n_tokens, strict=True)):
        shared += training_flops(n_params, start - previous) / (k - i)  # segment i is used by branches i..k-1
        previous = start
        flops.append(shared + training_flops(n_params, end - start))
    return flops


@dataclass(frozen=True)
class FamilySpec:
    """A run family: one warmup-stable-decay training at N whose constant-lr phase is cooled down at several
    token counts D_1 < ... < D_k, each cooldown a branch evaluated as its own run (trainers/hparams.py, schedule
    "wsd"; Hägele et al. 2024, arXiv:2405.18392). A cooldown spans `cooldown_fraction` of its branch's steps.

    `branches()` are ordinary RunSpecs: branch i is a wsd run to D_i whose lr, batch and warmup follow the
    rules at D_k (`hparams.rule_n_tokens`), so all branches share their steps up to their own cooldown start,
    and a branch trained alone gives the result the family gives it (bitwise on CPU). TorchBackend.run_family
    trains the stable phase once and every cooldown from its branch point.

    Cost: `flops` is the family's nominal true cost, the stable phase to (1 - f) * D_k plus every cooldown
    f * D_i: C = 6*N*(D_k + f * sum_(i<k) D_i); `branch_flops()` splits it per branch (family_branch_flops).
    """

    n_params: int
    n_tokens: tuple[int, ...]  # the branches' D, in increasing order (a list is accepted and sorted)
    mix: dict[str, float]
    seed: int = 0
    hparams: dict = field(default_factory=dict)  # overrides for every branch (not the schedule keys below)
    cooldown_fraction: float = 0.2  # of each branch's steps (trainers.hparams.DEFAULT_COOLDOWN_FRACTION)
    cooldown_shape: str = "1-sqrt"  # "linear" or "1-sqrt"
    family_id: str = ""  # derived from the fields above when empty
    trial_number: int = -1  # Optuna trial that proposed it (-1: not from a study)

    SCHEDULE_KEYS = ("schedule", "cooldown_fraction", "cooldown_shape", "rule_n_tokens")  # set by the family

    def __post_init__(self):
        from skillscale.errors import InputError
        from trainers.hparams import COOLDOWN_SHAPES

        tokens = tuple(sorted(int(round(d)) for d in self.n_tokens))
        if not tokens or tokens[0] <= 0 or len(set(tokens)) != len(tokens):
            raise InputError(f"family.n_tokens: expected distinct positive token counts, got {list(self.n_tokens)}")
        if self.n_params <= 0:
            raise InputError(f"family.n_params: expected > 0, got {self.n_params}")
        if not 0 < self.cooldown_fraction <= 1:
            raise InputError(f"family.cooldown_fraction: expected in (0, 1], got {self.cooldown_fraction}")
        if self.cooldown_shape not in COOLDOWN_SHAPES:
            raise InputError(f"family.cooldown_shape: expected one of {', '.join(COOLDOWN_SHAPES)}, "
                             f"got {self.cooldown_shape!r}")
        clash = sorted(set(self.hparams) & set(self.SCHEDULE_KEYS))
        if clash:
            raise InputError(f"family.hparams: {', '.join(clash)} are set by the family, not per branch")
        object.__setattr__(self, "n_tokens", tokens)
        if not self.family_id:
            key = json.dumps({"n_params": int(self.n_params), "n_tokens": list(tokens),
                              "mix": _canonical_mix(self.mix), "seed": int(self.seed), "hparams": self.hparams,
                              "cooldown_fraction": float(self.cooldown_fraction),
                              "cooldown_shape": self.cooldown_shape}, sort_keys=True)
            object.__setattr__(self, "family_id", hashlib.sha256(key.encode()).hexdigest()[:12])

    def branches(self) -> list[RunSpec]:
        """One RunSpec per D, in increasing order: branch i cools down to n_tokens[i]."""
        schedule = {"schedule": "wsd", "cooldown_fraction": float(self.cooldown_fraction),
                    "cooldown_shape": self.cooldown_shape, "rule_n_tokens": int(self.n_tokens[-1])}
        return [RunSpec(n_params=self.n_params, n_tokens=d, mix=dict(self.mix), seed=self.seed,
                        hparams={**self.hparams, **schedule}, trial_number=self.trial_number,
                        family_id=self.family_id, branch=i)
                for i, d in enumerate(self.n_tokens)]

    def branch_flops(self) -> list[float]:
        """Nominal FLOPs per branch (cooldown starts at (1 - f) * D_i); they sum to `flops`."""
        starts = [(1.0 - self.cooldown_fraction) * d for d in self.n_tokens]
        return family_branch_flops(self.n_params, starts, list(self.n_tokens))

    @property
    def flops(self) -> float:
        """The family's nominal true cost: stable phase plus every cooldown, 6*N*(D_k + f * sum_(i<k) D_i)."""
        return float(sum(self.branch_flops()))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["n_tokens"] = list(self.n_tokens)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FamilySpec:
        return cls(**d)
