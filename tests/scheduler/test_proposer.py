"""Proposals: a space-filling seed design, then batches that are distinct and spread out."""

import numpy as np
import pytest

from fitting.parametric import ParametricFit
from scheduler.config import parse_study_config
from scheduler.estimates import precision_text, refit
from scheduler.ledger import Ledger
from scheduler.proposer import Proposer
from skillscale.errors import InputError
from trainers.spec import RunSpec


def _seeded_ledger(cfg, tmp_path, n):
    backend = cfg.backend.build()
    proposer = Proposer(cfg)
    ledger = Ledger(tmp_path / "runs.parquet")
    for i, p in enumerate(proposer.propose(n, None, [], 0, cfg.compute_cap)):
        spec = RunSpec(p.n_params, p.n_tokens, p.mix, trial_number=i)
        ledger.append(spec, backend.run(spec, tmp_path / spec.run_id))
    return proposer, ledger


def test_seed_design_is_inside_bounds_and_deterministic(small_study):
    cfg = parse_study_config(small_study)
    a = Proposer(cfg).seed_design(0, 16, cfg.max_run_flops)
    b = Proposer(cfg).seed_design(0, 16, cfg.max_run_flops)
    assert a == b
    assert Proposer(cfg).seed_design(8, 8, cfg.max_run_flops) == a[8:]  # a resumed controller continues it
    for p in a:
        assert cfg.n_params.lo <= p.n_params <= cfg.n_params.hi
        assert cfg.n_tokens.lo <= p.n_tokens <= cfg.n_tokens.hi * 1.001
        assert cfg.flops.lo * 0.99 <= p.flops <= cfg.flops.hi * 1.01
    log_c = np.log10([p.flops for p in a])
    assert log_c.max() - log_c.min() > 2  # spans the budget range


def test_batch_for_k_workers_has_no_duplicates_and_is_spread(small_study, tmp_path):
    cfg = parse_study_config(small_study)
    proposer, ledger = _seeded_ledger(cfg, tmp_path, 16)
    estimates = refit(cfg, ledger.rows)
    assert estimates is not None
    batch = proposer.propose(6, estimates, [], len(ledger), cfg.compute_cap - ledger.flops_spent())
    assert len(batch) == 6
    coords = np.array([[np.log10(p.n_params), np.log10(p.n_tokens)] for p in batch])
    dists = np.sqrt(((coords[:, None] - coords[None]) ** 2).sum(-1))[np.triu_indices(6, 1)]
    assert dists.min() > 0.01, dists  # no two points (near-)identical in log space
    assert np.ptp(coords[:, 0]) > 0.2 or np.ptp(coords[:, 1]) > 0.2  # spread, not one spot
    seen = {(p.n_params, p.n_tokens) for p in batch}
    assert len(seen) == 6


def test_in_flight_runs_are_not_proposed_again(small_study, tmp_path):
    cfg = parse_study_config(small_study)
    proposer, ledger = _seeded_ledger(cfg, tmp_path, 16)
    estimates = refit(cfg, ledger.rows)
    args = (estimates, [], len(ledger), cfg.compute_cap)
    (first,) = proposer.propose(1, *args)
    (again,) = proposer.propose(1, estimates, [first], len(ledger), cfg.compute_cap)
    assert (again.n_params, again.n_tokens) != (first.n_params, first.n_tokens)


def test_seed_design_respects_the_budget_left(small_study):
    cfg = parse_study_config(small_study)
    for budget in (5e17, 2e18, 1e19):
        points = Proposer(cfg).propose(4, None, [], 0, budget_left=budget)
        assert sum(p.flops for p in points) <= budget


def test_budget_limits_proposals(small_study, tmp_path):
    cfg = parse_study_config(small_study)
    proposer, ledger = _seeded_ledger(cfg, tmp_path, 16)
    estimates = refit(cfg, ledger.rows)
    assert proposer.propose(4, estimates, [], len(ledger), budget_left=cfg.min_run_flops / 2) == []
    points = proposer.propose(2, estimates, [], len(ledger), budget_left=3e17)
    assert sum(p.flops for p in points) <= 3e17 * 1.01


def test_explore_every_reserves_space_filling_runs(small_study, tmp_path):
    small_study["proposer"]["explore_every"] = 2
    cfg = parse_study_config(small_study)
    proposer, ledger = _seeded_ledger(cfg, tmp_path, 16)
    estimates = refit(cfg, ledger.rows)
    batch = proposer.propose(2, estimates, [], 16, cfg.compute_cap)
    assert batch[0] == proposer.seed_design(16, 1, cfg.max_run_flops)[0]  # run 16: 16 % 2 == 0, space-filling
    assert batch[1] != proposer.seed_design(17, 1, cfg.max_run_flops)[0]  # run 17: chosen by the acquisition


