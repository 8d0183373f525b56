"""Fused ops for the trainer: a pure-torch reference of each op, and (on CUDA) Triton kernels.

The model asks for its ops once, `ops = get_ops(use_triton)`, and calls `ops.rms_norm(...)` etc.
`use_triton=False` (CPU, CI) returns the references in `kernels.reference`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kernels import reference


@dataclass(frozen=True)
class Ops:
    """The fused ops a model uses; each matches the signature of its reference."""

    rms_norm: Callable
    add_rms_norm: Callable
    rope: Callable
    swiglu: Callable
    linear_cross_entropy: Callable
    name: str = "reference"


REFERENCE_OPS = Ops(
    rms_norm=reference.rms_norm,
    add_rms_norm=reference.add_rms_norm,
    rope=reference.rope,
    swiglu=reference.swiglu,
    linear_cross_entropy=reference.linear_cross_entropy,
)


def get_ops(use_triton: bool = False) -> Ops:
    """The ops: Triton kernels when `use_triton` (needs CUDA, or TRITON_INTERPRET=1), else the references."""
    if not use_triton:
        return REFERENCE_OPS
    from kernels.triton_ops import TRITON_OPS  # imported lazily: triton may be absent on CPU-only installs

    return TRITON_OPS
