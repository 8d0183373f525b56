"""Fused linear + cross-entropy that never materialises the full (M, V) logits.

The loss of an LM head, loss = CE(hidden @ weight.T, targets), is computed over chunks of rows: for each chunk
of m rows the logits (m, V) are one cuBLAS matmul, a Triton kernel turns them in place into the loss per row
and the gradient of the logits (softmax - onehot, scaled), and two more matmuls give that chunk's dhidden and
add its share of dweight to an fp32 accumulator. So with reduction="mean" the forward pass already holds
both gradients and the backward pass only scales them by grad_output. Peak extra memory is one chunk of
logits plus dweight in fp32, instead of (M, V) logits and their gradient.

Tiers: `_cross_entropy_kernel` -> launcher `linear_cross_entropy_fwd(hidden, weight, targets, ...)`
(a torch.library custom op, opaque to torch.compile) -> `LinearCrossEntropyFunction` ->
`linear_cross_entropy`.
hidden (M, C), weight (V, C), targets (M,) int; rows whose target is `ignore_index` count for nothing.
The matmuls run in hidden.dtype (bf16 under autocast); the softmax and everything accumulated is fp32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# Rows per chunk: M / _N_CHUNKS (so one chunk's logits are 1/4 of the full (M, V) logits), but at least
# _MIN_CHUNK_ROWS: each chunk reads and writes the fp32 dweight (8*V*C bytes), which needs about 3000 rows
# of matmul work (6*m*V*C FLOPs) to hide on an H100 (measured: 8 chunks of 2048 rows ran ~5-10% behind
# torch.compile's unfused loss at M=16k, V=32k); and at most _MAX_CHUNK_ELEMENTS logits (1 GiB in bf16).
_N_CHUNKS = 4
_MIN_CHUNK_ROWS = 2048
_MAX_CHUNK_ELEMENTS = 1 << 29
_BLOCK_V = 4096  # vocabulary entries per inner step of the kernel (two-pass)
_SINGLE_PASS_MAX_V = 32768  # up to this vocabulary a row is held in registers and read once
_SINGLE_PASS_WARPS = 32  # H100, V = 32768: 1-7% faster than 16 warps; 8 warps spill and are slower


@triton.jit
def _cross_entropy_kernel(
    LOGITS, TARGETS, LOSS, SCALE,
    stride_logits, stride_scale, n_cols, ignore_index,
    COMPUTE_GRAD: tl.constexpr, BLOCK_V: tl.constexpr, SINGLE_PASS: tl.constexpr,
):
    """One program per row z = logits[row] (V entries), target y.

    SINGLE_PASS (BLOCK_V >= V): the whole row is held in registers, read once and, with COMPUTE_GRAD,
    written once: lse = max + log(sum exp(z - max)), dz from the same exponentials.
    Otherwise, pass 1 (online softmax, Milakov & Gimelshein 2018): running max m and sum d = sum_j exp(z_j - m) over
    blocks of the vocabulary, so lse = m + log(d) in one read.
        loss = lse - z_y                          (0 if y == ignore_index)
    Pass 2 (if COMPUTE_GRAD), written over the logits in place:
        dz_j = scale * (exp(z_j - lse) - [j == y])  (0 for the whole row if y == ignore_index)
    with scale = SCALE[row * stride_scale]: per-row upstream gradients, or one value (stride 0), 1/n_valid
    for a mean; it is read on the device, so the host never waits for n_valid.
    """
    row = tl.program_id(0).to(tl.int64)
    base = LOGITS + row * stride_logits
    target = tl.load(TARGETS + row).to(tl.int64)
    ignored = target == ignore_index
    offsets = tl.arange(0, BLOCK_V)
    safe_target = tl.where(ignored, 0, target)
    z_target = tl.load(base + safe_target).to(tl.float32)

    if SINGLE_PASS:
        mask = offsets < n_cols
        z = tl.load(base + offsets, mask=mask, other=float("-inf")).to(tl.float32)
        m = tl.max(z, axis=0)
        e = tl.exp(z - m)  # 0 on padding
        d = tl.sum(e, axis=0)
        tl.store(LOSS + row, tl.where(ignored, 0.0, m + tl.log(d) - z_target))
        if COMPUTE_GRAD:
            row_scale = tl.where(ignored, 0.0, tl.load(SCALE + row * stride_scale).to(tl.float32))
            dz = e / d - tl.where(offsets == target, 1.0, 0.0)
            tl.store(base + offsets, (dz * row_scale).to(LOGITS.dtype.element_ty), mask=mask)
        return

    m_vec = tl.full([BLOCK_V], float("-inf"), tl.float32)
    d_vec = tl.zeros([BLOCK_V], dtype=tl.float32)
    for start in range(0, n_cols, BLOCK_V):
        cols = start + offsets
        z = tl.load(base + cols, mask=cols < n_cols, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m_vec, z)
        # lanes that have only seen -inf (padding) keep d = 0 instead of exp(-inf + inf) = nan
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        d_vec = d_vec * tl.exp(m_vec - m_safe) + tl.exp(z - m_safe)
        m_vec = m_new
    m = tl.max(m_vec, axis=0)
    d = tl.sum(d_vec * tl.exp(m_vec - m), axis=0)
    lse = m + tl.log(d)
    loss = tl.where(ignored, 0.0, lse - z_target)
    tl.store(LOSS + row, loss)

    if COMPUTE_GRAD:
        row_scale = tl.where(ignored, 0.0, tl.load(SCALE + row * stride_scale).to(tl.float32))
        for start in range(0, n_cols, BLOCK_V):
            cols = start + offsets
            mask = cols < n_cols
            z = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
            dz = tl.exp(z - lse) - tl.where(cols == target, 1.0, 0.0)
            tl.store(base + cols, (dz * row_scale).to(LOGITS.dtype.element_ty), mask=mask)


def _chunk_rows(n_rows: int, vocab: int) -> int:
    """Rows per chunk (see _N_CHUNKS), a multiple of 64 where possible."""
    rows = max(triton.cdiv(n_rows, _N_CHUNKS), _MIN_CHUNK_ROWS)
    rows = min(rows, max(1, _MAX_CHUNK_ELEMENTS // vocab))
    return max(1, min(n_rows, triton.cdiv(rows, 64) * 64))


def _accumulate_dweight(dweight: torch.Tensor, dlogits: torch.Tensor, hidden: torch.Tensor) -> None:
    """dweight (V, C, fp32) += dlogits.T @ hidden, accumulated in fp32 by the GEMM itself where possible."""
    if dlogits.dtype == dweight.dtype:
        dweight.addmm_(dlogits.t(), hidden)
    elif dweight.is_cuda:
        # cuBLAS with bf16/fp16 inputs and an fp32 C = D (beta = 1): the accumulator never leaves fp32
        torch.ops.aten.addmm.dtype_out(dweight, dlogits.t(), hidden, dweight.dtype, out=dweight)
    else:
        dweight.add_(dlogits.t() @ hidden)


def _chunked_pass(hidden, weight, targets, ignore_index, scale, compute_grad):
    """Loop over row chunks. `scale` is fp32, (1,) or (M,): what each row's loss gradient is multiplied by.

    Returns (loss per row fp32 (M,), dhidden or None, dweight fp32 or None).
    """
    with torch.autocast(hidden.device.type, enabled=False):  # dtypes are chosen here, not by autocast
        return _chunked_pass_impl(hidden, weight, targets, ignore_index, scale, compute_grad)


def _chunked_pass_impl(hidden, weight, targets, ignore_index, scale, compute_grad):
    n_rows, _ = hidden.shape
    vocab = weight.shape[0]
    weight = weight.to(hidden.dtype)
    loss = torch.empty(n_rows, dtype=torch.float32, device=hidden.device)
    dhidden = torch.empty_like(hidden) if compute_grad else None
    dweight = torch.zeros(weight.shape, dtype=torch.float32, device=hidden.device) if compute_grad else None
    chunk = _chunk_rows(n_rows, vocab)
    single = vocab <= _SINGLE_PASS_MAX_V
    for start in range(0, n_rows, chunk):
        end = min(start + chunk, n_rows)
        h = hidden[start:end]
        logits = h @ weight.t()  # (m, V) in hidden.dtype
        per_row = scale.numel() > 1
        _cross_entropy_kernel[(end - start,)](
            logits, targets[start:end], loss[start:end], scale[start:end] if per_row else scale,
            logits.stride(0), 1 if per_row else 0, vocab, ignore_index,
            COMPUTE_GRAD=compute_grad, BLOCK_V=triton.next_power_of_2(vocab) if single else _BLOCK_V,
            SINGLE_PASS=single, num_warps=_SINGLE_PASS_WARPS if single else 16,
        )
        if compute_grad:  # logits now hold dlogits
            torch.mm(logits, weight, out=dhidden[start:end])  # (m, C)
            _accumulate_dweight(dweight, logits, h)
    return loss, dhidden, dweight


def _check(hidden, weight, targets):
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"linear_cross_entropy: expected hidden (M, C) and weight (V, C), got "
                         f"{tuple(hidden.shape)} and {tuple(weight.shape)}")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"linear_cross_entropy: targets must be (M,) = ({hidden.shape[0]},), "
                         f"got {tuple(targets.shape)}")


@torch.library.custom_op("skillscale::linear_cross_entropy_fwd", mutates_args=())
def linear_cross_entropy_fwd(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                             ignore_index: int, compute_grad: bool
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean CE over non-ignored rows: (loss scalar fp32, loss per row fp32 (M,), dhidden, dweight fp32).

    With compute_grad the gradients are those of the mean loss (grad_output = 1); otherwise they are empty.
    """
    _check(hidden, weight, targets)
    hidden = hidden.contiguous()
    targets = targets.contiguous()
    n_valid = (targets != ignore_index).sum().clamp(min=1).float().reshape(1)
    scale = 1.0 / n_valid  # (1,) fp32 on the device
    loss_rows, dhidden, dweight = _chunked_pass(hidden, weight, targets, ignore_index, scale, compute_grad)
    loss = loss_rows.sum() / n_valid[0]  # all rows ignored: 0 here (the reference gives nan)
    if not compute_grad:
        dhidden, dweight = hidden.new_empty(0), weight.new_empty(0, dtype=torch.float32)
    return loss, loss_rows, dhidden, dweight


