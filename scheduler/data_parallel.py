"""Data-parallel runs through Ray Train: one RunSpec trained by `num_workers` processes (part of the Ray edge,
with scheduler/controller.py and scheduler/actor.py; the training loop itself stays Ray-free).

    result = run_data_parallel(cfg.backend, spec.to_dict(), run_dir, num_workers=4, use_gpu=True)  # RunResult dict
    ref = train_data_parallel.options(name="run ...").remote(...)   # what the controller dispatches

Ray Train's TorchTrainer places the workers (a placement group from its ScalingConfig: one bundle of
{CPU: num_cpus, GPU: 1} per worker, packed onto as few nodes as possible) and builds the process group (NCCL on
CUDA, gloo on CPU). Each worker builds the study's torch backend (on CUDA on its own device,
ray.train.torch.get_device()) and calls `TorchBackend.run(spec, run_dir, world=World(rank, size))`
(trainers/distributed.py): rank 0 writes the run's usual checkpoints into `run_dir`, so the run resumes from them
after a preemption exactly as a single-GPU run does, on any number of workers; every worker returns rank 0's
RunResult, which rank 0 also writes to <run_dir>/result.json
(atomically), where run_data_parallel reads it after the fit. `run_dir` must be a path every worker sees (one node, or a
shared filesystem). Ray Train's own bookkeeping goes to <run_dir>/ray_train/.

Failures: `max_failures` worker-group restarts inside Ray Train (each resumes from the newest checkpoint), then
TrainingFailedError; the controller passes 0 and retries the run itself, counting tries as for any run.
"""

from __future__ import annotations

import json
from pathlib import Path

import ray

from skillscale.atomic import atomic_write_json
from trainers.spec import RunSpec

RESULT_FILE = "result.json"  # rank 0's RunResult, in the run's directory


def _train_worker(config: dict) -> None:
    """Ray Train's per-worker function: this worker's rank of the run; rank 0 writes the RunResult."""
    import ray.train.torch

    from trainers.distributed import World

    context = ray.train.get_context()
    world = World(rank=context.get_world_rank(), size=context.get_world_size())
    backend_cfg = config["backend"]
    if config["use_gpu"]:  # every worker of a node sees the node's GPUs: train on this worker's own
        import torch

        device = ray.train.torch.get_device()
        torch.cuda.set_device(device)  # NCCL's object collectives (the result's broadcast) use the current device
        device = str(device)
        trainer = backend_cfg.trainer.model_copy(update={"device": device})
        backend_cfg = backend_cfg.model_copy(update={"trainer": trainer})
    backend = backend_cfg.build()
    run_dir = Path(config["run_dir"])
    result = backend.run(RunSpec.from_dict(config["spec"]), run_dir, world=world)
    if world.is_main:  # Ray Train 2's Result keeps metrics only with a checkpoint of its own: a file is simpler
        atomic_write_json(run_dir / RESULT_FILE, result.to_dict(), sort_keys=True)


def run_data_parallel(backend, spec: dict, run_dir: str | Path, *, num_workers: int, num_cpus: float = 1.0,
                      use_gpu: bool = False, max_failures: int = 0) -> dict:
    """Train RunSpec.from_dict(spec) on `num_workers` Ray Train workers (blocks); RunResult.to_dict() of the run.

    `backend`: the study's backend config, one that declares data_parallel (trainers.backend.TorchConfig);
    `num_cpus`: CPUs per worker; `use_gpu`: one GPU per worker and NCCL, else gloo on CPU."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if not backend.capabilities.data_parallel:
        raise ValueError(f"data-parallel runs need a backend that declares capabilities.data_parallel, not "
                         f"{backend.name!r}")
    run_dir = Path(run_dir)
    run_id = RunSpec.from_dict(spec).run_id
    resources = {"CPU": float(num_cpus), **({"GPU": 1.0} if use_gpu else {})}
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"backend": backend, "spec": spec, "run_dir": str(run_dir), "use_gpu": use_gpu},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=int(num_workers), use_gpu=use_gpu, resources_per_worker=resources,
                                     placement_strategy="PACK"),
        run_config=RunConfig(name=f"run-{run_id}", storage_path=str((run_dir / "ray_train").resolve()),
                             failure_config=FailureConfig(max_failures=max_failures)),
    )
    (run_dir / RESULT_FILE).unlink(missing_ok=True)  # only this fit's result counts
    try:
        result = trainer.fit()
        if result.error is not None:
            raise result.error
    except Exception as exc:  # Ray Train's message starts with "Training failed due to worker errors:"
        raise DataParallelError(f"{num_workers} workers: {_first_worker_error(exc)}") from exc
    return json.loads((run_dir / RESULT_FILE).read_text())


class DataParallelError(RuntimeError):
    """A data-parallel run failed; the message is the first failing worker's error, in one line."""


def _first_worker_error(exc: Exception) -> str:
    """The lowest failing rank's error as one line (its exception's last line: "InputError: n_params: ..."),
    so that the controller's attempts.json and log say why, not only that the worker group failed."""
    failures = getattr(exc, "worker_failures", None) or {}
    source = failures[min(failures)] if failures else exc
    lines = [line.strip() for line in str(source).splitlines() if line.strip()]
    where = f"rank {min(failures)}: " if failures else ""
    return where + (lines[-1] if lines else type(source).__name__)[:300]


# the controller's task: fit() blocks, so it runs off the driver; it holds no resources itself (the workers do)
train_data_parallel = ray.remote(num_cpus=0, max_retries=0)(run_data_parallel)
