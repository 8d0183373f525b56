"""Plots of fitted laws (matplotlib, Agg backend, PNG files).

- `plot_isoflop`: loss vs N per budget group (points), the fitted law along each isoFLOP line, and the
  law's optimum per budget, one panel per skill.
- `plot_optimum`: N*(C) with its 95% band per skill, the isoFLOP parabola minima and the target budgets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fitting.conventions import FLOPS_PER_PARAM_TOKEN  # noqa: E402
from fitting.isoflop import group_budgets  # noqa: E402
from fitting.law import LawEnsemble, ParametricLaw  # noqa: E402
from fitting.table import RunsTable  # noqa: E402
from skillscale.atomic import atomic_open  # noqa: E402


def _save(fig, path) -> None:
    """Write atomically: temp file in the same directory, then rename."""
    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_isoflop(table: RunsTable, laws: Mapping[str, ParametricLaw], path) -> None:
    """One panel per skill: observed loss vs N per budget, the law along each isoFLOP line."""
    skills = list(laws)
    fig, axes = plt.subplots(1, len(skills), figsize=(5 * len(skills), 4), squeeze=False)
    for ax, s in zip(axes[0], skills, strict=True):
        r = table.rows(s)
        labels = group_budgets(table.flops[r])
        colors = plt.cm.viridis(np.linspace(0, 0.9, labels.max() + 1))
        for g in range(labels.max() + 1):
            sel = labels == g
            c = float(np.exp(np.log(table.flops[r][sel]).mean()))
            n_grid = np.geomspace(table.n_params[r][sel].min() / 2, table.n_params[r][sel].max() * 2, 100)
            ax.scatter(table.n_params[r][sel], table.loss[r][sel], color=colors[g], s=14)
            ax.plot(n_grid, laws[s].loss(n_grid, c / (FLOPS_PER_PARAM_TOKEN * n_grid)), color=colors[g],
                    lw=1, label=f"C={c:.1e}")
            n_opt, d_opt = laws[s].optimum(c)
            ax.plot(n_opt, laws[s].loss(n_opt, d_opt), "x", color="k")
        ax.set(xscale="log", xlabel="N (parameters)", ylabel="loss (nats/token)",
               title=f"{s}: isoFLOP curves")
        ax.legend(fontsize=7)
    _save(fig, path)


def plot_optimum(ensembles: Mapping[str, LawEnsemble], flops_range: Sequence[float], path,
                 points: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                 target_flops: Sequence[float] = ()) -> None:
    """N*(C) per skill: median and 95% band over ensemble members; optional (C, N*) points to overlay."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    grid = np.geomspace(min(flops_range), max(flops_range), 60)
    for s, ens in ensembles.items():
        n_opt = np.stack([ens.optimum(c)[0] for c in grid], axis=1)  # (K, 60)
        lo, mid, hi = np.nanquantile(n_opt, [0.025, 0.5, 0.975], axis=0)
        (line,) = ax.plot(grid, mid, label=s)
        ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.2)
        if points and s in points:
            ax.plot(*points[s], "o", color=line.get_color(), ms=4)
    for c in target_flops:
        ax.axvline(c, color="grey", ls=":", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="C (FLOPs, 6ND)", ylabel="N* (parameters)",
           title="compute-optimal N with 95% band")
    ax.legend(fontsize=8)
    _save(fig, path)
