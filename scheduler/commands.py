"""`skillscale run` and `skillscale status`: start/resume a study, and look at one."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from scheduler.estimates import family_text, precision_text


def add_study_parsers(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run (or resume) a study", description="Run a study, or resume it: "
                         "rerunning the same command on the same study dir re-attaches and loses nothing.")
    run.add_argument("config", help="study YAML (see configs/)")
    run.add_argument("--study-dir", help="where state lives (default: studies/<name>)")
    run.add_argument("--address", default=None,
                     help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray instance)")
    run.add_argument("--dashboard", action="store_true", help="start the Ray dashboard with a local instance")
    run.add_argument("--dashboard-host", default="127.0.0.1", help="dashboard bind address (default 127.0.0.1)")
    run.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray instance (default: all)")
    run.add_argument("--quiet", action="store_true", help="print only the final table")
    run.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                     help="stop (stop_reason time_limit) after this long, writing result.json")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", help="where a study stands")
    status.add_argument("study_dir")
    status.set_defaults(func=cmd_status)

    from scheduler.report import add_report_parser

    add_report_parser(sub)


def cmd_run(args: argparse.Namespace) -> int:
    from scheduler.controller import run_study
    from scheduler.progress import Progress

    result = run_study(args.config, args.study_dir, address=args.address, num_cpus=args.num_cpus,
                       dashboard=args.dashboard, dashboard_host=args.dashboard_host,
                       progress=Progress(quiet=args.quiet), time_limit_s=args.time_limit)
    return 0 if result["stop_reason"] in ("converged", "budget_exhausted", "max_runs", "time_limit") else 1


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console

    from scheduler.study import read_status

    status = read_status(Path(args.study_dir))
    console = Console(highlight=False)
    if status.stop_reason is not None:
        console.print(f"stopped: {status.stop_reason} after {status.n_runs} runs, {status.flops_spent:.3g} FLOPs")
    else:
        console.print(f"running or interrupted: {status.n_runs} runs finished, {status.flops_spent:.3g} FLOPs spent "
                      "(rerun `skillscale run` with the same config to resume)")
    if status.n_prior_runs:
        console.print(f"  {status.n_prior_runs} prior runs in every fit ({status.flops_prior:.3g} FLOPs, not charged "
                      "to the compute cap; never trained again)")
    if status.repeated[0]:
        n, most = status.repeated
        console.print(f"  {n} runs repeated their data (up to {most:.0f} epochs), to learn what repetition costs the "
                      "targets with unique_tokens")
    for t in status.targets:
        if not (math.isfinite(t.rel_halfwidth) and math.isfinite(t.n_params)):
            reason = t.degenerate or t.unresolved
            why = f" ({precision_text(None, t.degenerate, unresolved=t.unresolved)})" if reason else ""
            console.print(f"  {t.name:<16} N*({t.flops:.3g}) not identifiable from these runs yet{why}")
        else:
            lo, hi = t.n_params_ci95
            console.print(f"  {t.name:<16} N*({t.flops:.3g}) = {t.n_params:.3g}  95% CI [{lo:.3g}, {hi:.3g}]"
                          f"  ±{100 * t.rel_halfwidth:.1f}%")
        if t.families:  # each family's own answer, also while the runs have not settled N*
            console.print(f"  {'':<16} {family_text(t.families, status.tolerance)}")
    from scheduler.efficiency import efficiency_text
    from scheduler.progress import forecast_text

    if status.efficiency is not None:  # studies on a GPU of known peak (scheduler/efficiency.py)
        console.print(f"  {efficiency_text(status.efficiency)}")

    if status.forecast and status.stop_reason != "converged":  # what reaching the tolerance is expected to take
        console.print(f"  forecast{forecast_text(status.forecast).removeprefix(' |')} "
                      f"(cap {status.compute_cap:.3g} FLOPs)")
    return 0
