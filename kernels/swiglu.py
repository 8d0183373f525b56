"""SwiGLU activation, silu(gate) * up (Shazeer 2020), as Triton kernels.

Tiers: `_swiglu_fwd_kernel` / `_swiglu_bwd_kernel` -> launchers `swiglu_fwd(gate, up)` /
`swiglu_bwd(dy, gate, up)` (torch ops, see kernels._op) -> `SwiGLUFunction` -> `swiglu`.
gate and up are (..., N) of one shape; they may be strided views along rows (e.g. the two halves of a fused
gate/up projection), as long as the last dim is contiguous.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._op import kernel_op, launch

_BLOCK = 1024  # columns per program


@triton.jit
def _swiglu_fwd_kernel(G, U, Y, stride_g, stride_u, stride_y, n_cols, BLOCK: tl.constexpr):
    """y = silu(g) * u = g * sigmoid(g) * u, in fp32, stored in Y's dtype. Program (row, column block)."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_cols
    g = tl.load(G + row * stride_g + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + row * stride_u + cols, mask=mask, other=0.0).to(tl.float32)
    y = g * tl.sigmoid(g) * u
    tl.store(Y + row * stride_y + cols, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_bwd_kernel(DY, G, U, DG, DU, stride_dy, stride_g, stride_u, n_cols, BLOCK: tl.constexpr):
    """With sg = sigmoid(g):
        du = dy * g * sg                       (= dy * silu(g))
        dg = dy * u * sg * (1 + g * (1 - sg))  (d silu / dg = sg + g*sg*(1-sg))
    DG and DU are contiguous (M, N); everything in fp32.
    """
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_cols
    dy = tl.load(DY + row * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(G + row * stride_g + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + row * stride_u + cols, mask=mask, other=0.0).to(tl.float32)
    sg = tl.sigmoid(g)
    du = dy * g * sg
    dg = dy * u * sg * (1.0 + g * (1.0 - sg))
    tl.store(DG + row * n_cols + cols, dg.to(DG.dtype.element_ty), mask=mask)
    tl.store(DU + row * n_cols + cols, du.to(DU.dtype.element_ty), mask=mask)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """(..., N) -> (M, N) without copying when the leading dims collapse to one row stride."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    try:
        return x.view(-1, x.shape[-1])
    except RuntimeError:  # leading dims not collapsible
        return x.contiguous().view(-1, x.shape[-1])


def _check(gate: torch.Tensor, up: torch.Tensor) -> None:
    if gate.shape != up.shape:
        raise ValueError(f"swiglu: gate {tuple(gate.shape)} and up {tuple(up.shape)} must have one shape")


def _swiglu_fwd_fake(gate, up):
    return gate.new_empty(gate.shape)


@kernel_op("swiglu_fwd", _swiglu_fwd_fake)
def swiglu_fwd(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up in gate.dtype, contiguous, same shape."""
    _check(gate, up)
    g2, u2 = _rows(gate), _rows(up)
    n_rows, n_cols = g2.shape
    y = torch.empty((n_rows, n_cols), dtype=gate.dtype, device=gate.device)
    if y.numel():
        grid = (n_rows, triton.cdiv(n_cols, _BLOCK))
        launch(_swiglu_fwd_kernel)[grid](g2, u2, y, g2.stride(0), u2.stride(0), y.stride(0), n_cols,
                                 BLOCK=_BLOCK, num_warps=4)
    return y.view(gate.shape)



def _swiglu_bwd_fake(dy, gate, up):
    return gate.new_empty(gate.shape), up.new_empty(up.shape)


@kernel_op("swiglu_bwd", _swiglu_bwd_fake)
def swiglu_bwd(dy: torch.Tensor, gate: torch.Tensor, up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dgate in gate.dtype, dup in up.dtype) of y = silu(gate) * up."""
    _check(gate, up)
    dy2, g2, u2 = _rows(dy), _rows(gate), _rows(up)
    n_rows, n_cols = g2.shape
    dg = torch.empty((n_rows, n_cols), dtype=gate.dtype, device=gate.device)
    du = torch.empty((n_rows, n_cols), dtype=up.dtype, device=up.device)
    if dg.numel():
        grid = (n_rows, triton.cdiv(n_cols, _BLOCK))
        launch(_swiglu_bwd_kernel)[grid](dy2, g2, u2, dg, du, dy2.stride(0), g2.stride(0), u2.stride(0),
                                         n_cols,
                                 BLOCK=_BLOCK, num_warps=4)
    return dg.view(gate.shape), du.view(up.shape)



class SwiGLUFunction(torch.autograd.Function):
    """silu(gate) * up, Triton forward and backward (the backward recomputes sigmoid; nothing extra saved)."""

    @staticmethod
    def forward(ctx, gate, up):
        ctx.save_for_backward(gate, up)
        return swiglu_fwd(gate, up)

    @staticmethod
    def backward(ctx, dy):
        gate, up = ctx.saved_tensors
        return swiglu_bwd(dy, gate, up)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Triton SwiGLU; same signature and math as `kernels.reference.swiglu`."""
    return SwiGLUFunction.apply(gate, up)
