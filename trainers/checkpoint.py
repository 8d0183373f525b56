"""Checkpoints: model, optimizer, step (schedule and data cursor), RNG states and the loss curve so far.

Written atomically (temporary file in the same directory, then os.replace) as
<run_dir>/checkpoints/step_00000123.pt; the newest KEEP are kept. Loaded with
torch.load(weights_only=True), so RNG states are stored as tensors and everything else as plain types.

`fork` copies a checkpoint into another run's directory (a run family's branch taking over its trunk's state at
the branch point, trainers/torch_backend.py).

Each checkpoint carries a fingerprint of what it trains (run_id, shape, resolved hyperparameters, data
settings, tokenizer). Policy on load, newest first:
- a checkpoint that cannot be read (truncated, corrupt, not a checkpoint) is skipped with a warning and
  the next older one is tried; if none is readable, CheckpointError names the newest file;
- a readable checkpoint whose fingerprint differs from this run's raises CheckpointError (the directory
  belongs to another run: pick a new directory or delete it) — never silently trained on.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from skillscale.atomic import atomic_open
from skillscale.errors import InputError

FORMAT = 1
KEEP = 2
_NAME = re.compile(r"^step_(\d{8})\.pt$")


class CheckpointError(InputError):
    """A checkpoint that cannot be used for this run; the message names the file and what to do."""


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files, newest (highest step) first."""
    d = checkpoint_dir(run_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def newest_step(run_dir: Path) -> int | None:
    """The step of the newest checkpoint file in run_dir, read from its name (None: there is none)."""
    paths = list_checkpoints(run_dir)
    return int(_NAME.match(paths[0].name).group(1)) if paths else None


def fork(src_dir: Path, src_fingerprint: dict, dst_dir: Path, dst_fingerprint: dict) -> int:
    """Copy the newest usable checkpoint of src_dir into dst_dir as a checkpoint of another run, at the same step.

    For a run that shares every step so far with the source run (a family's branch and its trunk, up to the
    branch's cooldown): model, optimizer, RNG and loss curve are taken over; the fingerprint becomes the new
    run's, and the timing starts afresh (the time was spent by the source run). Returns the step."""
    ckpt = load_latest(src_dir, src_fingerprint)
    if ckpt is None:
        raise CheckpointError(f"checkpoint: {checkpoint_dir(src_dir)} has no checkpoint to fork from")
    payload = {k: v for k, v in ckpt.items() if k not in ("format", "step")}
    payload["fingerprint"] = dst_fingerprint
    payload["timing"] = {"wall_s": 0.0, "timed_s": 0.0, "timed_tokens": 0}
    save(dst_dir, ckpt["step"], payload)
    return int(ckpt["step"])


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run_dir: Path, step: int, payload: dict) -> Path:
    """Write {format, step, **payload} atomically; prune to the newest KEEP."""
    d = checkpoint_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"step_{step:08d}.pt"
    with atomic_open(path) as f:
        torch.save({"format": FORMAT, "step": int(step), **payload}, f)
    for old in list_checkpoints(run_dir)[KEEP:]:
        old.unlink(missing_ok=True)
    return path


def load_latest(run_dir: Path, fingerprint: dict, map_location="cpu") -> dict | None:
    """The newest usable checkpoint's contents, or None if there is none (policy in the module docstring)."""
    paths = list_checkpoints(run_dir)
    for path in paths:
        try:
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
            if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "model" not in ckpt:
                raise ValueError("not a skillscale checkpoint")
        except Exception as exc:  # torch.load raises many types for truncated/corrupt files
            warnings.warn(
                f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); trying an older one",
                stacklevel=2,
            )
            continue
        if ckpt.get("fingerprint") != fingerprint:
            diff = sorted(
                k
                for k in set(fingerprint) | set(ckpt.get("fingerprint") or {})
                if (ckpt.get("fingerprint") or {}).get(k) != fingerprint.get(k)
            )
            raise CheckpointError(
                f"checkpoint {path} belongs to a different run (differs in: {', '.join(diff)}); "
                "use a new run directory or delete this one"
            )
        return ckpt
    if paths:
        raise CheckpointError(
            f"checkpoint {paths[0]}: no readable checkpoint in {checkpoint_dir(run_dir)} "
            "(corrupt or truncated); delete the directory to start the run afresh"
        )
    return None
