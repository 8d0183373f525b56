"""The backend interface: what a TrainerActor runs.

Lifecycle: the actor constructs a backend once (`make_backend(name, settings)`), then calls
`run(spec, run_dir)` for each run it is given, possibly many times; `run` must resume from the
newest checkpoint in `run_dir` if one exists, and return a RunResult (status "diverged" on NaN/inf,
never raise for a diverged run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from trainers.spec import RunResult, RunSpec


class Backend(Protocol):
    def run(self, spec: RunSpec, run_dir: Path) -> RunResult:
        """Train (or simulate) `spec`, writing checkpoints under `run_dir`; return its result."""
        ...


def make_backend(name: str, settings: dict | None = None) -> Backend:
    """Build a backend by name: "simulated" or "torch"."""
    settings = dict(settings or {})
    if name == "simulated":
        from trainers.simulated import SimulatedBackend

        return SimulatedBackend(**settings)
    if name == "torch":
        from trainers.torch_backend import TorchBackend

        return TorchBackend(**settings)
    raise ValueError(f"backend: expected 'simulated' or 'torch', got {name!r}")
