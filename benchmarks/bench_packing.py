"""How to pack a study's small runs onto one GPU: the same runs through real TrainerActors under several layouts.

    PYTHONPATH=. python3 benchmarks/bench_packing.py configs/skills-h200.yaml \
        --runs 7.5e5@1e14,1e6@2e14,1.33e6@1e14,1.78e6@3e14,2.37e6@3e14,3.16e6@3e14 \
        --layouts 6x0.16,6x0.16+mps,1x1 --out $OUT/packing.jsonl

A layout "AxG" starts A actors of G GPUs each (Ray fractional GPUs; scheduler/actor.py, as `skillscale run` does)
in a fresh local Ray instance with a fresh, shared inductor cache (TORCHINDUCTOR_CACHE_DIR), and hands them the
runs in the given order, each to the next free actor; "+mps" first starts the CUDA MPS control daemon, so that the
actors' kernels run side by side instead of in time slices. Each layout's wall time runs from the first actor's
start to the last result, so it holds what a study sitting pays too: process start, data, compilation,
evaluation, idle GPU. `--runs` are N@C with C the FLOPs of one model (6ND); the backend (and its
`trainer.seed_replicas`) is the study config's.

Printed per layout: wall, runs per GPU-minute, efficiency = sum(models x 6ND) / (wall x GPUs x the card's dense
bf16 peak), the mean GPU utilisation (nvidia-smi), and where a run's time went (training steps vs the rest:
compilation, evaluation, checkpoints), with the ratio of runs per GPU-minute against the first layout.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks._provenance import append_rows, git_commit  # noqa: E402
from skillscale.errors import InputError, OneLineArgumentParser  # noqa: E402

MPS_CONTROL = "nvidia-cuda-mps-control"


def parse_runs(text: str) -> list[tuple[float, float]]:
    """'N@C,...' -> [(N, C)]; InputError naming --runs for anything else."""
    out = []
    for item in text.split(","):
        try:
            n, c = (float(x) for x in item.split("@"))
        except ValueError:
            raise InputError(f"--runs: expected N@C items such as 1e6@2e14, got {item!r}") from None
        if not (n > 0 and c > 0 and math.isfinite(n * c)):
            raise InputError(f"--runs: N and C must be positive, got {item!r}")
        out.append((n, c))
    return out


def parse_layout(text: str) -> tuple[int, float, bool]:
    """'AxG[+mps]' -> (actors, GPUs per actor, mps); InputError naming --layouts otherwise."""
    body, mps = (text[:-4], True) if text.endswith("+mps") else (text, False)
    try:
        actors, gpus = body.split("x")
        actors, gpus = int(actors), float(gpus)
    except ValueError:
        raise InputError(f"--layouts: expected AxG or AxG+mps (e.g. 6x0.16+mps), got {text!r}") from None
    if actors < 1 or not 0 < gpus <= 1 or actors * gpus > 1 + 1e-9:
        raise InputError(f"--layouts: {text!r}: need A >= 1, 0 < G <= 1 and A x G <= 1 GPU")
    return actors, gpus, mps


def gpu_name() -> str:
    """The first GPU's name from nvidia-smi (the driver process itself never opens a CUDA context)."""
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, check=True).stdout.splitlines()[0].strip()
    except (OSError, subprocess.CalledProcessError, IndexError):
        return ""


