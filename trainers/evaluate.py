"""Evaluation: per-skill answer NLL and per-domain held-out LM loss (nats per token); the loss curve.

Skill loss (as in arXiv:2503.10061): the mean negative log-likelihood of the *answer* tokens given the
prompt, over a held-out set per skill, token-weighted (sum of answer-token NLLs / number of answer
tokens; a row with a weight w counts w times: the knowledge eval merges repeated questions). Prompt and
answer are encoded separately and concatenated. A pair longer than seq_len + 1 tokens is cut to a window
that keeps up to seq_len / 2 tokens of the prompt before the answer (the prompt's end) and as much of the
answer as fits: a short answer after a long prompt keeps the end, a long function body keeps its start
and its signature. A row whose prompt is empty is held-out text (a user's text file): it is cut into
consecutive windows of seq_len + 1 tokens and every token after the first is scored (mean NLL per token).

Rows are only as long as the longest example needs (rounded up to a multiple of 16, at most seq_len):
short questions are not padded to seq_len, so an eval of ~10^5 questions costs ~10^7 tokens of forward.
Evaluation runs the eager model, not the compiled training forward, so its shapes cost no recompiles.

Each skill's loss comes with its own sampling error (Evaluator.run_with_errors): the delta-method
standard error of the ratio estimator, sqrt(sum_i w_i (s_i - L t_i)^2) / sum_i w_i t_i over examples i
(s_i: the example's summed answer NLL, t_i its answer tokens, L the loss), i.e. std(per-example NLL) /
sqrt(n) for equal lengths: the error from scoring a finite set of questions instead of the population.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from skillscale.atomic import atomic_open
from trainers.data import Domain, heldout_windows
from trainers.model import IGNORE_INDEX, Transformer

ROW_MULTIPLE = 16  # row lengths are rounded up to this (fewer distinct shapes)
EVAL_BATCH_TOKENS = 16_384  # tokens per evaluation forward (rows x row length) for mean_nll's callers
EVAL_LOGIT_BUDGET = 2**25  # per skill-eval forward: tokens x vocabulary (byte vocab: 128k tokens; 32k vocab: 1k)


def eval_batch_tokens(vocab_size: int) -> int:
    """Tokens per skill-eval forward: many short rows at once (the eager model is launch-bound on a GPU),
    bounded so that the logits stay ~128 MB in fp32."""
    return int(min(131_072, max(8_192, EVAL_LOGIT_BUDGET // max(vocab_size, 1))))


@dataclass
class EvalSet:
    """Encoded evaluation rows of one skill."""

    inputs: np.ndarray  # (rows, T) int64
    targets: np.ndarray  # (rows, T) int64, IGNORE_INDEX except on scored tokens
    weights: np.ndarray  # (rows,) float64: how many times a row counts
    example: np.ndarray  # (rows,) int64: the example a row belongs to (a text spans several rows)


def _window(p: list[int], a: list[int], seq_len: int) -> tuple[list[int], int]:
    """(ids of at most seq_len + 1 tokens, number of scored answer tokens at their end or after the prompt)."""
    ids = p + a
    if len(ids) <= seq_len + 1:
        return ids, len(a)
    start = max(0, min(len(ids) - (seq_len + 1), len(p) - seq_len // 2))
    return ids[start : start + seq_len + 1], len(ids[start : start + seq_len + 1]) - max(0, len(p) - start)


def encode_examples(examples: list[tuple], tokenizer, seq_len: int, pad_id: int) -> EvalSet:
    """Rows of (prompt, answer) or (prompt, answer, weight) examples; an empty prompt makes a text example."""
    rows: list[tuple[list[int], int, float, int]] = []  # (ids, scored tokens at the end / -1: all, weight, example)
    for i, ex in enumerate(examples):
        prompt, answer = ex[0], ex[1]
        weight = float(ex[2]) if len(ex) > 2 else 1.0
        if prompt == "":
            ids = tokenizer.encode(answer)
            for start in range(0, max(len(ids) - 1, 0), seq_len):
                rows.append((ids[start : start + seq_len + 1], -1, weight, i))
            continue
        ids, n_answer = _window(tokenizer.encode(prompt), tokenizer.encode(answer), seq_len)
        rows.append((ids, min(n_answer, len(ids) - 1), weight, i))
    longest = max((len(r[0]) - 1 for r in rows), default=1)
    T = min(seq_len, -(-max(longest, 1) // ROW_MULTIPLE) * ROW_MULTIPLE)
    inputs = np.full((len(rows), T), pad_id, dtype=np.int64)
    targets = np.full((len(rows), T), IGNORE_INDEX, dtype=np.int64)
    for r, (ids, n_scored, _, _) in enumerate(rows):
        x, y = ids[:-1], ids[1:]
        inputs[r, : len(x)] = x
        keep = len(y) if n_scored < 0 else n_scored
        targets[r, len(y) - keep : len(y)] = y[len(y) - keep :]
    weights = np.asarray([r[2] for r in rows], dtype=np.float64)
    example = np.asarray([r[3] for r in rows], dtype=np.int64)
    return EvalSet(inputs, targets, weights, example)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def row_nll(
    model: Transformer, inputs: np.ndarray, targets: np.ndarray, device: torch.device,
    batch_tokens: int = EVAL_BATCH_TOKENS,
) -> tuple[np.ndarray, np.ndarray]:
    """(summed NLL, number of scored tokens) per row, float64 / int64 arrays of shape (rows,); for seed replicas
    (a ReplicatedTransformer) the sums are (R, rows), one row of sums per replica. One host sync at the end."""
    was_training = model.training
    model.eval()
    batch_rows = max(1, batch_tokens // max(inputs.shape[1], 1))
    sums, counts = [], []
    for i in range(0, len(inputs), batch_rows):
        x = torch.as_tensor(inputs[i : i + batch_rows], dtype=torch.long, device=device)
        y = torch.as_tensor(targets[i : i + batch_rows], dtype=torch.long, device=device)
        with _autocast(device):
            per_token = model(x, y, reduction="none")  # (b, T) or (R, b, T), 0 where ignored
        sums.append(per_token.double().sum(dim=-1))
        counts.append((y != IGNORE_INDEX).sum(dim=1))
    model.train(was_training)
    if not sums:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return torch.cat(sums, dim=-1).cpu().numpy(), torch.cat(counts).cpu().numpy().astype(np.int64)


def mean_nll(
    model: Transformer, inputs: np.ndarray, targets: np.ndarray, device: torch.device, batch_rows: int = 64
) -> float:
    """Token-weighted mean NLL over the non-ignored targets (nats/token)."""
    sums, counts = row_nll(model, inputs, targets, device, batch_tokens=batch_rows * inputs.shape[1])
    return float(sums.sum() / max(int(counts.sum()), 1))


def weighted_loss(sums: np.ndarray, counts: np.ndarray, weights: np.ndarray, example: np.ndarray):
    """(loss, its standard error) from per-row sums and counts: examples' rows added up first, then the
    weighted ratio estimator and its delta-method standard error (module docstring)."""
    n_examples = int(example.max()) + 1 if len(example) else 0
    s = np.bincount(example, weights=sums, minlength=n_examples)
    t = np.bincount(example, weights=counts.astype(np.float64), minlength=n_examples)
    w = np.zeros(n_examples)
    w[example] = weights
    total_tokens = float((w * t).sum())
    if total_tokens <= 0:
        return float("nan"), float("nan")
    loss = float((w * s).sum() / total_tokens)
    se = float(np.sqrt((w * (s - loss * t) ** 2).sum()) / total_tokens)
    return loss, se


class Evaluator:
    """Fixed evaluation tensors, built once per (data settings, tokenizer, seq_len)."""

    def __init__(
        self,
        skill_sets: dict[str, list[tuple]],
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

    def run_with_errors(
        self, model: Transformer, device: torch.device
    ) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        """(skill losses, domain losses, each skill loss's standard error from its finite eval set)."""
        skills, errors = {}, {}
        for s, ev in sorted(self.skills.items()):
            sums, counts = row_nll(model, ev.inputs, ev.targets, device, eval_batch_tokens(model.cfg.vocab_size))
            skills[s], errors[s] = weighted_loss(sums, counts, ev.weights, ev.example)
        domains = {d: mean_nll(model, x, y, device) for d, (x, y) in sorted(self.domains.items())}
        return skills, domains, errors

    def run_with_errors_each(self, model, device: torch.device) -> list[tuple[dict, dict, dict]]:
        """run_with_errors for each seed replica of a ReplicatedTransformer (trainers/replicas.py), all replicas in
        every forward: R models cost about one model's kernel launches, at the same memory per forward (a batch
        holds 1/R of the rows). Per replica, what run_with_errors gives on it alone, up to the rounding of batched
        matmuls."""
        R = model.replicas
        skills, domains, errors = [{} for _ in range(R)], [{} for _ in range(R)], [{} for _ in range(R)]
        for s, ev in sorted(self.skills.items()):
            sums, counts = row_nll(model, ev.inputs, ev.targets, device,
                                   max(1, eval_batch_tokens(model.cfg.vocab_size) // R))
            for r in range(R):
                skills[r][s], errors[r][s] = weighted_loss(sums[r], counts, ev.weights, ev.example)
        for d, (x, y) in sorted(self.domains.items()):
            sums, counts = row_nll(model, x, y, device, batch_tokens=max(1, 64 // R) * x.shape[1])  # as mean_nll
            for r in range(R):
                domains[r][d] = float(sums[r].sum() / max(int(counts.sum()), 1))
        return [(skills[r], domains[r], errors[r]) for r in range(R)]

    def run(self, model: Transformer, device: torch.device) -> tuple[dict[str, float], dict[str, float]]:
        """(skill losses, domain losses)."""
        skills, domains, _ = self.run_with_errors(model, device)
        return skills, domains


def write_curve(rows: list[dict], path: Path) -> None:
    """The loss curve as parquet (atomic: temporary file, then rename). Columns are the union of keys."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = sorted({k for r in rows for k in r})
    table = pa.table({k: [r.get(k) for r in rows] for k in keys})
    with atomic_open(path) as f:
        pq.write_table(table, f)
