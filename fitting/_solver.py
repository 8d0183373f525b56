"""Batched robust least squares for the parametric law: many independent fits in one numpy pass.

Each problem b fits theta_b = (e, a, b, alpha, beta, tau_1..tau_J) to its own targets y_b = log L_obs and
weights w_b (bootstrap counts) by minimising the Huber loss of log-residuals (Hoffmann et al. 2022, §D.2):

    f_b(theta) = sum_i w_bi * huber_delta(y_bi - LSE(e, a - alpha*log N_i, b - beta*log D_eff,i))
    huber_delta(r) = r**2/2 if |r| <= delta else delta*(|r| - delta/2)

with E = exp(e), A = exp(a), B = exp(b) (the log-sum-exp parametrisation keeps E, A, B positive) and
log D_eff = log D + log(sum_j t_j m_ij), t_own = 1, t_j = exp(tau_j) for the other domains.

The solver is a batched Levenberg-Marquardt on the IRLS form of the Huber loss: residual weights
omega = w * min(1, delta/|r|) make the Gauss-Newton matrix H = J^T diag(omega) J, the gradient is exact
(g = -J^T (w * clip(r, -delta, delta))), the step solves (H + lambda*diag(H)) s = -g per problem
(np.linalg.solve on a (B, P, P) stack) and is kept only where it lowers f_b; lambda adapts per problem.
The problems are separable, so B fits cost about as much as one fit with B times the data.

`solve` and `objective` take the law's form as `model` (an object with `forward(theta, design, with_jac)` and
`project(theta)`, fitting/families.py); without one they fit the Chinchilla form above, whose analytic forward
and projection live here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHA_BOUNDS = (0.01, 3.0)  # exponents are kept in a physical range; a refit that hits a bound is rare
TAU_BOUNDS = (-12.0, 5.0)  # transfer t_j = exp(tau) in [6e-6, 150]
E_MIN = -12.0  # E >= 6e-6 nats


@dataclass(frozen=True)
class Design:
    """The regressors of one data set: log N, log D (n,), optional mix (n, n_domains), own domain, and log U,
    the unique tokens each run's data held (n,; inf where the data were never repeated)."""

    log_n: np.ndarray
    log_d: np.ndarray
    mix: np.ndarray | None = None
    own: int | None = None
    log_u: np.ndarray | None = None

    @property
    def free_domains(self) -> list[int]:
        if self.mix is None:
            return []
        return [j for j in range(self.mix.shape[1]) if j != self.own]

    @property
    def n_params(self) -> int:
        return 5 + len(self.free_domains)


def _forward(theta: np.ndarray, design: Design, with_jac: bool):
    """log L_pred (B, n) and, if asked, its Jacobian (B, n, P)."""
    e, a, b, alpha, beta = (theta[:, i:i + 1] for i in range(5))  # each (B, 1)
    log_d = np.broadcast_to(design.log_d, (theta.shape[0], design.log_d.shape[0]))
    free = design.free_domains
    if free:
        t = np.ones((theta.shape[0], design.mix.shape[1]))
        t[:, free] = np.exp(theta[:, 5:])
        transfer = t @ design.mix.T  # (B, n_domains) @ (n_domains, n) -> (B, n)
        log_d = log_d + np.log(transfer)
    u1 = a - alpha * design.log_n  # (B, n)
    u2 = b - beta * log_d  # (B, n)
    u0 = np.broadcast_to(e, u1.shape)
    m = np.maximum(np.maximum(u0, u1), u2)
    p0, p1, p2 = np.exp(u0 - m), np.exp(u1 - m), np.exp(u2 - m)
    s = p0 + p1 + p2
    lse = m + np.log(s)
    if not with_jac:
        return lse, None
    p0, p1, p2 = p0 / s, p1 / s, p2 / s  # softmax weights of the three terms
    jac = np.empty(u1.shape + (theta.shape[1],))
    jac[..., 0] = p0
    jac[..., 1] = p1
    jac[..., 2] = p2
    jac[..., 3] = -p1 * design.log_n
    jac[..., 4] = -p2 * log_d
    for k, j in enumerate(free):  # d log T / d tau_j = t_j m_ij / T_i
        jac[..., 5 + k] = -p2 * beta * (np.exp(theta[:, 5 + k:6 + k]) * design.mix[:, j]) / transfer
    return lse, jac


