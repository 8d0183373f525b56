"""Compute-optimal allocation for one law or a weighted composition of skill laws.

For one law the optimum under C = 6 N D is closed form (Hoffmann et al. 2022, eq. 10; see
fitting/law.py). A validation set that mixes skills scores a model by the weighted loss

    L_w(N, D) = sum_s w_s * L_s(N, D),

whose minimiser along the isoFLOP line D = C/(6N) has no closed form. `composition_optimum` finds it per
ensemble member: a log-N grid (shared by all members), then a golden-section refinement inside the
bracket around each member's grid minimum, vectorised over the K members. L_w restricted to the isoFLOP
line is a sum of convex-in-log-N terms (A N^-alpha and B (C/6N)^-beta), so it is unimodal and the bracket
holds the global minimum.

`composition_whatif` asks how N* moves when the validation composition changes (the "misspecified
validation set" analysis of arXiv:2503.10061): each weighting's N* and its ratio to the first weighting,
member by member (ensembles built with shared resamples make this ratio's interval meaningful).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fitting.conventions import FLOPS_PER_PARAM_TOKEN
from fitting.law import LawEnsemble, interval

GRID_POINTS = 256
GOLDEN_ITERS = 60  # bracket shrinks by 0.618**60 ~ 3e-13 in log N
INV_PHI = (np.sqrt(5.0) - 1.0) / 2.0


def _member_loss(ens, log_n: np.ndarray, flops: float, mix) -> np.ndarray:
    """L_k(N_kg, C/(6 N_kg)) for per-member grids log_n of shape (K, G); returns (K, G). Any family's ensemble."""
    n = np.exp(log_n)
    return ens.loss_members(n, flops / (FLOPS_PER_PARAM_TOKEN * n), mix)


def _weighted_loss(ensembles, weights, log_n, flops, mix) -> np.ndarray:
    return sum(float(w) * _member_loss(ensembles[s], log_n, flops, mix) for s, w in weights.items() if w != 0)


def composition_optimum(ensembles: Mapping[str, LawEnsemble], weights: Mapping[str, float], flops: float,
                        mix=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-member (N*, D*), each (K,), minimising sum_s w_s L_s(N, C/(6N)) at compute `flops`."""
    unknown = set(weights) - set(ensembles)
    if unknown:
        raise ValueError(f"weights name skills without a law: {sorted(unknown)}")
    sizes = {ensembles[s].size for s in weights}
    if len(sizes) != 1:
        raise ValueError(f"ensembles have different sizes {sorted(sizes)}; bootstrap them together")
    flops = float(flops)
    # bracket: around the single-skill closed-form optima of every member, widened by 1e3 each way
    single = np.stack([np.log(ensembles[s].optimum(flops, mix)[0]) for s, w in weights.items() if w != 0])
    lo, hi = np.nanmin(single) - np.log(1e3), np.nanmax(single) + np.log(1e3)
    grid = np.linspace(lo, hi, GRID_POINTS)  # (G,)
    k = sizes.pop()
    values = _weighted_loss(ensembles, weights, np.broadcast_to(grid, (k, GRID_POINTS)), flops, mix)
    i = np.argmin(np.where(np.isfinite(values), values, np.inf), axis=1)
    a = grid[np.clip(i - 1, 0, GRID_POINTS - 1)]
    b = grid[np.clip(i + 1, 0, GRID_POINTS - 1)]
    f = lambda x: _weighted_loss(ensembles, weights, x[:, None], flops, mix)[:, 0]
    c, d = b - INV_PHI * (b - a), a + INV_PHI * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(GOLDEN_ITERS):  # vectorised golden-section search, one bracket per member
        left = fc < fd  # minimum in [a, d]: drop (d, b]; else drop [a, c)
        a, b = np.where(left, a, c), np.where(left, d, b)
        c, d = np.where(left, b - INV_PHI * (b - a), d), np.where(left, c, a + INV_PHI * (b - a))
        f_new = f(np.where(left, c, d))
        fc, fd = np.where(left, f_new, fd), np.where(left, fc, f_new)
    n_opt = np.exp(0.5 * (a + b))
    return n_opt, flops / (FLOPS_PER_PARAM_TOKEN * n_opt)


def composition_exponent(ensembles, weights, flops: float, mix=None, rel_step: float = 0.05) -> np.ndarray:
    """Local exponent a(C) = d log N* / d log C of the composition optimum, per member (K,)."""
    up = composition_optimum(ensembles, weights, flops * (1 + rel_step), mix)[0]
    down = composition_optimum(ensembles, weights, flops / (1 + rel_step), mix)[0]
    return (np.log(up) - np.log(down)) / (2 * np.log1p(rel_step))


def composition_whatif(ensembles: Mapping[str, LawEnsemble], flops: float,
                       weight_grid: Sequence[Mapping[str, float]], mix=None) -> list[dict]:
    """How N*(C) moves with the validation composition.

    One dict per weighting: its weights, median N* and D* with 95% intervals, and N* relative to the
    first weighting (median and 95% interval of the per-member ratio).
    """
    rows, reference = [], None
    for weights in weight_grid:
        n_opt, d_opt = composition_optimum(ensembles, weights, flops, mix)
        if reference is None:
            reference = n_opt
        ratio = n_opt / reference
        rows.append({
            "weights": dict(weights), "flops": float(flops),
            "n_params": float(np.median(n_opt)), "n_params_ci95": list(interval(n_opt)),
            "n_tokens": float(np.median(d_opt)), "n_tokens_ci95": list(interval(d_opt)),
            "n_params_ratio": float(np.median(ratio)), "n_params_ratio_ci95": list(interval(ratio)),
        })
    return rows
