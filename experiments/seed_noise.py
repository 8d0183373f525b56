"""Seed noise of the real trainer: at several (N, D) points, several training seeds each, the per-skill and
per-domain mean and standard deviation of the final losses (issue #15, item 6).

    PYTHONPATH=. python3 experiments/seed_noise.py --points 5e5@1.25e14,2e6@5e14,4e6@2e15 --seeds 0,1,2 \
        --rows experiments/results/gpu_runs.jsonl --summary experiments/results/seed_noise.jsonl
    PYTHONPATH=. python3 experiments/seed_noise.py --summarize-only --rows experiments/results/gpu_runs.jsonl \
        --summary experiments/results/seed_noise.jsonl                   # no training: summaries from rows
    PYTHONPATH=. python3 experiments/seed_noise.py --device cpu --points 7e4@2e11 --seeds 0,1 --seq-len 64 \
        --eval-samples 16 --rows /tmp/rows.jsonl --summary /tmp/noise.jsonl                     # CPU smoke

A point is N@C: the target N of the shape rule and the FLOP budget C = 6 N D that fixes D for that shape. The
seed changes the initialisation, and with `--set data_order=run` also the order of the training data
(trainers/data.py); with the default order ("study") every seed reads the same windows in the same order, as
every run of a study does, so the spread is the part of the noise that is independent between a study's runs,
the quantity the scheduler's noise model needs. The data and the evaluation sets are the same for every seed.
Runs go through TorchBackend.run, one process (experiments/_trainer_runs.py): each finished run is appended to
--rows at once, and a rerun with the same --rows trains only what is missing.

Summary rows (`--summary`, one per point and loss): n_params, n_tokens, skill (a skill such as 'knowledge',
or 'domain:<name>' for a held-out domain loss), mean, std (sample std, ddof = 1), rel_std = std / mean,
n_seeds, values, seeds, target_met (rel_std <= 1%, the issue's target), robust_rel_std (the median absolute
deviation scaled to a normal's std, over the mean: near rel_std when the seeds spread evenly, far below it when
one seed is an outlier, as for knowledge at 5.69M on the H200: 1.77% against 0.43%), eval_se / eval_rel_se (the
evaluation set's own standard error, RunResult.loss_errors, mean over the seeds), gpu, commit, date.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from collections import defaultdict

from scipy.stats import median_abs_deviation

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))  # _provenance, _trainer_flags
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # the repository root

from _provenance import append_rows  # noqa: E402  (experiments/ and benchmarks/ are on sys.path)
from _trainer_runs import (  # noqa: E402
    PlannedRun,
    add_backend_args,
    by_shape,
    execute,
    loss_items,
    make_backend,
    optimisation_key,
    parse_points,
    parse_seeds,
    read_rows,
    recorded_optimisation,
    tokens_for_budget,
    trained_rows,
)

from skillscale.errors import InputError, OneLineArgumentParser  # noqa: E402
from trainers.cli import parse_pairs  # noqa: E402

TARGET_REL_STD = 0.01  # issue #15: seed std at most 1% of the loss for every target skill


def plan(backend, points: list[tuple[float, float]], seeds: list[int], mix: dict[str, float],
         overrides: dict | None = None) -> list[PlannedRun]:
    """One run per (point, seed), LR by the rule; `overrides` (RunSpec.hparams such as warmup_steps or
    batch_tokens) make every run a variant, summarised as its own group."""
    extra = tuple(sorted((overrides or {}).items()))
    return [
        PlannedRun("seed_noise", n, tokens_for_budget(backend, n, c, mix), c, seed=seed, overrides=extra)
        for n, c in points
        for seed in seeds
    ]


def plan_variants(backend, variants: list[str], seeds: list[int], mix: dict[str, float]) -> list[PlannedRun]:
    """The runs of every --seed-variant text (parse_variant): each variant's point at every seed."""
    return [run for point, overrides in map(parse_variant, variants)
            for run in plan(backend, [point], seeds, mix, overrides)]


def parse_variant(text: str) -> tuple[tuple[float, float], dict]:
    """'3.16e6@1e15:warmup_steps=432,batch_tokens=47104' -> ((target N, C), {hparam: value}): a seed-noise
    point trained with other hyperparameters than the rules' (names: trainers/hparams.py OVERRIDABLE). Values
    are checked here, before any run trains; counts are ints and other numbers floats, so 432 and 432.0 are
    one run."""
    from trainers.hparams import INTEGER_OVERRIDES, TEXT_OVERRIDES, check_overrides

    point, sep, settings = text.partition(":")
    if not sep:
        raise InputError(f"--seed-variant: expected N@C:NAME=VALUE,..., got {text!r}")
    points = parse_points(point, "--seed-variant")
    if len(points) != 1:
        raise InputError(f"--seed-variant: one N@C point per variant, got {point!r}")
    overrides: dict = {}
    for item in [i.strip() for i in settings.split(",") if i.strip()]:
        name, eq, value = (part.strip() for part in item.partition("="))
        if not eq or name in overrides:
            raise InputError(f"--seed-variant: expected distinct NAME=VALUE items, got {item!r} in {text!r}")
        if name in TEXT_OVERRIDES:
            overrides[name] = value
            continue
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"--seed-variant: {name}: expected a number, got {value!r}") from None
        overrides[name] = int(number) if name in INTEGER_OVERRIDES and number.is_integer() else number
    if not overrides:
        raise InputError(f"--seed-variant: no NAME=VALUE after the point in {text!r}")
    try:
        check_overrides(overrides)
    except InputError as exc:
        raise InputError(f"--seed-variant: {exc}") from None
    return points[0], overrides


def replicate_key(row: dict) -> tuple:
    """What the replicates of a row share (_trainer_runs.optimisation_key): every recorded hyperparameter and the
    overrides, except that an LR given as the only override (--seed-variant N@C:lr=...) and the same LR reached as
    an LR-sweep multiplier are one run setting, and so one group. Runs with seed replicas (the mean of R models,
    trainers/replicas.py) are a group of their own for each R."""
    replicas = int(row.get("settings", {}).get("seed_replicas", 1))
    if set(row.get("overrides") or {}) == {"lr"}:
        row = {k: v for k, v in row.items() if k != "overrides"}
    return *optimisation_key(row), replicas


def summarize(rows: list[dict], min_seeds: int = 2) -> list[dict]:
    """Mean and std per (N, D) point and loss over the runs that differ only in seed: the runs of one group share
    replicate_key, so a point trained under an older default, at another LR, or as a variant (--seed-variant) is
    a group of its own (an LR sweep's single-seed runs are groups of one, below min_seeds)."""
    groups: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for row in trained_rows(rows):
        groups[(row["n_params"], row["n_tokens"], replicate_key(row))].setdefault(row["seed"], row)  # one per seed
    out = []
    for (n_params, n_tokens, _), by_seed in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1], str(g[0][2]))):
        if len(by_seed) < min_seeds:
            continue
        seeds = sorted(by_seed)
        items = [loss_items(by_seed[s]) for s in seeds]
        last = by_seed[seeds[-1]]
        hp = recorded_optimisation(last)
        for name in sorted(set.intersection(*(set(i) for i in items))):
            values = [i[name] for i in items]
            mean, std = statistics.fmean(values), statistics.stdev(values)
            errors = [by_seed[s].get("result_extra", {}).get("loss_errors", {}).get(name) for s in seeds]
            eval_se = statistics.fmean(errors) if all(e is not None for e in errors) else None
            out.append({
                "n_params": n_params,
                "n_tokens": n_tokens,
                "skill": name,
                "mean": mean,
                "std": std,
                "rel_std": std / mean if mean else float("nan"),
                "n_seeds": len(values),
                "values": values,
                "seeds": seeds,
                "target_met": std <= TARGET_REL_STD * mean,
                "robust_rel_std": median_abs_deviation(values, scale="normal") / mean if mean else float("nan"),
                "eval_se": eval_se,  # the evaluation set's own standard error (mean over seeds), skills only
                "eval_rel_se": eval_se / mean if eval_se is not None and mean else None,
                "lr": float(hp["lr"]),
                "lr_multiplier": float(f"{float(hp['lr']) / float(last['lr_rule']):.6g}"),
                "min_lr_ratio": float(hp["min_lr_ratio"]),
                **({"overrides": last["overrides"], "hparams": last.get("hparams", {})}
                   if last.get("overrides") else {}),
                "data_order": last["settings"].get("data", {}).get("data_order", "run"),
                "qk_norm": bool(last["settings"].get("qk_norm", False)),
                "seed_replicas": int(last["settings"].get("seed_replicas", 1)),
                "code_source": last["settings"].get("data", {}).get("code_source"),
                "general_source": last["settings"].get("data", {}).get("general_source"),
                "shape": last["shape"],
                "budget": last["budget"],
                "gpu": last["gpu"],
                "torch": last["torch"],
                "triton": last.get("triton"),
                "commit": last["commit"],
                "date": last["date"],
            })
    return out


def print_summary(summary: list[dict]) -> None:
    print(f"{'shape':>7} {'N':>9} {'D':>11} {'loss':>18} {'mean':>8} {'std':>8} {'rel':>7} {'robust':>7} "
          f"{'eval se':>7} seeds")
    for s in summary:
        se = "" if s["eval_rel_se"] is None else f"{s['eval_rel_se']:.2%}"
        print(f"{s['shape']:>7} {s['n_params']:>9,} {s['n_tokens']:>11,} {s['skill']:>18} {s['mean']:8.4f} "
              f"{s['std']:8.4f} {s['rel_std']:7.2%} {s['robust_rel_std']:7.2%} {se:>7} {s['n_seeds']}"
              f"{'' if s['target_met'] else '  > 1%'}"
              + (f"  lr x{s['lr_multiplier']:g}" if s.get("lr_multiplier", 1.0) != 1.0 else "")
              + "".join(f"  {k}={v}" for k, v in s.get("overrides", {}).items() if k != "lr")
              + ("  qk_norm" if s.get("qk_norm") else "")
              + (f"  seed_replicas={s['seed_replicas']}" if s.get("seed_replicas", 1) > 1 else ""))


def main(argv: list[str] | None = None) -> int:
    p = OneLineArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", default="5e5@1.25e14,2e6@5e14,4e6@2e15", help="N@C pairs, comma separated")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--rows", required=True, help="JSON-lines file of run rows: read to resume, appended to")
    p.add_argument("--summary", default="", help="JSON-lines file the summary rows are appended to")
    p.add_argument("--summarize-only", action="store_true", help="no training: summarise --rows")
    add_backend_args(p)
    args = p.parse_args(argv)
    try:
        if not args.summarize_only:
            mix = parse_pairs(args.mix, "--mix")
            points, seeds = parse_points(args.points, "--points"), parse_seeds(args.seeds)
            if len(seeds) < 2:
                raise InputError("--seeds: need at least two seeds for a standard deviation")
            backend = make_backend(args)
            runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="skillscale-seed-noise-")
            execute(by_shape(plan(backend, points, seeds, mix)), backend, mix, rows_out=args.rows,
                    recorded=read_rows([args.rows]), runs_dir=runs_dir, deadline_s=args.deadline_s)
        summary = summarize(read_rows([args.rows]))
    except InputError as exc:
        print(f"seed_noise: {exc}", file=sys.stderr)
        return 2
    print_summary(summary)
    if args.summary and summary:
        append_rows(args.summary, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
