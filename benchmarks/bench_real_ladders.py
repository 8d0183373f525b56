"""Law families on published ladders: how each family, and `auto`, predicts runs it was not fitted on.

    python benchmarks/bench_real_ladders.py                      # both ladders, 200 bootstrap members
    python benchmarks/bench_real_ladders.py --ladders data_constrained --n-boot 50 --out /tmp/x.jsonl

The ladders are the published runs in shared/data/real-ladders (its README: Muennighoff et al. 2023's
data-constrained runs; Ye et al. 2024's domain-mixture runs), each with a held-out split of larger or unseen
runs. Every family (fitting/families.py) and `auto` (fitting/averaging.py) is fitted to the train rows only;
per ladder, skill and law the table gives the held-out R^2 of the losses (1 - SS_res / SS_tot over the
held-out rows, the measure arXiv:2604.22753 reports), the share of held-out losses inside their 95%
prediction intervals, the weight auto gave the family, and N*(C) with its 95% interval at a few C.

The domain-mixture runs all trained on one token count, which the source does not vary: D is set to a
nominal 3e10 for every run (only the mix moves the effective data D T(m), and B absorbs the constant), and
each domain's loss is its own skill, anchored to its own domain's weight.

Rows are appended to benchmarks/results/real_ladders.jsonl with the commit and date.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._provenance import append_rows, git_commit  # noqa: E402
from fitting.averaging import (  # noqa: E402
    AUTO,
    AveragedFit,
    FamilyScore,
    bootstrap_average,
    fit_average,
    member_families,
    mixture_interval,
    prediction_interval,
)
from fitting.families import FAMILIES  # noqa: E402
from fitting.parametric import fit_parametric  # noqa: E402
from skillscale.errors import InputError  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "real-ladders"
RESULTS = HERE / "results" / "real_ladders.jsonl"
LADDERS = ("data_constrained", "domain_mixture")
TARGET_FLOPS = (1e20, 1e21, 1e22)
NOMINAL_TOKENS = 3e10  # domain mixture: one token count for every run (see the module docstring)


def _read(path: Path) -> list[dict]:
    if not path.exists():
        raise InputError(f"{path}: no such file (the published ladders live in shared/data/real-ladders)")
    with path.open() as fh:
        return list(csv.DictReader(fh))


def load_ladder(name: str, data_dir: Path = DATA) -> list[dict]:
    """One problem per skill: {skill, train: {...arrays}, test: {...arrays}} with fit_average's keywords."""
    if name == "data_constrained":
        parts = {}
        for split in ("train", "test"):
            rows = _read(data_dir / f"data_constrained_{split}.csv")
            names = ("n_params", "n_tokens", "n_unique_tokens", "loss")
            cols = {k: np.array([float(r[k]) for r in rows]) for k in names}
            parts[split] = {"n_params": cols["n_params"], "n_tokens": cols["n_tokens"], "loss": cols["loss"],
                            "unique": cols["n_unique_tokens"]}
        return [{"skill": "loss", **parts}]
    if name == "domain_mixture":
        domains = tuple(f"domain_{j}" for j in range(1, 6))
        problems = []
        splits = {split: _read(data_dir / f"domain_mixture_{split}.csv") for split in ("train", "test")}
        for j, domain in enumerate(domains, start=1):
            problem = {"skill": domain, "optimum": False}  # one D for every run: no N*(C) to read
            for split, rows in splits.items():
                n = np.array([float(r["model"].rstrip("M")) * 1e6 for r in rows])
                mix = np.array([[float(r[f"proportion_domain_{i}"]) for i in range(1, 6)] for r in rows])
                problem[split] = {"n_params": n, "n_tokens": np.full(n.size, NOMINAL_TOKENS),
                                  "loss": np.array([float(r[f"loss_domain_{j}"]) for r in rows]),
                                  "mix": mix, "domains": domains, "own_domain": domain}
            problems.append(problem)
        return problems
    raise InputError(f"unknown ladder {name!r}; known: {', '.join(LADDERS)}")


def r_squared(observed: np.ndarray, predicted: np.ndarray) -> float:
    return float(1.0 - np.sum((observed - predicted) ** 2) / np.sum((observed - observed.mean()) ** 2))


