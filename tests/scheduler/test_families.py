"""Run families in the scheduler (issue #17, scheduler/families.py): the config section, the branch design, the
joint acquisition, the simulated family, the ledger and Optuna mapping, resume, and a study loop with families."""

import collections
from pathlib import Path

import numpy as np
import pytest

from scheduler.acquisition import variance_reduction
from scheduler.config import parse_study_config
from scheduler.families import (
    FamilyPoint,
    branch_tokens,
    family_flops,
    joint_variance_reduction,
    noise_covariance,
)
from scheduler.study import Study
from skillscale.errors import InputError
from trainers.simulated import SimulatedBackend
from trainers.spec import FamilySpec

MIX = {"knowledge": 0.4, "code": 0.4, "general": 0.2}


def _study(**overrides) -> dict:
    base = {
        "name": "fam", "skills": ["knowledge", "code"], "domains": ["knowledge", "code", "general"],
        "mix": {"space": "fixed", "fixed": MIX},
        "n_params": [1e7, 3e9], "n_tokens": [1e8, 1e11], "flops": [1e16, 1e19], "tokens_per_param": [5, 640],
        "targets": [{"name": "knowledge", "weights": {"knowledge": 1.0}, "flops": 1e21}],
        "compute_cap": 2e20, "backend": {"name": "simulated", "truth": "knowledge-code", "noise": 0.005},
        "proposer": {"n_boot": 40, "inner_trials": 0, "n_candidates": 128, "seed_runs": 6},
        "families": {"enabled": True}, "law": "chinchilla",  # run families' mechanics, in a Chinchilla world
    }
    return {**base, **overrides}


@pytest.mark.parametrize("families, message", [
    ({"enabled": True, "max_branches": 0}, "families.max_branches: "),
    ({"enabled": True, "cooldown_fraction": 1.5}, "families.cooldown_fraction: "),
    ({"enabled": True, "cooldown_shape": "cosine"}, "families.cooldown_shape: "),
    ({"enabled": True, "branch_spec": 3}, "families.branch_spec: unknown field"),
])
def test_families_config_errors_name_the_field(families, message):
    with pytest.raises(InputError, match=message):
        parse_study_config(_study(families=families))


def test_families_are_refused_for_a_backend_without_run_family_and_with_schedule_overrides():
    with pytest.raises(InputError, match="families.enabled: the python backend trains one run per call"):
        parse_study_config(_study(backend={"name": "python", "function": "os:getcwd"}))
    with pytest.raises(InputError, match="hparams.schedule: is set by the run family"):
        parse_study_config(_study(hparams={"schedule": "wsd"}))
    assert not parse_study_config(_study(families={})).families.enabled  # off by default
    assert "families" not in parse_study_config(_study(families={})).frozen_dict()  # old studies still resume


def test_branches_lie_inside_the_bounds_and_the_band_and_the_cost_is_the_stable_phase_plus_cooldowns():
    cfg = parse_study_config(_study())
    for n, d_max in [(1e8, 2e10), (1e8, 6e8), (2e7, 2e8), (1e9, 5e9)]:
        tokens = branch_tokens(cfg, n, d_max)
        assert tokens[-1] == round(d_max) and list(tokens) == sorted(set(tokens))
        assert 1 <= len(tokens) <= cfg.families.max_branches
        assert tokens[-1] / tokens[0] <= cfg.families.branch_span * (1 + 1e-9)
        for d in tokens:
            assert 5 * n <= d * (1 + 1e-9) and 1e8 <= d and 6 * n * d >= 1e16 * (1 - 1e-9)
        if len(tokens) > 1:
            assert min(np.diff(np.log10(tokens))) >= 0.1 - 1e-9
    assert branch_tokens(cfg, 1e8, 1e9) == (5 * 10**8, 629960525, 793700526, 10**9)  # the band's floor cuts it
    assert branch_tokens(cfg, 1e8, 6e8) == (6 * 10**8,)  # 1.2x above the floor: room for one branch only
    fam = FamilySpec(n_params=10**8, n_tokens=(10**9, 3 * 10**9, 10**10), mix=MIX)
    point = FamilyPoint(fam.n_params, fam.n_tokens, MIX, fam.cooldown_fraction)
    assert point.flops == pytest.approx(fam.flops) == pytest.approx(6e8 * (1e10 + 0.2 * 4e9))
    assert family_flops(1e8, [[1e9, 1e10]], 0.2)[0] == pytest.approx(6e8 * (1e10 + 0.2e9))


