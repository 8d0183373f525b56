"""The counting conventions of skillscale, written down once.

Every output (JSON, tables, plots) carries `conventions_dict()` so a reader knows what N and C mean.

- N (`n_params`) counts the parameters that take part in matmuls: the transformer blocks and the
  output head. The input embedding is a lookup, not a matmul, so it is excluded (Kaplan et al. 2020
  exclude embeddings altogether; we keep the head because its matmul costs 2·d·V FLOPs per token,
  which is large for small models).
- D (`n_tokens`) counts training tokens seen, i.e. optimizer steps x batch size x sequence length.
- C (`flops`) = 6·N·D by default (forward 2ND + backward 4ND; Hoffmann et al. 2022, Kaplan et al. 2020).
  With `attention=True` it adds the attention score/value matmuls, 6·n_layers·seq_len·d_model per
  token (12·L·T·d forward+backward halved for causal masking), as in the PaLM MFU convention.
- Losses are natural-log negative log-likelihoods (nats per token).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

FLOPS_PER_PARAM_TOKEN = 6.0  # forward 2 + backward 4 FLOPs per (parameter, token)


@dataclass(frozen=True)
class Conventions:
    """How N, D and C are counted in one output."""

    n_params: str = "non-embedding parameters that take part in matmuls (blocks + output head)"
    n_tokens: str = "training tokens seen"
    flops: str = "C = 6*N*D"
    attention_flops: bool = False
    loss: str = "mean negative log-likelihood, nats per token"

    def to_dict(self) -> dict:
        return asdict(self)


def conventions_dict(attention_flops: bool = False) -> dict:
    """The conventions block written into every JSON output."""
    if attention_flops:
        return Conventions(flops="C = 6*N*D + 6*n_layers*seq_len*d_model*D", attention_flops=True).to_dict()
    return Conventions().to_dict()


def training_flops(n_params, n_tokens, *, n_layers: int = 0, seq_len: int = 0, d_model: int = 0,
                   attention: bool = False):
    """Training FLOPs C for N params and D tokens (numpy arrays or scalars broadcast).

    `attention=True` adds 6·L·T·d per token (causal attention, forward + backward).
    """
    flops = FLOPS_PER_PARAM_TOKEN * n_params * n_tokens
    if attention:
        flops = flops + FLOPS_PER_PARAM_TOKEN * n_layers * seq_len * d_model * n_tokens
    return flops
