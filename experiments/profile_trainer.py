"""Where a training step's GPU time goes: kernel-time breakdown of the baseline and of skillscale's model.

    PYTHONPATH=. python3 experiments/profile_trainer.py [--sizes 256x4,1024x16] [--variants plain,cudnn,graph]

For each size and model (the two of bench_trainer.py, same batch and settings), after compiling and warming
up: wall ms per step, GPU kernel ms per step (so wall - kernel = time the GPU sat idle, i.e. launch-bound),
and kernel time by category (GEMM, attention, Triton, other) with the top kernels. Variants:
  plain  - as bench_trainer.py (torch.compile default mode, SDPA's default backend);
  cudnn  - SDPA restricted to the cuDNN attention backend;
  graph  - the whole step (forward, backward, fused AdamW with capturable state) replayed as one CUDA graph;
  ro     - torch.compile(mode="reduce-overhead"): Inductor's CUDA graphs of forward and backward.
Prints a table and appends JSON lines to --out. Needs CUDA. A diagnostic, not the speed benchmark.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))  # _provenance, bench_trainer
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # the repository root

from _provenance import append_rows  # noqa: E402
from bench_trainer import BATCH, SEQ, VOCAB, BaselineDecoder, make_step, model_configs, start_gpu_session  # noqa: E402

from skillscale.errors import OneLineArgumentParser  # noqa: E402
from trainers.model import Transformer  # noqa: E402

CATEGORIES = (("gemm", ("gemm", "nvjet", "cutlass", "sm90_xmma", "sm80_xmma", "cublas")),
              ("attention", ("flash", "fmha", "cudnn", "attention", "sdpa")),
              ("triton", ("triton",)))


def category(name: str) -> str:
    low = name.lower()
    for cat, keys in CATEGORIES:
        if any(k in low for k in keys):
            return cat
    return "other"


@contextlib.contextmanager
def sdpa_backend(variant: str):
    """Restrict SDPA to cuDNN attention for the 'cudnn' variant (set before tracing: the choice is baked in)."""
    if "cudnn" not in variant:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        yield


def build_step(model, graph: bool, batch: int, cuda_graphs: bool = False):
    """bench_trainer's step; with `graph`, the whole step (forward, backward, AdamW) captured as one CUDA graph."""
    step = make_step(model, cuda_graphs=cuda_graphs, capturable=graph)
    if not graph:
        return step
    static_idx = torch.zeros(batch, SEQ, dtype=torch.long, device="cuda")
    static_tgt = torch.zeros(batch, SEQ, dtype=torch.long, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # compile and warm up outside the capture
            step(static_idx, static_tgt)
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        static_loss = step(static_idx, static_tgt)

    def replay(idx, targets):
        static_idx.copy_(idx)
        static_tgt.copy_(targets)
        g.replay()
        return static_loss
    return replay


def measure(model, batch: int, steps: int, graph: bool, cuda_graphs: bool = False) -> dict:
    gen = torch.Generator(device="cuda").manual_seed(0)
    data = torch.randint(0, VOCAB, (4, batch, SEQ + 1), device="cuda", generator=gen)
    t0 = time.perf_counter()
    step = build_step(model, graph, batch, cuda_graphs)
    for i in range(3):
        step(data[i % 4, :, :-1], data[i % 4, :, 1:])
    torch.cuda.synchronize()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(steps):
        loss = step(data[i % 4, :, :-1], data[i % 4, :, 1:])
    torch.cuda.synchronize()
    wall_ms = 1e3 * (time.perf_counter() - t0) / steps
    prof_steps = 4
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for i in range(prof_steps):
            step(data[i % 4, :, :-1], data[i % 4, :, 1:])
        torch.cuda.synchronize()
    kernels = collections.Counter()
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            kernels[e.name] += e.time_range.elapsed_us() / 1e3 / prof_steps
    by_cat = collections.Counter()
    for name, ms in kernels.items():
        by_cat[category(name)] += ms
    return {"wall_ms": wall_ms, "kernel_ms": sum(kernels.values()), "tok_s": batch * SEQ / wall_ms * 1e3,
            "by_category_ms": {k: round(v, 3) for k, v in by_cat.most_common()},
            "top": [(n[:90], round(ms, 3)) for n, ms in kernels.most_common(8)], "warmup_s": warm,
            "loss": float(loss), "n_kernels_per_step": len(kernels)}


def main() -> None:
    p = OneLineArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=model_configs, default="256x4,1024x16", help="comma-separated d_modelxn_layers")
    p.add_argument("--variants", default="plain,cudnn,graph,cudnn+graph")
    p.add_argument("--models", default="baseline,skillscale")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--top", action="store_true", help="print the top kernels too")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "profile_trainer.jsonl"))
    args = p.parse_args()
    info = start_gpu_session("profile_trainer")
    for cfg in args.sizes:
        size = f"{cfg.d_model}x{cfg.n_layers}"
        batch = BATCH.get(cfg.d_model, 16)
        for variant in args.variants.split(","):
            for name in args.models.split(","):
                torch.manual_seed(0)
                model = (BaselineDecoder(cfg) if name == "baseline" else Transformer(cfg, use_triton=True)).cuda()
                try:
                    with sdpa_backend(variant):
                        r = measure(model, batch, args.steps, graph="graph" in variant, cuda_graphs=variant == "ro")
                except Exception as exc:  # a variant that cannot run here is reported, not fatal
                    print(f"{size:8s} {variant:12s} {name:10s} FAILED: {type(exc).__name__}: {str(exc)[:300]}",
                          flush=True)
                    r = None
                finally:
                    del model
                    torch._dynamo.reset()
                    torch.cuda.empty_cache()
                if r is None:
                    continue
                cats = " ".join(f"{k} {v:.2f}" for k, v in r["by_category_ms"].items())
                print(f"{size:8s} {variant:12s} {name:10s} {r['tok_s'] / 1e6:6.3f}M tok/s  wall {r['wall_ms']:7.2f} ms"
                      f"  kernels {r['kernel_ms']:7.2f} ms ({r['n_kernels_per_step']} distinct)  [{cats}]"
                      f"  loss {r['loss']:.3f}", flush=True)
                if args.top:
                    for kname, ms in r["top"]:
                        print(f"      {ms:7.3f} ms  {kname}", flush=True)
                append_rows(args.out, [{"size": size, "variant": variant, "model": name, "batch": batch, **r, **info}])


if __name__ == "__main__":
    main()
