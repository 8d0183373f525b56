"""The torch backend end to end on CPU: learning, exact resumption, checkpoint refusal, divergence."""

import math
import warnings
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
import torch

from skillscale.errors import InputError
from tests.trainers.conftest import MIX
from trainers import checkpoint, torch_backend
from trainers.backend import make_backend
from trainers.checkpoint import CheckpointError
from trainers.spec import REPEATED_DATA_EPOCHS, RunSpec
from trainers.torch_backend import RunStopped, TorchBackend

TINY = RunSpec(n_params=70_000, n_tokens=6_000, mix=MIX, seed=1, hparams={"batch_tokens": 512})


def test_one_million_param_run_lowers_every_skill_loss(tmp_path):
    backend = TorchBackend(
        device="cpu",
        seq_len=64,
        knowledge_entities=100,
        domain_tokens=200_000,
        heldout_tokens=8_000,
        eval_samples=48,
        heldout_rows=8,
        checkpoint_every=0,
        eval_every=1_000_000,
    )  # eval_every > steps: evaluate at step 0 and the end only
    spec = RunSpec(n_params=1_000_000, n_tokens=40_000, mix=MIX, seed=0)
    result = backend.run(spec, tmp_path)
    assert result.status == "ok" and result.finite
    assert 0.9e6 < result.n_params < 1.1e6 and result.flops == 6 * result.n_params * 40_000
    curve = pq.read_table(tmp_path / "loss_curve.parquet").to_pylist()
    initial, final = curve[0], curve[-1]
    assert initial["step"] == 0 and final["tokens"] == 40_000
    for skill in ("knowledge", "code"):
        assert initial[f"eval/{skill}"] > 5.0  # ~ln(260) at initialisation
        assert result.losses[skill] == final[f"eval/{skill}"]
        assert result.losses[skill] < initial[f"eval/{skill}"] - 1.5, skill
    for domain in MIX:
        assert result.domain_losses[domain] < initial[f"heldout/{domain}"] - 1.5, domain
    assert result.tokens_per_s > 0 and result.mfu == 0.0
    print(
        f"\n1M run: initial {[(k, round(initial[f'eval/{k}'], 3)) for k in ('knowledge', 'code')]}, "
        f"final {result.losses}, {result.tokens_per_s:.0f} tok/s"
    )


@pytest.mark.parametrize("log_every", [1, 4])  # 4: the stop falls between host syncs
def test_stop_and_resume_is_bit_identical(tmp_path, tiny_settings, log_every):
    tiny_settings = {**tiny_settings, "log_every": log_every}
    backend = TorchBackend(**tiny_settings)
    full = backend.run(TINY, tmp_path / "full")
    with pytest.raises(RunStopped):
        backend.run(TINY, tmp_path / "resumed", stop_after_steps=5)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "resumed")] == ["step_00000005.pt"]
    resumed = TorchBackend(**tiny_settings).run(TINY, tmp_path / "resumed")  # a fresh backend, as after a crash
    assert resumed.losses == full.losses and resumed.domain_losses == full.domain_losses
    curve_full = pq.read_table(tmp_path / "full" / "loss_curve.parquet").column("train_loss").to_pylist()
    curve_resumed = pq.read_table(tmp_path / "resumed" / "loss_curve.parquet").column("train_loss").to_pylist()
    assert curve_full == curve_resumed and len(curve_full) == 13  # ceil(6000 / 512) steps + the final eval row
    # a finished run re-evaluates its final checkpoint instead of training again
    again = backend.run(TINY, tmp_path / "full")
    assert again.losses == full.losses
    assert again.tokens_per_s == full.tokens_per_s > 0  # throughput of the sessions that trained


