"""Export a study to the experiment trackers researchers already look at: TensorBoard event files, an MLflow
tracking store, Weights & Biases in offline mode. Each through its own library, each optional, all off by
default:

    trackers:
      tensorboard: {}                              # <study_dir>/tensorboard/ (event files; `tensorboard --logdir`)
      mlflow: {}                                   # sqlite:///<study_dir>/mlflow.db (`mlflow ui --backend-store-uri`)
      wandb: {project: my-scaling-study}           # offline: <study_dir>/wandb/ (`wandb sync` uploads it later)

    pip install 'skillscale[tensorboard]'   # or [mlflow], [wandb], [trackers] for all three

What is logged, with the step = the run's position in the ledger (1, 2, ...): per finished run `run/loss/<skill>`,
`run/n_params`, `run/n_tokens`, `run/flops`, `run/ok` (1 ok, 0 diverged or failed) and `study/flops_spent`;
per refit, per target, `target/<name>/n_star`, `.../n_star_lo`, `.../n_star_hi` (95% interval) and
`.../rel_halfwidth` (only while identifiable); at the end the stop reason (a tag or summary) and final values.

Lifecycle: `Trackers.open(config, study_name, study_dir, params)` once per controller start (an InputError
naming the extra to install if a library is missing); `log_ledger(rows)` after each ledger append (it exports
the rows not exported yet); `log_estimates(step, targets)` after each refit; `log_result(result)` at the stop;
`close()`. A restarted controller continues the same MLflow and W&B runs (their ids are kept in
<study_dir>/trackers.json) and exports only the ledger rows not exported yet, so nothing is logged twice or
lost. A tracker that fails mid-study (a full disk, a crashed service) is switched off with one warning:
export never stops a study.
"""

from __future__ import annotations

import json
import math
import secrets
import warnings
from pathlib import Path
from typing import Any

from pydantic import Field

from skillscale.atomic import atomic_write_json
from skillscale.config_types import ConfigModel
from skillscale.errors import InputError

STATE_FILE = "trackers.json"


class TensorBoardConfig(ConfigModel):
    log_dir: str | None = Field(default=None, description="event file directory (default <study_dir>/tensorboard)")


class MlflowConfig(ConfigModel):
    tracking_uri: str | None = Field(
        default=None, description="MLflow tracking store (default sqlite:///<study_dir>/mlflow.db: a local file; "
                                  "MLflow 3 keeps its ./mlruns file store only behind MLFLOW_ALLOW_FILE_STORE)")
    experiment: str | None = Field(default=None, description="experiment name (default: the study's name)")


class WandbConfig(ConfigModel):
    project: str | None = Field(default=None, description="W&B project (default: the study's name)")
    mode: str = Field(default="offline", pattern="^(offline|online)$",
                      description="offline (default) writes <dir>/wandb/ for a later `wandb sync`")
    dir: str | None = Field(default=None, description="where wandb writes (default: the study dir)")


class TrackersConfig(ConfigModel):
    """`trackers:` in the study config: each tracker present is on (an empty mapping takes the defaults)."""

    tensorboard: TensorBoardConfig | None = Field(
        default=None, description="write TensorBoard event files ([tensorboard](#trackerstensorboard))")
    mlflow: MlflowConfig | None = Field(default=None, description="log to MLflow ([mlflow](#trackersmlflow))")
    wandb: WandbConfig | None = Field(default=None, description="log to Weights & Biases ([wandb](#trackerswandb))")

    @property
    def enabled(self) -> bool:
        return any(v is not None for v in (self.tensorboard, self.mlflow, self.wandb))

    def check(self) -> None:
        """Before a study starts: every tracker turned on has its library (InputError naming the extra)."""
        for field, (module, extra) in _LIBRARIES.items():
            if getattr(self, field) is not None:
                _import(module, extra, field)


_LIBRARIES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow"),
              "wandb": ("wandb", "wandb")}  # config field -> (module to import, pip extra)


