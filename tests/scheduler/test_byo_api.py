"""The Python API of README's "Python API" section, as written there: a study config as a dict with a custom
function backend, driven in process through the Study (no Ray), and through run_study (on the session's Ray)."""

import pyarrow.parquet as pq

from fitting.law import ParametricLaw
from scheduler import Study, parse_study_config, run_study
from trainers.backend import make_backend

# The laws tests/scheduler/byo_functions.py:known_law reports (without noise).
TRUTH = {"knowledge": ParametricLaw(E=2.0, A=480.0, B=380.0, alpha=0.34, beta=0.28),
         "code": ParametricLaw(E=1.2, A=340.0, B=420.0, alpha=0.34, beta=0.28)}


def api_config(**changes) -> dict:
    config = {
        "name": "api-demo", "skills": ["knowledge", "code"],
        "n_params": [1e7, 3e9], "n_tokens": [1e8, 1e11], "flops": [1e16, 1e19],
        "targets": [{"name": "code", "weights": {"code": 1.0}, "flops": 1e20}],
        "compute_cap": 1e21, "max_concurrent": 2, "resources": {"num_cpus": 0.5}, "law": "chinchilla",
        "backend": {"name": "python", "function": "tests.scheduler.byo_functions:known_law"},
        "proposer": {"n_boot": 100, "overhead_flops": 1e17, "inner_trials": 16, "n_candidates": 512},
    }
    return {**config, **changes}


def test_the_study_in_process_with_a_function_backend(tmp_path):
    cfg = parse_study_config(api_config(max_runs=40))
    study = Study(cfg)                      # in memory: no study dir, no Ray
    backend = make_backend(cfg.backend)     # the same function, called here
    study.reconcile()
    while study.stop_reason() is None:
        for spec in study.propose(2):
            study.record(spec, backend.run(spec, tmp_path / spec.run_id))
    result = study.finish(study.stop_reason())
    assert result["stop_reason"] == "converged", result["stop_reason"]
    (target,) = result["targets"]
    true_n = float(TRUTH["code"].optimum(1e20)[0][0])
    assert abs(target["n_params"] / true_n - 1) <= cfg.tolerance
    lo, hi = target["n_params_ci95"]
    assert lo <= target["n_params"] <= hi


def test_run_study_with_a_function_backend(ray_local, tmp_path):
    result = run_study(parse_study_config(api_config(max_runs=7)), tmp_path / "study")
    assert result["n_runs_ok"] == 7 and result["stop_reason"] == "max_runs"
    rows = pq.read_table(tmp_path / "study" / "runs.parquet").to_pylist()
    assert all(r["n_params"] == r["requested_n_params"] - 1 for r in rows)  # the exact N the function reported
