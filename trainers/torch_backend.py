"""The torch trainer backend: one real pretraining run per RunSpec, resumable from its run directory.

    backend = TorchBackend(device="cuda", compile=True)        # the GPU configuration
    backend = TorchBackend(device="cpu", seq_len=128)          # tests / CI: fp32, torch reference ops
    result = backend.run(RunSpec(n_params=5e6, n_tokens=1e8, mix={"knowledge": .5, "code": .3,
                                                                  "general": .2}), Path("runs/x"))

Order of a run: shape (trainers/shapes.py) -> hyperparameters (trainers/hparams.py) -> data streams and
evaluation sets (process-level caches) -> model (cached per shape and device; re-initialised from the
run's seed) -> optional speed-ups in one place, in this order: Triton kernels (use_triton), then
torch.compile (on CUDA with CUDA graphs, mode "reduce-overhead", unless cuda_graphs is off) -> resume
from the newest checkpoint in run_dir -> train exactly D tokens -> evaluate -> RunResult. A NaN/inf
training loss ends the run with status "diverged" (no exception).

On CUDA: bf16 autocast with fp32 master weights, TF32 matmuls, fused AdamW. On CPU: fp32, references.
On CPU a run is bitwise reproducible, and a stopped-and-resumed run bitwise equal to an uninterrupted one
(tests/trainers/test_torch_backend.py): the batch of a step depends only on (seed, step), and the
checkpoint holds the exact model and optimizer state. On CUDA, atomics in some backward kernels make runs
reproducible only to rounding.

Caches are per process (generated corpora, evaluation tensors, one model per shape and device, re-initialised
for each run), so an actor reusing the backend across runs skips setup and keeps compiled graphs warm. One
run at a time per process: the cached model is shared.

tokens/s counts training steps only (not evaluation or checkpoint I/O, not the session's first step,
which carries compilation); MFU = (6N + 6*L*T*d) * tokens/s / the GPU's dense bf16 peak (0 if unknown).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from skillscale.atomic import atomic_write_json
from skillscale.errors import InputError
from trainers import checkpoint
from trainers.data import SKILLS, DataSettings, MixtureSampler, load_domain, skill_examples, validate_mix
from trainers.evaluate import Evaluator, write_curve
from trainers.hparams import HParams, lr_at, resolve, step_rows
from trainers.model import IGNORE_INDEX, Transformer
from trainers.shapes import ModelConfig, count_params, flops_per_token, shape_for
from trainers.spec import RunResult, RunSpec
from trainers.tokenizer import make_tokenizer

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


def peak_flops(device: torch.device) -> float:
    """Dense bf16 peak of the device, detected by name; 0.0 for CPU or an unknown GPU."""
    if device.type != "cuda":
        return 0.0
    name = torch.cuda.get_device_name(device)
    for key in sorted(GPU_BF16_PEAK, key=len, reverse=True):  # "GH200" before "H200"
        if key in name:
            return GPU_BF16_PEAK[key]
    return 0.0


class RunStopped(Exception):
    """Raised by run(..., stop_after_steps=k) after checkpointing step k (a simulated preemption)."""


@dataclass(frozen=True)
class TrainerSettings:
    """How runs are executed (not what is trained); the data settings are DataSettings."""

    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    compile: bool = False  # torch.compile the training forward (CUDA: recommended)
    cuda_graphs: bool = True  # with compile on CUDA: replay forward/backward as CUDA graphs ("reduce-overhead")
    use_triton: bool | str = "auto"  # Triton kernels: "auto" -> on CUDA when kernels.triton_ops imports
    seq_len: int = 512
    tokenizer: str = "bytes"  # or a path to a tokenizers JSON file
    eval_every: int = 0  # steps between evaluations during training, and at step 0 (0: only at the end)
    checkpoint_every: int = 1000  # steps between checkpoints (0: only the final one)
    log_every: int = 10  # steps between host syncs of the training loss (divergence checks, progress)
    micro_batch_rows: int = 0  # sequences per forward/backward (0: the whole batch at once)
    heldout_rows: int = 64  # held-out windows per domain for the domain losses
    progress: Callable | None = field(default=None, compare=False)  # progress(step, n_steps, loss, lr)

    def __post_init__(self):
        for name in ("seq_len", "log_every"):
            if int(getattr(self, name)) <= 0:
                raise InputError(f"trainer.{name}: expected a positive integer, got {getattr(self, name)}")
        for name in ("eval_every", "checkpoint_every", "micro_batch_rows"):
            if int(getattr(self, name)) < 0:
                raise InputError(f"trainer.{name}: expected >= 0, got {getattr(self, name)}")
        if not isinstance(self.cuda_graphs, bool):
            raise InputError(f"trainer.cuda_graphs: expected true or false, got {self.cuda_graphs!r}")
        if self.use_triton not in (True, False, "auto"):
            raise InputError(f"trainer.use_triton: expected true, false or 'auto', got {self.use_triton!r}")


_MODEL_CACHE: dict = {}  # (ModelConfig, device, use_triton, compile, cuda graphs) -> (model, training forward)
MODEL_CACHE_SIZE = 2  # adaptive studies ask for a new shape almost every run: keep memory bounded
GRAPH_MEMORY_FRACTION = 0.3  # with CUDA graphs: reserved memory past which graphs are freed (see below)
_EVALUATOR_CACHE: dict = {}
_TOKENIZER_CACHE: dict = {}


def _release_cuda_graphs_if_over_budget(device: torch.device) -> None:
    """Before a new shape is compiled: if the device's reserved memory has grown past GRAPH_MEMORY_FRACTION of
    it, drop every compiled model and the CUDA graphs they recorded, and give the memory back.

    torch.compile reuses one compiled graph, with dynamic shapes, across model shapes; with CUDA graphs
    ("reduce-overhead") it records new graphs for each shape and keeps every one, in a memory pool that lives
    as long as the compiled code: ~24 MiB of reserved memory per shape in the GPU test, without bound over a
    study. Freeing them means recompiling the next shape (seconds), so it is done only past the budget.
    Graphs cannot be freed on their own: a compiled function whose graphs were freed under it fails
    ("Running CUDAGraph after shutdown"), so the compiled code goes too (torch._dynamo.reset)."""
    torch.cuda.empty_cache()  # drop free cached blocks first: what stays reserved is live memory and graph pools
    total = torch.cuda.get_device_properties(device).total_memory
    if torch.cuda.memory_reserved(device) <= GRAPH_MEMORY_FRACTION * total:
        return
    from torch._inductor.cudagraph_trees import reset_cudagraph_trees

    _MODEL_CACHE.clear()
    torch._dynamo.reset()
    reset_cudagraph_trees()  # part of torch._dynamo.reset() in recent versions; explicit for older ones
    gc.collect()
    torch.cuda.empty_cache()


def _triton_available() -> bool:
    try:
        import kernels.triton_ops  # noqa: F401
    except Exception:  # ImportError, or triton failing to initialise
        return False
    return True


def _optimizer(model: Transformer, hp: HParams, device: torch.device) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]  # embedding, projections, head
    no_decay = [p for p in model.parameters() if p.dim() < 2]  # RMSNorm gains
    groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=hp.lr, betas=(hp.beta1, hp.beta2), eps=hp.adam_eps, fused=device.type == "cuda")


class TorchBackend:
    """Backend (trainers/backend.py) that really trains. Construct once, call run() per RunSpec."""

    def __init__(self, trainer: TrainerSettings | None = None, data: DataSettings | None = None, **settings):
        """`TorchBackend(trainer=TrainerSettings(...), data=DataSettings(...))` is what a study's typed
        `backend: {name: torch, trainer: ..., data: ...}` builds; flat keyword settings, sorted into the two
        by field name, are still accepted when neither is given."""
        if trainer is not None or data is not None:
            if settings:
                raise TypeError(f"TorchBackend: pass trainer=/data= or flat settings, not both ({sorted(settings)})")
            self.settings, self.data = trainer or TrainerSettings(), data or DataSettings()
        else:
            data_fields = {f.name for f in dataclasses.fields(DataSettings)}
            trainer_fields = {f.name for f in dataclasses.fields(TrainerSettings)}
            for key in settings:
                if key not in data_fields | trainer_fields:
                    raise InputError(
                        f"torch backend: unknown setting {key!r}; allowed: "
                        f"{', '.join(sorted(data_fields | trainer_fields))}"
                    )
            self.settings = TrainerSettings(**{k: v for k, v in settings.items() if k in trainer_fields})
            self.data = DataSettings(**{k: v for k, v in settings.items() if k in data_fields})
        s = self.settings
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
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if s.tokenizer not in _TOKENIZER_CACHE:
            _TOKENIZER_CACHE[s.tokenizer] = make_tokenizer(s.tokenizer)
        self.tokenizer = _TOKENIZER_CACHE[s.tokenizer]

    # ------------------------------------------------------------------ planning (no training)

    def plan(self, spec: RunSpec) -> tuple[ModelConfig, HParams, dict[str, float]]:
        """Shape, hyperparameters and validated mix of a spec; raises InputError for bad input."""
        mix = validate_mix(spec.mix, self.data)
        cfg = shape_for(spec.n_params, self.tokenizer.vocab_size, self.settings.seq_len)
        hp = resolve(count_params(cfg), spec.n_tokens, self.settings.seq_len, spec.hparams)
        return cfg, hp, mix

    def _model(self, cfg: ModelConfig):
        key = (cfg, str(self.device), self.use_triton, self.settings.compile, self._cuda_graphs)
        if key not in _MODEL_CACHE:
            if self._cuda_graphs:
                _release_cuda_graphs_if_over_budget(self.device)
            while len(_MODEL_CACHE) >= MODEL_CACHE_SIZE:  # evict the oldest (dicts keep insertion order)
                _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
            model = Transformer(cfg, use_triton=self.use_triton).to(self.device)
            forward = model  # kernels first, then compile
            if self.settings.compile:
                forward = torch.compile(model, mode="reduce-overhead" if self._cuda_graphs else None)
            _MODEL_CACHE[key] = (model, forward)
        return _MODEL_CACHE[key]

    def _evaluator(self, domains: dict) -> Evaluator:
        key = (
            json.dumps(self.data.to_dict(), sort_keys=True),
            self.tokenizer.name,
            self.settings.seq_len,
            tuple(sorted(domains)),
            self.settings.heldout_rows,
        )
        if key not in _EVALUATOR_CACHE:
            sets = {s: skill_examples(s, self.data) for s in SKILLS}
            _EVALUATOR_CACHE[key] = Evaluator(
                sets, domains, self.tokenizer, self.settings.seq_len, self.settings.heldout_rows
            )
        return _EVALUATOR_CACHE[key]

    @property
    def _cuda_graphs(self) -> bool:
        """Whether the compiled forward/backward are CUDA graphs. Small models are launch-bound without them:
        at d_model 128 the step's kernels take 3.0 ms but the step 6.3 ms (BENCHMARKS.md, Trainer speed)."""
        return self.settings.compile and self.settings.cuda_graphs and self.device.type == "cuda"

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ------------------------------------------------------------------ the run

    def run(self, spec: RunSpec, run_dir: Path, *, stop_after_steps: int | None = None) -> RunResult:
        """Train `spec` for exactly spec.n_tokens tokens, resuming from run_dir's newest checkpoint.

        stop_after_steps: write a checkpoint after that many optimizer steps and raise RunStopped
        (used to test resumption; a real preemption simply kills the process)."""
        run_dir = Path(run_dir)
        cfg, hp, mix = self.plan(spec)
        n_params = count_params(cfg)
        seq_len = self.settings.seq_len
        domains = {name: load_domain(name, self.data, self.tokenizer, seq_len) for name in mix}
        sampler = MixtureSampler(domains, mix, seq_len, spec.seed)
        evaluator = self._evaluator(domains)
        fingerprint = {
            "run_id": spec.run_id,
            "spec": json.dumps({k: v for k, v in spec.to_dict().items() if k != "trial_number"}, sort_keys=True),
            "shape": json.dumps(cfg.to_dict(), sort_keys=True),
            "hparams": json.dumps(hp.to_dict(), sort_keys=True),
            "data": json.dumps(self.data.to_dict(), sort_keys=True),
            "tokenizer": self.tokenizer.name,
        }

        model, forward = self._model(cfg)
        torch.manual_seed(spec.seed)
        model.init_weights(hp.init_std)
        model.train()
        optimizer = _optimizer(model, hp, self.device)
        step, curve = 0, []
        before = {"wall_s": 0.0, "timed_s": 0.0, "timed_tokens": 0}  # earlier sessions of this run
        ckpt = checkpoint.load_latest(run_dir, fingerprint, map_location="cpu")  # load_state_dict moves to device
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            checkpoint.set_rng_state(ckpt["rng"])
            step, curve, before = ckpt["step"], list(ckpt["curve"]), dict(ckpt["timing"])
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            run_dir / "run.json",
            {
                "spec": spec.to_dict(),
                "shape": cfg.to_dict(),
                "hparams": hp.to_dict(),
                "n_params": n_params,
                "data": self.data.to_dict(),
            },
            indent=2,
            sort_keys=True,
        )

        def timing() -> dict:
            """Wall and timed training seconds and tokens over all sessions so far."""
            return {
                "wall_s": float(before["wall_s"] + time.perf_counter() - t_start),
                "timed_s": float(before["timed_s"] + timed_s),
                "timed_tokens": int(before["timed_tokens"] + timed_tokens),
            }

        def save(at_step: int):
            checkpoint.save(
                run_dir,
                at_step,
                {
                    "fingerprint": fingerprint,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": checkpoint.rng_state(),
                    "curve": curve,
                    "timing": timing(),
                    "tokens": int(min(at_step * hp.batch_tokens, spec.n_tokens)),
                },
            )
            write_curve(curve, run_dir / "loss_curve.parquet")

        t_start = time.perf_counter()
        if self.settings.eval_every and step == 0 and not curve:  # the curve starts from the initialisation
            skills, doms = evaluator.run(model, self.device)
            curve.append(
                {
                    "step": 0,
                    "tokens": 0,
                    **{f"eval/{k}": v for k, v in skills.items()},
                    **{f"heldout/{k}": v for k, v in doms.items()},
                }
            )
        timed_s, timed_tokens, session_steps = 0.0, 0, 0
        pending: list[tuple[int, float, torch.Tensor]] = []  # (step, lr, loss) not yet synced to host
        clock, clock_tokens = None, 0  # start of the current timed stretch, and its tokens
        diverged = False
        every = self.settings
        while step < hp.n_steps:
            first = session_steps == 0
            if first:  # the session's first step carries compilation / warm-up: timed apart
                t_first = time.perf_counter()
            lr = lr_at(step, hp)
            n_rows, n_targets = step_rows(step, hp, spec.n_tokens)
            pending.append(
                (step, lr, self._train_step(forward, optimizer, model, sampler, step, n_rows, n_targets, lr, hp))
            )
            step += 1
            session_steps += 1
            if not first:
                clock_tokens += n_targets
            evaluate_now = bool(every.eval_every) and step % every.eval_every == 0 and step < hp.n_steps
            stopping = stop_after_steps is not None and step == stop_after_steps and step < hp.n_steps
            save_now = stopping or (
                bool(every.checkpoint_every) and step % every.checkpoint_every == 0 and step < hp.n_steps
            )
            if not (first or step % every.log_every == 0 or step == hp.n_steps or evaluate_now or save_now):
                continue  # no host sync: the GPU runs ahead
            # sync point: losses to the host, divergence check, throughput accounting
            values = torch.stack([p[2] for p in pending]).tolist()
            for (s, lr_s, _), v in zip(pending, values, strict=True):
                curve.append(
                    {
                        "step": s + 1,
                        "tokens": min((s + 1) * hp.batch_tokens, spec.n_tokens),
                        "lr": lr_s,
                        "train_loss": v,
                    }
                )
            pending.clear()
            self._sync()
            now = time.perf_counter()
            if first:
                first_s, first_tokens = now - t_first, n_targets
            elif clock is not None:
                timed_s += now - clock
                timed_tokens += clock_tokens
            clock_tokens = 0
            if not all(math.isfinite(v) for v in values):
                diverged = True
                break
            if every.progress is not None:
                every.progress(step, hp.n_steps, values[-1], lr)
            if evaluate_now:
                skills, doms = evaluator.run(model, self.device)
                curve.append(
                    {
                        "step": step,
                        "tokens": min(step * hp.batch_tokens, spec.n_tokens),
                        **{f"eval/{k}": v for k, v in skills.items()},
                        **{f"heldout/{k}": v for k, v in doms.items()},
                    }
                )
            if save_now:
                save(step)
            if stopping:
                raise RunStopped(f"stopped after step {step} of {hp.n_steps}; checkpoint written to {run_dir}")
            clock = time.perf_counter()  # evaluation and checkpoint I/O are not training time

        if session_steps == 1:  # a one-step session: its only step is all there is to time
            timed_s, timed_tokens = first_s, first_tokens
        total = timing()
        tokens_per_s = total["timed_tokens"] / total["timed_s"] if total["timed_s"] > 0 else 0.0
        peak = peak_flops(self.device)
        mfu = flops_per_token(cfg, attention=True) * tokens_per_s / peak if peak else 0.0
        common = dict(
            run_id=spec.run_id,
            n_params=n_params,
            n_tokens=int(spec.n_tokens),
            flops=6.0 * n_params * spec.n_tokens,
            shape=cfg.to_dict(),
            tokens_per_s=tokens_per_s,
            mfu=mfu,
        )
        if diverged:
            write_curve(curve, run_dir / "loss_curve.parquet")
            return RunResult(
                status="diverged",
                losses={s: float("nan") for s in SKILLS},
                wall_s=timing()["wall_s"],
                error=f"non-finite training loss by step {step}",
                **common,
            )
        skills, doms = evaluator.run(model, self.device)
        if not all(math.isfinite(v) for v in [*skills.values(), *doms.values()]):
            write_curve(curve, run_dir / "loss_curve.parquet")
            return RunResult(
                status="diverged",
                losses=skills,
                domain_losses=doms,
                wall_s=timing()["wall_s"],
                error="non-finite evaluation loss",
                **common,
            )
        if not curve or "eval/knowledge" not in curve[-1] or curve[-1]["step"] != step:
            curve.append(
                {
                    "step": step,
                    "tokens": int(spec.n_tokens),
                    **{f"eval/{k}": v for k, v in skills.items()},
                    **{f"heldout/{k}": v for k, v in doms.items()},
                }
            )
        if ckpt is None or ckpt["step"] < hp.n_steps:
            save(hp.n_steps)  # the final weights; a rerun only re-evaluates
        else:
            write_curve(curve, run_dir / "loss_curve.parquet")
        return RunResult(status="ok", losses=skills, domain_losses=doms, wall_s=timing()["wall_s"], **common)

    def _train_step(self, forward, optimizer, model, sampler, step, n_rows, n_targets, lr, hp) -> torch.Tensor:
        """One optimizer step on n_rows sequences, of which the first n_targets targets count; the loss.

        Every micro-batch has the same shape (a partial last batch is padded with ignored rows), so a
        compiled model never recompiles for the last step."""
        inputs, targets, _ = sampler.batch(step, n_rows)
        micro = min(self.settings.micro_batch_rows or hp.batch_seqs, hp.batch_seqs)
        padded = math.ceil(max(n_rows, hp.batch_seqs) / micro) * micro
        x_host = np.zeros((padded, hp.seq_len), dtype=np.int64)  # padding rows: token 0, no targets
        y_host = np.full((padded, hp.seq_len), IGNORE_INDEX, dtype=np.int64)
        x_host[:n_rows], y_host[:n_rows] = inputs, targets
        y_host.reshape(-1)[n_targets:] = IGNORE_INDEX  # last step: exactly the targets that complete D
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
        torch.nn.utils.clip_grad_norm_(model.parameters(), hp.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=not self._cuda_graphs)  # graphs: keep the buffers, zeroed
        return total
