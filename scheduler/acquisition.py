"""The value of a candidate run: how much observing it would shrink the targets' uncertainty, per FLOP.

The bootstrap ensemble is treated as a sample from the belief over the laws. For a candidate x the
members give predicted log-losses y_k(x) (one per skill) and the targets' log-optima q_k. Observing y
with noise R (the fitted log-residual variance per skill) would, in the linear-Gaussian approximation,
reduce Var(q_t) by

    ΔVar_t(x) = c_tᵀ (Σ_yy(x) + R)⁻¹ c_t,      c_t = Cov(y(x), q_t)                      (1)

less what a finite ensemble shows by chance (see `variance_reduction`).

The acquisition is Σ_t w_t ΔVar_t / v_tol  divided by the run's cost (6ND + a fixed overhead), where
v_tol = (tolerance / 1.96)² is the variance of log N* at which a target counts as pinned down and
w_t is 1 for targets still wider than that, 0.05 for those already inside it.

Where the ensemble mixes law families (`--law auto`, fitting/averaging.py), q and y hold the spread between
the families as well as within each, so a run where the families predict different losses *and* disagree
about N* has a large Cov(y, q_t): the acquisition seeks the runs that separate the families.

Batches: after choosing x1, the ensemble is conditioned as if y(x1) had been observed — an ensemble
Kalman step with perturbed observations on the members' log-parameters — and x2 is chosen against the
updated ensemble, and so on. Runs already in flight are conditioned on the same way, so a new
proposal never repeats one that is still training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from scipy.stats import chi2

from fitting.averaging import single_blocks, with_blocks
from fitting.law import LawEnsemble

CHANCE_QUANTILE = 0.99  # gains below this quantile of the no-information distribution are ignored
DONE_WEIGHT = 0.05  # weight of a target already within tolerance


@dataclass(frozen=True)
class Belief:
    """The ensemble the proposer reasons with; `target_fn` maps ensembles to (K, T) log N* samples."""

    ensembles: dict[str, LawEnsemble]
    noise: dict[str, float]  # sigma of each skill's log-loss at the runs' typical (N, D)
    target_fn: object  # Callable[[dict[str, LawEnsemble]], np.ndarray]
    v_tol: float

    @property
    def skills(self) -> list[str]:
        return list(self.ensembles)

    @cached_property
    def q(self) -> np.ndarray:
        """(K, T) samples of log N*_t(C_target), computed once per belief."""
        return np.asarray(self.target_fn(self.ensembles))

    noise_models: dict | None = None  # skill -> fitting.noise.NoiseModel: sigma(N, D) per candidate

    def noise_at(self, n_params, n_tokens) -> np.ndarray:
        """(M, S) noise sigma of each skill at M candidates: the noise model where there is one, else `noise`."""
        n = np.atleast_1d(np.asarray(n_params, float))
        d = np.broadcast_to(np.atleast_1d(np.asarray(n_tokens, float)), n.shape)
        cols = []
        for s in self.skills:
            model = (self.noise_models or {}).get(s)
            sigma = model.sigma(n, d) if model is not None else np.full(n.shape, self.noise[s])
            cols.append(sigma)
        return np.stack(cols, axis=-1)

    def predict(self, n_params, n_tokens, mix=None, unique=None) -> np.ndarray:
        """(K, M, S) predicted log-losses at M candidates (`unique`: their unique tokens, inf for all the data)."""
        return np.stack([np.log(np.maximum(self.ensembles[s].loss(n_params, n_tokens, mix, unique), 1e-12))
                         for s in self.skills], axis=-1)


def variance_reduction(q: np.ndarray, y: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Eq. (1) for every candidate and target: q (K, T), y (K, M, S), noise (S,) or per candidate (M, S) -> (M, T)."""
    k = q.shape[0]
    noise_var = np.broadcast_to(np.asarray(noise, float) ** 2, (y.shape[1], y.shape[2]))  # (M, S)
    r_diag = noise_var[:, :, None] * np.eye(y.shape[2])[None]  # (M, S, S)
    qc = q - q.mean(0)
    yc = y - y.mean(0)
    c = np.einsum("kms,kt->mst", yc, qc) / (k - 1)  # (M, S, T)
    syy = np.einsum("kms,kmr->msr", yc, yc) / (k - 1) + r_diag  # (M, S, S)
    sol = np.linalg.solve(syy, c)  # (M, S, T)
    gain = np.einsum("mst,mst->mt", c, sol)
    # With no true covariance, K members still show a chance c_t: its gain is about
    # Var(q_t) * tr(Σ_yy (Σ_yy + R)⁻¹) / (K - 1) * χ²_S / S. Only the gain above that distribution's
    # 99th percentile counts; otherwise runs 1000x cheaper than the informative ones win on noise.
    s = y.shape[2]
    signal = np.einsum("msr,mrs->m", syy - r_diag, np.linalg.inv(syy))  # (M,)
    chance = signal[:, None] * q.var(0, ddof=1)[None, :] / (k - 1) * chi2.ppf(CHANCE_QUANTILE, s) / s
    return np.maximum(gain - chance, 0.0)


