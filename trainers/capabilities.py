"""What a backend can do, declared by its config: the one place the scheduler asks, instead of a backend's name.

    class MyConfig(BackendConfigBase):
        name: Literal["mine"]
        @property
        def capabilities(self) -> Capabilities:
            return Capabilities(families=True)          # declare only what differs from the defaults

Every backend's config (trainers/backend.py BACKEND_CONFIGS) subclasses BackendConfigBase. The defaults are the
least a backend may do: one model per run, no run families, no data parallelism, a run that cannot be interrupted.
A backend that does more says so by overriding `capabilities`; the scheduler (study config validation, pricing,
dispatch, cancellation) reads nothing else about it (as Ray Tune's `Searcher.set_max_concurrency` returns False
unless a searcher overrides it).

Lifecycle of a backend config, in call order: validated from the study's `backend:` section; `with_skills(skills,
skill_evals)` once the study's skills are known; `for_study(study)` once the whole study config is (its bounds and
mixes: a backend that answers from a table needs them); `check(skills, spec)` before Ray starts (raise InputError
for what cannot work); `capabilities` whenever the scheduler decides something; `frozen_defaults()` when the study
config is frozen into study.yaml; `build()` once per worker actor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from skillscale.config_types import ConfigModel

if TYPE_CHECKING:
    from trainers.spec import RunSpec


@dataclass(frozen=True, kw_only=True, slots=True)
class Capabilities:
    """What one backend supports. Each field's default is what a backend gets unless it declares otherwise."""

    families: bool = False
    """The backend has `run_family(FamilySpec, run_dir) -> [RunResult]`: one warmup-stable-decay training gives
    several D as cooldown branches (`families.enabled` needs it)."""

    models_per_run: int = 1
    """Models one run trains (seed replicas): a run costs this many times 6ND."""

    stop_grace_s: float | None = None
    """None: a run cannot be interrupted (Ray only sets a flag on a sync actor), so a cancelled run is not waited
    for. A number: `run(spec, run_dir, should_stop=...)` polls `should_stop()` and stops within this many seconds
    (the controller cancels runs at a pause and waits that long, plus a margin, before it stops the workers)."""

    data_parallel: bool = False
    """A run can train on several workers through Ray Train (scheduler/data_parallel.py; `resources.gpus_per_run >
    1` needs it)."""

    repeats: bool = False
    """The backend honours `RunSpec.unique_tokens`: it trains a run on that many distinct tokens, read D / U times
    over. The proposer then buys runs that repeat their data for targets that declare `unique_tokens`
    (scheduler/proposer.py); without it, only prior runs with `n_unique_tokens` can show what repetition costs."""

    def __post_init__(self) -> None:
        if self.models_per_run < 1:
            raise ValueError(f"Capabilities.models_per_run: expected >= 1, got {self.models_per_run}")
        if self.stop_grace_s is not None and self.stop_grace_s < 0:
            raise ValueError(f"Capabilities.stop_grace_s: expected None or >= 0, got {self.stop_grace_s}")


class BackendConfigBase(ConfigModel):
    """Base of a backend's typed config (`backend:` in a study). Subclasses add `name: Literal[...]`, their fields
    and `build()`; everything else has a default here (see the module docstring for the call order)."""

    @property
    def capabilities(self) -> Capabilities:
        """What this backend supports (defaults: Capabilities()); override to declare more."""
        return Capabilities()

    def with_skills(self, skills: Sequence[str], skill_evals: Mapping[str, str]) -> BackendConfigBase:
        """This config knowing the study's skills and their evaluation files (default: it needs neither)."""
        return self

    def for_study(self, study) -> BackendConfigBase:
        """This config knowing the whole study config (default: it needs nothing of it)."""
        return self

    def check(self, skills: list[str], spec: RunSpec) -> None:
        """Raise InputError for what cannot work, before Ray starts; `spec` is the study's smallest run."""

    def frozen_defaults(self) -> dict | None:
        """Defaults of this code that a run's results depend on but the config does not state, frozen into
        study.yaml (`trainer_defaults`) so that a resume under other defaults is refused; None: there are none."""
        return None

    def build(self):
        """The backend itself (trainers.backend.Backend), built once per worker actor."""
        raise NotImplementedError(f"{type(self).__name__} must define build()")
