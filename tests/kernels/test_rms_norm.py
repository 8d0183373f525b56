"""RMSNorm and fused add + RMSNorm kernels vs `kernels.reference`, forward and gradients."""

import pytest
import torch

pytest.importorskip("triton")

from kernels import reference  # noqa: E402
from kernels.rms_norm import add_rms_norm, rms_norm  # noqa: E402
from tests.kernels.conftest import DEVICE, ELEMENTWISE_CASES, assert_close  # noqa: E402

SHAPES = [(3, 37, 96), (67, 200), (5, 256), (300, 40)]  # odd row counts and hidden sizes; many tiles per program


@pytest.mark.parametrize("dtype, atol, rtol", ELEMENTWISE_CASES)
@pytest.mark.parametrize("shape", SHAPES)
def test_rms_norm_matches_reference(shape, dtype, atol, rtol):
    torch.manual_seed(0)
    x = torch.randn(shape, device=DEVICE, dtype=dtype)
    weight = torch.randn(shape[-1], device=DEVICE)  # fp32 parameter, as under autocast
    grad = torch.randn(shape, device=DEVICE, dtype=dtype)
    results = []
    for fn in (rms_norm, reference.rms_norm):
        xi, wi = x.clone().requires_grad_(), weight.clone().requires_grad_()
        y = fn(xi, wi, 1e-6)
        y.backward(grad)
        results.append((y, xi.grad, wi.grad))
    (y, dx, dw), (y_ref, dx_ref, dw_ref) = results
    assert y.dtype == y_ref.dtype and dw.dtype == dw_ref.dtype
    assert_close(y, y_ref, atol, rtol, "y")
    assert_close(dx, dx_ref, atol, rtol, "dx")
    assert_close(dw, dw_ref, atol * 10, rtol, "dweight")  # a sum over rows


@pytest.mark.parametrize("dtype, atol, rtol", ELEMENTWISE_CASES)
@pytest.mark.parametrize("shape", SHAPES)
def test_add_rms_norm_matches_reference(shape, dtype, atol, rtol):
    torch.manual_seed(1)
    x = torch.randn(shape, device=DEVICE, dtype=dtype)
    residual = torch.randn(shape, device=DEVICE, dtype=dtype)
    weight = torch.randn(shape[-1], device=DEVICE)
    grad_y = torch.randn(shape, device=DEVICE, dtype=dtype)
    grad_s = torch.randn(shape, device=DEVICE, dtype=dtype)
    results = []
    for fn in (add_rms_norm, reference.add_rms_norm):
        xi, ri, wi = (t.clone().requires_grad_() for t in (x, residual, weight))
        y, s = fn(xi, ri, wi, 1e-6)
        torch.autograd.backward([y, s], [grad_y, grad_s])  # both outputs carry gradient, as in a block
        results.append((y, s, xi.grad, ri.grad, wi.grad))
    for name, a, b in zip(("y", "sum", "dx", "dresidual", "dweight"), *results, strict=True):
        assert a.dtype == b.dtype, name
        assert_close(a, b, atol * (10 if name == "dweight" else 1), rtol, name)


def test_add_rms_norm_only_normed_output_used():
    x = torch.randn(9, 96, device=DEVICE, requires_grad=True)
    residual = torch.randn(9, 96, device=DEVICE, requires_grad=True)
    weight = torch.ones(96, device=DEVICE, requires_grad=True)
    y, _ = add_rms_norm(x, residual, weight)
    y.sum().backward()
    xr, rr = x.detach().clone().requires_grad_(), residual.detach().clone().requires_grad_()
    reference.add_rms_norm(xr, rr, weight.detach())[0].sum().backward()
    assert_close(x.grad, xr.grad, 1e-5, 1e-5, "dx")
    assert_close(residual.grad, rr.grad, 1e-5, 1e-5, "dresidual")


@pytest.mark.skipif(DEVICE != "cuda", reason="autocast bf16 output is exercised natively on CUDA")
def test_norms_under_autocast_write_the_autocast_dtype():
    """Under autocast an fp32 input is normalised straight into bf16, with the reference's values, cast."""
    x = torch.randn(33, 200, device=DEVICE, requires_grad=True)
    residual = torch.randn(33, 200, device=DEVICE, dtype=torch.bfloat16)
    weight = torch.randn(200, device=DEVICE)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = rms_norm(x, weight)
        y2, s = add_rms_norm(residual, x, weight)
    assert y.dtype == y2.dtype == torch.bfloat16 and s.dtype == torch.float32
    assert_close(y, reference.rms_norm(x, weight).bfloat16(), 1e-2, 1e-2, "y")
    assert_close(y2, reference.add_rms_norm(residual, x, weight)[0].bfloat16(), 1e-2, 1e-2, "y2")
    (y.float().sum() + y2.float().sum()).backward()
    assert x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()


MIXED = [(torch.float16, torch.float32), (torch.float32, torch.float16), (torch.float16, torch.bfloat16)]


@pytest.mark.parametrize("x_dtype, residual_dtype", MIXED if DEVICE == "cuda" else MIXED[:2])
def test_add_rms_norm_mixed_dtypes_give_each_input_its_own_gradient_dtype(x_dtype, residual_dtype):
    """A narrow sub-layer output + an fp32 residual (the block's case under autocast), either order, and two
    narrow inputs whose sum is fp32: each input gets its gradient in its own dtype, rounded once from fp32."""
    torch.manual_seed(2)
    x = torch.randn(70, 256, device=DEVICE).to(x_dtype)
    residual = torch.randn(70, 256, device=DEVICE).to(residual_dtype)
    weight = torch.randn(256, device=DEVICE)
    grad_s = torch.randn(70, 256, device=DEVICE)
    results = []
    for fn in (add_rms_norm, reference.add_rms_norm):
        xi, ri = x.clone().requires_grad_(), residual.clone().requires_grad_()
        y, s = fn(xi, ri, weight, 1e-6)
        torch.autograd.backward([y, s], [torch.ones_like(y), grad_s.to(s.dtype)])
        results.append((s.dtype, xi.grad, ri.grad))
    (s_dtype, dx, dr), (s_ref, dx_ref, dr_ref) = results
    assert s_dtype == s_ref == torch.float32
    assert dx.dtype == x_dtype and dr.dtype == residual_dtype
    assert_close(dx, dx_ref, 1e-2, 1e-2, "dx")
    assert_close(dr, dr_ref, 1e-2, 1e-2, "dresidual")
    if torch.float32 in (x_dtype, residual_dtype):  # the narrow one is the fp32 one, rounded once
        wide, narrow = (dr, dx) if residual_dtype == torch.float32 else (dx, dr)
        assert_close(narrow, wide.to(narrow.dtype), 0, 0, "rounded once from the fp32 gradient")
