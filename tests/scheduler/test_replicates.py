"""Replicates (issue #21): the same (N, D, mix) asked again trains with the next seed as a new run, the seeds
survive a restart, the ledger shows them, and the fit's noise model measures their spread."""

from scheduler.config import parse_study_config
from scheduler.proposer import Point
from scheduler.study import Study


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
    assert [s.seed for s in specs[:3]] == [7, 8, 9] and len({s.run_id for s in specs}) == 15
    for spec in specs:
        study.record(spec, backend.run(spec, tmp_path))
    assert sorted(r["seed"] for r in study.ledger.rows)[:3] == [7, 7, 7]
    noise = study.estimates.noise_models["all"]
    assert noise.replicate_dof == 10 and 0.004 < noise.replicate_sigma < 0.02
    if hasattr(study, "close"):  # releases the study directory's lock (scheduler/lock.py)
        study.close()
    resumed = Study(cfg, tmp_path / "study")  # a restart recomputes the same seeds from the persistent study
    assert [resumed._spec_of_trial(t).seed for t in resumed.optuna.get_trials()[:3]] == [7, 8, 9]
