"""The torch trainer backend: one real pretraining run per RunSpec, resumable from its run directory; run families.

    backend = TorchBackend(trainer=TrainerSettings(device="cuda", compile=True), data=DataSettings())  # the GPU
    backend = TorchBackend(device="cpu", seq_len=128)    # flat settings, sorted into the two by field name (tests)
    result = backend.run(RunSpec(n_params=5e6, n_tokens=1e8, mix={"knowledge": .5, "code": .3,
                                                                  "general": .2}), Path("runs/x"))
    results = backend.run_family(FamilySpec(n_params=5e6, n_tokens=(2e7, 5e7, 1e8), mix=...), Path("runs/f"))

A run, in five steps (TorchBackend.run):
1. plan: shape (trainers/shapes.py, snapped to the shape grid) -> hyperparameters (trainers/hparams.py) ->
   the memory check -> data streams (cached by trainers/data.py) and evaluation sets (kept in the BackendCache);
2. resume: the model (cached per shape and device, re-initialised from the run's seed) with the optional
   speed-ups applied in one place, in this order: Triton kernels (use_triton), then torch.compile (on CUDA with
   CUDA graphs, mode "reduce-overhead", unless cuda_graphs is off); then the newest checkpoint in run_dir;
3. train exactly D tokens, checkpointing every `checkpoint_every` steps; a NaN/inf training loss ends the run
   with status "diverged" (no exception);
4. evaluate: per-skill answer NLL (and its standard error from the finite evaluation set) and per-domain
   held-out loss (`evaluation_row`, the one place a curve's evaluation row is built: at step 0, every
   `eval_every` steps and at the end);
5. finish: the final checkpoint (a rerun only re-evaluates), the loss curve, the RunResult.

Seed replicas (`trainer.seed_replicas` R > 1): each run trains R models of its shape from seeds s + 1000 r, fused
in one module (trainers/replicas.py); its losses are their mean, its FLOPs R x 6ND, each replica's skill losses are
in RunResult.replica_losses and the curve's eval_r<i>/<skill> columns.

Run families (several D from one warmup-stable-decay training, `run_family`) are trained by the
FamilyTraining mixin of trainers/torch_family.py, through `run` and the checkpoints.

On CUDA: bf16 autocast with fp32 master weights, TF32 matmuls, fused AdamW. On CPU: fp32, references.
On CPU a run is bitwise reproducible, and a stopped-and-resumed run bitwise equal to an uninterrupted one
(tests/trainers/test_torch_backend.py): the batch of a step is a pure function of the step and the data order
(trainers/data.py: the study's order from data_seed by default, or the run's seed), and the checkpoint holds the
exact model and optimizer state. On CUDA, atomics in some backward kernels make runs reproducible only to rounding,
and the differences grow over a run, so a rerun of the same spec can land as far from the first as a run of
another seed.

State: what a backend keeps between runs (tokenizer, evaluation tensors, one model per shape and device) is
its BackendCache, so an actor reusing the backend across runs skips setup and keeps compiled graphs warm. One
run at a time per backend: the cached model is shared. Process-wide switches (TF32, dynamo's recompile limit,
the watch on torch.compile's fallback to eager) are set in `configure_process` and nowhere else; torch.compile's
own caches are per process, so a process compiles for one backend.

Compiled across shapes: dynamo caches compiled code per function and, past `recompile_limit` entries, silently
runs it eagerly, several times slower (BENCHMARKS.md, Compiled across shapes). The trainer keeps the compiled
path: the shape grid keeps the shapes a study meets few (trainers/shapes.py), the limit is raised
(`trainer.recompile_limit`), and before a new shape would pass half of it (or the CUDA graphs pass
GRAPH_MEMORY_FRACTION of the device memory) every compiled model is dropped and dynamo reset, so compilation
starts afresh (a shape costs one cache entry on Transformer.forward, tested: half the limit leaves a wide
margin). A fallback that happens anyway is counted (RunResult.compile_fallbacks) and warned about, never silent.

tokens/s counts training steps only (not evaluation or checkpoint I/O, not the session's first step,
which carries compilation); MFU = (6N + 6*L*T*d) * tokens/s / the GPU's dense bf16 peak (0 if unknown).

Data parallel: `run(spec, run_dir, world=World(rank, size))`, called by every rank of an initialised default
process group, trains the same run on `size` processes: each takes its share of every step's global batch and
the gradients are summed (trainers/distributed.py says how, and why the result is the single-process run's);
rank 0 evaluates and writes the checkpoints and the curve; every rank returns rank 0's RunResult, whose
tokens/s is the whole group's and whose MFU is per GPU. Nothing here knows who started the processes (Ray Train:
scheduler/data_parallel.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from fitting.conventions import training_flops
from skillscale.atomic import atomic_write_json
from skillscale.config_types import one_line
from skillscale.errors import InputError
from trainers import checkpoint
from trainers.bpe import make_tokenizer
from trainers.data import (
    DataSettings,
    MixtureSampler,
    limit_unique,
    load_domain,
    skill_examples,
    skill_names,
    validate_mix,
)
from trainers.distributed import SINGLE_PROCESS, World, rank_rows, rank_share
from trainers.evaluate import Evaluator, write_curve
from trainers.hparams import HParams, lr_at, resolve, step_rows
from trainers.model import IGNORE_INDEX, Transformer
from trainers.replicas import ReplicatedTransformer
from trainers.settings import TrainerSettings
from trainers.shapes import ModelConfig, count_params, flops_per_token, shape_for
from trainers.spec import REPEATED_DATA_EPOCHS, RunResult, RunSpec, repeated_domains
from trainers.torch_family import FamilyTraining, RunStopped

# dense bf16 tensor-core peaks, FLOP/s (vendor datasheets; SXM parts)
GPU_BF16_PEAK = {
    "H100": 989e12,
    "H200": 989e12,
    "GH200": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 70e12,
}
MODEL_CACHE_SIZE = 2  # adaptive studies ask for a new shape almost every run: keep memory bounded
GRAPH_MEMORY_FRACTION = 0.3  # with CUDA graphs: reserved memory past which compiled models are dropped
GiB = 2**30


def peak_flops(device: torch.device) -> float:
    """Dense bf16 peak of the device, detected by name; 0.0 for CPU or an unknown GPU."""
    if device.type != "cuda":
        return 0.0
    return peak_flops_of_name(torch.cuda.get_device_name(device))


def peak_flops_of_name(name: str) -> float:
    """Dense bf16 peak of a GPU by its name ("NVIDIA H100 80GB HBM3"); 0.0 for an unknown name."""
    for key in sorted(GPU_BF16_PEAK, key=len, reverse=True):  # "GH200" before "H200"
        if key in name:
            return GPU_BF16_PEAK[key]
    return 0.0


# ---------------------------------------------------------------------- process-wide switches, in one place


def configure_process(settings: TrainerSettings, device: torch.device) -> None:
    """Every process-wide switch the trainer sets, here and nowhere else (called by TorchBackend.__init__):

    - on CUDA, TF32 for fp32 matmuls and convolutions (the master weights are fp32; under bf16 autocast this
      touches only the ops autocast leaves in fp32);
    - with compile, dynamo's per-function recompile limit raised to `settings.recompile_limit` (never
      lowered: another backend in the process may need more), so a study's shapes stay compiled;
    - with compile, a watch on dynamo's log that counts fallbacks to eager (RecompileLimitWatch), read by
      every run. No log level is changed."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if settings.compile:
        config = torch._dynamo.config
        name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # torch < 2.6
        setattr(config, name, max(int(getattr(config, name)), settings.recompile_limit))
        RecompileLimitWatch.install()


