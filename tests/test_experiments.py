"""The scripts in experiments/, without a GPU: the measurement runner merges, resumes and respects its deadline
(experiments/_trainer_runs.py, driven with a stand-in backend), the summaries of seed noise, the LR sweep and the
isoFLOP ladders recover what synthetic rows were built with, and a bad flag or a missing GPU is one line on
stderr with exit status 2."""

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "experiments"), str(ROOT / "benchmarks")]  # the scripts' siblings, and _provenance

import _trainer_runs  # noqa: E402
import isoflop_ladder  # noqa: E402
import lr_sweep  # noqa: E402
import seed_noise  # noqa: E402
from _trainer_runs import PlannedRun, execute, read_rows  # noqa: E402

from skillscale.errors import InputError  # noqa: E402
from tests.conftest import run_script  # noqa: E402
from trainers.hparams import resolve  # noqa: E402
from trainers.shapes import shape_for  # noqa: E402
from trainers.spec import RunResult  # noqa: E402

MIX = {"code": 0.5, "knowledge": 0.5}


@dataclass
class _Settings:
    seq_len: int = 64
    compile: bool = False


@dataclass
class _Data:
    extra: dict = field(default_factory=dict)  # fields a later trainer version adds

    def model_dump(self):
        return {"world": "test", **self.extra}


@dataclass
class _Tokenizer:
    name: str = "bytes"
    vocab_size: int = 258


@dataclass
class FakeBackend:
    """TorchBackend's surface that the runner uses; run() records what it was asked and returns a loss."""

    trainer: _Settings = field(default_factory=_Settings)
    data: _Data = field(default_factory=_Data)
    tokenizer: _Tokenizer = field(default_factory=_Tokenizer)
    device: torch.device = torch.device("cpu")
    use_triton: bool = False
    trained: list = field(default_factory=list)

    def plan(self, spec):
        cfg = shape_for(spec.n_params, self.tokenizer.vocab_size, self.trainer.seq_len)
        from trainers.shapes import count_params

        return cfg, resolve(count_params(cfg), spec.n_tokens, self.trainer.seq_len, spec.hparams), spec.mix

    def run(self, spec, run_dir):
        self.trained.append(spec)
        cfg, hp, _ = self.plan(spec)
        loss = 1.0 + 0.01 * spec.seed + abs(math.log(hp.lr))  # any deterministic number
        return RunResult(run_id=spec.run_id, status="ok", n_params=1, n_tokens=spec.n_tokens, flops=1.0,
                         losses={"code": loss, "knowledge": 2 * loss}, domain_losses={"code": loss / 2},
                         tokens_per_s=1e6)


def test_runner_trains_shared_runs_once_and_resumes_from_recorded_rows(tmp_path):
    """A run two measurements want is trained once; a rerun trains only what the recorded rows lack."""
    backend = FakeBackend()
    rows_path = tmp_path / "rows.jsonl"
    ladder = [PlannedRun("isoflop", 1e5, 100_000, 6e10), PlannedRun("isoflop", 2e5, 50_000, 6e10)]
    noise = [PlannedRun("seed_noise", 1e5, 100_000, 6e10, seed=s) for s in (0, 1)]
    rows = execute(ladder + noise, backend, MIX, rows_out=rows_path, runs_dir=tmp_path)
    assert len(backend.trained) == 3  # the seed-0 run at 1e5 is the ladder's and the seed-noise point's
    shared = [r for r in rows if r["seed"] == 0 and r["target_n"] == 1e5]
    assert len(shared) == 1 and shared[0]["experiments"] == ["isoflop", "seed_noise"]
    assert len(read_rows([rows_path])) == 3  # every run was appended as it finished
    again = FakeBackend(data=_Data({"new_field": 1}))  # a data field added since: the rows still count
    lr = [PlannedRun("lr_sweep", 1e5, 100_000, 6e10, lr_multiplier=m) for m in (0.5, 1.0, 2.0)]
    execute(ladder + noise + lr, again, MIX, rows_out=rows_path, recorded=read_rows([rows_path]),
            runs_dir=tmp_path)
    assert sorted(s.hparams.get("lr", 0) > 0 for s in again.trained) == [True, True]  # only the two new LRs
    rule = read_rows([rows_path])[0]["lr_rule"]
    assert sorted(s.hparams["lr"] / rule for s in again.trained) == pytest.approx([0.5, 2.0])


