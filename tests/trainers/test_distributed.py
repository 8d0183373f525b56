"""Data parallel on CPU (gloo, 2 ranks started by torch.multiprocessing, no Ray): the same global batch gives the
single-process run's losses, and a run stopped on 2 ranks resumes from rank 0's checkpoint (on 1 rank here: the
checkpoint does not depend on the number of ranks); on 2 GPUs (NCCL), skipped without them. The Ray Train path:
tests/scheduler/test_data_parallel.py."""

import datetime
import json
import math

import pyarrow.parquet as pq
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.conftest import TINY_TORCH_SETTINGS
from tests.trainers.conftest import MIX
from trainers import checkpoint
from trainers.distributed import World, rank_rows
from trainers.spec import RunResult, RunSpec
from trainers.torch_backend import RunStopped, TorchBackend

# 12 steps of 16 sequences (the last one partial: 368 of 512 tokens); micro-batches of 4 rows, so each rank
# of 2 trains two micro-batches of its 8 rows per step, and rank 1's share of the last step is partly padding
SPEC = RunSpec(n_params=70_000, n_tokens=6_000, mix=MIX, seed=3, hparams={"batch_tokens": 512})
SETTINGS = {**TINY_TORCH_SETTINGS, "micro_batch_rows": 4, "checkpoint_every": 4}
STOP_AT = 5


def _rank(rank: int, size: int, store: str, out: str) -> None:
    """One rank: the whole run in out/full, then the same run stopped after STOP_AT steps in out/stopped."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size,
                            timeout=datetime.timedelta(seconds=120))
    try:
        world = World(rank=rank, size=size)
        backend = TorchBackend(**SETTINGS)
        result = backend.run(SPEC, f"{out}/full", world=world)
        with open(f"{out}/result-{rank}.json", "w") as f:
            json.dump(result.to_dict(), f)
        try:
            backend.run(SPEC, f"{out}/stopped", world=world, stop_after_steps=STOP_AT)
        except RunStopped:
            pass
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(single-process result, each rank's result, the directory of the 2-rank runs)."""
    out = tmp_path_factory.mktemp("dp")
    mp.start_processes(_rank, args=(2, str(out / "store"), str(out)), nprocs=2, join=True, start_method="spawn")
    single = TorchBackend(**SETTINGS).run(SPEC, out / "single")
    ranks = [RunResult.from_dict(json.loads((out / f"result-{r}.json").read_text())) for r in range(2)]
    return single, ranks, out


def _train_losses(run_dir) -> list[float]:
    rows = pq.read_table(run_dir / "loss_curve.parquet").to_pylist()
    return [r["train_loss"] for r in rows if r.get("train_loss") is not None and not math.isnan(r["train_loss"])]


def test_two_ranks_give_the_single_process_losses(runs):
    single, ranks, out = runs
    assert ranks[0] == ranks[1]  # every rank returns rank 0's result
    two = ranks[0]
    assert two.status == single.status == "ok" and two.n_params == single.n_params and two.flops == single.flops
    curve_single, curve_two = _train_losses(out / "single"), _train_losses(out / "full")
    assert len(curve_two) == len(curve_single) == 12
    assert curve_two[:4] == pytest.approx(curve_single[:4], rel=1e-5, abs=1e-6)  # the first steps: float order only
    assert curve_two == pytest.approx(curve_single, rel=1e-4)
    assert two.losses == pytest.approx(single.losses, rel=1e-4)
    assert two.domain_losses == pytest.approx(single.domain_losses, rel=1e-4)
    assert curve_two[-1] < curve_two[0] - 0.5  # it learned: the comparison is not between two untrained models


def test_a_run_stopped_on_two_ranks_resumes_from_rank_zeros_checkpoint(runs):
    single, _, out = runs
    stopped = out / "stopped"
    assert [p.name for p in checkpoint.list_checkpoints(stopped)] == ["step_00000005.pt", "step_00000004.pt"]
    resumed = TorchBackend(**SETTINGS).run(SPEC, stopped)  # resumed on one process: the same run
    assert resumed.losses == pytest.approx(single.losses, rel=1e-4)
    assert _train_losses(stopped) == pytest.approx(_train_losses(out / "single"), rel=1e-4)


def _gpu_rank(rank: int, size: int, store: str, out: str) -> None:
    """One rank of the NCCL run, on GPU `rank`."""
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"file://{store}", rank=rank, world_size=size,
                            timeout=datetime.timedelta(seconds=300))
    try:
        result = TorchBackend(**{**SETTINGS, "device": f"cuda:{rank}"}).run(SPEC, f"{out}/two", world=World(rank, size))
        if rank == 0:
            with open(f"{out}/result.json", "w") as f:
                json.dump(result.to_dict(), f)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_two_gpus_over_nccl_give_the_one_gpu_losses(tmp_path):
    """The same on GPUs (bf16 autocast: equal to rounding, not bitwise)."""
    mp.start_processes(_gpu_rank, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    two = RunResult.from_dict(json.loads((tmp_path / "result.json").read_text()))
    one = TorchBackend(**{**SETTINGS, "device": "cuda:0"}).run(SPEC, tmp_path / "one")
    assert _train_losses(tmp_path / "two")[:4] == pytest.approx(_train_losses(tmp_path / "one")[:4], rel=2e-2)
    assert two.losses == pytest.approx(one.losses, rel=2e-2)


def test_rank_shares_cover_the_global_batch():
    assert [rank_rows(World(0, g), 16) for g in (1, 2, 3, 8)] == [16, 8, 6, 2]
    with pytest.raises(ValueError, match="rank"):
        World(rank=2, size=2)