class _Chinchilla:
    """The default `model` of `solve`: the Chinchilla form's analytic forward and bounds."""

    @staticmethod
    def forward(theta, design, with_jac):
        return _forward(theta, design, with_jac)

    @staticmethod
    def project(theta):
        return _project(theta)


CHINCHILLA_MODEL = _Chinchilla()


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    ar = np.abs(r)
    return np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))


def objective(theta: np.ndarray, design: Design, y: np.ndarray, w: np.ndarray, delta: float,
              model=CHINCHILLA_MODEL) -> np.ndarray:
    """f_b for every problem, shape (B,)."""
    lse, _ = model.forward(theta, design, with_jac=False)
    return (w * huber(y - lse, delta)).sum(axis=1)


def _project(theta: np.ndarray) -> np.ndarray:
    theta[:, 0] = np.maximum(theta[:, 0], E_MIN)
    theta[:, 3:5] = np.clip(theta[:, 3:5], *ALPHA_BOUNDS)
    if theta.shape[1] > 5:
        theta[:, 5:] = np.clip(theta[:, 5:], *TAU_BOUNDS)
    return theta


def solve(theta0: np.ndarray, design: Design, y: np.ndarray, w: np.ndarray, delta: float,
          max_iter: int = 200, rtol: float = 1e-11, model=CHINCHILLA_MODEL) -> tuple[np.ndarray, np.ndarray]:
    """Minimise f_b from theta0 (B, P) for targets y (B, n) or (n,) and weights w (B, n) or (n,).

    Returns the fitted parameters (B, P) and final objectives (B,).
    """
    theta = model.project(np.array(theta0, dtype=float, copy=True))
    n_problems, n_par = theta.shape
    y = np.broadcast_to(np.asarray(y, float), (n_problems, design.log_n.shape[0]))
    w = np.broadcast_to(np.asarray(w, float), y.shape)
    f = objective(theta, design, y, w, delta, model)
    lam = np.full(n_problems, 1e-2)
    active = np.ones(n_problems, dtype=bool)
    eye = np.eye(n_par)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        th, yy, ww = theta[idx], y[idx], w[idx]
        lse, jac = model.forward(th, design, with_jac=True)
        r = yy - lse  # (b, n)
        psi = np.clip(r, -delta, delta)
        omega = ww * np.minimum(1.0, delta / np.maximum(np.abs(r), 1e-300))  # IRLS weights
        grad = -(jac.transpose(0, 2, 1) @ (ww * psi)[..., None])[..., 0]  # exact gradient of f, (b, P)
        hess = jac.transpose(0, 2, 1) @ (omega[..., None] * jac)  # Gauss-Newton matrix, (b, P, P)
        diag = np.einsum("bpp->bp", hess) + 1e-12
        damped = hess + lam[idx, None, None] * diag[:, :, None] * eye
        try:
            step = np.linalg.solve(damped, -grad[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -grad / diag
        cand = model.project(th + step)
        step = cand - th
        predicted = -(grad * step).sum(1)  # first-order decrease of f along the (projected) step
        f_new = objective(cand, design, yy, ww, delta, model)
        better = np.isfinite(f_new) & (f_new < f[idx])
        gain = np.where(better, f[idx] - f_new, 0.0)
        theta[idx[better]] = cand[better]
        f_old = f[idx].copy()
        f[idx[better]] = f_new[better]
        lam[idx] = np.where(better, np.maximum(lam[idx] / 3.0, 1e-9), lam[idx] * 8.0)
        tiny = rtol * np.maximum(f_old, 1e-300)
        done = ((better & (gain <= tiny)) | (predicted <= tiny) | (np.abs(step).max(1) < 1e-10)
                | (lam[idx] > 1e10))
        active[idx[done]] = False
    return theta, f