def test_a_run_says_where_its_wall_time_went_across_sessions(tmp_path, tiny_settings):
    backend = TorchBackend(**{**tiny_settings, "eval_every": 4, "checkpoint_every": 3})
    with pytest.raises(RunStopped):
        backend.run(TINY, tmp_path, stop_after_steps=5)
    first = checkpoint.load_latest(tmp_path, backend._plan_run(TINY).fingerprint)["timing"]
    result = backend.run(TINY, tmp_path)
    assert list(result.time_s) == list(torch_backend.PHASES)
    assert all(v >= 0 for v in result.time_s.values())
    assert result.time_s["evaluate"] > 0 and result.time_s["checkpoint"] > 0 and result.time_s["setup"] > 0
    assert result.time_s["train"] > 0 and result.time_s["first_step"] > 0
    assert sum(result.time_s.values()) == pytest.approx(result.wall_s, rel=0.02)  # the phases cover the wall time
    for phase, seconds in first["phase_s"].items():  # the first session's time is kept, not restarted
        assert result.time_s[phase] >= round(seconds, 3) - 1e-3, phase
    assert first["phase_s"]["first_step"] > 0 and result.time_s["first_step"] > first["phase_s"]["first_step"]


def test_a_checkpoint_without_phases_still_resumes():
    clock = torch_backend.TrainingClock({"wall_s": 2.0, "timed_s": 1.0, "timed_tokens": 10})  # an older checkpoint
    totals = clock.totals(final=True)
    assert totals["wall_s"] >= 2.0 and totals["timed_tokens"] == 10
    assert set(totals["phase_s"]) == set(torch_backend.PHASES)


def test_checkpoint_mismatch_is_refused(tmp_path, tiny_settings):
    backend = TorchBackend(**tiny_settings)
    with pytest.raises(RunStopped):
        backend.run(TINY, tmp_path, stop_after_steps=2)
    other = RunSpec(n_params=TINY.n_params, n_tokens=TINY.n_tokens, mix=TINY.mix, seed=2, hparams=TINY.hparams)
    with pytest.raises(CheckpointError, match="different run"):
        backend.run(other, tmp_path)
    with pytest.raises(CheckpointError, match="hparams"):  # same spec, different settings -> different run
        TorchBackend(**{**tiny_settings, "seq_len": 64}).run(TINY, tmp_path)


def test_corrupt_checkpoint_falls_back_then_is_refused(tmp_path, tiny_settings):
    backend = TorchBackend(**{**tiny_settings, "checkpoint_every": 2})
    with pytest.raises(RunStopped):
        backend.run(TINY, tmp_path, stop_after_steps=4)
    newest, older = checkpoint.list_checkpoints(tmp_path)
    assert (newest.name, older.name) == ("step_00000004.pt", "step_00000002.pt")
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated
    with pytest.warns(UserWarning, match="step_00000004.pt is unreadable"):
        result = backend.run(TINY, tmp_path)  # resumes from step 2
    assert result.status == "ok"
    reference = backend.run(TINY, tmp_path / "clean")
    assert result.losses == reference.losses
    for path in checkpoint.list_checkpoints(tmp_path):
        path.write_bytes(b"not a checkpoint")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match="no readable checkpoint"):
            backend.run(TINY, tmp_path)


def test_float_counts_from_a_scheduler_are_accepted(tmp_path, tiny_settings):
    spec = RunSpec(n_params=7.2e4, n_tokens=3.0e3, mix=MIX, hparams={"batch_tokens": 512})
    result = TorchBackend(**tiny_settings).run(spec, tmp_path)
    assert result.status == "ok" and result.n_tokens == 3000 and isinstance(result.n_params, int)


def test_divergence_is_a_status_not_an_exception(tmp_path, tiny_settings):
    spec = RunSpec(
        n_params=70_000, n_tokens=6_000, mix=MIX, hparams={"lr": 1e8, "grad_clip": 1e30, "batch_tokens": 512}
    )
    result = TorchBackend(**tiny_settings).run(spec, tmp_path)
    assert result.status == "diverged" and not result.finite
    assert all(math.isnan(v) for v in result.losses.values())


def test_backend_factory_and_bad_settings(tiny_settings):
    from tests.conftest import torch_backend_section
    from trainers.backend import TorchConfig

    assert isinstance(make_backend(TorchConfig.model_validate(torch_backend_section(tiny_settings))), TorchBackend)
    with pytest.raises(InputError, match="'sequence_length'"):
        TorchBackend(sequence_length=3)
    with pytest.raises(InputError, match="trainer.cuda_graphs: expected true or false"):
        TorchBackend(**tiny_settings, cuda_graphs="yes")
    with pytest.raises(InputError, match="'poetry'"):
        TorchBackend(**tiny_settings).plan(RunSpec(n_params=1e6, n_tokens=1e6, mix={"poetry": 1.0}))
    with pytest.raises(InputError, match="n_params"):
        TorchBackend(**tiny_settings).plan(RunSpec(n_params=1000, n_tokens=1e6, mix=MIX))


