"""Fault-injection benchmark: inject the failures a preemptible cluster produces and count what is lost.

    python benchmarks/faults.py [--kills 10] [--seed 0] [--json benchmarks/results/faults.json]

1. Runs a simulated study uninterrupted (the reference), then the same study with the controller
   SIGKILLed at random moments and restarted each time; compares the ledgers run by run.
2. Kills the worker actor in the middle of training runs (simulated runs that take seconds and
   checkpoint every 0.2 s) and checks each run finishes from its checkpoint, recorded once.
3. Feeds the config loader every bad input of the test suite plus random fuzz; counts tracebacks.
Prints a table and writes JSON (faults injected, bad inputs tried, runs lost, runs duplicated).
"""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scheduler.config import parse_study_config  # noqa: E402
from skillscale.errors import InputError, OneLineArgumentParser  # noqa: E402
from tests.conftest import SMALL_STUDY  # noqa: E402


def cli(config: Path, study_dir: Path, address: str, kill_after: float | None) -> int:
    cmd = [sys.executable, "-m", "scheduler.cli", "run", str(config), "--study-dir", str(study_dir),
           "--address", address, "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        return proc.wait(timeout=kill_after if kill_after is not None else 900)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return -9


def ledger(study_dir: Path) -> list[tuple]:
    rows = pq.read_table(study_dir / "runs.parquet").to_pylist()
    return sorted((r["trial_number"], r["run_id"], r["status"]) for r in rows)


def controller_kills(work: Path, address: str, kills: int, rng: random.Random) -> dict:
    study = copy.deepcopy(SMALL_STUDY)
    study["max_concurrent"] = 1
    config = work / "study.yaml"
    config.write_text(yaml.safe_dump(study))
    cli(config, work / "reference", address, None)
    injected = 0
    while injected < kills:
        if cli(config, work / "resumed", address, rng.uniform(2.0, 7.0)) != -9:
            break
        injected += 1
    if not (work / "resumed" / "result.json").exists():
        cli(config, work / "resumed", address, None)
    ref, got = ledger(work / "reference"), ledger(work / "resumed")
    a = json.loads((work / "reference" / "result.json").read_text())
    b = json.loads((work / "resumed" / "result.json").read_text())
    pairs = zip(a["targets"], b["targets"], strict=True)
    same_estimates = all(abs(x["n_params"] / y["n_params"] - 1) < 1e-9 for x, y in pairs)
    return {"controller_sigkills": injected, "runs_reference": len(ref), "runs_resumed": len(got),
            "runs_lost": len(set(ref) - set(got)), "runs_extra": len(set(got) - set(ref)),
            "runs_duplicated": len(got) - len({r[1] for r in got}), "same_estimates": same_estimates}


def worker_kills(work: Path, kills: int) -> dict:
    import ray

    from scheduler.controller import Controller

    study = copy.deepcopy(SMALL_STUDY)
    study.update(max_concurrent=1, max_runs=kills + 1, name="faults-workers", flops=[1e18, 2e18])
    study["backend"]["settings"].update(sleep_per_flop=1.5 / 1e18, checkpoint_every_s=0.2)
    cfg = parse_study_config(study)
    killed: list[tuple[str, float]] = []

    def watch():
        seen = set()
        while len(killed) < kills:
            for ckpt in (work / "workers" / "runs").glob("*/sim_checkpoint.json"):
                try:
                    state = json.loads(ckpt.read_text())
                except (OSError, ValueError):
                    continue
                if ckpt.parent.name not in seen and 0.4 <= state["seconds_done"] < state["seconds_total"] - 0.3:
                    try:
                        ray.kill(ray.get_actor(f"skillscale:{cfg.name}:w0"))
                    except ValueError:
                        continue
                    seen.add(ckpt.parent.name)
                    killed.append((ckpt.parent.name, state["seconds_done"]))
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()
    result = Controller(cfg, work / "workers").run()
    rows = pq.read_table(work / "workers" / "runs.parquet").to_pylist()
    by_id = {r["run_id"]: r for r in rows}
    resumed_ok = sum(by_id.get(run_id, {}).get("status") == "ok" for run_id, _ in killed)
    return {"worker_kills": len(killed), "killed_runs_finished_ok": resumed_ok,
            "runs_duplicated": len(rows) - len(by_id), "runs": result["n_runs"]}


def bad_inputs(n_fuzz: int, rng: random.Random) -> dict:
    tried = tracebacks = 0
    mutations = [("tolerance", 0), ("tolerance", -1), ("n_params", [3e9, 1e7]), ("backend", {"name": "jax"}),
                 ("mix", {"space": "fixed", "fixed": {"knowledge": 0.9}}), ("targets", [{"name": "t", "weights":
                 {"reasoning": 1.0}, "flops": 1e20}]), ("max_concurrent", 0), ("surprise", 1), ("skills", []),
                 ("compute_cap", "lots")]
    junk = [None, -1, 0, 1e300, float("nan"), "x", [], {}, [1, 2, 3], {"a": 1}, True]
    cases = [dict(copy.deepcopy(SMALL_STUDY), **{k: v}) for k, v in mutations]
    for _ in range(n_fuzz):
        case = copy.deepcopy(SMALL_STUDY)
        case[rng.choice(sorted(case))] = rng.choice(junk)
        cases.append(case)
    for case in cases:
        tried += 1
        try:
            parse_study_config(case, "study.yaml")
        except InputError:
            pass
        except Exception:  # noqa: BLE001 - a traceback is exactly what we count
            tracebacks += 1
    return {"bad_inputs_tried": tried, "bad_input_tracebacks": tracebacks}


def main() -> None:
    ap = OneLineArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--worker-kills", type=int, default=3)
    ap.add_argument("--fuzz", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "faults.json"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="skillscale-faults-"))
    # A throwaway cluster that this process starts and alone stops (ray.shutdown), as tests/conftest.py does:
    # `ray stop --force` would kill every Ray process on the host, other people's included. Token auth is off
    # so the controller subprocesses attach without a token file; they inherit the setting.
    os.environ["RAY_AUTH_MODE"] = "disabled"
    import ray

    t0 = time.time()
    context = ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="ERROR",
                       log_to_driver=False)
    try:
        address = context.address_info["gcs_address"]
        out = {"date": time.strftime("%Y-%m-%d"), **controller_kills(work, address, args.kills, rng),
               **{f"workers_{k}": v for k, v in worker_kills(work, args.worker_kills).items()},
               **bad_inputs(args.fuzz, rng)}
    finally:
        ray.shutdown()
    out["faults_injected"] = out["controller_sigkills"] + out["workers_worker_kills"]
    out["wall_s"] = round(time.time() - t0, 1)
    for key, value in out.items():
        print(f"{key:<36} {value}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
