"""A real (tiny) torch run whose worker actor is killed mid-run finishes from its checkpoint on a new
actor with exactly the losses of an uninterrupted run (CPU, fp32, deterministic)."""

import time

import pytest

from tests.conftest import TINY_TORCH_SETTINGS, torch_backend_section
from trainers.backend import TorchConfig
from trainers.spec import RunSpec

pytestmark = pytest.mark.slow

BACKEND = TorchConfig.model_validate(torch_backend_section({**TINY_TORCH_SETTINGS, "checkpoint_every": 3}))
SPEC = RunSpec(n_params=70_000, n_tokens=30_000, mix={"knowledge": 0.5, "code": 0.3, "general": 0.2}, seed=3,
               hparams={"batch_tokens": 512})


def test_killed_torch_worker_resumes_to_identical_losses(ray_local, tmp_path):
    import ray

    from scheduler.actor import start_actor
    from trainers.spec import RunResult

    reference = start_actor(BACKEND, "ref", num_cpus=0.5, num_gpus=0, name=None)
    want = RunResult.from_dict(ray.get(reference.run.remote(SPEC.to_dict(), str(tmp_path / "ref"))))
    ray.kill(reference)

    run_dir = tmp_path / "killed"
    worker = start_actor(BACKEND, "w0", num_cpus=0.5, num_gpus=0, name=None)
    ref = worker.run.remote(SPEC.to_dict(), str(run_dir))
    deadline = time.monotonic() + 300
    while not list((run_dir / "checkpoints").glob("step_*.pt")) if (run_dir / "checkpoints").exists() else True:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        ready, _ = ray.wait([ref], timeout=0.02)
        assert not ready, "the run finished before it could be killed; make it longer"
    ray.kill(worker)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(ref)
    steps_at_kill = sorted(p.name for p in (run_dir / "checkpoints").glob("step_*.pt"))

    replacement = start_actor(BACKEND, "w1", num_cpus=0.5, num_gpus=0, name=None)
    got = RunResult.from_dict(ray.get(replacement.run.remote(SPEC.to_dict(), str(run_dir))))
    ray.kill(replacement)
    assert steps_at_kill, "killed before any checkpoint"
    assert got.status == want.status == "ok"
    assert got.losses == want.losses  # bit-identical on CPU
    assert got.domain_losses == want.domain_losses
