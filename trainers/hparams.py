"""Hyperparameters per run, from documented rules; every one overridable through RunSpec.hparams.

Rules (C = training FLOPs = 6*N*D, N as in trainers/shapes.py):
- Peak learning rate and batch size follow the compute power laws fitted by DeepSeek-AI,
  "DeepSeek LLM: Scaling Open-Source Language Models with Longtermism" (2024), Sec. 3.1, Fig. 3:
      lr_opt    = 0.3118 * C^-0.1250
      batch_opt = 0.2920 * C^0.3271     (tokens per step)
  The batch is rounded to whole sequences and clamped to [MIN_BATCH_SEQS sequences, D / MIN_STEPS tokens]
  so that tiny runs still take enough optimizer steps; lr is clamped to at most LR_MAX.
- Schedule: linear warmup over `warmup_steps` = 5% of the steps (at least 1, at most 1000), then cosine
  decay from lr to min_lr_ratio * lr (10%) reached exactly at the last step, i.e. at D tokens.
- AdamW (Loshchilov & Hutter 2019) with beta1 0.9, beta2 0.95, eps 1e-8, weight decay 0.1 on matrices
  (embedding, projections, head; not the RMSNorm gains); gradient clipping at global norm 1.0.

Exactly D tokens: a "trained token" is a prediction target. steps = ceil(D / batch_tokens); the last step
takes ceil(rest / seq_len) sequences and masks the targets beyond D, so the run sees exactly D targets.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from skillscale.errors import InputError

LR_MAX = 1e-2
MIN_BATCH_SEQS = 8
MIN_STEPS = 50


@dataclass(frozen=True)
class HParams:
    """Resolved hyperparameters of one run (plain numbers; stored in checkpoints and results)."""

    lr: float
    batch_seqs: int  # sequences per optimizer step
    seq_len: int
    n_steps: int
    warmup_steps: int
    min_lr_ratio: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    init_std: float = 0.02

    @property
    def batch_tokens(self) -> int:
        return self.batch_seqs * self.seq_len

    def to_dict(self) -> dict:
        return asdict(self)


# keys a RunSpec.hparams dict may set; "batch_tokens" is rounded to whole sequences
OVERRIDABLE = (
    "lr",
    "batch_tokens",
    "warmup_steps",
    "min_lr_ratio",
    "beta1",
    "beta2",
    "adam_eps",
    "weight_decay",
    "grad_clip",
    "init_std",
)


def deepseek_lr(flops: float) -> float:
    return 0.3118 * flops**-0.1250  # DeepSeek LLM 2024, Fig. 3


def deepseek_batch_tokens(flops: float) -> float:
    return 0.2920 * flops**0.3271  # DeepSeek LLM 2024, Fig. 3


def resolve(n_params: int, n_tokens: int, seq_len: int, overrides: dict | None = None) -> HParams:
    """Hyperparameters for N (exact, from the shape) and D tokens, with `overrides` applied."""
    overrides = dict(overrides or {})
    n_params, n_tokens = int(round(n_params)), int(round(n_tokens))  # a scheduler may send floats
    for key in overrides:
        if key not in OVERRIDABLE:
            raise InputError(f"hparams: unknown key {key!r}; allowed: {', '.join(OVERRIDABLE)}")
    for key, value in overrides.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise InputError(f"hparams.{key}: expected a finite number, got {value!r}")
    flops = 6.0 * n_params * n_tokens
    lr = float(overrides.get("lr", min(LR_MAX, deepseek_lr(flops))))
    if "batch_tokens" in overrides:
        batch_seqs = max(1, round(overrides["batch_tokens"] / seq_len))
    else:
        cap = max(1, math.floor(n_tokens / MIN_STEPS / seq_len))  # keep at least MIN_STEPS steps
        batch_seqs = min(max(MIN_BATCH_SEQS, round(deepseek_batch_tokens(flops) / seq_len)), cap)
    n_steps = math.ceil(n_tokens / (batch_seqs * seq_len))
    warmup = int(overrides.get("warmup_steps", max(1, min(1000, round(0.05 * n_steps)))))
    kwargs = {k: float(v) for k, v in overrides.items() if k not in ("lr", "batch_tokens", "warmup_steps")}
    hp = HParams(lr=lr, batch_seqs=batch_seqs, seq_len=seq_len, n_steps=n_steps, warmup_steps=warmup, **kwargs)
    _validate(hp)
    return hp


def _validate(hp: HParams) -> None:
    positive = ("lr", "batch_seqs", "adam_eps", "grad_clip", "init_std")
    for f in fields(hp):
        value = getattr(hp, f.name)
        if f.name in positive and value <= 0:
            raise InputError(f"hparams.{f.name}: expected > 0, got {value}")
    if not 0 <= hp.min_lr_ratio <= 1:
        raise InputError(f"hparams.min_lr_ratio: expected in [0, 1], got {hp.min_lr_ratio}")
    for name in ("beta1", "beta2"):
        if not 0 <= getattr(hp, name) < 1:
            raise InputError(f"hparams.{name}: expected in [0, 1), got {getattr(hp, name)}")
    if hp.weight_decay < 0 or hp.warmup_steps < 0:
        raise InputError("hparams.weight_decay and hparams.warmup_steps must be >= 0")


def lr_at(step: int, hp: HParams) -> float:
    """LR of optimizer step `step` (0-based): warmup, then cosine to min_lr_ratio*lr at the last step."""
    if step < hp.warmup_steps:
        return hp.lr * (step + 1) / hp.warmup_steps
    decay_steps = hp.n_steps - 1 - hp.warmup_steps
    progress = 1.0 if decay_steps <= 0 else min(1.0, (step - hp.warmup_steps) / decay_steps)
    floor = hp.min_lr_ratio * hp.lr
    return floor + 0.5 * (hp.lr - floor) * (1.0 + math.cos(math.pi * progress))


def step_rows(step: int, hp: HParams, n_tokens: int) -> tuple[int, int]:
    """(sequences, target tokens) of optimizer step `step`; the last step is partial so the total is D."""
    start = step * hp.batch_tokens
    tokens = int(min(hp.batch_tokens, round(n_tokens) - start))
    return math.ceil(tokens / hp.seq_len), tokens
