"""Mixture-aware laws: runs at one training mix inform the law at every other mix.

For skill s the effective data is D * T_s(m), T_s(m) = sum_j t_j m_j with t_own = 1 fixed and t_j >= 0
fitted (t_j = exp(tau_j)), jointly with (E, A, B, alpha, beta) over all runs of the skill:

    L_s(N, D, m) = E + A N^-alpha + B (D * T_s(m))^-beta.

A token of domain j is worth t_j tokens of the skill's own domain. The optimum then depends on the mix
through B' = B T_s(m)^-beta (fitting/law.py).

Fallback (`fit_mixture`): when every mix has enough runs of its own (>= `min_runs_per_mix`, default 8)
and the joint fit is poor -- its robust residual std exceeds `poor_ratio` (1.5) times the median of the
per-mix fits' -- the per-mix plain laws are returned as the recommended model, since the linear transfer
form is then evidently wrong for this skill.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fitting.parametric import ParametricFit, fit_parametric


@dataclass(frozen=True)
class MixtureFit:
    joint: ParametricFit  # mixture-aware law over all runs
    per_mix: dict[tuple[float, ...], ParametricFit] = field(default_factory=dict)  # mix -> plain law
    use_per_mix: bool = False  # True when the fallback is recommended (see module docstring)


def fit_mixture(n_params, n_tokens, loss, mix, domains, own_domain, *, min_runs_per_mix: int = 8,
                poor_ratio: float = 1.5, exclude_top: int = 0, huber_delta: float = 1e-3) -> MixtureFit:
    """Joint mixture-aware fit, plus per-mix fits where every mix has enough runs."""
    mix = np.asarray(mix, float)
    joint = fit_parametric(n_params, n_tokens, loss, mix=mix, domains=domains, own_domain=own_domain,
                           exclude_top=exclude_top, huber_delta=huber_delta)
    keys = [tuple(np.round(row, 6)) for row in mix]
    groups = {k: np.array([i for i, key in enumerate(keys) if key == k]) for k in dict.fromkeys(keys)}
    if len(groups) < 2 or min(g.size for g in groups.values()) < min_runs_per_mix:
        return MixtureFit(joint)
    n, d, y = (np.asarray(x, float) for x in (n_params, n_tokens, loss))
    per_mix = {k: fit_parametric(n[g], d[g], y[g], huber_delta=huber_delta) for k, g in groups.items()}
    typical = float(np.median([f.residual_std for f in per_mix.values()]))
    return MixtureFit(joint, per_mix, joint.residual_std > poor_ratio * typical)
