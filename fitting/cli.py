"""`skillscale fit`: fit scaling laws to a table of runs and print/write them.

    skillscale fit runs.parquet --bootstrap 500 --target-flops 1e21 1e22 --json laws.json --plot laws.png
    skillscale fit runs.csv --predict plan.csv --json laws.json    # predicted losses with 95% intervals

`--law auto` (the default) fits every applicable law family and weights them by how well each predicts the
largest runs from the others (fitting/averaging.py); the optima, intervals and predictions come from that
weighted mixture, and each family's own answer, weight and held-out error are printed beside it.

The table may be a study's own ledger (`skillscale fit studies/quickstart/runs.parquet`: its ok runs, one
law per `loss/<skill>` column). Bad input (a missing file or column, non-positive or NaN values, too few
distinct runs to determine a law) raises InputError, which scheduler/cli.py prints as one line with exit
status 2. A law whose fitted exponent sits on the solver's bound (fitting/parametric.py) is reported as
not identifiable: its optimum and intervals are null in the JSON and "n/a" in the table, because such an
interval is narrow because of the bound, not the data.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from fitting.report import LAWS, fit_report, predict_report
from fitting.table import load_plan, load_runs
from skillscale.atomic import atomic_write_json, finite_or_none
from skillscale.errors import InputError


def add_fit_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `fit` subcommand on an argparse subparsers object."""
    p = subparsers.add_parser("fit", help="fit scaling laws to a table of runs (CSV or parquet)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("runs", help="CSV/parquet: n_params, n_tokens, loss [, skill, flops, run_id, mix/<d>]")
    p.add_argument("--law", choices=LAWS, default="auto",
                   help="auto (default: every applicable family, weighted by held-out prediction), one family "
                        "(chinchilla = parametric, farseer, data_constrained) or isoflop (Approach 2)")
    p.add_argument("--predict", metavar="PLAN", help="CSV/parquet of runs to predict: n_params, n_tokens "
                   "[, skill, n_unique_tokens, mix/<d>]; prints and writes each one's loss with a 95%% "
                   "prediction interval")
    p.add_argument("--bootstrap", type=int, default=200, metavar="K", help="resamples (default 200)")
    p.add_argument("--exclude-top", type=int, default=0, metavar="K", help="drop the K highest-loss runs")
    p.add_argument("--target-flops", type=float, nargs="+", default=[], metavar="C",
                   help="budgets at which to report N*, D* (default: largest run and 100x it)")
    p.add_argument("--json", metavar="OUT", help="write the report as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="write isoFLOP and N*(C) plots")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_fit)
    return p


def write_json_atomic(obj, path) -> None:
    """Write the report JSON atomically; a missing output directory is a user error, not created."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise InputError(f"{path}: directory {directory} does not exist")
    atomic_write_json(path, finite_or_none(obj))  # JSON has no inf/NaN: null


def mark_unidentifiable(report: dict, fits: dict) -> None:
    """Per skill: "identifiable" and "degenerate" (exponents on the solver's bound); a degenerate law's
    optima and their intervals become None (null): the bound decided them, not the data."""
    for skill, r in report["skills"].items():
        degenerate = list(fits[skill].exponents_at_bounds()) if skill in fits else []
        r["identifiable"], r["degenerate"] = not degenerate, degenerate
        if degenerate:
            r["exponent_a"], r["exponent_a_ci95"] = None, [None, None]
            for o in r["optimum"]:
                o.update(n_params=None, n_params_ci95=[None, None], n_tokens=None, n_tokens_ci95=[None, None])


def _g(value, spec: str) -> str:
    """A number as the table prints it; "n/a" where there is none (not identifiable) or it is not finite."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return format(value, spec)


def _ci(pair, spec: str) -> str:
    lo, hi = pair
    return "n/a" if _g(lo, spec) == "n/a" or _g(hi, spec) == "n/a" else f"[{_g(lo, spec)}, {_g(hi, spec)}]"


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for skill, r in report["skills"].items():
        why = f": not identifiable ({', '.join(r['degenerate'])} on the solver's bound)" if r.get("degenerate") else ""
        t = Table(title=f"skill {skill} ({report['law']} law){why}", title_justify="left")
        t.add_column("quantity")
        t.add_column("estimate", justify="right")
        t.add_column("95% interval", justify="right")
        if "family" in r["law"]:
            t.add_row("law family", r["law"]["family"], "")
        for name, value in r["law"].items():
            if isinstance(value, dict | str) or name not in r["ci95"]:
                continue
            t.add_row(name, _g(value, ".4g"), _ci(r["ci95"][name], ".4g"))
        t.add_row("a (N* ~ C^a)", _g(r["exponent_a"], ".4g"), _ci(r["exponent_a_ci95"], ".4g"))
        for o in r["optimum"]:
            t.add_row(f"N* at C={o['flops']:.2e} FLOPs", _g(o["n_params"], ".3e"), _ci(o["n_params_ci95"], ".3e"))
            t.add_row(f"D* at C={o['flops']:.2e} FLOPs", _g(o["n_tokens"], ".3e"), _ci(o["n_tokens_ci95"], ".3e"))
        console.print(t)
        if r.get("families"):
            console.print(_families_table(skill, r["families"]))
    if report.get("predictions"):
        console.print(_predictions_table(report["predictions"]))
    console.print(f"conventions: N = {report['conventions']['n_params']}; {report['conventions']['flops']}")


def _families_table(skill: str, families: dict):
    from rich.table import Table

    t = Table(title=f"skill {skill}: law families (weight from predicting the largest runs)", title_justify="left")
    for col in ("family", "weight", "held-out error", "lack of fit", "N* (last C)", "95% interval", "note"):
        t.add_column(col, justify="left" if col in ("family", "note") else "right")
    for name, f in families.items():
        last = (f.get("optimum") or [{}])[-1]
        ci = last.get("n_params_ci95")
        error = "n/a" if f["holdout_rmse"] is None else f"{100 * f['holdout_rmse']:.2f}%"
        t.add_row(name, _g(f["weight"], ".2f"), error, _g(f["lack_of_fit"], ".2f"), _g(last.get("n_params"), ".3e"),
                  "n/a" if ci is None else _ci(ci, ".3e"), f.get("note") or "")
    return t


def _predictions_table(rows: list[dict]):
    from rich.table import Table

    t = Table(title="predicted losses (95% prediction interval: noise, parameters and law family)",
              title_justify="left")
    for col in ("skill", "N", "D", "loss", "95% interval"):
        t.add_column(col, justify="left" if col == "skill" else "right")
    for p in rows:
        t.add_row(p["skill"], f"{p['n_params']:.3e}", f"{p['n_tokens']:.3e}", f"{p['loss']:.4f}",
                  f"[{p['loss_pi95'][0]:.4f}, {p['loss_pi95'][1]:.4f}]")
    return t


def run_fit(args) -> int:
    table = load_runs(args.runs)
    if args.law == "isoflop" and (args.plot or args.predict):
        raise InputError("--plot and --predict need a parametric law (--law auto or a family), not isoflop")
    plan = load_plan(args.predict, table) if args.predict else None
    fitted: dict = {}
    report = fit_report(table, law=args.law, n_boot=args.bootstrap, target_flops=args.target_flops,
                        exclude_top=args.exclude_top, seed=args.seed, keep=fitted)
    if args.law != "isoflop":
        mark_unidentifiable(report, fitted["fits"])
    if plan is not None:
        report["predictions"] = predict_report(plan, fitted["averages"], fitted["ensembles"], seed=args.seed)
    print_report(report)
    if args.json:
        write_json_atomic(report, args.json)
    if args.plot:
        _write_plots(table, args, report, fitted["fits"], fitted["ensembles"], fitted["averages"])
    return 0


def _write_plots(table, args, report, fits, ensembles, averages) -> None:
    from fitting.plots import plot_isoflop, plot_optimum

    base, ext = os.path.splitext(args.plot)
    plot_isoflop(table, {s: f.law for s, f in fits.items()}, args.plot)
    targets = [o["flops"] for o in next(iter(report["skills"].values()))["optimum"]]
    not_identifiable = {s: f"{', '.join(r['degenerate'])} on the solver's bound"
                        for s, r in report["skills"].items() if r.get("degenerate")}
    mix = None
    if table.mix is not None:  # where the report reads a mixture-aware law's optimum
        mix = {d: float(m) for d, m in zip(table.domains, table.mix.mean(axis=0), strict=True)}
    families = {s: {f: (fit.law, avg.weights[f]) for f, fit in avg.fits.items()}
                for s, avg in averages.items() if len(avg.fits) > 1}
    plot_optimum(ensembles, [table.flops.min(), max(targets)], f"{base}_optimum{ext or '.png'}",
                 target_flops=targets, not_identifiable=not_identifiable, mix=mix, families=families)