def test_micro_batches_match_the_whole_batch(tmp_path, tiny_settings):
    whole = TorchBackend(**tiny_settings).run(TINY, tmp_path / "whole")
    micro = TorchBackend(**{**tiny_settings, "micro_batch_rows": 3}).run(TINY, tmp_path / "micro")
    for skill, loss in whole.losses.items():
        assert micro.losses[skill] == pytest.approx(loss, rel=1e-4)


TRITON_CHECK = """
import torch
from trainers.model import Transformer
from trainers.shapes import ModelConfig
cfg = ModelConfig(d_model=64, n_layers=1, n_heads=2, vocab_size=260, seq_len=16)
models = []
for use_triton in (True, False):
    torch.manual_seed(0)
    models.append(Transformer(cfg, use_triton=use_triton))
x = torch.randint(0, 260, (2, 16))
losses = [m(x, x) for m in models]
for loss in losses:
    loss.backward()
assert models[0].ops.name == "triton" and models[1].ops.name == "reference"
assert torch.allclose(losses[0], losses[1], atol=1e-5), losses
for a, b in zip(models[0].parameters(), models[1].parameters()):
    assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4)
print("ok")
"""


def test_model_with_triton_ops_matches_reference_under_interpreter():
    """The use_triton switch: the same model through the Triton kernels (TRITON_INTERPRET=1 on CPU)."""
    pytest.importorskip("triton")
    import os
    import subprocess
    import sys

    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", TRITON_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_cuda_graph_memory_budget_frees_compiled_models_only_past_it(monkeypatch):
    """The check before compiling a new shape (with CUDA graphs): under GRAPH_MEMORY_FRACTION of the device
    nothing is dropped; past it, the cached models, the compiled code and the graphs all go. The CUDA calls are
    stood in for, so this runs without a GPU; the GPU test measures the memory itself."""
    import torch._inductor.cudagraph_trees as cudagraph_trees

    calls, reserved = [], {"bytes": 200}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=1000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: reserved["bytes"])
    monkeypatch.setattr(torch._dynamo, "reset", lambda: calls.append("dynamo"))
    monkeypatch.setattr(cudagraph_trees, "reset_cudagraph_trees", lambda: calls.append("graphs"))
    monkeypatch.setattr(torch_backend, "GRAPH_MEMORY_FRACTION", 0.3)

    assert not torch_backend.graph_memory_over_budget(torch.device("cuda"))  # 200 of 1000: under 30%
    reserved["bytes"] = 400
    assert torch_backend.graph_memory_over_budget(torch.device("cuda"))
    cache = torch_backend.BackendCache(models={"a shape": (object(), object())}, compiled_shapes=3)
    cache.reset_compiled()
    assert not cache.models and cache.compiled_shapes == 0 and "dynamo" in calls and "graphs" in calls


def test_compiled_shapes_are_bounded_by_half_the_recompile_limit(monkeypatch, tiny_settings):
    """With compile on, a new shape past recompile_limit // 2 shapes since the last reset resets torch.compile's
    state first, so dynamo never reaches its limit and falls back to eager (torch.compile stood in for)."""
    resets = []
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: model)
    monkeypatch.setattr(torch_backend.BackendCache, "reset_compiled",
                        lambda self: (resets.append(self.compiled_shapes), self.models.clear(),
                                      setattr(self, "compiled_shapes", 0)))
    backend = TorchBackend(**{**tiny_settings, "compile": True, "recompile_limit": 4, "shape_grid": 0})
    shapes = [backend.plan(RunSpec(n_params=n, n_tokens=6_000, mix=MIX))[0] for n in (7e4, 1.3e5, 2e5, 3e5, 7e5)]
    assert len(set(shapes)) == 5
    for cfg in shapes:
        backend._model(cfg)
    assert resets == [2, 2]  # 2 = 4 // 2 shapes compiled, then the third one resets (twice in five shapes)
    assert backend.cache.compiled_shapes == 1


