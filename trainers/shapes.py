"""The shape rule: a target parameter count N -> a Llama-style decoder shape (ModelConfig).

What N counts (fitting/conventions.py): the parameters that take part in matmuls, i.e. the
transformer blocks' projection matrices plus the output head. Not the input embedding (a lookup), not
the RMSNorm gains (elementwise). For a shape with d = d_model, L = n_layers, f = ffn_hidden, V = vocab:

    N = L * (4*d*d + 3*d*f) + V*d          # attention q,k,v,o + SwiGLU gate, up, down; head
    FLOPs/token (training) = 6*N + 6*L*T*d  # 6N (Kaplan et al. 2020) + causal attention (PaLM MFU)

The rule:
- aspect ratio d_model / n_layers = 64 (the nanoGPT/Chinchilla-small family: 256x4, 512x8, 768x12,
  1024x16 all sit on it); to hit N within a few percent, shapes with aspect in [32, 128] are allowed,
  and among the shapes whose N is within 3% (in log) of the best achievable the one closest to
  aspect 64 wins (then the smaller N, for determinism);
- d_model a multiple of 64; head_dim 64 (32 when d_model < 256, so tiny models still have >= 2 heads);
- ffn_hidden = the multiple of 64 nearest to 8/3 * d_model (Llama's SwiGLU sizing, Shazeer 2020).

Sizes run from d=64, L=1 (~70k with the byte vocabulary) to ~1.5B; a target below the smallest shape
is an InputError.

The shape grid (`grid_points`, TrainerSettings.shape_grid): the allowed shapes can be restricted to those the
rule gives the points of a log grid with a fixed number of points per decade (10^(j/k)); a target N then gets
whichever of its two neighbouring grid points' shapes is nearer to it. A study whose proposals vary N
continuously so meets few distinct shapes. Each new shape costs a torch.compile (tens of seconds) and a
cache entry towards dynamo's recompile limit (docs/gpu.md, Settings that matter: Compile); with 8 points per
decade a study over 1e6-1e8 parameters meets at most 17 shapes (fewer where neighbouring points share a
shape), and a realised N lies within about 20% of the target (at most half a grid step, 10^(1/16) = 1.155,
beyond the rule's own error). The exact N of the realised shape is reported with every result, so nothing
downstream is biased.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from fitting.conventions import FLOPS_PER_PARAM_TOKEN
from skillscale.errors import InputError

ASPECT = 64  # target d_model / n_layers
ASPECT_RANGE = (32, 128)  # allowed d_model / n_layers
MAX_D_MODEL = 4096
MAX_LAYERS = 64
N_TOLERANCE = 0.03  # log-distance within which the aspect ratio decides between shapes


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the decoder. Validates itself; every field is named in its error."""

    d_model: int
    n_layers: int
    n_heads: int
    vocab_size: int
    seq_len: int
    ffn_hidden: int = 0  # 0: multiple of 64 nearest to 8/3 * d_model
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    qk_norm: bool = False  # RMS-normalise queries and keys per head (trainers/model.py)

    def __post_init__(self):
        if self.ffn_hidden == 0:
            object.__setattr__(self, "ffn_hidden", ffn_hidden_for(self.d_model))
        for name in ("d_model", "n_layers", "n_heads", "vocab_size", "seq_len", "ffn_hidden"):
            if int(getattr(self, name)) <= 0:
                raise InputError(
                    f"ModelConfig.{name}: expected a positive integer, got {getattr(self, name)}"
                )
        if self.d_model % self.n_heads:
            raise InputError(f"ModelConfig.n_heads: {self.n_heads} does not divide d_model={self.d_model}")
        if self.head_dim % 2:
            raise InputError(f"ModelConfig.n_heads: head_dim {self.head_dim} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        d = asdict(self)
        d["head_dim"] = self.head_dim
        if not self.qk_norm:  # added later: a checkpoint written before it still matches its fingerprint
            del d["qk_norm"]
        return d


def ffn_hidden_for(d_model: int) -> int:
    """SwiGLU hidden width: the multiple of 64 nearest to 8/3 * d_model (at least 64)."""
    return max(64, 64 * round(8 * d_model / 3 / 64))


def head_dim_for(d_model: int) -> int:
    return 32 if d_model < 256 else 64


def count_params(cfg: ModelConfig) -> int:
    """N in closed form: matmul weights of the blocks + output head (no embedding, no norm gains)."""
    d, f = cfg.d_model, cfg.ffn_hidden
    per_block = 4 * d * d + 3 * d * f  # wqkv (3d x d) + wo (d x d) + w_gate_up (2f x d) + w_down (d x f)
    return cfg.n_layers * per_block + cfg.vocab_size * d


def flops_per_token(cfg: ModelConfig, attention: bool = True) -> float:
    """Training FLOPs per token: 6N, plus 6*L*T*d for causal attention scores and values (PaLM convention)."""
    flops = FLOPS_PER_PARAM_TOKEN * count_params(cfg)
    if attention:
        flops += FLOPS_PER_PARAM_TOKEN * cfg.n_layers * cfg.seq_len * cfg.d_model
    return flops


def _candidates(vocab_size: int, seq_len: int):
    for d_model in range(64, MAX_D_MODEL + 1, 64):
        lo = max(1, math.ceil(d_model / ASPECT_RANGE[1]))
        hi = min(MAX_LAYERS, d_model // ASPECT_RANGE[0])
        for n_layers in range(lo, hi + 1):
            yield ModelConfig(
                d_model=d_model,
                n_layers=n_layers,
                n_heads=d_model // head_dim_for(d_model),
                vocab_size=vocab_size,
                seq_len=seq_len,
            )


def smallest_shape(vocab_size: int, seq_len: int) -> ModelConfig:
    return ModelConfig(d_model=64, n_layers=1, n_heads=2, vocab_size=vocab_size, seq_len=seq_len)


def grid_points(n_params: float, per_decade: int) -> tuple[float, float]:
    """The two points 10^(j/per_decade) of the shape grid around `n_params` (below or at it, and above it)."""
    j = math.floor(per_decade * math.log10(n_params))
    return 10.0 ** (j / per_decade), 10.0 ** ((j + 1) / per_decade)


def shape_for(n_params: float, vocab_size: int, seq_len: int, grid_per_decade: int = 0) -> ModelConfig:
    """The shape whose N is nearest (in log) to `n_params`, preferring aspect ratio 64 (module docstring).

    With grid_per_decade > 0, only the shapes of grid points are allowed: of the shapes the rule gives the two
    grid points around `n_params`, the one whose N is nearer to `n_params`."""
    smallest = smallest_shape(vocab_size, seq_len)
    n_min = count_params(smallest)
    if n_params < n_min:
        raise InputError(
            f"n_params: {int(n_params):,} is below the smallest shape (d_model=64, n_layers=1: "
            f"N={n_min:,} with vocab {vocab_size}); ask for at least {n_min:,}"
        )
    if grid_per_decade <= 0:
        return _nearest_shape(n_params, vocab_size, seq_len)
    options = [_nearest_shape(max(point, n_min), vocab_size, seq_len)
               for point in grid_points(n_params, grid_per_decade)]
    return min(options, key=lambda c: (abs(math.log(count_params(c) / n_params)), count_params(c)))


def _nearest_shape(n_params: float, vocab_size: int, seq_len: int) -> ModelConfig:
    scored = []
    for cfg in _candidates(vocab_size, seq_len):
        err = abs(math.log(count_params(cfg) / n_params))
        scored.append((err, cfg))
    best_err = min(err for err, _ in scored)
    close = [cfg for err, cfg in scored if err <= best_err + N_TOLERANCE]
    return min(
        close,
        key=lambda c: (
            abs(math.log(c.d_model / (ASPECT * c.n_layers))),
            abs(math.log(count_params(c) / n_params)),
            count_params(c),
        ),
    )
