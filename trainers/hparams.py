"""Hyperparameters per run, from documented rules; every one overridable through RunSpec.hparams.

Rules (C = training FLOPs = 6*N*D, fitting/conventions.py; N as in trainers/shapes.py):
- Peak learning rate and batch size follow the compute power laws fitted by DeepSeek-AI,
  "DeepSeek LLM: Scaling Open-Source Language Models with Longtermism" (2024), Sec. 3.1, Fig. 3:
      lr_opt    = 0.3118 * C^-0.1250
      batch_opt = 0.2920 * C^0.3271     (tokens per step)
  with the learning rate scaled by LR_RULE_SCALE = 0.5 for this trainer: its small models train best at about
  half DeepSeek's value, and under the default QK-norm and small-init the scaled rule is best or nearly best of
  0.5x / 1x / 2x for both skills (experiments/README.md, "Learning-rate rule").
  The batch is rounded to whole sequences and clamped to [MIN_BATCH_SEQS sequences, D / MIN_STEPS tokens]
  so that tiny runs still take enough optimizer steps; lr is clamped to at most LR_MAX. The rules are
  evaluated at D = `rule_n_tokens` when that is given (the branches of a run family share the family's
  longest D, so their stable phases are one training), else at the run's own D.
- Schedule, linear warmup over `warmup_steps` = 5% of the steps (at least 1, at most 1000), then either
  - "cosine" (the default): cosine decay from lr to min_lr_ratio * lr reached exactly at the last step,
    i.e. at D tokens. min_lr_ratio defaults to 0, decay to zero (Bergsma et al. 2025, "Straight to Zero",
    arXiv:2502.15938, found decay to zero better than to 10%); or
  - "wsd", warmup-stable-decay: constant lr, then a cooldown over the last `cooldown_fraction` of the steps
    (default 20%) to min_lr_ratio * lr at the last step, of shape "linear" or "1-sqrt" (lr falls as
    1 - sqrt(progress): Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed
    Training Durations", arXiv:2405.18392, found a 20% 1-sqrt cooldown to match cosine; WSD is MiniCPM's
    schedule, Hu et al. 2024, arXiv:2404.06395). Because the lr before the cooldown does not depend on D,
    one constant-lr training can be cooled down at several D (a run family, trainers/spec.py FamilySpec).
- Initialisation `init_scheme`: "small-init" (the default: N(0, sqrt(2 / (5 d_model))), residual outputs
  scaled by 1/sqrt(2L); GPT-2's 0.02 is that std only at d_model 1,000), "gpt2" (the same with std `init_std`,
  0.02), "zero-out" (residual outputs and the output head start at zero) or "orthogonal" (small-init's scale,
  orthogonal matrices); trainers/model.py says why. small-init is the default because, with the trainer's
  QK-norm (trainers/settings.py), it trains a study's small models to lower losses than gpt2 with a smaller
  seed spread (the spread that remains: docs/gpu.md, What the trainer's losses are like). `init_std` applies to
  "gpt2" and "zero-out" only, so setting it needs `init_scheme` beside it.
- AdamW (Loshchilov & Hutter 2019) with beta1 0.9, beta2 0.95, eps 1e-8, weight decay 0.1 on matrices
  (embedding, projections, head; not the RMSNorm gains); gradient clipping at global norm 1.0.

Exactly D tokens: a "trained token" is a prediction target. steps = ceil(D / batch_tokens); the last step
takes ceil(rest / seq_len) sequences and masks the targets beyond D, so the run sees exactly D targets.
D must be at least one batch (a smaller D would train one partly masked batch and report less compute than
it spent): `resolve` refuses it, naming the minimum.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields

from fitting.conventions import training_flops
from skillscale.errors import InputError

LR_MAX = 1e-2
LR_RULE_SCALE = 0.5  # this trainer's optimum relative to DeepSeek's rule (module docstring)
MIN_BATCH_SEQS = 8
MIN_STEPS = 50
WARMUP_FRACTION = 0.05  # of the steps, at least 1, at most MAX_WARMUP_STEPS
MAX_WARMUP_STEPS = 1000
SCHEDULES = ("cosine", "wsd")
COOLDOWN_SHAPES = ("linear", "1-sqrt")
INIT_SCHEMES = ("small-init", "gpt2", "zero-out", "orthogonal")  # trainers/model.py Transformer.init_weights
WIDTH_SCALED_SCHEMES = ("small-init", "orthogonal")  # the std is sqrt(2 / (5 d_model)), init_std unused
DEFAULT_COOLDOWN_FRACTION = 0.2  # Hägele et al. 2024 (arXiv:2405.18392): a 20% cooldown matches cosine


@dataclass(frozen=True)
class HParams:
    """Resolved hyperparameters of one run (plain numbers; stored in checkpoints and results)."""

    lr: float  # peak learning rate
    batch_seqs: int  # sequences per optimizer step
    seq_len: int  # tokens per sequence
    n_steps: int  # optimizer steps of the run (the last one may be partial)
    warmup_steps: int  # linear warmup steps
    min_lr_ratio: float = 0.0  # the lr at the last step, as a fraction of lr
    beta1: float = 0.9  # AdamW
    beta2: float = 0.95  # AdamW
    adam_eps: float = 1e-8  # AdamW
    weight_decay: float = 0.1  # AdamW, on matrices only
    grad_clip: float = 1.0  # global gradient-norm clip
    init_std: float = 0.02  # GPT-2 initialisation (trainers/model.py)
    init_scheme: str = "small-init"  # one of INIT_SCHEMES (trainers/model.py Transformer.init_weights)
    schedule: str = "cosine"  # "cosine" or "wsd" (warmup-stable-decay)
    cooldown_fraction: float = DEFAULT_COOLDOWN_FRACTION  # wsd: fraction of the steps in the final decay
    cooldown_shape: str = "1-sqrt"  # wsd: "linear" or "1-sqrt" (Hägele et al. 2024)

    @property
    def batch_tokens(self) -> int:
        return self.batch_seqs * self.seq_len

    @property
    def cooldown_steps(self) -> int:
        """wsd: steps in the final decay (at least 1); cosine: 0 (its decay spans the run)."""
        if self.schedule != "wsd":
            return 0
        return max(1, round(self.cooldown_fraction * self.n_steps))

    @property
    def cooldown_start(self) -> int:
        """The first step (0-based) whose lr depends on where the run ends: the branch point of a family.
        Every step before it has the same lr in every run with this lr, warmup and schedule."""
        return self.n_steps - self.cooldown_steps if self.schedule == "wsd" else self.warmup_steps

    def to_dict(self) -> dict:
        """Every field, except a field added later while it holds the value every earlier run trained with (so a
        checkpoint written before the field existed still matches its run's fingerprint)."""
        d = asdict(self)
        for name, value in ADDED_LATER.items():
            if d[name] == value:
                del d[name]
        return d


ADDED_LATER = {"init_scheme": "gpt2"}  # HParams fields newer than the first checkpoints, with their old value

# keys a RunSpec.hparams dict may set; "batch_tokens" is rounded to whole sequences; "rule_n_tokens" is the D
# at which the lr/batch/warmup rules are evaluated (default: the run's own D)
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
    "init_scheme",
    "schedule",
    "cooldown_fraction",
    "cooldown_shape",
    "rule_n_tokens",
)
# the overrides that are not numbers
_TEXT_CHOICES = {"schedule": SCHEDULES, "cooldown_shape": COOLDOWN_SHAPES, "init_scheme": INIT_SCHEMES}
TEXT_OVERRIDES = tuple(_TEXT_CHOICES)
INTEGER_OVERRIDES = ("batch_tokens", "warmup_steps", "rule_n_tokens")  # counts; the other numbers are floats


