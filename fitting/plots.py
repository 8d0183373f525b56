"""Plots of fitted laws (matplotlib, Agg backend, PNG files, written atomically).

- `plot_isoflop_panels` / `plot_isoflop`: loss vs N, one panel per skill; the fitted law is drawn along
  the isoFLOP line of each budget at which runs were actually trained (budgets within BUDGET_REL_TOL of
  a group's smallest are one group; the curve is at the group's geometric mean), so every coloured point
  sits on, or is scattered about, the curve of its own budget; runs at budgets with too few companions
  for a curve are grey. A legend names each curve's budget and its number of runs.
- `plot_optimum`: N*(C) per skill (and per composite target) with its 95% band over ensemble members,
  the isoFLOP parabola minima and the target budgets. A curve that is not identifiable (an exponent on
  the solver's bound, or fewer than MIN_FINITE_SHARE of members with a finite optimum) gets no band:
  a band there would show the bound or the few members, not the data. Such curves are named in a note.

Axes carry units: N counts non-embedding parameters (fitting/conventions.py), D tokens, C FLOPs (6ND),
loss nats per token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fitting.conventions import FLOPS_PER_PARAM_TOKEN  # noqa: E402
from fitting.isoflop import group_budgets  # noqa: E402
from fitting.law import LawEnsemble, ParametricLaw  # noqa: E402
from fitting.table import RunsTable  # noqa: E402
from skillscale.atomic import atomic_open  # noqa: E402

N_LABEL = "N (non-embedding parameters)"
LOSS_LABEL = "validation loss (nats/token)"
C_LABEL = "C = 6ND (FLOPs)"
MAX_CURVES = 6  # isoFLOP curves per panel: the most populated budgets
BUDGET_REL_TOL = 0.25  # runs whose budgets differ by less share a curve (adaptive designs rarely repeat a C)
MIN_RUNS_PER_CURVE = 2
FAMILY_STYLES = {"chinchilla": "-.", "farseer": ":", "data_constrained": (0, (6, 2, 1, 2))}  # one line per law family
REPEATED_MARK = 4.0  # epochs past which a run is drawn apart: repeated tokens start to be worth less (Muennighoff)
MIN_FINITE_SHARE = 0.8  # members with a finite optimum needed to draw a band (a study stops only at 95%)


def save_figure(fig, path) -> None:
    """Write atomically: temp file in the same directory, then rename."""
    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def curve_budgets(flops: np.ndarray, max_curves: int = MAX_CURVES) -> tuple[np.ndarray, list[int]]:
    """Budget group per run (fitting.isoflop.group_budgets) and the groups that get a curve: those with at
    least MIN_RUNS_PER_CURVE runs, the `max_curves` most populated, in increasing C."""
    labels = group_budgets(flops, rel_tol=BUDGET_REL_TOL)
    counts = np.bincount(labels)
    populated = [g for g in np.argsort(-counts, kind="stable") if counts[g] >= MIN_RUNS_PER_CURVE][:max_curves]
    return labels, sorted(int(g) for g in populated)


def plot_isoflop_panels(runs: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                        laws: Mapping[str, ParametricLaw], path, *, mix: Mapping[str, float] | None = None,
                        n_range: Callable[[float], tuple[float, float]] | None = None,
                        optimum_window: tuple[float, float] | None = None,
                        repeated: Mapping[str, np.ndarray] | None = None) -> None:
    """One panel per skill of `runs` (skill -> (N, D, loss) arrays): observed loss vs N, and the law along
    the isoFLOP line of each curve budget (curve_budgets).

    n_range(C) -> (lowest, highest) N to draw a curve over (default: the budget's runs, widened 2x);
    optimum_window: the law's optimum is marked only inside it (a degenerate fit puts it far away);
    repeated: skill -> mask of the runs that read their data more than ~4 times, drawn hollow and left out of the
    curves' budgets (the curves are the law at unlimited data, which such runs do not have)."""
    skills = list(runs)
    fig, axes = plt.subplots(1, len(skills), figsize=(5.6 * len(skills), 4.2), squeeze=False,
                             constrained_layout=True)
    for ax, skill in zip(axes[0], skills, strict=True):
        n_params, n_tokens, loss = (np.asarray(a, float) for a in runs[skill])
        law = laws[skill]
        rep = np.zeros(n_params.shape, bool) if repeated is None else np.asarray(repeated[skill], bool)
        if rep.any():
            ax.scatter(n_params[rep], loss[rep], facecolors="none", edgecolors="0.4", s=14,
                       label=f"repeated data, > {REPEATED_MARK:g} epochs ({rep.sum()} runs)")
            n_params, n_tokens, loss = n_params[~rep], n_tokens[~rep], loss[~rep]
        flops = FLOPS_PER_PARAM_TOKEN * n_params * n_tokens
        labels, curves = curve_budgets(flops)
        colors = dict(zip(curves, plt.cm.viridis(np.linspace(0, 0.9, max(len(curves), 1))), strict=False))
        mix_arg = mix if law.transfer is not None else None
        other = ~np.isin(labels, curves)
        if other.any():
            ax.scatter(n_params[other], loss[other], color="0.7", s=10, label=f"other budgets ({other.sum()} runs)")
        for g in curves:
            sel = labels == g
            c = float(np.exp(np.log(flops[sel]).mean()))
            lo, hi = n_range(c) if n_range else (n_params[sel].min() / 2, n_params[sel].max() * 2)
            n_grid = np.geomspace(float(lo), float(hi), 100)
            ax.scatter(n_params[sel], loss[sel], color=colors[g], s=14)
            ax.plot(n_grid, law.loss(n_grid, c / (FLOPS_PER_PARAM_TOKEN * n_grid), mix_arg), color=colors[g], lw=1.2,
                    label=f"C ≈ {c:.2g} FLOPs ({sel.sum()} runs)")
            with np.errstate(all="ignore"):
                n_opt, d_opt = law.optimum(c, mix_arg)
            inside = optimum_window is None or optimum_window[0] <= n_opt[0] <= optimum_window[1]
            if np.isfinite(n_opt[0]) and n_opt[0] > 0 and inside:
                ax.plot(n_opt, law.loss(n_opt, d_opt, mix_arg), "kx")
        ax.set(xscale="log", xlabel=N_LABEL, ylabel=LOSS_LABEL, title=f"{skill}: isoFLOP curves (x: law's optimum)")
        ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_isoflop(table: RunsTable, laws: Mapping[str, ParametricLaw], path) -> None:
    """plot_isoflop_panels for a runs table (`skillscale fit --plot`), at the table's mean mix."""
    runs = {s: (table.n_params[table.rows(s)], table.n_tokens[table.rows(s)], table.loss[table.rows(s)])
            for s in laws}
    mix = None
    if table.mix is not None:
        mix = {d: float(m) for d, m in zip(table.domains, table.mix.mean(axis=0), strict=True)}
    plot_isoflop_panels(runs, laws, path, mix=mix)


def identifiable_band(n_opt: np.ndarray) -> bool:
    """Whether (K, G) member optima support a 95% band: enough members finite and positive at every C (a law
    family's member may have no optimum in reach at some C, fitting/families.py)."""
    finite = np.isfinite(n_opt) & (n_opt > 0)
    return bool(finite.mean(axis=0).min() >= MIN_FINITE_SHARE)


def plot_optimum(ensembles: Mapping[str, LawEnsemble], flops_range: Sequence[float], path,
                 points: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                 target_flops: Sequence[float] = (), *, not_identifiable: Mapping[str, str] | None = None,
                 composites: Mapping[str, Callable[[float], np.ndarray]] | None = None,
                 mix: Mapping[str, float] | None = None, n_grid: int = 60,
                 families: Mapping[str, Mapping[str, tuple]] | None = None) -> None:
    """N*(C): median and 95% band over ensemble members per skill, optional (C, N*) points to overlay.

    families: skill -> {family: (point law, weight)}: each law family's own N*(C), a thin line per family,
    so a reader sees where the forms agree and where the band holds their disagreement.

    not_identifiable: skill -> why (e.g. "alpha=2.97 on the solver's bound"): no curve, named in a note.
    composites: name -> (C -> (K,) member N*) for composite targets (dashed, same rule for the band)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    grid = np.geomspace(min(flops_range), max(flops_range), n_grid)
    notes = [f"{name}: {why}" for name, why in (not_identifiable or {}).items()]
    curves = {s: (lambda c, e=ens: e.optimum(c, mix)[0], "-") for s, ens in ensembles.items()
              if s not in (not_identifiable or {})}
    curves.update({name: (fn, "--") for name, fn in (composites or {}).items()})
    drawn = 0
    with np.errstate(all="ignore"):
        for name, (member_optimum, style) in curves.items():
            n_opt = np.stack([np.asarray(member_optimum(c), float) for c in grid], axis=1)  # (K, G)
            if not identifiable_band(n_opt):
                notes.append(f"{name}: N* not finite for most bootstrap members")
                continue
            n_opt = np.where(np.isfinite(n_opt) & (n_opt > 0), n_opt, np.nan)
            lo, mid, hi = np.nanquantile(n_opt, [0.025, 0.5, 0.975], axis=0)
            (line,) = ax.plot(grid, mid, style, label=name)
            ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.2)
            drawn += 1
            for family, (law, weight) in ((families or {}).get(name) or {}).items():
                own = np.array([float(np.ravel(law.optimum(c, mix)[0])[0]) for c in grid])
                ax.plot(grid, own, FAMILY_STYLES.get(family, ":"), lw=1, color=line.get_color(),
                        label=f"{name}: {family} ({weight:.2f})")
            if points and name in points:
                ax.plot(*points[name], "o", color=line.get_color(), ms=4)
    for c in target_flops:
        ax.axvline(c, color="grey", ls=":", lw=1)
    ax.set(xscale="log", yscale="log", xlabel=C_LABEL, ylabel="N* (non-embedding parameters)",
           title="compute-optimal N with 95% band (dotted: target budgets)")
    if notes:
        ax.text(0.02, 0.98, "not identifiable, no band:\n" + "\n".join(notes), transform=ax.transAxes, va="top",
                fontsize=7, color="0.3")
    if drawn:
        ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)
