"""Parametric scaling-law fits (Chinchilla Approach 3) and their bootstrap.

Point fit (Hoffmann et al. 2022, §D.2; Besiroglu et al. 2024): minimise the Huber loss (delta = 1e-3) of
log-residuals log L_obs - log L_pred with the log-sum-exp parametrisation

    log L_pred(N, D) = LSE(e, a - alpha*log N, b - beta*log D_eff),   E, A, B = exp(e), exp(a), exp(b),

from a grid of starting points: every grid start is scored, the best 24 are refined with a batched
Levenberg-Marquardt/IRLS solver (fitting/_solver.py) and the best result is polished with scipy's L-BFGS-B.

Uncertainty (`bootstrap_parametric`). The law's parameters are nearly degenerate (E, A, alpha trade off
along a long valley), so how each resample is refit decides whether intervals are honest under
extrapolation. What we do, and why:

1. Every resample is refit from several starts (the point estimate, up to three distinct local minima the
   point fit's grid found, and the point estimate with alpha and beta scaled by 0.6 and 1.6, i.e. moved
   along the valley), each solved to convergence; the lowest objective wins. Refits that all start at
   the point estimate and stop early stay in its valley and give intervals far too narrow (docs/design.md, Fitting:
   ~1/3 coverage of N* at 100x extrapolation). A family with extra parameters (Farseer's, the data-constrained
   form's) also starts from each of those points with its extras reset to every one of their own starts: some
   resamples have their lowest minimum in another basin of the extras, and refits started only in the point
   estimate's basin missed it (a farseer-world study's data, simulated again from its fit: 1 resample in 20
   ended 1.4x from where a fit from scratch did, and the members' sd of log N* was 0.040 against 0.069).
2. Default resampling, `method="parametric"`: a parametric bootstrap under the fit's noise model. New data
   are the fitted log-losses plus Gaussian noise of the per-point sigma(N, D) that fitting/noise.py
   estimates from the residuals (leverage- and dof-corrected) and from replicates, log L*_i = log L_fit,i
   + sigma_i z_i. Callers fitting several skills pass `draws=` correlated across skills as one run's
   residuals are (fitting.noise.correlated_draws). `method="residual"` resamples modified residuals
   r_j = (y_j - fit_j) / sqrt(1 - h_jj) (Davison & Hinkley 1997, Alg. 6.3), median-centred, with the draws
   j indices of runs (`resamples=`, shared across skills); `method="pairs"` resamples runs (counts as
   weights); `method="laplace"` draws from N(theta_hat, A^-1 B A^-1), the Huber sandwich covariance under
   the same noise model (no refits: ~1000x cheaper, but Gaussian in theta, so it cannot follow the valley's
   curvature when the data are few and noisy).
3. Intervals: `fitting.law.interval(samples, point=estimate)`, the bias-corrected percentile interval
   (Efron 1981), which the report uses for every quantity.
4. Coverage is checked by simulation under extrapolation (benchmarks/bench_coverage.py; BENCHMARKS.md,
   Interval coverage): the parametric bootstrap's 95% intervals for N*(C_target) hold the truth about 95% of
   the time inside the D/N band, 10x and 100x beyond the largest run, with no inflation factor. The residual
   bootstrap under-covers with few runs (its resampled residuals are those of a fit that absorbed part of the
   noise), so the parametric one is the default. tests/fitting/test_coverage.py re-checks both settings, and
   that its check fails for intervals half or twice as wide.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import ndtr

from fitting._solver import ALPHA_BOUNDS, Design, huber, objective, solve
from fitting.families import CHINCHILLA, LawFamily, get_family
from fitting.law import LawEnsemble, ParametricLaw
from fitting.noise import NoiseModel, estimate_noise, replicate_groups
from skillscale.errors import InputError

MAD_TO_STD = 1.4826  # std of a normal / its median absolute deviation
N_REFINED_STARTS = 24  # grid starts refined to convergence in the point fit


@dataclass(frozen=True)
class ParametricFit:
    """A point estimate of one skill's law in one family (fitting/families.py)."""

    law: ParametricLaw  # point estimate (a FamilyLaw outside the Chinchilla family)
    residual_std: float  # robust std (1.4826*MAD, dof-corrected) of log-residuals: the noise sigma
    n_points: int  # points used in the fit
    excluded: tuple[int, ...]  # indices dropped by exclude_top
    theta: tuple[float, ...] = ()  # (e, a, b, alpha, beta, tau...) at the optimum
    local_minima: tuple[tuple[float, ...], ...] = ()  # other distinct minima of the grid: bootstrap starts
    objective: float = float("nan")
    noise: NoiseModel | None = None  # sigma(N, D) from residuals and replicates (fitting/noise.py)
    family: LawFamily = CHINCHILLA

    def exponents_at_bounds(self) -> tuple[str, ...]:
        """The exponents pinned (within 5%) against the solver's range ALPHA_BOUNDS, e.g. ("alpha=2.97",).

        Such a fit is degenerate: the data did not determine that exponent, the bound did, and every
        bootstrap member is pinned the same way, so its interval is narrow for the wrong reason."""
        theta = self.theta or (0.0, 0.0, 0.0, self.law.alpha, self.law.beta)  # a fit made by hand holds a law only
        return self.family.exponents_at_bounds(theta)


