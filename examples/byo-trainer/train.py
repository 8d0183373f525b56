"""A small standalone trainer that honours skillscale's command-backend contract, in plain PyTorch.

    python examples/byo-trainer/train.py --run-dir runs/a --params 20000 --tokens 100000 \
        --mix '{"arithmetic": 0.5, "code": 0.5}'

It knows nothing of skillscale (no import of it): it is what your own trainer looks like from skillscale's side.
The contract it keeps (README.md, "Bring your own trainer"):

- train a byte-level decoder with about `--params` non-embedding parameters on exactly `--tokens` tokens,
  drawn from two domains in the proportions of `--mix`;
- write `{run_dir}/result.json` at the end (atomically: a temporary file, then a rename) with the loss of
  each skill in nats per token, and the exact parameter count and tokens it trained;
- checkpoint to `{run_dir}/checkpoint.pt` every `--checkpoint-every` steps and on SIGTERM (then exit), and
  resume from it when started again with the same `--run-dir`; a run that already finished exits at once;
- exit non-zero on an error (the traceback on stderr becomes the reason skillscale records).

Skills: `arithmetic` is the mean NLL of the answer bytes of held-out sums ("123+45=" -> "168"), `code` the
mean NLL of held-out Python source (the interpreter's standard library, so no download is needed).
N counts the parameters of the blocks, the final norm and the output head (not the token and position
embeddings, which are lookups), as skillscale counts it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sys
import sysconfig
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB = 256  # bytes
SEQ_LEN = 64  # tokens per training row
BATCH_ROWS = 8  # rows per step: 512 tokens per step
N_LAYERS = 2
EVAL_ROWS = 32


# ----------------------------------------------------------------------------------------------- data
def code_text(split: str, n_bytes: int = 400_000) -> bytes:
    """Python standard-library source: the files in sorted order, every 10th file held out."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    chosen = [f for i, f in enumerate(files) if (i % 10 == 0) == (split == "heldout")]
    out = bytearray()
    for path in chosen:
        out += path.read_bytes()
        if len(out) >= n_bytes:
            break
    return bytes(out[:n_bytes])


def arithmetic_examples(seed: int, n: int) -> list[tuple[bytes, bytes]]:
    """(prompt, answer) pairs: "a+b=" and "c\\n" with a, b up to three digits."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        a, b = rng.randrange(1000), rng.randrange(1000)
        pairs.append((f"{a}+{b}=".encode(), f"{a + b}\n".encode()))
    return pairs


def arithmetic_text(seed: int, n: int = 40_000) -> bytes:
    return b"".join(p + a for p, a in arithmetic_examples(seed, n))


def batch(streams: dict[str, torch.Tensor], mix: dict[str, float], seed: int, step: int) -> torch.Tensor:
    """(BATCH_ROWS, SEQ_LEN + 1) byte rows; row domains drawn from the mix. Depends only on (seed, step), so a
    resumed run sees the same batches as an uninterrupted one."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    names = sorted(mix)
    weights = torch.tensor([mix[name] for name in names], dtype=torch.float64)
    domains = torch.multinomial(weights, BATCH_ROWS, replacement=True, generator=gen)
    rows = []
    for d in domains.tolist():
        stream = streams[names[d]]
        start = int(torch.randint(0, len(stream) - SEQ_LEN - 1, (1,), generator=gen))
        rows.append(stream[start:start + SEQ_LEN + 1])
    return torch.stack(rows)


# ---------------------------------------------------------------------------------------------- model
class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model, bias=False), nn.GELU(),
                                 nn.Linear(4 * d_model, d_model, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape  # (B, T, C)
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.n_heads, c // self.n_heads).unbind(2)
        attn = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                              is_causal=True)  # (B, H, T, C/H)
        x = x + self.proj(attn.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.norm2(x))


class TinyLM(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, d_model)
        self.pos = nn.Embedding(SEQ_LEN, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(N_LAYERS))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, VOCAB, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))  # (B, T, VOCAB)

    def n_params(self) -> int:
        """Non-embedding parameters: everything but the token and position lookups."""
        return sum(p.numel() for name, p in self.named_parameters() if not name.startswith(("tok.", "pos.")))


