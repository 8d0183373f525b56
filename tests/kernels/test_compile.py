"""The Triton ops compose with torch.compile (fullgraph) and `kernels.get_ops`; gradients match eager."""

import pytest
import torch

pytest.importorskip("triton")

import kernels  # noqa: E402
from tests.kernels.conftest import DEVICE, HAS_CUDA, assert_close  # noqa: E402


def _block(ops, x, residual, norm_w, up_w, head_w, cos, sin, targets):
    """A miniature decoder step touching every op: add+norm, rope, swiglu, norm, fused loss."""
    normed, residual = ops.add_rms_norm(x, residual, norm_w, 1e-6)          # (B*T, C)
    q = normed.view(2, 5, 2, 16).transpose(1, 2)                              # (B, H, T, Dh)
    q = ops.rope(q, cos, sin).transpose(1, 2).reshape(10, 32)
    gate_up = q @ up_w.t()                                                    # (B*T, 96)
    hidden = ops.rms_norm(torch.cat([ops.swiglu(gate_up), residual], -1)[:, :32], norm_w, 1e-6)
    return ops.linear_cross_entropy(hidden, head_w, targets)


def test_triton_ops_compile_fullgraph_matches_eager():
    torch.manual_seed(0)
    ops = kernels.get_ops(use_triton=True)
    assert ops.name == "triton"
    params = [torch.randn(10, 32, device=DEVICE), torch.randn(10, 32, device=DEVICE),
              torch.randn(32, device=DEVICE), torch.randn(96, 32, device=DEVICE) / 6,
              torch.randn(50, 32, device=DEVICE) / 6]
    angles = torch.outer(torch.arange(5.0, device=DEVICE), torch.rand(8, device=DEVICE))
    consts = [angles.cos(), angles.sin(), torch.tensor([1, 2, -100, 3, 4, 5, 6, 7, 8, 9], device=DEVICE)]

    def grads(fn, impl):
        leaves = [p.clone().requires_grad_() for p in params]
        loss = fn(impl, *leaves, *consts)
        loss.backward()
        return [loss] + [leaf.grad for leaf in leaves]

    compiled = torch.compile(_block, fullgraph=True, backend="inductor" if HAS_CUDA else "aot_eager")
    eager_ref = grads(_block, kernels.get_ops(False))
    for got in (grads(_block, ops), grads(compiled, ops)):
        for i, (a, b) in enumerate(zip(got, eager_ref, strict=True)):
            assert_close(a, b, 1e-4, 1e-4, f"output {i}")
