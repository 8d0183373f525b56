"""Evaluation: per-skill answer NLL and per-domain held-out LM loss (nats per token); the loss curve.

Skill loss (as in arXiv:2503.10061): the mean negative log-likelihood of the *answer* tokens given the
prompt, over a held-out set per skill, token-weighted (sum of answer-token NLLs / number of answer
tokens). Prompt and answer are encoded separately and concatenated; a pair longer than seq_len keeps
its end (the answer) and loses the start of the prompt.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from skillscale.atomic import atomic_open
from trainers.data import Domain, heldout_windows
from trainers.model import IGNORE_INDEX, Transformer


def encode_examples(examples: list[tuple[str, str]], tokenizer, seq_len: int, pad_id: int):
    """(inputs, targets) int64 arrays (n, T); targets are IGNORE_INDEX except on answer tokens."""
    n = len(examples)
    inputs = np.full((n, seq_len), pad_id, dtype=np.int64)
    targets = np.full((n, seq_len), IGNORE_INDEX, dtype=np.int64)
    for i, (prompt, answer) in enumerate(examples):
        p, a = tokenizer.encode(prompt), tokenizer.encode(answer)
        ids = (p + a)[-(seq_len + 1) :]
        n_answer = min(len(a), len(ids) - 1)
        x, y = ids[:-1], ids[1:]
        inputs[i, : len(x)] = x
        targets[i, len(y) - n_answer : len(y)] = y[len(y) - n_answer :]
    return inputs, targets


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def mean_nll(
    model: Transformer, inputs: np.ndarray, targets: np.ndarray, device: torch.device, batch_rows: int = 64
) -> float:
    """Token-weighted mean NLL over the non-ignored targets (nats/token)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(inputs), batch_rows):
        x = torch.as_tensor(inputs[i : i + batch_rows], dtype=torch.long, device=device)
        y = torch.as_tensor(targets[i : i + batch_rows], dtype=torch.long, device=device)
        with _autocast(device):
            per_token = model(x, y, reduction="none")  # (b, T), 0 where ignored
        total += float(per_token.double().sum())
        count += int((y != IGNORE_INDEX).sum())
    model.train(was_training)
    return total / max(count, 1)


class Evaluator:
    """Fixed evaluation tensors, built once per (data settings, tokenizer, seq_len)."""

    def __init__(
        self,
        skill_sets: dict[str, list[tuple[str, str]]],
        domains: dict[str, Domain],
        tokenizer,
        seq_len: int,
        heldout_rows: int = 64,
    ):
        pad = getattr(tokenizer, "PAD", tokenizer.eos_id)
        self.skills = {s: encode_examples(ex, tokenizer, seq_len, pad) for s, ex in skill_sets.items()}
        self.domains = {}
        for name, dom in domains.items():
            rows = heldout_windows(dom, seq_len, heldout_rows).astype(np.int64)
            self.domains[name] = (rows[:, :-1], rows[:, 1:])

    def run(self, model: Transformer, device: torch.device) -> tuple[dict[str, float], dict[str, float]]:
        """(skill losses, domain losses)."""
        skills = {s: mean_nll(model, x, y, device) for s, (x, y) in sorted(self.skills.items())}
        domains = {d: mean_nll(model, x, y, device) for d, (x, y) in sorted(self.domains.items())}
        return skills, domains


def write_curve(rows: list[dict], path: Path) -> None:
    """The loss curve as parquet (atomic: temporary file, then rename). Columns are the union of keys."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = sorted({k for r in rows for k in r})
    table = pa.table({k: [r.get(k) for r in rows] for k in keys})
    with atomic_open(path) as f:
        pq.write_table(table, f)
