"""`skillscale train`: one training run from the command line.

    skillscale train --params 1e6 --tokens 2e6 --mix knowledge=0.5,code=0.3,general=0.2 --out runs/a
    skillscale train --params 2e7 --tokens 4e8 --device cuda --compile --out runs/b
    skillscale train ... --out runs/a --resume        # continue from runs/a's newest checkpoint

Writes OUT/result.json atomically: run_id, status, n_params, n_tokens, flops, shape, losses
(per-skill answer NLL), domain_losses, wall_s, tokens_per_s, mfu (non-finite numbers as null).
Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from skillscale.atomic import atomic_write_json, finite_or_none
from skillscale.errors import InputError, OneLineArgumentParser

DEFAULT_MIX = "knowledge=0.5,code=0.3,general=0.2"
_SUFFIX = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "B": 1e9, "T": 1e12}


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


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train one model (torch backend)", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--params", required=True, help="target N (non-embedding matmul params), e.g. 1e6")
    p.add_argument("--tokens", required=True, help="training tokens D, e.g. 2e7")
    p.add_argument(
        "--mix", default=DEFAULT_MIX, help=f"domain=weight pairs summing to 1 (default {DEFAULT_MIX})"
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", default="", help="run directory (default runs/<run_id>)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--seed", default="0", help="initialisation and sampling seed")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")
    p.add_argument("--no-triton", action="store_true", help="use the torch reference ops even on CUDA")
    p.add_argument("--seq-len", default="512")
    p.add_argument("--tokenizer", default="bytes", help="'bytes' or a tokenizers JSON file")
    p.add_argument(
        "--corpus",
        action="append",
        default=[],
        metavar="DOMAIN=PATH",
        help="a real corpus for a domain (.txt, .jsonl, .parquet with 'text', or a dir of .py)",
    )
    p.add_argument(
        "--hparam",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a hyperparameter (lr, batch_tokens, warmup_steps, ...)",
    )
    p.add_argument("--eval-every", default="0", help="evaluate every k steps (0: at the end only)")
    p.add_argument("--checkpoint-every", default="1000", help="checkpoint every k steps")
    p.add_argument("--eval-samples", default="256", help="held-out prompts per skill")
    p.add_argument("--knowledge-entities", default="20000", help="size of the synthetic world")
    p.add_argument("--knowledge-eval", choices=("recall", "extract"), default="recall",
                   help="knowledge questions in training (recall) or held-out (extract) phrasings")
    p.add_argument("--domain-tokens", default="16e6", help="length of each generated training stream")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)
    return p


def _nonnegative(text: str, what: str) -> int:
    return 0 if str(text).strip() in ("0", "0.0") else parse_count(text, what)


def run_train(args) -> int:
    from trainers import checkpoint
    from trainers.shapes import count_params
    from trainers.spec import RunSpec
    from trainers.torch_backend import TorchBackend

    n_params = parse_count(args.params, "--params")
    n_tokens = parse_count(args.tokens, "--tokens")
    mix = parse_pairs(args.mix, "--mix")
    corpora = {}
    for item in args.corpus:
        corpora.update(parse_pairs(item, "--corpus", number=False))
    hparams = {}
    for item in args.hparam:
        hparams.update(parse_pairs(item, "--hparam"))
    if "batch_tokens" in hparams or "warmup_steps" in hparams:
        hparams.update({k: int(v) for k, v in hparams.items() if k in ("batch_tokens", "warmup_steps")})
    seed = _nonnegative(args.seed, "--seed")
    spec = RunSpec(n_params=n_params, n_tokens=n_tokens, mix=mix, seed=seed, hparams=hparams)
    settings = dict(
        device=args.device,
        compile=args.compile,
        seq_len=parse_count(args.seq_len, "--seq-len"),
        tokenizer=args.tokenizer,
        corpora=corpora,
        eval_every=_nonnegative(args.eval_every, "--eval-every"),
        checkpoint_every=_nonnegative(args.checkpoint_every, "--checkpoint-every"),
        eval_samples=parse_count(args.eval_samples, "--eval-samples"),
        knowledge_entities=parse_count(args.knowledge_entities, "--knowledge-entities"),
        knowledge_eval=args.knowledge_eval,
        domain_tokens=parse_count(args.domain_tokens, "--domain-tokens"),
    )
    if args.no_triton:
        settings["use_triton"] = False
    for path in corpora.values():
        if not Path(path).expanduser().exists():
            raise InputError(f"--corpus: file {path!r} not found")
    out = Path(args.out or Path("runs") / spec.run_id)
    if checkpoint.list_checkpoints(out) and not args.resume:
        raise InputError(
            f"--out: {str(out)!r} already has a checkpoint; pass --resume to continue it, or pick a new --out"
        )

    progress_bar = None
    if not args.quiet:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        progress_bar = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}"),
            TimeRemainingColumn(),
            transient=False,
            console=None,
        )
        task = progress_bar.add_task("train", total=None, loss=float("nan"), lr=0.0)

        def progress(step, n_steps, loss, lr):
            progress_bar.update(task, completed=step, total=n_steps, loss=loss, lr=lr)

        settings["progress"] = progress
    backend = TorchBackend(**settings)
    cfg, hp, _ = backend.plan(spec)  # all input errors surface here, before any data or model is built
    print(
        f"run {spec.run_id}: N={count_params(cfg):,} "
        f"(d_model {cfg.d_model} x {cfg.n_layers} layers, {cfg.n_heads} heads), D={n_tokens:,}, "
        f"{hp.n_steps} steps of {hp.batch_seqs}x{hp.seq_len}, lr {hp.lr:.2e}, device {backend.device}",
        file=sys.stderr,
    )
    if progress_bar is not None:
        with progress_bar:
            result = backend.run(spec, out)
    else:
        result = backend.run(spec, out)
    record = {
        k: result.to_dict()[k]
        for k in (
            "run_id",
            "status",
            "n_params",
            "n_tokens",
            "flops",
            "shape",
            "losses",
            "domain_losses",
            "wall_s",
            "tokens_per_s",
            "mfu",
        )
    }
    if result.error:
        record["error"] = result.error
    atomic_write_json(out / "result.json", finite_or_none(record), indent=2, sort_keys=True)
    losses = ", ".join(f"{k} {v:.4f}" for k, v in result.losses.items())
    print(
        f"{result.status}: {losses}; {result.tokens_per_s:,.0f} tok/s, MFU {result.mfu:.1%} -> "
        f"{out / 'result.json'}"
    )
    return 0 if result.status == "ok" else 1


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