# ----------------------------------------------------------------------------------------- inputs


def _prepare(n_params, n_tokens, loss, mix, domains, own_domain, exclude_top, unique=None,
             family: LawFamily = CHINCHILLA):
    """Validate inputs and build the Design of the kept points; returns (design, y, kept, excluded).

    `unique` (n,): the unique tokens each run's data held (inf or NaN: never repeated)."""
    n = np.asarray(n_params, float).ravel()
    d = np.asarray(n_tokens, float).ravel()
    loss = np.asarray(loss, float).ravel()
    if not (n.shape == d.shape == loss.shape):
        raise InputError(f"n_params, n_tokens, loss have different lengths {n.size}, {d.size}, {loss.size}")
    for name, x in (("n_params", n), ("n_tokens", d), ("loss", loss)):
        if not np.all(np.isfinite(x)):
            raise InputError(f"{name} contains NaN or inf")
        if np.any(x <= 0):
            raise InputError(f"{name} must be positive (found {x.min():g})")
    order = np.argsort(-loss, kind="stable")
    excluded = tuple(sorted(int(i) for i in order[:exclude_top]))
    kept = np.setdiff1d(np.arange(loss.size), excluded)
    mix_arr, own = None, None
    if mix is not None:
        mix_arr = np.asarray(mix, float)
        if mix_arr.shape != (loss.size, len(domains)):
            raise InputError(f"mix must have shape ({loss.size}, {len(domains)}), got {mix_arr.shape}")
        own = list(domains).index(own_domain) if own_domain is not None else 0
        mix_arr = mix_arr[kept]
    log_u = None
    if unique is not None:
        u = np.asarray(unique, float).ravel()
        if u.shape != loss.shape:
            raise InputError(f"n_unique_tokens has {u.size} values for {loss.size} runs")
        u = np.where(np.isfinite(u), u, np.inf)
        if np.any(u <= 0):
            raise InputError(f"n_unique_tokens must be positive (found {u.min():g})")
        log_u = np.log(u[kept])
    design = Design(np.log(n[kept]), np.log(d[kept]), mix_arr, own, log_u)
    n_par = family.n_params(design)
    if kept.size <= n_par:
        raise InputError(f"{kept.size} points to fit {n_par} parameters of the {family.name} law; "
                         "need more runs than parameters")
    reason = family.applicable(design) if getattr(family, "needs_unique_tokens", False) else None
    if reason is not None:
        raise InputError(f"the {family.name} law does not apply: {reason}")
    return design, np.log(loss[kept]), kept, excluded


def design_of(n_params, n_tokens, *, mix=None, domains=(), own_domain=None, unique=None) -> Design:
    """The Design of these runs as given (no checks, nothing dropped): to evaluate a fitted law on other runs."""
    mix_arr, own = None, None
    if mix is not None:
        mix_arr = np.asarray(mix, float)
        own = list(domains).index(own_domain) if own_domain is not None else 0
    log_u = None
    if unique is not None:
        u = np.asarray(unique, float)
        log_u = np.log(np.where(np.isfinite(u), u, np.inf))
    return Design(np.log(np.asarray(n_params, float)), np.log(np.asarray(n_tokens, float)), mix_arr, own, log_u)


def _free(domains, own) -> list[int]:
    return [j for j in range(len(domains)) if j != own] if domains and own is not None else []


