"""Scaling-law forms: one parametric law and a bootstrap ensemble of them.

The Chinchilla "Approach 3" form (Hoffmann et al. 2022, eq. 2) with mixture-aware effective data:

    L(N, D, m) = E + A * N**-alpha + B * D_eff**-beta,     D_eff = D * T(m),  T(m) = sum_j t_j m_j

N is the parameter count (see fitting/conventions.py), D the training tokens, m the training mix
(weights over domains summing to 1) and t the transfer vector of this skill: t_own = 1, t_j >= 0 says
how many tokens of the skill's own domain one token of domain j is worth. Without a transfer vector
the law is the plain Chinchilla law (D_eff = D).

Compute-optimal allocation under C = 6 N D (Hoffmann et al. 2022, eq. 4 and Appendix D.2, eq. 10):

    N*(C) = G * (C/6)**(beta/(alpha+beta)),   D*(C) = G**-1 * (C/6)**(alpha/(alpha+beta)),
    G = (alpha*A / (beta*B'))**(1/(alpha+beta)),   B' = B * T(m)**-beta.

The exponent a = beta/(alpha+beta) of N* ~ C^a is independent of C for this form.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from fitting.conventions import FLOPS_PER_PARAM_TOKEN

TRANSFER_EPS = 1e-4  # keeps log(transfer) finite when an ensemble is packed for the Kalman step


def law_loss(E, A, B, alpha, beta, n, d_eff):
    """E + A*N**-alpha + B*D_eff**-beta, elementwise under numpy broadcasting.

    The one place the law is written in linear space (the fit works in log space, fitting._solver._forward);
    ParametricLaw, LawEnsemble and the numerical optimum all call it."""
    return E + A * n ** -alpha + B * d_eff ** -beta


def mix_matrix(mix, domains: Sequence[str], n_rows: int | None = None) -> np.ndarray | None:
    """Normalise a mix argument to an (M, n_domains) float array (or None).

    `mix` may be None, a dict {domain: weight} (one mix), a 1-D array (one mix), or an (M, n_domains) array
    whose columns follow `domains`. A single mix is broadcast to `n_rows` rows when given.
    """
    if mix is None:
        return None
    if isinstance(mix, Mapping):
        unknown = set(mix) - set(domains)
        if unknown:
            raise ValueError(f"mix names unknown domains {sorted(unknown)}; known: {list(domains)}")
        mix = np.array([float(mix.get(d, 0.0)) for d in domains])
    arr = np.asarray(mix, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    if domains and arr.shape[1] != len(domains):
        raise ValueError(f"mix has {arr.shape[1]} columns, expected {len(domains)} ({list(domains)})")
    if n_rows is not None and arr.shape[0] == 1 and n_rows > 1:
        arr = np.repeat(arr, n_rows, axis=0)
    return arr


@dataclass(frozen=True)
class ParametricLaw:
    """L(N, D) = E + A*N**-alpha + B*D_eff**-beta for one skill (see module docstring)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    transfer: dict[str, float] | None = None  # None: plain law, D_eff = D

    @property
    def family(self):
        from fitting.families import CHINCHILLA

        return CHINCHILLA

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.transfer) if self.transfer else ()

    def _transfer_factor(self, mix, n_rows: int) -> np.ndarray:
        """T(m) per query row, shape (M,); ones for the plain law or when no mix is given."""
        if self.transfer is None or mix is None:
            return np.ones(n_rows)
        m = mix_matrix(mix, self.domains, n_rows)  # (M, n_domains)
        t = np.array([self.transfer[d] for d in self.domains])
        return m @ t

    def loss(self, n_params, n_tokens, mix=None, unique=None) -> np.ndarray:
        """Predicted loss at each (N, D[, mix]) query point (broadcast), shape (M,); `unique` is ignored (the
        Chinchilla form has no term for repeated data)."""
        n, d = np.broadcast_arrays(np.atleast_1d(np.asarray(n_params, float)),
                                   np.atleast_1d(np.asarray(n_tokens, float)))
        d_eff = d * self._transfer_factor(mix, n.shape[0])
        return law_loss(self.E, self.A, self.B, self.alpha, self.beta, n, d_eff)

    def optimum(self, flops, mix=None, unique=None) -> tuple[np.ndarray, np.ndarray]:
        """(N*, D*) at compute `flops` under C = 6 N D, closed form (Hoffmann et al. 2022, eq. 10)."""
        c = np.atleast_1d(np.asarray(flops, float))
        b_eff = self.B * self._transfer_factor(mix, 1)[0] ** -self.beta
        g = (self.alpha * self.A / (self.beta * b_eff)) ** (1.0 / (self.alpha + self.beta))
        n_opt = g * (c / FLOPS_PER_PARAM_TOKEN) ** (self.beta / (self.alpha + self.beta))
        return n_opt, c / (FLOPS_PER_PARAM_TOKEN * n_opt)

    @property
    def exponent_a(self) -> float:
        """a in N* ~ C^a: beta / (alpha + beta)."""
        return self.beta / (self.alpha + self.beta)

    def exponent_at(self, flops, mix=None) -> float:
        """The local exponent d log N* / d log C, the same at every C for this form."""
        return self.exponent_a

    def to_dict(self) -> dict:
        out = {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta}
        if self.transfer is not None:
            out["transfer"] = dict(self.transfer)
        return out


