"""SwiGLU kernel vs `kernels.reference.swiglu`, forward and gradients, including row-strided inputs."""

import pytest
import torch

pytest.importorskip("triton")

from kernels import reference  # noqa: E402
from kernels.swiglu import swiglu  # noqa: E402
from tests.kernels.conftest import DEVICE, ELEMENTWISE_CASES, assert_close  # noqa: E402


@pytest.mark.parametrize("dtype, atol, rtol", ELEMENTWISE_CASES)
@pytest.mark.parametrize("shape, strided", [((3, 37, 200), False), ((67, 1100), True), ((4, 96), True),
                                            ((5, 1030), False)])
def test_swiglu_matches_reference(shape, strided, dtype, atol, rtol):
    """shape is the output's (..., F); strided: gate_up is a column slice of a wider tensor (row stride > 2F)."""
    torch.manual_seed(0)
    n = shape[-1]
    wide = torch.randn(*shape[:-1], 2 * n + (7 if strided else 0), device=DEVICE, dtype=dtype)
    grad = torch.randn(shape, device=DEVICE, dtype=dtype)
    results = []
    for fn in (swiglu, reference.swiglu):
        leaf = wide.clone().requires_grad_()
        y = fn(leaf[..., : 2 * n])
        y.backward(grad)
        results.append((y, leaf.grad))
    for a, b in zip(*results, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert_close(a, b, atol, rtol, "swiglu")


def test_swiglu_rejects_an_odd_last_dim():
    with pytest.raises(ValueError, match="even last dim"):
        swiglu(torch.randn(4, 7, device=DEVICE))
