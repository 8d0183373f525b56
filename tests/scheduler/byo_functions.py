"""Functions for the python backend's study test (tests/scheduler/test_byo.py), importable in Ray workers."""

import math


def known_law(spec: dict, run_dir) -> dict:
    """The knowledge-code laws without transfer, noiseless, and an exact N one below the requested."""
    n, d = spec["n_params"], spec["n_tokens"]
    laws = {"knowledge": (2.0, 480.0, 380.0), "code": (1.2, 340.0, 420.0)}
    losses = {s: e + a * n ** -0.34 + b * d ** -0.28 for s, (e, a, b) in laws.items() if s in spec["skills"]}
    assert all(math.isfinite(v) for v in losses.values())
    return {"losses": losses, "n_params": n - 1}
