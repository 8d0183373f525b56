"""Study configuration: the YAML a researcher writes, validated before anything starts.

    from scheduler.config import load_study_config
    cfg = load_study_config("configs/quickstart.yaml")   # raises InputError naming the field

Every field has a default or a one-line error naming the field and what was allowed. Numbers may be
written as `1e18` (YAML 1.1 reads that as a string; we accept it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from fitting.conventions import FLOPS_PER_PARAM_TOKEN, training_flops
from scheduler.prior_runs import PriorRunsConfig
from scheduler.trackers import TrackersConfig
from skillscale.config_types import ConfigModel, FieldError, Integer, Number, located_error, one_line, read_number
from skillscale.errors import InputError
from trainers.backend import BACKEND_CONFIGS, BACKEND_NAMES, BackendConfig
from trainers.hparams import COOLDOWN_SHAPES, INIT_SCHEMES, OVERRIDABLE, SCHEDULES, check_overrides
from trainers.simulated import FAMILY_NOISE_CORRELATION

SIMPLEX_ATOL = 1e-6


class _Model(ConfigModel):
    pass


class Range(_Model):
    """A closed positive interval [lo, hi] on a log scale."""

    lo: Number = Field(gt=0, description="lower bound")
    hi: Number = Field(gt=0, description="upper bound")

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise ValueError("expected [lo, hi]")
            return {"lo": value[0], "hi": value[1]}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.lo < self.hi:
            raise ValueError(f"expected lo < hi, got [{self.lo:g}, {self.hi:g}] (bounds reversed?)")
        return self


class MixSpace(_Model):
    """The data mix: `fixed` weights over the training domains, or the whole simplex (`space: simplex`)
    with an optional floor per domain."""

    space: Literal["fixed", "simplex"] = Field(
        default="fixed", description="`fixed`: every run uses `fixed`; `simplex`: the proposer searches the mix")
    fixed: dict[str, Number] | None = Field(
        default=None, description="domain -> weight, summing to 1 (default: uniform over the domains)")
    floor: Number = Field(default=0.05, ge=0, lt=1, description="with `simplex`: the smallest weight of any domain")


class Target(_Model):
    """One quantity to pin down: the compute-optimal N at `flops` for a validation composition."""

    name: str = Field(description="the target's name in the results")
    weights: dict[str, Number] = Field(description="validation weighting over skills, summing to 1")
    flops: Number = Field(gt=0, description="target budget C_target (FLOPs), usually 10-1000x the largest run")
    mix: dict[str, Number] | None = Field(default=None, description="training mix at which to read the optimum")
    unique_tokens: Number | None = Field(
        default=None, gt=0, description="unique tokens the target run's data will hold: the optimum is read with "
                                        "repeated data worth less (families with a repetition term, docs/laws.md); "
                                        "null: unlimited data")


class Resources(_Model):
    """What one worker slot holds (an actor with num_gpus GPUs and num_cpus CPUs; max_concurrent slots), and which
    runs train data-parallel: a run whose 6ND reaches `data_parallel_min_flops` trains on `gpus_per_run` workers
    through Ray Train (scheduler/data_parallel.py), occupying that many slots, beside single-slot runs."""

    num_gpus: Number = Field(default=0, ge=0,
                             description="GPUs per worker slot (fractions pack several actors on one GPU)")
    num_cpus: Number = Field(default=1, ge=0, description="CPUs per worker slot")
    gpus_per_run: Integer = Field(default=1, ge=1, le=1024,
                              description="workers (one GPU each; CPU workers with num_gpus 0) of a data-parallel run; "
                                          "1: every run trains on one slot")
    data_parallel_min_flops: Number = Field(default=0, ge=0,
                                            description="with gpus_per_run > 1: runs of at least this many training "
                                                        "FLOPs (6ND) train data-parallel; smaller ones on one slot")

    def workers_for(self, n_params: float, n_tokens: float) -> int:
        """Workers (slots) a run of N parameters and D tokens trains on: gpus_per_run above the threshold, else 1."""
        if self.gpus_per_run > 1 and training_flops(n_params, n_tokens) >= self.data_parallel_min_flops:
            return self.gpus_per_run
        return 1


# int stays int and float float (a whole '8e6' string reads as an int): the values are hashed into run ids
HParamNumber = Annotated[int | float, BeforeValidator(read_number)]


class HParamOverrides(_Model):
    """`hparams:` overrides of the per-run hyperparameter rule for every run (trainers/hparams.py has the rule
    and the ranges; a field left out follows the rule). Only the fields set are sent with a RunSpec."""

    lr: HParamNumber | None = Field(default=None, gt=0, description="peak learning rate")
    batch_tokens: HParamNumber | None = Field(default=None, gt=0, description="tokens per step (whole sequences)")
    warmup_steps: Integer | None = Field(default=None, ge=0, description="linear warmup steps")
    min_lr_ratio: HParamNumber | None = Field(default=None, ge=0, le=1,
                                              description="final lr as a fraction of the peak")
    beta1: HParamNumber | None = Field(default=None, ge=0, lt=1, description="AdamW beta1")
    beta2: HParamNumber | None = Field(default=None, ge=0, lt=1, description="AdamW beta2")
    adam_eps: HParamNumber | None = Field(default=None, gt=0, description="AdamW epsilon")
    weight_decay: HParamNumber | None = Field(default=None, ge=0, description="AdamW weight decay")
    grad_clip: HParamNumber | None = Field(default=None, gt=0, description="gradient-norm clipping threshold")
    init_std: HParamNumber | None = Field(default=None, gt=0,
                                          description="initialisation std (with `init_scheme: gpt2`)")
    init_scheme: Literal[INIT_SCHEMES] | None = Field(
        default=None, description="small-init (the default): std sqrt(2/(5 d_model)); gpt2: std init_std; "
                                  "zero-out: residual outputs and the head start at zero; orthogonal: small-init's "
                                  "scale, orthogonal matrices")
    schedule: Literal[SCHEDULES] | None = Field(default=None, description="lr decay after warmup")
    cooldown_fraction: HParamNumber | None = Field(default=None, gt=0, le=1,
                                                   description="wsd: fraction of the steps in the final decay")
    cooldown_shape: Literal[COOLDOWN_SHAPES] | None = Field(default=None, description="wsd: the decay's shape")
    rule_n_tokens: HParamNumber | None = Field(default=None, gt=0,
                                               description="D at which the lr/batch/warmup rules are evaluated")

    @model_validator(mode="after")
    def _overrides_agree(self):
        """The trainer's own check of overrides that contradict each other (init_std under small-init)."""
        try:
            check_overrides(self.overrides())
        except InputError as exc:
            raise ValueError(str(exc).removeprefix("hparams.")) from None
        return self

    def overrides(self) -> dict:
        """What RunSpec.hparams carries (and what the run id hashes): the fields that were set."""
        return self.model_dump(exclude_none=True)