def test_runner_retrains_a_run_recorded_under_an_older_default_lr_rule(tmp_path, monkeypatch):
    """A spec without hparams keeps its run_id when the trainer's default LR rule changes: the recorded row
    of the old rule is not the run asked for, so it is trained again, and the summaries keep the two apart."""
    rows_path = tmp_path / "rows.jsonl"
    noise = [PlannedRun("seed_noise", 1e5, 100_000, 6e10, seed=s) for s in (0, 1)]
    execute(noise, FakeBackend(), MIX, rows_out=rows_path, runs_dir=tmp_path)
    old = read_rows([rows_path])
    assert all(row["hparams"]["lr"] == row["lr"] for row in old)
    import trainers.hparams

    monkeypatch.setattr(trainers.hparams, "LR_RULE_SCALE", trainers.hparams.LR_RULE_SCALE / 2)
    backend = FakeBackend()
    execute(noise, backend, MIX, rows_out=rows_path, recorded=old, runs_dir=tmp_path)
    assert len(backend.trained) == 2  # both seeds again, under the new rule
    execute(noise, backend, MIX, rows_out=rows_path, recorded=read_rows([rows_path]), runs_dir=tmp_path)
    assert len(backend.trained) == 2  # and now they are recorded
    legacy = [{**row, "hparams": {}} for row in old]  # rows from before the field: decayed to 10%
    assert not _trainer_runs.same_optimisation(legacy[0], FakeBackend().plan(noise[0].spec(MIX, 1.0))[1])
    summary = seed_noise.summarize(read_rows([rows_path]))
    assert sorted({(s["lr"], s["n_seeds"]) for s in summary})[0][1] == 2
    assert len({s["lr"] for s in summary}) == 2  # one group per LR rule, never mixed


def test_ladder_points_give_each_budget_its_own_sizes_at_that_budget():
    """--ladder-points: one run per N@C pair, each priced at its own budget (C = 6 N D to the shape's N)."""
    backend = FakeBackend()
    runs = isoflop_ladder.plan_points(backend, [(1e5, 6e10), (2e5, 6e10), (2e5, 2.4e11)], MIX)
    assert [(r.target_n, r.budget) for r in runs] == [(1e5, 6e10), (2e5, 6e10), (2e5, 2.4e11)]
    assert runs[2].n_tokens == pytest.approx(4 * runs[1].n_tokens, rel=0.01)
    assert {r.experiment for r in runs} == {"isoflop"}


def test_runner_skips_runs_past_the_deadline(tmp_path, monkeypatch):
    monkeypatch.setattr(_trainer_runs, "PRIOR_TOKENS_PER_S_AT_1M", 1e3)  # every run "takes" ~100 s
    backend = FakeBackend()
    execute([PlannedRun("isoflop", 1e5, 100_000, 6e10)], backend, MIX, rows_out=tmp_path / "r.jsonl",
            runs_dir=tmp_path, deadline_s=10)
    assert backend.trained == [] and not (tmp_path / "r.jsonl").exists()


def _row(n_params, n_tokens, seed, losses, *, lr_multiplier=1.0, budget=None, world="test"):
    run_id = f"{n_params}-{n_tokens}-{seed}-{lr_multiplier}-{world}"
    return {"key": run_id, "run_id": run_id, "status": "ok",
            "n_params": n_params, "n_tokens": n_tokens, "seed": seed, "lr_multiplier": lr_multiplier,
            "lr": 1e-3 * lr_multiplier, "lr_rule": 1e-3, "budget": budget or 6.0 * n_params * n_tokens,
            "losses": dict(losses), "domain_losses": {}, "shape": "64x1",
            "settings": {"seq_len": 64, "tokenizer": "bytes", "data": {"world": world}},
            "gpu": "test", "torch": "x", "triton": None, "commit": "abc", "date": "2026-12-01"}


