"""RoPE kernel vs `kernels.reference.rope`, forward and gradient, contiguous and strided inputs."""

import pytest
import torch

pytest.importorskip("triton")

from kernels import reference  # noqa: E402
from kernels.rope import rope  # noqa: E402
from tests.kernels.conftest import DEVICE, ELEMENTWISE_CASES, assert_close  # noqa: E402


def _angles(seq_len: int, head_dim: int):
    inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, device=DEVICE).float() / head_dim))
    angles = torch.outer(torch.arange(seq_len, device=DEVICE).float(), inv_freq)  # (T, Dh/2)
    return angles.cos(), angles.sin()


@pytest.mark.parametrize("dtype, atol, rtol", ELEMENTWISE_CASES)
@pytest.mark.parametrize("batch, heads, seq_len, head_dim, strided", [
    (2, 3, 37, 64, False),
    (1, 2, 130, 32, True),   # a (B, T, H, Dh) buffer viewed as (B, H, T, Dh), as after a qkv projection
    (2, 1, 5, 96, False),    # Dh/2 = 48 is not a power of two
])
def test_rope_matches_reference(batch, heads, seq_len, head_dim, strided, dtype, atol, rtol):
    torch.manual_seed(0)
    if strided:
        x = torch.randn(batch, seq_len, heads, head_dim, device=DEVICE, dtype=dtype).transpose(1, 2)
    else:
        x = torch.randn(batch, heads, seq_len, head_dim, device=DEVICE, dtype=dtype)
    cos, sin = _angles(seq_len, head_dim)
    grad = torch.randn(batch, heads, seq_len, head_dim, device=DEVICE, dtype=dtype)
    results = []
    for fn in (rope, reference.rope):
        xi = x.detach().clone().requires_grad_() if not strided else \
            x.detach().transpose(1, 2).clone().transpose(1, 2).requires_grad_()
        y = fn(xi, cos, sin)
        y.backward(grad)
        results.append((y, xi.grad))
    (y, dx), (y_ref, dx_ref) = results
    assert y.dtype == y_ref.dtype and y.shape == y_ref.shape
    assert_close(y, y_ref, atol, rtol, "y")
    assert_close(dx, dx_ref, atol, rtol, "dx")
