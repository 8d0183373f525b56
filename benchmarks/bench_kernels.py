"""Per-kernel speed and peak memory: skillscale's Triton ops vs torch eager, torch.compile and liger-kernel.

    PYTHONPATH=. python3 benchmarks/bench_kernels.py [--quick] [--out benchmarks/results/kernels.jsonl]

Every op is timed forward + backward (ms, `triton.testing.do_bench`, median) at realistic training shapes
(tokens M = 16k, bf16), and its peak memory above the inputs is measured over one forward + backward.
liger-kernel is optional: a row is skipped when it is not importable or fails. Prints a table with ratios
against torch.compile measured in the same run, and appends one JSON line per row to `--out`.
Needs CUDA.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

import torch
import torch.nn.functional as F
import triton
from triton.testing import do_bench, do_bench_cudagraph

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from _provenance import append_rows, git_commit  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from kernels import reference  # noqa: E402
from kernels.triton_ops import TRITON_OPS  # noqa: E402
from skillscale.errors import OneLineArgumentParser  # noqa: E402

try:
    from liger_kernel.transformers import functional as liger
except Exception:  # liger-kernel is optional
    liger = None


def env_info() -> dict:
    return {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "liger": getattr(sys.modules.get("liger_kernel"), "__version__", None) if liger else None,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "commit": git_commit(),
    }


def fwd_bwd(fn, inputs, grad_out):
    """Forward + backward with respect to every floating input that requires grad."""
    def step():
        out = fn(*inputs)
        out = out[0] if isinstance(out, tuple) else out
        leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
        torch.autograd.grad(out, leaves, grad_out)
    return step


def measure(step) -> tuple[float, float, float]:
    """(median ms as launched from Python, median ms replayed in a CUDA graph (GPU time alone; nan if the
    step cannot be captured), peak MiB above what was allocated before)."""
    step()
    torch.cuda.synchronize()
    ms = do_bench(step, warmup=10, rep=50)
    try:
        gpu_ms = do_bench_cudagraph(step, rep=50)
    except Exception:
        gpu_ms = float("nan")
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return ms, gpu_ms, (torch.cuda.max_memory_allocated() - base) / 2**20


# ---- plain-torch formulations (what a model would write without fused kernels) ----------------------


def eager_rms_norm(x, w, eps=1e-6):
    return F.rms_norm(x, (x.shape[-1],), w.to(x.dtype), eps)


def eager_add_rms_norm(x, r, w, eps=1e-6):
    s = x + r
    return eager_rms_norm(s, w, eps), s


def eager_linear_ce(h, w, t):
    return F.cross_entropy((h @ w.t()).float(), t, ignore_index=-100)


def liger_add_rms_norm(x, r, w, eps=1e-6):
    s = x + r
    return liger.liger_rms_norm(s, w, eps), s


def liger_rope_q(x, cos, sin):
    cos_full, sin_full = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)  # (T, Dh)
    return liger.liger_rope(x, x.clone(), cos_full[None], sin_full[None])[0]


def cases(quick: bool):
    dev, bf16 = "cuda", torch.bfloat16
    tokens = 16384
    for d in ([1024] if quick else [256, 1024]):
        x = torch.randn(tokens, d, device=dev, dtype=bf16, requires_grad=True)
        r = torch.randn(tokens, d, device=dev, dtype=bf16, requires_grad=True)
        w = torch.ones(d, device=dev, dtype=bf16, requires_grad=True)
        g = torch.randn(tokens, d, device=dev, dtype=bf16)
        yield f"rms_norm M={tokens} d={d}", {
            "eager": eager_rms_norm, "liger": liger and (lambda x, w: liger.liger_rms_norm(x, w, 1e-6)),
            "triton": TRITON_OPS.rms_norm}, (x, w), g
        yield f"add_rms_norm M={tokens} d={d}", {
            "eager": eager_add_rms_norm, "liger": liger and liger_add_rms_norm,
            "triton": TRITON_OPS.add_rms_norm}, (x, r, w), g
        ffn = 64 * round(8 * d / 3 / 64)
        gate_up = torch.randn(tokens, 2 * ffn, device=dev, dtype=bf16, requires_grad=True)  # [gate | up]
        yield f"swiglu M={tokens} f={ffn}", {
            "eager": lambda gu, f=ffn: F.silu(gu[:, :f]) * gu[:, f:],
            "liger": liger and (lambda gu, f=ffn: liger.liger_swiglu(gu[:, :f], gu[:, f:])),
            "triton": TRITON_OPS.swiglu}, (gate_up,), torch.randn(tokens, ffn, device=dev, dtype=bf16)
        heads, seq = d // 64, 1024
        q = torch.randn(tokens // seq, heads, seq, 64, device=dev, dtype=bf16, requires_grad=True)
        angles = torch.outer(torch.arange(seq, device=dev).float(), torch.rand(32, device=dev))
        cos, sin = angles.cos(), angles.sin()
        yield f"rope B={tokens // seq} H={heads} T={seq} Dh=64", {
            "eager": reference.rope, "liger": liger and liger_rope_q, "triton": TRITON_OPS.rope,
        }, (q, cos, sin), torch.randn_like(q)
    for d, vocab in ([(1024, 131072)] if quick else [(512, 32768), (1024, 32768), (1024, 131072)]):
        h = (torch.randn(tokens, d, device=dev) / 4).to(bf16).requires_grad_()
        w = (torch.randn(vocab, d, device=dev) / d**0.5).to(bf16).requires_grad_()
        t = torch.randint(0, vocab, (tokens,), device=dev)
        t[::10] = -100
        yield f"linear_cross_entropy M={tokens} d={d} V={vocab}", {
            "eager": eager_linear_ce,
            "liger": liger and (lambda h, w, t: liger.liger_fused_linear_cross_entropy(h, w, t)),
            "triton": TRITON_OPS.linear_cross_entropy}, (h, w, t), torch.tensor(1.0, device=dev)


def main() -> None:
    parser = OneLineArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one shape per op")
    parser.add_argument("--ops", default="", help="comma-separated op names to run (default: all)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "kernels.jsonl"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_kernels: needs CUDA (no GPU found); the kernel tests run on CPU instead", file=sys.stderr)
        sys.exit(2)
    info = env_info()
    print(f"# {info}")
    rows = []
    for name, impls, inputs, grad in cases(args.quick):
        if args.ops and name.split()[0] not in args.ops.split(","):
            continue
        impls = {"eager": impls["eager"], "compile": torch.compile(impls["eager"]),
                 "liger": impls["liger"], "triton": impls["triton"]}
        results = {}
        for impl, fn in impls.items():
            if not fn:
                continue
            try:
                results[impl] = measure(fwd_bwd(fn, inputs, grad))
            except Exception as exc:  # report and go on: one failing impl must not hide the others
                print(f"  {name} {impl}: failed: {type(exc).__name__}: {str(exc)[:200]}")
            torch._dynamo.reset() if impl == "compile" else None
        nan3 = (float("nan"),) * 3
        ref_ms, ref_gpu, ref_mb = results.get("compile", nan3)
        eager_mb = results.get("eager", nan3)[2]
        for impl, (ms, gpu_ms, mb) in results.items():
            row = {"op": name, "impl": impl, "ms": round(ms, 4), "gpu_ms": round(gpu_ms, 4),
                   "peak_mib": round(mb, 1), "speedup_vs_compile": round(ref_ms / ms, 3),
                   "gpu_speedup_vs_compile": round(ref_gpu / gpu_ms, 3),
                   "memory_vs_compile": round(mb / ref_mb, 3) if ref_mb > 0 else None,
                   "memory_vs_eager": round(mb / eager_mb, 3) if eager_mb > 0 else None, **info}
            rows.append(row)
            print(f"{name:46s} {impl:8s} {ms:8.3f} ms {gpu_ms:8.3f} gpu-ms {mb:9.1f} MiB | vs compile: "
                  f"x{ref_ms / ms:5.2f} x{ref_gpu / gpu_ms:5.2f} gpu  mem {row['memory_vs_compile']}  "
                  f"| mem vs eager {row['memory_vs_eager']}", flush=True)
    append_rows(args.out, rows)


if __name__ == "__main__":
    main()
