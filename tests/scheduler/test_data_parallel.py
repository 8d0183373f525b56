"""Ray Train on CPU: a run trained by 2 gloo workers of a TorchTrainer, one of which is killed mid-run, resumes
from rank 0's checkpoint and ends with the single-process run's losses; a study whose runs train on 2 workers
through the controller. (The losses step by step, without Ray: tests/trainers/test_distributed.py; the
controller's slot accounting: test_data_parallel_dispatch.py.)"""

import os

import pytest

from scheduler.config import parse_study_config
from scheduler.data_parallel import train_data_parallel
from tests.conftest import TINY_TORCH_SETTINGS, torch_backend_section
from tests.trainers.conftest import MIX
from trainers import checkpoint
from trainers.spec import RunResult, RunSpec

SPEC = RunSpec(n_params=70_000, n_tokens=6_000, mix=MIX, seed=3, hparams={"batch_tokens": 512})
SETTINGS = {**TINY_TORCH_SETTINGS, "micro_batch_rows": 4, "checkpoint_every": 4}
KILL_AT = 6  # step at which rank 1 dies, once; the newest checkpoint then is step 4


def _backend(progress=None):
    """The study's typed torch backend config for SETTINGS (with a progress hook)."""
    section = torch_backend_section(SETTINGS)
    cfg = parse_study_config({
        "skills": ["knowledge", "code"], "domains": list(MIX), "mix": {"fixed": MIX}, "n_params": [6e4, 8e4],
        "n_tokens": [5e3, 7e3], "tokens_per_param": None, "compute_cap": 1e12, "backend": section,
        "targets": [{"name": "k", "weights": {"knowledge": 1.0}, "flops": 1e13}]}).backend
    if progress is None:
        return cfg
    return cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"progress": progress})})


def test_two_ray_train_workers_survive_a_killed_worker_with_the_single_process_losses(ray_local, tmp_path):
    marker = str(tmp_path / "killed")

    def kill_rank_1_once(step, n_steps, loss, lr):  # pickled by value into the workers
        import torch.distributed

        if step == KILL_AT and torch.distributed.get_rank() == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)  # a preempted worker: no cleanup, no exception

    run_dir = tmp_path / "run"
    ref = train_data_parallel.remote(_backend(kill_rank_1_once), SPEC.to_dict(), str(run_dir), num_workers=2,
                                     num_cpus=0.5, use_gpu=False, max_failures=1)
    result = RunResult.from_dict(ray_local.get(ref, timeout=900))
    assert os.path.exists(marker)  # the worker did die, and the group was restarted
    assert checkpoint.newest_step(run_dir) == 12  # the final checkpoint, by rank 0, in the run's own directory
    single = _backend().build().run(SPEC, tmp_path / "single")
    assert result.status == "ok" and result.run_id == SPEC.run_id and result.n_params == single.n_params
    assert result.losses == pytest.approx(single.losses, rel=1e-4)
    assert result.domain_losses == pytest.approx(single.domain_losses, rel=1e-4)


def test_a_study_trains_its_large_runs_data_parallel(ray_local, tmp_path):
    """The controller's path end to end: every run of this study (min FLOPs 0) trains on 2 Ray Train workers, in
    the run directory a single-slot run would use, and lands in the ledger like any run."""
    import pyarrow.parquet as pq

    from scheduler.controller import Controller

    study = {
        "name": "dp-smoke", "skills": ["knowledge", "code"], "domains": list(MIX), "mix": {"fixed": MIX},
        "n_params": [7e4, 9e4], "n_tokens": [5e3, 7e3], "tokens_per_param": None, "compute_cap": 1e12,
        "targets": [{"name": "k", "weights": {"knowledge": 1.0}, "flops": 1e13}], "max_runs": 1,
        "max_concurrent": 2, "resources": {"num_cpus": 0.5, "gpus_per_run": 2},
        "backend": torch_backend_section({**TINY_TORCH_SETTINGS, "shape_grid": 0}), "proposer": {"n_boot": 50}}
    result = Controller(parse_study_config(study), tmp_path).run()
    rows = pq.read_table(tmp_path / "runs.parquet").to_pylist()
    assert result["n_runs"] == 1 and rows[0]["status"] == "ok" and 0 < rows[0]["loss/knowledge"] < 6
    run_dir = tmp_path / "runs" / rows[0]["run_id"]
    assert (run_dir / "ray_train").is_dir() and checkpoint.newest_step(run_dir) is not None
