"""`skillscale run` and `skillscale status`: start/resume a study, and look at one."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from scheduler.config import StudyConfig, load_study_config
from scheduler.estimates import precision_text
from skillscale.errors import InputError
from trainers.spec import RunSpec


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

    from scheduler.bench import add_bench_parser
    from scheduler.report import add_report_parser

    add_bench_parser(sub)
    add_report_parser(sub)


def check_backend(cfg: StudyConfig) -> None:
    """Validate what the backend can check before Ray starts (errors name the field): its `check` hook
    (trainers/backend.py) on the study's smallest run."""
    mix = cfg.mix.fixed or {d: 1.0 / len(cfg.domains) for d in cfg.domains}
    spec = RunSpec(n_params=int(cfg.n_params.lo), n_tokens=int(cfg.n_tokens.lo), mix=mix,
                   hparams=cfg.hparams.overrides())
    try:
        cfg.backend.check(list(cfg.skills), spec)
    except InputError:
        raise
    except (TypeError, ValueError) as exc:  # a setting of the wrong type that the backend did not name
        raise InputError(f"backend: {str(exc).splitlines()[0]}") from None


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_study_config(args.config)
    check_backend(cfg)
    study_dir = Path(args.study_dir or Path("studies") / cfg.name)
    import ray

    from scheduler.controller import Controller
    from scheduler.progress import Progress

    address = args.address or os.environ.get("RAY_ADDRESS")
    init = {"namespace": "skillscale", "logging_level": "WARNING", "log_to_driver": False}
    if address:
        init["address"] = address
    else:
        init.update(include_dashboard=args.dashboard, dashboard_host=args.dashboard_host, num_cpus=args.num_cpus)
    progress = Progress(quiet=args.quiet)
    try:
        context = ray.init(**init)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"--address {address}" if address else "local Ray instance"
        raise InputError(f"{where}: cannot start/connect to Ray ({str(exc).splitlines()[0][:200]})") from None
    try:
        if args.dashboard and not address:
            progress.log(f"Ray dashboard: http://{context.dashboard_url} (actors are named by study "
                         "and worker; each run is a task named 'run <run_id> N=.. D=..')")
        progress.log(f"study {cfg.name!r} in {study_dir}: {len(cfg.targets)} targets, tolerance "
                     f"±{100 * cfg.tolerance:.0f}%, cap {cfg.compute_cap:.3g} FLOPs, {cfg.max_concurrent} workers "
                     f"({cfg.backend.name} backend)")
        result = Controller(cfg, study_dir, progress, time_limit_s=args.time_limit).run()
    finally:
        ray.shutdown()
    return 0 if result["stop_reason"] in ("converged", "budget_exhausted", "max_runs", "time_limit") else 1


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console

    from scheduler.ledger import Ledger, read_result

    study_dir = Path(args.study_dir)
    if not (study_dir / "study.yaml").exists():
        raise InputError(f"{study_dir}: not a study directory (no study.yaml)")
    console = Console(highlight=False)
    ledger = Ledger(study_dir / "runs.parquet") if (study_dir / "runs.parquet").exists() else None
    n = len(ledger) if ledger else 0
    spent = ledger.flops_spent() if ledger else 0.0
    result_path = study_dir / "result.json"
    if result_path.exists():
        result = read_result(study_dir)
        console.print(f"stopped: {result['stop_reason']} after {result['n_runs']} runs, "
                      f"{result['flops_spent']:.3g} FLOPs")
        targets = result["targets"]
    else:
        fits = sorted((study_dir / "fits").glob("fit-*.json")) if (study_dir / "fits").exists() else []
        targets = json.loads(fits[-1].read_text())["targets"] if fits else []
        console.print(f"running or interrupted: {n} runs finished, {spent:.3g} FLOPs spent "
                      "(rerun `skillscale run` with the same config to resume)")
    for t in targets:
        if t.get("rel_halfwidth") is None or t["n_params"] is None:
            why = f" ({precision_text(None, t['degenerate'])})" if t.get("degenerate") else ""
            console.print(f"  {t['name']:<16} N*({t['flops']:.3g}) not identifiable from these runs yet{why}")
            continue
        lo, hi = t["n_params_ci95"]
        console.print(f"  {t['name']:<16} N*({t['flops']:.3g}) = {t['n_params']:.3g}  95% CI [{lo:.3g}, {hi:.3g}]"
                      f"  ±{100 * t['rel_halfwidth']:.1f}%")
    return 0
