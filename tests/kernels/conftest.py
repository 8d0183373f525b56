"""Kernel tests run natively on a GPU, and on CPU through the Triton interpreter (fp32 only there).

Triton decides at `@triton.jit` time whether a kernel is interpreted (it reads TRITON_INTERPRET through
`triton.knobs`), so the variable is set here, before any test module imports `kernels.<op>`.
"""

from __future__ import annotations

import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICE = "cuda" if HAS_CUDA else "cpu"

# (dtype, atol, rtol) per op family; bf16 only where it runs natively.
ELEMENTWISE_CASES = [pytest.param(torch.float32, 1e-5, 1e-5, id="fp32")]
if HAS_CUDA:
    ELEMENTWISE_CASES.append(pytest.param(torch.bfloat16, 2e-2, 2e-2, id="bf16"))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float, what: str) -> None:
    torch.testing.assert_close(actual.float(), expected.float(), atol=atol, rtol=rtol,
                               msg=lambda m: f"{what}: {m}")


@pytest.fixture(autouse=True)
def _exact_fp32_matmuls():
    """fp32 cases compare against fp32 references, so matmuls must not run in TF32. The trainer turns TF32 on
    process-wide (trainers/torch_backend.py), so a trainer test earlier in the same session would otherwise
    loosen every fp32 matmul here."""
    if not HAS_CUDA:
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
