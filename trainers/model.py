"""A Llama-style decoder in one file: RMSNorm, RoPE (half-split), SwiGLU, no biases, SDPA causal
attention, untied input embedding and output head. Optionally (`ModelConfig.qk_norm`) queries and keys are
RMS-normalised per head before RoPE, with a learned gain over head_dim (QK-layernorm: Dehghani et al. 2023,
arXiv:2302.05442; Wortsman et al. 2023, arXiv:2309.14322, found it removes the attention-logit growth that
makes small models sensitive to the LR); the trainer turns it on by default (TrainerSettings.qk_norm). The
gains are not counted in N.

The fused ops come from `kernels.get_ops(use_triton)` once, at construction: on CPU/CI the pure-torch
references, on CUDA the Triton kernels (same signatures). The loss goes through
`ops.linear_cross_entropy(hidden (M, C), head.weight (V, C), targets (M,))` so a fused kernel never has
to materialise the (M, V) logits.

Shapes: B batch, T sequence, C = d_model, H heads, Dh = head_dim, F = ffn_hidden, V = vocab.
What N counts is in trainers/shapes.py; `matmul_weights()` lists exactly those tensors.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from kernels import Ops, get_ops
from trainers.hparams import INIT_SCHEMES, WIDTH_SCALED_SCHEMES
from trainers.shapes import ModelConfig

IGNORE_INDEX = -100  # targets with this value contribute no loss


def rope_tables(seq_len: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables of shape (T, Dh/2) for the half-split RoPE layout (Su et al. 2021)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (Dh/2,)
    angles = torch.arange(seq_len, dtype=torch.float64)[:, None] * inv_freq[None, :]  # (T, Dh/2)
    return angles.cos().float(), angles.sin().float()


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, ops: Ops):
        super().__init__()
        self.cfg, self.ops = cfg, ops
        self.wqkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)  # fused q, k, v projections
        self.wo = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        if cfg.qk_norm:
            self.q_norm = nn.Parameter(torch.ones(cfg.head_dim))
            self.k_norm = nn.Parameter(torch.ones(cfg.head_dim))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        H, Dh = self.cfg.n_heads, self.cfg.head_dim
        q, k, v = self.wqkv(x).view(B, T, 3, H, Dh).permute(2, 0, 3, 1, 4)  # each (B, H, T, Dh)
        if self.cfg.qk_norm:
            # float32 gains on bf16 queries: torch skips its fused rms_norm and warns ("Mismatch dtype"). The gains
            # stay float32: cast to bf16 they are no faster and round gains near 1 to steps of 1/128.
            q = F.rms_norm(q, (Dh,), self.q_norm, self.cfg.norm_eps)
            k = F.rms_norm(k, (Dh,), self.k_norm, self.cfg.norm_eps)
        q, k = self.ops.rope(q, cos, sin), self.ops.rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, Dh)
        return self.wo(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, ops: Ops):
        super().__init__()
        self.ops = ops
        self.w_gate_up = nn.Linear(cfg.d_model, 2 * cfg.ffn_hidden, bias=False)  # fused gate and up
        self.w_down = nn.Linear(cfg.ffn_hidden, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_down(self.ops.swiglu(self.w_gate_up(x)))  # (B, T, 2F) -> (B, T, F) -> (B, T, C)


class Block(nn.Module):
    """Pre-norm block. The residual add of one sub-layer is fused with the norm of the next."""

    def __init__(self, cfg: ModelConfig, ops: Ops):
        super().__init__()
        self.attn_norm = nn.Parameter(torch.ones(cfg.d_model))
        self.attn = Attention(cfg, ops)
        self.mlp_norm = nn.Parameter(torch.ones(cfg.d_model))
        self.mlp = MLP(cfg, ops)


class Transformer(nn.Module):
    stacked_dims = 0  # leading dimensions before a parameter's own shape (trainers/replicas.py stacks one)

    def __init__(self, cfg: ModelConfig, use_triton: bool = False):
        super().__init__()
        self.cfg = cfg
        self.ops = get_ops(use_triton)
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, self.ops) for _ in range(cfg.n_layers))
        self.final_norm = nn.Parameter(torch.ones(cfg.d_model))
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)  # untied from the embedding
        cos, sin = rope_tables(cfg.seq_len, cfg.head_dim, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)  # (T, Dh/2)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self, std: float = 0.02, scheme: str = "gpt2") -> None:
        """Initialise every weight; called again (after seeding) when a cached model is reused for a new run.

        "gpt2": N(0, std) everywhere, the residual-output projections (wo, w_down) scaled by 1/sqrt(2L).
        "small-init": as gpt2 with std = sqrt(2 / (5 d_model)) in place of `std` (Nguyen & Salazar 2019,
        "Transformers without Tears", arXiv:1910.05895; GPT-NeoX's "small_init"). GPT-2's 0.02 is that value at
        d_model 1,000; at the widths of a small-model study (64-448) it is 1.5-4x smaller, and a model that starts
        that small spends a seed-dependent time on the plateau before attention becomes useful.
        "zero-out": as gpt2, but wo, w_down and the output head start at exactly zero, so every seed starts
        from the same function (uniform next-token distribution; each block the identity on the residual
        stream) and the draw only sets the directions the first updates grow from (the init of
        modded-nanogpt's speedruns, github.com/KellerJordan/modded-nanogpt; with AdamW it learns far slower).
        "orthogonal": as small-init, but every matrix is a random orthogonal one (Saxe et al. 2014,
        arXiv:1312.6120) scaled to the Frobenius norm a Gaussian of that std has: all its singular values equal
        std * sqrt(max(rows, cols)) instead of spreading over the Marchenko-Pastur range, so the draw sets the
        directions but not the spectrum (it does not make the seed spread smaller: docs/gpu.md, What the
        trainer's losses are like).
        Gains start at 1 in every scheme."""
        if scheme not in INIT_SCHEMES:
            raise ValueError(f"init scheme: expected one of {INIT_SCHEMES}, got {scheme!r}")
        if scheme in WIDTH_SCALED_SCHEMES:
            std = math.sqrt(2.0 / (5.0 * self.cfg.d_model))
        out_std = 0.0 if scheme == "zero-out" else std / math.sqrt(2 * self.cfg.n_layers)

        def draw(weight: torch.Tensor, s: float) -> None:
            if scheme == "orthogonal":
                nn.init.orthogonal_(weight, gain=s * math.sqrt(max(weight.shape)))
            else:
                nn.init.normal_(weight, std=s)

        for block in self.blocks:
            block.attn_norm.fill_(1.0)
            block.mlp_norm.fill_(1.0)
            if self.cfg.qk_norm:
                block.attn.q_norm.fill_(1.0)
                block.attn.k_norm.fill_(1.0)
            draw(block.attn.wqkv.weight, std)
            draw(block.mlp.w_gate_up.weight, std)
            draw(block.attn.wo.weight, out_std)
            draw(block.mlp.w_down.weight, out_std)
        draw(self.embed.weight, std)
        draw(self.head.weight, 0.0 if scheme == "zero-out" else std)
        self.final_norm.fill_(1.0)

    def matmul_weights(self) -> list[torch.Tensor]:
        """The tensors N counts: every block projection and the output head (not the embedding)."""
        return [m.weight for m in self.modules() if isinstance(m, nn.Linear)]

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """Final normalised hidden states (B, T, C) for token ids idx (B, T)."""
        T = idx.shape[1]
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        residual = self.embed(idx)  # (B, T, C)
        x = self.ops.rms_norm(residual, self.blocks[0].attn_norm, self.cfg.norm_eps)
        for i, block in enumerate(self.blocks):
            next_norm = self.blocks[i + 1].attn_norm if i + 1 < len(self.blocks) else self.final_norm
            x, residual = self.ops.add_rms_norm(
                block.attn(x, cos, sin), residual, block.mlp_norm, self.cfg.norm_eps
            )
            x, residual = self.ops.add_rms_norm(block.mlp(x), residual, next_norm, self.cfg.norm_eps)
        return x  # (B, T, C), already passed through final_norm

    def forward(self, idx: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy of next-token predictions, nats. idx, targets: (B, T); IGNORE_INDEX skips a target.

        reduction "mean": scalar mean over kept targets; "none": (B, T) per-token losses (0 where ignored).
        """
        B, T = idx.shape
        x = self.hidden(idx).reshape(B * T, -1)  # (M, C), M = B*T
        w = self.head.weight  # (V, C)
        if torch.is_autocast_enabled(
            x.device.type
        ):  # the head matmul runs in the autocast dtype, like nn.Linear
            dtype = torch.get_autocast_dtype(x.device.type)
            x, w = x.to(dtype), w.to(dtype)
        loss = self.ops.linear_cross_entropy(
            x, w, targets.reshape(B * T), ignore_index=IGNORE_INDEX, reduction=reduction
        )
        return loss if reduction == "mean" else loss.view(B, T)