class RecompileLimitWatch(logging.Handler):
    """Counts dynamo's "hit config.recompile_limit" warnings: each is a function that torch.compile gave up
    on and runs eagerly from then on. One instance per process, on the `torch._dynamo` logger."""

    _instance: RecompileLimitWatch | None = None
    MARKER = "torch._dynamo hit config."

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith(self.MARKER):
            self.count += 1

    @classmethod
    def install(cls) -> RecompileLimitWatch:
        if cls._instance is None:
            cls._instance = cls()
            logging.getLogger("torch._dynamo").addHandler(cls._instance)
        return cls._instance

    @classmethod
    def fallbacks(cls) -> int:
        """Fallbacks to eager in this process so far (0 when nothing was ever compiled)."""
        return cls._instance.count if cls._instance is not None else 0


# ---------------------------------------------------------------------- what a backend keeps between runs


@dataclass
class BackendCache:
    """What a TorchBackend keeps between runs, so an actor reusing it skips setup and keeps compiled graphs warm.

    `models` holds at most MODEL_CACHE_SIZE (model, training forward) pairs, oldest first; `compiled_shapes`
    counts the shapes compiled since torch.compile's state was last reset (`reset_compiled`)."""

    tokenizers: dict = field(default_factory=dict)  # (tokenizer spec, data settings json) -> tokenizer
    evaluators: dict = field(default_factory=dict)  # (data, tokenizer, seq_len, domains, rows) -> Evaluator
    models: dict = field(default_factory=dict)  # (shape, device, triton, compile, graphs) -> (model, forward)
    compiled_shapes: int = 0  # shapes compiled since the last reset

    def reset_compiled(self) -> None:
        """Drop every cached model, the code torch.compile generated for them and their CUDA graphs.

        Graphs cannot be freed on their own: a compiled function whose graphs were freed under it fails
        ("Running CUDAGraph after shutdown"), so the compiled code goes too."""
        self.models.clear()
        self.compiled_shapes = 0
        torch._dynamo.reset()
        if torch.cuda.is_available():
            from torch._inductor.cudagraph_trees import reset_cudagraph_trees

            reset_cudagraph_trees()  # part of torch._dynamo.reset() in recent versions; explicit for older ones
            gc.collect()
            torch.cuda.empty_cache()


def graph_memory_over_budget(device: torch.device) -> bool:
    """With CUDA graphs: whether the device's reserved memory has grown past GRAPH_MEMORY_FRACTION of it.

    torch.compile reuses one compiled graph, with dynamic shapes, across model shapes; with CUDA graphs
    ("reduce-overhead") it records new graphs for each shape and keeps every one, in a memory pool that lives
    as long as the compiled code: ~24 MiB of reserved memory per shape in the GPU test, without bound over a
    study. Freeing them means recompiling the next shape (seconds), so it is done only past the budget."""
    torch.cuda.empty_cache()  # drop free cached blocks first: what stays reserved is live memory and graph pools
    total = torch.cuda.get_device_properties(device).total_memory
    return torch.cuda.memory_reserved(device) > GRAPH_MEMORY_FRACTION * total