@dataclass(frozen=True)
class LawEnsemble:
    """K members of one skill's law (bootstrap refits); every parameter is an array of shape (K,).

    Member k of ensembles of different skills built by `bootstrap_skills` used the same resample of
    runs, so a quantity combining skills (a composition optimum) can be computed member by member.
    """

    E: np.ndarray
    A: np.ndarray
    B: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    transfer: np.ndarray | None = None  # (K, n_domains), transfer[:, own_domain] == 1
    domains: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return int(np.asarray(self.E).shape[0])

    @property
    def family(self):
        from fitting.families import CHINCHILLA

        return CHINCHILLA

    def with_params(self, **arrays) -> LawEnsemble:
        return dataclasses.replace(self, **arrays)

    def member(self, k) -> ParametricLaw:
        transfer = None
        if self.transfer is not None:
            transfer = {d: float(t) for d, t in zip(self.domains, self.transfer[k], strict=True)}
        return ParametricLaw(float(self.E[k]), float(self.A[k]), float(self.B[k]),
                             float(self.alpha[k]), float(self.beta[k]), transfer)

    def _transfer_factor(self, mix, n_rows: int) -> np.ndarray:
        """T_k(m_i), shape (K, M); ones without a transfer vector or mix."""
        if self.transfer is None or mix is None:
            return np.ones((self.size, n_rows))
        m = mix_matrix(mix, self.domains, n_rows)  # (M, n_domains)
        return self.transfer @ m.T  # (K, n_domains) @ (n_domains, M) -> (K, M)

    def loss(self, n_params, n_tokens, mix=None, unique=None) -> np.ndarray:
        """Predicted loss of every member at M query points, shape (K, M) (`unique` ignored)."""
        n, d = np.broadcast_arrays(np.atleast_1d(np.asarray(n_params, float)),
                                   np.atleast_1d(np.asarray(n_tokens, float)))
        d_eff = d[None, :] * self._transfer_factor(mix, n.shape[0])  # (K, M)
        return law_loss(*self.columns(), n[None, :], d_eff)

    def loss_members(self, n_params, n_tokens, mix=None, unique=None) -> np.ndarray:
        """Member k's loss at its own G query points: n_params, n_tokens (K, G) -> (K, G); one mix for all."""
        transfer = self._transfer_factor(mix, 1)  # (K, 1)
        return law_loss(*self.columns(), np.asarray(n_params, float), np.asarray(n_tokens, float) * transfer)

    def columns(self) -> tuple[np.ndarray, ...]:
        """(E, A, B, alpha, beta), each as a (K, 1) column, to broadcast against per-member query points."""
        return tuple(np.asarray(x, float)[:, None] for x in (self.E, self.A, self.B, self.alpha, self.beta))

    def optimum(self, flops, mix=None, unique=None) -> tuple[np.ndarray, np.ndarray]:
        """Per-member (N*, D*) at a scalar compute `flops`, each shape (K,) (closed form, eq. 10)."""
        c = float(flops)
        alpha, beta = np.asarray(self.alpha, float), np.asarray(self.beta, float)
        b_eff = np.asarray(self.B, float) * self._transfer_factor(mix, 1)[:, 0] ** -beta
        g = (alpha * np.asarray(self.A, float) / (beta * b_eff)) ** (1.0 / (alpha + beta))
        n_opt = g * (c / FLOPS_PER_PARAM_TOKEN) ** (beta / (alpha + beta))
        return n_opt, c / (FLOPS_PER_PARAM_TOKEN * n_opt)

    @property
    def exponent_a(self) -> np.ndarray:
        """Per-member a = beta/(alpha+beta), shape (K,)."""
        return np.asarray(self.beta, float) / (np.asarray(self.alpha, float) + np.asarray(self.beta, float))

    def exponent_at(self, flops, mix=None) -> np.ndarray:
        return self.exponent_a

    def params(self) -> dict[str, np.ndarray]:
        return {"E": np.asarray(self.E), "A": np.asarray(self.A), "B": np.asarray(self.B),
                "alpha": np.asarray(self.alpha), "beta": np.asarray(self.beta)}

    def pack(self) -> np.ndarray:
        """Member log-parameters as the ensemble Kalman step moves them, (K, P): log E, A, B, alpha, beta, then
        log transfer (if any)."""
        cols = [np.log(np.asarray(getattr(self, p), float)) for p in ("E", "A", "B", "alpha", "beta")]
        out = np.stack(cols, axis=1)
        if self.transfer is not None:
            out = np.concatenate([out, np.log(np.asarray(self.transfer, float) + TRANSFER_EPS)], axis=1)
        return out

    def unpack(self, theta: np.ndarray) -> LawEnsemble:
        """The ensemble whose packed parameters are `theta` (pack's inverse; the own domain stays at 1)."""
        new = {p: np.exp(theta[:, i]) for i, p in enumerate(("E", "A", "B", "alpha", "beta"))}
        if self.transfer is not None:
            own = np.isclose(np.asarray(self.transfer), 1.0).all(0)  # the fixed own-domain column
            t = np.maximum(np.exp(theta[:, 5:]) - TRANSFER_EPS, 0.0)
            t[:, own] = 1.0
            new["transfer"] = t
        return self.with_params(**new)

    def take(self, index) -> LawEnsemble:
        """The members at `index`, as an ensemble."""
        index = np.asarray(index)
        arrays = {p: np.asarray(v)[index] for p, v in self.params().items()}
        if self.transfer is not None:
            arrays["transfer"] = np.asarray(self.transfer)[index]
        return self.with_params(**arrays)


def interval(samples: np.ndarray, level: float = 0.95, point: float | None = None) -> tuple[float, float]:
    """Bootstrap interval of 1-D `samples` (NaNs ignored).

    Without `point`: the equal-tailed percentile interval. With the point estimate `point`: the
    bias-corrected percentile interval (Efron 1981): z0 = Phi^-1(fraction of samples below `point`), and
    the quantiles Phi(2 z0 +- z_{(1+level)/2}) replace (1 -+ level)/2. It corrects the median bias of
    extrapolated quantities such as N*(C) 100x beyond the data, where the plain percentile interval
    under-covers (tests/fitting/test_coverage.py).
    """
    x = np.asarray(samples, float)
    x = x[np.isfinite(x)]
    tails = np.array([(1 - level) / 2, (1 + level) / 2])
    if point is not None and np.isfinite(point) and x.size:
        frac = np.clip(np.mean(x < point), 1.0 / (x.size + 1), x.size / (x.size + 1))
        z0 = ndtri(frac)
        tails = ndtr(2 * z0 + ndtri(tails))
    if not x.size:
        return float("nan"), float("nan")
    lo, hi = np.quantile(x, tails)
    return float(lo), float(hi)