def law_from_theta(theta: np.ndarray, domains=(), own: int | None = None) -> ParametricLaw:
    """The Chinchilla law of one theta (e, a, b, alpha, beta, tau...); mixture-aware when `own` is given."""
    transfer = None
    if domains and own is not None:
        t = np.ones(len(domains))
        t[_free(domains, own)] = np.exp(theta[5:])
        transfer = {dom: float(x) for dom, x in zip(domains, t, strict=True)}
    e, a, b, alpha, beta = (float(x) for x in theta[:5])
    return ParametricLaw(np.exp(e), np.exp(a), np.exp(b), alpha, beta, transfer)


def ensemble_from_thetas(thetas: np.ndarray, domains=(), own: int | None = None) -> LawEnsemble:
    """The Chinchilla ensemble of thetas (K, 5 + J)."""
    transfer = None
    if domains and own is not None:
        transfer = np.ones((thetas.shape[0], len(domains)))
        transfer[:, _free(domains, own)] = np.exp(thetas[:, 5:])
    return LawEnsemble(np.exp(thetas[:, 0]), np.exp(thetas[:, 1]), np.exp(thetas[:, 2]), thetas[:, 3].copy(),
                       thetas[:, 4].copy(), transfer, tuple(domains) if transfer is not None else ())


def _law(family: LawFamily, theta, design: Design, domains):
    return family.law(theta, tuple(domains) if design.mix is not None else (), design.own)


def _ensemble(family: LawFamily, thetas, design: Design, domains):
    return family.ensemble(thetas, tuple(domains) if design.mix is not None else (), design.own)


def robust_std(residuals: np.ndarray, n_fitted: int = 0) -> float:
    """1.4826 * MAD of residuals, inflated by sqrt(n/(n-p)) for the p fitted parameters."""
    r = np.asarray(residuals, float)
    mad = np.median(np.abs(r - np.median(r)))
    dof = max(r.size - n_fitted, 1)
    return float(MAD_TO_STD * mad * np.sqrt(r.size / dof))


# ----------------------------------------------------------------------------------------- point fit


def _grid_starts(design: Design, y: np.ndarray) -> np.ndarray:
    """A Hoffmann-style grid of starts (e, a, b, alpha, beta, tau=0), shape (S, P)."""
    e_grid = np.log(np.exp(y.min()) * np.array([0.2, 0.5, 0.75, 0.9]))
    a_grid = np.array([0.0, 4.0, 8.0, 12.0, 16.0, 20.0])
    exp_grid = np.array([0.1, 0.25, 0.4, 0.6, 1.0])
    rows = list(itertools.product(e_grid, a_grid, a_grid, exp_grid, exp_grid))
    starts = np.array(rows)
    n_tau = design.n_params - 5
    if n_tau:
        starts = np.hstack([starts, np.zeros((starts.shape[0], n_tau))])
    return starts


def _lbfgs_polish(theta: np.ndarray, design: Design, y: np.ndarray, delta: float,
                  family: LawFamily = CHINCHILLA) -> np.ndarray:
    """Polish one solution with scipy L-BFGS-B on the exact Huber objective and gradient."""
    ones = np.ones_like(y)

    def fun(x):
        lse, jac = family.forward(x[None, :], design, with_jac=True)
        r = y - lse[0]
        return float(huber(r, delta).sum()), -(np.clip(r, -delta, delta) @ jac[0])

    with np.errstate(all="ignore"):
        res = minimize(fun, theta, jac=True, method="L-BFGS-B", bounds=family.bounds(theta.size),
                       options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12})
    better = np.isfinite(res.fun) and res.fun <= objective(theta[None, :], design, y, ones, delta, family)[0]
    return res.x if better else theta


IDLE_TERM_SHARE = 1e-9  # a term below this share of the loss at every run is not seen by the data


def _replicate_keys(design: Design) -> np.ndarray | None:
    """What else must match for two runs of one (N, D) to be replicates: the mix and the unique tokens (runs
    that repeated their data differently are different runs)."""
    cols = [] if design.mix is None else [design.mix]
    if design.log_u is not None:
        cols.append(np.where(np.isfinite(design.log_u), design.log_u, 0.0)[:, None])
    return np.hstack(cols) if cols else None


