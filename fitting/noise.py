"""Measurement noise of one skill's loss, estimated from the data: a first-class quantity of the fit.

A run's observed log-loss is y = log L(N, D) + eps, eps ~ N(0, sigma(N, D)^2): the seed-to-seed spread of
a training run plus the evaluation's sampling noise. Both shrink or grow with model size in practice (the
measured seed spread differs between sizes and skills: experiments/README.md, "Seed noise and seed replicas"), so sigma
is allowed to vary log-linearly:

    log sigma(N, D) = log_sigma + slope_n * (log N - log_n_ref) + slope_d * (log D - log_d_ref)

Two sources inform it (`estimate_noise`):
- replicates, runs at the same (N, D[, mix]) with another seed: the deviations from their group mean,
  scaled by sqrt(m / (m - 1)), are pure noise -- unaffected by any misfit of the law;
- the fit's residuals (of singletons, and of replicate-group means scaled by sqrt(m)), divided by
  sqrt(1 - h_ii) (leverage) and by sqrt((n - p) / n) overall: noise plus whatever the law family
  cannot represent.

The squared noise samples are fitted by a gamma GLM with log link (E[r^2] = sigma^2, McCullagh & Nelder
1989, ch. 8), each squared sample winsorised at 16x the robust variance so one outlier cannot dominate. A
slope is kept only where the data support it (|slope| > 2 standard errors, at least `min_points_for_slope`
samples); otherwise it is 0. The D slope is only tried where the design spreads log(D/N) (std > 0.5):
inside a narrow tokens-per-parameter band log D ~ log N. `lack_of_fit` is the ratio of the residual-based
to the replicate-based noise (about 1 when the law family fits, well above 1 when it does not); None
without enough replicates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

MAD_TO_STD = 1.4826  # std of a normal / its median absolute deviation
WINSOR = 16.0  # squared samples above 16x the robust variance (4 sigma) are clipped there
MIN_REPLICATE_DOF = 4  # replicate degrees of freedom needed before lack_of_fit is reported


@dataclass(frozen=True)
class NoiseModel:
    """sigma(N, D) of one skill's log-loss (see the module docstring)."""

    log_sigma: float  # log sigma at the reference point
    slope_n: float = 0.0  # d log sigma / d log N
    slope_d: float = 0.0  # d log sigma / d log D
    log_n_ref: float = 0.0
    log_d_ref: float = 0.0
    n_samples: int = 0  # squared-noise samples used (residuals + replicate deviations)
    replicate_dof: int = 0  # degrees of freedom from replicate groups
    replicate_sigma: float | None = None  # pooled sigma of the replicates alone
    lack_of_fit: float | None = None  # residual sigma / replicate sigma (None: too few replicates)
    floor: float = 1e-4

    @classmethod
    def constant(cls, sigma: float, floor: float = 1e-4) -> NoiseModel:
        return cls(log_sigma=float(np.log(max(sigma, floor))), floor=floor)

    @property
    def sigma_ref(self) -> float:
        return float(np.exp(self.log_sigma))

    def sigma(self, n_params, n_tokens) -> np.ndarray:
        """sigma at each (N, D), broadcast; never below `floor`."""
        log_n = np.log(np.asarray(n_params, float))
        log_d = np.log(np.asarray(n_tokens, float))
        log_s = self.log_sigma + self.slope_n * (log_n - self.log_n_ref) + self.slope_d * (log_d - self.log_d_ref)
        return np.maximum(np.exp(log_s), self.floor)

    def to_dict(self) -> dict:
        return asdict(self)


def replicate_groups(n_params, n_tokens, mix=None, decimals: int = 6) -> np.ndarray:
    """Group label per run: runs with the same (N, D[, mix]) share one (0..G-1, first-seen order)."""
    key = [np.round(np.log(np.asarray(n_params, float)), decimals),
           np.round(np.log(np.asarray(n_tokens, float)), decimals)]
    if mix is not None:
        key += list(np.round(np.asarray(mix, float), decimals).T)
    rows = np.stack(key, axis=1)
    _, first, labels = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    rank = np.empty_like(first)
    rank[np.argsort(first)] = np.arange(first.size)  # relabel in first-seen order
    return rank[labels.ravel()]


