"""A stand-in trainer for the command backend that evaluates a known scaling law instead of training.

    python examples/byo-trainer/known_law.py --run-dir runs/a --params 3e7 --tokens 6e8 --run-id a --noise 0.005

Per skill it reports L = E + A·N^-α + B·D^-β times log-normal noise exp(σ·z), z drawn from the run id (so a
retried run reports the same losses), and writes `{run_dir}/result.json` as the contract asks. With it a
study config can be dry-run through the command backend in seconds, and the answer checked: the law's
compute-optimal N under C = 6ND is N* = G·(C/6)^(β/(α+β)), G = (αA/(βB))^(1/(α+β)) (Hoffmann et al. 2022,
Approach 3). Standalone: no skillscale import. The laws are those of the simulated backend's
`knowledge-code` preset (trainers/simulated.py) without the cross-domain transfer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
from pathlib import Path

LAWS = {  # skill -> (E, A, B, alpha, beta)
    "knowledge": (2.0, 480.0, 380.0, 0.34, 0.28),
    "code": (1.2, 340.0, 420.0, 0.34, 0.28),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--params", type=float, required=True)
    parser.add_argument("--tokens", type=float, required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--noise", type=float, default=0.005, help="std of log L")
    args = parser.parse_args(argv)
    rng = random.Random(int.from_bytes(hashlib.sha256(args.run_id.encode()).digest()[:8], "little"))
    losses = {}
    for skill, (e, a, b, alpha, beta) in LAWS.items():
        loss = e + a * args.params ** -alpha + b * args.tokens ** -beta
        losses[skill] = loss * math.exp(args.noise * rng.gauss(0.0, 1.0))
    args.run_dir.mkdir(parents=True, exist_ok=True)
    tmp = args.run_dir / ".result.json.tmp"
    tmp.write_text(json.dumps({"losses": losses}))
    os.replace(tmp, args.run_dir / "result.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
