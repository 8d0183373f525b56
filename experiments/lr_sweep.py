"""Is the trainer's learning-rate rule near the best LR? A 5-point sweep of multipliers on the rule's LR at
several (N, D) points, per-skill and per-domain final losses (issue #15, item 5).

    PYTHONPATH=. python3 experiments/lr_sweep.py --points 5e5@1.25e14,4e6@5e14 --multipliers 0.25,0.5,1,2,4 \
        --rows experiments/results/gpu_runs.jsonl --summary experiments/results/lr_sweep.jsonl
    PYTHONPATH=. python3 experiments/lr_sweep.py --summarize-only --rows experiments/results/gpu_runs.jsonl \
        --summary experiments/results/lr_sweep.jsonl
    PYTHONPATH=. python3 experiments/lr_sweep.py --device cpu --points 7e4@2e11 --multipliers 0.5,1,2 \
        --seq-len 64 --eval-samples 16 --rows /tmp/rows.jsonl --summary /tmp/lr.jsonl          # CPU smoke

The rule (trainers/hparams.py, `rule_lr`) is DeepSeek LLM's lr = 0.3118 C^-0.125 times LR_RULE_SCALE (0.5 since
2026-12-01; rows before then were swept around 1x DeepSeek's value), capped at LR_MAX; a multiplier m trains at
m x that LR with everything else (batch, warmup, the cosine decay at D) unchanged. Multiplier 1 is the rule's
own run, shared with the isoFLOP ladder and the seed-noise points when they ask for the same (N, D, seed). A
seed-noise variant that overrides only the LR (`--seed-variant N@C:lr=...`) is a sweep point too (sweep_multiplier).

Summary rows (`--summary`, one per point and loss): n_params, n_tokens, skill ('knowledge', 'code' or
'domain:<name>'), lr_rule, multipliers, losses, best_multiplier (lowest loss on the grid), vertex_multiplier
(minimum of a parabola in log2 m through the lowest point and its neighbours, None at the grid's edge),
rule_within_2x (the best grid multiplier is 1/2, 1 or 2), gpu, commit, date.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))  # _provenance, _trainer_flags
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # the repository root

from _provenance import append_rows  # noqa: E402  (experiments/ and benchmarks/ are on sys.path)
from _trainer_runs import (  # noqa: E402
    PlannedRun,
    add_backend_args,
    by_shape,
    by_the_rules,
    execute,
    loss_items,
    make_backend,
    parse_floats,
    parse_points,
    read_rows,
    recorded_optimisation,
    tokens_for_budget,
    trained_rows,
)

from skillscale.errors import InputError, OneLineArgumentParser  # noqa: E402
from trainers.cli import parse_pairs  # noqa: E402


def plan(backend, points: list[tuple[float, float]], multipliers: list[float], mix: dict[str, float],
         seed: int = 0) -> list[PlannedRun]:
    """One run per (point, multiplier), all with the same seed."""
    return [
        PlannedRun("lr_sweep", n, tokens_for_budget(backend, n, c, mix), c, seed=seed, lr_multiplier=m)
        for n, c in points
        for m in multipliers
    ]


def vertex_multiplier(multipliers: list[float], losses: list[float]) -> float | None:
    """Minimum of the parabola in log2(m) through the grid's lowest point and its two neighbours; None when
    the lowest point is at an edge of the grid (the best LR may lie beyond it) or the parabola opens down."""
    i = int(np.argmin(losses))
    if i == 0 or i == len(losses) - 1:
        return None
    x = np.log2(multipliers[i - 1 : i + 2])
    c2, c1, _ = np.polyfit(x, losses[i - 1 : i + 2], 2)
    if c2 <= 0:
        return None
    return float(2.0 ** (-c1 / (2 * c2)))


def sweep_multiplier(row: dict) -> float | None:
    """The multiplier on the rule's LR a row trained at, if it is a sweep point: a run by the rules (its
    lr_multiplier), or a seed-noise variant whose only override is the LR (`--seed-variant N@C:lr=...`: lr over
    the rule's, to 6 digits, so that 0.5 x the rule given as a number is the sweep's x0.5); None for any other
    variant."""
    if by_the_rules(row):
        return row["lr_multiplier"]
    if set(row["overrides"]) == {"lr"} and row["lr_multiplier"] == 1.0:
        return float(f"{float(row['overrides']['lr']) / float(row['lr_rule']):.6g}")
    return None


def summarize(rows: list[dict], min_points: int = 3, seed: int = 0) -> list[dict]:
    """Per (N, D) point with >= min_points multipliers at `seed`: the losses against the multiplier (a sweep under
    an older LR rule or schedule is its own group: the multipliers are relative to the rule's LR)."""
    groups: dict[tuple, dict[float, dict]] = defaultdict(dict)
    for row in trained_rows(rows):
        multiplier = sweep_multiplier(row)
        if row["seed"] == seed and multiplier is not None:
            rule = (float(row["lr_rule"]), float(recorded_optimisation(row)["min_lr_ratio"]))
            groups[(row["n_params"], row["n_tokens"], *rule)].setdefault(multiplier, row)
    out = []
    for (n_params, n_tokens, *_), by_m in sorted(groups.items()):
        if len(by_m) < min_points or 1.0 not in by_m:
            continue
        multipliers = sorted(by_m)
        items = [loss_items(by_m[m]) for m in multipliers]
        rule = by_m[1.0]
        for name in sorted(set.intersection(*(set(i) for i in items))):
            losses = [i[name] for i in items]
            finite = [(m, v) for m, v in zip(multipliers, losses, strict=True) if math.isfinite(v)]
            best = min(finite, key=lambda t: t[1])[0] if finite else None
            out.append({
                "n_params": n_params,
                "n_tokens": n_tokens,
                "skill": name,
                "lr_rule": rule["lr_rule"],
                "multipliers": multipliers,
                "lrs": [by_m[m]["lr"] for m in multipliers],
                "losses": losses,
                "best_multiplier": best,
                "vertex_multiplier": vertex_multiplier(multipliers, losses) if len(finite) == len(losses) else None,
                "rule_within_2x": best is not None and 0.5 <= best <= 2.0,
                "shape": rule["shape"],
                "budget": rule["budget"],
                "gpu": rule["gpu"],
                "torch": rule["torch"],
                "triton": rule.get("triton"),
                "commit": rule["commit"],
                "date": rule["date"],
            })
    return out


def print_summary(summary: list[dict]) -> None:
    for s in summary:
        cells = "  ".join(f"x{m:g}: {v:.4f}" for m, v in zip(s["multipliers"], s["losses"], strict=True))
        vertex = "edge" if s["vertex_multiplier"] is None else f"{s['vertex_multiplier']:.2f}"
        print(f"{s['shape']:>7} N={s['n_params']:,} D={s['n_tokens']:,} lr_rule={s['lr_rule']:.2e} "
              f"{s['skill']:>18}: {cells}  best x{s['best_multiplier']:g} vertex {vertex} "
              f"{'within 2x' if s['rule_within_2x'] else 'NOT within 2x'}")


def main(argv: list[str] | None = None) -> int:
    p = OneLineArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", default="5e5@1.25e14,4e6@5e14", help="N@C pairs, comma separated")
    p.add_argument("--multipliers", default="0.25,0.5,1,2,4", help="multipliers on the rule's LR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", required=True, help="JSON-lines file of run rows: read to resume, appended to")
    p.add_argument("--summary", default="", help="JSON-lines file the summary rows are appended to")
    p.add_argument("--summarize-only", action="store_true", help="no training: summarise --rows")
    add_backend_args(p)
    args = p.parse_args(argv)
    try:
        if not args.summarize_only:
            mix = parse_pairs(args.mix, "--mix")
            points = parse_points(args.points, "--points")
            multipliers = parse_floats(args.multipliers, "--multipliers")
            if 1.0 not in multipliers:
                raise InputError("--multipliers: must include 1 (the rule's own LR)")
            backend = make_backend(args)
            runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="skillscale-lr-sweep-")
            execute(by_shape(plan(backend, points, multipliers, mix, args.seed)), backend, mix, rows_out=args.rows,
                    recorded=read_rows([args.rows]), runs_dir=runs_dir, deadline_s=args.deadline_s)
        summary = summarize(read_rows([args.rows]), seed=args.seed)
    except InputError as exc:
        print(f"lr_sweep: {exc}", file=sys.stderr)
        return 2
    print_summary(summary)
    if args.summary and summary:
        append_rows(args.summary, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