def test_seed_noise_summary_gives_sample_std_and_the_one_percent_target():
    rows = [_row(1000, 5000, s, {"code": c, "knowledge": k})
            for s, c, k in [(0, 1.00, 0.50), (1, 1.005, 0.60), (2, 0.995, 0.40)]]
    rows.append(_row(1000, 5000, 0, {"code": 9.0, "knowledge": 9.0}, lr_multiplier=2.0))  # an LR-sweep run
    rows.insert(0, _row(1000, 5000, 3, {"code": 9.0, "knowledge": 9.0}, world="older"))  # other data
    summary = {s["skill"]: s for s in seed_noise.summarize(rows)}
    assert summary["code"]["n_seeds"] == 3 and summary["code"]["mean"] == pytest.approx(1.0)
    assert summary["code"]["std"] == pytest.approx(0.005) and summary["code"]["target_met"]
    assert summary["knowledge"]["std"] == pytest.approx(0.1) and not summary["knowledge"]["target_met"]
    assert summary["knowledge"]["robust_rel_std"] == pytest.approx(1.4826 * 0.1 / 0.5, rel=1e-4)


def test_the_robust_spread_tells_one_outlying_seed_from_an_even_spread():
    outlier = [1.00, 1.001, 0.999, 1.0005, 0.9995, 1.05]  # five seeds within 0.1%, one 5% above
    even = [0.97, 0.98, 0.99, 1.01, 1.02, 1.03]
    rows = [_row(1000, 5000, s, {"code": c, "knowledge": k})
            for s, (c, k) in enumerate(zip(outlier, even, strict=True))]
    summary = {s["skill"]: s for s in seed_noise.summarize(rows)}
    assert summary["code"]["rel_std"] > 0.015 and summary["code"]["robust_rel_std"] < 0.002
    assert summary["knowledge"]["robust_rel_std"] == pytest.approx(summary["knowledge"]["rel_std"], rel=0.4)
    assert {"n_params", "n_tokens", "skill", "mean", "std", "n_seeds", "gpu", "commit", "date"} <= set(
        summary["code"])


def test_analyses_never_average_runs_of_an_older_lr_rule_into_a_point():
    """Rows of one (N, D) under two LR rules (the old rows carry no hparams: they decayed to 10%): the ladder point
    averages only the replicates of its own rule, and the seed-noise summary reports each rule on its own."""
    old = [_row(1000, 5000, s, {"code": 1.0 + s / 100}) for s in (0, 1)]
    new = [{**_row(1000, 5000, s, {"code": 2.0 + s / 100}), "lr": 5e-4,
            "hparams": {"lr": 5e-4, "min_lr_ratio": 0.0}} for s in (0, 1, 2)]
    for row in new:
        row["run_id"] += "-new"
    points = isoflop_ladder.ladder_points(old + new)
    assert len(points) == 1 and points[0][2] == 3 and points[0][1]["code"] == pytest.approx(2.01)
    by_rule = {s["lr"]: s for s in seed_noise.summarize(old + new)}
    assert by_rule[1e-3]["n_seeds"] == 2 and by_rule[5e-4]["n_seeds"] == 3
    assert by_rule[1e-3]["min_lr_ratio"] == 0.1 and by_rule[5e-4]["min_lr_ratio"] == 0.0


def test_a_hyperparameter_variant_is_its_own_seed_group_and_never_a_ladder_or_sweep_point():
    """A seed-noise variant (another warmup, same LR) is summarised apart from the rules' runs of that point,
    and the ladder and the LR sweep read only the rules' runs."""
    base = [_row(1000, 5000, s, {"code": 1.0 + s / 100}) for s in (0, 1, 2)]
    variant = [{**_row(1000, 5000, s, {"code": 3.0 + s / 1000}), "overrides": {"warmup_steps": 40},
                "hparams": {"lr": 1e-3, "warmup_steps": 40}} for s in (0, 1, 2)]
    for row in variant:
        row["run_id"] += "-warmup40"
    init = [{**_row(1000, 5000, s, {"code": 5.0 + s / 1000}), "overrides": {"init_std": 0.01}} for s in (0, 1, 2)]
    for row in init:  # init_std is not among the recorded hparams: the overrides alone tell these runs apart
        row["run_id"] += "-init"
    groups = seed_noise.summarize(base + variant + init)
    assert sorted((g["mean"], g["n_seeds"]) for g in groups) == [
        (pytest.approx(1.01), 3), (pytest.approx(3.001), 3), (pytest.approx(5.001), 3)]
    assert [g.get("overrides") for g in groups if g["mean"] > 2] == [{"warmup_steps": 40}, {"init_std": 0.01}]
    points = isoflop_ladder.ladder_points(base + variant)
    assert len(points) == 1 and points[0][1]["code"] == pytest.approx(1.01) and points[0][2] == 3
    sweep = [_row(1000, 5000, 0, {"code": 1.2}, lr_multiplier=m) for m in (0.5, 2.0)]
    [code] = lr_sweep.summarize(base + variant + sweep)
    assert code["multipliers"] == [0.5, 1.0, 2.0] and code["losses"][1] == pytest.approx(1.0)


