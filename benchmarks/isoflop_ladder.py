"""A short isoFLOP ladder through the real trainer: several model sizes at one FLOP budget, one data mix.

    PYTHONPATH=. python3 benchmarks/isoflop_ladder.py --out benchmarks/results/isoflop_ladder.json
    PYTHONPATH=. python3 benchmarks/isoflop_ladder.py --budget 3e16 --sizes 5e6,1e7,2e7,4e7,8e7 --out l.json
    PYTHONPATH=. python3 benchmarks/isoflop_ladder.py --device cpu --budget 2e11 --sizes 7e4,2e5 \
        --seq-len 64 --no-compile --eval-samples 32 --domain-tokens 2e5 --out /tmp/ladder.json  # CPU smoke

For each target N the exact N comes from the shape rule (trainers/shapes.py) and D = C / (6 N), so every
run costs the same C = 6·N·D. Each run goes through TorchBackend.run (GPU: bf16 autocast, Triton kernels,
torch.compile), one process, one backend, so generated corpora and evaluation sets are built once. Prints
per-skill answer NLL, per-domain held-out loss, tokens/s and MFU per size, with the size that minimises
each skill (the per-skill compute-optimal N at this budget, to within the ladder's spacing), and writes
all of it with the GPU name, versions and date to --out (JSON) and appends one line to --append.

Default budget 1e16 FLOPs: about 2-5 minutes of H100 time for the five default sizes plus compilation.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from _provenance import append_rows  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from fitting.conventions import conventions_dict  # noqa: E402
from skillscale.atomic import atomic_write_json  # noqa: E402
from skillscale.errors import OneLineArgumentParser  # noqa: E402
from trainers.cli import parse_count, parse_pairs  # noqa: E402
from trainers.shapes import count_params  # noqa: E402
from trainers.spec import RunSpec  # noqa: E402
from trainers.torch_backend import TorchBackend  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = OneLineArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", default="1e16", help="FLOPs per run, C = 6*N*D")
    p.add_argument("--sizes", default="5e6,1e7,2e7,4e7,8e7", help="target N, comma separated")
    p.add_argument("--mix", default="knowledge=0.5,code=0.3,general=0.2")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--no-triton", action="store_true")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-samples", type=int, default=512)
    p.add_argument("--knowledge-entities", type=int, default=20_000)
    p.add_argument("--domain-tokens", default="32e6", help="length of each generated training stream")
    p.add_argument("--runs-dir", default="", help="where the runs' checkpoints go (default: a temp dir)")
    p.add_argument("--out", required=True, help="JSON file for the results")
    p.add_argument(
        "--append",
        default=os.path.join(os.path.dirname(__file__), "results", "isoflop_ladder.jsonl"),
        help="also append one JSON line to this file ('' for none)",
    )
    args = p.parse_args(argv)

    budget = float(args.budget)
    sizes = [parse_count(s, "--sizes") for s in args.sizes.split(",") if s.strip()]
    mix = parse_pairs(args.mix, "--mix")
    settings = dict(
        device=args.device,
        compile=not args.no_compile,
        seq_len=args.seq_len,
        eval_samples=args.eval_samples,
        knowledge_entities=args.knowledge_entities,
        domain_tokens=parse_count(args.domain_tokens, "--domain-tokens"),
        checkpoint_every=0,
    )
    if args.no_triton:
        settings["use_triton"] = False
    backend = TorchBackend(**settings)
    runs_dir = Path(args.runs_dir or f"/tmp/skillscale-ladder-{os.getpid()}")

    rows = []
    for target in sizes:
        probe = RunSpec(n_params=target, n_tokens=1, mix=mix, seed=args.seed)
        cfg, _, _ = backend.plan(probe)
        n_params = count_params(cfg)
        n_tokens = int(round(budget / (6.0 * n_params)))
        spec = RunSpec(n_params=target, n_tokens=n_tokens, mix=mix, seed=args.seed)
        _, hp, _ = backend.plan(spec)
        t0 = time.perf_counter()
        result = backend.run(spec, runs_dir / spec.run_id)
        rows.append(
            {
                "target_n": target,
                "n_params": n_params,
                "n_tokens": n_tokens,
                "flops": result.flops,
                "shape": f"{cfg.d_model}x{cfg.n_layers}",
                "status": result.status,
                "lr": hp.lr,
                "batch_tokens": hp.batch_tokens,
                "n_steps": hp.n_steps,
                "losses": result.losses,
                "domain_losses": result.domain_losses,
                "tokens_per_s": result.tokens_per_s,
                "mfu": result.mfu,
                "wall_s": time.perf_counter() - t0,
            }
        )
        print(
            f"  {cfg.d_model}x{cfg.n_layers} N={n_params:,} D={n_tokens:,}: {result.status} {result.losses} "
            f"{result.tokens_per_s:,.0f} tok/s",
            file=sys.stderr,
        )

    skills = sorted({s for r in rows for s in r["losses"]})
    domains = sorted({d for r in rows for d in r["domain_losses"]})
    header = [
        "shape",
        "N",
        "D",
        *[f"{s} NLL" for s in skills],
        *[f"{d} loss" for d in domains],
        "tok/s",
        "MFU",
        "wall s",
    ]
    table = [
        [
            r["shape"],
            f"{r['n_params'] / 1e6:.1f}M",
            f"{r['n_tokens'] / 1e6:.0f}M",
            *[f"{r['losses'][s]:.4f}" for s in skills],
            *[f"{r['domain_losses'].get(d, float('nan')):.4f}" for d in domains],
            f"{r['tokens_per_s']:,.0f}",
            f"{r['mfu']:.1%}",
            f"{r['wall_s']:.0f}",
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    print(f"isoFLOP ladder at C = {budget:.2e} FLOPs, mix {mix}, device {backend.device}")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for t in table:
        print("  ".join(c.rjust(w) for c, w in zip(t, widths, strict=True)))
    finite = [r for r in rows if r["status"] == "ok"]
    best = {s: min(finite, key=lambda r: r["losses"][s])["n_params"] for s in skills} if finite else {}
    for s, n in best.items():
        print(f"lowest {s} NLL at N = {n:,}")

    record = {
        "benchmark": "isoflop_ladder",
        "date": datetime.datetime.now(datetime.UTC).isoformat(),
        "device": torch.cuda.get_device_name() if backend.device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "compile": settings["compile"],
        "use_triton": backend.use_triton,
        "budget_flops": budget,
        "mix": mix,
        "seq_len": args.seq_len,
        "seed": args.seed,
        "conventions": conventions_dict(),
        "runs": rows,
        "best_n_per_skill": best,
    }
    atomic_write_json(Path(args.out), record, indent=2)
    if args.append:
        append_rows(args.append, [record])
    return 0


if __name__ == "__main__":
    sys.exit(main())
