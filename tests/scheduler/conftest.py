"""One local Ray instance for the whole test session (Ray takes seconds to start on 2 cores)."""

import pytest


@pytest.fixture(scope="session")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, namespace="skillscale-tests", logging_level="ERROR",
             log_to_driver=False)
    yield ray
    ray.shutdown()


SMALL_STUDY = {
    "name": "small",
    "skills": ["knowledge", "code"],
    "domains": ["knowledge", "code", "general"],
    "mix": {"space": "fixed", "fixed": {"knowledge": 0.4, "code": 0.4, "general": 0.2}},
    "n_params": [1e7, 3e9],
    "n_tokens": [1e8, 1e11],
    "flops": [1e16, 1e19],
    "targets": [
        {"name": "knowledge", "weights": {"knowledge": 1.0}, "flops": 1e20},
        {"name": "code", "weights": {"code": 1.0}, "flops": 1e20},
    ],
    "tolerance": 0.10,
    "compute_cap": 1e21,
    "max_concurrent": 2,
    "resources": {"num_cpus": 0.5},
    "backend": {"name": "simulated", "settings": {"truth": "knowledge-code", "noise": 0.005}},
    "proposer": {"n_boot": 100, "overhead_flops": 1e17, "inner_trials": 16, "n_candidates": 512},
    "seed": 0,
}


@pytest.fixture
def small_study():
    import copy

    return copy.deepcopy(SMALL_STUDY)
