"""Ground-truth laws *outside* the fitted family, for simulation: how wrong the Chinchilla form may be.

The fitted form (fitting/law.py) is L = E + A N^-alpha + B D_eff^-beta. A benchmark whose truth is that
same form tests only noise, never misspecification. Two departures seen in published studies:

- `CrossTermLaw` -- the data exponent drifts with model size, a cross term in N and D in the spirit of
  Farseer (Li et al. 2025, arXiv:2506.10972, whose fitted law makes the D term's coefficient and exponent
  functions of N):  L = E + A N^-alpha + B D_eff^-beta(N),  beta(N) = beta * (N / n_ref)^kappa.
- `RepeatedDataLaw` -- a fixed pool of U unique tokens, repeated beyond one epoch, is worth less than
  fresh data: D' = U + U R* (1 - exp(-R / R*)), R = D/U - 1 epochs beyond the first, R* = 15.4 (Muennighoff
  et al. 2023, arXiv:2305.16264, eq. 5 and their fitted R_D*); for D <= U, D' = D.

- `FARSEER_SINGLE_EPOCH` -- a Farseer-form law (fitting/families.py, `farseer`) fitted to real runs: the 27
  single-epoch runs of Muennighoff et al.'s ladder in shared/data/real-ladders (data_constrained_train.csv,
  D <= U), by `fit_parametric(..., family="farseer")`. Its N*(1e22) is 4.4e9 where the Chinchilla form fitted to
  the same runs says 9.4e9: a truth whose departure from the Chinchilla form is the one real runs show.

The first two wrap a base ParametricLaw (with its transfer vector, so they are mixture-aware where it is) and give
loss(N, D, mix) and the compute-optimal optimum(C, mix) under C = 6ND, found numerically on the isoFLOP
line (a log-N grid, then golden-section refinement: both losses are unimodal along that line here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fitting.conventions import FLOPS_PER_PARAM_TOKEN
from fitting.families import FAMILIES
from fitting.law import ParametricLaw

MUENNIGHOFF_R_STAR = 15.4  # Muennighoff et al. 2023: repetitions after which repeated data is ~worthless
GRID_POINTS = 400
GOLDEN_ITERS = 80
INV_PHI = (np.sqrt(5.0) - 1.0) / 2.0


def _optimum_on_isoflop_line(loss_fn, flops: float, n_guess: float) -> tuple[float, float]:
    """argmin over N of loss_fn(N, C/(6N)), searched over n_guess x [1e-3, 1e3]."""
    grid = np.linspace(np.log(n_guess) - np.log(1e3), np.log(n_guess) + np.log(1e3), GRID_POINTS)
    f = lambda log_n: loss_fn(np.exp(log_n), flops / (FLOPS_PER_PARAM_TOKEN * np.exp(log_n)))  # noqa: E731
    i = int(np.argmin(f(grid)))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, GRID_POINTS - 1)]
    for _ in range(GOLDEN_ITERS):
        c, d = b - INV_PHI * (b - a), a + INV_PHI * (b - a)
        if f(np.array([c]))[0] < f(np.array([d]))[0]:
            b = d
        else:
            a = c
    n_opt = float(np.exp(0.5 * (a + b)))
    return n_opt, flops / (FLOPS_PER_PARAM_TOKEN * n_opt)


class _NumericOptimum:
    base: ParametricLaw

    def loss(self, n_params, n_tokens, mix=None) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def optimum(self, flops, mix=None) -> tuple[np.ndarray, np.ndarray]:
        """(N*, D*) arrays at each compute in `flops` (numerical, see the module docstring)."""
        out = [_optimum_on_isoflop_line(lambda n, d: self.loss(n, d, mix), float(c),
                                        float(self.base.optimum(c, mix)[0][0]))
               for c in np.atleast_1d(np.asarray(flops, float))]
        n_opt, d_opt = (np.array(x) for x in zip(*out, strict=True))
        return n_opt, d_opt

    @property
    def transfer(self):
        return self.base.transfer


@dataclass(frozen=True)
class CrossTermLaw(_NumericOptimum):
    """L = E + A N^-alpha + B D_eff^-(beta (N/n_ref)^kappa): the D exponent drifts with N (Farseer-like)."""

    base: ParametricLaw
    kappa: float = 0.006  # d log beta / d log N: a Chinchilla fit to runs <= 1e19 FLOPs is then ~15% low at 1e21
    n_ref: float = 1e8

    def loss(self, n_params, n_tokens, mix=None) -> np.ndarray:
        law = self.base
        n, d = np.broadcast_arrays(np.atleast_1d(np.asarray(n_params, float)),
                                   np.atleast_1d(np.asarray(n_tokens, float)))
        d_eff = d * law._transfer_factor(mix, n.shape[0])
        beta = law.beta * (n / self.n_ref) ** self.kappa
        return law.E + law.A * n ** -law.alpha + law.B * d_eff ** -beta

    def to_dict(self) -> dict:
        return {"form": "cross_term", "base": self.base.to_dict(), "kappa": self.kappa, "n_ref": self.n_ref}


@dataclass(frozen=True)
class RepeatedDataLaw(_NumericOptimum):
    """The base law at the effective data D' of `unique_tokens` repeated (Muennighoff et al. 2023, eq. 5)."""

    base: ParametricLaw
    unique_tokens: float = 1e10
    r_star: float = MUENNIGHOFF_R_STAR

    def effective_tokens(self, n_tokens) -> np.ndarray:
        d = np.asarray(n_tokens, float)
        u = self.unique_tokens
        repeats = np.maximum(d / u - 1.0, 0.0)
        return np.where(d <= u, d, u + u * self.r_star * (1.0 - np.exp(-repeats / self.r_star)))

    def loss(self, n_params, n_tokens, mix=None) -> np.ndarray:
        return self.base.loss(n_params, self.effective_tokens(n_tokens), mix)

    def to_dict(self) -> dict:
        return {"form": "repeated_data", "base": self.base.to_dict(), "unique_tokens": self.unique_tokens,
                "r_star": self.r_star}


# theta = (log E, log A, log B, alpha, beta, nu, kappa): see the module docstring for where it comes from.
FARSEER_SINGLE_EPOCH = FAMILIES["farseer"].law((0.67487106, 8.76918391, 9.20768730, 0.46394170, 0.44065852,
                                                0.03313504, -0.01432424))