assert set(HParamOverrides.model_fields) == set(OVERRIDABLE), "HParamOverrides must list trainers.hparams.OVERRIDABLE"


def _backend_mapping(value: Any) -> Any:
    """`backend:` without a name is the simulated backend; the old free-form `settings:` is refused with
    what to write instead."""
    if isinstance(value, dict):
        if "settings" in value:
            raise FieldError("settings", "backend settings are now fields of `backend:` itself (simulated: "
                                         "`backend: {name: simulated, truth: ..., noise: ...}`; torch: "
                                         "`backend: {name: torch, trainer: {...}, data: {...}}`)")
        if "name" not in value:
            return {**value, "name": "simulated"}
        if value["name"] not in BACKEND_NAMES:
            raise FieldError("name", f"expected {' or '.join(map(repr, BACKEND_NAMES))}, got {value['name']!r}")
    return value


class ProposerConfig(_Model):
    """How proposals are made (defaults suit most studies)."""

    seed_runs: Integer = Field(default=12, ge=6, description="space-filling runs before the laws are trusted")
    seed_budget_skew: Number = Field(
        default=2.0, ge=1, le=8, description="the seed design places log C at u**skew of the way up the budget "
                                             "range (u uniform): 1 is log-uniform, 2 halves its FLOPs while still "
                                             "reaching the largest budget")
    n_boot: Integer = Field(default=200, ge=20, le=5000, description="bootstrap members for the law ensemble")
    n_candidates: Integer = Field(default=2048, ge=64, le=1_000_000, description="QMC candidates screened per proposal "
                              "(each is predicted by every bootstrap member: memory grows with n_boot x this)")
    inner_trials: Integer = Field(default=48, ge=0, le=10_000, description="inner Optuna trials refining the best "
                              "candidates")
    overhead_flops: Number = Field(
        default=1e17, ge=0,
        description="fixed cost per run, in FLOPs, added to 6ND when candidates are ranked (process start, "
                    "compilation of a new shape, eval, checkpoints). Set it to that cost at your measured rate: "
                    "priced too low, the loop buys hundreds of tiny runs (docs/gpu.md, Settings that matter). "
                    "1e17 is ~4 GPU-minutes at 40% MFU")
    run_price: Literal["fixed", "shadow"] = Field(
        default="shadow", description="'fixed': every run costs 6ND + overhead_flops in the ranking; 'shadow': "
                                      "when the current fit says the tolerance needs more than max_runs runs, a "
                                      "run is priced at the FLOPs left per run left (Study.run_price)")
    noise_floor: Number = Field(default=0.002, gt=0, description="smallest log-loss noise std assumed")
    explore_every: Integer = Field(default=0, ge=0, description="every n-th run (0: none) comes from the space-filling "
                                                            "design, so the fit never rests on a few corners")
    interval_inflation: Number = Field(
        default=1.0, ge=1.0, le=5.0,
        description="widen each target's interval in log space by this factor about the point estimate. 1.0: the "
                    "parametric bootstrap under the fitted noise model is calibrated inside the D/N band "
                    "(BENCHMARKS.md, Interval coverage); the residual bootstrap under-covers with few runs")
    max_epochs: Number | None = Field(
        default=None, ge=1, le=1000,
        description="most times a proposed run may read its unique tokens (runs that repeat their data are bought "
                    "only for targets with unique_tokens, from a backend that can repeat data, with law auto or "
                    "data_constrained, and not with run families). null: 4x the "
                    "epochs the most repeating target would read at 20 tokens per parameter, in [4, 100]; 1: no "
                    "run repeats its data")
    bootstrap: Literal["parametric", "residual", "pairs", "laplace"] = Field(
        default="parametric", description="how refits resample (fitting/parametric.py): simulated noise from the "
                                          "measured noise model (correlated across skills), residuals, whole runs, "
                                          "or a Laplace (sandwich) approximation without refits")


