"""Compiled across shapes: tokens/s over a sequence of >= 20 model shapes trained by ONE backend, compile on vs off.

    PYTHONPATH=. python3 benchmarks/bench_compile_shapes.py [--shapes 24] [--tokens 1e7] [--modes compile,eager]
    PYTHONPATH=. python3 benchmarks/bench_compile_shapes.py --shape-grid 8      # what a study meets on the grid

A study asks for a new N almost every run; dynamo keeps compiled code per function and, past its recompile limit
(8 by default), silently runs the model eagerly: 3.98M -> 1.34M tok/s on an H200 (issue #15). The trainer now
raises the limit (TrainerSettings.recompile_limit), resets torch.compile's state before a new shape once half of
it has been used (or CUDA graphs pass GRAPH_MEMORY_FRACTION of the GPU), and counts any fallback that happens
anyway (RunResult.compile_fallbacks). This script checks that on the GPU.

For each mode, one TorchBackend trains `--shapes` runs of `--tokens` tokens each, at targets of that many distinct
shapes spread evenly in log N over [--min-params, --max-params] and visited in a fixed shuffled order (as a study
meets them). `--shape-grid 0` (the default here) keeps every target its own shape, the worst case; the script
refuses fewer than 20 shapes (and a range with fewer distinct shapes than asked for). Per run it prints and appends
to `--out` (JSON lines, with GPU, versions, commit and date): the shape,
tokens/s of the training steps (the first step, which compiles, is not timed), wall seconds (with compilation),
compile_fallbacks, the backend's compiled-shape count and reserved GPU memory after the run. Then a summary per
mode: median tokens/s, total wall, total fallbacks, peak reserved memory, and the per-shape ratio compile/eager.
"Compiled for every shape" means compile_fallbacks == 0 on every run and a compile/eager ratio above 1 throughout.

Needs CUDA (`--device cpu` runs the same loop on the CPU, for a smoke test only).
"""

from __future__ import annotations

import math
import os
import random
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from _provenance import append_rows, environment  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from _trainer_flags import parse_settings  # noqa: E402

from skillscale.errors import InputError, OneLineArgumentParser  # noqa: E402
from trainers.cli import parse_count  # noqa: E402
from trainers.data import DataSettings  # noqa: E402
from trainers.settings import TrainerSettings  # noqa: E402
from trainers.spec import RunSpec  # noqa: E402

MIN_DISTINCT_SHAPES = 20
FINE_GRID = 400  # candidate targets scanned for distinct shapes
MIX = {"knowledge": 0.4, "code": 0.4, "general": 0.2}
# speed only: small evaluation sets and streams, so evaluation does not dominate the timing of each shape
BENCH_DATA = {"eval_samples": 512, "domain_tokens": 8_000_000, "heldout_tokens": 65_536}


def targets(backend, n: int, lo: float, hi: float, seed: int) -> list[float]:
    """n targets of n distinct shapes, spread evenly in log N over the shapes the backend's rule gives in [lo, hi],
    in a fixed shuffled order (neighbouring targets often share a shape, so a plain log grid repeats shapes)."""
    by_shape: dict[str, float] = {}
    for i in range(FINE_GRID):
        target = lo * (hi / lo) ** (i / (FINE_GRID - 1))
        cfg = backend.plan(RunSpec(n_params=target, n_tokens=1e9, mix=MIX))[0]
        by_shape.setdefault(f"{cfg.d_model}x{cfg.n_layers}", target)
    shapes = list(by_shape.values())
    if len(shapes) < n:
        raise InputError(f"--shapes: only {len(shapes)} distinct shapes in [--min-params, --max-params]; "
                         f"widen the range or ask for fewer")
    points = [shapes[round(i * (len(shapes) - 1) / max(1, n - 1))] for i in range(n)]
    random.Random(seed).shuffle(points)
    return points


def run_mode(mode: str, args, extra: dict, env: dict) -> list[dict]:
    from trainers.torch_backend import TorchBackend, split_settings

    settings = {"device": args.device, "compile": mode == "compile", "seq_len": args.seq_len,
                "checkpoint_every": 0, "shape_grid": args.shape_grid, **BENCH_DATA, **extra}
    if args.recompile_limit:
        settings["recompile_limit"] = args.recompile_limit
    trainer, data = split_settings(settings)
    backend = TorchBackend(trainer=trainer, data=data)
    device = backend.device
    rows = []
    runs_dir = args.runs_dir or f"/tmp/skillscale-compile-shapes-{os.getpid()}"
    for i, target in enumerate(targets(backend, args.shapes, args.min_params, args.max_params, args.order_seed)):
        spec = RunSpec(n_params=target, n_tokens=args.tokens, mix=MIX, seed=i)
        cfg, hp, _ = backend.plan(spec)
        t0 = time.perf_counter()
        result = backend.run(spec, os.path.join(runs_dir, mode, f"{i:02d}-{spec.run_id}"))
        row = {"bench": "compile_shapes", "mode": mode, "index": i, "shape": f"{cfg.d_model}x{cfg.n_layers}",
               "n_params": result.n_params, "n_tokens": result.n_tokens, "status": result.status,
               "tokens_per_s": result.tokens_per_s, "mfu": result.mfu, "wall_s": time.perf_counter() - t0,
               "compile_fallbacks": result.compile_fallbacks, "compiled_shapes": backend.cache.compiled_shapes,
               "reserved_gib": torch.cuda.memory_reserved(device) / 2**30 if device.type == "cuda" else 0.0,
               "batch_tokens": hp.batch_tokens, "seq_len": hp.seq_len, "cuda_graphs": trainer.cuda_graphs,
               "recompile_limit": trainer.recompile_limit, "shape_grid": trainer.shape_grid, **env}
        print(f"{mode:>7} {i:>2} {row['shape']:>8} N={row['n_params']:>11,} {row['tokens_per_s']:>12,.0f} tok/s "
              f"wall {row['wall_s']:6.1f} s fallbacks {row['compile_fallbacks']} compiled shapes "
              f"{row['compiled_shapes']} reserved {row['reserved_gib']:.2f} GiB", flush=True)
        append_rows(args.out, [row])
        rows.append(row)
    return rows


