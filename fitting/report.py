"""The fit report: per-skill laws, 95% intervals and compute optima as plain data (-> JSON).

`fit_report` is what `skillscale fit --json` writes and what the scheduler reuses for the "laws" block of
result.json:

    {"conventions": {...},
     "bootstrap": {"n_boot": K, "method": ..., "seed": S},
     "skills": {SKILL: {"law": {...}, "ci95": {param: [lo, hi]}, "exponent_a": a, "exponent_a_ci95": [lo, hi],
                        "residual_std": sigma, "n_points": n, "excluded": [...],
                        "optimum": [{"flops", "n_params", "n_params_ci95", "n_tokens", "n_tokens_ci95"}]}}}

Values are point estimates; intervals are 95% bias-corrected bootstrap percentile intervals
(fitting.law.interval). For `law="parametric"`
the law block is {E, A, B, alpha, beta} (+ transfer for a mixture-aware skill, whose optima are given at
the table's mean mix, reported as "mix"); for `law="isoflop"` it is {k, a} of N* = k C^a.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fitting.conventions import conventions_dict
from fitting.isoflop import bootstrap_isoflop, fit_isoflop
from fitting.law import LawEnsemble, interval
from fitting.table import RunsTable, bootstrap_skills, fit_skills
from skillscale.errors import InputError

LAWS = ("parametric", "isoflop")


def loss_interval(ensemble: LawEnsemble, n_params, n_tokens, mix=None, level: float = 0.95):
    """Equal-tailed interval of the predicted loss at each query point: (lo (M,), hi (M,))."""
    losses = ensemble.loss(n_params, n_tokens, mix)  # (K, M)
    return (np.nanquantile(losses, (1 - level) / 2, axis=0), np.nanquantile(losses, (1 + level) / 2, axis=0))


def _optimum_rows(point, samples, target_flops, extra=None) -> list[dict]:
    rows = []
    for c in target_flops:
        n_hat, d_hat = point(c)
        n_s, d_s = samples(c)
        n_hat, d_hat = float(np.ravel(n_hat)[0]), float(np.ravel(d_hat)[0])
        row = {"flops": float(c), "n_params": n_hat, "n_params_ci95": list(interval(n_s, point=n_hat)),
               "n_tokens": d_hat, "n_tokens_ci95": list(interval(d_s, point=d_hat))}
        rows.append({**row, **(extra or {})})
    return rows


def _parametric_report(table, n_boot, target_flops, exclude_top, seed, keep) -> dict:
    try:
        fits = fit_skills(table, exclude_top=exclude_top)
        ensembles = bootstrap_skills(table, n_boot, seed, exclude_top=exclude_top, fits=fits)
    except InputError as exc:
        raise InputError(f"{table.path}: {exc}") from None
    if keep is not None:
        keep.update(fits=fits, ensembles=ensembles)
    skills = {}
    for s in table.skills:
        mix = table.mix[table.rows(s)].mean(axis=0) if ensembles[s].transfer is not None else None
        skills[s] = parametric_skill_report(fits[s], ensembles[s], target_flops, mix)
    return skills


def parametric_skill_report(fit, ens: LawEnsemble, target_flops: Sequence[float], mix=None) -> dict:
    """One skill's block of the report (module docstring) from its point fit and bootstrap ensemble; a
    mixture-aware law's optima are read at `mix` (the mean mix of its runs). The scheduler's result.json
    uses it with the study's own fits."""
    point = fit.law.to_dict()
    ci = {name: list(interval(v, point=point[name])) for name, v in ens.params().items()}
    extra = None
    if ens.transfer is not None:
        for j, dom in enumerate(ens.domains):
            ci[f"transfer/{dom}"] = list(interval(ens.transfer[:, j], point=point["transfer"][dom]))
        extra = {"mix": {d: float(m) for d, m in zip(ens.domains, mix, strict=True)}}
    else:
        mix = None
    return {
        "law": fit.law.to_dict(), "ci95": ci,
        "exponent_a": fit.law.exponent_a,
        "exponent_a_ci95": list(interval(ens.exponent_a, point=fit.law.exponent_a)),
        "residual_std": fit.residual_std, "n_points": fit.n_points, "excluded": list(fit.excluded),
        "optimum": _optimum_rows(lambda c: fit.law.optimum(c, mix), lambda c: ens.optimum(c, mix), target_flops, extra),
    }


def _isoflop_report(table, n_boot, target_flops, seed) -> dict:
    skills = {}
    for i, s in enumerate(table.skills):
        r = table.rows(s)
        args = (table.n_params[r], table.n_tokens[r], table.loss[r])
        try:
            fit = fit_isoflop(*args, flops=table.flops[r])
            ens = bootstrap_isoflop(*args, flops=table.flops[r], n_boot=n_boot, seed=seed + i)
        except InputError as exc:
            raise InputError(f"{table.path}: skill {s!r}: {exc}") from None
        skills[s] = {
            "law": {"k": float(fit.k[0]), "a": float(fit.a[0])},
            "ci95": {"k": list(interval(ens.k, point=fit.k[0])), "a": list(interval(ens.a, point=fit.a[0]))},
            "exponent_a": float(fit.a[0]), "exponent_a_ci95": list(interval(ens.a, point=fit.a[0])),
            "budgets": fit.budgets.tolist(), "n_params_per_budget": fit.n_opt_per_budget[0].tolist(),
            "optimum": _optimum_rows(fit.optimum, ens.optimum, target_flops),
        }
    return skills


def fit_report(table: RunsTable, law: str = "parametric", n_boot: int = 200,
               target_flops: Sequence[float] = (), exclude_top: int = 0, seed: int = 0,
               keep: dict | None = None) -> dict:
    """Fit every skill of `table` and return the report dict described in the module docstring.

    `keep`: optional dict that receives the parametric point fits and ensembles ("fits", "ensembles").
    """
    if law not in LAWS:
        raise InputError(f"law must be one of {', '.join(LAWS)}, got {law!r}")
    if n_boot < 10:
        raise InputError(f"--bootstrap must be at least 10 resamples for a 95% interval, got {n_boot}")
    if exclude_top < 0:
        raise InputError(f"--exclude-top must be >= 0, got {exclude_top}")
    if any(not np.isfinite(c) or c <= 0 for c in target_flops):
        raise InputError("--target-flops values must be positive and finite")
    if not target_flops:  # default: the largest budget in the table and 100x beyond it
        target_flops = [float(table.flops.max()), 100.0 * float(table.flops.max())]
    if law == "parametric":
        skills = _parametric_report(table, n_boot, target_flops, exclude_top, seed, keep)
        method = "residual bootstrap (run draws shared across skills), multi-start refits"
    else:
        skills = _isoflop_report(table, n_boot, target_flops, seed)
        method = "pairs bootstrap of runs within each budget"
    return {"conventions": conventions_dict(), "law": law,
            "bootstrap": {"n_boot": int(n_boot), "method": method, "seed": int(seed)},
            "skills": skills}
