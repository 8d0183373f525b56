"""Whole-trainer speed: skillscale's model (Triton ops + torch.compile) vs a plain compiled PyTorch decoder.

    PYTHONPATH=. python3 benchmarks/bench_trainer.py [--sizes 256x4,1024x16] [--steps 20]
    PYTHONPATH=. python3 benchmarks/bench_trainer.py --parity [--parity-steps 200]

Speed mode: for each (d_model x n_layers), vocab 32768, seq 1024, bf16 autocast, fused AdamW, both models are
built with the same shape, compiled, warmed up (compilation happens there) and timed over 3 windows of
`--steps` steps (median window) side by side; tokens/s and MFU (6N + attention FLOPs per token,
trainers.shapes.flops_per_token, against H100_BF16_PEAK) are printed with the ratio ours/baseline and
appended to `--out` as JSON lines.

  (a) baseline: `BaselineDecoder` below, a nanoGPT-style Llama-ish decoder with the same shapes
      (F.rms_norm, RoPE in torch, SDPA, SwiGLU in torch), loss F.cross_entropy on the full (M, V) logits;
  (b) skillscale: trainers.model.Transformer(use_triton=True), i.e. kernels.TRITON_OPS, compiled as
      trainers/torch_backend.py compiles it: with CUDA graphs (mode "reduce-overhead") unless the trainer's
      `cuda_graphs` default is off. --baseline-cuda-graphs adds the baseline compiled the same way.

Parity mode: trains skillscale's model from the same seed on the same batches with the Triton ops (bf16),
the reference ops (bf16) and the reference ops in fp32, and reports whether Triton-vs-reference drift stays
within the drift that bf16 itself causes (see `parity`).
Needs CUDA.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from _provenance import append_rows, git_commit  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from skillscale.errors import InputError, OneLineArgumentParser  # noqa: E402
from trainers.model import Transformer  # noqa: E402
from trainers.shapes import ModelConfig, flops_per_token  # noqa: E402
from trainers.torch_backend import TrainerSettings  # noqa: E402

TRAINER_CUDA_GRAPHS = TrainerSettings().cuda_graphs  # skillscale is timed compiled as its trainer compiles it

H100_BF16_PEAK = 989e12  # dense FLOP/s, H100 SXM
VOCAB, SEQ = 32768, 1024
DEFAULT_SIZES = "128x2,256x4,384x6,512x8,768x12,1024x16"  # issue #5's five sizes, and a study-sized model
BATCH = {128: 32, 256: 32, 384: 32, 512: 16, 768: 16, 1024: 16}  # sequences per step, same for both models


# ---- (a) the baseline: a minimal compiled Llama-ish decoder --------------------------------------------


class BaselineBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, f = cfg.d_model, cfg.ffn_hidden
        self.cfg = cfg
        self.norm1, self.norm2 = nn.Parameter(torch.ones(d)), nn.Parameter(torch.ones(d))
        self.wqkv, self.wo = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.w_gate_up, self.w_down = nn.Linear(d, 2 * f, bias=False), nn.Linear(f, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        H, Dh = self.cfg.n_heads, self.cfg.head_dim
        h = F.rms_norm(x, (C,), self.norm1, self.cfg.norm_eps)
        q, k, v = self.wqkv(h).view(B, T, 3, H, Dh).permute(2, 0, 3, 1, 4)  # each (B, H, T, Dh)

        def rope(t):
            t1, t2 = t.chunk(2, dim=-1)
            return torch.cat([t1 * cos - t2 * sin, t2 * cos + t1 * sin], dim=-1).to(t.dtype)

        y = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
        x = x + self.wo(y.transpose(1, 2).reshape(B, T, C))
        gate, up = self.w_gate_up(F.rms_norm(x, (C,), self.norm2, self.cfg.norm_eps)).chunk(2, dim=-1)
        return x + self.w_down(F.silu(gate) * up)


class BaselineDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(BaselineBlock(cfg) for _ in range(cfg.n_layers))
        self.final_norm = nn.Parameter(torch.ones(cfg.d_model))
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        inv_freq = 1.0 / cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2).float() / cfg.head_dim)
        angles = torch.outer(torch.arange(cfg.seq_len).float(), inv_freq)  # (T, Dh/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx, targets):
        x = self.embed(idx)  # (B, T, C)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        x = F.rms_norm(x, (x.shape[-1],), self.final_norm, self.cfg.norm_eps)
        logits = self.head(x)  # (B, T, V): the full logits
        return F.cross_entropy(logits.view(-1, logits.shape[-1]).float(), targets.reshape(-1),
                               ignore_index=-100)


# ---- timing ----------------------------------------------------------------------------------------------


def env_info() -> dict:
    import triton
    return {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "commit": git_commit()}


def model_config(size: str) -> ModelConfig:
    """"DxL" -> the benchmark's decoder shape: d_model D, L layers, head_dim 64, vocab 32768, seq 1024.

    An argparse `type`: a bad size is argparse's one-line error, exit status 2, before any GPU work."""
    try:
        d, n_layers = (int(v) for v in size.split("x"))
        return ModelConfig(d_model=d, n_layers=n_layers, n_heads=d // 64, vocab_size=VOCAB, seq_len=SEQ)
    except (ValueError, InputError):
        raise argparse.ArgumentTypeError(f"expected DxL such as 256x4 (D a multiple of 64), got {size!r}") from None


def model_configs(sizes: str) -> list[ModelConfig]:
    """Comma-separated DxL sizes (an argparse `type`, see model_config)."""
    return [model_config(size) for size in sizes.split(",")]


def start_gpu_session(script: str) -> dict:
    """Exit (status 2, one line) without CUDA; otherwise TF32 on (as the trainer), print and return the
    environment."""
    if not torch.cuda.is_available():
        print(f"{script}: needs CUDA (no GPU found)", file=sys.stderr)
        sys.exit(2)
    torch.backends.cuda.matmul.allow_tf32 = True
    info = env_info()
    print(f"# {info}", flush=True)
    return info


def make_step(model, lr=3e-4, autocast=True, cuda_graphs=False, capturable=False):
    """One training step, compiled as the trainer compiles (cuda_graphs: mode "reduce-overhead", whose graph
    outputs are reused by the next replay, so the returned loss is a copy). capturable: the step itself can
    be captured in a CUDA graph (optimizer state on the device, gradients kept in place)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1, fused=True,
                            capturable=capturable)
    compiled = torch.compile(model, mode="reduce-overhead" if cuda_graphs else None)

    def step(idx, targets):
        if cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = compiled(idx, targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=not capturable)
        return loss.detach().clone() if cuda_graphs else loss
    return step


def time_model(model, batch: int, steps: int, warmup: int = 3, windows: int = 3, cuda_graphs: bool = False) -> dict:
    """Tokens/s of `windows` back-to-back windows of `steps` steps each; the median window is reported.

    One 20-step window swung by up to 25% between identical runs (host-side hiccups while the GPU is
    ~95% busy), so a single window is not a measurement."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    data = torch.randint(0, VOCAB, (4, batch, SEQ + 1), device="cuda", generator=gen)
    step = make_step(model, cuda_graphs=cuda_graphs)
    t0 = time.perf_counter()
    for i in range(warmup):
        step(data[i % 4, :, :-1], data[i % 4, :, 1:])
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - t0
    torch.cuda.reset_peak_memory_stats()
    window_tok_s = []
    for _ in range(windows):
        t0 = time.perf_counter()
        for i in range(steps):
            loss = step(data[i % 4, :, :-1], data[i % 4, :, 1:])
        torch.cuda.synchronize()
        window_tok_s.append(batch * SEQ * steps / (time.perf_counter() - t0))
    tok_s = statistics.median(window_tok_s)
    return {"tok_s": tok_s, "step_ms": 1e3 * batch * SEQ / tok_s, "warmup_s": compile_s,
            "window_tok_s": [round(v) for v in window_tok_s],
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30, "loss": float(loss)}


def speed(args, info):
    rows = []
    for cfg in args.sizes:
        d, n_layers = cfg.d_model, cfg.n_layers
        batch = args.batch or BATCH.get(d, 16)
        fpt = flops_per_token(cfg)
        result = {}
        models = [("baseline", lambda cfg=cfg: BaselineDecoder(cfg), False),
                  ("skillscale", lambda cfg=cfg: Transformer(cfg, use_triton=True), TRAINER_CUDA_GRAPHS)]
        if args.baseline_cuda_graphs:  # for reference: the baseline given the trainer's CUDA graphs too
            models.append(("baseline-cudagraphs", lambda cfg=cfg: BaselineDecoder(cfg), True))
        for name, build, graphs in models:
            torch.manual_seed(0)
            model = build().cuda()
            r = time_model(model, batch, args.steps, cuda_graphs=graphs)
            r["cuda_graphs"] = graphs
            r["mfu"] = r["tok_s"] * fpt / H100_BF16_PEAK
            result[name] = r
            del model
            torch._dynamo.reset()
            torch.cuda.empty_cache()
        ratio = result["skillscale"]["tok_s"] / result["baseline"]["tok_s"]
        n_params = sum(p.numel() for p in Transformer(cfg).matmul_weights())
        for name, r in result.items():
            row = {"mode": "speed", "model": name, "d_model": d, "n_layers": n_layers, "n_params": n_params,
                   "batch": batch, "seq": SEQ, "vocab": VOCAB, **{k: round(v, 4) if isinstance(v, float) else v
                                                                for k, v in r.items()},
                   "ratio_vs_baseline": round(r["tok_s"] / result["baseline"]["tok_s"], 3), **info}
            rows.append(row)
            print(f"{d:5d}x{n_layers:<3d} {n_params / 1e6:6.0f}M {name:10s} {r['tok_s'] / 1e6:6.3f}M tok/s  "
                  f"MFU {100 * r['mfu']:5.1f}%  step {r['step_ms']:7.1f} ms  peak {r['peak_gib']:5.1f} GiB  "
                  f"warmup {r['warmup_s']:5.1f} s  loss {r['loss']:.3f}", flush=True)
        print(f"          ratio skillscale/baseline: {ratio:.3f}", flush=True)
        append_rows(args.out, rows[-len(models):])
    return rows


def parity(args, info):
    """Same seed, same batches, three runs of skillscale's model (all compiled): Triton ops in bf16 autocast,
    reference ops in bf16 autocast, and reference ops in fp32 (no autocast).

    "Within bf16 noise" is judged against the noise that bf16 itself brings: the Triton run should stay as
    close to the bf16 reference as the bf16 reference stays to the fp32 one (mean |diff| over the last 50
    steps). A single Triton-vs-reference distance means little alone: at lr 1e-3 on memorised batches the
    reference itself spiked to the initial loss once in an earlier run.
    """
    cfg = args.parity_size
    d, n_layers = cfg.d_model, cfg.n_layers
    gen = torch.Generator(device="cuda").manual_seed(1)
    # a small repeating set of batches, so that the loss falls far (memorisation) and drift would show
    data = torch.randint(0, 512, (8, 8, SEQ + 1), device="cuda", generator=gen)
    curves = {}
    for name, use_triton, bf16 in (("triton", True, True), ("reference", False, True),
                                   ("reference_fp32", False, False)):
        torch.manual_seed(0)
        model = Transformer(cfg, use_triton=use_triton).cuda()
        step = make_step(model, lr=args.parity_lr, autocast=bf16)
        curves[name] = [float(step(data[i % 8, :, :-1], data[i % 8, :, 1:])) for i in range(args.parity_steps)]
        torch._dynamo.reset()

    def tail_diff(a, b):
        tail = [abs(x - y) for x, y in zip(curves[a][-50:], curves[b][-50:], strict=True)]
        return sum(tail) / len(tail)

    row = {"mode": "parity", "d_model": d, "n_layers": n_layers, "steps": args.parity_steps, "lr": args.parity_lr,
           "first_loss": curves["reference"][0],
           **{f"final_loss_{k}": v[-1] for k, v in curves.items()},
           **{f"max_loss_after_step50_{k}": max(v[50:]) for k, v in curves.items()},  # shows a spike, if any
           "max_abs_diff_triton_vs_reference": max(abs(a - b) for a, b in zip(curves["triton"], curves["reference"],
                                                                             strict=True)),
           "mean_abs_diff_last50_triton_vs_reference": tail_diff("triton", "reference"),
           "mean_abs_diff_last50_bf16_vs_fp32_reference": tail_diff("reference", "reference_fp32"),
           "mean_abs_diff_last50_triton_vs_fp32_reference": tail_diff("triton", "reference_fp32"),
           **{f"curve_{k}": v[::10] for k, v in curves.items()}, **info}
    row["within_bf16_noise"] = (row["mean_abs_diff_last50_triton_vs_reference"]
                                <= row["mean_abs_diff_last50_bf16_vs_fp32_reference"])
    print(json.dumps({k: v for k, v in row.items() if not k.startswith("curve")}), flush=True)
    append_rows(args.out, [row])
    return row


def main() -> None:
    parser = OneLineArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=model_configs, default=DEFAULT_SIZES, help="comma-separated d_modelxn_layers")
    parser.add_argument("--steps", type=int, default=20,
                        help="steps per timing window (3 windows, after 3 warmup steps)")
    parser.add_argument("--batch", type=int, default=0, help="sequences per step (0: per-size default)")
    parser.add_argument("--baseline-cuda-graphs", action="store_true",
                        help="also time the baseline compiled with CUDA graphs (reduce-overhead), for reference")
    parser.add_argument("--parity", action="store_true", help="loss-curve parity instead of speed")
    parser.add_argument("--parity-size", type=model_config, default="256x4")
    parser.add_argument("--parity-steps", type=int, default=200)
    parser.add_argument("--parity-lr", type=float, default=3e-4)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "kernels_trainer.jsonl"))
    args = parser.parse_args()
    info = start_gpu_session("bench_trainer")
    parity(args, info) if args.parity else speed(args, info)


if __name__ == "__main__":
    main()