class SkillEntry(_Model):
    """A skill with its own evaluation set: `skills: [{name: math, eval: data/math.jsonl}, code]`."""

    name: str = Field(min_length=1)
    eval: str = Field(min_length=1, description="prompt/answer JSONL (answer NLL) or held-out text (mean NLL); "
                                                "trainers/data.py. A relative path is read from the working dir")


def _split_skill_entries(data: Any) -> Any:
    """`skills:` entries are names or {name, eval}: the names stay in `skills`, the evals join `skill_evals`."""
    if not isinstance(data, dict) or not isinstance(data.get("skills"), list):
        return data
    names, evals = [], dict(data.get("skill_evals") or {})
    for i, entry in enumerate(data["skills"]):
        if isinstance(entry, dict):
            try:
                skill = SkillEntry.model_validate(entry)
            except ValidationError as exc:
                raise FieldError(*located_error(exc, prefix=(f"skills[{i}]",))) from None
            names.append(skill.name)
            evals[skill.name] = skill.eval
        else:
            names.append(entry)
    return {**data, "skills": names, "skill_evals": evals}


class FamiliesConfig(_Model):
    """`families:` run families (scheduler/families.py): one warmup-stable-decay training at N gives several D as
    cooldown branches (Hägele et al. 2024, arXiv:2405.18392), proposed and priced as one candidate. Off by default:
    with the branches' noise correlated as on the GPU, a study of families needs more FLOPs to reach its tolerance
    than one of plain runs (BENCHMARKS.md, Run families in the scheduler)."""

    enabled: bool = Field(default=False, description="propose run families instead of single runs")
    max_branches: Integer = Field(default=4, ge=1, le=16, description="cooldown branches per family (D_1 < ... < D_k)")
    branch_span: Number = Field(default=10.0, ge=1.5, le=100.0,
                                description="largest D_k / D_1 of a family; branches are log-spaced within it and "
                                            "within the N, D and D/N bounds (torch: keep (1 - cooldown_fraction) / "
                                            "branch_span above the 5% warmup, or the cooldown would start in it)")
    cooldown_fraction: Number = Field(default=0.2, gt=0, lt=1,
                                      description="fraction of each branch's steps in its cooldown (Hägele et al. "
                                                  "2024: 20% matches cosine)")
    cooldown_shape: Literal[COOLDOWN_SHAPES] = Field(default="1-sqrt", description="shape of each branch's cooldown")
    noise_correlation: Number = Field(default=FAMILY_NOISE_CORRELATION, ge=0, lt=1,
                                      description="correlation of one skill's loss noise between branches of a "
                                                  "family, as the proposer assumes it (shared stable phase, seed and "
                                                  "data order; the default: BENCHMARKS.md, Run-family parity)")


