"""FLOPs to tolerance with run families against without (issue #17), on the scheduler benchmark's truths, noise
levels, stop rule and simulated clock (benchmarks/bench_scheduler.py: strategies `adaptive` and
`adaptive-families`, same seeds), at cheaper proposer settings than that benchmark's defaults so that both fit
on a shared 2-core machine; both strategies use the same settings, so the ratio is like for like.

    PYTHONPATH=. python3 benchmarks/bench_families.py --truth chinchilla --seeds 2 --workers 2 \
        --json benchmarks/results/families.json

The simulated family reports each branch's loss from the truth at its D (WSD-vs-cosine parity assumed, not yet
measured on the GPU) with log-noise correlated between branches (trainers.simulated.FAMILY_NOISE_CORRELATION),
and costs the stable phase plus every cooldown. "FLOPs to tolerance" is bench_scheduler's: training FLOPs spent
when the Study stopped converged with every target's 95% half-width AND its error against the truth within 10%.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_scheduler as bs  # noqa: E402

from skillscale.atomic import atomic_write_text  # noqa: E402
from skillscale.errors import OneLineArgumentParser  # noqa: E402


def family_ratios(rows: list[dict]) -> list[dict]:
    """Per truth, noise and concurrency: median FLOPs to tolerance with families / without."""
    out = []
    for r in rows:
        if not r["strategy"].startswith("adaptive-families"):
            continue
        plain = next((p for p in rows if p["strategy"] == "adaptive" and p["truth"] == r["truth"]
                      and p["noise"] == r["noise"] and p["concurrency"] == r["concurrency"]), None)
        mine, theirs = r["flops_to_tolerance_median"], plain and plain["flops_to_tolerance_median"]
        out.append({"truth": r["truth"], "noise": r["noise"], "concurrency": r["concurrency"],
                    "strategy": r["strategy"],
                    "families_reached": r["reached_fraction"], "plain_reached": plain and plain["reached_fraction"],
                    "flops_ratio_families_vs_plain": mine / theirs if mine and theirs else None,
                    "meets_half": bool(mine and theirs and mine / theirs <= 0.5)})
    return out


def _families_at(job: tuple[bs.Cell, bs.BenchConfig, float]) -> list[bs.Trace]:
    """One adaptive-families cell with the within-family noise correlation set to rho, in the simulator and in
    what the proposer assumes alike (a diagnostic: how much of the result the correlation explains)."""
    cell, bench, rho = job
    cfg = bs.study_config(cell.truth, cell.seed, bench, concurrency=cell.concurrency, noise=cell.noise)
    cfg = cfg.model_copy(update={
        "families": cfg.families.model_copy(update={"noise_correlation": rho}),
        "backend": cfg.backend.model_copy(update={"family_noise_correlation": rho})})
    trace = bs.run_adaptive_families(cfg, cell.truth, cell.seed, cell.concurrency, bs.true_optima(cfg, cell.truth))
    trace.strategy = f"adaptive-families-rho{rho:g}"
    return [trace]


def main(argv: list[str] | None = None) -> int:
    p = OneLineArgumentParser(prog="bench_families.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--truth", nargs="+", default=["chinchilla"])
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--noise", type=float, nargs="+", default=[0.005])
    p.add_argument("--concurrency", type=int, nargs="+", default=[1])
    p.add_argument("--n-boot", type=int, default=40)
    p.add_argument("--n-candidates", type=int, default=256)
    p.add_argument("--inner-trials", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--family-noise-correlation", type=float, default=None,
                   help="run only adaptive-families, with this within-family correlation (simulator and proposer)")
    p.add_argument("--merge", type=Path, nargs="+", default=None,
                   help="summarise these --traces files instead of running")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--traces", type=Path, default=None)
    args = p.parse_args(argv)
    bench = bs.BenchConfig(truths=tuple(args.truth), seeds=args.seeds, first_seed=args.first_seed,
                           concurrency=tuple(args.concurrency), strategies=("adaptive", "adaptive-families"),
                           noise=tuple(args.noise), n_boot=args.n_boot, n_candidates=args.n_candidates,
                           inner_trials=args.inner_trials)
    start = time.perf_counter()
    if args.merge:
        traces = bs.load_traces(args.merge)
    elif args.family_noise_correlation is None:
        traces = bs.run_bench(bench, workers=args.workers, log=lambda line: print(line, flush=True))
    else:
        from concurrent.futures import ProcessPoolExecutor

        jobs = [(c, bench, args.family_noise_correlation) for c in bs.cells(bench) if c.strategy == "adaptive-families"]
        with ProcessPoolExecutor(args.workers) as pool:
            traces = [tr for result in pool.map(_families_at, jobs) for tr in result]
        print(bs._progress_line(len(jobs) - 1, len(jobs), traces), flush=True)
    rows = bs.summarize(traces)
    ratios = family_ratios(rows)
    print(bs.format_table(rows))
    for r in ratios:
        print(r)
    result = {"results": rows, "families_vs_plain": ratios, "environment": bs.environment(),
              "settings": {**{k: v for k, v in asdict(bench).items() if k != "grids"}, "tolerance": bs.TOLERANCE},
              "wall_seconds": time.perf_counter() - start}
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    if args.traces:
        atomic_write_text(args.traces, "".join(json.dumps(tr.to_dict()) + "\n" for tr in traces))
    return 0


if __name__ == "__main__":
    sys.exit(main())