def run_defaults() -> dict:
    """What every run resolves from unless overridden: HParams' defaults and the rules' constants. A torch study
    freezes them (scheduler/config.py StudyConfig.frozen_dict), so a resume under other defaults is refused
    instead of mixing runs of two trainers in one fit."""
    return {**{f.name: f.default for f in fields(HParams) if f.default is not MISSING},
            "lr_rule_scale": LR_RULE_SCALE, "lr_max": LR_MAX, "min_batch_seqs": MIN_BATCH_SEQS, "min_steps": MIN_STEPS,
            "warmup_fraction": WARMUP_FRACTION, "max_warmup_steps": MAX_WARMUP_STEPS}


def deepseek_lr(flops: float) -> float:
    return 0.3118 * flops**-0.1250  # DeepSeek LLM 2024, Fig. 3


def rule_lr(flops: float) -> float:
    """The peak LR of a run of `flops` training FLOPs: DeepSeek's rule, scaled for this trainer, capped."""
    return min(LR_MAX, LR_RULE_SCALE * deepseek_lr(flops))


def deepseek_batch_tokens(flops: float) -> float:
    return 0.2920 * flops**0.3271  # DeepSeek LLM 2024, Fig. 3


def check_overrides(overrides: dict) -> None:
    """InputError naming the key for an override that is unknown or of the wrong kind, or that another one
    makes meaningless (init_std under small-init, the default, or orthogonal, which set the std from d_model)."""
    scheme = overrides.get("init_scheme", HParams.init_scheme)
    if "init_std" in overrides and scheme in WIDTH_SCALED_SCHEMES:
        default = " (the default)" if scheme == HParams.init_scheme else ""
        raise InputError(f"hparams.init_std: init_scheme {scheme}{default} sets the std from d_model; set init_scheme "
                         "gpt2 or zero-out beside init_std, or leave init_std out")
    for key, value in overrides.items():
        if key not in OVERRIDABLE:
            raise InputError(f"hparams: unknown key {key!r}; allowed: {', '.join(OVERRIDABLE)}")
        if key in _TEXT_CHOICES:
            if value not in _TEXT_CHOICES[key]:
                raise InputError(f"hparams.{key}: expected one of {', '.join(_TEXT_CHOICES[key])}, got {value!r}")
        elif not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise InputError(f"hparams.{key}: expected a finite number, got {value!r}")


