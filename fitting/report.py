"""The fit report: per-skill laws, 95% intervals, compute optima and predictions as plain data (-> JSON).

`fit_report` is what `skillscale fit --json` writes and what the scheduler reuses for the "laws" block of
result.json:

    {"conventions": {...}, "law": LAW,
     "bootstrap": {"n_boot": K, "method": ..., "seed": S},
     "skills": {SKILL: {"law": {...}, "ci95": {param: [lo, hi]}, "exponent_a": a, "exponent_a_ci95": [lo, hi],
                        "residual_std": sigma, "n_points": n, "excluded": [...],
                        "optimum": [{"flops", "n_params", "n_params_ci95", "n_tokens", "n_tokens_ci95"}],
                        "families": {FAMILY: {"weight", "holdout_rmse", "lack_of_fit", "surprise", "log_score", "note",
                                              "law": {...}, "optimum": [{"flops", "n_params", "n_params_ci95"}]}}}},
     "predictions": [{"skill", "n_params", "n_tokens", "loss", "loss_pi95"}]}       (with a plan to predict)

LAW is `auto` (every applicable family, weighted by how well each predicts the largest runs from the others:
fitting/averaging.py), one family (chinchilla, farseer, data_constrained; `parametric` is chinchilla) or
`isoflop` (Approach 2: {k, a} of N* = k C^a). For the parametric laws, "law", "ci95" and "residual_std" are
the leading family's (the largest weight); "optimum" and "exponent_a" come from the ensemble of all families
by weight, so their intervals hold the doubt about the form; "families" gives each family's own answer.
Optima of a mixture-aware skill are read at the table's mean mix ("mix"); optima assume fresh data (no
repetition). Intervals are 95% bias-corrected bootstrap percentile intervals (fitting.law.interval; for a
mixture, fitting.averaging.mixture_interval); prediction intervals hold measurement noise, the parameters
and the family (fitting.averaging.prediction_interval).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fitting.averaging import AUTO, member_families, mixture_interval, prediction_interval, single_blocks
from fitting.conventions import conventions_dict
from fitting.families import FAMILIES
from fitting.isoflop import bootstrap_isoflop, fit_isoflop
from fitting.law import LawEnsemble, interval
from fitting.table import RunsTable, bootstrap_skill_laws, fit_skill_laws
from skillscale.errors import InputError

PARAMETRIC_ALIAS = "parametric"  # the Chinchilla family, under its earlier name
LAWS = (AUTO, *FAMILIES, PARAMETRIC_ALIAS, "isoflop")


def loss_interval(ensemble: LawEnsemble, n_params, n_tokens, mix=None, level: float = 0.95):
    """Equal-tailed interval of the predicted loss at each query point: (lo (M,), hi (M,))."""
    losses = ensemble.loss(n_params, n_tokens, mix)  # (K, M)
    return (np.nanquantile(losses, (1 - level) / 2, axis=0), np.nanquantile(losses, (1 + level) / 2, axis=0))


def _optimum_rows(point, samples, target_flops, extra=None, ci=None) -> list[dict]:
    """One row per target compute: point (N*, D*) and intervals; `ci(samples, point)` reads an interval."""
    ci = ci or (lambda x, p, c, which: interval(x, point=p))
    rows = []
    for c in target_flops:
        n_hat, d_hat = point(c)
        n_s, d_s = samples(c)
        n_hat, d_hat = float(np.ravel(n_hat)[0]), float(np.ravel(d_hat)[0])
        row = {"flops": float(c), "n_params": n_hat, "n_params_ci95": list(ci(n_s, n_hat, c, 0)),
               "n_tokens": d_hat, "n_tokens_ci95": list(ci(d_s, d_hat, c, 1))}
        rows.append({**row, **(extra or {})})
    return rows


def _parametric_report(table, law, n_boot, target_flops, seed, keep) -> dict:
    try:
        averages = fit_skill_laws(table, law)
        ensembles = bootstrap_skill_laws(table, averages, n_boot, seed)
    except InputError as exc:
        raise InputError(f"{table.path}: {exc}") from None
    if keep is not None:
        keep.update(fits={s: a.leading for s, a in averages.items()}, ensembles=ensembles, averages=averages)
    skills = {}
    for s in table.skills:
        mix = table.mix[table.rows(s)].mean(axis=0) if ensembles[s].transfer is not None else None
        skills[s] = averaged_skill_report(averages[s], ensembles[s], target_flops, mix)
    return skills


def averaged_skill_report(avg, ens, target_flops: Sequence[float], mix=None) -> dict:
    """One skill's block of the report (module docstring) from its families' fits and the (mixed) ensemble;
    a mixture-aware law's optima are read at `mix` (the mean mix of its runs). result.json uses it too."""
    leading = avg.leading
    families = member_families(ens)
    parts = {part.family.name: part for _, part in single_blocks(ens)}
    out = parametric_skill_report(leading, parts[leading.family.name], target_flops, mix)
    out["law"] = {"family": leading.family.name, **out["law"]}

    def family_points(c, which):  # each family's own N* (which=0) or D* (1) at compute c
        return {f: float(fit.law.optimum(c, mix)[which][0]) for f, fit in avg.fits.items()}

    extra = None if ens.transfer is None else {"mix": {d: float(m) for d, m in zip(ens.domains, mix, strict=True)}}
    out["optimum"] = _optimum_rows(lambda c: avg.optimum_point(c, mix), lambda c: ens.optimum(c, mix), target_flops,
                                   extra, lambda x, _, c, which: mixture_interval(x, families, family_points(c, which)))
    c_max = max(target_flops)
    a_points = {f: float(fit.law.exponent_at(c_max, mix)) for f, fit in avg.fits.items()}
    out["exponent_a"] = float(sum(w * a_points[f] for f, w in avg.weights.items()))
    out["exponent_a_ci95"] = list(mixture_interval(np.asarray(ens.exponent_at(c_max, mix), float), families, a_points))
    out["families"] = {}
    for name, score in avg.scores.items():
        block = {k: v for k, v in score.to_dict().items() if k != "family"}
        if name in avg.fits:
            law = avg.fits[name].law
            block["law"] = {"family": name, **law.to_dict()}
            block["optimum"] = [_family_optimum(law, parts[name], c, mix) for c in target_flops]
        out["families"][name] = block
    return out


