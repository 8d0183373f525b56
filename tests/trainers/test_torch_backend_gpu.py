"""The GPU configuration, TorchBackend(device="cuda", compile=True): bf16 autocast, Triton ops, compile."""

import pyarrow.parquet as pq
import pytest
import torch

from tests.trainers.conftest import MIX
from trainers import torch_backend
from trainers.spec import RunSpec
from trainers.torch_backend import TorchBackend, peak_flops

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("compile_model", [False, True])
def test_cuda_run_learns_and_reports_mfu(tmp_path, compile_model):
    backend = TorchBackend(
        device="cuda",
        compile=compile_model,
        seq_len=256,
        knowledge_entities=500,
        domain_tokens=2_000_000,
        eval_samples=64,
        eval_every=10_000,
        checkpoint_every=0,
    )
    spec = RunSpec(n_params=5e6, n_tokens=2_000_000, mix=MIX, seed=0)
    result = backend.run(spec, tmp_path)
    assert result.status == "ok"
    assert all(loss < 3.5 for loss in result.losses.values()), result.losses  # ~5.56 at initialisation
    assert result.tokens_per_s > 0
    if peak_flops(torch.device("cuda")):
        assert 0 < result.mfu < 1


def test_cuda_graphs_change_speed_not_results(tmp_path):
    """The compiled run with CUDA graphs (the default) and without them train alike: the first steps' losses
    agree closely, and the final losses within run-to-run noise. That noise is large for this tiny run: two
    plain runs of this spec ended 4.5% apart on code (1.588 vs 1.662) and two graphed runs at 1.642 and 1.672
    (H100, 2026-11-22). Several micro-batches per step, so gradients accumulate across graph replays: that
    crashed once (a replay overwrote a gradient buffer)."""
    settings = dict(device="cuda", compile=True, seq_len=128, knowledge_entities=200, domain_tokens=500_000,
                    eval_samples=32, eval_every=10_000, checkpoint_every=0, log_every=1, micro_batch_rows=4)
    spec = RunSpec(n_params=1e6, n_tokens=500_000, mix=MIX, seed=0)
    graphed = TorchBackend(**settings).run(spec, tmp_path / "graphs")
    plain = TorchBackend(**settings, cuda_graphs=False).run(spec, tmp_path / "plain")
    assert graphed.status == plain.status == "ok"
    curves = [{r["step"]: r["train_loss"] for r in pq.read_table(tmp_path / d / "loss_curve.parquet").to_pylist()
               if r.get("train_loss") is not None} for d in ("graphs", "plain")]
    for step in (1, 2, 3):
        assert curves[0][step] == pytest.approx(curves[1][step], rel=2e-3), step
    for skill, loss in plain.losses.items():
        assert graphed.losses[skill] == pytest.approx(loss, rel=0.15), skill
        assert graphed.losses[skill] < 3.5  # it learned (~5.56 at initialisation)


def test_cuda_graphs_memory_stays_bounded(tmp_path, monkeypatch):
    """An adaptive study asks for a new shape almost every run; torch.compile records new CUDA graphs for each
    and keeps them all. The same five shapes are trained three times in a row. Without freeing them, reserved
    memory grew every round, for the same shapes (MiB, max per round: 520, 602, 734; H100, 2026-11-22). With
    a budget of 0 they are freed before every new shape: round 3 must need no more than round 2, and training
    must stay correct after each reset (a compiled function that outlived its graphs failed with "Running
    CUDAGraph after shutdown")."""
    monkeypatch.setattr(torch_backend, "GRAPH_MEMORY_FRACTION", 0.0)
    torch._dynamo.reset()  # the backend below is new, and so is its BackendCache
    settings = dict(device="cuda", compile=True, seq_len=128, knowledge_entities=200, domain_tokens=300_000,
                    eval_samples=16, eval_every=10_000, checkpoint_every=0, micro_batch_rows=8)
    backend = TorchBackend(**settings)
    reserved = [[], [], []]  # MiB reserved after each run, per round
    for round_, after in enumerate(reserved):
        for i, n_params in enumerate((3e5, 1e6, 2e6, 4e6, 8e6)):
            result = backend.run(RunSpec(n_params=n_params, n_tokens=100_000, mix=MIX, seed=i),
                                 tmp_path / f"r{round_}-{i}")
            assert result.status == "ok" and all(loss < 5.0 for loss in result.losses.values()), result.losses
            after.append(round(torch.cuda.memory_reserved() / 2**20))
    print(f"reserved MiB after each run, per round: {reserved}")
    assert max(reserved[2]) <= 1.05 * max(reserved[1]) + 32, reserved
    # the last shape again: a cache hit, replaying the graphs recorded since the last reset
    result = backend.run(RunSpec(n_params=8e6, n_tokens=100_000, mix=MIX, seed=4), tmp_path / "again")
    assert result.status == "ok" and all(loss < 5.0 for loss in result.losses.values()), result.losses


def test_compiled_path_survives_more_shapes_than_the_recompile_limit(tmp_path, monkeypatch):
    """Five shapes with dynamo's limit at 4: without the reset every recompile_limit // 2 shapes the fifth would run
    eagerly (a fallback, counted in RunResult.compile_fallbacks); with it every run stays compiled."""
    torch._dynamo.reset()
    backend = TorchBackend(device="cuda", compile=True, seq_len=128, knowledge_entities=200, domain_tokens=300_000,
                           eval_samples=16, eval_every=10_000, checkpoint_every=0, shape_grid=0, recompile_limit=4)
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 4)
    for i, n_params in enumerate((3e5, 6e5, 1e6, 2e6, 4e6)):
        result = backend.run(RunSpec(n_params=n_params, n_tokens=50_000, mix=MIX, seed=i), tmp_path / f"r{i}")
        assert result.status == "ok" and result.compile_fallbacks == 0, (i, result)
