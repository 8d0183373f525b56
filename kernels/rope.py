"""Rotary position embedding (half-split / Llama layout) as a Triton kernel.

Tiers: `_rope_kernel` (forward and, with the sine negated, backward) -> launcher `rope_fwd(x, cos, sin)` /
`rope_bwd(dy, cos, sin)` (torch ops, see kernels._op) -> `RoPEFunction` -> `rope`.
x: (B, H, T, Dh), any strides with a contiguous last dim (e.g. a view of a fused qkv projection);
cos, sin: (T, Dh/2). The output is contiguous (B, H, T, Dh) in x.dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._op import kernel_op, launch


@triton.jit
def _rope_kernel(
    X, COS, SIN, Y,
    stride_xb, stride_xh, stride_xt, stride_cos, stride_sin,
    n_heads, seq_len, half,
    BACKWARD: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Program (b*H + h, t-block) rotates a (BLOCK_T, Dh) tile of one head.

    With x = [x1, x2] split on the last dim (each Dh/2 wide), c = cos[t], s = sin[t]:
        forward:  y1 = x1*c - x2*s,  y2 = x2*c + x1*s
        backward (the transpose of that rotation, i.e. s -> -s):  dx1 = dy1*c + dy2*s,  dx2 = dy2*c - dy1*s
    Computed in fp32, stored in Y's dtype.
    """
    pid_bh = tl.program_id(0)
    pid_t = tl.program_id(1)
    b = pid_bh // n_heads
    h = pid_bh % n_heads
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    d = tl.arange(0, BLOCK_D)
    mask = (t[:, None] < seq_len) & (d[None, :] < half)
    x_base = X + b.to(tl.int64) * stride_xb + h.to(tl.int64) * stride_xh
    x_off = t[:, None].to(tl.int64) * stride_xt + d[None, :]
    x1 = tl.load(x_base + x_off, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x_base + x_off + half, mask=mask, other=0.0).to(tl.float32)
    c = tl.load(COS + t[:, None] * stride_cos + d[None, :], mask=mask, other=0.0).to(tl.float32)
    s = tl.load(SIN + t[:, None] * stride_sin + d[None, :], mask=mask, other=0.0).to(tl.float32)
    if BACKWARD:
        s = -s
    y1 = x1 * c - x2 * s
    y2 = x2 * c + x1 * s
    y_base = Y + pid_bh.to(tl.int64) * seq_len * 2 * half
    y_off = t[:, None].to(tl.int64) * (2 * half) + d[None, :]
    tl.store(y_base + y_off, y1.to(Y.dtype.element_ty), mask=mask)
    tl.store(y_base + y_off + half, y2.to(Y.dtype.element_ty), mask=mask)


def _rope_fake(x, cos, sin):
    return x.new_empty(x.shape)


def _launch(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, backward: bool) -> torch.Tensor:
    if x.dim() != 4:
        raise ValueError(f"rope: expected x of shape (B, H, T, Dh), got {tuple(x.shape)}")
    batch, n_heads, seq_len, head_dim = x.shape
    if head_dim % 2 or cos.shape != (seq_len, head_dim // 2) or sin.shape != cos.shape:
        raise ValueError(f"rope: cos/sin must be (T, Dh/2) = ({seq_len}, {head_dim // 2}), got "
                         f"{tuple(cos.shape)} and {tuple(sin.shape)}")
    if x.stride(-1) != 1:
        x = x.contiguous()
    cos = cos if cos.stride(-1) == 1 else cos.contiguous()
    sin = sin if sin.stride(-1) == 1 else sin.contiguous()
    half = head_dim // 2
    y = torch.empty((batch, n_heads, seq_len, head_dim), dtype=x.dtype, device=x.device)
    if y.numel() == 0:
        return y
    block_d = triton.next_power_of_2(half)
    block_t = max(1, min(triton.next_power_of_2(seq_len), 2048 // block_d))
    grid = (batch * n_heads, triton.cdiv(seq_len, block_t))
    launch(_rope_kernel)[grid](
        x, cos, sin, y,
        x.stride(0), x.stride(1), x.stride(2), cos.stride(0), sin.stride(0),
        n_heads, seq_len, half,
        BACKWARD=backward, BLOCK_T=block_t, BLOCK_D=block_d, num_warps=4,
    )
    return y


@kernel_op("rope_fwd", _rope_fake)
def rope_fwd(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, H, T, Dh) by the angles whose cos/sin are (T, Dh/2); contiguous output in x.dtype."""
    return _launch(x, cos, sin, backward=False)



@kernel_op("rope_bwd", _rope_fake)
def rope_bwd(dy: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Gradient of `rope_fwd` with respect to x: the inverse rotation applied to dy."""
    return _launch(dy, cos, sin, backward=True)



class RoPEFunction(torch.autograd.Function):
    """Rotary embedding with Triton forward and backward; cos/sin are constants (no gradient)."""

    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.save_for_backward(cos, sin)
        return rope_fwd(x, cos, sin)

    @staticmethod
    def backward(ctx, dy):
        cos, sin = ctx.saved_tensors
        return rope_bwd(dy, cos, sin), None, None


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Triton RoPE; same signature and math as `kernels.reference.rope`."""
    return RoPEFunction.apply(x, cos, sin)