class StudyConfig(_Model):
    """A whole study. See configs/quickstart.yaml for a commented example."""

    name: str = Field(default="study", description="the study's name; the study directory defaults to "
                                                    "studies/<name>")
    skills: list[str] = Field(min_length=1, description="skill names, or {name, eval} for a user skill")
    skill_evals: dict[str, str] = Field(default_factory=dict,
                                        description="skill -> its evaluation file (from `skills: [{name, eval}]`)")
    domains: list[str] = Field(default_factory=list, description="training domains; default: the skills")
    skill_domains: dict[str, str] = Field(default_factory=dict,
                                          description="the training domain that is each skill's own")
    mix: MixSpace = Field(default_factory=MixSpace,
                          description="the training data mix: fixed weights, or searched over the simplex")
    n_params: Range = Field(description="allowed model sizes N (see [what N counts](design.md#conventions)), [lo, hi]")
    n_tokens: Range = Field(description="allowed training tokens D, [lo, hi]")
    flops: Range | None = Field(default=None, description="allowed FLOPs of one run, C = 6ND, [lo, hi] (default: "
                                                          "whatever N and D allow)")
    tokens_per_param: Range | None = Field(
        default_factory=lambda: Range(lo=5.0, hi=640.0),
        description="allowed D/N (null: no bound). The default [5, 640] is the span of token multipliers of Gadre "
                    "et al. 2024 (arXiv:2403.08540: 5-640 tokens per parameter, from under- to heavily over-trained, "
                    "all following the scaling law), around Chinchilla's ~20 and inside the ~1-500 that isoFLOP "
                    "studies span; it keeps runs out of the few-step regime (D/N ~ 0.1) where no Chinchilla law "
                    "holds")
    targets: list[Target] = Field(min_length=1, description="the quantities to pin down; the study stops when every "
                                                           "one is within `tolerance`")
    tolerance: Number = Field(default=0.10, gt=0, lt=1, description="relative 95% half-width of N*(C_target)")
    law: Literal["auto", "chinchilla", "farseer", "data_constrained"] = Field(
        default="auto", description="the scaling-law form (fitting/families.py): auto weighs every applicable "
                                    "family by how well it predicts the largest runs from the others, and every "
                                    "interval holds the doubt about the form (fitting/averaging.py)")
    confirm_refits: Integer = Field(default=2, ge=1, le=20,
                                description="consecutive refits within tolerance needed to stop, the last "
                                            "confirmed by a refit with 4x the ensemble (guards against stopping "
                                            "on one lucky, too-narrow interval)")
    compute_cap: Number = Field(gt=0, description="total training FLOPs the study may spend")
    max_concurrent: Integer = Field(default=1, ge=1, le=1024, description="runs in flight at once (worker slots)")
    max_runs: Integer = Field(default=500, ge=1, description="most runs the study may start")
    max_tries: Integer = Field(default=3, ge=1, description="dispatches of one run before it is marked failed")
    resources: Resources = Field(default_factory=Resources,
                                 description="what one worker slot holds, and which runs train data-parallel")
    backend: BackendConfig = Field(default_factory=lambda: {"name": "simulated"}, validate_default=True,
                                   description="what trains a run (trainers/backend.py: simulated, torch)")
    hparams: HParamOverrides = Field(default_factory=HParamOverrides,
                                     description="hyperparameter overrides for every run (torch: trainers/hparams.py)")
    proposer: ProposerConfig = Field(default_factory=ProposerConfig,
                                     description="how proposals are made (defaults suit most studies)")
    families: FamiliesConfig = Field(default_factory=FamiliesConfig,
                                     description="run families (scheduler/families.py); off by default")
    prior_runs: PriorRunsConfig | None = Field(default=None, description="runs the study starts from: a CSV or "
                                               "parquet path (scheduler/prior_runs.py); never trained, not charged")
    storage: str | None = Field(default=None, description="Optuna RDB URL; default a journal file in the study dir")
    trackers: TrackersConfig = Field(default_factory=TrackersConfig,
                                     description="export to TensorBoard / MLflow / W&B (scheduler/trackers.py); off")
    seed: Integer = Field(default=0, ge=0,
                          description="seeds the runs, the proposer and the bootstrap (numpy takes >= 0)")
    trainer_defaults: dict[str, Any] | None = Field(
        default=None, description="written, not read: the torch trainer's per-run defaults (trainers/hparams.py "
                                  "run_defaults) as frozen into study.yaml, so that a resume under others is refused")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        """The study's name is the default study directory, studies/<name>: a single, visible path component."""
        bad = (not value or value.strip() != value or value in (".", "..") or len(value) > 100
               or any(c in value for c in "/\\\0") or not value.isprintable())
        if bad:
            raise ValueError(f"must be a plain name (a folder under studies/: no '/', no '..', not empty, at most "
                             f"100 printable characters), got {value!r}")
        return value

    @field_validator("backend", mode="before")
    @classmethod
    def _backend_named(cls, value: Any) -> Any:
        return _backend_mapping(value)

    @model_validator(mode="before")
    @classmethod
    def _skill_entries(cls, data: Any) -> Any:
        return _split_skill_entries(data)

    @model_validator(mode="after")
    def _consistent(self) -> StudyConfig:
        if len(set(self.skills)) != len(self.skills):
            raise _field_error("skills", "duplicate names")
        for skill in self.skill_evals:
            if skill not in self.skills:
                raise _field_error("skill_evals", f"unknown skill {skill!r} (skills: {', '.join(self.skills)})")
        # what the skills and their eval files mean to the backend
        object.__setattr__(self, "backend", self.backend.with_skills(self.skills, self.skill_evals))
        domains = self.domains or list(self.skills)
        object.__setattr__(self, "domains", domains)
        if not self.skill_domains:
            object.__setattr__(self, "skill_domains", {s: s for s in self.skills if s in domains})
        for skill, dom in self.skill_domains.items():
            if skill not in self.skills:
                raise _field_error("skill_domains", f"unknown skill {skill!r} (skills: {', '.join(self.skills)})")
            if dom not in domains:
                raise _field_error(f"skill_domains.{skill}", f"unknown domain {dom!r} (domains: {', '.join(domains)})")
        if self.mix.space == "fixed":
            fixed = self.mix.fixed or {d: 1.0 / len(domains) for d in domains}
            _check_simplex("mix.fixed", fixed, domains)
            object.__setattr__(self.mix, "fixed", {d: float(fixed.get(d, 0.0)) for d in domains})
        elif self.mix.floor * len(domains) >= 1:
            raise _field_error("mix.floor", f"floor {self.mix.floor:g} x {len(domains)} domains must be < 1")
        for i, target in enumerate(self.targets):
            where = f"targets[{i}]"
            for skill in target.weights:
                if skill not in self.skills:
                    known = ", ".join(self.skills)
                    raise _field_error(f"{where}.weights", f"unknown skill {skill!r} (skills: {known})")
            _check_simplex(f"{where}.weights", target.weights, self.skills)
            if target.mix is not None:
                if self.mix.space != "simplex":
                    raise _field_error(f"{where}.mix", "a target mix needs `mix.space: simplex` (with a fixed mix "
                                                       "every run and every optimum is at that mix)")
                _check_simplex(f"{where}.mix", target.mix, domains)
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise _field_error("targets", f"duplicate target names {names}")
        if self.flops is not None:
            lo = training_flops(self.n_params.lo, self.n_tokens.lo)
            hi = training_flops(self.n_params.hi, self.n_tokens.hi)
            if self.flops.hi < lo or self.flops.lo > hi:
                raise _field_error("flops", f"[{self.flops.lo:g}, {self.flops.hi:g}] is unreachable with the "
                                            "N and D bounds")
        if self.tokens_per_param is not None:
            n_lo, n_hi = self.n_bounds(np.geomspace(self.min_run_flops, self.max_run_flops, 64))
            if not np.any(n_lo <= n_hi):
                r = self.tokens_per_param
                raise _field_error("tokens_per_param", f"no run within the N, D and FLOP bounds has D/N in "
                                                       f"[{r.lo:g}, {r.hi:g}]")
        object.__setattr__(self, "backend", self.backend.for_study(self))  # e.g. replay: the study's region
        smallest = self.smallest_run()
        models = self.backend.capabilities.models_per_run
        cost = max(training_flops(*smallest), self.min_run_flops) * models
        if self.compute_cap < cost:
            each = f" ({models} models per run)" if models > 1 else ""
            raise _field_error("compute_cap", f"{self.compute_cap:.3g} FLOPs cannot buy one run: the smallest allowed "
                                              f"run (N={smallest[0]:.3g}, D={smallest[1]:.3g}) costs {cost:.3g}"
                                              f"{each}; raise compute_cap or lower the n_params/n_tokens/flops bounds")
        if self.families.enabled:
            _check_families(self)
        if self.resources.gpus_per_run > 1:
            _check_data_parallel(self)
        return self

    # ---- derived quantities -------------------------------------------------------------------
    def n_bounds(self, flops):
        """(lowest, highest) N a run of `flops` = 6ND may have within the N, D and D/N bounds (arrays
        broadcast; lowest > highest where no run of that size is allowed)."""
        c = np.asarray(flops, dtype=float)
        lo = np.maximum(self.n_params.lo, c / (FLOPS_PER_PARAM_TOKEN * self.n_tokens.hi))
        hi = np.minimum(self.n_params.hi, c / (FLOPS_PER_PARAM_TOKEN * self.n_tokens.lo))
        if self.tokens_per_param is not None:  # D/N = c / (6 N^2)
            lo = np.maximum(lo, np.sqrt(c / (FLOPS_PER_PARAM_TOKEN * self.tokens_per_param.hi)))
            hi = np.minimum(hi, np.sqrt(c / (FLOPS_PER_PARAM_TOKEN * self.tokens_per_param.lo)))
        return lo, hi

    def smallest_run(self) -> tuple[float, float]:
        """(N, D) of the cheapest run the N, D and D/N bounds allow (6ND grows with N, and D >= D/N_lo x N)."""
        n = self.n_params.lo
        if self.tokens_per_param is not None:
            n = max(n, self.n_tokens.lo / self.tokens_per_param.hi)
            return n, max(self.n_tokens.lo, self.tokens_per_param.lo * n)
        return n, self.n_tokens.lo

    @property
    def min_run_flops(self) -> float:
        lo = training_flops(self.n_params.lo, self.n_tokens.lo)
        return max(lo, self.flops.lo) if self.flops else lo

    @property
    def max_run_flops(self) -> float:
        hi = training_flops(self.n_params.hi, self.n_tokens.hi)
        return min(hi, self.flops.hi) if self.flops else hi

    @property
    def max_run_epochs(self) -> float:
        """Most epochs a proposed run reads its unique tokens (1.0: no run repeats its data; scheduler/proposer.py).

        Runs repeat their data only where a target declares unique_tokens, the backend declares Capabilities.repeats
        and the study's law has a repetition term (auto or data_constrained: a law without one would read a repeated
        run as a worse fresh one), and not in a study of run families (their branches train on all their data).
        `proposer.max_epochs` sets it; by default it is four times the epochs D*/U the most repeating target reads,
        with D* from Chinchilla's 20 tokens per parameter (C = 6ND, D = 20N; the D* the laws will find may be a few
        times that), clipped to [4, 100]: at least where repetition starts to cost (Muennighoff et al. 2023: ~4
        epochs), at most beyond their runs (up to ~60 epochs)."""
        repeating = [t for t in self.targets if t.unique_tokens is not None]
        if (not repeating or not self.backend.capabilities.repeats or self.families.enabled
                or self.law not in ("auto", "data_constrained")):
            return 1.0
        if self.proposer.max_epochs is not None:
            return float(self.proposer.max_epochs)
        epochs = max(math.sqrt(20.0 * t.flops / FLOPS_PER_PARAM_TOKEN) / t.unique_tokens for t in repeating)
        return float(min(max(4.0 * epochs, 4.0), 100.0))

    def target_mix(self, target: Target) -> dict[str, float]:
        """The mix at which a target's optimum is read: its own, else the fixed mix, else uniform."""
        if target.mix is not None:
            return {d: float(target.mix.get(d, 0.0)) for d in self.domains}
        if self.mix.fixed:
            return dict(self.mix.fixed)
        return {d: 1.0 / len(self.domains) for d in self.domains}

    def prior_table(self):
        """The prior runs (trainers.run_table.RunTable), validated against this study's skills, domains and fixed
        mix; InputError naming file, row and column. Read before Ray starts and when the study opens."""
        fixed = dict(self.mix.fixed) if self.mix.space == "fixed" else None
        return self.prior_runs.read(list(self.skills), list(self.domains), fixed)

    def frozen_dict(self) -> dict:
        """What is frozen into <study_dir>/study.yaml and compared on resume (hparams: the overrides set;
        trainer_defaults, torch only: the per-run defaults the rest resolve to, so that new code with other
        defaults cannot resume the study with them; skill_evals only when there are some, so studies frozen
        before the field existed still resume; not trackers)."""
        frozen = {**self.model_dump(mode="json", exclude={"trackers", "trainer_defaults"}),
                  "hparams": self.hparams.overrides()}
        defaults = self.backend.frozen_defaults()  # the defaults of this code, whatever a frozen file read back said
        if defaults is not None:
            frozen["trainer_defaults"] = defaults
        if not frozen["skill_evals"]:
            del frozen["skill_evals"]
        if not self.families.enabled:  # off is how studies frozen before families existed read, so they resume
            del frozen["families"]
        if frozen["backend"].get("repeats") is False:  # absent, as in studies frozen before backends could repeat data
            del frozen["backend"]["repeats"]
        if self.prior_runs is None:  # absent, as in studies frozen before prior runs existed
            del frozen["prior_runs"]
        else:  # the file's hash: a resume with a changed file is refused (scheduler/prior_runs.py)
            frozen["prior_runs"] = self.prior_runs.frozen()
        return frozen  # trackers are left out: exporting changes no estimate, and may be switched on a resume