def test_joint_variance_reduction_is_the_single_run_one_for_one_branch_and_correlated_noise_is_worth_less():
    rng = np.random.default_rng(0)
    k, m, s = 200, 5, 2
    theta = rng.standard_normal((k, 3))
    q = theta[:, :1] + 0.1 * rng.standard_normal((k, 1))
    y1 = np.stack([theta @ rng.standard_normal(3) for _ in range(m * s)], axis=1).reshape(k, m, s) * 0.02
    noise = np.array([0.01, 0.02])
    np.testing.assert_allclose(joint_variance_reduction(q, y1, noise_covariance(noise, 1, 0.7)),
                               variance_reduction(q, y1, noise), rtol=1e-10)
    # two branches that see the same signal: independent noise averages down, fully shared noise would not
    y2 = np.concatenate([y1, y1], axis=2)
    gains = {rho: joint_variance_reduction(q, y2, noise_covariance(np.tile(noise, 2), 2, rho)).sum()
             for rho in (0.0, 0.5, 0.9)}
    assert gains[0.0] > gains[0.5] > gains[0.9] > 0


def test_a_simulated_family_costs_the_family_and_its_branch_noise_is_correlated():
    backend = SimulatedBackend(truth="knowledge-code", noise=0.01, family_noise_correlation=0.6)
    z = []
    for seed in range(300):
        fam = FamilySpec(n_params=10**8, n_tokens=(10**9, 4 * 10**9), mix=MIX, seed=seed)
        results = backend.run_family(fam, Path("."))
        assert sum(r.flops for r in results) == pytest.approx(fam.flops)
        assert [r.branch for r in results] == [0, 1] and {r.family_id for r in results} == {fam.family_id}
        truth = [backend.true_losses(b)["code"] for b in fam.branches()]
        z.append([np.log(r.losses["code"] / t) / 0.01 for r, t in zip(results, truth, strict=True)])
    z = np.array(z)
    assert abs(np.corrcoef(z.T)[0, 1] - 0.6) < 0.12 and abs(z.std() - 1) < 0.1
    first, again = (backend.run_family(fam, Path(".")) for _ in range(2))
    assert [r.losses for r in first] == [r.losses for r in again]  # a rerun reports the same


def test_a_family_is_one_trial_per_branch_and_a_resumed_study_rehands_its_unrecorded_branches(tmp_path):
    cfg = parse_study_config(_study())
    backend = cfg.backend.build()
    study = Study(cfg, tmp_path)
    study.reconcile()
    specs = study.propose(1)
    family = study.family_of(specs[0])
    assert len(specs) == len(family.n_tokens) >= 2 and [s.branch for s in specs] == list(range(len(specs)))
    assert len({s.trial_number for s in specs}) == len(specs) == study.n_asked
    assert study.status().flops_in_flight == pytest.approx(family.flops)  # the family's true cost, not sum 6ND_i
    results = backend.run_family(family, tmp_path / "runs" / f"family-{family.family_id}")
    study.record(specs[0], results[0])  # killed after the first branch was recorded
    study.close()
    again = Study(cfg, tmp_path)
    resumed = again.reconcile()
    assert [s.run_id for s in resumed] == [s.run_id for s in specs[1:]]
    assert {s.family_id for s in resumed} == {family.family_id} and again.family_of(resumed[0]) == family
    recorded = again.record_family(backend.run_family(family, tmp_path / "runs" / f"family-{family.family_id}"))
    assert [r.branch for r in recorded] == list(range(1, len(specs)))  # branch 0 is not recorded twice
    rows = again.ledger.rows
    assert [(r["family_id"], r["branch"]) for r in rows] == [(family.family_id, i) for i in range(len(specs))]
    assert sum(r["flops"] for r in rows) == pytest.approx(family.flops)
    assert again.status().n_in_flight == 0
    again.close()