def test_an_lr_given_as_an_override_and_as_a_sweep_multiplier_is_one_seed_group_and_one_sweep_point():
    """`--seed-variant N@C:lr=X` rows join the sweep run that trained at X (seed 0, no overrides) in one seed
    group, and count as LR-sweep points at X over the rule's LR; a variant that changes more than the LR stays
    out of the sweep."""
    rules = [_row(1000, 5000, s, {"code": 1.0 + s / 100}) for s in (0, 1, 2)]
    sweep = _row(1000, 5000, 0, {"code": 2.0}, lr_multiplier=2.0)  # lr 2e-3: the sweep's x2, seed 0
    as_override = []
    for s, lr in ((1, 2e-3), (2, 2e-3), (0, 5e-4), (1, 5e-4)):
        row = {**_row(1000, 5000, s, {"code": 2.0 + s / 100 if lr > 1e-3 else 3.0 + s / 100}),
               "lr": lr, "overrides": {"lr": lr}, "hparams": {"lr": lr}}
        row["run_id"] = row["key"] = f"{row['run_id']}-lr{lr}"
        as_override.append(row)
    other = {**_row(1000, 5000, 0, {"code": 7.0}), "lr": 5e-4, "overrides": {"lr": 5e-4, "warmup_steps": 3},
             "hparams": {"lr": 5e-4, "warmup_steps": 3}}
    other["run_id"] = other["key"] = "other"
    rows = rules + [sweep] + as_override + [other]
    groups = {g["lr_multiplier"]: g for g in seed_noise.summarize(rows)}
    assert sorted(groups) == [0.5, 1.0, 2.0]
    assert groups[2.0]["seeds"] == [0, 1, 2] and groups[2.0]["mean"] == pytest.approx(2.01)
    assert groups[0.5]["seeds"] == [0, 1] and groups[1.0]["mean"] == pytest.approx(1.01)
    [code] = lr_sweep.summarize(rows)
    assert code["multipliers"] == [0.5, 1.0, 2.0] and code["losses"] == pytest.approx([3.0, 1.0, 2.0])
    assert lr_sweep.sweep_multiplier(other) is None


def test_seed_variant_reads_a_point_and_hparams_overrides_checked_before_any_run():
    assert seed_noise.parse_variant("3.16e6@1e15:warmup_steps=432,batch_tokens=47104.0,lr=1e-3") == (
        (3.16e6, 1e15), {"warmup_steps": 432, "batch_tokens": 47104, "lr": 1e-3})
    assert seed_noise.parse_variant("1e6@1e15:schedule=wsd")[1] == {"schedule": "wsd"}
    for bad in ("3.16e6@1e15", "3.16e6@1e15:warmup=4", "3.16e6@1e15:", "1e6@1e15:warmup_steps=abc",
                "1e6@1e15:warmup_steps=nan", "1e6@1e15:schedule=linear", "1e6@1e15,2e6@1e15:warmup_steps=4",
                "1e6@1e15:warmup_steps=1,warmup_steps=2"):
        with pytest.raises(InputError, match="--seed-variant"):
            seed_noise.parse_variant(bad)


def test_a_variant_run_records_its_overrides_under_its_own_run_id_and_is_not_trained_twice(tmp_path):
    rows_path = tmp_path / "rows.jsonl"
    backend = FakeBackend()
    base = seed_noise.plan(backend, [(1e5, 6e10)], [0], MIX)
    variant = seed_noise.plan_variants(backend, ["1e5@6e10:warmup_steps=5"], [0], MIX)
    rows = execute(base + variant, backend, MIX, rows_out=rows_path, runs_dir=tmp_path)
    assert len({r["run_id"] for r in rows}) == 2 and [r.get("overrides") for r in rows] == [None, {"warmup_steps": 5}]
    again = FakeBackend()
    execute(base + seed_noise.plan_variants(again, ["1e5@6e10:warmup_steps=5.0"], [0], MIX), again, MIX,
            rows_out=rows_path, recorded=read_rows([rows_path]), runs_dir=tmp_path)
    assert again.trained == []  # 5.0 is the same run as 5


