"""Fused linear + cross-entropy that never materialises the full (M, V) logits.

The loss of an LM head, loss = CE(hidden @ weight.T, targets), with two strategies picked by the hidden size C:

- C > _RECOMPUTE_MAX_C (materialise a chunk): over chunks of rows, the chunk's logits (m, V) are one cuBLAS
  matmul, `_cross_entropy_kernel` turns them in place into the loss per row and the gradient of the logits
  (softmax - onehot, scaled), and two more matmuls give that chunk's dhidden and add its share of dweight to
  an fp32 accumulator.
- C <= _RECOMPUTE_MAX_C (recompute): a logit costs only 2C FLOPs, less than reading and writing it back
  through HBM, so the logits are never stored at all. `_lse_partial_kernel` computes them tile by tile in
  registers and keeps only a running (max, sum of exponentials) per row and the target's logit; then, per
  chunk, `_dlogits_kernel` computes them again and writes only their gradient, which the same two matmuls
  consume. This trades one extra pass of 2MVC FLOPs for two fewer (M, V) passes over HBM (the logits' write
  and the softmax kernel's read).

Either way, with reduction="mean" the forward pass already holds both gradients and the backward pass only
scales them by grad_output. Peak extra memory is one chunk of logits (or their gradient) plus dweight in fp32
(and, when recomputing, three fp32 numbers per row and vocabulary split), instead of (M, V) logits and their
gradient.

Tiers: `_cross_entropy_kernel`, `_lse_partial_kernel`, `_dlogits_kernel` -> launcher
`linear_cross_entropy_fwd(hidden, weight, targets, ...)` (a torch.library custom op, opaque to torch.compile)
-> `LinearCrossEntropyFunction` -> `linear_cross_entropy`.
hidden (M, C), weight (V, C), targets (M,) int; rows whose target is `ignore_index` count for nothing.
The matmuls run in hidden.dtype (bf16 under autocast); the softmax and everything accumulated is fp32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# Rows per chunk: M / _N_CHUNKS (so one chunk's logits are 1/4 of the full (M, V) logits), but at least
# _MIN_CHUNK_ROWS: each chunk reads and writes the fp32 dweight (8*V*C bytes), which only thousands of rows
# of matmul work (6*m*V*C FLOPs) hide (more, smaller chunks are slower); and at most _MAX_CHUNK_ELEMENTS
# logits (1 GiB in bf16).
_N_CHUNKS = 4
_MIN_CHUNK_ROWS = 2048
_MAX_CHUNK_ELEMENTS = 1 << 29
_BLOCK_V = 4096  # vocabulary entries per inner step of `_cross_entropy_kernel` (two-pass)
_SINGLE_PASS_MAX_V = 32768  # up to this vocabulary a row is held in registers and read once
_SINGLE_PASS_WARPS = 32  # at V = 32768 faster than 16 warps; 8 warps spill
# The recompute strategy (see the module docstring) up to this hidden size, where it is faster than
# materialising (experiments/README.md; experiments/tune_linear_cross_entropy.py). Beyond it a Triton dot over
# the whole hidden size runs well below cuBLAS, and from C = 384 the hidden block and weight tiles no longer fit
# in shared memory. Its tiles: _TILE_M rows (all of the hidden size) x _TILE_N vocabulary entries per dot; each
# program covers _TILES tiles.
_RECOMPUTE_MAX_C = 128
_TILE_M, _TILE_N, _TILES = 64, 64, 16
_TILE_WARPS, _TILE_STAGES = 4, 3
_LOG2E = tl.constexpr(1.4426950408889634)  # exp(x) = exp2(x * log2(e)), the hardware's native exponential


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


@triton.jit
def _hidden_block(H, rows, n_rows, n_hidden, stride_h, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    """H[rows] as a (BLOCK_M, BLOCK_C) tile, zero past the last row and past the hidden size."""
    ks = tl.arange(0, BLOCK_C)
    return tl.load(H + rows.to(tl.int64)[:, None] * stride_h + ks[None, :],
                   mask=(rows[:, None] < n_rows) & (ks[None, :] < n_hidden), other=0.0)


@triton.jit
def _logits_tile(h, W, cols, n_vocab, n_hidden, stride_w, BLOCK_C: tl.constexpr, PRECISION: tl.constexpr):
    """z = h @ W[cols].T, fp32 (BLOCK_M, BLOCK_N); one dot over the whole hidden size."""
    ks = tl.arange(0, BLOCK_C)
    w = tl.load(W + cols.to(tl.int64)[:, None] * stride_w + ks[None, :],
                mask=(cols[:, None] < n_vocab) & (ks[None, :] < n_hidden), other=0.0)  # (BN, BC)
    return tl.dot(h, tl.trans(w), input_precision=PRECISION)


@triton.jit
def _lse_partial_kernel(
    H, W, TARGETS, M_PART, D_PART, ZT_PART,
    n_rows, n_vocab, n_hidden, stride_h, stride_w,
    TILES: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Program (row block, vocabulary split s). Its BLOCK_M hidden rows are loaded once and stay on chip while
    TILES tiles of BLOCK_N weight rows, starting at vocabulary entry s * TILES * BLOCK_N, stream past (the
    structure of a flash-attention forward). Per row: the running max m and sum d = sum_j exp(z_j - m)
    (online softmax), and z_y for a target y in that range (0 elsewhere); written to the (M, n_splits) fp32
    partials at column s. A split's first tile is never past the vocabulary, so m is finite after it."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    split = tl.program_id(1)
    h = _hidden_block(H, rows, n_rows, n_hidden, stride_h, BLOCK_M, BLOCK_C)
    target = tl.load(TARGETS + rows, mask=rows < n_rows, other=-1)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    d_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    z_target = tl.zeros([BLOCK_M], dtype=tl.float32)
    for t in range(TILES):
        cols = (split * TILES + t) * BLOCK_N + tl.arange(0, BLOCK_N)
        z = _logits_tile(h, W, cols, n_vocab, n_hidden, stride_w, BLOCK_C, PRECISION)
        z_target += tl.sum(tl.where(cols[None, :] == target[:, None], z, 0.0), axis=1)
        z = tl.where(cols[None, :] < n_vocab, z, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(z, axis=1))
        d_i = d_i * tl.exp2((m_i - m_new) * _LOG2E) + tl.sum(tl.exp2((z - m_new[:, None]) * _LOG2E), axis=1)
        m_i = m_new
    out = rows.to(tl.int64) * tl.num_programs(1) + split
    tl.store(M_PART + out, m_i, mask=rows < n_rows)
    tl.store(D_PART + out, d_i, mask=rows < n_rows)
    tl.store(ZT_PART + out, z_target, mask=rows < n_rows)


@triton.jit
def _dlogits_kernel(
    H, W, TARGETS, LSE, SCALE, DZ,
    n_rows, n_vocab, n_hidden, stride_h, stride_w, stride_dz, stride_scale, ignore_index,
    TILES: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Program (row block, vocabulary split), laid out as `_lse_partial_kernel`: for each tile,
    DZ = scale * (exp(z - lse) - onehot(y)) with z recomputed, 0 on rows whose target is ignore_index;
    scale as in `_cross_entropy_kernel`."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < n_rows
    h = _hidden_block(H, rows, n_rows, n_hidden, stride_h, BLOCK_M, BLOCK_C)
    target = tl.load(TARGETS + rows, mask=row_ok, other=ignore_index)
    lse = tl.load(LSE + rows, mask=row_ok, other=0.0)
    scale = tl.load(SCALE + rows * stride_scale, mask=row_ok, other=0.0).to(tl.float32)
    scale = tl.where(target == ignore_index, 0.0, scale)
    out = DZ + rows.to(tl.int64)[:, None] * stride_dz
    for t in range(TILES):
        cols = (tl.program_id(1) * TILES + t) * BLOCK_N + tl.arange(0, BLOCK_N)
        z = _logits_tile(h, W, cols, n_vocab, n_hidden, stride_w, BLOCK_C, PRECISION)
        p = tl.exp2((z - lse[:, None]) * _LOG2E)
        dz = (p - tl.where(cols[None, :] == target[:, None], 1.0, 0.0)) * scale[:, None]
        tl.store(out + cols[None, :], dz.to(DZ.dtype.element_ty), mask=row_ok[:, None] & (cols[None, :] < n_vocab))


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
    weight = weight.to(hidden.dtype).contiguous()
    n_rows, vocab = hidden.shape[0], weight.shape[0]
    recompute = hidden.shape[1] <= _RECOMPUTE_MAX_C
    if recompute:
        lse, loss = _row_lse(hidden, weight, targets, ignore_index)
        if not compute_grad:
            return loss, None, None
    else:
        loss = torch.empty(n_rows, dtype=torch.float32, device=hidden.device)
    dhidden = torch.empty_like(hidden) if compute_grad else None
    dweight = torch.zeros(weight.shape, dtype=torch.float32, device=hidden.device) if compute_grad else None
    chunk = _chunk_rows(n_rows, vocab)
    per_row = scale.numel() > 1
    for start in range(0, n_rows, chunk):
        end = min(start + chunk, n_rows)
        h, rows_scale = hidden[start:end], scale[start:end] if per_row else scale
        if recompute:
            dlogits = _dlogits(h, weight, targets[start:end], lse[start:end], rows_scale, ignore_index)
        else:
            dlogits = _softmax_in_place(h @ weight.t(), targets[start:end], loss[start:end], rows_scale,
                                        ignore_index, compute_grad)
        if dlogits is not None:
            torch.mm(dlogits, weight, out=dhidden[start:end])  # (m, C)
            _accumulate_dweight(dweight, dlogits, h)
    return loss, dhidden, dweight


def _softmax_in_place(logits, targets, loss, scale, ignore_index, compute_grad):
    """Per-row losses into `loss`. With compute_grad the logits (m, V) become their scaled gradient, which is
    returned; otherwise None."""
    vocab = logits.shape[1]
    single = vocab <= _SINGLE_PASS_MAX_V
    _cross_entropy_kernel[(logits.shape[0],)](
        logits, targets, loss, scale, logits.stride(0), 1 if scale.numel() > 1 else 0, vocab, ignore_index,
        COMPUTE_GRAD=compute_grad, BLOCK_V=triton.next_power_of_2(vocab) if single else _BLOCK_V,
        SINGLE_PASS=single, num_warps=_SINGLE_PASS_WARPS if single else 16,
    )
    return logits if compute_grad else None


def _vocab_splits(vocab: int) -> tuple[int, int]:
    """(tiles per program, vocabulary splits) of the recompute kernels' grid."""
    tiles = min(_TILES, triton.cdiv(vocab, _TILE_N))
    return tiles, triton.cdiv(vocab, tiles * _TILE_N)