def target_weights(q: np.ndarray, v_tol: float) -> np.ndarray:
    """1 for targets whose log-N* variance exceeds v_tol, DONE_WEIGHT otherwise."""
    var = q.var(0, ddof=1)
    return np.where(var > v_tol, 1.0, DONE_WEIGHT)


def acquisition(belief: Belief, n_params, n_tokens, mix, cost, unique=None) -> np.ndarray:
    """Expected weighted variance reduction per unit cost at M candidates, shape (M,)."""
    q = belief.q
    with np.errstate(all="ignore"):
        y = belief.predict(n_params, n_tokens, mix, unique)
    good = np.all(np.isfinite(y), axis=(0, 2))
    y = np.where(np.isfinite(y), y, 0.0)
    noise = belief.noise_at(n_params, n_tokens)  # (M, S): the measured sigma(N, D) at each candidate
    gain = variance_reduction(q, y, noise) @ target_weights(q, belief.v_tol) / belief.v_tol
    return np.where(good, gain / np.asarray(cost, float), -np.inf)


# ----------------------------------------------------------------------- ensemble Kalman conditioning

def kalman_update(ensembles: dict, y: np.ndarray, innovation: np.ndarray, noise_cov: np.ndarray) -> dict:
    """Move every member's parameters by gain @ innovation_k, gain = Σ_θy (Σ_yy + R)⁻¹.

    y (K, Y) are the members' predictions of what is observed, innovation (K, Y) the perturbed innovations and
    noise_cov (Y, Y) R. The gain of each block of members of one law family (fitting/averaging.py: a mixture
    of families has one block per family; one family, one block) is estimated from that block's members
    alone: the families' parameters differ in kind, and each moves towards what the others predict only as
    far as its own spread allows. With one block per skill this is the joint update over all skills (the
    gain's rows for one skill's parameters depend on that skill's covariances alone)."""
    new = {}
    for skill, ens in ensembles.items():
        parts = []
        for index, part in single_blocks(ens):
            theta = part.pack()
            k = index.size
            tc, yc = theta - theta.mean(0), y[index] - y[index].mean(0)
            s_ty = tc.T @ yc / (k - 1)  # (P, Y)
            s_yy = yc.T @ yc / (k - 1) + noise_cov
            gain = np.linalg.solve(s_yy, s_ty.T).T  # (P, Y)
            parts.append(part.unpack(theta + innovation[index] @ gain.T))
        new[skill] = with_blocks(ens, parts)
    return new


def condition(belief: Belief, n_params: float, n_tokens: float, mix, rng: np.random.Generator,
              unique=None) -> Belief:
    """The belief after (pretending to) observe y at one point: an ensemble Kalman update.

    θ'_k = θ_k + K_gain (ȳ + ε_k - y_k), ε_k ~ N(0, R), K_gain = Σ_θy (Σ_yy + R)⁻¹, with θ the stacked
    log-parameters of all skills (`kalman_update`). Centring the pseudo-observation on the ensemble mean leaves
    the mean (almost) unchanged and shrinks the spread as a real observation would.
    """
    y = belief.predict([n_params], [n_tokens], mix, unique)[:, 0, :]  # (K, S)
    r = belief.noise_at([n_params], [n_tokens])[0] ** 2  # (S,)
    innovation = y.mean(0) + rng.standard_normal(y.shape) * np.sqrt(r) - y  # (K, S)
    return replace(belief, ensembles=kalman_update(belief.ensembles, y, innovation, np.diag(r)))
