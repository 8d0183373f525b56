"""SwiGLU activation, silu(gate) * up (Shazeer 2020), as Triton kernels.

The op takes the fused gate/up projection output, gate_up (..., 2F) = [gate | up], and returns (..., F).
Taking the fused tensor (not its two halves) lets the backward kernel write d(gate_up) as one (M, 2F)
buffer: given the two halves, autograd would concatenate separate dgate and dup afterwards, an extra read
and write of 2F columns per token that Inductor's fused baseline does not pay.

Tiers: `_swiglu_fwd_kernel` / `_swiglu_bwd_kernel` -> launchers `swiglu_fwd(gate_up)` /
`swiglu_bwd(dy, gate_up)` (torch ops, see kernels._op) -> `SwiGLUFunction` -> `swiglu`.
gate_up may be a row-strided view as long as its last dim is contiguous.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._op import kernel_op, launch

_BLOCK = 1024  # columns per program


@triton.jit
def _swiglu_fwd_kernel(GU, Y, stride_gu, stride_y, n_cols, BLOCK: tl.constexpr):
    """y = silu(g) * u = g * sigmoid(g) * u with g = GU[:, :n], u = GU[:, n:], in fp32, stored in Y's dtype.

    Program (row, column block)."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_cols
    g = tl.load(GU + row * stride_gu + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(GU + row * stride_gu + n_cols + cols, mask=mask, other=0.0).to(tl.float32)
    y = g * tl.sigmoid(g) * u
    tl.store(Y + row * stride_y + cols, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_bwd_kernel(DY, GU, DGU, stride_dy, stride_gu, n_cols, BLOCK: tl.constexpr):
    """With sg = sigmoid(g):
        du = dy * g * sg                       (= dy * silu(g))
        dg = dy * u * sg * (1 + g * (1 - sg))  (d silu / dg = sg + g*sg*(1-sg))
    DGU is contiguous (M, 2n): [dg | du]; everything in fp32.
    """
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_cols
    dy = tl.load(DY + row * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(GU + row * stride_gu + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(GU + row * stride_gu + n_cols + cols, mask=mask, other=0.0).to(tl.float32)
    sg = tl.sigmoid(g)
    du = dy * g * sg
    dg = dy * u * sg * (1.0 + g * (1.0 - sg))
    out = DGU + row * 2 * n_cols + cols
    tl.store(out, dg.to(DGU.dtype.element_ty), mask=mask)
    tl.store(out + n_cols, du.to(DGU.dtype.element_ty), mask=mask)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """(..., N) -> (M, N) without copying when the leading dims collapse to one row stride."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    try:
        return x.view(-1, x.shape[-1])
    except RuntimeError:  # leading dims not collapsible
        return x.contiguous().view(-1, x.shape[-1])


def _half(gate_up: torch.Tensor) -> int:
    if gate_up.dim() == 0 or gate_up.shape[-1] % 2:
        raise ValueError(f"swiglu: expected gate_up (..., 2F) with an even last dim, got {tuple(gate_up.shape)}")
    return gate_up.shape[-1] // 2


# ---- launchers (torch ops, see kernels._op) ----------------------------------------------------------


def _swiglu_fwd_fake(gate_up):
    return gate_up.new_empty((*gate_up.shape[:-1], _half(gate_up)))


@kernel_op("swiglu_fwd", _swiglu_fwd_fake)
def swiglu_fwd(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up in gate_up.dtype, contiguous (..., F), for gate_up = [gate | up] (..., 2F)."""
    n_cols = _half(gate_up)
    gu = _rows(gate_up)
    n_rows = gu.shape[0]
    y = torch.empty((n_rows, n_cols), dtype=gate_up.dtype, device=gate_up.device)
    if y.numel():
        grid = (n_rows, triton.cdiv(n_cols, _BLOCK))
        launch(_swiglu_fwd_kernel)[grid](gu, y, gu.stride(0), y.stride(0), n_cols, BLOCK=_BLOCK, num_warps=4)
    return y.view(*gate_up.shape[:-1], n_cols)


def _swiglu_bwd_fake(dy, gate_up):
    return gate_up.new_empty(gate_up.shape)


@kernel_op("swiglu_bwd", _swiglu_bwd_fake)
def swiglu_bwd(dy: torch.Tensor, gate_up: torch.Tensor) -> torch.Tensor:
    """d(gate_up) = [dgate | dup] in gate_up.dtype, contiguous, of y = silu(gate) * up."""
    n_cols = _half(gate_up)
    dy2, gu = _rows(dy), _rows(gate_up)
    n_rows = gu.shape[0]
    dgu = torch.empty((n_rows, 2 * n_cols), dtype=gate_up.dtype, device=gate_up.device)
    if dgu.numel():
        grid = (n_rows, triton.cdiv(n_cols, _BLOCK))
        launch(_swiglu_bwd_kernel)[grid](dy2, gu, dgu, dy2.stride(0), gu.stride(0), n_cols,
                                         BLOCK=_BLOCK, num_warps=4)
    return dgu.view(gate_up.shape)


class SwiGLUFunction(torch.autograd.Function):
    """silu(gate) * up, Triton forward and backward (the backward recomputes sigmoid; nothing extra saved)."""

    @staticmethod
    def forward(ctx, gate_up):
        ctx.save_for_backward(gate_up)
        return swiglu_fwd(gate_up)

    @staticmethod
    def backward(ctx, dy):
        (gate_up,) = ctx.saved_tensors
        return swiglu_bwd(dy, gate_up)


def swiglu(gate_up: torch.Tensor) -> torch.Tensor:
    """Triton SwiGLU; same signature and math as `kernels.reference.swiglu`."""
    return SwiGLUFunction.apply(gate_up)
