"""What a run is and what trains it.

    from trainers import RunSpec, RunResult, make_backend
    backend = make_backend(cfg.backend)          # a typed config of trainers.backend.BACKEND_CONFIGS
    result = backend.run(RunSpec(n_params=5e6, n_tokens=1e8, mix={"knowledge": 1.0}), run_dir)

Public API: RunSpec, RunResult, FamilySpec (trainers/spec.py: the only objects that cross the Ray boundary);
Backend, BackendConfig, BACKEND_CONFIGS, make_backend (trainers/backend.py: the interface and its typed
configs). The built-in trainer (trainers/torch_backend.py) is imported only when a torch backend is built.
"""

from trainers.backend import BACKEND_CONFIGS, Backend, BackendConfig, make_backend
from trainers.spec import FamilySpec, RunResult, RunSpec

__all__ = ["BACKEND_CONFIGS", "Backend", "BackendConfig", "FamilySpec", "RunResult", "RunSpec", "make_backend"]
