"""RunSpec and RunResult: the only objects that cross the Ray boundary.

A run's identity (`run_id`) is a hash of what it trains, so a re-dispatched run finds its own
checkpoints and a finished run is never recorded twice.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Literal

RunStatus = Literal["ok", "diverged", "failed"]


def _canonical_mix(mix: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 6) for k, v in sorted(mix.items())}


def make_run_id(n_params: int, n_tokens: int, mix: dict[str, float], seed: int, hparams: dict) -> str:
    """Deterministic id for a run: same spec, same id (12 hex digits)."""
    key = json.dumps(
        {"n_params": int(n_params), "n_tokens": int(n_tokens), "mix": _canonical_mix(mix),
         "seed": int(seed), "hparams": hparams},
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RunSpec:
    """What to train: a target parameter count, a token budget, a data mix and a seed.

    `n_params` is the *requested* N; the trainer realises the nearest shape and reports the exact N
    in RunResult.
    """

    n_params: int
    n_tokens: int
    mix: dict[str, float]
    seed: int = 0
    hparams: dict = field(default_factory=dict)
    run_id: str = ""
    trial_number: int = -1  # Optuna trial that proposed it (-1: not from a study)

    def __post_init__(self):
        if self.n_params <= 0 or self.n_tokens <= 0:
            raise ValueError(f"RunSpec: n_params and n_tokens must be positive, got {self.n_params}, {self.n_tokens}")
        if not self.run_id:
            object.__setattr__(self, "run_id", make_run_id(self.n_params, self.n_tokens, self.mix,
                                                           self.seed, self.hparams))

    @property
    def flops(self) -> float:
        return 6.0 * self.n_params * self.n_tokens

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        return cls(**d)


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

    @property
    def finite(self) -> bool:
        return self.status == "ok" and all(math.isfinite(v) for v in self.losses.values())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunResult:
        return cls(**d)
