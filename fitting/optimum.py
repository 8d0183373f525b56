"""Compute-optimal allocation for one law or a weighted composition of skill laws.

For one law the optimum under C = 6 N D is closed form (Hoffmann et al. 2022, eq. 10; see
fitting/law.py). A validation set that mixes skills scores a model by the weighted loss

    L_w(N, D) = sum_s w_s * L_s(N, D),

whose minimiser along the isoFLOP line D = C/(6N) has no closed form. `composition_optimum` finds it per
ensemble member by the bounded isoFLOP search every law family uses (fitting.families.isoflop_argmin: a log-N
grid around the member's single-skill optima, then a golden-section refinement, vectorised over the K
members). L_w restricted to the isoFLOP line is a sum of convex-in-log-N terms (A N^-alpha and B (C/6N)^-beta),
so it is unimodal and the bracket holds the global minimum.

`composition_whatif` asks how N* moves when the validation composition changes (the "misspecified
validation set" analysis of arXiv:2503.10061): each weighting's N* and its ratio to the first weighting,
member by member (ensembles built with shared resamples make this ratio's interval meaningful).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fitting.conventions import FLOPS_PER_PARAM_TOKEN
from fitting.families import GUESS_TOKENS_PER_PARAM, isoflop_argmin
from fitting.law import LawEnsemble, interval


def _member_loss(ens, log_n: np.ndarray, flops: float, mix, unique=None) -> np.ndarray:
    """L_k(N_kg, C/(6 N_kg)) for per-member grids log_n of shape (K, G); returns (K, G). Any family's ensemble."""
    n = np.exp(log_n)
    return ens.loss_members(n, flops / (FLOPS_PER_PARAM_TOKEN * n), mix, unique)


def _weighted_loss(ensembles, weights, log_n, flops, mix, unique=None) -> np.ndarray:
    return sum(float(w) * _member_loss(ensembles[s], log_n, flops, mix, unique) for s, w in weights.items() if w != 0)


def composition_optimum(ensembles: Mapping[str, LawEnsemble], weights: Mapping[str, float], flops: float,
                        mix=None, unique=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-member (N*, D*), each (K,), minimising sum_s w_s L_s(N, C/(6N)) at compute `flops` (with `unique`
    tokens of data available, where a family has a repetition term)."""
    unknown = set(weights) - set(ensembles)
    if unknown:
        raise ValueError(f"weights name skills without a law: {sorted(unknown)}")
    sizes = {ensembles[s].size for s in weights}
    if len(sizes) != 1:
        raise ValueError(f"ensembles have different sizes {sorted(sizes)}; bootstrap them together")
    flops = float(flops)
    # the search is centred, per member, on the geometric mean of the single-skill optima (fitting/families.py)
    with np.errstate(all="ignore"):
        single = np.stack([np.log(ensembles[s].optimum(flops, mix, unique)[0]) for s, w in weights.items() if w != 0])
        center = np.exp(np.nanmean(np.where(np.isfinite(single), single, np.nan), axis=0))
    guess = np.sqrt(flops / (FLOPS_PER_PARAM_TOKEN * GUESS_TOKENS_PER_PARAM))
    center = np.where(np.isfinite(center), center, guess)
    return isoflop_argmin(lambda log_n: _weighted_loss(ensembles, weights, log_n, flops, mix, unique), flops,
                          sizes.pop(), center)


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
