"""IsoFLOP analysis (Chinchilla Approach 2; Hoffmann et al. 2022, §3.2).

1. Group runs by compute budget. Budgets in a real study are only approximately equal (sizes are rounded
   to a shape rule), so budgets are clustered in log C: sorted runs start a new group when C exceeds the
   group's first budget by more than `rel_tol` (default 5%). A group's budget is the geometric mean.
2. Per budget with >= 3 distinct sizes, fit a parabola L = c0 + c1 x + c2 x^2 in x = log N (weighted
   least squares) and take its vertex x* = -c1 / (2 c2) when c2 > 0 (a budget whose parabola opens
   downward has no interior minimum and is skipped).
3. Fit the power laws log N* = log k + a log C and D* = C / (6 N*) = k' C^b with b = 1 - a.

`bootstrap_isoflop` resamples runs within each budget (stratified pairs bootstrap, as counts) and redoes
steps 2-3 for all resamples at once: the (K, 3, 3) normal equations are solved in one batched call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fitting.conventions import FLOPS_PER_PARAM_TOKEN
from skillscale.errors import InputError


def group_budgets(flops, rel_tol: float = 0.05) -> np.ndarray:
    """Budget label per run (0..G-1, increasing with C), clustering budgets within `rel_tol` in log C."""
    log_c = np.log(np.asarray(flops, float))
    order = np.argsort(log_c, kind="stable")
    labels = np.empty(log_c.size, dtype=int)
    group, start = -1, -np.inf
    for i in order:
        if log_c[i] - start > np.log1p(rel_tol):
            group, start = group + 1, log_c[i]
        labels[i] = group
    return labels


@dataclass(frozen=True)
class IsoflopFit:
    """Per-budget minima and the power laws N* = k C^a, D* = k_d C^b, for K >= 1 members (arrays (K,))."""

    budgets: np.ndarray  # (G,) FLOPs per budget group
    n_opt_per_budget: np.ndarray  # (K, G) parabola minima (NaN where a budget had no minimum)
    k: np.ndarray  # (K,)
    a: np.ndarray  # (K,)

    @property
    def size(self) -> int:
        return int(self.a.shape[0])

    @property
    def b(self) -> np.ndarray:
        return 1.0 - self.a

    @property
    def k_d(self) -> np.ndarray:
        return 1.0 / (FLOPS_PER_PARAM_TOKEN * self.k)

    def optimum(self, flops) -> tuple[np.ndarray, np.ndarray]:
        """(N*, D*) per member at a scalar C, each (K,)."""
        n_opt = self.k * float(flops) ** self.a
        return n_opt, float(flops) / (FLOPS_PER_PARAM_TOKEN * n_opt)


def _fit(log_n, loss, labels, n_groups, counts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parabola minima (K, G) and power law (k, a), each (K,), for resample counts (K, n)."""
    n_boot = counts.shape[0]
    x_opt = np.full((n_boot, n_groups), np.nan)
    x = np.stack([np.ones_like(log_n), log_n, log_n ** 2], axis=1)  # (n, 3)
    for g in range(n_groups):
        rows = labels == g
        xg, yg, wg = x[rows], loss[rows], counts[:, rows]  # (m, 3), (m,), (K, m)
        size_id = np.unique(log_n[rows], return_inverse=True)[1]  # (m,)
        one_hot = np.eye(size_id.max() + 1)[size_id]  # (m, n_sizes)
        distinct = ((wg @ one_hot) > 0).sum(axis=1)  # distinct sizes drawn per resample, (K,)
        # normal equations of weighted least squares, (K, 3, 3) and (K, 3)
        gram = np.einsum("km,mp,mq->kpq", wg, xg, xg)
        rhs = np.einsum("km,mp,m->kp", wg, xg, yg)
        ok = distinct >= 3
        coef = np.full((n_boot, 3), np.nan)
        if ok.any():
            coef[ok] = np.linalg.solve(gram[ok], rhs[ok][..., None])[..., 0]
        has_min = ok & (coef[:, 2] > 0)
        x_opt[has_min, g] = -coef[has_min, 1] / (2 * coef[has_min, 2])
    return x_opt


def _power_law(log_c: np.ndarray, x_opt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares line log N* = log k + a log C per row of x_opt (K, G), ignoring NaNs."""
    valid = np.isfinite(x_opt)
    w = valid.astype(float)
    xo = np.where(valid, x_opt, 0.0)
    sw = w.sum(1)
    mc = (w * log_c).sum(1) / np.maximum(sw, 1)
    mx = (w * xo).sum(1) / np.maximum(sw, 1)
    dc = log_c[None, :] - mc[:, None]
    slope = (w * dc * (xo - mx[:, None])).sum(1) / np.maximum((w * dc * dc).sum(1), 1e-300)
    slope = np.where(sw >= 2, slope, np.nan)
    return np.exp(mx - slope * mc), slope


def _prepare(n_params, loss, flops, rel_tol):
    n = np.asarray(n_params, float).ravel()
    loss = np.asarray(loss, float).ravel()
    flops = np.asarray(flops, float).ravel()
    labels = group_budgets(flops, rel_tol)
    n_groups = labels.max() + 1
    budgets = np.array([np.exp(np.log(flops[labels == g]).mean()) for g in range(n_groups)])
    usable = [g for g in range(n_groups) if np.unique(n[labels == g]).size >= 3]
    if len(usable) < 2:
        raise InputError(f"isoFLOP fit needs >= 2 budgets with >= 3 sizes each; found {len(usable)} "
                         f"(budgets grouped within {rel_tol:.0%} in C)")
    return np.log(n), loss, labels, n_groups, budgets


def fit_isoflop(n_params, n_tokens, loss, *, flops=None, rel_tol: float = 0.05) -> IsoflopFit:
    """Point estimate (K = 1). `flops` defaults to 6 N D."""
    flops = FLOPS_PER_PARAM_TOKEN * np.asarray(n_params, float) * np.asarray(n_tokens, float) \
        if flops is None else flops
    log_n, loss, labels, n_groups, budgets = _prepare(n_params, loss, flops, rel_tol)
    x_opt = _fit(log_n, loss, labels, n_groups, np.ones((1, log_n.size)))
    k, a = _power_law(np.log(budgets), x_opt)
    return IsoflopFit(budgets, np.exp(x_opt), k, a)


def bootstrap_isoflop(n_params, n_tokens, loss, *, flops=None, n_boot: int = 500, seed: int = 0,
                      rel_tol: float = 0.05, resamples=None) -> IsoflopFit:
    """K = n_boot refits on runs resampled within each budget (or on given (K, n) index `resamples`)."""
    flops = FLOPS_PER_PARAM_TOKEN * np.asarray(n_params, float) * np.asarray(n_tokens, float) \
        if flops is None else flops
    log_n, loss, labels, n_groups, budgets = _prepare(n_params, loss, flops, rel_tol)
    n = log_n.size
    counts = np.zeros((n_boot if resamples is None else len(resamples), n))
    if resamples is None:
        rng = np.random.default_rng(seed)
        for g in range(n_groups):
            members = np.flatnonzero(labels == g)
            draws = rng.integers(0, members.size, size=(n_boot, members.size))
            np.add.at(counts, (np.arange(n_boot)[:, None], members[draws]), 1.0)
    else:
        idx = np.asarray(resamples, int)
        np.add.at(counts, (np.arange(idx.shape[0])[:, None], idx), 1.0)
    x_opt = _fit(log_n, loss, labels, n_groups, counts)
    k, a = _power_law(np.log(budgets), x_opt)
    return IsoflopFit(budgets, np.exp(x_opt), k, a)
