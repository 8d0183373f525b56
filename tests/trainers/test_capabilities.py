"""Backends declare what they support (trainers/capabilities.py); the scheduler asks that, never the name."""

import re
from pathlib import Path

import pytest

from scheduler.config import backends_that, parse_study_config
from skillscale.errors import InputError
from trainers.backend import BACKEND_CONFIGS
from trainers.capabilities import BackendConfigBase, Capabilities

ROOT = Path(__file__).resolve().parents[2]


def test_every_backend_config_has_the_base_and_its_defaults():
    assert all(issubclass(c, BackendConfigBase) for c in BACKEND_CONFIGS)
    assert Capabilities() == Capabilities(families=False, models_per_run=1, stop_grace_s=None, data_parallel=False)
    with pytest.raises(ValueError, match="models_per_run"):
        Capabilities(models_per_run=0)


def test_each_backend_declares_its_own_capabilities(small_study):
    from trainers.command import CommandConfig
    from trainers.function import PythonConfig
    from trainers.simulated import SimulatedConfig

    sim = SimulatedConfig(name="simulated", seed_replicas=3).capabilities
    assert sim.families and sim.models_per_run == 3 and not sim.data_parallel and sim.stop_grace_s is None
    cmd = CommandConfig(name="command", command=["true"], kill_grace_s=7).capabilities
    assert cmd == Capabilities(stop_grace_s=7.0)
    assert PythonConfig(name="python", function="m:f").capabilities == Capabilities()
    assert backends_that(lambda c: c.families) == ["simulated", "torch"]
    assert backends_that(lambda c: c.data_parallel) == ["torch"]


def test_families_are_refused_for_a_backend_that_does_not_declare_them(small_study):
    small_study["families"] = {"enabled": True}
    parse_study_config(small_study)  # simulated declares families
    small_study["backend"] = {"name": "python", "function": "m:f"}
    with pytest.raises(InputError, match=r"families\.enabled: the python backend .*\(simulated, torch\)"):
        parse_study_config(small_study)


def test_the_scheduler_never_dispatches_on_a_backend_name_or_probes_it():
    """The rule of issue 36: no `backend.name ==`, no name lists, no getattr on a backend outside trainers/."""
    bad = re.compile(r"backend\.name\s*(==|!=|in\b|not in\b)|_BACKENDS\s*=|getattr\([^)]*backend|hasattr\([^)]*backend")
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "scheduler").glob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if bad.search(line)]
    assert not hits, hits
