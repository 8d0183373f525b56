"""Planned real-trainer runs for the GPU measurements, executed in one process and recorded one JSON line each.

Used by experiments/seed_noise.py, lr_sweep.py, isoflop_ladder.py and gpu_sitting.py (which runs the plans of
several of them in one process, so that corpora, evaluation sets and compiled graphs are built once).

A `PlannedRun` is what one measurement wants trained: a target N, an exact D, a seed and an LR multiplier on
the trainer's rule (trainers/hparams.py). Two measurements that want the same run (the isoFLOP ladder's seed-0
run is also the seed-noise point's first seed and the LR sweep's rule point) share it: a run is identified by
its RunSpec's run_id together with the backend settings that change what is trained (data settings, sequence
length, tokenizer), so a recorded row is found again and never trained twice. Settings are compared field by
field over the fields both sides have (`compatible`): a data field added to the trainer between two sittings,
at its default, does not orphan the rows recorded before it.

`execute` trains the runs not yet recorded, in the order given, and appends each finished run to a JSON-lines
file at once (atomically, benchmarks/_provenance.append_rows): a sitting killed at its time limit keeps every
run it finished, and the next sitting, given those rows, continues where it stopped. Before each run it
estimates the run's time (tokens / tokens-per-second measured so far at that shape, or a prior; plus a
compilation allowance for a shape not yet seen in this process) and skips runs that would overrun the
sitting's deadline.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from _provenance import append_rows, environment
from _trainer_flags import parse_setting

from fitting.conventions import FLOPS_PER_PARAM_TOKEN, training_flops
from trainers.hparams import ADDED_LATER
from trainers.shapes import count_params
from trainers.spec import RunSpec

# Prior throughput for a shape not yet trained in this process: 5e6 tok/s at N = 1e6, falling as N^-0.2
# (H200 2026-12-01, compiled + CUDA graphs: 0.93M ~4-8M tok/s, 7.3M 3.98M, 22M 2.2M tok/s; docs/gpu.md).
PRIOR_TOKENS_PER_S_AT_1M = 5e6
PRIOR_EXPONENT = -0.2
COMPILE_ALLOWANCE_S = 90.0  # a new shape's first run over its later ones: 26-99 s on the H200 (seed_dn.jsonl)
EVAL_ALLOWANCE_S = 3.0  # per run, evaluation and the final checkpoint


# RunResult fields the row carries under its own names; any others (standard errors of the evaluation,
# compile fallbacks, ... as the trainer adds them) are kept under "result_extra"
_RESULT_IN_ROW = {"run_id", "status", "n_params", "n_tokens", "flops", "losses", "domain_losses", "wall_s",
                  "tokens_per_s", "mfu", "shape"}


@dataclass(frozen=True)
class PlannedRun:
    """One run a measurement wants: target N, exact D, seed, LR = multiplier x the trainer's rule."""

    experiment: str  # "isoflop", "seed_noise", "lr_sweep", ...
    target_n: float
    n_tokens: int
    budget: float  # nominal C = 6 N D the run was planned at (exact N differs from target_n by the shape rule)
    seed: int = 0
    lr_multiplier: float = 1.0
    overrides: tuple[tuple[str, object], ...] = ()  # other RunSpec.hparams (warmup_steps, batch_tokens, ...)

    def spec(self, mix: dict[str, float], rule_lr: float) -> RunSpec:
        """The RunSpec; LR multiplier 1 and no overrides leave hparams empty, so the rule's run is the same run
        for every measurement (same run_id)."""
        hparams = dict(self.overrides)
        if self.lr_multiplier != 1.0:
            hparams["lr"] = rule_lr * self.lr_multiplier
        return RunSpec(n_params=int(self.target_n), n_tokens=int(self.n_tokens), mix=mix, seed=self.seed,
                       hparams=hparams)


def trainer_settings(backend):
    """The backend's TrainerSettings (`backend.trainer`; `backend.settings` in older trainers)."""
    return getattr(backend, "trainer", None) or backend.settings