# ---------------------------------------------------------------------- memory: refuse what cannot fit

ACTIVATION_BYTES_PER_TOKEN_LAYER_WIDTH = 34  # 16-bit activations kept for backward, per token, layer and unit of
# d_model (Korthikanti et al. 2022, arXiv:2205.05198, Sec. 4.1: 34*s*b*h per layer without the attention-score
# term, which SDPA's fused attention never stores); twice that in fp32 on the CPU


def training_memory_bytes(cfg: ModelConfig, hp: HParams, micro_batch_rows: int, device: torch.device,
                          use_triton: bool) -> tuple[int, int]:
    """(state, activations) bytes a run needs: fp32 weights, gradients and both AdamW moments (16 bytes per
    parameter, embedding and gains included), and the activations of one micro-batch; plus, with the reference
    ops, the (M, V) fp32 logits and their gradient that a fused head loss never stores. An estimate, for
    refusing runs that cannot fit (not for packing runs tightly)."""
    n_all = count_params(cfg) + cfg.vocab_size * cfg.d_model + (2 * cfg.n_layers + 1) * cfg.d_model
    state = 16 * n_all
    rows = min(micro_batch_rows or hp.batch_seqs, hp.batch_seqs)
    tokens = rows * hp.seq_len
    width = 1 if device.type == "cuda" else 2  # bf16 autocast vs fp32
    activations = tokens * cfg.n_layers * cfg.d_model * ACTIVATION_BYTES_PER_TOKEN_LAYER_WIDTH * width
    if not use_triton:
        activations += tokens * cfg.vocab_size * 4 * 2
    return state, activations


