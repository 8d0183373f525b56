"""The controller's slot accounting for data-parallel runs, without Ray (the remote calls are stand-ins): a run
above resources.data_parallel_min_flops takes gpus_per_run slots at once, beside single-slot runs, waits first in
the queue while too few are free, and gives its slots back when it ends. Config validation of the fields too."""

import collections
from types import SimpleNamespace

import pytest

from scheduler import controller as controller_module
from scheduler.config import parse_study_config
from scheduler.controller import Controller
from skillscale.errors import InputError
from tests.conftest import TINY_TORCH_SETTINGS, torch_backend_section
from trainers.spec import RunSpec

MIX = {"knowledge": 0.4, "code": 0.4, "general": 0.2}
BIG = RunSpec(n_params=2e5, n_tokens=3e4, mix=MIX)  # 6ND = 3.6e10
SMALL = [RunSpec(n_params=7e4, n_tokens=1e4, mix=MIX, seed=s) for s in range(3)]  # 6ND = 4.2e9


def _study(**resources) -> dict:
    return {
        "skills": ["knowledge", "code"], "domains": list(MIX), "mix": {"fixed": MIX}, "n_params": [7e4, 2e5],
        "n_tokens": [1e4, 3e4], "tokens_per_param": None, "compute_cap": 1e13, "max_concurrent": 3,
        "targets": [{"name": "k", "weights": {"knowledge": 1.0}, "flops": 1e12}],
        "resources": {"num_cpus": 0.5, **resources}, "backend": torch_backend_section(TINY_TORCH_SETTINGS)}


class _Remote:
    """Stands in for a Ray remote method or task: .options(name=...).remote(...) -> a ref naming the call."""

    def __init__(self, what: str, calls: list):
        self.what, self.calls = what, calls

    def options(self, name: str):
        return SimpleNamespace(remote=lambda *args, **kwargs: self.calls.append((self.what, name, kwargs))
                               or f"ref-{len(self.calls)}")


def _controller(cfg, monkeypatch, calls: list, killed: list) -> Controller:
    monkeypatch.setattr(controller_module, "train_data_parallel", _Remote("data_parallel", calls))
    monkeypatch.setattr(controller_module, "start_actor",
                        lambda *args, worker, **kwargs: SimpleNamespace(run=_Remote(f"actor {worker}", calls),
                                                                        node=SimpleNamespace(remote=lambda: "node")))
    monkeypatch.setattr(controller_module.ray, "kill", killed.append)
    c = Controller.__new__(Controller)  # only what dispatch uses: no Study, no Ray session
    c.cfg, c.study_dir = cfg, None
    c.study = SimpleNamespace(family_of=lambda spec: None)
    c.pending, c.in_flight, c.held_slots = collections.deque(), {}, {}
    c.actors = [None] * cfg.max_concurrent
    c.placing, c.node_of, c.lost_nodes = {}, {}, {}
    c._device_ref, c._device_known = None, True  # which GPU the workers have is not what these tests ask
    return c


def test_a_data_parallel_run_takes_its_slots_beside_single_slot_runs(monkeypatch, tmp_path):
    cfg = parse_study_config(_study(gpus_per_run=2, data_parallel_min_flops=1e10))
    assert [cfg.resources.workers_for(s.n_params, s.n_tokens) for s in (BIG, SMALL[0])] == [2, 1]
    calls, killed = [], []
    c = _controller(cfg, monkeypatch, calls, killed)
    c.study_dir = tmp_path
    c.pending.extend([SMALL[0], BIG, SMALL[1]])
    c._dispatch()
    assert [what for what, _, _ in calls] == ["actor w0", "data_parallel"]  # 3 slots: one small run, the big one
    _, name, kwargs = calls[1]
    assert kwargs["num_workers"] == 2 and kwargs["use_gpu"] is False and name.endswith("on 2 workers")
    assert c._free_slots() == [] and list(c.pending) == [SMALL[1]]
    big_ref = next(ref for ref, (spec, _) in c.in_flight.items() if spec is BIG)
    assert sorted([c.in_flight[big_ref][1], *c.held_slots[big_ref]]) == [1, 2]

    # the small run ends: one slot is free; a second big run waits first in the queue, the small one behind it too
    small_ref = next(ref for ref, (spec, _) in c.in_flight.items() if spec is SMALL[0])
    c.in_flight.pop(small_ref)
    big_2 = RunSpec(n_params=2e5, n_tokens=3e4, mix=MIX, seed=1)
    c.pending.appendleft(big_2)
    c._dispatch()
    assert len(calls) == 2 and list(c.pending) == [big_2, SMALL[1]] and c._free_slots() == [0]

    # the data-parallel run ends: its slots come back, and the actors they stopped are not reused
    c.in_flight.pop(big_ref)
    c.held_slots.pop(big_ref)
    assert c._free_slots() == [0, 1, 2]
    c._dispatch()
    assert [what for what, _, _ in calls[2:]] == ["data_parallel", "actor w2"] and not c.pending
    assert len(killed) == 1  # slot 0's actor, stopped so that its GPU goes to the second big run's workers


@pytest.mark.parametrize("resources, backend, message", [
    ({"gpus_per_run": 4}, None, "exceeds max_concurrent 3"),
    ({"gpus_per_run": 2, "num_gpus": 0.5}, None, "one GPU each"),
    ({"gpus_per_run": 2}, {"name": "simulated"},
     r"needs a backend that trains data parallel through Ray Train \(torch\)"),
    ({"gpus_per_run": 0}, None, "gpus_per_run"),
])
def test_data_parallel_settings_are_validated_naming_the_field(resources, backend, message):
    study = _study(**resources)
    if backend is not None:
        study["backend"] = backend
    with pytest.raises(InputError, match=rf"resources\.gpus_per_run.*{message}|{message}"):
        parse_study_config(study)