def settings_fingerprint(backend) -> str:
    """12 hex digits over what changes the trained function besides the spec: data, seq_len, tokenizer."""
    what = {"data": backend.data.model_dump(), "seq_len": trainer_settings(backend).seq_len,
            "tokenizer": backend.tokenizer.name}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:12]


def exact_n(backend, target_n: float, mix: dict[str, float]) -> int:
    """N of the shape the trainer builds for target_n."""
    cfg, _, _ = backend.plan(RunSpec(n_params=int(target_n), n_tokens=10**10, mix=mix))  # D: any valid one
    return count_params(cfg)


def tokens_for_budget(backend, target_n: float, budget: float, mix: dict[str, float]) -> int:
    """D such that 6 N D = budget for the exact N of target_n's shape."""
    return int(round(budget / (FLOPS_PER_PARAM_TOKEN * exact_n(backend, target_n, mix))))


def run_key(spec: RunSpec, fingerprint: str) -> str:
    return f"{spec.run_id}-{fingerprint}"


def training_settings(backend) -> dict:
    """What a row records of the settings that change the trained function (compared by `compatible`)."""
    trainer = trainer_settings(backend)
    replicas = int(getattr(trainer, "seed_replicas", 1))  # recorded only when > 1: older rows keep their key
    return {"seq_len": trainer.seq_len, "tokenizer": backend.tokenizer.name, "data": backend.data.model_dump(),
            "qk_norm": bool(getattr(trainer, "qk_norm", False)),
            **({"seed_replicas": replicas} if replicas > 1 else {})}


# data fields added after rows were first recorded, with the value every older row trained with
RECORDED_BEFORE = {"data_order": "run"}
# optimisation fields added to rows later (row["hparams"]), with the value older rows trained with: the
# schedule decayed to 10% before LR_RULE_SCALE and decay to zero became the defaults (2026-12-01); HParams
# fields added later (trainers/hparams.py ADDED_LATER, init_scheme) held their old value in every older row
HPARAMS_RECORDED_BEFORE = {"min_lr_ratio": 0.1, **ADDED_LATER}
HPARAMS_COMPARED = ("lr", "batch_seqs", "n_steps", "warmup_steps", "min_lr_ratio", "schedule", "weight_decay",
                    "init_scheme")


def recorded_optimisation(row: dict) -> dict:
    """The hyperparameters a row trained with (HPARAMS_COMPARED; rows older than the field: their values)."""
    return {**HPARAMS_RECORDED_BEFORE, "lr": row.get("lr"), "n_steps": row.get("n_steps"), **row.get("hparams", {})}


def optimisation_key(row: dict) -> tuple:
    """Every hyperparameter a row trained with (HPARAMS_COMPARED, floats to 9 digits, and the row's `overrides`,
    which may set one not compared, such as init_std): runs of one point that share it are replicates of each
    other; a warmup, batch or initialisation variant is a group of its own."""
    hp = recorded_optimisation(row)
    compared = tuple(f"{v:.9g}" if isinstance(v, float) else v for v in (hp.get(name) for name in HPARAMS_COMPARED))
    overrides = {k: f"{v:.9g}" if isinstance(v, float) else v for k, v in row.get("overrides", {}).items()}
    return *compared, json.dumps(overrides, sort_keys=True)


def same_optimisation(row: dict, hp) -> bool:
    """Whether a recorded row trained with the hyperparameters `hp` the trainer resolves now: a spec with no
    hparams overrides keeps its run_id when a default (the LR rule, the schedule) changes, so the run_id alone
    cannot tell an old run from the one asked for."""
    recorded = recorded_optimisation(row)
    now = {name: getattr(hp, name) for name in HPARAMS_COMPARED}
    for name in now.keys() & recorded.keys():
        a, b = recorded[name], now[name]
        if isinstance(b, float) and isinstance(a, int | float):
            if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif a != b:
            return False
    return True


