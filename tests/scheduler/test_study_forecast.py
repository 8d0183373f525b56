"""A study whose tolerance is out of reach says so: StudyStatus.forecast (fitting.forecast) puts the FLOPs and
runs it expects to need above the cap / max_runs, in the progress line and result.json (issue #21, item 4)."""

from scheduler.config import parse_study_config
from scheduler.progress import forecast_text
from scheduler.study import Study


def test_out_of_reach_tolerance_is_forecast_early(tmp_path):
    cfg = parse_study_config({
        "name": "forecast", "skills": ["all"], "domains": ["all"],
        "n_params": [1e7, 3e9], "n_tokens": [1e8, 1e11], "flops": [1e16, 1e19],
        "targets": [{"name": "all", "weights": {"all": 1.0}, "flops": 1e21}],
        "tolerance": 0.01, "compute_cap": 1e20, "max_runs": 40,
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
