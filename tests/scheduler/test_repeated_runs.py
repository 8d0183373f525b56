"""Runs that repeat their data: bought for targets with `unique_tokens` from backends that can repeat data.

Without them a target whose D* reads its unique tokens many times has no law with a repetition term to read it
(the study reports it unresolved); with them `data_constrained` is fitted and the target gets an interval."""

import hashlib
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from fitting.truths import RepeatedDataLaw
from scheduler import Study, parse_study_config
from scheduler.cli import main
from scheduler.proposer import Proposer
from scheduler.recovery import trial_params
from scheduler.report import plot_isoflop_runs
from trainers.data import Domain, MixtureSampler, limit_unique
from trainers.simulated import CHINCHILLA, SimulatedBackend
from trainers.spec import RunSpec

UNIQUE = 2e9  # the target's unique tokens: its D* (~1.8e10 at 1e20 FLOPs) reads them ~9-14 times


def _repeating(small_study: dict, **proposer) -> dict:
    small_study.update(skills=["all"], domains=["all"], mix={"space": "fixed", "fixed": {"all": 1.0}},
                       targets=[{"name": "all", "weights": {"all": 1.0}, "flops": 1e20, "unique_tokens": UNIQUE}],
                       tolerance=0.3, max_runs=40, law="auto")
    small_study["backend"] = {"name": "simulated", "truth": "chinchilla", "noise": 0.005}
    small_study["proposer"] = {"n_boot": 40, "inner_trials": 0, "n_candidates": 128, "overhead_flops": 1e17,
                               "seed_runs": 12, **proposer}
    return small_study


def _drive(study: Study, backend, tmp_path, max_runs: int | None = None) -> str | None:
    queue = list(study.reconcile())
    while (stop := study.stop_reason()) is None and (max_runs is None or len(study.ledger) < max_runs):
        queue += study.propose(2 - len(queue))
        spec = queue.pop(0)
        study.record(spec, backend.run(spec, tmp_path / spec.run_id))
    return stop


def test_a_run_on_all_its_data_keeps_its_id():
    """unique_tokens enters a run's id only when set: runs of studies from before keep theirs (and checkpoints)."""
    spec = RunSpec(n_params=2_000_000, n_tokens=40_000_000, mix={"all": 1.0}, seed=3)
    key = json.dumps({"n_params": 2_000_000, "n_tokens": 40_000_000, "mix": {"all": 1.0}, "seed": 3, "hparams": {}},
                     sort_keys=True)
    assert spec.run_id == hashlib.sha256(key.encode()).hexdigest()[:12]
    repeated = RunSpec(n_params=2_000_000, n_tokens=40_000_000, mix={"all": 1.0}, seed=3, unique_tokens=10_000_000)
    assert repeated.run_id != spec.run_id and repeated.epochs == 4.0 and spec.epochs == 1.0
    with pytest.raises(ValueError, match="unique_tokens"):
        RunSpec(n_params=2_000_000, n_tokens=40_000_000, mix={"all": 1.0}, unique_tokens=0)


def test_runs_repeat_data_only_for_a_target_with_unique_tokens_and_a_backend_that_can(small_study):
    cfg = parse_study_config(_repeating(small_study))
    expected = 4.0 * math.sqrt(20.0 * 1e20 / 6.0) / UNIQUE  # 4x the epochs at 20 tokens per parameter
    assert cfg.max_run_epochs == pytest.approx(expected)
    assert parse_study_config(_repeating(small_study, max_epochs=8)).max_run_epochs == 8.0
    plain = _repeating(small_study)
    del plain["targets"][0]["unique_tokens"]
    assert parse_study_config(plain).max_run_epochs == 1.0
    command = _repeating(small_study)
    command["backend"] = {"name": "command", "command": ["true"]}  # a program that did not say it can
    assert parse_study_config(command).max_run_epochs == 1.0
    command["backend"]["repeats"] = True
    assert parse_study_config(command).max_run_epochs > 1.0
    one_law = _repeating(small_study)
    one_law["law"] = "chinchilla"  # no repetition term: a repeated run would only bias the fit
    assert parse_study_config(one_law).max_run_epochs == 1.0


def test_the_seed_design_holds_runs_on_all_their_data_and_runs_that_repeat_it(small_study):
    cfg = parse_study_config(_repeating(small_study))
    proposer = Proposer(cfg)
    points = proposer.seed_design(0, 16, cfg.max_run_flops)
    epochs = np.array([p.epochs for p in points])
    assert (epochs == 1.0).sum() >= 4 and (epochs > 2.0).sum() >= 4
    assert epochs.max() <= cfg.max_run_epochs * 1.01
    for p in points:  # the persistent study's parameters give the same run back
        assert proposer.space.from_params(proposer.space.to_params(p)) == p


def test_a_trial_asked_before_the_study_could_repeat_data_reads_as_one_on_all_its_data(small_study):
    """An older study resumed with a repeating target: its trials lack log10_epochs, and are not lost for it."""
    cfg = parse_study_config(_repeating(small_study))
    space = Proposer(cfg).space
    old = SimpleNamespace(params={"log10_n_params": 7.5, "log10_n_tokens": 9.0}, system_attrs={})
    params = trial_params(old, space.optuna_distributions(), space.optional_params())
    assert params == {"log10_n_params": 7.5, "log10_n_tokens": 9.0, "log10_epochs": 0.0}
    assert space.from_params(params).unique_tokens is None
    assert trial_params(old, space.optuna_distributions()) is None  # without the default it would be lost
    cut = SimpleNamespace(params=old.params, system_attrs={"fixed_params": {**old.params, "log10_epochs": 0.5}})
    assert trial_params(cut, space.optuna_distributions(), space.optional_params())["log10_epochs"] == 0.5