def available_memory_bytes(device: torch.device) -> int:
    """Memory a run may use: the GPU's total memory, or the host's available memory (MemAvailable)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


# ---------------------------------------------------------------------- one run's plan and state


@dataclass(frozen=True)
class RunPlan:
    """Everything decided about a run before it trains."""

    spec: RunSpec
    cfg: ModelConfig  # the realised shape
    hp: HParams  # resolved hyperparameters
    mix: dict[str, float]  # validated mix
    n_params: int  # the exact N of the shape
    fingerprint: dict  # what its checkpoints must match (trainers/checkpoint.py)
    replicas: int = 1  # models trained side by side (trainer.seed_replicas, trainers/replicas.py)

    @property
    def flops(self) -> float:
        """Training FLOPs of all its replicas: 6 N D each."""
        return float(training_flops(self.n_params, self.spec.n_tokens)) * self.replicas


PHASES = ("setup", "first_step", "train", "evaluate", "checkpoint", "other")  # RunResult.time_s, in this order


class TrainingClock:
    """Wall time, timed training (seconds, tokens) and where the wall time went, of a run over all its sessions.

    Timed: training steps only. The clock stops at each host sync and restarts when the next stretch of steps
    begins, so evaluation and checkpoint I/O are left out; the session's first step carries compilation and
    warm-up, so it is timed apart and counts only when it is the session's only step.

    Phases (`PHASES`, seconds): setup (planning, data, building the model, loading a checkpoint), first_step (each
    session's first step: compilation and CUDA-graph capture on a new shape), train (the timed steps), evaluate,
    checkpoint (checkpoints and loss curves written), other (the rest of the wall time: host syncs, the loop)."""

    def __init__(self, before: dict | None = None, started: float | None = None):
        """before: the totals of earlier sessions (a checkpoint's); started: when this session began (a
        time.perf_counter() reading; default now)."""
        before = dict(before or {})
        self.before = {"wall_s": float(before.get("wall_s", 0.0)), "timed_s": float(before.get("timed_s", 0.0)),
                       "timed_tokens": int(before.get("timed_tokens", 0)),
                       "phase_s": dict(before.get("phase_s") or {})}  # earlier sessions
        self.started = time.perf_counter() if started is None else started
        self.steps = 0  # steps in this session
        self.timed_s, self.timed_tokens = 0.0, 0
        self.phase_s = dict.fromkeys(("setup", "evaluate", "checkpoint"), 0.0)  # this session's, besides steps
        self._first_began, self._first_tokens, self._first_s = 0.0, 0, 0.0
        self._stretch_began: float | None = None
        self._stretch_tokens = 0

    @contextlib.contextmanager
    def phase(self, name: str):
        """Time a block as `name` (setup, evaluate or checkpoint)."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.phase_s[name] += time.perf_counter() - began

    def step_begins(self) -> None:
        if self.steps == 0:
            self._first_began = time.perf_counter()

    def step_ends(self, n_targets: int) -> None:
        self.steps += 1
        if self.steps == 1:
            self._first_tokens = n_targets
        else:
            self._stretch_tokens += n_targets

    def synced(self) -> None:
        """The device has finished every step so far."""
        now = time.perf_counter()
        if self.steps == 1:
            self._first_s = now - self._first_began
        elif self._stretch_began is not None:
            self.timed_s += now - self._stretch_began
            self.timed_tokens += self._stretch_tokens
        self._stretch_tokens = 0

    def restart(self) -> None:
        """Training resumes (after a sync, an evaluation, a checkpoint)."""
        self._stretch_began = time.perf_counter()

    def totals(self, final: bool = False) -> dict:
        """Wall and timed seconds and tokens, and the phases' seconds, over all sessions so far; `final`: the
        session has ended."""
        timed_s, timed_tokens = self.timed_s, self.timed_tokens
        first_s = self._first_s
        if final and self.steps == 1:  # a one-step session: its only step is all there is to time
            timed_s, timed_tokens, first_s = self._first_s, self._first_tokens, 0.0
        wall_s = time.perf_counter() - self.started
        session = {**self.phase_s, "first_step": first_s, "train": timed_s}
        session["other"] = max(wall_s - sum(session.values()), 0.0)
        earlier = self.before["phase_s"]
        return {
            "wall_s": float(self.before["wall_s"] + wall_s),
            "timed_s": float(self.before["timed_s"] + timed_s),
            "timed_tokens": int(self.before["timed_tokens"] + timed_tokens),
            "phase_s": {k: float(earlier.get(k, 0.0) + session[k]) for k in PHASES},
        }


@dataclass
class RunState:
    """The mutable state of a run being trained (what a checkpoint holds, plus the session's clock)."""

    model: Transformer | ReplicatedTransformer
    forward: Callable  # the training forward: the model, or its compiled wrapper
    optimizer: torch.optim.Optimizer
    step: int  # optimizer steps done
    curve: list[dict]  # loss-curve rows so far
    clock: TrainingClock
    resumed_step: int | None  # the step of the checkpoint resumed from (None: a fresh start)


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a model: its loss-curve row and the losses it holds."""

    row: dict  # step, tokens, eval/<skill>, eval_se/<skill>, heldout/<domain>
    skills: dict[str, float]  # per-skill answer NLL
    domains: dict[str, float]  # per-domain held-out loss
    errors: dict[str, float]  # each skill loss's standard error from its finite evaluation set
    replica_skills: tuple[dict[str, float], ...] = ()  # seed replicas: each one's skill losses (skills: their mean)


def evaluation_row(evaluator: Evaluator, model: Transformer | ReplicatedTransformer, device: torch.device,
                   step: int, tokens: int) -> Evaluation:
    """Evaluate `model` and build its loss-curve row. The one place an evaluation row is made (initial,
    periodic, final). Seed replicas are evaluated together (Evaluator.run_with_errors_each); the row and the losses are
    their means (every replica meets the same questions, so the standard error is their mean too), and each
    replica's skill losses are kept as eval_r<i>/<skill>."""
    if isinstance(model, ReplicatedTransformer):
        each = evaluator.run_with_errors_each(model, device)  # per replica (skills, domains, errors), batched
        replica_skills = tuple(dict(skills) for skills, _, _ in each)
        skills, domains, errors = (_mean_of([e[part] for e in each]) for part in range(3))
    else:
        (skills, domains, errors), replica_skills = evaluator.run_with_errors(model, device), ()
    row = {"step": step, "tokens": tokens, **{f"eval/{k}": v for k, v in skills.items()},
           **{f"eval_se/{k}": v for k, v in errors.items()}, **{f"heldout/{k}": v for k, v in domains.items()},
           **{f"eval_r{r}/{k}": v for r, losses in enumerate(replica_skills) for k, v in losses.items()}}
    return Evaluation(row=row, skills=skills, domains=domains, errors=errors, replica_skills=replica_skills)


def _mean_of(dicts: list[dict[str, float]]) -> dict[str, float]:
    """Key by key, the mean of dicts with the same keys."""
    return {k: float(np.mean([d[k] for d in dicts])) for k in dicts[0]}


def _is_evaluation_row(row: dict, step: int) -> bool:
    return row.get("step") == step and any(k.startswith("eval/") for k in row)


def _triton_available() -> bool:
    try:
        import kernels.triton_ops  # noqa: F401
    except Exception:  # ImportError, or triton failing to initialise
        return False
    return True


def _optimizer(model: Transformer | ReplicatedTransformer, hp: HParams, device: torch.device) -> torch.optim.AdamW:
    stacked = model.stacked_dims  # seed replicas: a leading replica dimension on every parameter
    decay = [p for p in model.parameters() if p.dim() - stacked >= 2]  # embedding, projections, head
    no_decay = [p for p in model.parameters() if p.dim() - stacked < 2]  # RMSNorm gains
    groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=hp.lr, betas=(hp.beta1, hp.beta2), eps=hp.adam_eps, fused=device.type == "cuda")


