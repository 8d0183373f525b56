"""How the launchers become torch ops, so that models using them can be wrapped in torch.compile.

On a GPU a launcher is a `torch.library.triton_op`: torch.compile traces into it and Inductor launches the
Triton kernels straight from its generated code (no Python dispatch per call, and CUDA graphs can take them).
Under the Triton interpreter (TRITON_INTERPRET=1, CPU) the traced path is not available, so the same
function is registered as an opaque `torch.library.custom_op` with a fake (shape-only) implementation.
"""

from __future__ import annotations

import os

import torch

try:
    from triton import knobs as _knobs

    INTERPRET = bool(_knobs.runtime.interpret)
except (ImportError, AttributeError):  # older triton: read the variable directly
    INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def kernel_op(name: str, fake):
    """Decorator: register `fn` as the op `skillscale::<name>` (see above); `fake` gives output shapes."""
    def decorate(fn):
        if INTERPRET:
            op = torch.library.custom_op(f"skillscale::{name}", mutates_args=())(fn)
            op.register_fake(fake)
        else:
            op = torch.library.triton_op(f"skillscale::{name}", mutates_args=())(fn)
        return op
    return decorate


def launch(kernel):
    """The kernel as launched inside a `kernel_op`: wrapped for tracing on a GPU, as is when interpreted."""
    return kernel if INTERPRET else torch.library.wrap_triton(kernel)