def backends_that(declares) -> list[str]:
    """Names of the backends whose default config's capabilities satisfy `declares` (for error messages only)."""
    names = []
    for config_class in BACKEND_CONFIGS:
        name = config_class.model_fields["name"].annotation.__args__[0]
        try:
            default = config_class.model_validate({"name": name})
        except ValidationError:  # a backend with required fields: its default cannot be built
            continue
        if declares(default.capabilities):
            names.append(name)
    return names


def _check_families(cfg: StudyConfig) -> None:
    """families.enabled needs a backend that trains a family as one run, and the schedule left to the family."""
    if not cfg.backend.capabilities.families:
        able = ", ".join(backends_that(lambda c: c.families))
        raise _field_error("families.enabled", f"the {cfg.backend.name} backend trains one run per call, not a run "
                                               f"family; families need a backend with run_family ({able}), or set "
                                               "families.enabled: false")
    clash = [k for k in ("schedule", "cooldown_fraction", "cooldown_shape", "rule_n_tokens")
             if getattr(cfg.hparams, k) is not None]
    if clash:
        raise _field_error(f"hparams.{clash[0]}", "is set by the run family (families.cooldown_fraction / "
                                                  "families.cooldown_shape); remove it or disable families")


def _check_simplex(field: str, weights: dict[str, float], allowed: list[str]) -> None:
    for key, value in weights.items():
        if key not in allowed:
            raise _field_error(field, f"unknown name {key!r} (allowed: {', '.join(allowed)})")
        if not (math.isfinite(value) and value >= 0):
            raise _field_error(f"{field}.{key}", f"weight must be a finite number >= 0, got {value!r}")
    total = sum(weights.values())
    if abs(total - 1.0) > SIMPLEX_ATOL:
        raise _field_error(field, f"weights must sum to 1 (a point on the simplex), got {total:g}")