def summarise(by_mode: dict[str, list[dict]], env: dict) -> list[dict]:
    summary = []
    for mode, rows in by_mode.items():
        summary.append({"bench": "compile_shapes_summary", "mode": mode, "runs": len(rows),
                        "distinct_shapes": len({r["shape"] for r in rows}),
                        "median_tokens_per_s": statistics.median(r["tokens_per_s"] for r in rows),
                        "min_tokens_per_s": min(r["tokens_per_s"] for r in rows),
                        "total_wall_s": sum(r["wall_s"] for r in rows),
                        "compile_fallbacks": sum(r["compile_fallbacks"] for r in rows),
                        "peak_reserved_gib": max(r["reserved_gib"] for r in rows), **env})
    if "compile" in by_mode and "eager" in by_mode:
        ratios = [c["tokens_per_s"] / e["tokens_per_s"] for c, e in zip(by_mode["compile"], by_mode["eager"],
                                                                           strict=True) if e["tokens_per_s"] > 0]
        summary.append({"bench": "compile_shapes_ratio", "median_ratio": statistics.median(ratios),
                        "min_ratio": min(ratios), "max_ratio": max(ratios),
                        "ratios_in_order": [round(r, 3) for r in ratios], **env})
    print("\nmode     runs shapes  median tok/s     min tok/s  wall s  fallbacks  peak GiB")
    for s in summary:
        if s["bench"] == "compile_shapes_summary":
            print(f"{s['mode']:<8} {s['runs']:>4} {s['distinct_shapes']:>6} {s['median_tokens_per_s']:>13,.0f} "
                  f"{s['min_tokens_per_s']:>13,.0f} {s['total_wall_s']:>7.0f} {s['compile_fallbacks']:>10} "
                  f"{s['peak_reserved_gib']:>9.2f}")
        else:
            print(f"compile/eager tokens/s per shape: median {s['median_ratio']:.2f}x, min {s['min_ratio']:.2f}x, "
                  f"max {s['max_ratio']:.2f}x (in visiting order: {s['ratios_in_order']})")
    return summary


def main() -> None:
    parser = OneLineArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=int, default=24, help=f"runs, one target each (>= {MIN_DISTINCT_SHAPES})")
    parser.add_argument("--tokens", default="1e7", help="training tokens per run")
    parser.add_argument("--min-params", default="4e5")
    parser.add_argument("--max-params", default="2.5e7")
    parser.add_argument("--modes", default="compile,eager", help="comma-separated: compile, eager")
    parser.add_argument("--shape-grid", type=int, default=0,
                        help="TrainerSettings.shape_grid for these runs (0: every target its own shape)")
    parser.add_argument("--recompile-limit", type=int, default=0,
                        help=f"TrainerSettings.recompile_limit (0: its default, {TrainerSettings().recompile_limit})")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--order-seed", type=int, default=0, help="seed of the visiting order")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="any other TrainerSettings/DataSettings field (repeatable)")
    parser.add_argument("--runs-dir", default="")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "compile_shapes.jsonl"))
    args = parser.parse_args()
    try:
        args.tokens = parse_count(args.tokens, "--tokens")
        args.min_params = float(parse_count(args.min_params, "--min-params"))
        args.max_params = float(parse_count(args.max_params, "--max-params"))
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        if not modes or any(m not in ("compile", "eager") for m in modes):
            raise InputError(f"--modes: expected compile and/or eager, got {args.modes!r}")
        extra = parse_settings(args.set)
        unknown = set(extra) - set(TrainerSettings.model_fields) - set(DataSettings.model_fields)
        if unknown:
            raise InputError(f"--set: unknown setting(s) {sorted(unknown)}")
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError("needs CUDA (no GPU found); --device cpu runs a smoke test")
        if args.shapes < MIN_DISTINCT_SHAPES and args.device.startswith("cuda"):
            raise InputError(f"--shapes: {args.shapes} distinct shapes; the benchmark needs at least "
                             f"{MIN_DISTINCT_SHAPES}")
    except InputError as exc:
        print(f"bench_compile_shapes: {exc}", file=sys.stderr)
        sys.exit(2)
    device = torch.device(args.device)
    env = environment(device)
    print(f"# {env}; {args.shapes} shapes x {args.tokens:,} tokens, modes {modes}", flush=True)
    by_mode = {mode: run_mode(mode, args, extra, env) for mode in modes}
    append_rows(args.out, summarise(by_mode, env))
    if any(math.isnan(r["tokens_per_s"]) for rows in by_mode.values() for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