def _tiled_launch(kernel, hidden, vocab, *args):
    """Launch a recompute kernel over (row blocks, vocabulary splits of `_vocab_splits` tiles)."""
    n_rows, n_hidden = hidden.shape
    tiles, splits = _vocab_splits(vocab)
    kernel[(triton.cdiv(n_rows, _TILE_M), splits)](
        *args, TILES=tiles, BLOCK_M=_TILE_M, BLOCK_N=_TILE_N, BLOCK_C=max(16, triton.next_power_of_2(n_hidden)),
        # fp32 inputs: exact fp32 products, as the reference (TF32 would round them); bf16: no effect
        PRECISION="ieee" if hidden.dtype == torch.float32 else "tf32",
        num_warps=_TILE_WARPS, num_stages=_TILE_STAGES,
    )


def _row_lse(hidden, weight, targets, ignore_index):
    """(logsumexp of the logits, loss) per row, fp32 (M,), from logits that live only on chip."""
    n_rows, n_hidden = hidden.shape
    vocab = weight.shape[0]
    _, splits = _vocab_splits(vocab)
    m_part, d_part, zt_part = torch.empty((3, n_rows, splits), dtype=torch.float32, device=hidden.device)
    _tiled_launch(_lse_partial_kernel, hidden, vocab, hidden, weight, targets, m_part, d_part, zt_part,
                  n_rows, vocab, n_hidden, hidden.stride(0), weight.stride(0))
    m = m_part.amax(dim=1)
    lse = m + (d_part * torch.exp(m_part - m[:, None])).sum(dim=1).log()
    loss = torch.where(targets == ignore_index, 0.0, lse - zt_part.sum(dim=1))
    return lse, loss


def _dlogits(hidden, weight, targets, lse, scale, ignore_index):
    """The scaled gradient of the logits (m, V) in hidden.dtype, recomputing the logits tile by tile."""
    n_rows, n_hidden = hidden.shape
    vocab = weight.shape[0]
    dlogits = torch.empty((n_rows, vocab), dtype=hidden.dtype, device=hidden.device)
    _tiled_launch(_dlogits_kernel, hidden, vocab, hidden, weight, targets, lse, scale, dlogits, n_rows, vocab,
                  n_hidden, hidden.stride(0), weight.stride(0), dlogits.stride(0), 1 if scale.numel() > 1 else 0,
                  ignore_index)
    return dlogits


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
    reduction="none": the forward pass computes only the per-row losses; backward recomputes the logits with
    the per-row grad_output folded into the softmax gradient (materialise: one extra matmul per chunk;
    recompute: the LSE pass again, then the gradient pass).
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
