"""The GPU benchmark scripts, run where CI runs them (no GPU): a bad flag or a missing GPU is one line on
stderr with exit status 2, before any work, never a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _run(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
@pytest.mark.parametrize("script", ["bench_kernels", "bench_trainer", "profile_trainer",
                                    "tune_linear_cross_entropy", "bench_compile_shapes", "family_parity"])
def test_gpu_benchmark_without_gpu_exits_2_with_one_line(script):
    proc = _run(f"benchmarks/{script}.py")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "needs CUDA" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv, expected", [
    (["benchmarks/tune_linear_cross_entropy.py", "--hidden", "12a"], "--hidden: expected comma-separated integers"),
    (["benchmarks/bench_trainer.py", "--sizes", "12x"], "expected DxL such as 256x4"),
    (["benchmarks/bench_compile_shapes.py", "--modes", "fast"], "--modes: expected compile and/or eager"),
    (["benchmarks/family_parity.py", "--tokens-per-param", "20"], "--tokens-per-param: expected two or more"),
    (["benchmarks/eval_per_example.py", "--points", "1e6@1e14", "--out", "/tmp/x", "--hparams", "[1]"],
     "--hparams: expected a JSON object"),
    (["benchmarks/eval_per_example.py", "--points", "1e6@1e14", "--out", "/tmp/x", "--hparams",
      '{"lr_multiplier": "half"}'], "lr_multiplier must be a positive number"),
    (["benchmarks/bench_packing.py", "configs/skills-h200.yaml", "--runs", "1e6"], "--runs: expected N@C items"),
    (["benchmarks/bench_packing.py", "configs/skills-h200.yaml", "--runs", "1e6@1e14", "--layouts", "6x0.5"],
     "need A >= 1, 0 < G <= 1 and A x G <= 1 GPU"),
])
def test_benchmark_bad_flag_exits_2_with_one_line(argv, expected):
    proc = _run(*argv)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr and "Traceback" not in proc.stderr


def test_per_example_runs_with_overrides_are_named_by_their_own_run_id(tmp_path):
    """eval_per_example's --hparams make another run: its .npz and spec carry that run's id, not the rule's."""
    from tests.conftest import benchmark_module

    per_example = benchmark_module("eval_per_example")
    tiny = ["--device", "cpu", "--seq-len", "32", "--eval-samples", "16", "--set", "knowledge_entities=50",
            "--set", "domain_tokens=20000", "--set", "heldout_tokens=4000", "--set", "heldout_rows=4",
            "--mix", "knowledge=0.5,code=0.5"]
    for name, hparams in (("rule", "{}"), ("small", '{"init_scheme": "small-init"}')):
        assert per_example.main(["--points", "7e4@2e10", "--seeds", "0", "--out", str(tmp_path / name),
                                 "--hparams", hparams, *tiny]) == 0
    (rule,), (small,) = (sorted(p.stem for p in (tmp_path / n).glob("*.npz")) for n in ("rule", "small"))
    assert rule != small  # dataclasses.replace on the rule's spec kept the rule's run_id for both


def test_seed_attribution_redraw_takes_only_the_group_from_the_seed():
    """redraw_group("embed", seed 3): the embedding is seed 3's draw, every other tensor seed 0's; "all": seed 3's."""
    from tests.conftest import benchmark_module
    from trainers.model import Transformer
    from trainers.shapes import ModelConfig

    attribution = benchmark_module("seed_attribution")
    model = Transformer(ModelConfig(vocab_size=64, d_model=16, n_layers=2, n_heads=2, ffn_hidden=32, seq_len=8,
                                    qk_norm=True))

    def draw(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        model.init_weights(0.02, "small-init")
        return {name: p.clone() for name, p in model.named_parameters()}

    seed0, seed3 = draw(0), draw(3)
    assert not torch.equal(seed0["embed.weight"], seed3["embed.weight"])
    attribution.redraw_group(model, "embed", 3, 0, 0.02, "small-init")
    for name, p in model.named_parameters():
        assert torch.equal(p, (seed3 if name == "embed.weight" else seed0)[name]), name
    attribution.redraw_group(model, "all", 3, 0, 0.02, "small-init")
    assert all(torch.equal(p, seed3[name]) for name, p in model.named_parameters())
    assert set(attribution.group_parameters(model, "head")) == {"head.weight", "final_norm"}
    assert len(attribution.group_parameters(model, "blocks")) == 16  # 2 blocks x (4 gains + 4 projections)


def test_seed_attribution_backend_starts_a_fresh_run_from_the_redrawn_model(tmp_path):
    """GroupDrawBackend("head")._resume: the head is seed 3's draw of a plain run, the embedding seed 0's."""
    from tests.conftest import benchmark_module
    from trainers.spec import RunSpec
    from trainers.torch_backend import TorchBackend

    attribution = benchmark_module("seed_attribution")
    settings = {"device": "cpu", "seq_len": 32, "eval_samples": 16, "checkpoint_every": 0}
    mix = {"knowledge": 0.5, "code": 0.5}

    def resumed(backend, seed: int, name: str) -> dict[str, torch.Tensor]:
        plan = backend._plan_run(RunSpec(n_params=70_000, n_tokens=200_000, mix=mix, seed=seed))
        model = backend._resume(plan, tmp_path / name).model
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    plain = TorchBackend(**settings)
    seed0, seed3 = resumed(plain, 0, "plain0"), resumed(plain, 3, "plain3")
    head = resumed(attribution.GroupDrawBackend("head", **settings), 3, "head3")
    assert head.keys() == seed3.keys()
    for name, p in head.items():
        assert torch.equal(p, (seed3 if name in ("head.weight", "final_norm") else seed0)[name]), name
    assert not torch.equal(head["head.weight"], seed0["head.weight"])


def test_seed_attribution_bad_group_exits_2_with_one_line():
    proc = _run("benchmarks/seed_attribution.py", "--groups", "all,tail", "--rows", "/tmp/never-written.jsonl")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "--groups: expected" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("env, args, expected", [
    ({}, ["0"], "TIME_LIMIT_S: expected a positive whole number"),
    ({"LAYOUT": "6by0.16"}, [], "LAYOUT: expected AxG"),
    ({"MPS": "yes"}, [], "MPS: expected 0 or 1"),
    ({"CONFIG": "configs/missing.yaml"}, [], "CONFIG: configs/missing.yaml: no such file"),
])
def test_gpu_study_sitting_bad_argument_exits_2_with_one_line(env, args, expected, tmp_path):
    proc = subprocess.run(["bash", "benchmarks/run_gpu_study.sh", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "OUT": str(tmp_path), **env}, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr
