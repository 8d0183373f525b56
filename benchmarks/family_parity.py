"""Run-family parity: each WSD branch's losses against a cosine run to the same D, with seed noise measured.

    PYTHONPATH=. python3 benchmarks/family_parity.py [--sizes 1e6,4e6] [--tokens-per-param 20,80] [--seeds 0,1,2]

Hägele et al. 2024 (arXiv:2405.18392) found a constant-lr run with a short (20%, 1-sqrt) cooldown to match a
cosine run at the same D; issue #17 wants that checked on this trainer before families replace cosine runs.
For each size N and seed, one family (TorchBackend.run_family) with branches at D = tokens-per-param x N, and
one cosine run per D. The cosine runs use the family's lr, batch and warmup (hparams rule_n_tokens = the
family's longest D), so the schedule after warmup is the only difference; `--cosine-rule own` gives each cosine
run the rule's hyperparameters at its own D instead (what a study without families would train).

Every run is appended to `--out` (JSON lines) as it finishes, with GPU, versions, commit and date; a rerun with
the same --out and --runs-dir skips recorded runs and resumes unfinished families from their checkpoints. Then
one summary row per (N, D) and loss (skill or held-out domain): mean branch and cosine loss over seeds, the mean
paired difference (branch - cosine) and its standard error over seeds, the seed std of each kind, and
`within_noise` = |mean difference| <= 2 standard errors of it (or, with one seed, <= the cosine runs' eval-set
standard error). The table printed has one line per (N, D, loss).

Needs CUDA (`--device cpu` runs the same loop on the CPU, for a smoke test only).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from _provenance import append_rows, environment  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from _trainer_flags import parse_settings  # noqa: E402

from skillscale.errors import InputError, OneLineArgumentParser  # noqa: E402
from trainers.cli import parse_count, parse_pairs  # noqa: E402
from trainers.spec import FamilySpec, RunSpec  # noqa: E402

DEFAULT_MIX = "knowledge=0.4,code=0.4,general=0.2"


def recorded(path: str, fingerprint: str) -> dict[str, dict]:
    """Rows of earlier sittings with these settings, by run key."""
    rows = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                row = json.loads(line) if line.strip() else {}
                if row.get("bench") == "family_parity" and row.get("fingerprint") == fingerprint:
                    rows[row["key"]] = row
    return rows


def result_row(kind: str, key: str, target: float, seed: int, result, env: dict, fingerprint: str) -> dict:
    return {"bench": "family_parity", "kind": kind, "key": key, "fingerprint": fingerprint, "target_n": target,
            "seed": seed, "run_id": result.run_id, "family_id": result.family_id, "branch": result.branch,
            "status": result.status, "n_params": result.n_params, "n_tokens": result.n_tokens,
            "flops": result.flops, "losses": result.losses, "domain_losses": result.domain_losses,
            "loss_errors": result.loss_errors, "wall_s": result.wall_s, "tokens_per_s": result.tokens_per_s, **env}


def summarise(rows: list[dict], env: dict) -> list[dict]:
    """One row per (N, D, loss): branch vs cosine over seeds (module docstring)."""
    summary = []
    cells = sorted({(r["target_n"], r["n_tokens"]) for r in rows})
    for target, n_tokens in cells:
        here = [r for r in rows if (r["target_n"], r["n_tokens"]) == (target, n_tokens) and r["status"] == "ok"]
        branch = {r["seed"]: r for r in here if r["kind"] == "branch"}
        cosine = {r["seed"]: r for r in here if r["kind"] == "cosine"}
        seeds = sorted(set(branch) & set(cosine))
        if not seeds:
            continue
        names = [("eval", k) for k in sorted(branch[seeds[0]]["losses"])]
        names += [("heldout", k) for k in sorted(branch[seeds[0]]["domain_losses"])]
        for group, name in names:
            field = "losses" if group == "eval" else "domain_losses"
            b = [branch[s][field][name] for s in seeds]
            c = [cosine[s][field][name] for s in seeds]
            diffs = [x - y for x, y in zip(b, c, strict=True)]
            mean_diff = statistics.fmean(diffs)
            if len(seeds) > 1:
                se = statistics.stdev(diffs) / math.sqrt(len(seeds))
            else:  # one seed: only the evaluation set's own error is known
                se = cosine[seeds[0]].get("loss_errors", {}).get(name, float("nan")) if group == "eval" else math.nan
            summary.append({
                "bench": "family_parity_summary", "target_n": target, "n_params": here[0]["n_params"],
                "n_tokens": n_tokens, "loss": f"{group}/{name}", "n_seeds": len(seeds),
                "branch_mean": statistics.fmean(b), "cosine_mean": statistics.fmean(c),
                "branch_seed_std": statistics.stdev(b) if len(b) > 1 else math.nan,
                "cosine_seed_std": statistics.stdev(c) if len(c) > 1 else math.nan,
                "mean_diff": mean_diff, "diff_se": se, "rel_diff": mean_diff / statistics.fmean(c),
                "within_noise": bool(abs(mean_diff) <= 2 * se) if math.isfinite(se) else None, **env})
    print(f"\n{'N':>11} {'D':>13} {'loss':<18} seeds {'branch':>8} {'cosine':>8} {'diff':>9} {'+-2se':>8} "
          f"{'seed std b/c':>15}  within noise")
    for s in summary:
        print(f"{s['n_params']:>11,} {s['n_tokens']:>13,} {s['loss']:<18} {s['n_seeds']:>5} {s['branch_mean']:8.4f} "
              f"{s['cosine_mean']:8.4f} {s['mean_diff']:+9.4f} {2 * s['diff_se']:8.4f} "
              f"{s['branch_seed_std']:7.4f}/{s['cosine_seed_std']:.4f}  {s['within_noise']}")
    return summary


def main() -> None:
    parser = OneLineArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1e6,4e6", help="target N, comma-separated")
    parser.add_argument("--tokens-per-param", default="20,80", help="branch D / N, comma-separated (two or more)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--mix", default=DEFAULT_MIX)
    parser.add_argument("--cooldown-fraction", type=float, default=0.2)
    parser.add_argument("--cooldown-shape", default="1-sqrt", choices=("linear", "1-sqrt"))
    parser.add_argument("--cosine-rule", default="family", choices=("family", "own"),
                        help="cosine runs' lr/batch/warmup: the family's (default) or the rule's at their own D")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--no-compile", action="store_true", help="train eagerly (compile is on by default on CUDA)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="any other TrainerSettings/DataSettings field (repeatable)")
    parser.add_argument("--runs-dir", default="/tmp/skillscale-family-parity")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "family_parity.jsonl"))
    args = parser.parse_args()
    try:
        sizes = [parse_count(s, "--sizes") for s in args.sizes.split(",") if s.strip()]
        ratios = [float(r) for r in args.tokens_per_param.split(",") if r.strip()]
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        if len(ratios) < 2 or any(r <= 0 for r in ratios):
            raise InputError(f"--tokens-per-param: expected two or more positive ratios, got {args.tokens_per_param!r}")
        mix = parse_pairs(args.mix, "--mix")
        extra = parse_settings(args.set)
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError("needs CUDA (no GPU found); --device cpu runs a smoke test")
        from trainers.torch_backend import TorchBackend, split_settings

        on_cuda = args.device.startswith("cuda")
        trainer, data = split_settings({"device": args.device, "seq_len": args.seq_len, "checkpoint_every": 500,
                                        "compile": on_cuda and not args.no_compile, **extra})
        backend = TorchBackend(trainer=trainer, data=data)
        families = [FamilySpec(n_params=n, n_tokens=tuple(int(round(r * n)) for r in ratios), mix=mix, seed=seed,
                               cooldown_fraction=args.cooldown_fraction, cooldown_shape=args.cooldown_shape)
                    for n in sizes for seed in seeds]
        for family in families:
            for branch in family.branches():
                backend.plan(branch)  # bad sizes or token counts are refused here, before any training
    except ValueError as exc:  # InputError, or a bad number in a list
        print(f"family_parity: {exc}", file=sys.stderr)
        sys.exit(2)
    env = environment(backend.device)
    what = json.dumps({"trainer": trainer.model_dump(), "data": data.model_dump(), "cosine_rule": args.cosine_rule},
                      sort_keys=True, default=str)
    fingerprint = hashlib.sha256(what.encode()).hexdigest()[:12]
    done = recorded(args.out, fingerprint)
    tokens = sum(f.n_tokens[-1] + args.cooldown_fraction * sum(f.n_tokens[:-1]) + sum(f.n_tokens) for f in families)
    print(f"# {env}; {len(families)} families, {tokens:,.0f} training tokens in all ({len(done)} runs recorded)",
          flush=True)
    rows = list(done.values())
    for family in families:
        target = float(family.n_params)
        branches = family.branches()
        if not all(f"branch-{b.run_id}" in done for b in branches):
            t0 = time.perf_counter()
            results = backend.run_family(family, os.path.join(args.runs_dir, f"family-{family.family_id}"))
            for b, result in zip(branches, results, strict=True):
                row = result_row("branch", f"branch-{b.run_id}", target, family.seed, result, env, fingerprint)
                if row["key"] not in done:
                    append_rows(args.out, [row])
                    rows.append(row)
            print(f"family N={results[0].n_params:,} seed {family.seed}: "
                  f"{[round(r.losses.get('code', math.nan), 4) for r in results]} (code) in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
        for b in branches:
            hparams = {} if args.cosine_rule == "own" else {"rule_n_tokens": int(family.n_tokens[-1])}
            spec = RunSpec(n_params=family.n_params, n_tokens=b.n_tokens, mix=family.mix, seed=family.seed,
                           hparams=hparams)
            key = f"cosine-{spec.run_id}"
            if key in done:
                continue
            result = backend.run(spec, os.path.join(args.runs_dir, f"cosine-{spec.run_id}"))
            row = result_row("cosine", key, target, family.seed, result, env, fingerprint)
            append_rows(args.out, [row])
            rows.append(row)
            print(f"cosine N={result.n_params:,} D={result.n_tokens:,} seed {family.seed}: {result.losses}", flush=True)
    append_rows(args.out, summarise(rows, env))


if __name__ == "__main__":
    main()
