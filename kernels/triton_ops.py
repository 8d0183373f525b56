"""The Triton implementations of the fused ops, as `TRITON_OPS` for `kernels.get_ops(use_triton=True)`.

Each op has the signature of its reference in `kernels.reference`; each is an autograd Function whose kernels
are launched through torch.library custom ops, so a model using them can be wrapped in torch.compile.
Importing this module needs triton (CUDA, or TRITON_INTERPRET=1 on CPU).
"""

from __future__ import annotations

from kernels import Ops
from kernels.linear_cross_entropy import linear_cross_entropy
from kernels.rms_norm import add_rms_norm, rms_norm
from kernels.rope import rope
from kernels.swiglu import swiglu

TRITON_OPS = Ops(
    rms_norm=rms_norm,
    add_rms_norm=add_rms_norm,
    rope=rope,
    swiglu=swiglu,
    linear_cross_entropy=linear_cross_entropy,
    name="triton",
)
