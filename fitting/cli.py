"""`skillscale fit`: fit scaling laws to a table of runs and print/write them.

    skillscale fit runs.parquet --bootstrap 500 --target-flops 1e21 1e22 --json laws.json --plot laws.png

Bad input (a missing file or column, non-positive or NaN values, too few runs) raises InputError, which
scheduler/cli.py prints as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import os

from fitting.report import LAWS, fit_report
from fitting.table import load_runs
from skillscale.atomic import atomic_write_json
from skillscale.errors import InputError


def add_fit_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `fit` subcommand on an argparse subparsers object."""
    p = subparsers.add_parser("fit", help="fit scaling laws to a table of runs (CSV or parquet)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("runs", help="CSV/parquet: n_params, n_tokens, loss [, skill, flops, run_id, mix/<d>]")
    p.add_argument("--law", choices=LAWS, default="parametric", help="parametric (Approach 3) or isoflop (2)")
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
    atomic_write_json(path, obj)


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for skill, r in report["skills"].items():
        t = Table(title=f"skill {skill} ({report['law']} law)", title_justify="left")
        t.add_column("quantity")
        t.add_column("estimate", justify="right")
        t.add_column("95% interval", justify="right")
        for name, value in r["law"].items():
            if isinstance(value, dict):
                continue
            lo, hi = r["ci95"][name]
            t.add_row(name, f"{value:.4g}", f"[{lo:.4g}, {hi:.4g}]")
        lo, hi = r["exponent_a_ci95"]
        t.add_row("a (N* ~ C^a)", f"{r['exponent_a']:.4g}", f"[{lo:.4g}, {hi:.4g}]")
        for o in r["optimum"]:
            (nl, nh), (dl, dh) = o["n_params_ci95"], o["n_tokens_ci95"]
            t.add_row(f"N* at C={o['flops']:.2e}", f"{o['n_params']:.3e}", f"[{nl:.3e}, {nh:.3e}]")
            t.add_row(f"D* at C={o['flops']:.2e}", f"{o['n_tokens']:.3e}", f"[{dl:.3e}, {dh:.3e}]")
        console.print(t)
    console.print(f"conventions: N = {report['conventions']['n_params']}; {report['conventions']['flops']}")


def run_fit(args) -> int:
    table = load_runs(args.runs)
    if args.plot and args.law != "parametric":
        raise InputError("--plot needs --law parametric (the plotted curves are the parametric law)")
    fitted: dict = {}
    report = fit_report(table, law=args.law, n_boot=args.bootstrap, target_flops=args.target_flops,
                        exclude_top=args.exclude_top, seed=args.seed, keep=fitted)
    print_report(report)
    if args.json:
        write_json_atomic(report, args.json)
    if args.plot:
        _write_plots(table, args, report, fitted["fits"], fitted["ensembles"])
    return 0


def _write_plots(table, args, report, fits, ensembles) -> None:
    from fitting.plots import plot_isoflop, plot_optimum

    base, ext = os.path.splitext(args.plot)
    plot_isoflop(table, {s: f.law for s, f in fits.items()}, args.plot)
    targets = [o["flops"] for o in next(iter(report["skills"].values()))["optimum"]]
    plot_optimum(ensembles, [table.flops.min(), max(targets)], f"{base}_optimum{ext or '.png'}",
                 target_flops=targets)