class Mps:
    """The CUDA MPS control daemon for one layout (its pipe and log folders are temporary)."""

    def __init__(self, root: Path):
        self.env = {"CUDA_MPS_PIPE_DIRECTORY": str(root / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(root / "log")}
        for d in self.env.values():
            Path(d).mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        if shutil.which(MPS_CONTROL) is None:
            raise RuntimeError(f"{MPS_CONTROL} not found")
        subprocess.run([MPS_CONTROL, "-d"], env={**os.environ, **self.env}, check=True)

    def stop(self) -> None:
        subprocess.run([MPS_CONTROL], input="quit\n", text=True, env={**os.environ, **self.env}, check=False)
        time.sleep(1.0)  # the server exits after its clients; the next layout must not meet it


def warm_data(cfg) -> float:
    """Build the study's token streams and evaluation sets once on the CPU (their disk caches, trainers/data.py),
    so that neither the first layout nor a sitting's workers pay for building them; returns the seconds it took."""
    from trainers.spec import RunSpec
    from trainers.torch_backend import TorchBackend

    began = time.perf_counter()
    backend = TorchBackend(trainer=cfg.backend.trainer.model_copy(update={"device": "cpu", "compile": False}),
                           data=cfg.backend.data)
    backend._data(backend._plan_run(RunSpec(n_params=int(1e6), n_tokens=int(1e7), mix=dict(cfg.mix.fixed))))
    return time.perf_counter() - began


def run_layout(cfg, runs: list[tuple[float, float]], layout: str, scratch: Path, timeout_s: float) -> dict:
    import ray

    from scheduler.actor import start_actor
    from trainers.spec import RunSpec

    actors_n, gpus, use_mps = parse_layout(layout)
    root = Path(tempfile.mkdtemp(prefix="layout-", dir=scratch))
    env = {"TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"), "TORCHINDUCTOR_FX_GRAPH_CACHE": "1",
           "PYTHONUNBUFFERED": "1"}
    mps = Mps(root / "mps") if use_mps else None
    if mps is not None:
        mps.start()
        env.update(mps.env)
    os.environ.update(env)  # the local raylet and its workers inherit the driver's environment
    smi = (subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms",
                             "500"], stdout=subprocess.PIPE, text=True) if shutil.which("nvidia-smi") else None)
    mix = dict(cfg.mix.fixed)
    specs = [RunSpec(n_params=int(n), n_tokens=int(c / (6 * n)), mix=mix, seed=i) for i, (n, c) in enumerate(runs)]
    results, started = [], time.perf_counter()
    try:
        ray.init(num_cpus=os.cpu_count(), num_gpus=1, include_dashboard=False, logging_level="WARNING",
                 log_to_driver=False, runtime_env={"env_vars": env})
        pool = [start_actor(cfg.backend, worker=f"w{i}", num_cpus=1, num_gpus=gpus, name=None)
                for i in range(actors_n)]
        queue, in_flight = list(specs), {}
        while queue or in_flight:
            while queue and len(in_flight) < actors_n:
                busy = set(in_flight.values())
                actor = next(a for a in range(actors_n) if a not in busy)
                spec = queue.pop(0)
                ref = pool[actor].run.remote(spec.to_dict(), str(root / "runs" / spec.run_id))
                in_flight[ref] = actor
            left = timeout_s - (time.perf_counter() - started)
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=max(left, 0.0))
            if not ready:
                break  # past the layout's time limit: what finished counts
            for ref in ready:
                in_flight.pop(ref)
                results.append(ray.get(ref))
                r = results[-1]  # shown as it lands: a layout cut short by an outer time limit still says something
                print(f"  {layout}: run {len(results)} at {time.perf_counter() - started:.0f} s (its wall "
                      f"{r['wall_s']:.0f} s, {r['n_tokens'] / max(r['tokens_per_s'], 1e-9):.0f} s training)",
                      flush=True)
        wall = time.perf_counter() - started
    finally:
        ray.shutdown()
        if smi is not None:
            smi.terminate()
        if mps is not None:
            mps.stop()
        for key in env:
            os.environ.pop(key, None)
    util = [float(x) for x in smi.communicate()[0].split() if x.replace(".", "").isdigit()] if smi else []
    shutil.rmtree(root / "runs", ignore_errors=True)
    return {"layout": layout, "actors": actors_n, "gpus_per_actor": gpus, "mps": use_mps, "wall_s": wall,
            "runs": len(results), "runs_asked": len(specs), "results": results,
            "gpu_util_mean": sum(util) / len(util) if util else float("nan"), "gpu_util_samples": len(util)}


def summarise(row: dict, peak: float) -> dict:
    """Runs per GPU-minute, efficiency and where the runs' time went, for one layout's row."""
    gpus = math.ceil(row["actors"] * row["gpus_per_actor"] - 1e-9)
    flops = sum(r["flops"] for r in row["results"])
    train_s = sum(r["n_tokens"] / r["tokens_per_s"] for r in row["results"] if r["tokens_per_s"] > 0)
    run_s = sum(r["wall_s"] for r in row["results"])
    phases: dict[str, float] = {}  # where the runs' wall time went (RunResult.time_s; absent before it existed)
    for r in row["results"]:
        for k, v in (r.get("time_s") or {}).items():
            phases[k] = phases.get(k, 0.0) + v
    return {"phase_shares": {k: round(v / run_s, 3) for k, v in phases.items()} if run_s else {},
            "runs_per_gpu_min": row["runs"] / (row["wall_s"] * gpus / 60), "model_flops": flops,
            "efficiency": flops / (row["wall_s"] * gpus * peak) if peak else float("nan"),
            "train_fraction": train_s / run_s if run_s else float("nan"),
            "run_wall_s": [round(r["wall_s"], 1) for r in row["results"]],
            "run_mfu": [round(r["mfu"], 4) for r in row["results"]]}