def _snap_idle_exponents(theta: np.ndarray, design: Design, family: LawFamily) -> np.ndarray:
    """Put an exponent whose term contributes nothing at any run (share < IDLE_TERM_SHARE) on its upper bound.

    Such an exponent is undetermined: the solver stops wherever the term became negligible (2.84 or 2.97,
    depending on the optimiser's build). On the bound, `exponents_at_bounds` reports it as degenerate."""
    lse, jac = family.forward(theta[None, :], design, with_jac=True)
    theta = theta.copy()
    for index, share in ((3, jac[0, :, 1]), (4, jac[0, :, 2])):  # d lse / d a and d lse / d b: the terms' shares
        if np.max(share) < IDLE_TERM_SHARE:
            theta[index] = ALPHA_BOUNDS[1]
    return theta


def fit_parametric(n_params, n_tokens, loss, *, mix=None, domains=(), own_domain=None,
                   exclude_top=0, huber_delta=1e-3, family: LawFamily | str = CHINCHILLA, unique=None,
                   base: ParametricFit | None = None) -> ParametricFit:
    """Fit one family's law (fitting/families.py; Chinchilla by default) by Huber loss on log-residuals.

    `mix` (n, n_domains) with `domains` and `own_domain` fits the mixture-aware law (transfer t_j >= 0,
    t_own = 1). `exclude_top=k` drops the k highest-loss points (often the smallest, least law-like runs).
    `unique` (n,): unique tokens per run, for families with a term for repeated data. The Chinchilla fit
    starts from a fixed grid; the other families start from the Chinchilla fit and its other minima (`base`,
    computed when not given) with each of their extra parameters' starts. Deterministic: it takes no seed.
    """
    family = get_family(family) if isinstance(family, str) else family
    design, y, _, excluded = _prepare(n_params, n_tokens, loss, mix, domains, own_domain, exclude_top, unique, family)
    ones = np.ones_like(y)
    if family is CHINCHILLA:
        starts = _grid_starts(design, y)
        f0 = objective(starts, design, y, ones, huber_delta)
        best = starts[np.argsort(f0)[:N_REFINED_STARTS]]
    else:
        if base is None:
            base = fit_parametric(n_params, n_tokens, loss, mix=mix, domains=domains, own_domain=own_domain,
                                  exclude_top=exclude_top, huber_delta=huber_delta)
        best = family.starts(np.array([base.theta, *base.local_minima]))
    with np.errstate(all="ignore"):
        thetas, fs = solve(best, design, y, ones, huber_delta, model=family)
    order = np.argsort(np.where(np.isfinite(fs), fs, np.inf))
    theta = _snap_idle_exponents(_lbfgs_polish(thetas[order[0]], design, y, huber_delta, family), design, family)
    f_best = float(objective(theta[None, :], design, y, ones, huber_delta, family)[0])
    # distinct local minima (different exponents), kept as extra starts for the bootstrap refits
    minima: list[np.ndarray] = []
    for i in order[1:]:
        if not np.isfinite(fs[i]):
            break
        if all(np.abs(thetas[i][3:5] - m[3:5]).max() > 0.02 for m in [theta, *minima]):
            minima.append(thetas[i])
        if len(minima) >= 3:
            break
    lse, jac = family.forward(theta[None, :], design, with_jac=True)
    residuals = y - lse[0]
    n_par = family.n_params(design)
    sigma = robust_std(residuals, n_par)
    n_kept, d_kept = np.exp(design.log_n), np.exp(design.log_d)
    noise = estimate_noise(n_kept, d_kept, residuals, n_fitted=n_par, leverage=_leverage(jac[0]),
                           groups=replicate_groups(n_kept, d_kept, _replicate_keys(design)))
    return ParametricFit(_law(family, theta, design, domains), sigma, int(y.size), excluded,
                         tuple(float(x) for x in theta), tuple(tuple(float(x) for x in m) for m in minima),
                         f_best, noise, family)



# ----------------------------------------------------------------------------------------- bootstrap


def bootstrap_starts(fit: ParametricFit) -> np.ndarray:
    """Starting points for each resample's refit, shape (S, P): see the module docstring, point 1."""
    theta = np.array(fit.theta)
    starts = [theta, *[np.array(m) for m in fit.local_minima]]
    for scale in (0.6, 1.6):  # move along the E-A-alpha / E-B-beta valleys
        moved = theta.copy()
        idx = list(fit.family.exponent_indices())
        moved[idx] = np.clip(theta[idx] * scale, *ALPHA_BOUNDS)
        starts.append(moved)
    family = fit.family
    if family.extras:  # the extras' other basins, from each point's Chinchilla core and transfer
        points = np.array(starts[:1 + len(fit.local_minima)])
        starts.extend(family.starts(np.hstack([points[:, :5], points[:, family.n_core:]])))
    return np.array(starts)


