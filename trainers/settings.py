"""TrainerSettings: how the torch backend executes runs (not what is trained: that is trainers.data.DataSettings).

A frozen dataclass that validates itself; errors name the field as `trainer.<field>: ...`, which the study config
(trainers/backend.py TorchConfig) and `skillscale train` (trainers/cli.py, one flag per field, the comment as
its help) both rely on. Kept apart from trainers/torch_backend.py so that reading or validating settings does
not import torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from skillscale.errors import InputError


@dataclass(frozen=True)
class TrainerSettings:
    """How runs are executed (not what is trained); the data settings are DataSettings."""

    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    compile: bool = False  # torch.compile the training forward (CUDA: recommended)
    cuda_graphs: bool = True  # with compile on CUDA: replay forward/backward as CUDA graphs ("reduce-overhead")
    use_triton: bool | str = "auto"  # Triton kernels: "auto" -> on CUDA when kernels.triton_ops imports
    seq_len: int = 512  # tokens per training sequence
    tokenizer: str = "bytes"  # "bpe:<vocab>" (trained on the data, trainers/bpe.py) or a tokenizers JSON path
    eval_every: int = 0  # steps between evaluations during training, and at step 0 (0: only at the end)
    checkpoint_every: int = 1000  # steps between checkpoints (0: only the final one)
    log_every: int = 10  # steps between host syncs of the training loss (divergence checks, progress)
    micro_batch_rows: int = 0  # sequences per forward/backward (0: the whole batch at once)
    heldout_rows: int = 512  # held-out windows per domain for the domain losses (64 would leave ~2% per-window noise)
    shape_grid: int = 8  # shapes per decade of N: targets snap to 10^(j/8) (trainers/shapes.py); 0: no grid
    qk_norm: bool = True  # RMS-normalise queries and keys per head (QK-layernorm, trainers/model.py)
    recompile_limit: int = 64  # dynamo's compiled entries per function; half of it bounds shapes between resets
    seed_replicas: int = 1  # models per run, seeds s + 1000 r, fused in one (trainers/replicas.py); losses: their mean
    progress: Callable | None = field(default=None, compare=False)  # progress(step, n_steps, loss, lr)

    def __post_init__(self):
        for name in ("seq_len", "log_every", "recompile_limit", "seed_replicas"):
            if int(getattr(self, name)) <= 0:
                raise InputError(f"trainer.{name}: expected a positive integer, got {getattr(self, name)}")
        for name in ("eval_every", "checkpoint_every", "micro_batch_rows", "shape_grid"):
            if int(getattr(self, name)) < 0:
                raise InputError(f"trainer.{name}: expected >= 0, got {getattr(self, name)}")
        for name in ("cuda_graphs", "qk_norm"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"trainer.{name}: expected true or false, got {getattr(self, name)!r}")
        if self.use_triton not in (True, False, "auto"):
            raise InputError(f"trainer.use_triton: expected true, false or 'auto', got {self.use_triton!r}")
