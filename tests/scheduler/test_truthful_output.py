"""Output that says what happens (issue #16, items 6 and 8): the actor's repr as the dashboard records it, many
targets summarised in the progress lines, fit snapshots that stay bounded."""

import copy
import math

from rich.console import Console

from scheduler.config import parse_study_config
from scheduler.estimates import TargetEstimate
from scheduler.progress import Progress
from scheduler.store import KEEP_EVERY, KEEP_SNAPSHOTS
from scheduler.study import Study
from tests.conftest import SMALL_STUDY


def _many_targets(n):
    return [{"name": f"t{i:04d}", "weights": {"knowledge": i / (n - 1), "code": 1 - i / (n - 1)}, "flops": 1e20}
            for i in range(n)]


def test_the_dashboard_repr_names_the_worker_not_a_stale_state(ray_local):
    """Ray records an actor's repr once, at creation: a repr naming the current run read 'idle' throughout."""
    from ray.util.state import list_actors

    import tests.conftest as shared
    from scheduler.actor import start_actor

    cfg = parse_study_config(SMALL_STUDY)
    actor = start_actor(cfg.backend, "w7", num_cpus=0.1, num_gpus=0, name="repr-check")
    try:
        ray_local.get(actor.__ray_ready__.remote())
        (state,) = list_actors(address=f"http://127.0.0.1:{shared.DASHBOARD_PORT}", detail=True,
                               filters=[("name", "=", "repr-check")])
        assert state.repr_name == "TrainerActor[w7]"
    finally:
        ray_local.kill(actor)


def test_a_thousand_targets_make_a_short_progress_line():
    study = copy.deepcopy(SMALL_STUDY)
    study["targets"] = _many_targets(1000)
    cfg = parse_study_config(study)
    targets = tuple(TargetEstimate(name=t.name, weights=dict(t.weights), mix={}, flops=t.flops, n_params=1e9,
                                   n_params_ci95=(0.9e9, 1.1e9), n_tokens=1e10, n_tokens_ci95=(0.9e10, 1.1e10),
                                   rel_halfwidth=0.05 + i * 1e-4 if i % 3 else math.inf) for i, t in
                    enumerate(cfg.targets))
    with Study(cfg) as in_memory:
        status = in_memory.status()
    status = type(status)(**{**status.__dict__, "targets": targets})
    console = Console(record=True, width=400)
    Progress(console=console).heartbeat(status)
    from trainers.spec import RunResult

    Progress(console=console).run_finished(status, RunResult("r", "ok", 10**7, 10**9, 6e16, {"knowledge": 3.0}))
    line = console.export_text().strip().splitlines()[-1]
    assert len(line) < 400 and "1000 targets, 666 identifiable" in line and "widest t0998" in line
    assert "repeats" not in line
    repeated = RunResult("r", "ok", 10**7, 10**9, 6e16, {"knowledge": 3.0}, data_epochs={"code": 2.0, "general": 9.66})
    Progress(console=console).run_finished(status, repeated)
    assert console.export_text().strip().splitlines()[-1].endswith("| repeats general 9.7x")


def test_fit_snapshots_stay_bounded(tmp_path):
    study = copy.deepcopy(SMALL_STUDY)
    targets = [{"name": f"t{i}", "weights": {("knowledge", "code")[i % 2]: 1.0}, "flops": 1e20 * (1 + i)}
               for i in range(40)]  # single-skill targets: closed-form optima, a cheap refit
    study.update(max_concurrent=1, max_runs=32, targets=targets)
    study["proposer"].update(n_boot=20, n_candidates=64, inner_trials=0, seed_runs=6)
    cfg = parse_study_config(study)
    backend = cfg.backend.build()
    with Study(cfg, tmp_path) as s:
        s.reconcile()
        for _ in range(32):
            (spec,) = s.propose(1)
            s.record(spec, backend.run(spec, tmp_path / "runs" / spec.run_id))
    kept = sorted(p.name for p in (tmp_path / "fits").glob("fit-*.json"))
    refits = 32 - 8 + 1  # a fit from the 8th run on
    assert len(kept) == KEEP_SNAPSHOTS + sum(1 for i in range(8, 32 - KEEP_SNAPSHOTS + 1) if i % KEEP_EVERY == 0)
    assert len(kept) < refits and kept[-1] == "fit-00032.json"