def _gamma_glm(x: np.ndarray, s2: np.ndarray, dof: np.ndarray, iters: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Fit log E[s2] = x @ b for squared samples s2 carrying `dof` degrees of freedom each (Fisher scoring).

    Returns (b, standard errors of b). s2 / sigma^2 ~ chi2_dof / dof, so a sample's Fisher weight is dof/2."""
    b = np.zeros(x.shape[1])
    b[0] = np.log(max(np.average(s2, weights=dof), 1e-300))
    w = dof / 2.0
    for _ in range(iters):
        mu = np.exp(np.clip(x @ b, -700.0, 700.0))
        grad = x.T @ (w * (s2 / mu - 1.0))
        info = (x * w[:, None]).T @ x
        step = np.clip(np.linalg.solve(info + 1e-9 * np.eye(x.shape[1]), grad), -2.0, 2.0)
        b = b + step
        if np.abs(step).max() < 1e-8:
            break
    info = (x * w[:, None]).T @ x
    return b, np.sqrt(np.diag(np.linalg.inv(info + 1e-12 * np.eye(x.shape[1]))))


def estimate_noise(n_params, n_tokens, residuals, *, n_fitted: int = 5, leverage=None, groups=None,
                   vary: bool = True, min_points_for_slope: int = 24, floor: float = 1e-4) -> NoiseModel:
    """A NoiseModel from one skill's fit residuals (log L_obs - log L_fit, shape (n,)) and replicates.

    `groups`: replicate labels (replicate_groups); default: computed from (N, D). `leverage` (n,): hat-matrix
    diagonal of the fit, to undo the shrinkage of residuals at high-leverage points. `n_fitted`: the law's
    parameter count, for the degrees-of-freedom correction. `vary=False` fits a constant sigma.
    """
    n = np.asarray(n_params, float).ravel()
    d = np.asarray(n_tokens, float).ravel()
    r = np.asarray(residuals, float).ravel()
    if not (n.size == d.size == r.size) or r.size == 0:
        raise ValueError(f"n_params, n_tokens, residuals have different or zero lengths {n.size}, {d.size}, {r.size}")
    groups = replicate_groups(n, d) if groups is None else np.asarray(groups, int)
    h = np.zeros_like(r) if leverage is None else np.minimum(np.asarray(leverage, float), 0.99)
    log_n, log_d, s2, dof, pure = [], [], [], [], []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        m = idx.size
        mean_r = r[idx].mean()
        if m > 1:  # within-group deviations: m - 1 dof of pure noise
            log_n.append(np.log(n[idx[0]]))
            log_d.append(np.log(d[idx[0]]))
            s2.append(((r[idx] - mean_r) ** 2).sum() / (m - 1))
            dof.append(m - 1)
            pure.append(True)
        # the group mean's residual, scaled to one run's noise: noise + misfit, one dof (less leverage)
        log_n.append(np.log(n[idx[0]]))
        log_d.append(np.log(d[idx[0]]))
        s2.append(m * mean_r ** 2 / (1.0 - h[idx].mean()))
        dof.append(1)
        pure.append(False)
    log_n, log_d, s2 = np.array(log_n), np.array(log_d), np.array(s2)
    dof, pure = np.array(dof, float), np.array(pure)
    n_groups = int((~pure).sum())
    resid_dof = max(n_groups - n_fitted, 1)
    s2 = np.where(pure, s2, s2 * n_groups / resid_dof)  # residuals: correct for the fitted parameters
    robust_var = (MAD_TO_STD * np.median(np.sqrt(s2))) ** 2 if s2.size else 0.0
    s2 = np.minimum(s2, WINSOR * max(robust_var, floor ** 2))
    ref_n, ref_d = float(np.average(log_n, weights=dof)), float(np.average(log_d, weights=dof))
    x = np.ones((s2.size, 1))
    b, _ = _gamma_glm(x, np.maximum(s2, 1e-300), dof)
    slope_n = slope_d = 0.0
    if vary and s2.size >= min_points_for_slope:
        # log N always; log D too where the design spreads D/N enough to tell the two apart (inside a
        # narrow tokens-per-parameter band they are nearly collinear). A slope must exceed 2 standard errors.
        cols = [np.ones_like(log_n), log_n - ref_n]
        if np.std(log_d - log_n) > 0.5:
            cols.append(log_d - ref_d)
        xs = np.stack(cols, axis=1)
        bs, se = _gamma_glm(xs, np.maximum(s2, 1e-300), dof)
        keep = np.abs(bs[1:]) > 2 * se[1:]
        if keep.any():
            xs = xs[:, [0, *(1 + np.flatnonzero(keep))]]
            bs, _ = _gamma_glm(xs, np.maximum(s2, 1e-300), dof)
            slopes = dict(zip([k for k, kept in zip(("n", "d"), keep, strict=False) if kept], bs[1:], strict=True))
            b, slope_n, slope_d = bs[:1], float(slopes.get("n", 0.0)), float(slopes.get("d", 0.0))
    replicate_sigma = lack = None
    rep_dof = int(dof[pure].sum())
    if rep_dof:
        replicate_sigma = float(np.sqrt(np.average(s2[pure], weights=dof[pure])))
        if rep_dof >= MIN_REPLICATE_DOF and replicate_sigma > 0:
            lack = float(np.sqrt(np.mean(s2[~pure])) / replicate_sigma)
    return NoiseModel(log_sigma=float(b[0] / 2), slope_n=slope_n / 2, slope_d=slope_d / 2,
                      log_n_ref=ref_n, log_d_ref=ref_d, n_samples=int(s2.size), replicate_dof=rep_dof,
                      replicate_sigma=replicate_sigma, lack_of_fit=lack, floor=floor)


def correlated_draws(standardized_residuals: np.ndarray, n_draws: int, rng: np.random.Generator,
                     shrink: float = 0.1) -> np.ndarray:
    """Standard-normal draws (S, n_draws, n) for S skills' parametric bootstraps, correlated across skills
    as one run's residuals are (one training run's seed moves every skill's loss).

    `standardized_residuals` (S, n): each skill's residuals divided by its sigma(N, D). The correlation
    matrix is their sample correlation shrunk by `shrink` toward the identity (Ledoit & Wolf 2004 style,
    keeps it positive definite with few runs)."""
    r = np.atleast_2d(np.asarray(standardized_residuals, float))
    n_skills, n = r.shape
    corr = np.corrcoef(r) if n_skills > 1 and n > 2 else np.eye(n_skills)
    corr = np.atleast_2d(np.nan_to_num(corr, nan=0.0))
    corr = (1 - shrink) * corr + shrink * np.eye(n_skills)
    np.fill_diagonal(corr, 1.0)
    root = np.linalg.cholesky(corr)  # (S, S)
    eps = rng.standard_normal((n_skills, n_draws, n))
    return np.einsum("st,tkn->skn", root, eps)
