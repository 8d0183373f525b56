"""TrainerSettings: how the torch backend executes runs (not what is trained: that is trainers.data.DataSettings).

A frozen pydantic model (skillscale.config_types.ConfigModel), like every section of the study file: in a study it
is `backend.trainer` (trainers/backend.py TorchConfig), and `skillscale train` makes one flag of each field
(trainers/cli.py), with the field's description as its help. A bad value fails validation naming the field
(`backend.trainer.seq_len: expected a positive integer, got 0`). Kept apart from trainers/torch_backend.py so
that reading or validating settings does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, field_validator

from skillscale.config_types import ConfigModel, Integer, Switch


class TrainerSettings(ConfigModel):
    """How runs are executed (not what is trained); the data settings are DataSettings."""

    device: str = Field(default="auto", description='"auto" (cuda if available), "cpu", "cuda", "cuda:1", ...')
    compile: Switch = Field(default=False, description="torch.compile the training forward (CUDA: recommended)")
    cuda_graphs: Switch = Field(
        default=True, description='with compile on CUDA: replay forward/backward as CUDA graphs ("reduce-overhead")')
    use_triton: bool | Literal["auto"] = Field(default="auto", description='Triton kernels: "auto" -> on CUDA when '
                                                                           "kernels.triton_ops imports")
    seq_len: Integer = Field(default=512, description="tokens per training sequence")
    tokenizer: str = Field(default="bytes", description='"bpe:<vocab>" (trained on the data, trainers/bpe.py) or a '
                                                        "tokenizers JSON path")
    eval_every: Integer = Field(default=0, description="steps between evaluations during training, and at step 0 "
                                                       "(0: only at the end)")
    checkpoint_every: Integer = Field(default=1000, description="steps between checkpoints (0: only the final one)")
    log_every: Integer = Field(default=10, description="steps between host syncs of the training loss (divergence "
                                                       "checks, progress)")
    micro_batch_rows: Integer = Field(default=0, description="sequences per forward/backward (0: the whole batch at "
                                                             "once)")
    heldout_rows: Integer = Field(default=512, description="held-out windows per domain for the domain losses (64 "
                                                           "would leave ~2% per-window noise)")
    shape_grid: Integer = Field(default=8, description="shapes per decade of N: targets snap to 10^(j/8) "
                                                       "(trainers/shapes.py); 0: no grid")
    qk_norm: Switch = Field(default=True, description="RMS-normalise queries and keys per head (QK-layernorm, "
                                                    "trainers/model.py)")
    recompile_limit: Integer = Field(default=64, description="dynamo's compiled entries per function; half of it "
                                                             "bounds shapes between resets")
    seed_replicas: Integer = Field(default=1, description="models per run, seeds s + 1000 r, fused in one "
                                                          "(trainers/replicas.py); losses: their mean")
    progress: Callable | None = Field(default=None, exclude=True,
                                      description="progress(step, n_steps, loss, lr), called as training goes; set "
                                                  "from Python (skillscale train's progress bar), never from YAML, "
                                                  "and left out when the settings are written down")

    @field_validator("use_triton", mode="before")
    @classmethod
    def _triton(cls, value: Any) -> bool | str:
        if not (isinstance(value, bool) or value == "auto"):
            raise ValueError(f"expected true, false or 'auto', got {value!r}")
        return value

    @field_validator("seq_len", "log_every", "recompile_limit", "seed_replicas")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError(f"expected a positive integer, got {value}")
        return value

    @field_validator("eval_every", "checkpoint_every", "micro_batch_rows", "shape_grid", "heldout_rows")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"expected >= 0, got {value}")
        return value
