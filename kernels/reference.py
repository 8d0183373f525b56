"""Pure-PyTorch references for every fused op. They define the math the Triton kernels must match,
and they are what the model runs on CPU and in CI.

Shapes: x (..., C) for norms; gate_up (..., 2F) for SwiGLU; q/k (B, H, T, Dh) for RoPE with cos/sin
(T, Dh/2); hidden (M, C) and head weight (V, C) for the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """y = x / sqrt(mean(x^2) + eps) * weight, computed in fp32 and cast back to x.dtype."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (y * weight.float()).to(x.dtype)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6):
    """Fused residual add + RMSNorm: s = x + residual; returns (rms_norm(s), s)."""
    s = x + residual
    return rms_norm(s, weight, eps), s


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding, half-split convention (Su et al. 2021; the Llama layout).

    x: (B, H, T, Dh); cos, sin: (T, Dh/2). With x = [x1, x2] split on the last dim:
    out = [x1*cos - x2*sin, x2*cos + x1*sin].
    """
    x1, x2 = x.float().chunk(2, dim=-1)
    c, s = cos.float(), sin.float()
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).to(x.dtype)


def swiglu(gate_up: torch.Tensor) -> torch.Tensor:
    """SwiGLU activation (Shazeer 2020) of a fused gate/up projection: gate_up (..., 2F) = [gate | up] ->
    silu(gate) * up, (..., F)."""
    gate, up = gate_up.float().chunk(2, dim=-1)
    return (F.silu(gate) * up).to(gate_up.dtype)


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         ignore_index: int = -100, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of logits = hidden @ weight.T against targets, in fp32.

    hidden: (M, C), weight: (V, C), targets: (M,) with `ignore_index` rows skipped.
    reduction "mean" averages over non-ignored rows; "none" returns per-row losses (0 where ignored).
    """
    logits = hidden.float() @ weight.float().t()  # (M, V)
    return F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction=reduction)