class TorchBackend(FamilyTraining):
    """Backend (trainers/backend.py) that really trains. Construct once, call run() per RunSpec (or
    run_family() per FamilySpec)."""

    def __init__(self, trainer: TrainerSettings | None = None, data: DataSettings | None = None, *,
                 cache: BackendCache | None = None, **settings):
        """`TorchBackend(trainer=TrainerSettings(...), data=DataSettings(...))` is what a study's typed
        `backend: {name: torch, trainer: ..., data: ...}` builds; flat keyword settings, sorted into the two
        by field name, are still accepted when neither is given. `cache`: share one BackendCache between
        backends (default: a new one)."""
        if trainer is not None or data is not None:
            if settings:
                raise TypeError(f"TorchBackend: pass trainer=/data= or flat settings, not both ({sorted(settings)})")
            self.trainer, self.data = trainer or TrainerSettings(), data or DataSettings()
        else:
            self.trainer, self.data = split_settings(settings)
        self.cache = cache if cache is not None else BackendCache()
        self.world = SINGLE_PROCESS  # the process group of the run being trained (run(..., world=...))
        s = self.trainer
        if s.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            try:
                self.device = torch.device(s.device)
            except RuntimeError as exc:
                raise InputError(f"trainer.device: {s.device!r} is not a torch device") from exc
            if self.device.type == "cuda" and not torch.cuda.is_available():
                raise InputError("trainer.device: 'cuda' requested but torch sees no CUDA device; use cpu or auto")
        if s.use_triton == "auto":
            self.use_triton = self.device.type == "cuda" and _triton_available()
        else:
            self.use_triton = bool(s.use_triton)
        configure_process(s, self.device)
        tokenizer_key = (s.tokenizer, json.dumps(self.data.model_dump(), sort_keys=True))  # "bpe:N" trains on the data
        if tokenizer_key not in self.cache.tokenizers:
            self.cache.tokenizers[tokenizer_key] = make_tokenizer(s.tokenizer, self.data)
        self.tokenizer = self.cache.tokenizers[tokenizer_key]

    @property
    def settings(self) -> TrainerSettings:
        """The trainer settings (the older name of `trainer`)."""
        return self.trainer

    # ------------------------------------------------------------------ planning (no training)

    def plan(self, spec: RunSpec) -> tuple[ModelConfig, HParams, dict[str, float]]:
        """Shape, hyperparameters and validated mix of a spec; raises InputError for bad input."""
        mix = validate_mix(spec.mix, self.data)
        cfg = shape_for(spec.n_params, self.tokenizer.vocab_size, self.trainer.seq_len, self.trainer.shape_grid)
        if self.trainer.qk_norm:
            cfg = dataclasses.replace(cfg, qk_norm=True)
        hp = resolve(count_params(cfg), spec.n_tokens, self.trainer.seq_len, spec.hparams)
        return cfg, hp, mix

    def check_fits(self, cfg: ModelConfig, hp: HParams) -> None:
        """InputError, naming the memory needed and available, when a run of this shape cannot fit."""
        state, activations = training_memory_bytes(cfg, hp, self.trainer.micro_batch_rows, self.device,
                                                   self.use_triton)
        state, activations = state * self.trainer.seed_replicas, activations * self.trainer.seed_replicas
        available = available_memory_bytes(self.device)
        if state + activations > available:
            raise InputError(
                f"n_params: N={count_params(cfg):,} (d_model {cfg.d_model} x {cfg.n_layers} layers) needs about "
                f"{(state + activations) / GiB:,.1f} GiB to train (weights, gradients and AdamW state "
                f"{state / GiB:,.1f} GiB, activations {activations / GiB:,.1f} GiB) but {self.device} has "
                f"{available / GiB:,.1f} GiB; ask for fewer parameters"
                + (" or set micro_batch_rows" if activations > state else "")
            )

    def _plan_run(self, spec: RunSpec) -> RunPlan:
        cfg, hp, mix = self.plan(spec)
        return RunPlan(spec=spec, cfg=cfg, hp=hp, mix=mix, n_params=count_params(cfg),
                       fingerprint=self._fingerprint(spec, cfg, hp), replicas=self.trainer.seed_replicas)

    def _fingerprint(self, spec: RunSpec, cfg: ModelConfig, hp: HParams) -> dict:
        """What a checkpoint must match to be resumed by this run: what is trained, not who asked for it (the
        trial number, family and branch index are left out)."""
        trained = {k: v for k, v in spec.to_dict().items() if k not in ("trial_number", "family_id", "branch")
                   and not (k == "unique_tokens" and v is None)}  # older checkpoints keep matching
        replicas = self.trainer.seed_replicas  # recorded only when > 1: older checkpoints keep matching
        return {**({"seed_replicas": replicas} if replicas > 1 else {}),
            "run_id": spec.run_id,
            "spec": json.dumps(trained, sort_keys=True),
            "shape": json.dumps(cfg.to_dict(), sort_keys=True),
            "hparams": json.dumps(hp.to_dict(), sort_keys=True),
            "data": json.dumps(self.data.model_dump(), sort_keys=True),
            "tokenizer": self.tokenizer.name,
        }

    def _data(self, plan: RunPlan) -> tuple[MixtureSampler, Evaluator]:
        seq_len = self.trainer.seq_len
        domains = {name: load_domain(name, self.data, self.tokenizer, seq_len) for name in plan.mix}
        if plan.spec.unique_tokens is not None:
            domains = limit_unique(domains, plan.mix, plan.spec.unique_tokens, seq_len)
        order_seed = self.data.data_seed if self.data.data_order == "study" else None
        return MixtureSampler(domains, plan.mix, seq_len, plan.spec.seed, order_seed), self._evaluator(domains)

    def _evaluator(self, domains: dict) -> Evaluator:
        key = (
            json.dumps(self.data.model_dump(), sort_keys=True),
            self.tokenizer.name,
            self.trainer.seq_len,
            tuple(sorted(domains)),
            self.trainer.heldout_rows,
        )
        if key not in self.cache.evaluators:
            sets = {s: skill_examples(s, self.data, self.tokenizer) for s in skill_names(self.data)}
            self.cache.evaluators[key] = Evaluator(
                sets, domains, self.tokenizer, self.trainer.seq_len, self.trainer.heldout_rows
            )
        return self.cache.evaluators[key]

    def _model(self, cfg: ModelConfig) -> tuple[Transformer | ReplicatedTransformer, Callable]:
        """The cached (model, training forward) of a shape (with trainer.seed_replicas > 1, that many models
        fused in one, trainers/replicas.py); a new shape may first reset torch.compile's state (module
        docstring, Compiled across shapes)."""
        replicas = self.trainer.seed_replicas
        key = (cfg, replicas, str(self.device), self.use_triton, self.trainer.compile, self._cuda_graphs)
        cache = self.cache
        if key not in cache.models:
            if self.trainer.compile:
                too_many = cache.compiled_shapes >= max(1, self.trainer.recompile_limit // 2)
                if too_many or (self._cuda_graphs and graph_memory_over_budget(self.device)):
                    cache.reset_compiled()
            while len(cache.models) >= MODEL_CACHE_SIZE:  # evict the oldest (dicts keep insertion order)
                cache.models.pop(next(iter(cache.models)))
            if replicas > 1:
                model = ReplicatedTransformer(cfg, replicas, use_triton=self.use_triton).to(self.device)
            else:
                model = Transformer(cfg, use_triton=self.use_triton).to(self.device)
            forward = model  # kernels first, then compile
            if self.trainer.compile:
                forward = torch.compile(model, mode="reduce-overhead" if self._cuda_graphs else None)
                cache.compiled_shapes += 1
            cache.models[key] = (model, forward)
        return cache.models[key]

    @property
    def _cuda_graphs(self) -> bool:
        """Whether the compiled forward/backward are CUDA graphs. Small models are launch-bound without them
        (BENCHMARKS.md, Compiled across shapes)."""
        return self.trainer.compile and self.trainer.cuda_graphs and self.device.type == "cuda"

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _device_sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ------------------------------------------------------------------ the run

    def run(self, spec: RunSpec, run_dir: Path, *, stop_after_steps: int | None = None,
            world: World | None = None) -> RunResult:
        """Train `spec` for exactly spec.n_tokens tokens, resuming from run_dir's newest checkpoint.

        stop_after_steps: write a checkpoint after that many optimizer steps and raise RunStopped
        (used to test resumption; a real preemption simply kills the process).
        world: this process's rank in a data-parallel run (module docstring); None: a single process."""
        began = time.perf_counter()  # the run's setup phase starts (TrainingClock)
        run_dir = Path(run_dir)
        self.world = world or SINGLE_PROCESS
        plan = self._plan_run(spec)  # 1. plan
        self.check_fits(plan.cfg, plan.hp)
        sampler, evaluator = self._data(plan)
        epochs = sampler.epochs(plan.spec.n_tokens, plan.hp.batch_seqs)
        repeated = repeated_domains(epochs)
        if repeated and self.world.is_main:
            warnings.warn(
                f"run {spec.run_id}: reads " + ", ".join(f"{d} {e:.1f} times over" for d, e in repeated.items())
                + f"; past ~{REPEATED_DATA_EPOCHS:g} epochs repeated text is worth less than new text (Muennighoff et "
                "al. 2023), so its losses may bend away from the law: give the domain more text (data.corpora, or "
                "code_source / general_source: stdlib+site-packages) or keep D lower", RuntimeWarning, stacklevel=2)
        fallbacks_before = RecompileLimitWatch.fallbacks()
        state = self._resume(plan, run_dir, began)  # 2. resume
        diverged = self._train(plan, state, sampler, evaluator, run_dir, stop_after_steps)  # 3. train
        if diverged:
            if self.world.is_main:
                write_curve(state.curve, run_dir / "loss_curve.parquet")
            result = self._result(plan, state, "diverged", error=f"non-finite training loss by step {state.step}")
        else:
            result = self._evaluate_and_finish(plan, state, evaluator, run_dir)  # 4. evaluate, 5. finish
        fallbacks = RecompileLimitWatch.fallbacks() - fallbacks_before
        if fallbacks:
            warnings.warn(
                f"run {spec.run_id}: torch.compile fell back to eager {fallbacks} time(s) (dynamo's recompile "
                f"limit, {self.trainer.recompile_limit}); raise trainer.recompile_limit or use a coarser "
                "trainer.shape_grid", RuntimeWarning, stacklevel=2)
            result = dataclasses.replace(result, compile_fallbacks=fallbacks)
        result = dataclasses.replace(result, data_epochs={d: round(e, 4) for d, e in epochs.items()})
        return self.world.broadcast_object(result)  # data parallel: rank 0's result (it alone evaluated)

    def _resume(self, plan: RunPlan, run_dir: Path, began: float | None = None) -> RunState:
        """The model initialised from the run's seed, its optimizer, and the newest checkpoint's state if any;
        began: when the run's setup began (a time.perf_counter() reading, its clock's start; default now)."""
        began = time.perf_counter() if began is None else began
        model, forward = self._model(plan.cfg)
        if isinstance(model, ReplicatedTransformer):  # replica r from seed + 1000 r, as its own run would start
            model.init_replicas(plan.spec.seed, plan.hp.init_std, plan.hp.init_scheme)
        else:
            torch.manual_seed(plan.spec.seed)
            model.init_weights(plan.hp.init_std, plan.hp.init_scheme)
        self.world.broadcast_parameters(model)  # data parallel: equal already (one seed); made certain
        model.train()
        optimizer = _optimizer(model, plan.hp, self.device)
        state = RunState(model=model, forward=forward, optimizer=optimizer, step=0, curve=[],
                         clock=TrainingClock(started=began), resumed_step=None)
        ckpt = checkpoint.load_latest(run_dir, plan.fingerprint, map_location="cpu")  # load_state_dict moves it
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            checkpoint.set_rng_state(ckpt["rng"])
            state.step, state.curve, state.resumed_step = ckpt["step"], list(ckpt["curve"]), ckpt["step"]
            state.clock = TrainingClock(ckpt["timing"], started=began)
        run_dir.mkdir(parents=True, exist_ok=True)
        if self.world.is_main:
            atomic_write_json(run_dir / "run.json", {"spec": plan.spec.to_dict(), "shape": plan.cfg.to_dict(),
                                                     "hparams": plan.hp.to_dict(), "n_params": plan.n_params,
                                                     "data": self.data.model_dump()}, indent=2, sort_keys=True)
        state.clock.phase_s["setup"] += time.perf_counter() - began
        return state

    def _save(self, plan: RunPlan, state: RunState, run_dir: Path, final: bool = False) -> None:
        if not self.world.is_main:  # data parallel: rank 0 writes; every rank holds the same state
            return
        checkpoint.save(run_dir, state.step, {
            "fingerprint": plan.fingerprint,
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "rng": checkpoint.rng_state(),
            "curve": state.curve,
            "timing": state.clock.totals(final=final),
            "tokens": int(min(state.step * plan.hp.batch_tokens, plan.spec.n_tokens)),
        })
        write_curve(state.curve, run_dir / "loss_curve.parquet")

    def _train(self, plan: RunPlan, state: RunState, sampler: MixtureSampler, evaluator: Evaluator,
               run_dir: Path, stop_after_steps: int | None) -> bool:
        """Train from state.step to the last step; True if the training loss became non-finite."""
        hp, spec, every, clock = plan.hp, plan.spec, self.trainer, state.clock
        evaluates = self.world.is_main  # data parallel: rank 0 alone evaluates (and keeps the curve it writes)
        if evaluates and every.eval_every and state.step == 0 and not state.curve:  # the curve starts at init
            with clock.phase("evaluate"):
                state.curve.append(evaluation_row(evaluator, state.model, self.device, 0, 0).row)
        pending: list[tuple[int, float, torch.Tensor]] = []  # (step, lr, loss) not yet synced to host
        while state.step < hp.n_steps:
            clock.step_begins()
            lr = lr_at(state.step, hp)
            n_rows, n_targets = step_rows(state.step, hp, spec.n_tokens)
            loss = self._train_step(state.forward, state.optimizer, state.model, sampler, state.step, n_rows,
                                    n_targets, lr, hp)
            pending.append((state.step, lr, loss))
            state.step += 1
            clock.step_ends(n_targets)
            step, last = state.step, state.step == hp.n_steps
            evaluate_now = evaluates and bool(every.eval_every) and step % every.eval_every == 0 and not last
            stopping = stop_after_steps is not None and step == stop_after_steps and not last
            save_now = stopping or (bool(every.checkpoint_every) and step % every.checkpoint_every == 0 and not last)
            if not (clock.steps == 1 or step % every.log_every == 0 or last or evaluate_now or save_now):
                continue  # no host sync: the GPU runs ahead
            # sync point: losses to the host, divergence check, throughput accounting
            values = torch.stack([p[2] for p in pending]).tolist()
            for (s, lr_s, _), v in zip(pending, values, strict=True):
                state.curve.append({"step": s + 1, "tokens": min((s + 1) * hp.batch_tokens, spec.n_tokens),
                                    "lr": lr_s, "train_loss": v})
            pending.clear()
            self._device_sync()
            clock.synced()
            if not all(math.isfinite(v) for v in values):
                return True
            if every.progress is not None:
                every.progress(step, hp.n_steps, values[-1], lr)
            if evaluate_now:
                tokens = min(step * hp.batch_tokens, spec.n_tokens)
                with clock.phase("evaluate"):
                    state.curve.append(evaluation_row(evaluator, state.model, self.device, step, tokens).row)
            if save_now:
                with clock.phase("checkpoint"):
                    self._save(plan, state, run_dir)
            if stopping:
                raise RunStopped(f"stopped after step {step} of {hp.n_steps}; checkpoint written to {run_dir}")
            clock.restart()  # evaluation and checkpoint I/O are not training time
        return False

    def _evaluate_and_finish(self, plan: RunPlan, state: RunState, evaluator: Evaluator, run_dir: Path) -> RunResult:
        """The final evaluation, the final checkpoint (once) and the loss curve; the RunResult (data parallel: on
        ranks > 0 a placeholder without losses, replaced by rank 0's in run())."""
        if not self.world.is_main:
            return self._result(plan, state, "ok")
        with state.clock.phase("evaluate"):
            final = evaluation_row(evaluator, state.model, self.device, state.step, int(plan.spec.n_tokens))
        if not all(math.isfinite(v) for v in [*final.skills.values(), *final.domains.values()]):
            write_curve(state.curve, run_dir / "loss_curve.parquet")
            return self._result(plan, state, "diverged", final, error="non-finite evaluation loss")
        if not (state.curve and _is_evaluation_row(state.curve[-1], state.step)):
            state.curve.append(final.row)
        with state.clock.phase("checkpoint"):
            if state.resumed_step is None or state.resumed_step < plan.hp.n_steps:
                self._save(plan, state, run_dir, final=True)  # the final weights; a rerun only re-evaluates
            else:
                write_curve(state.curve, run_dir / "loss_curve.parquet")
        return self._result(plan, state, "ok", final)

    def _result(self, plan: RunPlan, state: RunState, status: str, evaluation: Evaluation | None = None,
                error: str = "") -> RunResult:
        """The RunResult of a run that ended with `status`; without an evaluation (training diverged) the losses
        are NaN."""
        total = state.clock.totals(final=True)
        tokens_per_s = total["timed_tokens"] / total["timed_s"] if total["timed_s"] > 0 else 0.0
        peak = peak_flops(self.device)
        nan = {s: float("nan") for s in skill_names(self.data)}
        return RunResult(
            run_id=plan.spec.run_id,
            status=status,
            n_params=plan.n_params,
            n_tokens=int(plan.spec.n_tokens),
            flops=plan.flops,
            losses=evaluation.skills if evaluation is not None else nan,
            domain_losses=evaluation.domains if evaluation is not None else {},
            loss_errors=evaluation.errors if evaluation is not None else {},
            wall_s=total["wall_s"],
            time_s={k: round(v, 3) for k, v in total["phase_s"].items()},
            tokens_per_s=tokens_per_s,
            mfu=(flops_per_token(plan.cfg, attention=True) * plan.replicas * tokens_per_s / (peak * self.world.size)
                 if peak else 0.0),
            shape=plan.cfg.to_dict(),
            error=error,
            family_id=plan.spec.family_id,
            branch=plan.spec.branch,
            replica_losses=list(evaluation.replica_skills) if evaluation is not None else [],
        )

    def _train_step(self, forward, optimizer, model, sampler, step, n_rows, n_targets, lr, hp) -> torch.Tensor:
        """One optimizer step on n_rows sequences, of which the first n_targets targets count; the loss.

        Every micro-batch has the same shape (a partial last batch is padded with ignored rows), so a
        compiled model never recompiles for the last step."""
        inputs, targets, _ = sampler.batch(step, n_rows, hp.batch_seqs)  # the global batch (every rank draws it)
        world = self.world
        rows = rank_rows(world, max(n_rows, hp.batch_seqs))  # this rank's share (single process: the whole batch)
        micro = min(self.trainer.micro_batch_rows or hp.batch_seqs, hp.batch_seqs, rows)
        padded = math.ceil(rows / micro) * micro
        x_all = np.zeros((world.size * rows, hp.seq_len), dtype=np.int64)  # padding rows: token 0, no targets
        y_all = np.full((world.size * rows, hp.seq_len), IGNORE_INDEX, dtype=np.int64)
        x_all[:n_rows], y_all[:n_rows] = inputs, targets
        y_all.reshape(-1)[n_targets:] = IGNORE_INDEX  # last step: exactly the targets that complete D
        x_host = np.zeros((padded, hp.seq_len), dtype=np.int64)
        y_host = np.full((padded, hp.seq_len), IGNORE_INDEX, dtype=np.int64)
        x_host[:rows], y_host[:rows] = rank_share(world, x_all, rows), rank_share(world, y_all, rows)
        x = torch.from_numpy(x_host).to(self.device, non_blocking=True)
        y = torch.from_numpy(y_host).to(self.device, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.device)
        if self._cuda_graphs:  # gradients must exist before the first backward: otherwise autograd installs
            for p in model.parameters():  # a graph's output buffer as p.grad, and the next replay overwrites it
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
        for i in range(0, padded, micro):
            xm, ym = x[i : i + micro], y[i : i + micro]
            weight = int((y_host[i : i + micro] != IGNORE_INDEX).sum()) / n_targets  # host-side: no sync
            if weight == 0:
                continue
            if self._cuda_graphs:  # the previous micro-batch's graph outputs are consumed: they may be reused
                torch.compiler.cudagraph_mark_step_begin()
            with self._autocast():
                loss = forward(xm, ym)
            (loss * weight).backward()
            total += loss.detach().float() * weight
        world.all_reduce_gradients(list(model.parameters()))  # data parallel: the global batch's gradient
        world.all_reduce_sum(total)
        if isinstance(model, ReplicatedTransformer):  # each replica clipped by its own norm, as its own run would be
            model.clip_grad_norm_(hp.grad_clip)
            total = total / model.replicas  # the logged training loss: the replicas' mean
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(), hp.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=not self._cuda_graphs)  # graphs: keep the buffers, zeroed
        return total


def split_settings(settings: dict) -> tuple[TrainerSettings, DataSettings]:
    """Flat settings sorted into TrainerSettings and DataSettings by field name; InputError for an unknown one or a
    bad value (`trainer.seq_len: expected a positive integer, got 0`)."""
    data_fields, trainer_fields = set(DataSettings.model_fields), set(TrainerSettings.model_fields)
    for key in settings:
        if key not in data_fields | trainer_fields:
            raise InputError(f"torch backend: unknown setting {key!r}; allowed: "
                             f"{', '.join(sorted(data_fields | trainer_fields))}")
    sections = []
    for cls, section, names in ((TrainerSettings, "trainer", trainer_fields), (DataSettings, "data", data_fields)):
        try:
            sections.append(cls.model_validate({k: v for k, v in settings.items() if k in names}))
        except ValidationError as exc:
            raise InputError(one_line(exc, prefix=(section,))) from None
    return sections[0], sections[1]
