"""Tracker export (scheduler/trackers.py): what each library wrote, read back with that library; a restart
continues without logging twice; a missing library is one line naming the extra; a failing tracker is switched
off without stopping anything. The library tests skip where that optional extra is not installed."""

import glob
import json
import math
import sys

import pytest

from scheduler.trackers import Trackers, TrackersConfig, run_metrics, target_metrics
from skillscale.errors import InputError

ROWS = [
    {"run_id": "a", "status": "ok", "loss/math": 2.0, "loss/code": 1.0, "n_params": 10, "n_tokens": 100,
     "flops": 6000.0},
    {"run_id": "b", "status": "diverged", "loss/math": math.nan, "loss/code": 1.5, "n_params": 20, "n_tokens": 100,
     "flops": 12000.0},
    {"run_id": "c", "status": "ok", "loss/math": 1.8, "loss/code": 0.9, "n_params": 40, "n_tokens": 100,
     "flops": 24000.0},
]
TARGETS = [{"name": "math", "n_params": 1e6, "n_params_ci95": [9e5, 1.2e6], "rel_halfwidth": 0.15},
           {"name": "code", "n_params": math.inf, "n_params_ci95": [None, None], "rel_halfwidth": math.inf}]
PARAMS = {"skills": ["math", "code"], "tolerance": 0.1, "backend": {"name": "command"}}


def export(config: dict, study_dir, rows=ROWS) -> None:
    """One controller sitting: open, the ledger so far, a refit, the stop."""
    trackers = Trackers.open(TrackersConfig.model_validate(config), "demo", study_dir, PARAMS)
    trackers.log_ledger(rows)
    trackers.log_estimates(len(rows), TARGETS)
    trackers.log_result({"stop_reason": "converged"})
    trackers.close()


def test_metrics_leave_out_what_is_not_finite():
    assert run_metrics(ROWS[1]) == {"run/loss/code": 1.5, "run/n_params": 20.0, "run/n_tokens": 100.0,
                                    "run/flops": 12000.0, "run/ok": 0.0}
    assert target_metrics(TARGETS) == {"target/math/n_star": 1e6, "target/math/n_star_lo": 9e5,
                                       "target/math/n_star_hi": 1.2e6, "target/math/rel_halfwidth": 0.15}


def test_off_by_default_writes_nothing(tmp_path):
    export({}, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_library_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # makes `import mlflow` raise ImportError
    with pytest.raises(InputError, match=r"^trackers.mlflow: needs the mlflow package \(pip install "
                                         r"'skillscale\[mlflow\]'\)$"):
        Trackers.open(TrackersConfig(mlflow={}), "demo", tmp_path, PARAMS)


def test_a_failing_tracker_is_switched_off_with_a_warning(tmp_path):
    class Broken:
        def log(self, step, metrics):
            raise OSError("disk full")

    trackers = Trackers({"tensorboard": Broken()}, tmp_path, {})
    with pytest.warns(RuntimeWarning, match="trackers.tensorboard: switched off after an error .*disk full"):
        trackers.log_ledger(ROWS)
    assert trackers.sinks == {}
    trackers.log_ledger(ROWS)  # nothing left to fail


def test_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    export({"tensorboard": {}}, tmp_path, rows=ROWS[:2])
    export({"tensorboard": {}}, tmp_path, rows=ROWS)  # a restarted controller: only row 3 is new
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = lambda tag: [(e.step, e.value) for e in events.Scalars(tag)]  # noqa: E731
    assert scalars("run/loss/math") == [(1, 2.0), (3, pytest.approx(1.8))]  # the diverged run's NaN left out
    assert scalars("run/ok") == [(1, 1.0), (2, 0.0), (3, 1.0)]
    assert scalars("study/flops_spent") == [(1, 6000.0), (2, 18000.0), (3, 42000.0)]
    assert [s for s, _ in scalars("target/math/n_star")] == [2, 3]
    assert "target/code/n_star" not in events.Tags()["scalars"]  # not identifiable: nothing plotted


def test_mlflow_store(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    export({"mlflow": {}}, tmp_path, rows=ROWS[:2])
    export({"mlflow": {}}, tmp_path, rows=ROWS)
    state = json.loads((tmp_path / "trackers.json").read_text())
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    assert run.info.run_id == state["mlflow_run_id"]  # one run for the study, continued after the restart
    history = lambda key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]  # noqa: E731
    assert sorted(history("run/loss/code")) == [(1, 1.0), (2, 1.5), (3, 0.9)]
    assert sorted(history("target/math/rel_halfwidth")) == [(2, 0.15), (3, 0.15)]
    assert run.data.params["skills"] == '["math", "code"]' and run.data.params["backend.name"] == "command"
    assert run.data.tags["stop_reason"] == "converged"


def test_wandb_offline_run(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    export({"wandb": {"project": "p"}}, tmp_path)
    wandb.teardown()  # the W&B service writes the run file after finish() returns; this waits for it
    run_id = json.loads((tmp_path / "trackers.json").read_text())["wandb_run_id"]
    (record_file,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / f"run-{run_id}.wandb"))
    records = open(record_file, "rb").read()  # W&B's own protobuf records; keys and JSON values are plain bytes
    for key in (b"run/loss/math", b"target/math/n_star", b"study/flops_spent", b"stop_reason", b"converged"):
        assert key in records, key


def test_the_trackers_section_is_validated_checked_and_not_frozen(small_study, monkeypatch):
    from scheduler.config import parse_study_config

    small_study["trackers"] = {"tensorboard": {}, "mlflow": {"experiment": "e"}}
    cfg = parse_study_config(small_study)
    assert cfg.trackers.enabled and cfg.trackers.mlflow.experiment == "e" and cfg.trackers.wandb is None
    assert "trackers" not in cfg.frozen_dict()  # switching export on or off never blocks a resume
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the [mlflow] extra were not installed
    with pytest.raises(InputError, match=r"^trackers.mlflow: needs the mlflow package"):
        TrackersConfig(mlflow={}).check()  # run_study calls it before Ray starts
    small_study["trackers"] = {"neptune": {}}
    with pytest.raises(InputError, match=r"^study config: trackers.neptune: unknown field"):
        parse_study_config(small_study)


def test_a_study_exports_its_runs_and_estimates_to_tensorboard(ray_local, small_study, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from scheduler import parse_study_config, run_study

    small_study.update(max_runs=14, trackers={"tensorboard": {}})
    result = run_study(parse_study_config(small_study), tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    steps = [e.step for e in events.Scalars("run/loss/code")]
    assert steps == list(range(1, result["n_runs"] + 1))
    assert events.Scalars("study/flops_spent")[-1].value == pytest.approx(result["flops_spent"])
    assert "target/code/n_star" in events.Tags()["scalars"]  # 14 runs: the laws are identifiable
    assert json.loads((tmp_path / "trackers.json").read_text())["exported_runs"] == result["n_runs"]
