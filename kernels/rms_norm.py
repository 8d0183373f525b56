"""RMSNorm and fused residual-add + RMSNorm as Triton kernels.

Three tiers per op: the private `@triton.jit` kernels, the launchers `rms_norm_fwd` / `add_rms_norm_fwd` /
`rms_norm_bwd` (torch ops, see kernels._op, so that torch.compile composes with them),
and the autograd Functions `RMSNormFunction` / `AddRMSNormFunction`. The model calls `rms_norm` and
`add_rms_norm` at the bottom of this file; `kernels.reference` defines the math they must match.

Rows are the flattened leading dims of x: x (..., C) -> (M, C). One program normalises a tile of whole rows
(a row of up to 64 KiB, i.e. 16K fp32 or 32K bf16 columns, is one block), statistics in fp32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._op import kernel_op, launch

_MAX_FUSED_BYTES = 65536  # one row must fit in one block
_TILE_ELEMENTS = 4096  # elements per (rows x hidden) tile
_MAX_TILE_ROWS = 16


@triton.jit
def _rms_norm_fwd_kernel(
    X, R, S, Y, W, RSTD,
    stride_x, stride_r, stride_s, stride_y,
    n_rows, n_cols, eps,
    HAS_RESIDUAL: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr,
):
    """A tile of ROWS whole rows per program.

    s = x (+ r if HAS_RESIDUAL, and s is stored);  rstd = 1 / sqrt(mean(s^2) + eps);  y = s * rstd * w.
    Everything is computed in fp32; y and s are stored in their buffers' dtypes; rstd (fp32) is kept for
    the backward pass.
    """
    row_ids = (tl.program_id(0) * ROWS + tl.arange(0, ROWS)).to(tl.int64)  # (ROWS,)
    rows = row_ids[:, None]  # (ROWS, 1)
    cols = tl.arange(0, BLOCK)[None, :]  # (1, BLOCK)
    row_ok = rows < n_rows
    mask = row_ok & (cols < n_cols)
    s = tl.load(X + rows * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        r = tl.load(R + rows * stride_r + cols, mask=mask, other=0.0).to(tl.float32)
        s = s + r
        s = s.to(S.dtype.element_ty)  # the sum is rounded to its dtype, as in the reference
        tl.store(S + rows * stride_s + cols, s, mask=mask)
        s = s.to(tl.float32)
    w = tl.load(W + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(s * s, axis=1) / n_cols + eps)  # (ROWS,)
    tl.store(RSTD + row_ids, rstd, mask=row_ids < n_rows)
    tl.store(Y + rows * stride_y + cols, (s * rstd[:, None] * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _rms_norm_bwd_kernel(
    DY, DS, X, W, RSTD, DX, DX2, DW_PARTIAL,
    stride_dy, stride_ds, stride_x, stride_dx, stride_dx2,
    n_rows, n_cols,
    HAS_DS: tl.constexpr, HAS_DX2: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr,
):
    """Each program walks tiles of ROWS rows, grid-strided (tile t, t + n_programs, ...).

    With x_hat = x * rstd and g = dy * w:
        dx = rstd * (g - x_hat * mean(g * x_hat))      (+ ds, the gradient reaching the residual sum directly)
        dw = sum over rows of dy * x_hat               (per-program fp32 partial sums, reduced by the caller)
    With HAS_DX2, dx is also stored in DX2's dtype: the fused add's two inputs usually differ in dtype (bf16
    sub-layer output, fp32 residual), and a second store here saves a separate cast that re-reads dx.
    """
    pid = tl.program_id(0)
    n_programs = tl.num_programs(0)
    cols = tl.arange(0, BLOCK)[None, :]
    col_ok = cols < n_cols
    w = tl.load(W + cols, mask=col_ok, other=0.0).to(tl.float32)
    dw_acc = tl.zeros([ROWS, BLOCK], dtype=tl.float32)
    for tile in range(pid, tl.cdiv(n_rows, ROWS), n_programs):
        rows = (tile * ROWS + tl.arange(0, ROWS)).to(tl.int64)[:, None]
        row_ok = rows < n_rows
        mask = row_ok & col_ok
        dy = tl.load(DY + rows * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
        x = tl.load(X + rows * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + rows, mask=row_ok, other=0.0)  # (ROWS, 1)
        x_hat = x * rstd
        g = dy * w
        dx = rstd * (g - x_hat * (tl.sum(g * x_hat, axis=1, keep_dims=True) / n_cols))
        if HAS_DS:
            dx += tl.load(DS + rows * stride_ds + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(DX + rows * stride_dx + cols, dx.to(DX.dtype.element_ty), mask=mask)
        if HAS_DX2:
            tl.store(DX2 + rows * stride_dx2 + cols, dx.to(DX2.dtype.element_ty), mask=mask)
        dw_acc += dy * x_hat
    dw = tl.sum(dw_acc, axis=0)
    tl.store(DW_PARTIAL + pid * n_cols + tl.arange(0, BLOCK), dw, mask=tl.arange(0, BLOCK) < n_cols)


def _tile(n_cols: int, element_size: int) -> tuple[int, int, int]:
    """(ROWS, BLOCK, num_warps): whole rows padded to a power of two, stacked to ~_TILE_ELEMENTS per tile.

    Narrow rows (d = 256) get many rows per tile, so each program has enough independent loads in flight;
    one row per program with one warp left the backward latency-bound (3x slower than Inductor at d = 256).
    """
    block = triton.next_power_of_2(n_cols)
    if block * element_size > _MAX_FUSED_BYTES:
        raise ValueError(f"rms_norm: hidden size {n_cols} is too large for one block "
                         f"(max {_MAX_FUSED_BYTES} bytes)")
    rows = max(1, min(_MAX_TILE_ROWS, _TILE_ELEMENTS // block))
    num_warps = min(max(rows * block // 512, 1), 16)
    return rows, block, num_warps


def _rows(x: torch.Tensor) -> torch.Tensor:
    x2 = x.reshape(-1, x.shape[-1])
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


# ---- launchers (torch ops, see kernels._op) ----------------------------------------------------------


def _rms_norm_fwd_fake(x, weight, eps, out_dtype):
    n_rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    return x.new_empty(x.shape, dtype=out_dtype), x.new_empty((n_rows,), dtype=torch.float32)


@kernel_op("rms_norm_fwd", _rms_norm_fwd_fake)
def rms_norm_fwd(x: torch.Tensor, weight: torch.Tensor, eps: float,
                 out_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """y = rms_norm(x, weight, eps) in out_dtype, and rstd (M,) in fp32 for the backward pass."""
    x2 = _rows(x)
    n_rows, n_cols = x2.shape
    y = torch.empty((n_rows, n_cols), dtype=out_dtype, device=x.device)
    rstd = torch.empty(n_rows, dtype=torch.float32, device=x.device)
    rows, block, num_warps = _tile(n_cols, x2.element_size())
    if n_rows > 0:
        launch(_rms_norm_fwd_kernel)[(triton.cdiv(n_rows, rows),)](
            x2, y, y, y, weight.contiguous(), rstd,  # R, S unused: an output stands in (never an input)
            x2.stride(0), 0, 0, y.stride(0), n_rows, n_cols, eps,
            HAS_RESIDUAL=False, ROWS=rows, BLOCK=block, num_warps=num_warps,
        )
    return y.view(x.shape), rstd


def _add_rms_norm_fwd_fake(x, residual, weight, eps, out_dtype):
    n_rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    s = x.new_empty(x.shape, dtype=torch.promote_types(x.dtype, residual.dtype))
    return x.new_empty(x.shape, dtype=out_dtype), s, x.new_empty((n_rows,), dtype=torch.float32)


@kernel_op("add_rms_norm_fwd", _add_rms_norm_fwd_fake)
def add_rms_norm_fwd(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                     eps: float, out_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """s = x + residual (same shapes, s in their promoted dtype); returns (rms_norm(s) in out_dtype, s,
    rstd (M,) fp32)."""
    if x.shape != residual.shape:
        raise ValueError(f"add_rms_norm: x {tuple(x.shape)} and residual {tuple(residual.shape)} must match")
    x2, r2 = _rows(x), _rows(residual)
    n_rows, n_cols = x2.shape
    s = torch.empty((n_rows, n_cols), dtype=torch.promote_types(x.dtype, residual.dtype), device=x.device)
    y = torch.empty((n_rows, n_cols), dtype=out_dtype, device=x.device)
    rstd = torch.empty(n_rows, dtype=torch.float32, device=x.device)
    rows, block, num_warps = _tile(n_cols, max(x2.element_size(), s.element_size()))
    if n_rows > 0:
        launch(_rms_norm_fwd_kernel)[(triton.cdiv(n_rows, rows),)](
            x2, r2, s, y, weight.contiguous(), rstd,
            x2.stride(0), r2.stride(0), s.stride(0), y.stride(0), n_rows, n_cols, eps,
            HAS_RESIDUAL=True, ROWS=rows, BLOCK=block, num_warps=num_warps,
        )
    return y.view(x.shape), s.view(x.shape), rstd


def _rms_norm_bwd_fake(dy, x, weight, rstd, ds=None, dx2_dtype=None):
    dx2 = x.new_empty(x.shape if dx2_dtype is not None else (0,), dtype=dx2_dtype or x.dtype)
    return torch.empty_like(x), dx2, torch.empty_like(weight)


@kernel_op("rms_norm_bwd", _rms_norm_bwd_fake)
def rms_norm_bwd(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, rstd: torch.Tensor,
                 ds: torch.Tensor | None = None, dx2_dtype: torch.dtype | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (dx in x.dtype, dx again in dx2_dtype, dweight in weight.dtype) of y = rms_norm(x).

    `ds` is added to dx if given; the second copy of dx is empty unless `dx2_dtype` is given."""
    dy2, x2 = _rows(dy), _rows(x)
    n_rows, n_cols = x2.shape
    dx = torch.empty_like(x2)
    has_dx2 = dx2_dtype is not None
    dx2 = torch.empty_like(x2, dtype=dx2_dtype) if has_dx2 else dx  # dx stands in (never written twice)
    rows, block, num_warps = _tile(n_cols, x2.element_size())
    if x.is_cuda:
        n_programs = torch.cuda.get_device_properties(x.device).multi_processor_count * 4
    else:
        n_programs = 4
    n_programs = max(1, min(n_programs, triton.cdiv(n_rows, rows)))
    dw_partial = torch.zeros((n_programs, n_cols), dtype=torch.float32, device=x.device)
    ds2 = _rows(ds) if ds is not None else dy2
    if n_rows > 0:
        launch(_rms_norm_bwd_kernel)[(n_programs,)](
            dy2, ds2, x2, weight.contiguous(), rstd, dx, dx2, dw_partial,
            dy2.stride(0), ds2.stride(0), x2.stride(0), dx.stride(0), dx2.stride(0),
            n_rows, n_cols,
            HAS_DS=ds is not None, HAS_DX2=has_dx2, ROWS=rows, BLOCK=block, num_warps=num_warps,
        )
    second = dx2.view(x.shape) if has_dx2 else x2.new_empty((0,))
    return dx.view(x.shape), second, dw_partial.sum(0).to(weight.dtype)


