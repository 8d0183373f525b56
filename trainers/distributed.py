"""Data parallelism for one run, Ray-free: the process group a run trains in (World) and what it does there.

    world = World(rank=0, size=2)              # torch.distributed's default group must already be initialised
    result = TorchBackend(...).run(spec, run_dir, world=world)   # every rank calls it; each returns rank 0's result

Who builds the process group is someone else's business: Ray Train's TorchTrainer at the Ray edge
(scheduler/data_parallel.py: gloo on CPU, NCCL on CUDA), or torch.multiprocessing with a file store in the tests.
The trainer only needs the default group and this object.

How a step is split so that g ranks train exactly the single-process run (tests/trainers/test_distributed.py):
- every rank draws the step's whole global batch from the deterministic sampler ((seed, step) -> rows, cheap
  numpy) and takes its contiguous share of it (`rank_rows`); the global batch is the single-process one;
- each micro-batch's loss is weighted by its targets over the *global* step's targets, so the ranks' weighted
  gradients sum (`all_reduce_gradients`: one flat SUM all-reduce per step) to the single-process gradient,
  up to the order of float additions; clipping and AdamW then run identically on every rank;
- the weights start equal on every rank (same seed, and a broadcast from rank 0 for safety), and so stay equal;
- rank 0 alone evaluates, writes checkpoints (atomically, in the run's directory: the same files a single-process
  run writes, so a run may resume on another number of ranks) and the loss curve; every rank reads the newest
  checkpoint on resume, so the run directory must be a path all ranks see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel run: rank `rank` of `size` (size 1: a single-process run)."""

    rank: int = 0
    size: int = 1

    def __post_init__(self):
        if int(self.size) < 1 or not 0 <= int(self.rank) < int(self.size):
            raise ValueError(f"World: expected 0 <= rank < size, got rank {self.rank}, size {self.size}")

    @property
    def is_main(self) -> bool:
        """Whether this rank evaluates and writes the run's files (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def all_reduce_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Sum every parameter's gradient over the ranks, in one flat all-reduce (a rank whose share of a
        partial last step was empty contributes zeros)."""
        if not self.distributed:
            return
        for p in parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in parameters]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def all_reduce_sum(self, value: torch.Tensor) -> torch.Tensor:
        """`value` summed over the ranks (in place; returned for convenience)."""
        if self.distributed:
            torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.SUM)
        return value

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Make every rank's weights rank 0's (they are equal already when initialised from one seed)."""
        if self.distributed:
            for tensor in module.state_dict().values():
                torch.distributed.broadcast(tensor, src=0)

    def broadcast_object(self, value):
        """Rank 0's `value` on every rank (any picklable object)."""
        if not self.distributed:
            return value
        box = [value if self.is_main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


SINGLE_PROCESS = World()


def rank_rows(world: World, global_rows: int) -> int:
    """Rows of each rank's share of a global batch of `global_rows` sequences (the last share may be padding)."""
    return math.ceil(global_rows / world.size)


def rank_share(world: World, array: np.ndarray, rows: int) -> np.ndarray:
    """This rank's contiguous rows [rank*rows, (rank+1)*rows) of a global batch padded to size*rows rows."""
    return array[world.rank * rows : (world.rank + 1) * rows]
