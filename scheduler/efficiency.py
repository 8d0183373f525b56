"""How much of its GPUs' peak a study turned into training: the efficiency in `skillscale status` and result.json.

    efficiency = sum over finished runs of (models x 6 N D)  /  sum over sittings of (wall s x GPUs x peak FLOP/s)

The numerator is the ledger's `flops` (a run of R seed replicas counts R x 6ND, fitting.conventions); the
denominator is what the GPUs the study held could have done at their dense bf16 peak (trainers/torch_backend.py,
GPU_BF16_PEAK) over each sitting's wall time, from the controller's start to its stop. So evaluation, compilation,
process start, refits and GPUs waiting for a proposal all count against it, as they do against a study's wall
time. A run still in flight when a sitting pauses counts when it finishes (in a later sitting).

Where the time went (`time` in the same dict): the torch trainer splits each run's wall time into phases (setup,
first_step, train, evaluate, checkpoint, other; the ledger's time/<phase> columns), and the workers' slots could
have been busy for sum over sittings of (wall s x workers); what no run filled is `idle` (the controller's
start and refits, waiting for proposals, workers starting). Shares of the slot-seconds, so they sum to 1.

The sittings are kept in <study_dir>/gpu_time.json (SittingLog), written atomically while a sitting runs, so a
sitting that is killed counts up to its last record.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from skillscale.atomic import atomic_write_json
from skillscale.errors import InputError

GPU_TIME_FILE = "gpu_time.json"


@dataclass(frozen=True)
class Sitting:
    """One controller session on a study: its wall time, the GPUs its workers held, and their card."""

    started_at: str  # UTC, ISO 8601
    wall_s: float  # from the controller's start to its last record or its stop
    gpus: int  # GPUs the workers held: ceil(max_concurrent x resources.num_gpus)
    device: str = ""  # the GPU's name as a worker's torch reports it ("" until known, or without a GPU)
    peak_flops: float = 0.0  # its dense bf16 peak, FLOP/s (0: unknown)
    workers: int = 0  # max_concurrent: the run slots it kept (0: not recorded, before this field existed)


def gpus_held(max_concurrent: int, num_gpus: float) -> int:
    """Whole GPUs a study's workers occupy: 6 workers x 0.16 hold one GPU, 2 x 1 hold two."""
    return math.ceil(max_concurrent * num_gpus - 1e-9)


class SittingLog:
    """<study_dir>/gpu_time.json: the study's sittings, oldest first. `start` opens a new one; `update` rewrites
    the current one (its wall time so far, the device once known)."""

    def __init__(self, study_dir: Path | None):
        self.path = Path(study_dir) / GPU_TIME_FILE if study_dir is not None else None
        self.sittings: list[Sitting] = read_sittings(study_dir) if study_dir is not None else []
        self._began: float | None = None

    def start(self, gpus: int, workers: int = 0) -> None:
        self._began = time.monotonic()
        self.sittings.append(Sitting(started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), wall_s=0.0,
                                     gpus=int(gpus), workers=int(workers)))
        self._write()

    def update(self, device: str | None = None, peak_flops: float | None = None) -> None:
        """The current sitting's wall time up to now (and its device, when given); written at once."""
        if self._began is None:
            return
        current = replace(self.sittings[-1], wall_s=time.monotonic() - self._began)
        if device is not None:
            current = replace(current, device=device, peak_flops=float(peak_flops or 0.0))
        self.sittings[-1] = current
        self._write()

    def _write(self) -> None:
        if self.path is not None:
            atomic_write_json(self.path, {"sittings": [asdict(s) for s in self.sittings]}, indent=1)


def read_sittings(study_dir: Path) -> list[Sitting]:
    """The sittings recorded in <study_dir>/gpu_time.json ([] when there is none); InputError if unreadable."""
    path = Path(study_dir) / GPU_TIME_FILE
    if not path.exists():
        return []
    try:
        return [Sitting(**s) for s in json.loads(path.read_text())["sittings"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{path}: unreadable GPU-time record (expected {{\"sittings\": [...]}}); delete it to "
                         "start the efficiency count again") from None


def efficiency(model_flops: float, sittings: list[Sitting], rows: list[dict] | None = None) -> dict | None:
    """The study's efficiency (module docstring) as a dict for result.json and status; None when no sitting held
    a GPU of known peak. Sittings on a card of unknown peak are left out of both sides' time (their GPU seconds
    are reported as `gpu_s_unknown_peak`); `peak_flops` is the peak used (their GPU-second weighted mean if the
    cards differed). rows: the ledger's rows, for where the time went (`time`, None without phases)."""
    known = [s for s in sittings if s.gpus > 0 and s.peak_flops > 0]
    gpu_s = sum(s.wall_s * s.gpus for s in known)
    if not known or gpu_s <= 0:
        return None
    possible = sum(s.wall_s * s.gpus * s.peak_flops for s in known)
    devices = sorted({s.device for s in known})
    return {
        "efficiency": float(model_flops / possible),
        "model_flops": float(model_flops),
        "gpu_s": float(gpu_s),
        "peak_flops": float(possible / gpu_s),
        "devices": devices,
        "sittings": len(sittings),
        "gpu_s_unknown_peak": float(sum(s.wall_s * s.gpus for s in sittings if s not in known)),
        "definition": "sum(models x 6ND of finished runs) / sum(sitting wall s x GPUs x dense bf16 peak)",
        "time": time_shares(rows or [], sittings),
    }


def time_shares(rows: list[dict], sittings: list[Sitting]) -> dict | None:
    """Where the workers' slot-seconds went (module docstring): each phase's share of sum(sitting wall x workers),
    and `idle`, the rest; None when no run recorded phases or no sitting recorded its workers. Prior runs (trained
    elsewhere) are left out."""
    slot_s = sum(s.wall_s * s.workers for s in sittings)
    phases: dict[str, float] = {}
    for row in rows:
        if row.get("source") == "prior":
            continue
        for key, value in row.items():
            if key.startswith("time/") and value is not None and math.isfinite(value):
                phases[key[5:]] = phases.get(key[5:], 0.0) + float(value)
    if not phases or slot_s <= 0:
        return None
    run_s = sum(phases.values())
    shares = {k: v / max(slot_s, run_s) for k, v in phases.items()}
    idle = max(1.0 - run_s / slot_s, 0.0)
    return {"slot_s": float(slot_s), "run_s": float(run_s), "shares": {**shares, "idle": idle}}


def efficiency_text(eff: dict | None) -> str:
    """One line for `skillscale status` and the run log."""
    if eff is None:
        return "efficiency: n/a (no sitting on a GPU of known peak)"
    line = (f"efficiency: {100 * eff['efficiency']:.1f}% of the dense bf16 peak ({eff['peak_flops'] / 1e12:.0f} "
            f"TFLOP/s, {', '.join(eff['devices'])}): {eff['model_flops']:.3g} model FLOPs in {eff['gpu_s']:.0f} "
            f"GPU-s over {eff['sittings']} sitting(s)")
    spent = eff.get("time")
    if spent:
        line += "; workers' time: " + ", ".join(f"{k.replace('_', ' ')} {100 * v:.0f}%"
                                                 for k, v in sorted(spent["shares"].items(), key=lambda kv: -kv[1]))
    return line