def _family_optimum(law, members, flops: float, mix) -> dict:
    """One family's own N* at `flops`, with the interval of its own members (None with fewer than 10)."""
    n_hat = float(law.optimum(flops, mix)[0][0])
    ci = list(interval(members.optimum(flops, mix)[0], point=n_hat)) if members.size >= 10 else None
    return {"flops": float(flops), "n_params": n_hat, "n_params_ci95": ci}


def parametric_skill_report(fit, ens, target_flops: Sequence[float], mix=None) -> dict:
    """One family's block: its point fit and its own members (module docstring)."""
    point = fit.law.to_dict()
    params = ens.params()
    readable = {k: v for k, v in point.items() if k not in ("transfer", "family")}
    ci = {name: list(interval(params[name], point=readable[name])) for name in readable if name in params}
    extra = None
    if ens.transfer is not None:
        for j, dom in enumerate(ens.domains):
            ci[f"transfer/{dom}"] = list(interval(ens.transfer[:, j], point=point["transfer"][dom]))
        extra = {"mix": {d: float(m) for d, m in zip(ens.domains, mix, strict=True)}}
    else:
        mix = None
    c_max = max(target_flops) if len(target_flops) else 1e21
    a_point = float(fit.law.exponent_at(c_max, mix))
    return {
        "law": fit.law.to_dict(), "ci95": ci,
        "exponent_a": a_point,
        "exponent_a_ci95": list(interval(np.broadcast_to(ens.exponent_at(c_max, mix), (ens.size,)), point=a_point)),
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


def fit_report(table: RunsTable, law: str = AUTO, n_boot: int = 200,
               target_flops: Sequence[float] = (), exclude_top: int = 0, seed: int = 0,
               keep: dict | None = None) -> dict:
    """Fit every skill of `table` and return the report dict described in the module docstring.

    `keep`: optional dict that receives the parametric point fits and ensembles ("fits", "ensembles").
    """
    if law not in LAWS:
        raise InputError(f"law must be one of {', '.join(LAWS)}, got {law!r}")
    law = "chinchilla" if law == PARAMETRIC_ALIAS else law
    if n_boot < 10:
        raise InputError(f"--bootstrap must be at least 10 resamples for a 95% interval, got {n_boot}")
    if exclude_top < 0:
        raise InputError(f"--exclude-top must be >= 0, got {exclude_top}")
    if any(not np.isfinite(c) or c <= 0 for c in target_flops):
        raise InputError("--target-flops values must be positive and finite")
    if not target_flops:  # default: the largest budget in the table and 100x beyond it
        target_flops = [float(table.flops.max()), 100.0 * float(table.flops.max())]
    if exclude_top and law != "isoflop":
        table = table.without_top(exclude_top)
    if law != "isoflop":
        skills = _parametric_report(table, law, n_boot, target_flops, seed, keep)
        method = "residual bootstrap (run draws shared across skills), multi-start refits"
        if law == AUTO:
            method += "; members drawn from the families by weight"
    else:
        skills = _isoflop_report(table, n_boot, target_flops, seed)
        method = "pairs bootstrap of runs within each budget"
    return {"conventions": conventions_dict(), "law": law,
            "bootstrap": {"n_boot": int(n_boot), "method": method, "seed": int(seed)},
            "skills": skills}


def predict_report(plan: dict, averages: dict, ensembles: dict, seed: int = 0) -> list[dict]:
    """Predicted loss and 95% prediction interval of every plan row for every skill it names (or all skills).

    `plan`: arrays n_params, n_tokens, optional unique (n_unique_tokens), mix (rows, domains), skill."""
    rows = []
    skills = plan.get("skill")
    for skill, ens in ensembles.items():
        pick = np.arange(plan["n_params"].size) if skills is None else np.flatnonzero(skills == skill)
        if not pick.size:
            continue
        mix = None if plan.get("mix") is None or ens.transfer is None else plan["mix"][pick]
        unique = None if plan.get("unique") is None else plan["unique"][pick]
        med, lo, hi = prediction_interval(ens, averages[skill], plan["n_params"][pick], plan["n_tokens"][pick],
                                          mix, unique, seed=seed)
        point = averages[skill].predict_point(plan["n_params"][pick], plan["n_tokens"][pick], mix, unique)
        for i, j in enumerate(pick):
            rows.append((int(j), {"skill": skill, "n_params": float(plan["n_params"][j]),
                                  "n_tokens": float(plan["n_tokens"][j]), "loss": float(point[i]),
                                  "loss_pi95": [float(lo[i]), float(hi[i])]}))
    return [row for _, row in sorted(rows, key=lambda r: r[0])]  # in the plan's order
