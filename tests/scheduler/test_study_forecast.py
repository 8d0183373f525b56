"""A study whose tolerance is out of reach says so: StudyStatus.forecast (fitting.forecast) puts the FLOPs and
runs it expects to need above the cap / max_runs, in the progress line and result.json (issue #21, item 4)."""

from scheduler.config import parse_study_config
from scheduler.progress import forecast_text, price_text
from scheduler.study import Study


def test_out_of_reach_tolerance_is_forecast_early(tmp_path):
    cfg = parse_study_config({
        "name": "forecast", "skills": ["all"], "domains": ["all"],
        "n_params": [1e7, 3e9], "n_tokens": [1e8, 1e11], "flops": [1e16, 1e19],
        "targets": [{"name": "all", "weights": {"all": 1.0}, "flops": 1e21}],
        "tolerance": 0.01, "compute_cap": 1e20, "max_runs": 40, "law": "chinchilla",
        "backend": {"name": "simulated", "truth": "besiroglu", "noise": 0.03},
        "proposer": {"n_boot": 20, "n_candidates": 64, "inner_trials": 0}, "seed": 1,
    })
    backend = cfg.backend.build()
    study = Study(cfg, None)
    study.reconcile()
    while study.stop_reason() is None:
        specs = study.propose(1)
        if not specs:
            break
        study.record(specs[0], backend.run(specs[0], tmp_path))
    forecast = study.status().forecast
    assert forecast is not None and forecast["reachable"] is False
    assert forecast["flops_needed"] > cfg.compute_cap or forecast["runs_needed"] > cfg.max_runs
    assert "out of reach" in forecast_text(forecast)
    assert study.result(study.stop_reason())["forecast"]["reachable"] is False


def _small_study(run_price="shadow", max_runs=100):
    cfg = parse_study_config({
        "name": "price", "skills": ["all"], "domains": ["all"],
        "n_params": [1e7, 3e9], "n_tokens": [1e8, 1e11], "flops": [1e16, 1e19],
        "targets": [{"name": "all", "weights": {"all": 1.0}, "flops": 1e21}],
        "tolerance": 0.05, "compute_cap": 1e20, "max_runs": max_runs, "law": "chinchilla",
        "backend": {"name": "simulated", "truth": "besiroglu", "noise": 0.015},
        "proposer": {"n_boot": 20, "n_candidates": 64, "inner_trials": 0, "overhead_flops": 1e16,
                     "run_price": run_price}, "seed": 2,
    })
    study = Study(cfg, None)
    study.reconcile()
    return cfg, study


def test_a_run_is_priced_at_flops_left_per_run_left_only_when_max_runs_binds(tmp_path):
    """Study.run_price reads the current fit: runs needed = ok runs x (worst half-width / tolerance)^2."""
    from dataclasses import replace

    cfg, study = _small_study()
    backend = cfg.backend.build()
    for _ in range(cfg.max_runs // 4 - 1):
        specs = study.propose(1)
        study.record(specs[0], backend.run(specs[0], tmp_path))
    study.estimates = replace(study.estimates, targets=[replace(t, rel_halfwidth=1.0) for t in study.estimates.targets])
    assert study.run_price() == 1e16  # before a quarter of max_runs: never raised
    for _ in range(6):
        specs = study.propose(1)
        study.record(specs[0], backend.run(specs[0], tmp_path))

    def with_halfwidth(hw):
        study.estimates = replace(study.estimates, targets=[replace(t, rel_halfwidth=hw)
                                                            for t in study.estimates.targets])

    n_ok = study.estimates.n_runs
    with_halfwidth(cfg.tolerance * (2 * cfg.max_runs / n_ok) ** 0.5)  # needs ~2x max_runs: runs bind
    left = (cfg.compute_cap - study.flops_committed) / (cfg.max_runs - study.n_asked)
    assert left > 1e16 and study.run_price() == left
    status = study.status()
    assert status.run_price == left and f"a run priced at {left:.2g} FLOPs" in price_text(status)
    study.propose(1)
    assert study.proposer.run_price == left  # what the ranking used
    with_halfwidth(cfg.tolerance * (0.5 * cfg.max_runs / n_ok) ** 0.5)  # within max_runs: the plain overhead
    assert study.run_price() == 1e16 and price_text(study.status()) == ""
    _, fixed = _small_study("fixed")
    fixed.estimates = study.estimates
    with_halfwidth(cfg.tolerance * (2 * cfg.max_runs / n_ok) ** 0.5)
    fixed.estimates = study.estimates
    assert fixed.run_price() == 1e16