def _import(module: str, extra: str, field: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(f"trackers.{field}: needs the {extra} package (pip install 'skillscale[{extra}]')") from None


def run_metrics(row: dict) -> dict[str, float]:
    """The scalars one ledger row contributes (finite values only: trackers reject or mis-plot NaN)."""
    metrics = {f"run/{k}": float(v) for k, v in row.items() if k.startswith("loss/") and v is not None}
    metrics.update({f"run/{k}": float(row[k]) for k in ("n_params", "n_tokens", "flops") if row.get(k) is not None})
    metrics["run/ok"] = 1.0 if row.get("status") == "ok" else 0.0
    return {k: v for k, v in metrics.items() if math.isfinite(v)}


def target_metrics(targets: list[dict]) -> dict[str, float]:
    """Per target: N* with its 95% interval and relative half-width, where identifiable (finite)."""
    metrics = {}
    for t in targets:
        lo, hi = (t.get("n_params_ci95") or (None, None))[:2]
        values = {"n_star": t.get("n_params"), "n_star_lo": lo, "n_star_hi": hi,
                  "rel_halfwidth": t.get("rel_halfwidth")}
        for key, value in values.items():
            if value is not None and math.isfinite(float(value)):
                metrics[f"target/{t['name']}/{key}"] = float(value)
    return metrics


class _TensorBoard:
    def __init__(self, config: TensorBoardConfig, study_name: str, study_dir: Path, params: dict, state: dict):
        _import("tensorboard", "tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(config.log_dir or study_dir / "tensorboard"))
        if "tensorboard_started" not in state:
            self.writer.add_text("study/config", "```\n" + json.dumps(params, indent=2, default=str) + "\n```")
            state["tensorboard_started"] = True

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def log_result(self, result: dict) -> None:
        self.writer.add_text("study/stop_reason", str(result.get("stop_reason")))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _Mlflow:
    def __init__(self, config: MlflowConfig, study_name: str, study_dir: Path, params: dict, state: dict):
        _import("mlflow", "mlflow", "mlflow")
        from mlflow.tracking import MlflowClient

        uri = config.tracking_uri or f"sqlite:///{Path(study_dir).absolute() / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=uri)
        run_id = state.get("mlflow_run_id")
        if run_id is None:
            name = config.experiment or study_name
            experiment = self.client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
            run_id = self.client.create_run(experiment_id, run_name=study_name).info.run_id
            from mlflow.entities import Param

            self.client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in _flat(params).items()])
            state["mlflow_run_id"] = run_id
        self.run_id = run_id

    def log(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        stamp = _now_ms()
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, stamp, step) for k, v in metrics.items()])

    def log_result(self, result: dict) -> None:
        self.client.set_tag(self.run_id, "stop_reason", str(result.get("stop_reason")))

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class _Wandb:
    def __init__(self, config: WandbConfig, study_name: str, study_dir: Path, params: dict, state: dict):
        wandb = _import("wandb", "wandb", "wandb")
        run_id = state.setdefault("wandb_run_id", secrets.token_hex(4))  # W&B ids: [a-z0-9]
        self.run = wandb.init(project=config.project or study_name, name=study_name, id=run_id, resume="allow",
                              mode=config.mode, dir=str(config.dir or study_dir), config=params,
                              settings=wandb.Settings(silent=True, console="off"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def log_result(self, result: dict) -> None:
        self.run.summary["stop_reason"] = str(result.get("stop_reason"))

    def close(self) -> None:
        self.run.finish()


_SINKS = {"tensorboard": _TensorBoard, "mlflow": _Mlflow, "wandb": _Wandb}


class Trackers:
    """The trackers a study turned on (see the module docstring for the order of calls)."""

    def __init__(self, sinks: dict[str, Any], study_dir: Path, state: dict):
        self.sinks = sinks
        self.study_dir = Path(study_dir)
        self.state = state
        self.last_step = int(state.get("exported_runs", 0))  # ledger rows already exported

    @classmethod
    def open(cls, config: TrackersConfig | None, study_name: str, study_dir: Path, params: dict) -> Trackers:
        study_dir = Path(study_dir)
        state = _read_state(study_dir)
        sinks = {}
        if config is not None:
            for field, sink in _SINKS.items():
                section = getattr(config, field)
                if section is not None:
                    sinks[field] = sink(section, study_name, study_dir, params, state)
        trackers = cls(sinks, study_dir, state)
        trackers._save()
        return trackers

    def log_ledger(self, rows: list[dict]) -> None:
        """Export the ledger rows not exported yet (all of them on a first start; the tail after a restart):
        call it after every ledger append."""
        if not self.sinks:
            return
        flops = 0.0
        for step, row in enumerate(rows, start=1):
            flops += float(row.get("flops") or 0.0)
            if step > self.last_step:
                self.log_run(step, row, flops_spent=flops)

    def log_run(self, step: int, row: dict, flops_spent: float | None = None) -> None:
        """One ledger row (the `step`-th) and the study's FLOPs spent through it."""
        metrics = run_metrics(row)
        if flops_spent is not None:
            metrics["study/flops_spent"] = float(flops_spent)
        self._each("log", step, metrics)
        self.last_step = max(self.last_step, step)
        self.state["exported_runs"] = self.last_step
        self._save()

    def log_estimates(self, step: int, targets: list[dict]) -> None:
        """After a refit on the first `step` ledger rows: each target's N* and interval (TargetEstimate.to_dict())."""
        metrics = target_metrics(targets)
        if metrics:
            self._each("log", step, metrics)

    def log_result(self, result: dict) -> None:
        self._each("log_result", result)

    def close(self) -> None:
        self._each("close")
        self.sinks = {}

    def _each(self, method: str, *args) -> None:
        for name, sink in list(self.sinks.items()):
            try:
                getattr(sink, method)(*args)
            except Exception as exc:  # export must never stop a study
                warnings.warn(f"trackers.{name}: switched off after an error ({type(exc).__name__}: {exc})",
                              RuntimeWarning, stacklevel=2)
                self.sinks.pop(name)

    def _save(self) -> None:
        if self.sinks or self.state:
            atomic_write_json(self.study_dir / STATE_FILE, self.state)


def _read_state(study_dir: Path) -> dict:
    path = study_dir / STATE_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise InputError(f"{path}: unreadable; delete it to start the tracker runs afresh") from None


def _flat(params: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list | dict) else value
    return out


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
