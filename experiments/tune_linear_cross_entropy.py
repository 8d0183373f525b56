"""Which head-loss strategy and tile shape to use, by hidden size: time the fused linear cross-entropy
(forward + both gradients, reduction "mean") per strategy and tile config against torch.compile's unfused loss.

    PYTHONPATH=. python3 experiments/tune_linear_cross_entropy.py [--hidden 64,128,256]

Strategies (kernels/linear_cross_entropy.py): "materialise" (cuBLAS logits per chunk + the softmax kernel) and
"recompute" (logits kept in registers, computed twice, never stored), the latter for every tile config in
CONFIGS. Vocab 32768, bf16; M = 32768 rows for C <= 384 and 16384 above (the trainer benchmark's batches).
Times are `do_bench` medians replayed in a CUDA graph (GPU time). Rows go to `--out`. Needs CUDA.
"""

from __future__ import annotations

import os
import sys

import torch
from triton.testing import do_bench_cudagraph

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))  # _provenance, bench_kernels
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # the repository root

from _provenance import append_rows  # noqa: E402  (experiments/ and benchmarks/ are on sys.path)
from bench_kernels import eager_linear_ce, fwd_bwd  # noqa: E402
from bench_trainer import start_gpu_session  # noqa: E402

import kernels.linear_cross_entropy as lce  # noqa: E402
from skillscale.errors import OneLineArgumentParser  # noqa: E402

VOCAB = 32768
# (rows per tile, vocabulary entries per tile, warps, pipeline stages, tiles per program)
CONFIGS = [
    (64, 64, 4, 3, 16), (64, 64, 4, 4, 16), (64, 32, 4, 3, 32), (64, 64, 4, 3, 64), (128, 64, 8, 3, 16),
    (128, 64, 4, 2, 16), (128, 32, 4, 3, 32), (64, 128, 4, 2, 16),
]


def _ms(step) -> float:
    step()  # compile / autotune outside the graph
    torch.cuda.synchronize()
    return do_bench_cudagraph(step, rep=200)


def main() -> None:
    parser = OneLineArgumentParser(description=__doc__)
    parser.add_argument("--hidden", default="64,128,256")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "tune_lce.jsonl"))
    args = parser.parse_args()
    try:
        sizes = [int(c) for c in args.hidden.split(",")]
    except ValueError:
        parser.error(f"--hidden: expected comma-separated integers, got {args.hidden!r}")
    info = start_gpu_session("tune_linear_cross_entropy")
    compiled_ce = torch.compile(eager_linear_ce)
    for c in sizes:
        m = 32768 if c <= 384 else 16384
        gen = torch.Generator(device="cuda").manual_seed(0)
        hidden = torch.randn(m, c, device="cuda", generator=gen).bfloat16().requires_grad_()
        weight = (torch.randn(VOCAB, c, device="cuda", generator=gen) / c**0.5).bfloat16().requires_grad_()
        targets = torch.randint(0, VOCAB, (m,), device="cuda", generator=gen)
        rows = [{"hidden": c, "rows": m, "vocab": VOCAB, "impl": "torch.compile",
                 "ms": _ms(fwd_bwd(compiled_ce, (hidden, weight, targets), None))}]
        lce._RECOMPUTE_MAX_C = 0
        rows.append({"hidden": c, "rows": m, "vocab": VOCAB, "impl": "materialise",
                     "ms": _ms(fwd_bwd(lce.linear_cross_entropy, (hidden, weight, targets), None))})
        lce._RECOMPUTE_MAX_C = 1 << 20
        for config in CONFIGS:
            lce._TILE_M, lce._TILE_N, lce._TILE_WARPS, lce._TILE_STAGES, lce._TILES = config
            try:
                ms = _ms(fwd_bwd(lce.linear_cross_entropy, (hidden, weight, targets), None))
            except Exception as exc:  # e.g. out of shared memory for a large tile: recorded, not timed
                rows.append({"hidden": c, "rows": m, "vocab": VOCAB, "impl": "recompute", "config": list(config),
                             "ms": None, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
                continue
            rows.append({"hidden": c, "rows": m, "vocab": VOCAB, "impl": "recompute",
                         "config": list(config), "ms": ms})
        base = rows[0]["ms"]
        for r in rows:
            r.update(ratio_vs_compile=round(base / r["ms"], 3) if r["ms"] else None, **info)
            timing = f"{r['ms']:7.3f} ms  {r['ratio_vs_compile']:.3f}x compile" if r["ms"] else r["error"]
            print(f"C={c:5d} M={m} {r['impl']:13s} {str(r.get('config', '')):28s} {timing}", flush=True)
        append_rows(args.out, rows)


if __name__ == "__main__":
    main()