def test_a_study_frozen_before_backends_could_repeat_data_still_resumes(small_study):
    """`repeats: false` (the default) is left out of study.yaml, as it was before the field existed."""
    study = _repeating(small_study)
    study["backend"] = {"name": "command", "command": ["true"]}
    assert "repeats" not in parse_study_config(study).frozen_dict()["backend"]
    study["backend"]["repeats"] = True
    assert parse_study_config(study).frozen_dict()["backend"]["repeats"] is True


def test_the_simulated_backend_reads_a_repeated_run_at_its_effective_data(tmp_path):
    backend = SimulatedBackend(truth="chinchilla", noise=0.0)
    spec = RunSpec(n_params=50_000_000, n_tokens=4_000_000_000, mix={"all": 1.0}, unique_tokens=250_000_000)
    result = backend.run(spec, tmp_path)
    expected = RepeatedDataLaw(CHINCHILLA, unique_tokens=250_000_000).loss(5e7, 4e9)[0]
    assert result.losses["all"] == pytest.approx(expected)
    assert result.losses["all"] > CHINCHILLA.loss(5e7, 4e9)[0]  # 16 epochs are worth less than fresh tokens
    assert result.data_epochs == {"all": pytest.approx(16.0)}
    fresh = backend.run(RunSpec(n_params=50_000_000, n_tokens=4_000_000_000, mix={"all": 1.0}), tmp_path)
    assert fresh.losses["all"] == pytest.approx(CHINCHILLA.loss(5e7, 4e9)[0]) and fresh.data_epochs == {}


def test_the_torch_trainer_reads_a_window_of_unique_tokens_per_domain():
    domains = {d: Domain(d, np.arange(100_000, dtype=np.int32), np.arange(1000, dtype=np.int32))
               for d in ("code", "general")}
    mix = {"code": 0.75, "general": 0.25}
    limited = limit_unique(domains, mix, 20_000, seq_len=64)
    assert {d: len(x.train) for d, x in limited.items()} == {"code": 15_000, "general": 5_000}
    assert all(np.array_equal(limited[d].train, domains[d].train[:len(limited[d].train)]) for d in mix)
    epochs = MixtureSampler(limited, mix, 64, seed=0).epochs(200_000, batch_rows=8)
    assert epochs == {"code": pytest.approx(10.0), "general": pytest.approx(10.0)}  # D / U in every domain
    assert len(limit_unique(domains, mix, 10, seq_len=64)["code"].train) == 66  # at least one window


def test_a_repeating_target_is_pinned_with_runs_that_repeat_their_data_and_unresolved_without(small_study,
                                                                                             tmp_path, capsys):
    """The chinchilla world, target data limited to 2e9 unique tokens. Without runs that repeat their data
    (max_epochs 1) no repetition law can be fitted and the target is unresolved; with them the study stops with
    data_constrained's answer, and its interval holds the true optimum."""
    truth = RepeatedDataLaw(CHINCHILLA, unique_tokens=UNIQUE).optimum(1e20)[0][0]
    cfg = parse_study_config(_repeating(small_study, max_epochs=1))
    study = Study(cfg, tmp_path / "plain")
    _drive(study, cfg.backend.build(), tmp_path, max_runs=16)
    (target,) = study.estimates.targets
    assert target.unresolved and "buys no runs that repeat their data" in target.unresolved[0]
    assert not math.isfinite(target.rel_halfwidth)

    cfg = parse_study_config(_repeating(small_study))
    study = Study(cfg, tmp_path / "repeating")
    stop = _drive(study, cfg.backend.build(), tmp_path)
    result = study.finish(stop)
    repeated = [r for r in study.ledger.rows if r.get("n_unique_tokens") is not None]
    assert len(repeated) >= 4 and all(r["n_unique_tokens"] < r["n_tokens"] for r in repeated)
    assert stop == "converged"
    (target,) = result["targets"]
    assert not target["unresolved"]
    assert result["laws"]["all"]["families"]["data_constrained"]["weight"] > 0.5
    low, high = target["n_params_ci95"]
    assert low <= truth <= high, (low, truth, high)
    plot_isoflop_runs(cfg, study.ledger.rows, study.estimates, tmp_path / "isoflop.png")  # repeated runs drawn apart
    assert (tmp_path / "isoflop.png").stat().st_size > 0
    assert result["n_runs_repeating_data"] == len(repeated) and result["most_epochs"] > 4.0
    assert main(["status", str(tmp_path / "repeating")]) == 0
    assert f"{len(repeated)} runs repeated their data" in capsys.readouterr().out


def test_the_fit_takes_the_fewer_of_the_unique_tokens_asked_for_and_those_the_run_read():
    """A limit the data could not fill (a small corpus, a world of fewer tokens) repeats more than asked."""
    from scheduler.estimates import _unique_tokens

    rows = [{"n_tokens": 1e10, "n_unique_tokens": 1e9, "epochs/all": 20.0},  # read 5e8: the world had fewer
            {"n_tokens": 1e10, "n_unique_tokens": 1e9, "epochs/all": 10.0},  # read as asked
            {"n_tokens": 1e9, "n_unique_tokens": None},  # all its data
            {"n_tokens": 1e9, "n_unique_tokens": float("nan"), "epochs/all": 4.0}]  # a prior run without U
    assert _unique_tokens(rows).tolist() == [5e8, 1e9, math.inf, 2.5e8]
