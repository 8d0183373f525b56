"""TrainerActor: the Ray actor that runs RunSpecs on a backend (one of the two modules importing Ray).

An actor builds its backend once and is reused across runs, so process start, data generation and
compiled graphs are paid once per worker, not once per run. Its `__repr__` names the worker
(`TrainerActor[w0]`): Ray records an actor's repr once, when it starts, for the dashboard's Actors view and
log prefixes (a repr naming the current run would read "idle" throughout), so what a worker
is training is shown where Ray does update it: each call is submitted as a task named after its run.
"""

from __future__ import annotations

from pathlib import Path

import ray

from trainers.backend import make_backend
from trainers.spec import FamilySpec, RunSpec

NODE_ID_LABEL = "ray.io/node-id"  # a label Ray sets on every node (Ray's scheduling docs, Labels)


@ray.remote(max_restarts=0, max_task_retries=0)
class TrainerActor:
    def __init__(self, backend, worker: str):
        self.worker = worker
        self.current = "idle"
        self.capabilities = backend.capabilities  # what it supports (trainers/capabilities.py)
        self.backend = make_backend(backend)  # a typed config of trainers.backend.BACKEND_CONFIGS

    def node(self) -> str:
        """The id of the Ray node this actor was placed on. The controller calls it right after creating the actor,
        before any run: while it is unanswered the actor is still waiting for a node (pending placement)."""
        return ray.get_runtime_context().get_node_id()

    def run(self, spec: dict, run_dir: str) -> dict:
        """Train one run (resuming from its checkpoint if any) and return RunResult.to_dict()."""
        run = RunSpec.from_dict(spec)
        self.current = f"run {run.run_id} N={run.n_params:.3g} D={run.n_tokens:.3g}"
        kwargs = {}
        if self.capabilities.stop_grace_s is not None:  # ray.cancel on a sync actor only sets this flag (Ray docs)
            kwargs["should_stop"] = ray.get_runtime_context().is_canceled
        try:
            return self.backend.run(run, Path(run_dir), **kwargs).to_dict()
        finally:
            self.current = "idle"

    def run_family(self, family: dict, run_dir: str) -> list[dict]:
        """Train a run family (FamilySpec.to_dict(); resuming from its checkpoints) and return one
        RunResult.to_dict() per branch, in order of D. Only backends that declare `capabilities.families`
        are given families (the study config refuses families.enabled for the others)."""
        spec = FamilySpec.from_dict(family)
        self.current = (f"family {spec.family_id} N={spec.n_params:.3g} "
                        f"D={spec.n_tokens[0]:.3g}..{spec.n_tokens[-1]:.3g}")
        try:
            return [r.to_dict() for r in self.backend.run_family(spec, Path(run_dir))]
        finally:
            self.current = "idle"

    def device(self) -> dict:
        """This worker's GPU, {"device": name, "peak_flops": dense bf16 FLOP/s}; {} when Ray gave it none (for the
        study's efficiency, scheduler/efficiency.py)."""
        if not ray.get_gpu_ids():
            return {}
        import torch

        from trainers.torch_backend import peak_flops_of_name

        if not torch.cuda.is_available():
            return {}
        name = torch.cuda.get_device_name(0)
        return {"device": name, "peak_flops": peak_flops_of_name(name)}

    def __repr__(self) -> str:
        return f"TrainerActor[{self.worker}]"


def start_actor(backend, worker: str, num_cpus: float, num_gpus: float, name: str | None,
                avoid_nodes: frozenset[str] = frozenset()):
    """A new TrainerActor with the study's resources, named `name` when that name is free, on none of `avoid_nodes`
    (Ray node ids, through a label selector on the `ray.io/node-id` label Ray sets on every node: Ray's scheduling
    docs, Labels). The controller passes nodes a worker just died on: a replacement placed on a node that is dying
    but not yet marked dead would cost its run a second try."""
    options = {"num_cpus": num_cpus, "num_gpus": num_gpus}
    if avoid_nodes:
        options["label_selector"] = {NODE_ID_LABEL: f"!in({','.join(sorted(avoid_nodes))})"}
    if name:
        try:
            ray.get_actor(name)
        except ValueError:
            options["name"] = name
    return TrainerActor.options(**options).remote(backend, worker)
