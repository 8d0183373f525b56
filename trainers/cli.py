"""`skillscale train`: one training run from the command line.

    skillscale train --params 1e6 --tokens 2e6 --mix knowledge=0.5,code=0.3,general=0.2 --out runs/a
    skillscale train --params 2e7 --tokens 4e8 --device cuda --compile --out runs/b
    skillscale train ... --out runs/a --resume        # continue from runs/a's newest checkpoint
    skillscale train ... --hparam schedule=wsd        # warmup-stable-decay instead of cosine
    skillscale train --params 1e6 --tokens 1e7,2e7,4e7 --out runs/f   # a run family: one WSD training, 3 cooldowns

Every setting of the trainer (TrainerSettings) and of the data (DataSettings) is a flag named after its field
(`seq_len` -> `--seq-len`, a true-by-default switch `cuda_graphs` -> `--no-cuda-graphs`, a mapping `corpora` ->
`--corpus DOMAIN=PATH`, repeatable), with the field's default and description as its help: the settings models are
the one place defaults and meanings are written.

Writes OUT/result.json atomically: run_id, status, n_params, n_tokens, flops, shape, losses
(per-skill answer NLL), domain_losses, wall_s, tokens_per_s, mfu (non-finite numbers as null). With several
--tokens, a run family (trainers/spec.py FamilySpec, cooldowns of --cooldown-fraction of each branch's steps):
OUT/result.json holds family_id, flops (the family's true cost) and one such record per branch.
Bad input is one line on stderr and exit status 2: also a size that cannot fit in the device's memory (the
message names the memory needed and available) and a token count below one batch (it names the minimum).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import typing
from pathlib import Path

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from skillscale.atomic import atomic_write_json, finite_or_none
from skillscale.config_types import located_error
from skillscale.errors import InputError, OneLineArgumentParser

DEFAULT_MIX = "knowledge=0.5,code=0.3,general=0.2"
# On a CPU, `train` evaluates on fewer examples unless --eval-samples / --heldout-rows say otherwise: the defaults
# (262,144 knowledge draws, ~5,000 code functions, 512 held-out windows per domain) are ~11M tokens of forward, 4.5 of
# the 6 minutes of a 3e5-parameter, 3e5-token CPU run. Fewer draws estimate the same losses with a larger standard
# error (result.json's loss_errors says how large).
CPU_EVAL_SAMPLES = 1024  # per skill: knowledge draws, code functions, rows of a user eval file
CPU_HELDOUT_ROWS = 64  # held-out windows per domain
_SUFFIX = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "B": 1e9, "T": 1e12}
_FLAG_NAMES = {"corpora": "corpus", "skill_evals": "skill-eval"}  # mapping fields: one KEY=VALUE per flag


def parse_count(text: str, what: str) -> int:
    """'1e6', '2_000_000', '5M', '1.5B' -> int; InputError naming `what` otherwise."""
    raw = str(text).strip().replace("_", "")
    scale = 1.0
    if raw and raw[-1] in _SUFFIX:
        raw, scale = raw[:-1], _SUFFIX[raw[-1]]
    try:
        value = float(raw) * scale
    except ValueError:
        raise InputError(f"{what}: expected a number like 1e6, 2_000_000 or 5M, got {text!r}") from None
    if not math.isfinite(value) or value <= 0 or value != round(value):
        raise InputError(f"{what}: expected a positive whole number, got {text!r}")
    return int(round(value))


def parse_pairs(text: str, what: str, number: bool = True) -> dict:
    """'a=0.5,b=0.5' -> {'a': 0.5, 'b': 0.5}."""
    out = {}
    for part in [p for p in str(text).split(",") if p.strip()]:
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(f"{what}: expected NAME=VALUE pairs separated by commas, got {part!r}")
        if number:
            try:
                out[key.strip()] = float(value)
            except ValueError:
                raise InputError(f"{what}: value of {key.strip()!r} is not a number: {value!r}") from None
        else:
            out[key.strip()] = value.strip()
    return out


def _whole(text: str, what: str) -> int:
    """A whole number, zero and suffixes allowed ('0', '16e6', '64M'); the field's own check judges its range."""
    return 0 if str(text).strip() in ("0", "0.0") else parse_count(text, what)


def settings_flags(cls: type[BaseModel]) -> list[tuple[str, FieldInfo, str]]:
    """(name, field, flag) for each field of the settings model `cls` that is a command-line flag: all but those
    left out when the settings are written down (a callback such as TrainerSettings.progress)."""
    flags = []
    for name, f in cls.model_fields.items():
        if f.exclude:
            continue
        flag = _FLAG_NAMES.get(name, name.replace("_", "-"))
        if f.annotation is bool and f.get_default(call_default_factory=True) is True:
            flag = f"no-{flag}"
        flags.append((name, f, f"--{flag}"))
    return flags


