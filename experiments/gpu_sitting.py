"""One GPU sitting: the runs of several measurements (seed noise, LR sweep, isoFLOP ladders) in one process,
each finished run recorded at once, continuing from the runs recorded by earlier sittings.

    PYTHONPATH=. python3 experiments/gpu_sitting.py --rows $OUT/gpu_runs.jsonl --deadline-s 420 \
        --experiments seed_noise,isoflop,lr_sweep \
        --ladder-budgets 1.25e14,5e14,2e15 --ladder-sizes 3e5,6e5,1.2e6,2.4e6,4.8e6 \
        --seed-points 6e5@1.25e14,1.2e6@5e14,2.4e6@2e15 --seeds 0,1,2 \
        --lr-points 6e5@1.25e14,2.4e6@5e14 --multipliers 0.25,0.5,1,2,4
    PYTHONPATH=. python3 experiments/gpu_sitting.py --device cpu --seq-len 64 --eval-samples 16 \
        --rows /tmp/rows.jsonl --ladder-budgets 5e10,2e11 --ladder-sizes 7e4,1.2e5,2e5 \
        --seed-points 7e4@5e10 --seeds 0,1 --lr-points 7e4@5e10 --multipliers 0.5,1,2          # CPU smoke

Why one process: every process builds the corpora and evaluation sets again and compiles every shape again
(15-40 s each on an H200), so a sitting's runs share one TorchBackend. A run wanted by several measurements
(the ladder's seed-0 run at a seed-noise point, the rule's own LR in a sweep) is trained once.

Order (--order): "shape" trains all runs grouped by model shape, smallest first (fewest compilations);
"priority" trains the experiments in the order --experiments names them, each grouped by shape, so that a
sitting cut short has finished the first experiment. Runs that would pass --deadline-s are skipped, and a
later sitting given the same --rows trains them. At the end the sitting prints each measurement's summary;
the committed summaries are written from the rows on the development machine (each script's
--summarize-only / --analyze-only).
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))  # _provenance, _trainer_flags
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # the repository root

import isoflop_ladder  # noqa: E402  (experiments/ and benchmarks/ are on sys.path)
import lr_sweep  # noqa: E402
import seed_noise  # noqa: E402
from _trainer_runs import (  # noqa: E402
    add_backend_args,
    by_shape,
    execute,
    make_backend,
    parse_floats,
    parse_points,
    parse_seeds,
    read_rows,
)

from skillscale.errors import InputError, OneLineArgumentParser  # noqa: E402
from trainers.cli import parse_pairs  # noqa: E402

EXPERIMENTS = ("seed_noise", "isoflop", "lr_sweep")


def main(argv: list[str] | None = None) -> int:
    p = OneLineArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", required=True, help="JSON-lines file of run rows: read to resume, appended to")
    p.add_argument("--resume", action="append", default=[], help="further row files to continue from")
    p.add_argument("--experiments", default=",".join(EXPERIMENTS), help="which, in priority order")
    p.add_argument("--order", choices=("shape", "priority"), default="shape")
    p.add_argument("--ladder-budgets", default="1.25e14,5e14,2e15")
    p.add_argument("--ladder-sizes", default="3e5,6e5,1.2e6,2.4e6,4.8e6")
    p.add_argument("--ladder-points", default="",
                   help="N@C pairs: the ladder's runs, sizes chosen per budget (replaces the budgets x sizes grid)")
    p.add_argument("--seed-points", default="6e5@1.25e14,1.2e6@5e14,2.4e6@2e15")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--seed-variant", action="append", default=[], metavar="N@C:NAME=VALUE,...",
                   help="also train --seeds at N@C with these hparams overrides (repeatable; seed_noise)")
    p.add_argument("--lr-points", default="6e5@1.25e14,2.4e6@5e14")
    p.add_argument("--multipliers", default="0.25,0.5,1,2,4")
    p.add_argument("--n-boot", type=int, default=500, help="bootstrap resamples of the printed ladder fit")
    add_backend_args(p)
    args = p.parse_args(argv)
    try:
        mix = parse_pairs(args.mix, "--mix")
        wanted = [e.strip() for e in args.experiments.split(",") if e.strip()]
        unknown = [e for e in wanted if e not in EXPERIMENTS]
        if unknown or not wanted:
            raise InputError(f"--experiments: expected some of {', '.join(EXPERIMENTS)}, got {args.experiments!r}")
        backend = make_backend(args)
        plans = {
            "seed_noise": lambda: [
                *seed_noise.plan(backend, parse_points(args.seed_points, "--seed-points"), parse_seeds(args.seeds),
                                 mix),
                *seed_noise.plan_variants(backend, args.seed_variant, parse_seeds(args.seeds), mix)],
            "isoflop": lambda: (
                isoflop_ladder.plan_points(backend, parse_points(args.ladder_points, "--ladder-points"), mix)
                if args.ladder_points else
                isoflop_ladder.plan(backend, parse_floats(args.ladder_budgets, "--ladder-budgets"),
                                    parse_floats(args.ladder_sizes, "--ladder-sizes"), mix)),
            "lr_sweep": lambda: lr_sweep.plan(backend, parse_points(args.lr_points, "--lr-points"),
                                              parse_floats(args.multipliers, "--multipliers"), mix),
        }
        per_experiment = [plans[e]() for e in wanted]
        if args.order == "shape":
            planned = by_shape([run for runs in per_experiment for run in runs])
        else:
            planned = [run for runs in per_experiment for run in by_shape(runs)]
        runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="skillscale-sitting-")
        execute(planned, backend, mix, rows_out=args.rows, recorded=read_rows([*args.resume, args.rows]),
                runs_dir=runs_dir, deadline_s=args.deadline_s)
        rows = read_rows([*args.resume, args.rows])
    except InputError as exc:
        print(f"gpu_sitting: {exc}", file=sys.stderr)
        return 2
    if "seed_noise" in wanted:
        seed_noise.print_summary(seed_noise.summarize(rows))
    if "lr_sweep" in wanted:
        lr_sweep.print_summary(lr_sweep.summarize(rows))
    if "isoflop" in wanted:
        try:
            isoflop_ladder.print_analysis(isoflop_ladder.analyze(rows, n_boot=args.n_boot))
        except InputError as exc:
            print(f"isoflop analysis: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