def _check_data_parallel(cfg: StudyConfig) -> None:
    """What `resources.gpus_per_run > 1` needs: the torch backend, whole GPUs per slot, enough slots."""
    res, where = cfg.resources, "resources.gpus_per_run"
    if not cfg.backend.capabilities.data_parallel:
        raise _field_error(where, f"{res.gpus_per_run} workers per run needs a backend that trains data parallel "
                                  f"through Ray Train ({', '.join(backends_that(lambda c: c.data_parallel))}), not "
                                  f"{cfg.backend.name!r}; set it to 1")
    if res.num_gpus not in (0, 1):
        raise _field_error(where, f"data-parallel workers hold one GPU each: set resources.num_gpus to 1 (or 0: CPU "
                                  f"workers, gloo), not {res.num_gpus:g}")
    if res.gpus_per_run > cfg.max_concurrent:
        raise _field_error(where, f"{res.gpus_per_run} exceeds max_concurrent {cfg.max_concurrent}: a data-parallel "
                                  "run occupies gpus_per_run worker slots; raise max_concurrent")


def _field_error(field: str, message: str) -> FieldError:
    return FieldError(field, message)


def check_backend(cfg: StudyConfig) -> None:
    """Validate what the backend can check before Ray starts (errors name the field): its `check` hook
    (trainers/backend.py) on the study's smallest run."""
    mix = cfg.mix.fixed or {d: 1.0 / len(cfg.domains) for d in cfg.domains}
    from trainers.spec import RunSpec

    spec = RunSpec(n_params=int(cfg.n_params.lo), n_tokens=int(cfg.n_tokens.lo), mix=mix,
                   hparams=cfg.hparams.overrides())
    try:
        cfg.backend.check(list(cfg.skills), spec)
    except InputError:
        raise
    except (TypeError, ValueError) as exc:  # a setting of the wrong type that the backend did not name
        raise InputError(f"backend: {str(exc).splitlines()[0]}") from None


def parse_study_config(data: Any, source: str = "study config") -> StudyConfig:
    """Validate a mapping; raise InputError('<source>: <field>: <problem>') on the first problem."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a YAML mapping of fields, got {type(data).__name__}")
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{source}: {one_line(exc, unions=('backend',))}") from None


def load_study_config(path: str | Path) -> StudyConfig:
    """Read and validate a study YAML file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read study config ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (a study config is UTF-8 YAML)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(f"{path}: not valid YAML{where}") from None
    return parse_study_config(data, str(path))