def test_lr_sweep_finds_the_vertex_and_flags_a_rule_far_from_the_best():
    multipliers = [0.25, 0.5, 1.0, 2.0, 4.0]
    near = [1 + (math.log2(m) - math.log2(1.4)) ** 2 for m in multipliers]  # best LR 1.4x the rule's
    far = [1 + (math.log2(m) - 3) ** 2 for m in multipliers]  # best at 8x: the grid's edge
    rows = [_row(1000, 5000, 0, {"code": a, "knowledge": b}, lr_multiplier=m)
            for m, a, b in zip(multipliers, near, far, strict=True)]
    summary = {s["skill"]: s for s in lr_sweep.summarize(rows)}
    assert summary["code"]["vertex_multiplier"] == pytest.approx(1.4) and summary["code"]["rule_within_2x"]
    assert summary["knowledge"]["best_multiplier"] == 4.0 and summary["knowledge"]["vertex_multiplier"] is None
    assert not summary["knowledge"]["rule_within_2x"]


def test_isoflop_analysis_recovers_the_optimum_exponent_of_a_known_law():
    # L = E + A N^-alpha + B D^-beta; with C = 6ND the optimum is N* ~ C^(beta / (alpha + beta))
    # (alpha, beta, A, B) per skill, A/B chosen so that N* lies inside the sizes at every budget
    laws = {"knowledge": (0.3, 0.3, 264.0, 400.0), "code": (0.45, 0.15, 1700.0, 100.0)}
    rows = []
    for c in (1e14, 4e14, 1.6e15):
        for n in np.geomspace(2e5, 4e7, 7):
            d = c / (6 * n)
            losses = {s: 1.0 + big_a * n ** -a + big_b * d ** -b for s, (a, b, big_a, big_b) in laws.items()}
            rows.append(_row(int(n), int(d), 0, losses, budget=c))
    n, d = rows[3]["n_params"], rows[3]["n_tokens"]  # seed replicates at one point: 0.5% seed noise
    rows += [_row(n, d, s, {k: v * (1 + z) for k, v in rows[3]["losses"].items()}, budget=1e14)
             for s, z in ((1, 0.005), (2, -0.005))]
    assert isoflop_ladder.analyze(rows, n_boot=20)["n_in_fit"] < 21  # by default points with D/N < 1 are not fitted
    analysis = isoflop_ladder.analyze(rows, n_boot=200, min_tokens_per_param=0)  # the known law has no such wall
    for skill, (a, b, _, _) in laws.items():
        entry = analysis["losses"][skill]
        assert entry["a"] == pytest.approx(b / (a + b), abs=0.05)
        assert all(curve["interior_minimum"] for curve in entry["curves"])
        lo, hi = entry["a_ci95"]
        assert lo <= entry["a"] <= hi
        assert entry["seed_rel_std"] == pytest.approx(0.005, rel=0.01)
        lo, hi = entry["a_ci95_seed_noise"]
        assert lo < entry["a"] < hi and hi - lo < 0.5
    ratio = analysis["ratio"]["at"][-1]
    assert ratio["ratio"] > 1  # knowledge's N* above code's for these exponents
    out = isoflop_ladder.analysis_rows(rows, analysis)
    assert [r["kind"] for r in out].count("run") == 21 and {"fit", "ratio"} <= {r["kind"] for r in out}
    json.dumps(out)  # plain data