def _fit(train: dict, law: str) -> AveragedFit:
    if law == AUTO:
        return fit_average(**train)
    fit = fit_parametric(**train, family=law)
    return AveragedFit({law: fit}, {law: FamilyScore(law, 1.0, None, None, None)})


def evaluate(problem: dict, law: str, n_boot: int, seed: int, auto_weights: dict | None = None) -> dict:
    """One row: held-out R^2, PI coverage and N*(C) of `law` fitted to the problem's train rows."""
    train, test = problem["train"], problem["test"]
    avg = _fit(train, law)
    ens = bootstrap_average(avg, **train, n_boot=n_boot, seed=seed, method="parametric")
    query = {"n_params": test["n_params"], "n_tokens": test["n_tokens"], "mix": test.get("mix"),
             "unique": test.get("unique")}
    predicted = avg.predict_point(**query)
    _, lo, hi = prediction_interval(ens, avg, **query, seed=seed)
    observed = test["loss"]
    mix = None if train.get("mix") is None else train["mix"].mean(axis=0)
    optima = []
    for c in TARGET_FLOPS if problem.get("optimum", True) else ():
        n_opt, _ = ens.optimum(c, mix)
        points = {f: float(fit.law.optimum(c, mix)[0][0]) for f, fit in avg.fits.items()}
        n_hat = avg.optimum_point(c, mix)[0]
        optima.append({"flops": c, "n_params": n_hat,
                       "n_params_ci95": list(mixture_interval(n_opt, member_families(ens), points))})
    return {"skill": problem["skill"], "law": law,
            "weight": (auto_weights or {}).get(law, 0.0) if law != AUTO else None,
            "weights": avg.weights if law == AUTO else None,
            "holdout_r2": r_squared(observed, predicted),
            "pi95_coverage": float(np.mean((observed >= lo) & (observed <= hi))),
            "pi95_median_halfwidth": float(np.median((hi - lo) / 2 / predicted)),
            "max_abs_rel_error": float(np.max(np.abs(predicted / observed - 1))),
            "n_train": int(train["loss"].size), "n_test": int(observed.size), "optimum": optima}


def run(ladders, n_boot: int, seed: int, data_dir: Path = DATA) -> list[dict]:
    rows = []
    for ladder in ladders:
        for problem in load_ladder(ladder, data_dir):
            auto = evaluate(problem, AUTO, n_boot, seed)
            rows.append({"ladder": ladder, **auto})
            for family in FAMILIES:
                try:
                    row = evaluate(problem, family, n_boot, seed, auto["weights"])
                except InputError as exc:  # not applicable (no repeated data, too few runs)
                    print(f"{ladder}/{problem['skill']}/{family}: skipped ({exc})", file=sys.stderr)
                    continue
                rows.append({"ladder": ladder, **row})
    return rows


def print_table(rows: list[dict]) -> None:
    print("| ladder | skill | law | auto weight | held-out R^2 | in 95% PI | PI half-width | N*(1e22) [95%] |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        weight = "" if r["law"] == AUTO else f"{r['weight']:.2f}"
        optimum = "n/a (one D)"
        if r["optimum"]:
            last = r["optimum"][-1]
            optimum = f"{last['n_params']:.3g} [{last['n_params_ci95'][0]:.3g}, {last['n_params_ci95'][1]:.3g}]"
        print(f"| {r['ladder']} | {r['skill']} | {r['law']} | {weight} | {r['holdout_r2']:.3f} | "
              f"{100 * r['pi95_coverage']:.0f}% | {100 * r['pi95_median_halfwidth']:.1f}% | {optimum} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ladders", nargs="+", default=list(LADDERS), choices=LADDERS)
    p.add_argument("--n-boot", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--out", default=str(RESULTS), help="JSON lines file to append to ('' to skip)")
    args = p.parse_args(argv)
    rows = run(args.ladders, args.n_boot, args.seed, Path(args.data_dir))
    print_table(rows)
    if args.out:
        stamp = {"commit": git_commit(), "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
                 "machine": f"{os.cpu_count()} CPUs", "n_boot": args.n_boot, "seed": args.seed}
        append_rows(args.out, [{**stamp, **r} for r in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