def resample_counts(n_points: int, n_boot: int, seed: int) -> np.ndarray:
    """Pairs-bootstrap counts (n_boot, n_points): how often each point is drawn in each resample."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_points, size=(n_boot, n_points))
    return counts_from_indices(idx, n_points)


def counts_from_indices(resamples: np.ndarray, n_points: int) -> np.ndarray:
    resamples = np.asarray(resamples, dtype=int)
    counts = np.zeros((resamples.shape[0], n_points))
    np.add.at(counts, (np.arange(resamples.shape[0])[:, None], resamples), 1.0)
    return counts


def refit_batch(fit: ParametricFit, design: Design, y: np.ndarray, w: np.ndarray, huber_delta: float,
                starts: np.ndarray | None = None, warmup_iters: int = 15, keep: int = 2) -> np.ndarray:
    """Refit K problems (targets y (K, n) or (n,), weights w (K, n)) from every start; best thetas (K, P).

    All K*S (resample, start) problems run `warmup_iters` solver iterations; then only the `keep` best
    starts of each resample are solved to convergence (the others are already clearly worse).
    """
    starts = bootstrap_starts(fit) if starts is None else starts
    n_boot, n_starts = w.shape[0], starts.shape[0]
    y = np.broadcast_to(y, w.shape)
    ys, ws = np.repeat(y, n_starts, axis=0), np.repeat(w, n_starts, axis=0)  # problem k*S + s
    model = fit.family
    with np.errstate(all="ignore"):
        thetas, fs = solve(np.tile(starts, (n_boot, 1)), design, ys, ws, huber_delta, max_iter=warmup_iters,
                           model=model)
    fs = np.where(np.isfinite(fs), fs, np.inf).reshape(n_boot, n_starts)
    keep = min(keep, n_starts)
    chosen = np.argsort(fs, axis=1)[:, :keep]  # (K, keep) best starts per resample
    rows = (np.arange(n_boot)[:, None] * n_starts + chosen).ravel()
    with np.errstate(all="ignore"):
        thetas, fs = solve(thetas[rows], design, ys[rows], ws[rows], huber_delta, model=model)
    fs = np.where(np.isfinite(fs), fs, np.inf).reshape(n_boot, keep)
    best = np.argmin(fs, axis=1)
    return thetas.reshape(n_boot, keep, -1)[np.arange(n_boot), best]


def _leverage(jac: np.ndarray) -> np.ndarray:
    """Diagonal of the hat matrix J (J^T J)^-1 J^T at the fit, clipped below 0.99 (Davison & Hinkley 1997)."""
    q, _ = np.linalg.qr(jac)
    return np.minimum((q * q).sum(axis=1), 0.99)


def _point_sigma(fit: ParametricFit, design: Design) -> np.ndarray:
    """Noise sigma of each design point: the fit's NoiseModel, else its robust residual_std."""
    if fit.noise is None:
        return np.full(design.log_n.shape, fit.residual_std)
    return fit.noise.sigma(np.exp(design.log_n), np.exp(design.log_d))