def _add_settings_arguments(p: argparse.ArgumentParser, cls: type[BaseModel], section: str) -> None:
    """One flag per field of `cls` (module docstring); parsed values land in args.<section>__<field>, None when
    the flag is not given, so the model's own default applies."""
    for name, f, flag in settings_flags(cls):
        dest, default = f"{section}__{name}", f.get_default(call_default_factory=True)
        what = (f.description or f"{section} setting {name}").replace("%", "%%")  # argparse formats help
        if f.annotation is bool:
            # an on-by-default switch is a --no-... flag: its help says what giving it does (turns the setting off)
            help_text = f"turn off: {what} (on by default)" if default else f"{what} (default: off)"
            p.add_argument(flag, dest=dest, action="store_const", const=not default, default=None, help=help_text)
        elif isinstance(default, dict):
            p.add_argument(flag, dest=dest, action="append", default=None, metavar="KEY=PATH",
                           help=f"{what} (repeatable)")
        else:
            p.add_argument(flag, dest=dest, default=None, metavar=name.upper(), help=f"{what} (default: {default!r})")


def _settings_from_args(args, cls: type[BaseModel], section: str):
    """The settings model built from the flags given (the others keep its defaults); a bad value is an InputError
    naming the flag."""
    values, flags = {}, {}
    for name, f, flag in settings_flags(cls):
        raw = getattr(args, f"{section}__{name}", None)
        if raw is None:
            continue
        flags[name] = flag
        kind = f.annotation
        if kind is bool:
            values[name] = raw
        elif isinstance(f.get_default(call_default_factory=True), dict):
            values[name] = {k: v for item in raw for k, v in parse_pairs(item, flag, number=False).items()}
        elif kind is int:
            values[name] = _whole(raw, flag)
        elif kind is float:
            try:
                values[name] = float(raw)
            except ValueError:
                raise InputError(f"{flag}: expected a number, got {raw!r}") from None
        elif bool in typing.get_args(kind):  # use_triton: true, false or 'auto'
            text = str(raw).strip().lower()
            values[name] = {"true": True, "on": True, "false": False, "off": False}.get(text, text)
        else:
            values[name] = str(raw)
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        where, message = located_error(exc)
        loc = exc.errors()[0]["loc"]
        raise InputError(f"{flags.get(loc[0], where) if loc else where}: {message}") from None


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    from trainers.data import DataSettings
    from trainers.settings import TrainerSettings

    p = subparsers.add_parser(
        "train", help="train one model (torch backend)", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--params", required=True, help="target N (non-embedding matmul params), e.g. 1e6")
    p.add_argument("--tokens", required=True, help="training tokens D, e.g. 2e7; several (2e7,4e7): a run family")
    p.add_argument("--cooldown-fraction", default=None,
                   help="run family: cooldown as a fraction of each branch's steps (default: FamilySpec's)")
    p.add_argument(
        "--mix", default=DEFAULT_MIX, help=f"domain=weight pairs summing to 1 (default {DEFAULT_MIX})"
    )
    p.add_argument("--out", default="", help="run directory (default runs/<run_id>)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--seed", default="0", help="initialisation and sampling seed")
    p.add_argument(
        "--hparam",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a hyperparameter (lr, batch_tokens, warmup_steps, schedule=wsd, ...; trainers/hparams.py)",
    )
    p.add_argument("--no-triton", dest="trainer__use_triton", action="store_const", const=False,
                   help="use the torch reference ops even on CUDA (the same as --use-triton false)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_settings_arguments(p, TrainerSettings, "trainer")
    _add_settings_arguments(p, DataSettings, "data")
    p.set_defaults(func=run_train)
    return p


def _hparams(items: list[str]) -> dict:
    """--hparam KEY=VALUE items: numbers where they parse (whole numbers for batch and step counts), text else."""
    hparams: dict = {}
    for item in items:
        for key, value in parse_pairs(item, "--hparam", number=False).items():
            try:
                number = float(value)
            except ValueError:
                hparams[key] = value  # schedule=wsd, cooldown_shape=1-sqrt
                continue
            integral = key in ("batch_tokens", "warmup_steps", "rule_n_tokens") and number.is_integer()
            hparams[key] = int(number) if integral else number
    return hparams


def run_train(args) -> int:
    from trainers import checkpoint
    from trainers.data import DataSettings
    from trainers.settings import TrainerSettings
    from trainers.shapes import count_params
    from trainers.spec import FamilySpec, RunSpec
    from trainers.torch_backend import TorchBackend

    n_params = parse_count(args.params, "--params")
    token_counts = [parse_count(t, "--tokens") for t in str(args.tokens).split(",") if t.strip()]
    mix = parse_pairs(args.mix, "--mix")
    seed = _whole(args.seed, "--seed")
    family = None
    if len(token_counts) > 1:
        fraction = {} if args.cooldown_fraction is None else {"cooldown_fraction": float(args.cooldown_fraction)}
        family = FamilySpec(n_params=n_params, n_tokens=tuple(token_counts), mix=mix, seed=seed,
                            hparams=_hparams(args.hparam), **fraction)
        spec = family.branches()[-1]  # the trunk: planned and printed below
    elif args.cooldown_fraction is not None:
        raise InputError("--cooldown-fraction: only for a run family (several --tokens)")
    else:
        spec = RunSpec(n_params=n_params, n_tokens=token_counts[0], mix=mix, seed=seed,
                       hparams=_hparams(args.hparam))
    n_tokens = spec.n_tokens
    trainer = _settings_from_args(args, TrainerSettings, "trainer")
    data = _settings_from_args(args, DataSettings, "data")
    for path in data.corpora.values():
        if not Path(path).expanduser().exists():
            raise InputError(f"--corpus: file {path!r} not found")
    out = Path(args.out or Path("runs") / (family.family_id if family else spec.run_id))
    started = (out / "family.json").exists() if family else bool(checkpoint.list_checkpoints(out))
    if started and not args.resume:
        raise InputError(
            f"--out: {str(out)!r} already has a checkpoint; pass --resume to continue it, or pick a new --out"
        )

    trainer, data, cpu_note = cpu_evaluation_defaults(trainer, data, args)
    progress_bar = None
    if not args.quiet:
        progress_bar, progress = train_progress()
        trainer = trainer.model_copy(update={"progress": progress})
    backend = TorchBackend(trainer=trainer, data=data)
    for planned in family.branches() if family else [spec]:  # all input errors surface here, before any data
        cfg, hp, _ = backend.plan(planned)
    backend.check_fits(cfg, hp)
    print(
        f"run {spec.run_id}: N={count_params(cfg):,} "
        f"(d_model {cfg.d_model} x {cfg.n_layers} layers, {cfg.n_heads} heads), D={n_tokens:,}, "
        f"{hp.n_steps} steps of {hp.batch_seqs}x{hp.seq_len}, lr {hp.lr:.2e} ({hp.schedule}), device {backend.device}",
        file=sys.stderr,
    )
    if cpu_note:
        print(cpu_note, file=sys.stderr)
    with progress_bar if progress_bar is not None else contextlib.nullcontext():
        results = backend.run_family(family, out) if family else [backend.run(spec, out)]
    records = [_record(result) for result in results]
    if family:
        document = {"family_id": family.family_id, "flops": sum(r.flops for r in results), "branches": records}
    else:
        document = records[0]
    atomic_write_json(out / "result.json", finite_or_none(document), indent=2, sort_keys=True)
    for result in results:
        losses = ", ".join(f"{k} {v:.4f}" for k, v in result.losses.items())
        print(f"{result.status} (D={result.n_tokens:,}): {losses}; {result.tokens_per_s:,.0f} tok/s, "
              f"MFU {result.mfu:.1%}")
    print(f"-> {out / 'result.json'}")
    return 0 if all(r.status == "ok" for r in results) else 1


def cpu_evaluation_defaults(trainer, data, args) -> tuple:
    """(trainer, data, note): on a CPU, evaluation on CPU_EVAL_SAMPLES / CPU_HELDOUT_ROWS unless the flags were given
    (see CPU_EVAL_SAMPLES), with a line saying so; elsewhere unchanged, note ''."""
    import torch

    device = trainer.device if trainer.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if not str(device).startswith("cpu"):
        return trainer, data, ""
    changed = []
    if getattr(args, "data__eval_samples", None) is None and data.eval_samples > CPU_EVAL_SAMPLES:
        data = data.model_copy(update={"eval_samples": CPU_EVAL_SAMPLES})
        changed.append(f"{CPU_EVAL_SAMPLES} eval samples per skill (--eval-samples)")
    if getattr(args, "trainer__heldout_rows", None) is None and trainer.heldout_rows > CPU_HELDOUT_ROWS:
        trainer = trainer.model_copy(update={"heldout_rows": CPU_HELDOUT_ROWS})
        changed.append(f"{CPU_HELDOUT_ROWS} held-out windows per domain (--heldout-rows)")
    note = f"evaluation on the CPU: {' and '.join(changed)}; result.json's loss_errors gives each loss's error" \
        if changed else ""
    return trainer, data, note


def train_progress(console=None):
    """(rich Progress, its callback for TrainerSettings.progress): steps, loss and lr while training; once the last
    step is done the bar says it is evaluating, which on a CPU takes a while (not a hang)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}"),
        TimeRemainingColumn(),
        transient=False,
        console=console,
    )
    task = bar.add_task("train", total=None, loss=float("nan"), lr=0.0)

    def progress(step, n_steps, loss, lr):
        description = "evaluate (final losses)" if step >= n_steps else "train"
        bar.update(task, completed=step, total=n_steps, loss=loss, lr=lr, description=description)

    return bar, progress


RECORD_KEYS = ("run_id", "status", "n_params", "n_tokens", "flops", "shape", "losses", "domain_losses", "loss_errors",
               "wall_s", "tokens_per_s", "mfu")


def _record(result) -> dict:
    """What result.json keeps of a RunResult (plus family_id and branch for a branch, error if any)."""
    full = result.to_dict()
    record = {k: full[k] for k in RECORD_KEYS}
    if result.family_id:
        record.update(family_id=result.family_id, branch=result.branch)
    if result.error:
        record["error"] = result.error
    return record


def main(argv: list[str] | None = None) -> int:
    """`python -m trainers.cli train ...`: the same handling as `skillscale train`."""
    parser = OneLineArgumentParser(prog="skillscale")
    add_train_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"skillscale {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