@linear_cross_entropy_fwd.register_fake
def _(hidden, weight, targets, ignore_index, compute_grad):
    loss_rows = hidden.new_empty(hidden.shape[:1], dtype=torch.float32)
    if compute_grad:
        return hidden.new_empty((), dtype=torch.float32), loss_rows, torch.empty_like(hidden), \
            weight.new_empty(weight.shape, dtype=torch.float32)
    return hidden.new_empty((), dtype=torch.float32), loss_rows, hidden.new_empty(0), \
        weight.new_empty(0, dtype=torch.float32)


@torch.library.custom_op("skillscale::linear_cross_entropy_bwd_rows", mutates_args=())
def linear_cross_entropy_bwd_rows(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                  grad_rows: torch.Tensor, ignore_index: int
                                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients (dhidden, dweight fp32) of sum_i grad_rows[i] * loss_i, recomputing each chunk's logits."""
    _check(hidden, weight, targets)
    hidden = hidden.contiguous()
    _, dhidden, dweight = _chunked_pass(hidden, weight, targets.contiguous(), ignore_index,
                                        grad_rows.float().reshape(-1).contiguous(), True)
    return dhidden, dweight


@linear_cross_entropy_bwd_rows.register_fake
def _(hidden, weight, targets, grad_rows, ignore_index):
    return torch.empty_like(hidden), weight.new_empty(weight.shape, dtype=torch.float32)


class LinearCrossEntropyFunction(torch.autograd.Function):
    """CE(hidden @ weight.T, targets) by chunks.

    reduction="mean": gradients are computed in the forward pass; backward scales them by grad_output.
    reduction="none": the forward pass computes only the per-row losses; backward recomputes the logits
    chunk by chunk with the per-row grad_output folded into the softmax gradient (one extra matmul per chunk).
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index, reduction):
        if reduction not in ("mean", "none"):
            raise ValueError(f"linear_cross_entropy: reduction must be 'mean' or 'none', got {reduction!r}")
        needs_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        compute_grad = needs_grad and reduction == "mean"
        loss, loss_rows, dhidden, dweight = linear_cross_entropy_fwd(hidden, weight, targets, ignore_index,
                                                                     compute_grad)
        ctx.reduction, ctx.ignore_index, ctx.used = reduction, ignore_index, False
        ctx.hidden_dtype, ctx.weight_dtype = hidden.dtype, weight.dtype
        if reduction == "mean":
            ctx.save_for_backward(dhidden, dweight)
            return loss
        ctx.save_for_backward(hidden, weight, targets)
        return loss_rows

    @staticmethod
    def backward(ctx, grad_output):
        if ctx.reduction == "mean":
            if ctx.used:
                raise RuntimeError("linear_cross_entropy: backward through one graph twice is not supported "
                                   "(its gradients are precomputed and scaled in place)")
            ctx.used = True
            dhidden, dweight = ctx.saved_tensors
            dhidden.mul_(grad_output.to(dhidden.dtype))  # in place: no second (V, C) fp32 buffer at the peak
            dweight.mul_(grad_output)
        else:
            hidden, weight, targets = ctx.saved_tensors
            dhidden, dweight = linear_cross_entropy_bwd_rows(hidden, weight, targets, grad_output,
                                                             ctx.ignore_index)
        return dhidden.to(ctx.hidden_dtype), dweight.to(ctx.weight_dtype), None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         ignore_index: int = -100, reduction: str = "mean") -> torch.Tensor:
    """Triton fused linear cross-entropy; signature and math of `kernels.reference.linear_cross_entropy`."""
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):  # the matmuls run in hidden.dtype: make it autocast's dtype
        hidden = hidden.to(torch.get_autocast_dtype(device_type))
    return LinearCrossEntropyFunction.apply(hidden, weight, targets, ignore_index, reduction)