def main(argv: list[str] | None = None) -> int:
    p = OneLineArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="study YAML whose backend trains the runs")
    p.add_argument("--runs", default="", help="N@C,...: target N and one model's 6ND FLOPs per run")
    p.add_argument("--warm-data-only", action="store_true", help="only build the data caches (for a sitting)")
    p.add_argument("--layouts", default="6x0.16,6x0.16+mps,1x1", help="AxG[+mps],...; the first is the baseline")
    p.add_argument("--timeout-s", type=float, default=240.0,
                   help="per layout; finished runs count (an outer limit must also allow the data caches, ~30-80 s, "
                        "and ~40 s of Ray start and stop per layout)")
    p.add_argument("--out", default="", help="JSON-lines file the rows are appended to")
    args = p.parse_args(argv)
    if args.warm_data_only:
        from scheduler.config import load_study_config

        print(f"data caches ready in {warm_data(load_study_config(args.config)):.0f} s", flush=True)
        return 0
    runs = parse_runs(args.runs)
    layouts = [x.strip() for x in args.layouts.split(",") if x.strip()]
    for layout in layouts:
        parse_layout(layout)

    from scheduler.config import load_study_config

    try:
        from trainers.torch_backend import peak_flops_of_name
    except ImportError:  # a checkout from before it existed: the baseline layout run from the pilot's commit
        from trainers.torch_backend import GPU_BF16_PEAK

        def peak_flops_of_name(name: str) -> float:
            return next((GPU_BF16_PEAK[k] for k in sorted(GPU_BF16_PEAK, key=len, reverse=True) if k in name), 0.0)

    cfg = load_study_config(args.config)
    if cfg.mix.fixed is None:
        raise InputError(f"{args.config}: mix: bench_packing needs a fixed mix")
    name = gpu_name()
    peak = peak_flops_of_name(name)
    import ray
    import torch
    import triton

    env = {"gpu": name, "peak_flops": peak, "torch": torch.__version__, "triton": triton.__version__,
           "ray": ray.__version__, "commit": git_commit(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "config": args.config, "run_list": args.runs}
    print(json.dumps(env), flush=True)
    print(f"data caches ready in {warm_data(cfg):.0f} s", flush=True)
    rows, base = [], None
    with tempfile.TemporaryDirectory(prefix="bench-packing-") as scratch:
        for layout in layouts:
            try:
                row = run_layout(cfg, runs, layout, Path(scratch), args.timeout_s)
            except Exception as exc:  # e.g. no MPS daemon on this machine, or its clients failing: the next layout
                print(f"{layout}: skipped ({exc})", flush=True)
                continue
            row.update(summarise(row, peak), **env)
            base = base or row
            row["speedup_vs_first"] = row["runs_per_gpu_min"] / base["runs_per_gpu_min"]
            rows.append(row)
            if args.out:  # each layout's row as soon as it is measured, not only at the end
                append_rows(args.out, [row])
            print(f"{layout:>14}: {row['runs']}/{row['runs_asked']} runs in {row['wall_s']:.0f} s, "
                  f"{row['runs_per_gpu_min']:.2f} runs/GPU-min ({row['speedup_vs_first']:.2f}x), efficiency "
                  f"{100 * row['efficiency']:.1f}%, GPU util {row['gpu_util_mean']:.0f}%, training "
                  f"{100 * row['train_fraction']:.0f}% of run time, run walls {row['run_wall_s']}", flush=True)
            if row["phase_shares"]:
                print("    runs' time: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in row["phase_shares"].items()),
                      flush=True)
    print(f"\n| layout | runs | wall s | runs/GPU-min | vs {layouts[0]} | efficiency | GPU util | training share |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layout']} | {r['runs']}/{r['runs_asked']} | {r['wall_s']:.0f} | {r['runs_per_gpu_min']:.2f} | "
              f"{r['speedup_vs_first']:.2f}x | {100 * r['efficiency']:.1f}% | {r['gpu_util_mean']:.0f}% | "
              f"{100 * r['train_fraction']:.0f}% |")
    if rows:
        best = max(rows, key=lambda r: r["runs_per_gpu_min"])
        print(f"best: {best['layout']}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