def huber_moments(sigma: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """E[psi'(r)] and E[psi(r)^2] of the Huber loss for r ~ N(0, sigma^2) (psi = clip(r, -delta, delta))."""
    z = delta / np.asarray(sigma, float)
    inside = 2.0 * ndtr(z) - 1.0  # P(|r| <= delta) = E psi'
    density = np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
    second = np.asarray(sigma, float) ** 2 * (inside - 2.0 * z * density) + delta ** 2 * (1.0 - inside)
    return inside, second


def laplace_covariance(fit: ParametricFit, design: Design, huber_delta: float = 1e-3) -> np.ndarray:
    """Sandwich covariance A^-1 B A^-1 of the Huber M-estimate theta (P, P) under the fit's noise model.

    A = sum_i E[psi'_i] J_i J_i^T, B = sum_i E[psi_i^2] J_i J_i^T with J the Jacobian of log L_pred at the
    fit and the expectations under r_i ~ N(0, sigma_i^2) (Huber 1967; White 1982)."""
    _, jac = fit.family.forward(np.array(fit.theta)[None, :], design, with_jac=True)
    jac = jac[0]  # (n, P)
    d_psi, psi2 = huber_moments(_point_sigma(fit, design), huber_delta)
    a = (jac * d_psi[:, None]).T @ jac
    b = (jac * psi2[:, None]).T @ jac
    a_inv = np.linalg.pinv(a)
    cov = a_inv @ b @ a_inv
    return 0.5 * (cov + cov.T)


def laplace_draws(fit: ParametricFit, design: Design, huber_delta: float, n_draws: int,
                  rng: np.random.Generator) -> np.ndarray:
    """n_draws parameter vectors (n_draws, P) from N(theta_hat, laplace_covariance), kept in the bounds."""
    cov = laplace_covariance(fit, design, huber_delta)
    values, vectors = np.linalg.eigh(cov)
    root = vectors * np.sqrt(np.maximum(values, 0.0))  # cov = root @ root.T
    draws = np.array(fit.theta)[None, :] + rng.standard_normal((n_draws, cov.shape[0])) @ root.T
    return fit.family.project(draws)


def bootstrap_parametric(n_params, n_tokens, loss, *, n_boot=500, mix=None, domains=(), own_domain=None,
                         exclude_top=0, huber_delta=1e-3, seed=0, resamples=None, method="parametric",
                         counts=None, fit: ParametricFit | None = None, draws=None, unique=None,
                         family: LawFamily | str = CHINCHILLA) -> LawEnsemble:
    """K = n_boot bootstrap refits of the law, as a LawEnsemble (see module docstring for the method).

    `resamples`: optional (n_boot, n_points) int index array over *all* input points (before
    exclude_top), so several skills can share the same resamples of runs; `counts` (n_boot, n_points):
    draw counts instead (pairs only). `fit`: the point fit, if already computed. `method`: "parametric"
    (default), "residual", "pairs" or "laplace" (module docstring, point 2). `draws` (n_boot, n_points):
    standard-normal draws over all input points for "parametric", so a caller can give several skills
    draws correlated as their residuals are (fitting.noise.correlated_draws). The family is the fit's (or
    `family`, when the point fit is made here); the result is that family's ensemble type.
    """
    if fit is None:
        fit = fit_parametric(n_params, n_tokens, loss, mix=mix, domains=domains, own_domain=own_domain,
                             exclude_top=exclude_top, huber_delta=huber_delta, family=family, unique=unique)
    design, y, kept, _ = _prepare(n_params, n_tokens, loss, mix, domains, own_domain, exclude_top, unique,
                                  fit.family)
    n_all = np.asarray(loss).size
    rng = np.random.default_rng(seed)
    if resamples is None and counts is None:
        resamples = rng.integers(0, n_all, size=(n_boot, n_all))
    if counts is not None and method != "pairs":
        raise ValueError(f"counts are only for method='pairs'; pass resamples (indices) for {method!r}")
    if method == "pairs":
        w = np.asarray(counts, float) if counts is not None else counts_from_indices(resamples, n_all)
        w = w[:, kept]
        targets = y
    elif method == "residual":
        fitted, jac = fit.family.forward(np.array(fit.theta)[None, :], design, with_jac=True)
        fitted, jac = fitted[0], jac[0]  # (n_kept,), (n_kept, P)
        residuals = (y - fitted) / np.sqrt(1.0 - _leverage(jac))  # modified residuals
        residuals -= np.median(residuals)
        position = np.arange(n_all)  # all-points index -> kept position; an excluded source: itself
        position[kept] = np.arange(kept.size)
        src = np.asarray(resamples, int)[:, kept]
        src = np.where(np.isin(src, kept), position[src], np.arange(kept.size)[None, :])
        targets = fitted[None, :] + residuals[src]
        w = np.ones_like(targets)
    elif method == "parametric":
        fitted = fit.family.forward(np.array(fit.theta)[None, :], design, with_jac=False)[0][0]
        z = rng.standard_normal((n_boot, y.size)) if draws is None else np.asarray(draws, float)[:, kept]
        targets = fitted[None, :] + _point_sigma(fit, design) * z
        w = np.ones_like(targets)
    elif method == "laplace":
        return _ensemble(fit.family, laplace_draws(fit, design, huber_delta, n_boot, rng), design, domains)
    else:
        raise ValueError(f"method must be 'pairs', 'residual', 'parametric' or 'laplace', got {method!r}")
    thetas = refit_batch(fit, design, targets, w, huber_delta)
    return _ensemble(fit.family, thetas, design, domains)