def test_a_study_with_families_runs_to_its_stop_with_every_branch_recorded_once():
    cfg = parse_study_config(_study(max_runs=40, compute_cap=5e19))
    study = Study(cfg)
    study.reconcile()
    backend = cfg.backend.build()
    n_families = 0
    while study.stop_reason() is None:
        specs = study.propose(2)
        assert specs, "the budget is far from spent"
        for family_id in dict.fromkeys(s.family_id for s in specs):
            study.record_family(backend.run_family(study.families[family_id], Path(".")))
            n_families += 1
    assert study.stop_reason() == "max_runs"
    rows = study.ledger.rows
    assert len(rows) == study.n_asked >= 40 and max(collections.Counter(r["run_id"] for r in rows).values()) == 1
    by_family = collections.Counter(r["family_id"] for r in rows)
    assert len(by_family) == n_families and max(by_family.values()) > 1 and "" not in by_family
    assert study.estimates is not None and all(np.isfinite(t.rel_halfwidth) for t in study.estimates.targets)


def test_the_quickstart_with_families_runs_through_the_controller_to_its_stop(ray_local, tmp_path):
    """configs/quickstart.yaml with `families: {enabled: true}` (shortened): the controller sends whole families
    to the actors' run_family, and every branch lands in runs.parquet once, with its family_id and branch."""
    import pyarrow.parquet as pq
    import yaml

    from scheduler.controller import Controller

    quickstart = yaml.safe_load(Path("configs/quickstart.yaml").read_text())
    quickstart.update(families={"enabled": True}, max_runs=16, max_concurrent=2,
                      proposer={**quickstart["proposer"], "n_boot": 30, "inner_trials": 0, "n_candidates": 128,
                                "seed_runs": 6})
    cfg = parse_study_config(quickstart)
    result = Controller(cfg, tmp_path).run()
    rows = pq.read_table(tmp_path / "runs.parquet").to_pylist()
    assert result["stop_reason"] == "max_runs" and result["n_runs"] == len(rows) >= 16
    assert max(collections.Counter(r["run_id"] for r in rows).values()) == 1
    families = collections.defaultdict(list)
    for r in rows:
        families[r["family_id"]].append(r["branch"])
    assert "" not in families and max(len(b) for b in families.values()) > 1
    assert all(sorted(b) == list(range(len(b))) for b in families.values())  # every branch of every family
    assert result["flops_spent"] == pytest.approx(sum(r["flops"] for r in rows))


def test_the_refits_bootstrap_draws_are_correlated_within_a_family_only():
    from scheduler.estimates import correlate_within_families

    rng = np.random.default_rng(0)
    z = {"code": rng.standard_normal((20_000, 5))}
    shared = {"code": rng.standard_normal((20_000, 5))}
    out = correlate_within_families(z, shared, ["f", "f", "", "g", "g"], 0.8)["code"]
    corr = np.corrcoef(out.T)
    assert abs(corr[0, 1] - 0.8) < 0.02 and abs(corr[3, 4] - 0.8) < 0.02  # branches of one family
    assert np.all(np.abs(corr[[0, 0, 2, 2], [2, 3, 3, 4]]) < 0.03)  # across families, and a plain run
    np.testing.assert_allclose(out.std(0), 1.0, atol=0.02)
    np.testing.assert_array_equal(out[:, 2], z["code"][:, 2])  # a plain run's draws are unchanged