def d_model_for(n_params: float) -> int:
    """The width whose model has about n_params: 12·L·d² (attention 4d², MLP 8d²) + V·d (head), multiple of 4
    (d_model 8..40 spans N 3.7e3..4.9e4 in nine shapes)."""
    a, b = 12 * N_LAYERS, VOCAB
    d = (-b + math.sqrt(b * b + 4 * a * n_params)) / (2 * a)
    return max(8, int(round(d / 4)) * 4)


# ------------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate(model: TinyLM, heldout_code: torch.Tensor, arithmetic: list[tuple[bytes, bytes]]) -> dict[str, float]:
    model.eval()
    starts = torch.linspace(0, len(heldout_code) - SEQ_LEN - 1, EVAL_ROWS).long()
    rows = torch.stack([heldout_code[s:s + SEQ_LEN + 1] for s in starts.tolist()])
    code = F.cross_entropy(model(rows[:, :-1]).flatten(0, 1), rows[:, 1:].flatten()).item()
    nll, count = 0.0, 0
    for prompt, answer in arithmetic:  # answer NLL given the prompt
        seq = torch.tensor(list(prompt + answer))[None]
        logits = model(seq[:, :-1])[0, len(prompt) - 1:]
        nll += F.cross_entropy(logits, seq[0, len(prompt):], reduction="sum").item()
        count += len(answer)
    model.train()
    return {"arithmetic": nll / count, "code": code}


# -------------------------------------------------------------------------------------------- running
def write_json_atomically(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, tmp)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--params", type=float, required=True, help="target non-embedding parameter count")
    parser.add_argument("--tokens", type=int, required=True, help="training tokens")
    parser.add_argument("--mix", type=json.loads, default={"arithmetic": 0.5, "code": 0.5},
                        help='domain weights as JSON, e.g. \'{"arithmetic": 0.5, "code": 0.5}\'')
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    args = parser.parse_args(argv)
    unknown = set(args.mix) - {"arithmetic", "code"}
    if unknown or not args.mix or any(w < 0 for w in args.mix.values()) or sum(args.mix.values()) <= 0:
        parser.error(f"--mix: expected weights >= 0 over arithmetic and code, got {args.mix}")

    run_dir: Path = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    result_path, ckpt_path = run_dir / "result.json", run_dir / "checkpoint.pt"
    if result_path.exists():
        print(f"{result_path} exists: this run already finished")
        return 0
    stop_requested = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stop_requested.append(signum))

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    d_model = d_model_for(args.params)
    model = TinyLM(d_model, n_heads=max(1, d_model // 16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    tokens_per_step = BATCH_ROWS * SEQ_LEN
    n_steps = max(1, args.tokens // tokens_per_step)
    warmup = max(1, n_steps // 20)
    step = 0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        print(f"resumed from {ckpt_path} at step {step}/{n_steps}")

    streams = {"arithmetic": torch.tensor(list(arithmetic_text(seed=1))),
               "code": torch.tensor(list(code_text("train")))}
    mix = {name: weight for name, weight in args.mix.items() if weight > 0}
    print(f"d_model={d_model} N={model.n_params()} steps={n_steps} mix={mix}", flush=True)
    start, first_step = time.perf_counter(), step
    while step < n_steps:
        if stop_requested:
            save_checkpoint(ckpt_path, model, optimizer, step)
            print(f"SIGTERM: checkpointed at step {step}", flush=True)
            return 143
        progress = max(0.0, (step - warmup) / max(1, n_steps - warmup))  # warmup, then cosine to 10%
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        rows = batch(streams, mix, args.seed, step)  # (B, T + 1)
        loss = F.cross_entropy(model(rows[:, :-1]).flatten(0, 1), rows[:, 1:].flatten())
        if not math.isfinite(loss.item()):
            write_json_atomically(result_path, {"status": "diverged", "error": f"loss {loss.item()} at step {step}",
                                                "losses": {"arithmetic": None, "code": None}})
            return 0
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if args.checkpoint_every and step % args.checkpoint_every == 0 and step < n_steps:
            save_checkpoint(ckpt_path, model, optimizer, step)
    seconds = time.perf_counter() - start
    losses = evaluate(model, torch.tensor(list(code_text("heldout", 40_000))), arithmetic_examples(seed=2, n=64))
    write_json_atomically(result_path, {
        "losses": losses, "n_params": model.n_params(), "n_tokens": n_steps * tokens_per_step,
        "tokens_per_s": (step - first_step) * tokens_per_step / seconds if seconds > 0 else 0.0,
        "d_model": d_model, "n_layers": N_LAYERS})
    print(f"done: {losses}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
