"""Synthetic scaling-law data for the fitting tests: known laws, isoFLOP designs, log-normal noise."""

from __future__ import annotations

import numpy as np

from fitting.law import ParametricLaw

CHINCHILLA = ParametricLaw(1.69, 406.4, 410.7, 0.34, 0.28)  # Hoffmann et al. 2022, eq. 10
BESIROGLU = ParametricLaw(1.82, 482.01, 2085.43, 0.3478, 0.3658)  # Besiroglu et al. 2024 refit
DATA_HUNGRY = ParametricLaw(2.1, 250.0, 3000.0, 0.30, 0.40)  # a third shape: a = 0.57

BUDGETS = np.geomspace(1e18, 1e20, 5)  # FLOPs
C_TARGET = 1e22  # 100x beyond the largest budget


def isoflop_design(law: ParametricLaw, budgets=BUDGETS, n_sizes: int = 7, spread: float = 6.0):
    """n_sizes model sizes per budget, log-spaced over [N*/spread, N*·spread] around the law's optimum."""
    n, d = [], []
    for c in budgets:
        n_opt = law.optimum(c)[0][0]
        for f in np.geomspace(1 / spread, spread, n_sizes):
            n.append(n_opt * f)
            d.append(c / (6 * n_opt * f))
    return np.array(n), np.array(d)


def noisy_loss(law: ParametricLaw, n, d, sigma: float, seed: int, mix=None):
    """Loss with multiplicative log-normal noise of log-std sigma."""
    rng = np.random.default_rng(seed)
    return law.loss(n, d, mix) * np.exp(rng.normal(0.0, sigma, np.size(n)))