# ---- autograd ------------------------------------------------------------------------------------


class RMSNormFunction(torch.autograd.Function):
    """y = x / sqrt(mean(x^2) + eps) * weight, with the Triton kernels forward and backward."""

    @staticmethod
    def forward(ctx, x, weight, eps, out_dtype):
        y, rstd = rms_norm_fwd(x, weight, eps, out_dtype)
        ctx.save_for_backward(x, weight, rstd)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, rstd = ctx.saved_tensors
        dx, _, dw = rms_norm_bwd(dy, x, weight, rstd, None, None)
        return dx, dw, None, None


class AddRMSNormFunction(torch.autograd.Function):
    """(rms_norm(x + residual), x + residual): the residual add fused into the norm, forward and backward."""

    @staticmethod
    def forward(ctx, x, residual, weight, eps, out_dtype):
        y, s, rstd = add_rms_norm_fwd(x, residual, weight, eps, out_dtype)
        ctx.save_for_backward(s, weight, rstd)
        ctx.x_dtype, ctx.residual_dtype = x.dtype, residual.dtype
        return y, s

    @staticmethod
    def backward(ctx, dy, ds):
        s, weight, rstd = ctx.saved_tensors
        if dy is None:
            dy = torch.zeros_like(s)
        if ds is not None and ds.dtype != s.dtype:
            ds = ds.to(s.dtype)
        # s has the promoted dtype of (x, residual); the kernel also writes dsum in the other one, if any
        other = next((t for t in (ctx.x_dtype, ctx.residual_dtype) if t != s.dtype), None)
        dsum, dsum_other, dw = rms_norm_bwd(dy, s, weight, rstd, ds, other)
        ready = {s.dtype: dsum, other: dsum_other}
        # both inputs narrower than s (bf16 + fp16 -> fp32): the second one is cast here
        dx, dresidual = (ready[t] if t in ready else dsum.to(t) for t in (ctx.x_dtype, ctx.residual_dtype))
        return dx, dresidual, dw, None, None


def _out_dtype(x: torch.Tensor) -> torch.dtype:
    """x.dtype, except under autocast, where an fp32 input is normalised straight into the autocast dtype.

    The model feeds every normalised tensor to a matmul, which autocast would cast to that dtype anyway;
    writing it once in bf16 saves a full fp32 write, read and cast per norm (the values are identical: the
    kernel computes in fp32 and rounds once). Without autocast the output dtype is the reference's.
    """
    device_type = x.device.type
    if x.dtype == torch.float32 and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return x.dtype


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Triton RMSNorm; same signature and math as `kernels.reference.rms_norm` (dtype: see _out_dtype)."""
    return RMSNormFunction.apply(x, weight, eps, _out_dtype(x))


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6):
    """Triton fused residual add + RMSNorm; returns (normed, sum) like `kernels.reference.add_rms_norm`."""
    return AddRMSNormFunction.apply(x, residual, weight, eps,
                                    _out_dtype(x if x.dtype == torch.float32 else residual))