def test_interval_inflation_widens_intervals_in_log_space(small_study, tmp_path):
    small_study["proposer"]["interval_inflation"] = 1.0
    cfg = parse_study_config(small_study)
    _, ledger = _seeded_ledger(cfg, tmp_path, 16)
    plain = refit(cfg, ledger.rows)
    small_study["proposer"]["interval_inflation"] = 1.5
    wide = refit(parse_study_config(small_study), ledger.rows)
    for a, b in zip(plain.targets, wide.targets, strict=True):
        assert a.n_params == b.n_params  # same point estimate
        for lo_hi in range(2):
            assert np.log(b.n_params_ci95[lo_hi] / b.n_params) == \
                pytest.approx(1.5 * np.log(a.n_params_ci95[lo_hi] / a.n_params), rel=1e-9)
        assert b.rel_halfwidth > a.rel_halfwidth


def test_tokens_per_param_bounds_every_proposal(small_study, tmp_path):
    cfg = parse_study_config({**small_study, "tokens_per_param": [10, 200]})
    points = Proposer(cfg).seed_design(0, 32, cfg.max_run_flops)
    proposer, ledger = _seeded_ledger(cfg, tmp_path, 16)
    points += proposer.propose(4, refit(cfg, ledger.rows), [], 16, cfg.compute_cap)
    assert len(points) >= 30
    for p in points:
        assert 10 * 0.99 <= p.n_tokens / p.n_params <= 200 * 1.01
        assert cfg.n_params.lo <= p.n_params <= cfg.n_params.hi
    lo, hi = cfg.n_bounds(cfg.max_run_flops)
    assert lo <= hi and hi <= np.sqrt(cfg.max_run_flops / 60) * 1.0001


def test_tokens_per_param_that_no_run_can_meet_is_a_config_error(small_study):
    with pytest.raises(InputError, match=r"tokens_per_param: no run within the N, D and FLOP bounds has D/N in"):
        parse_study_config({**small_study, "tokens_per_param": [20000, 50000]})


def test_seed_budget_skew_leans_the_seed_design_to_cheap_budgets(small_study):
    designs = {}
    for skew in (1, 2):
        cfg = parse_study_config({**small_study, "proposer": {**small_study["proposer"], "seed_budget_skew": skew}})
        designs[skew] = Proposer(cfg).seed_design(0, 32, cfg.max_run_flops)
    cost = {skew: sum(p.flops for p in pts) for skew, pts in designs.items()}
    assert cost[2] < 0.7 * cost[1]  # about half the FLOPs ...
    log_c = np.log10([p.flops for p in designs[2]])
    assert log_c.max() - log_c.min() > 2  # ... while still spanning the budget range


def test_a_law_with_an_exponent_on_its_bound_is_not_identifiable(small_study, tmp_path, monkeypatch):
    """A target whose law has an exponent pinned on a solver bound is not identifiable, however narrow its
    bootstrap interval: infinite half-width (no stop, no acquisition on it), the proposer keeps filling space,
    and a target on another skill is unaffected. (Which fits count as pinned is tested in
    tests/fitting/test_parametric.py; here the knowledge fit is declared pinned.)"""
    cfg = parse_study_config(small_study)
    proposer, ledger = _seeded_ledger(cfg, tmp_path, 16)
    plain = refit(cfg, ledger.rows)
    assert all(np.isfinite(t.rel_halfwidth) and not t.degenerate for t in plain.targets)
    pinned_alpha = plain.fits["knowledge"].law.alpha  # refits are deterministic: this identifies the fit
    real = ParametricFit.exponents_at_bounds
    monkeypatch.setattr(ParametricFit, "exponents_at_bounds",
                        lambda fit: ("alpha=3",) if fit.law.alpha == pinned_alpha else real(fit))
    estimates = refit(cfg, ledger.rows)
    knowledge, code = estimates.targets
    assert knowledge.degenerate == ("knowledge: alpha=3",)
    assert knowledge.rel_halfwidth == np.inf and not estimates.converged(1e9)
    assert knowledge.n_params == plain.targets[0].n_params  # the estimate is kept, only not trusted
    assert not code.degenerate and code.rel_halfwidth == plain.targets[1].rel_halfwidth
    assert knowledge.to_dict()["degenerate"] == ["knowledge: alpha=3"]
    batch = proposer.propose(3, estimates, [], 16, cfg.compute_cap)
    assert batch == proposer.seed_design(16, 3, cfg.max_run_flops)  # space-filling, as before the laws fit


def test_precision_text_says_why_there_is_no_interval():
    assert precision_text(0.0951) == "±9.5%" and precision_text(0.0951, digits=0) == "±10%"
    assert precision_text(float("inf")) == precision_text(None) == "n/a: not identifiable"  # estimate / result.json
    assert precision_text(0.05, ("knowledge: alpha=2.97",)) == "n/a: knowledge: alpha=2.97 on a solver bound"