def compatible(a: dict, b: dict) -> bool:
    """Whether two rows' settings (row["settings"]) train the same function: equal sequence length and
    tokenizer, and equal values in every data field that both record."""
    if a.get("seq_len") != b.get("seq_len") or a.get("tokenizer") != b.get("tokenizer"):
        return False
    if a.get("qk_norm", False) != b.get("qk_norm", False):  # rows older than the setting trained without it
        return False
    if a.get("seed_replicas", 1) != b.get("seed_replicas", 1):  # a mean of R models is not one model's loss
        return False
    da, db = ({**RECORDED_BEFORE, **row.get("data", {})} for row in (a, b))
    return all(da[k] == db[k] for k in da.keys() & db.keys())


def read_rows(paths: Iterable[str | Path]) -> list[dict]:
    """Run rows from JSON-lines files (missing files are skipped; rows without a key are ignored)."""
    rows = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if "key" in row:
                    rows.append(row)
    return rows


@dataclass
class Throughput:
    """Measured tokens/s per shape in this process (training steps only) and which shapes are compiled.

    A run of `models_per_run` seed replicas trains that many models on each token, so before a shape is
    measured its rate is the prior's divided by them."""

    tokens_per_s: dict[str, float] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    models_per_run: int = 1

    def estimate_s(self, shape: str, n_params: int, n_tokens: int, compiled: bool) -> float:
        prior = PRIOR_TOKENS_PER_S_AT_1M * (n_params / 1e6) ** PRIOR_EXPONENT / self.models_per_run
        rate = self.tokens_per_s.get(shape, prior)
        new_shape = compiled and shape not in self.seen
        return n_tokens / rate + EVAL_ALLOWANCE_S + (COMPILE_ALLOWANCE_S if new_shape else 0.0)