def test_a_fallback_to_eager_is_counted():
    """RecompileLimitWatch counts dynamo's recompile-limit warnings (each one is code that runs eagerly from then
    on); a function compiled for three dtypes with a limit of 1 falls back once (then it runs eagerly for good)."""
    import torch._dynamo

    torch_backend.RecompileLimitWatch.install()
    before = torch_backend.RecompileLimitWatch.fallbacks()

    def double(x):
        return x * 2

    compiled = torch.compile(double, backend="eager")
    with torch._dynamo.config.patch(recompile_limit=1):
        for dtype in (torch.float32, torch.float64, torch.int64):
            compiled(torch.ones(3, dtype=dtype))
    torch._dynamo.reset()
    assert torch_backend.RecompileLimitWatch.fallbacks() - before == 1


def test_one_dynamo_cache_entry_per_model_shape():
    """The reset rule (half of recompile_limit in shapes) assumes that a model shape costs dynamo one cache entry
    on Transformer.forward: measured here with dynamo's eager backend (the entries do not depend on the backend)."""
    import torch._dynamo
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    from trainers.model import Transformer
    from trainers.shapes import ModelConfig

    torch._dynamo.reset()
    for n_shapes, (d_model, n_layers) in enumerate(((64, 1), (128, 1), (128, 2)), start=1):
        model = Transformer(ModelConfig(d_model=d_model, n_layers=n_layers, n_heads=2, vocab_size=260, seq_len=16))
        compiled = torch.compile(model, backend="eager")
        x = torch.randint(0, 260, (2, 16))
        compiled(x, x).backward()
        assert len(_debug_get_cache_entry_list(Transformer.forward.__code__)) <= n_shapes
    torch._dynamo.reset()


def test_a_run_reports_how_often_it_read_each_domain_and_warns_past_four_epochs(tmp_path, tiny_settings):
    """Small real streams repeat: the result says how many times over each domain's training text the run read
    (rows per step over the stream's length), the ledger keeps it, and a run past REPEATED_DATA_EPOCHS warns."""
    from scheduler.ledger import ledger_row
    from trainers.data import load_domain, rows_per_domain

    settings = {**tiny_settings, "domain_tokens": 1_000}
    backend = TorchBackend(**settings)
    spec = RunSpec(n_params=70_000, n_tokens=16_384, mix=MIX, hparams={"batch_tokens": 512})
    with pytest.warns(RuntimeWarning, match=r"reads .*times over.*Muennighoff"):
        result = backend.run(spec, tmp_path)
    rows = rows_per_domain(MIX, 512 // tiny_settings["seq_len"])
    for name, epochs in result.data_epochs.items():
        stream = load_domain(name, backend.data, backend.tokenizer, tiny_settings["seq_len"]).train
        assert epochs == pytest.approx(16_384 * rows[name] / sum(rows.values()) / len(stream), rel=1e-3)
    assert set(result.data_epochs) == set(MIX) and max(result.data_epochs.values()) > REPEATED_DATA_EPOCHS
    assert set(result.repeated_domains) == {d for d, e in result.data_epochs.items() if e > REPEATED_DATA_EPOCHS}
    row = ledger_row(spec, result)
    assert {f"epochs/{d}" for d in MIX} <= set(row) and row["epochs/code"] == result.data_epochs["code"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the default streams: far from four epochs, no warning
        quiet = TorchBackend(**tiny_settings).run(TINY, tmp_path / "quiet")
    assert 0 < max(quiet.data_epochs.values()) < 1


def test_a_run_limited_to_fewer_unique_tokens_reads_them_repeatedly(tmp_path, tiny_settings):
    """RunSpec.unique_tokens: each domain keeps its first U x mix tokens (trainers/data.py, limit_unique), so the
    run reads about D / U epochs of every domain, and the ledger keeps U for the fits (n_unique_tokens)."""
    import dataclasses

    from scheduler.ledger import ledger_row

    spec = dataclasses.replace(TINY, run_id="", unique_tokens=1_500)
    with pytest.warns(RuntimeWarning, match="times over"):
        result = TorchBackend(**tiny_settings).run(spec, tmp_path)
    assert result.status == "ok" and spec.run_id != TINY.run_id
    for name, epochs in result.data_epochs.items():  # rows per domain round the mix: about D / U = 4
        assert 2.5 < epochs < 6.0, (name, epochs)
    assert ledger_row(spec, result)["n_unique_tokens"] == 1_500