def resolve(n_params: int, n_tokens: int, seq_len: int, overrides: dict | None = None) -> HParams:
    """Hyperparameters for N (exact, from the shape) and D tokens, with `overrides` applied."""
    overrides = dict(overrides or {})
    check_overrides(overrides)
    n_params, n_tokens = int(round(n_params)), int(round(n_tokens))  # a scheduler may send floats
    rule_tokens = int(round(overrides.get("rule_n_tokens", n_tokens)))
    if rule_tokens <= 0:
        raise InputError(f"hparams.rule_n_tokens: expected > 0, got {overrides['rule_n_tokens']}")
    flops = training_flops(n_params, rule_tokens)
    lr = float(overrides.get("lr", rule_lr(flops)))
    if "batch_tokens" in overrides:
        batch_seqs = max(1, round(overrides["batch_tokens"] / seq_len))
    else:
        cap = max(1, math.floor(rule_tokens / MIN_STEPS / seq_len))  # keep at least MIN_STEPS steps
        batch_seqs = min(max(MIN_BATCH_SEQS, round(deepseek_batch_tokens(flops) / seq_len)), cap)
    if n_tokens < batch_seqs * seq_len:
        raise InputError(
            f"n_tokens: {n_tokens:,} is below one batch ({batch_seqs} x {seq_len} = {batch_seqs * seq_len:,} tokens); "
            f"ask for at least {batch_seqs * seq_len:,}"
        )
    n_steps = math.ceil(n_tokens / (batch_seqs * seq_len))
    rule_steps = math.ceil(rule_tokens / (batch_seqs * seq_len))
    warmup = int(overrides.get("warmup_steps", max(1, min(MAX_WARMUP_STEPS, round(WARMUP_FRACTION * rule_steps)))))
    text = {k: v for k, v in overrides.items() if k in _TEXT_CHOICES}
    numbers = {k: float(v) for k, v in overrides.items()
               if k not in ("lr", "batch_tokens", "warmup_steps", "rule_n_tokens", *_TEXT_CHOICES)}
    hp = HParams(lr=lr, batch_seqs=batch_seqs, seq_len=seq_len, n_steps=n_steps, warmup_steps=warmup,
                 **numbers, **text)
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
    if not 0 < hp.cooldown_fraction <= 1:
        raise InputError(f"hparams.cooldown_fraction: expected in (0, 1], got {hp.cooldown_fraction}")
    if hp.schedule == "wsd" and hp.cooldown_start < hp.warmup_steps:
        raise InputError(
            f"hparams.cooldown_fraction: the cooldown of {hp.cooldown_steps} of {hp.n_steps} steps would start "
            f"inside the {hp.warmup_steps}-step warmup; use a smaller cooldown_fraction or warmup_steps, or more tokens"
        )


def lr_at(step: int, hp: HParams) -> float:
    """LR of optimizer step `step` (0-based): warmup, then the schedule's decay to min_lr_ratio*lr at the last step."""
    if step < hp.warmup_steps:
        return hp.lr * (step + 1) / hp.warmup_steps
    floor = hp.min_lr_ratio * hp.lr
    if hp.schedule == "wsd":
        if step < hp.cooldown_start:
            return hp.lr  # the stable phase
        progress = min(1.0, (step - hp.cooldown_start + 1) / hp.cooldown_steps)  # (0, 1], 1 at the last step
        fall = math.sqrt(progress) if hp.cooldown_shape == "1-sqrt" else progress
        return floor + (hp.lr - floor) * (1.0 - fall)
    decay_steps = hp.n_steps - 1 - hp.warmup_steps
    progress = 1.0 if decay_steps <= 0 else min(1.0, (step - hp.warmup_steps) / decay_steps)
    return floor + 0.5 * (hp.lr - floor) * (1.0 + math.cos(math.pi * progress))


def step_rows(step: int, hp: HParams, n_tokens: int) -> tuple[int, int]:
    """(sequences, target tokens) of optimizer step `step`; the last step is partial so the total is D."""
    start = step * hp.batch_tokens
    tokens = int(min(hp.batch_tokens, round(n_tokens) - start))
    return math.ceil(tokens / hp.seq_len), tokens
