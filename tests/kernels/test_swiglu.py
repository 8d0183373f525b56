"""SwiGLU kernel vs `kernels.reference.swiglu`, forward and gradients, including strided halves."""

import pytest
import torch

pytest.importorskip("triton")

from kernels import reference  # noqa: E402
from kernels.swiglu import swiglu  # noqa: E402
from tests.kernels.conftest import DEVICE, ELEMENTWISE_CASES, assert_close  # noqa: E402


@pytest.mark.parametrize("dtype, atol, rtol", ELEMENTWISE_CASES)
@pytest.mark.parametrize("shape, fused", [((3, 37, 200), False), ((67, 1100), True), ((4, 96), True)])
def test_swiglu_matches_reference(shape, fused, dtype, atol, rtol):
    torch.manual_seed(0)
    both = torch.randn(*shape[:-1], 2 * shape[-1], device=DEVICE, dtype=dtype)
    grad = torch.randn(shape, device=DEVICE, dtype=dtype)
    results = []
    for fn in (swiglu, reference.swiglu):
        if fused:  # gate and up as the two halves of one projection: row-strided views
            b = both.clone().requires_grad_()
            gate, up = b.chunk(2, dim=-1)
            leaves = (b,)
        else:
            gate, up = (t.contiguous().requires_grad_() for t in both.chunk(2, dim=-1))
            leaves = (gate, up)
        y = fn(gate, up)
        y.backward(grad)
        results.append((y, *[leaf.grad for leaf in leaves]))
    for a, b in zip(*results, strict=True):
        assert a.dtype == b.dtype
        assert_close(a, b, atol, rtol, "swiglu")
