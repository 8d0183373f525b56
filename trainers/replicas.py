"""Seed replicas: R models of one shape, from R seeds, trained side by side on the same batches as one module.

Why: on the GPU trainer one model's skill loss moves by more than a study's 1% from seed to seed
(experiments/README.md, "Seed noise and seed replicas"), and that deviation is set by the whole starting state,
which no LR, warmup or init scheme removes (docs/gpu.md, What the trainer's losses are like). What is left is to
average over starting states: a run with `trainer.seed_replicas: R` reports the mean of R independent models'
losses, whose seed std is the single model's over sqrt(R). It costs R times the FLOPs (RunResult.flops says so), but
at a study's small, launch-bound sizes much less than R times the GPU time, because the R models are one set of
kernels: every projection is one batched matmul over the replicas, attention runs over R x B sequences, and the CUDA
graphs and compiled code are one model's.

Equivalence: replica r starts from exactly the weights a single-model run of seed `replica_seed(seed, r)`
starts from (drawn by a plain Transformer, on the same device, in the same order), reads the same batches
(the study's data order does not depend on the seed), and gets the gradient of its own loss alone: the
training loss is the *sum* of the replicas' mean losses, gradient clipping is per replica
(`clip_grad_norm_`), and AdamW is elementwise. So each replica trains as its single-model run would, up to
the rounding of batched against single matmuls (tests/trainers/test_replicas.py checks this on CPU).
Replica 0 of seed s starts where the single-model run of seed s starts.

Layout: every parameter is the plain Transformer's, under the same name, with a leading replica dimension
(R, ...); `replica_state(r)` is therefore a plain Transformer's state dict (`replica_models` loads each into a
plain Transformer). Evaluation runs every replica in each forward (`forward(..., reduction="none")`: per-token
losses (R, B, T), trainers/evaluate.py), so R models cost about one model's launches. Norms use the pure-torch
reference (it broadcasts a per-replica gain; torch.compile fuses it); RoPE, SwiGLU and the fused head loss are
the backend's ops.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from kernels import get_ops
from kernels.reference import add_rms_norm, rms_norm
from trainers.model import IGNORE_INDEX, Transformer, rope_tables
from trainers.shapes import ModelConfig

REPLICA_SEED_STRIDE = 1000  # replica r of seed s starts from seed s + 1000 r: groups of base seeds 0..999 never share


def replica_seed(seed: int, r: int) -> int:
    """The seed replica r of a run of `seed` is initialised from (r = 0: the run's own seed)."""
    return seed + REPLICA_SEED_STRIDE * r


class _Stacked(nn.Module):
    """A weight (R, *shape) under the name `weight`, as nn.Linear and nn.Embedding hold theirs."""

    def __init__(self, replicas: int, *shape: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(replicas, *shape))


def _gain(replicas: int, width: int) -> nn.Parameter:
    return nn.Parameter(torch.ones(replicas, width))


def _bmm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x (R, ..., in) @ weight (R, out, in).T -> (R, ..., out): R linear layers in one batched matmul."""
    R, n_in = x.shape[0], x.shape[-1]
    y = torch.bmm(x.reshape(R, -1, n_in), weight.transpose(1, 2))
    return y.view(*x.shape[:-1], weight.shape[1])


class _Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, replicas: int):
        super().__init__()
        self.wqkv = _Stacked(replicas, 3 * cfg.d_model, cfg.d_model)
        self.wo = _Stacked(replicas, cfg.d_model, cfg.d_model)
        if cfg.qk_norm:
            self.q_norm = _gain(replicas, cfg.head_dim)
            self.k_norm = _gain(replicas, cfg.head_dim)


class _MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, replicas: int):
        super().__init__()
        self.w_gate_up = _Stacked(replicas, 2 * cfg.ffn_hidden, cfg.d_model)
        self.w_down = _Stacked(replicas, cfg.d_model, cfg.ffn_hidden)


class _Block(nn.Module):
    def __init__(self, cfg: ModelConfig, replicas: int):
        super().__init__()
        self.attn_norm = _gain(replicas, cfg.d_model)
        self.attn = _Attention(cfg, replicas)
        self.mlp_norm = _gain(replicas, cfg.d_model)
        self.mlp = _MLP(cfg, replicas)


class ReplicatedTransformer(nn.Module):
    """R Transformers of one shape in one module (module docstring). forward(idx, targets) is the sum over the
    replicas of each one's mean next-token loss, so that each replica's gradient is its own loss's."""

    stacked_dims = 1  # a parameter's leading replica dimension (a plain Transformer has none)

    def __init__(self, cfg: ModelConfig, replicas: int, use_triton: bool = False):
        super().__init__()
        if replicas < 1:
            raise ValueError(f"replicas: expected a positive integer, got {replicas}")
        self.cfg, self.replicas, self.use_triton = cfg, replicas, use_triton
        self.ops = get_ops(use_triton)
        self.embed = _Stacked(replicas, cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(_Block(cfg, replicas) for _ in range(cfg.n_layers))
        self.final_norm = _gain(replicas, cfg.d_model)
        self.head = _Stacked(replicas, cfg.vocab_size, cfg.d_model)
        cos, sin = rope_tables(cfg.seq_len, cfg.head_dim, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self._views: list[Transformer] = []  # one plain Transformer (not a submodule): init draws and evaluation

    def view_model(self) -> Transformer:
        """A plain Transformer of this shape on this module's device (made once, kept outside the parameters)."""
        device = self.head.weight.device
        if not self._views or self._views[0].head.weight.device != device:
            self._views[:] = [Transformer(self.cfg, use_triton=self.use_triton).to(device)]
        return self._views[0]

    @torch.no_grad()
    def init_replicas(self, seed: int, std: float = 0.02, scheme: str = "gpt2") -> None:
        """Replica r gets exactly the weights a plain Transformer draws after torch.manual_seed(replica_seed(seed,
        r)) on this device."""
        view = self.view_model()
        params = dict(self.named_parameters())
        for r in range(self.replicas):
            torch.manual_seed(replica_seed(seed, r))
            view.init_weights(std, scheme)
            for name, value in view.state_dict().items():
                params[name][r].copy_(value)

    @torch.no_grad()
    def replica_state(self, r: int) -> dict[str, torch.Tensor]:
        """Replica r's weights as a plain Transformer's state dict."""
        return {name: p[r] for name, p in self.named_parameters()}

    def replica_models(self) -> Iterator[Transformer]:
        """Each replica in turn, loaded into the one plain Transformer (valid until the next is yielded)."""
        view = self.view_model()
        for r in range(self.replicas):
            view.load_state_dict(self.replica_state(r))
            yield view

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Clip each replica's gradient to L2 norm max_norm over all its parameters, as
        torch.nn.utils.clip_grad_norm_ does for one model; returns the (R,) norms before clipping."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        squares = torch.stack([g.float().pow(2).reshape(self.replicas, -1).sum(1) for g in grads]).sum(0)
        norms = squares.sqrt()
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *[1] * (g.dim() - 1)).to(g.dtype))
        return norms

    def _norm(self, x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, gain[:, None, None, :], self.cfg.norm_eps)

    def _add_norm(self, x: torch.Tensor, residual: torch.Tensor, gain: torch.Tensor):
        return add_rms_norm(x, residual, gain[:, None, None, :], self.cfg.norm_eps)

    def _attention(self, attn: _Attention, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        R, B, T, C = x.shape
        H, Dh = self.cfg.n_heads, self.cfg.head_dim
        qkv = _bmm(x, attn.wqkv.weight).view(R, B, T, 3, H, Dh).permute(3, 0, 1, 4, 2, 5)  # (3, R, B, H, T, Dh)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.cfg.qk_norm:
            q = F.rms_norm(q, (Dh,), eps=self.cfg.norm_eps) * attn.q_norm[:, None, None, None, :].to(q.dtype)
            k = F.rms_norm(k, (Dh,), eps=self.cfg.norm_eps) * attn.k_norm[:, None, None, None, :].to(k.dtype)
        q = self.ops.rope(q.reshape(R * B, H, T, Dh), cos, sin)
        k = self.ops.rope(k.reshape(R * B, H, T, Dh), cos, sin)
        y = F.scaled_dot_product_attention(q, k, v.reshape(R * B, H, T, Dh), is_causal=True)  # (R*B, H, T, Dh)
        return _bmm(y.transpose(1, 2).reshape(R, B, T, C), attn.wo.weight)

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """Final normalised hidden states (R, B, T, C) of every replica for token ids idx (B, T)."""
        T = idx.shape[1]
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        residual = self.embed.weight[:, idx]  # (R, B, T, C)
        x = self._norm(residual, self.blocks[0].attn_norm)
        for i, block in enumerate(self.blocks):
            next_norm = self.blocks[i + 1].attn_norm if i + 1 < len(self.blocks) else self.final_norm
            x, residual = self._add_norm(self._attention(block.attn, x, cos, sin), residual, block.mlp_norm)
            mlp = _bmm(self.ops.swiglu(_bmm(x, block.mlp.w_gate_up.weight)), block.mlp.w_down.weight)
            x, residual = self._add_norm(mlp, residual, next_norm)
        return x

    def forward(self, idx: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy of every replica (nats); idx, targets (B, T). reduction "mean" (training): the sum over
        replicas of each one's mean loss; "none" (evaluation, trainers/evaluate.py): (R, B, T) per-token losses,
        0 where ignored, replica r's a plain Transformer's up to the rounding of batched matmuls."""
        if reduction not in ("mean", "none"):
            raise ValueError(f"ReplicatedTransformer: reduction 'mean' or 'none', got {reduction!r}")
        B, T = idx.shape
        x = self.hidden(idx).reshape(self.replicas, B * T, -1)  # (R, M, C)
        w = self.head.weight  # (R, V, C)
        if torch.is_autocast_enabled(x.device.type):  # the head matmul runs in the autocast dtype, like nn.Linear
            dtype = torch.get_autocast_dtype(x.device.type)
            x, w = x.to(dtype), w.to(dtype)
        flat = targets.reshape(B * T)
        losses = [self.ops.linear_cross_entropy(x[r], w[r], flat, ignore_index=IGNORE_INDEX, reduction=reduction)
                  for r in range(self.replicas)]
        if reduction == "none":
            return torch.stack(losses).view(self.replicas, B, T)
        return torch.stack(losses).sum()
