"""The backend interface (what a TrainerActor runs) and the typed configs that build backends.

Lifecycle: the actor builds a backend once from the study's typed config (`make_backend(cfg.backend)`),
then calls `run(spec, run_dir)` for each run it is given, possibly many times; `run` must resume from the
newest checkpoint in `run_dir` if one exists, and return a RunResult (status "diverged" on NaN/inf, never
raise for a diverged run).

A study's `backend:` section is one of the configs in BACKEND_CONFIGS, chosen by its `name` (a pydantic
discriminated union, validated when the study config loads; errors name the field, e.g.
`backend.trainer.seq_len: ...`):

    backend: {name: simulated, truth: knowledge-code, noise: 0.005}
    backend: {name: torch, trainer: {device: cuda, seq_len: 256}, data: {knowledge_entities: 3000}}
    backend: {name: replay, table: ladder.csv}          # answers from a finished table (trainers/replay.py)

Adding a backend: write a config class (a trainers.capabilities.BackendConfigBase with `name: Literal["mine"]`, its
fields, each with its `Field(description=...)`, and a `build(self) -> Backend` method that imports the backend
lazily; override `capabilities` to declare what it supports beyond the defaults (run families, models per run,
interruptible runs, data parallelism), and `check(self, skills, spec)` to raise InputError for what cannot work, run
by scheduler.config.check_backend before Ray starts), then add the class to BACKEND_CONFIGS. Nothing dispatches on
the name: the scheduler asks `config.capabilities`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, Union

from pydantic import Field, field_validator

from trainers.capabilities import BackendConfigBase, Capabilities
from trainers.command import CommandConfig
from trainers.data import DataSettings
from trainers.function import PythonConfig
from trainers.replay import ReplayConfig
from trainers.settings import TrainerSettings
from trainers.simulated import SimulatedConfig
from trainers.spec import RunResult, RunSpec


class Backend(Protocol):
    def run(self, spec: RunSpec, run_dir: Path) -> RunResult:
        """Train (or simulate) `spec`, writing checkpoints under `run_dir`; return its result."""
        ...


class TorchConfig(BackendConfigBase):
    """The built-in trainer (trainers/torch_backend.py). `trainer`: how runs execute (TrainerSettings: device,
    compile, seq_len, checkpoint_every, ...); `data`: what the data is (DataSettings: corpora, knowledge_entities,
    eval_samples, ...). Both are the trainer's own settings models, validated here as sections of the study file."""

    name: Literal["torch"] = Field(description="selects this backend")
    trainer: TrainerSettings = Field(default_factory=TrainerSettings,
                                     description="how runs execute (trainers/settings.py TrainerSettings)")
    data: DataSettings = Field(default_factory=DataSettings, description="what the data is (trainers/data.py "
                                                                         "DataSettings)")

    @field_validator("trainer", "data", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        """`trainer:` with every line under it commented out reads as null: the defaults."""
        return {} if value is None else value

    def build(self) -> Backend:
        from trainers.torch_backend import TorchBackend

        return TorchBackend(trainer=self.trainer, data=self.data)

    @property
    def capabilities(self) -> Capabilities:
        """Run families (run_family), data-parallel runs through Ray Train, trainer.seed_replicas models per
        run (a run costs that many times 6ND: trainers/replicas.py), and runs on fewer unique tokens than they
        train on (RunSpec.unique_tokens: trainers/data.py, limit_unique)."""
        return Capabilities(families=True, data_parallel=True, models_per_run=int(self.trainer.seed_replicas),
                            repeats=True)

    def frozen_defaults(self) -> dict:
        """The per-run hyperparameter defaults of this code (trainers/hparams.py run_defaults)."""
        from trainers.hparams import run_defaults

        return run_defaults()

    def with_skills(self, skills: list[str], skill_evals: dict[str, str]) -> TorchConfig:
        """The study's `skills: [{name, eval}]` entries become the trainer's data.skill_evals."""
        from skillscale.config_types import FieldError

        if not skill_evals:
            return self
        own = dict(self.data.skill_evals)
        for skill, path in skill_evals.items():
            if own.get(skill, path) != path:
                raise FieldError("skills", f"{skill!r} has two eval files: {path!r} here and {own[skill]!r} in "
                                           "backend.data.skill_evals")
        data = DataSettings.model_validate({**self.data.model_dump(), "skill_evals": {**own, **skill_evals}})
        return self.model_copy(update={"data": data})

    def check(self, skills: list[str], spec: RunSpec) -> None:
        """Before a study starts: the skills are ones the trainer evaluates and `spec` (the smallest run, with
        the study's hparams) plans; on the CPU, since the driver (a cluster head) may have no GPU."""
        from skillscale.errors import InputError
        from trainers.data import skill_names
        from trainers.torch_backend import TorchBackend

        known = skill_names(self.data)
        unknown = [s for s in skills if s not in known]
        if unknown:
            raise InputError(f"skills: the torch backend evaluates {list(known)} (more through data.skill_evals), "
                             f"not {unknown}")
        TorchBackend(trainer=self.trainer.model_copy(update={"device": "cpu"}), data=self.data).plan(spec)


# Add a backend's config class here (see the module docstring).
BACKEND_CONFIGS = (SimulatedConfig, TorchConfig, CommandConfig, PythonConfig, ReplayConfig)
BackendConfig = Annotated[Union[BACKEND_CONFIGS], Field(discriminator="name")]  # noqa: UP007 (built from a tuple)
BACKEND_NAMES = tuple(c.model_fields["name"].annotation.__args__[0] for c in BACKEND_CONFIGS)


def make_backend(config) -> Backend:
    """Build the backend a typed config describes (one of BACKEND_CONFIGS)."""
    return config.build()