def execute(
    planned: list[PlannedRun],
    backend,
    mix: dict[str, float],
    *,
    rows_out: str | Path,
    recorded: list[dict] = (),
    runs_dir: str | Path,
    deadline_s: float = math.inf,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> list[dict]:
    """Train every planned run not already in `recorded` (in the order given, duplicates merged), appending
    each finished run's row to `rows_out` at once; returns the rows of all planned runs (recorded or new).

    A run whose estimated time would end past `deadline_s` (seconds from now) is skipped and logged."""
    t0 = time.perf_counter()
    fingerprint = settings_fingerprint(backend)
    current = training_settings(backend)
    done: dict[str, list[dict]] = {}
    for row in recorded:
        if row.get("status") == "ok" and compatible(row.get("settings", {}), current):
            done.setdefault(row["run_id"], []).append(row)
    env = environment(backend.device)
    trainer = trainer_settings(backend)
    throughput = Throughput(models_per_run=getattr(trainer, "seed_replicas", 1))
    compiled = bool(trainer.compile) and backend.device.type == "cuda"
    merged: dict[str, tuple[PlannedRun, RunSpec, list[str]]] = {}
    for run in planned:
        rule_lr = backend.plan(RunSpec(n_params=int(run.target_n), n_tokens=int(run.n_tokens), mix=mix))[1].lr
        spec = run.spec(mix, rule_lr)
        key = run_key(spec, fingerprint)
        if key in merged:
            merged[key][2].append(run.experiment)
        else:
            merged[key] = (run, spec, [run.experiment])
    out_rows = []
    for key, (run, spec, experiments) in merged.items():
        cfg, hp, _ = backend.plan(spec)
        same = [row for row in done.get(spec.run_id, []) if same_optimisation(row, hp)]
        if same:
            out_rows.append(same[-1])
            continue
        shape = f"{cfg.d_model}x{cfg.n_layers}"
        n_params = count_params(cfg)
        estimate = throughput.estimate_s(shape, n_params, spec.n_tokens, compiled)
        elapsed = time.perf_counter() - t0
        if elapsed + estimate > deadline_s:
            log(f"skip {shape} D={spec.n_tokens:,} seed={spec.seed} lr x{run.lr_multiplier}: "
                f"~{estimate:.0f} s would pass the deadline ({elapsed:.0f} of {deadline_s:.0f} s used)")
            continue
        rule_lr = backend.plan(RunSpec(n_params=spec.n_params, n_tokens=spec.n_tokens, mix=mix))[1].lr
        start = time.perf_counter()
        run_dir = Path(runs_dir) / spec.run_id
        result = backend.run(spec, run_dir)
        wall = time.perf_counter() - start
        throughput.seen.add(shape)
        if result.tokens_per_s > 0:
            throughput.tokens_per_s[shape] = result.tokens_per_s
        row = {
            "key": key,
            "experiments": experiments,
            "run_id": spec.run_id,
            "target_n": run.target_n,
            "n_params": n_params,
            "n_tokens": int(spec.n_tokens),
            "budget": run.budget,
            "flops": training_flops(n_params, spec.n_tokens),
            "seed": spec.seed,
            "lr": hp.lr,
            "lr_rule": rule_lr,
            "lr_multiplier": run.lr_multiplier,
            "batch_tokens": hp.batch_tokens,
            "n_steps": hp.n_steps,
            "hparams": {name: getattr(hp, name) for name in HPARAMS_COMPARED},
            **({"overrides": dict(run.overrides)} if run.overrides else {}),
            "shape": shape,
            "status": result.status,
            "losses": result.losses,
            "domain_losses": result.domain_losses,
            "tokens_per_s": result.tokens_per_s,
            "mfu": result.mfu,
            "wall_s": wall,
            "result_extra": {k: v for k, v in result.to_dict().items() if k not in _RESULT_IN_ROW},
            **curve_summary(run_dir / "loss_curve.parquet"),
            "mix": mix,
            "settings": {"fingerprint": fingerprint, **current, "compile": bool(trainer.compile),
                         "use_triton": bool(backend.use_triton)},
            **env,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        append_rows(rows_out, [row])
        out_rows.append(row)
        losses = " ".join(f"{k}={v:.4f}" for k, v in sorted(result.losses.items()))
        log(f"{'+'.join(experiments)} {shape} N={n_params:,} D={spec.n_tokens:,} seed={spec.seed} "
            f"lr={hp.lr:.2e} (x{run.lr_multiplier}): {result.status} {losses} "
            f"{result.tokens_per_s:,.0f} tok/s, {wall:.1f} s (est {estimate:.0f}), t={time.perf_counter() - t0:.0f} s")
    return out_rows


CURVE_WINDOWS = 16  # a row's training curve: the mean training loss over this many equal spans of steps


def curve_summary(curve_path: Path, windows: int = CURVE_WINDOWS) -> dict:
    """A run's training loss in a few numbers, from its loss_curve.parquet (empty if there is none):
    `train_curve`, [last step, mean training loss] of each of `windows` equal spans of steps; `worst_rise`, the
    largest relative rise of one span's mean over the lowest mean before it (a loss spike that lasts shows as
    a rise; a smooth curve reads <= 0); `final_train_loss`, the mean over the last 5% of steps."""
    if not curve_path.exists():
        return {}
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(curve_path).to_pydict()
    pairs = [(s, v) for s, v in zip(table.get("step", []), table.get("train_loss", []), strict=True)
             if v is not None]
    if len(pairs) < windows:
        return {}
    steps, losses = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=np.float64)
    spans = np.array_split(np.arange(len(losses)), windows)
    means = np.array([losses[i].mean() for i in spans])
    rises = [(means[k] - means[:k].min()) / means[:k].min() for k in range(1, windows)]
    tail = losses[-max(1, len(losses) // 20):]
    return {"train_curve": [[int(steps[i[-1]]), round(float(m), 5)] for i, m in zip(spans, means, strict=True)],
            "worst_rise": round(float(max(rises)), 5), "final_train_loss": round(float(tail.mean()), 5)}


def by_shape(planned: list[PlannedRun]) -> list[PlannedRun]:
    """The runs reordered so that each shape's runs are consecutive (fewest compilations), smallest N first,
    keeping the given order within a shape."""
    first = {}
    for i, run in enumerate(planned):
        first.setdefault(run.target_n, i)
    return sorted(planned, key=lambda r: (r.target_n, first[r.target_n]))


# ---------------------------------------------------------------------------------------- command-line pieces


def add_backend_args(p) -> None:
    """The trainer flags every measurement script shares."""
    p.add_argument("--mix", default="knowledge=0.5,code=0.3,general=0.2")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-compile", action="store_true", help="train eager (default: torch.compile on CUDA)")
    p.add_argument("--no-triton", action="store_true")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--eval-samples", type=int, default=0, help="prompts per skill (0: the trainer's default)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="any other TorchBackend setting, e.g. --set micro_batch_rows=64 (repeatable)")
    p.add_argument("--runs-dir", default="", help="where the runs' checkpoints go (default: a temp dir)")
    p.add_argument("--deadline-s", type=float, default=math.inf,
                   help="start no run that would end later than this many seconds after the start")


def make_backend(args):
    """TorchBackend from add_backend_args' flags: checkpoints only at the end, compile on CUDA by default."""
    from trainers.torch_backend import TorchBackend

    settings: dict = {"device": args.device, "seq_len": args.seq_len, "checkpoint_every": 0}
    if args.eval_samples:
        settings["eval_samples"] = args.eval_samples
    if args.no_triton:
        settings["use_triton"] = False
    settings.update(parse_setting(s) for s in args.set)
    on_cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    settings.setdefault("compile", on_cuda and not args.no_compile)
    return TorchBackend(**settings)


def parse_points(text: str, what: str) -> list[tuple[float, float]]:
    """'5e5@1.25e14,2e6@5e14' -> [(target N, budget C), ...]."""
    from skillscale.errors import InputError

    points = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        n, sep, c = part.partition("@")
        try:
            points.append((float(n), float(c)))
        except ValueError:
            raise InputError(f"{what}: expected N@C pairs such as 5e5@1.25e14, got {part!r}") from None
        if not sep or not (points[-1][0] > 0 and points[-1][1] > 0):
            raise InputError(f"{what}: expected N@C pairs with positive N and C, got {part!r}")
    if not points:
        raise InputError(f"{what}: no N@C points given")
    return points


def parse_floats(text: str, what: str) -> list[float]:
    from skillscale.errors import InputError

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what}: expected comma-separated numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"{what}: expected positive numbers, got {text!r}")
    return values


def parse_seeds(text: str, what: str = "--seeds") -> list[int]:
    from skillscale.errors import InputError

    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what}: expected comma-separated integers, got {text!r}") from None


def trained_rows(rows: list[dict]) -> list[dict]:
    """Finished runs whose settings are `compatible` with the most recent row's, so rows trained on other data
    never mix into one analysis; one row per run (the latest), a run being its run_id under the hyperparameters
    it trained with (a default changed since keeps the run_id)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return []
    latest = ok[-1]["settings"]
    unique = {(r["run_id"], json.dumps(recorded_optimisation(r), sort_keys=True)): r
              for r in ok if compatible(r["settings"], latest)}
    return list(unique.values())


def by_the_rules(row: dict) -> bool:
    """Whether a row trained with the trainer's own rules apart from an LR multiplier (no `overrides`): the
    ladder and LR-sweep points; a variant (another warmup, batch, ...) is only ever its own seed-noise group."""
    return not row.get("overrides")


def loss_items(row: dict) -> dict[str, float]:
    """A run's losses by name: skills as they are ('knowledge', 'code'), domains as 'domain:<name>'."""
    out = dict(row["losses"])
    out.update({f"domain:{k}": v for k, v in row.get("domain_losses", {}).items()})
    return out