@pytest.mark.parametrize("argv, expected", [
    (["experiments/seed_noise.py", "--rows", "x.jsonl", "--points", "5e5"], "--points: expected N@C pairs"),
    (["experiments/lr_sweep.py", "--rows", "x.jsonl", "--multipliers", "0.5,2"], "--multipliers: must include 1"),
    (["experiments/gpu_sitting.py", "--rows", "x.jsonl", "--experiments", "ladders"], "--experiments: expected"),
    (["experiments/gpu_sitting.py", "--rows", "x.jsonl", "--experiments", "isoflop", "--ladder-points", "1e6"],
     "--ladder-points: expected N@C pairs"),
    (["experiments/gpu_sitting.py", "--rows", "x.jsonl", "--experiments", "seed_noise",
      "--seed-variant", "1e6@1e15:warmup_steps=abc"], "--seed-variant: warmup_steps: expected a number"),
    (["experiments/tune_linear_cross_entropy.py", "--hidden", "12a"], "--hidden: expected comma-separated integers"),
    (["experiments/eval_per_example.py", "--points", "1e6@1e14", "--out", "/tmp/x", "--hparams", "[1]"],
     "--hparams: expected a JSON object"),
    (["experiments/eval_per_example.py", "--points", "1e6@1e14", "--out", "/tmp/x", "--hparams",
      '{"lr_multiplier": "half"}'], "lr_multiplier must be a positive number"),
])
def test_experiment_bad_flag_exits_2_with_one_line(argv, expected, tmp_path):
    proc = run_script(argv[0], *argv[1:], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr and "Traceback" not in proc.stderr


def test_a_row_summarises_its_training_curve_and_a_lasting_spike_shows_as_a_rise(tmp_path):
    from trainers.evaluate import write_curve

    steps = np.arange(1, 401)
    smooth = 3.0 * steps ** -0.3
    spiked = smooth.copy()
    spiked[200:260] *= 1.5  # a spike that takes 60 steps to recover from
    for name, losses in (("smooth", smooth), ("spiked", spiked)):
        rows = [{"step": 0, "tokens": 0, "skill/code": 9.0}]  # an evaluation row carries no train_loss
        rows += [{"step": int(s), "tokens": int(s) * 10, "lr": 1e-3, "train_loss": float(v)}
                 for s, v in zip(steps, losses, strict=True)]
        write_curve(rows, tmp_path / f"{name}.parquet")
    smooth_row = _trainer_runs.curve_summary(tmp_path / "smooth.parquet")
    spiked_row = _trainer_runs.curve_summary(tmp_path / "spiked.parquet")
    assert len(smooth_row["train_curve"]) == _trainer_runs.CURVE_WINDOWS
    assert smooth_row["train_curve"][-1][0] == 400 and smooth_row["worst_rise"] < 0
    assert spiked_row["worst_rise"] > 0.3
    assert smooth_row["final_train_loss"] == pytest.approx(smooth[-20:].mean(), rel=1e-4)
    assert _trainer_runs.curve_summary(tmp_path / "missing.parquet") == {}


def test_rows_trained_with_and_without_qk_norm_are_never_compatible():
    old = {"seq_len": 256, "tokenizer": "bytes", "data": {}}  # recorded before the setting: trained without
    assert _trainer_runs.compatible(old, {**old, "qk_norm": False})
    assert not _trainer_runs.compatible(old, {**old, "qk_norm": True})
    row = {"lr": 1e-3, "n_steps": 10, "hparams": {"lr": 1e-3}}
    assert _trainer_runs.recorded_optimisation(row)["init_scheme"] == "gpt2"


def test_an_unmeasured_shape_of_seed_replicas_is_estimated_that_many_times_slower():
    plain = _trainer_runs.Throughput()
    fused = _trainer_runs.Throughput(models_per_run=6)
    tokens = 10**8
    overhead = _trainer_runs.EVAL_ALLOWANCE_S
    assert fused.estimate_s("192x4", 1_800_000, tokens, False) - overhead == pytest.approx(
        6 * (plain.estimate_s("192x4", 1_800_000, tokens, False) - overhead))
    fused.tokens_per_s["192x4"] = 1.6e6  # once measured, the shape's own rate (per run) is used
    assert fused.estimate_s("192x4", 1_800_000, tokens, False) == pytest.approx(tokens / 1.6e6 + overhead)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
@pytest.mark.parametrize("script", ["profile_trainer", "tune_linear_cross_entropy"])
def test_gpu_experiment_without_gpu_exits_2_with_one_line(script):
    proc = run_script(f"experiments/{script}.py")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "needs CUDA" in proc.stderr and "Traceback" not in proc.stderr


def test_per_example_runs_with_overrides_are_named_by_their_own_run_id(tmp_path):
    """eval_per_example's --hparams make another run: its .npz and spec carry that run's id, not the rule's."""
    from tests.conftest import experiment_module

    per_example = experiment_module("eval_per_example")
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
    from tests.conftest import experiment_module
    from trainers.model import Transformer
    from trainers.shapes import ModelConfig

    attribution = experiment_module("seed_attribution")
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
    from tests.conftest import experiment_module
    from trainers.spec import RunSpec
    from trainers.torch_backend import TorchBackend

    attribution = experiment_module("seed_attribution")
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
    proc = run_script("experiments/seed_attribution.py", "--groups", "all,tail", "--rows", "/tmp/never-written.jsonl")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "--groups: expected" in proc.stderr and "Traceback" not in proc.stderr
