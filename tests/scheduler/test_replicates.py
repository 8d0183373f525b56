"""Replicates (issue #21): the same (N, D, mix) asked again trains with the next seed as a new run, the seeds
survive a restart, the ledger shows them, and the fit's noise model measures their spread."""

from scheduler.config import parse_study_config
from scheduler.proposer import Point, SearchSpace
from scheduler.store import SEED_RULE_ATTR, open_optuna_study
from scheduler.study import Study, run_seed


def _cfg():
    return parse_study_config({
        "name": "replicates", "skills": ["all"], "domains": ["all"],
        "n_params": [1e7, 3e9], "n_tokens": [1e8, 1e11], "flops": [1e16, 1e19],
        "targets": [{"name": "all", "weights": {"all": 1.0}, "flops": 1e21}],
        "compute_cap": 1e20, "backend": {"name": "simulated", "truth": "besiroglu", "noise": 0.01},
        "proposer": {"n_boot": 20}, "seed": 7,
    })


def test_a_replicate_is_a_new_run_with_the_next_seed_and_survives_a_restart(tmp_path):
    cfg = _cfg()
    backend = cfg.backend.build()
    study = Study(cfg, tmp_path / "study")
    study.reconcile()
    base = [Point(int(n), int(20 * n), {"all": 1.0}) for n in (2e7, 4e7, 8e7, 1.6e8, 3.2e8)]
    specs = study.ask([p for p in base for _ in range(3)])  # every point three times
    seeds = [s.seed for s in specs]
    assert len(set(seeds)) == 15 and len({s.run_id for s in specs}) == 15  # no two runs share an initialisation
    for spec in specs:
        study.record(spec, backend.run(spec, tmp_path))
    assert sorted(r["seed"] for r in study.ledger.rows) == sorted(seeds)
    noise = study.estimates.noise_models["all"]
    assert noise.replicate_dof == 10 and 0.004 < noise.replicate_sigma < 0.02
    study.close()  # releases the study directory's lock (scheduler/lock.py)
    resumed = Study(cfg, tmp_path / "study")  # a restart recomputes the same seeds from the persistent study
    assert [resumed._spec_of_trial(t).seed for t in resumed.store.optuna.get_trials()] == seeds
    assert resumed.store.seed_rule == "per-run" and resumed.store.optuna.user_attrs[SEED_RULE_ATTR] == "per-run"
    resumed.close()


def test_run_seeds_depend_on_the_study_seed_the_point_and_the_replicate_only():
    point, other = Point(int(2e7), int(4e8), {"all": 1.0}), Point(int(4e7), int(4e8), {"all": 1.0})
    assert run_seed(7, point, 0) == run_seed(7, Point(point.n_params, point.n_tokens, {"all": 1.0}), 0)
    assert len({run_seed(7, point, 0), run_seed(7, point, 1), run_seed(8, point, 0), run_seed(7, other, 0)}) == 4
    assert run_seed(7, point, 2, rule="study") == 9  # studies created before the rule: study seed + replicate


def test_a_study_created_before_the_seed_rule_keeps_its_seeds_on_resume(tmp_path):
    """A persistent study with trials but no recorded rule was seeded study seed + replicate: a resumed one
    recomputes those seeds, so its in-flight run resumes under its own run_id, and a new study seeds per run."""
    cfg = _cfg()
    point = Point(int(2e7), int(4e8), {"all": 1.0})
    with Study(cfg, tmp_path / "new") as fresh:
        fresh.reconcile()
        [new_spec] = fresh.ask([point])
    (tmp_path / "old").mkdir()
    old = open_optuna_study(cfg, tmp_path / "old")  # the journal an older skillscale left: one trial in flight
    old.enqueue_trial(SearchSpace(cfg).to_params(point))
    old.ask(SearchSpace(cfg).optuna_distributions())
    with Study(cfg, tmp_path / "old") as resumed:
        [spec] = resumed.reconcile()
        assert resumed.store.seed_rule == "study" and resumed.store.optuna.user_attrs[SEED_RULE_ATTR] == "study"
    assert spec.seed == 7 and new_spec.seed != 7 and spec.run_id != new_spec.run_id
