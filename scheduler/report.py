"""`skillscale report STUDY_DIR`: plots and an HTML page for a study (finished or in progress).

    skillscale report studies/quickstart            # -> studies/quickstart/report/index.html

Refits the laws from runs.parquet (the same fit the controller uses) and writes, atomically:
  isoflop.png      loss vs N per skill, runs coloured by budget, the fitted law along isoFLOP lines
  optimum.png      N*(C) per skill with its 95% band, targets marked
  composition.png  the validation-composition what-if: N*(C_target) as the skill weights move
  runs.png         the runs in (N, D) space, coloured by the order they were proposed
  index.html       the plots, the targets with intervals, the laws and the runs table
"""

from __future__ import annotations

import argparse
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fitting.conventions import FLOPS_PER_PARAM_TOKEN  # noqa: E402
from fitting.optimum import composition_whatif  # noqa: E402
from fitting.plots import plot_optimum  # noqa: E402
from scheduler.config import StudyConfig, load_study_config  # noqa: E402
from scheduler.estimates import Estimates, fit_inputs, precision_text, refit  # noqa: E402
from scheduler.ledger import Ledger, read_result  # noqa: E402
from skillscale.atomic import atomic_write_bytes, atomic_write_text  # noqa: E402
from skillscale.errors import InputError  # noqa: E402


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="plots and an HTML page for a study")
    p.add_argument("study_dir")
    p.add_argument("--out", help="output folder (default: STUDY_DIR/report)")
    p.set_defaults(func=cmd_report)


def _save(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_isoflop_runs(cfg: StudyConfig, rows: list[dict], est: Estimates, path: Path) -> None:
    """Per skill: observed loss vs N coloured by log C; the law along isoFLOP lines at 4 budgets."""
    data = fit_inputs(cfg, rows)
    flops = FLOPS_PER_PARAM_TOKEN * data["n_params"] * data["n_tokens"]
    fig, axes = plt.subplots(1, len(cfg.skills), figsize=(5.6 * len(cfg.skills), 4.2), squeeze=False,
                             constrained_layout=True)
    norm = matplotlib.colors.LogNorm(flops.min(), flops.max())
    levels = np.geomspace(flops.min(), flops.max(), 4)
    for ax, skill in zip(axes[0], cfg.skills, strict=True):
        sc = ax.scatter(data["n_params"], data["loss"][skill], c=flops, norm=norm, cmap="viridis", s=12)
        law = est.fits[skill].law
        for c in levels:
            n_lo, n_hi = cfg.n_bounds(c)
            n = np.geomspace(float(n_lo), float(n_hi), 80)
            mix = cfg.mix.fixed if cfg.mix.space == "fixed" else None
            ax.plot(n, law.loss(n, c / (FLOPS_PER_PARAM_TOKEN * n), mix if law.transfer else None),
                    color=plt.cm.viridis(norm(c)), lw=1.2)
            n_opt, d_opt = law.optimum(c)
            if cfg.n_params.lo / 10 <= n_opt[0] <= cfg.n_params.hi * 10:  # degenerate fits put it far away
                ax.plot(n_opt, law.loss(n_opt, d_opt), "kx")
        ax.set(xscale="log", xlabel="N (non-embedding params)", ylabel="loss (nats/token)", title=f"{skill}")
        fig.colorbar(sc, ax=ax, label="C = 6ND (FLOPs)")
    _save(fig, path)


def _identifiable_members(ens, flops_range) -> np.ndarray:
    """Members whose N*(C) is finite and positive at both ends of the range."""
    with np.errstate(all="ignore"):
        ns = [ens.optimum(c)[0] for c in flops_range]
    return np.logical_and.reduce([np.isfinite(n) & (n > 0) & (n < 1e30) for n in ns])


def plot_optimum_robust(est: Estimates, flops_range, path: Path, target_flops) -> None:
    """N*(C) bands over the members with a finite optimum; a note instead where no member has one."""
    kept = {}
    for skill, ens in est.ensembles.items():
        mask = _identifiable_members(ens, flops_range)
        if mask.mean() >= 0.5:  # a band over a minority of members would be misleading
            arrays = {k: np.asarray(v)[mask] for k, v in ens.params().items()}
            if ens.transfer is not None:
                arrays["transfer"] = np.asarray(ens.transfer)[mask]
            kept[skill] = ens.with_params(**arrays)
    if kept:
        plot_optimum(kept, flops_range, path, target_flops=target_flops)
        return
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.text(0.5, 0.5, "N*(C) is not identifiable from these runs:\nthe fitted laws put the optimum at 0 or infinity",
            ha="center", va="center")
    ax.axis("off")
    _save(fig, path)


def plot_runs(cfg: StudyConfig, rows: list[dict], path: Path) -> None:
    """Runs in (N, D) space coloured by proposal order, with isoFLOP lines."""
    rows = sorted(rows, key=lambda r: r.get("trial_number", 0))
    n = np.array([r["n_params"] for r in rows], float)
    d = np.array([r["n_tokens"] for r in rows], float)
    order = np.arange(len(rows))
    ok = np.array([r["status"] == "ok" for r in rows])
    fig, ax = plt.subplots(figsize=(6, 4.8))
    sc = ax.scatter(n[ok], d[ok], c=order[ok], cmap="plasma", s=16, label="ok")
    if (~ok).any():
        ax.scatter(n[~ok], d[~ok], marker="x", color="red", s=30, label="diverged/failed")
    for c in np.geomspace(cfg.min_run_flops, cfg.max_run_flops, 4):
        nn = np.geomspace(cfg.n_params.lo, cfg.n_params.hi, 50)
        ax.plot(nn, c / (6 * nn), color="grey", lw=0.6, ls=":")
    ax.set(xscale="log", yscale="log", xlabel="N", ylabel="D (tokens)", title="runs, coloured by proposal order",
           xlim=(cfg.n_params.lo / 1.5, cfg.n_params.hi * 1.5), ylim=(cfg.n_tokens.lo / 1.5, cfg.n_tokens.hi * 1.5))
    fig.colorbar(sc, ax=ax, label="proposal order")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_composition(cfg: StudyConfig, est: Estimates, path: Path) -> list[dict]:
    """N*(C_target) as the validation weight moves from the first skill to the second."""
    if len(cfg.skills) < 2:
        return []
    a, b = cfg.skills[:2]
    c = max(t.flops for t in cfg.targets)
    grid = [{a: float(w), b: float(1 - w)} for w in np.linspace(0, 1, 11)]
    mix = cfg.target_mix(cfg.targets[0]) if cfg.mix.space == "simplex" else None
    rows = composition_whatif({a: est.ensembles[a], b: est.ensembles[b]}, c, grid, mix=mix)
    w = np.array([r["weights"][a] for r in rows])
    mid = np.array([r["n_params"] for r in rows])
    lo, hi = np.array([r["n_params_ci95"] for r in rows]).T
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ok = np.isfinite(mid) & (mid > 0) & np.isfinite(lo) & (lo > 0) & np.isfinite(hi)
    if not ok.any():
        ax.text(0.5, 0.5, "N* of the compositions is not identifiable from these runs", ha="center", va="center")
        ax.axis("off")
        _save(fig, path)
        return rows
    ax.plot(w[ok], mid[ok], "o-")
    ax.fill_between(w[ok], lo[ok], hi[ok], alpha=0.25)
    ax.set(yscale="log", xlabel=f"validation weight on {a} (rest {b})", ylabel=f"N* at C={c:.2g}",
           title="what the validation composition does to N*")
    _save(fig, path)
    return rows


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(study_dir: Path, out: Path) -> Path:
    """Refit and write the plots and index.html; returns the page's path. Degenerate fits (N* at 0 or
    infinity) are expected early in a study and are drawn as notes, so numpy's warnings are silenced."""
    with np.errstate(all="ignore"):
        return _write_report(Path(study_dir), Path(out))


def _write_report(study_dir: Path, out: Path) -> Path:
    if not (study_dir / "study.yaml").exists():
        raise InputError(f"{study_dir}: not a study directory (no study.yaml)")
    cfg = load_study_config(study_dir / "study.yaml")
    if not (study_dir / "runs.parquet").exists():
        raise InputError(f"{study_dir}: no finished runs yet (runs.parquet missing)")
    rows = Ledger(study_dir / "runs.parquet").rows
    est = refit(cfg, rows)
    if est is None:
        raise InputError(f"{study_dir}: too few finished runs ({len(rows)}) to fit the laws")
    out.mkdir(parents=True, exist_ok=True)
    plot_isoflop_runs(cfg, rows, est, out / "isoflop.png")
    c_lo = cfg.min_run_flops
    c_hi = max(t.flops for t in cfg.targets)
    plot_optimum_robust(est, [c_lo, c_hi], out / "optimum.png", [t.flops for t in cfg.targets])
    whatif = plot_composition(cfg, est, out / "composition.png")
    plot_runs(cfg, rows, out / "runs.png")
    result = read_result(study_dir)
    status = (f"stopped: {result['stop_reason']}" if result else "in progress or interrupted")
    spent = sum(r["flops"] for r in rows)
    targets = [[t.name, ", ".join(f"{k}={v:g}" for k, v in t.weights.items()), f"{t.flops:.3g}", f"{t.n_params:.4g}",
                f"[{t.n_params_ci95[0]:.4g}, {t.n_params_ci95[1]:.4g}]", f"{t.n_tokens:.4g}",
                precision_text(t.rel_halfwidth, t.degenerate)] for t in est.targets]
    laws = [[s, *(f"{v:.4g}" for v in (f.law.E, f.law.A, f.law.B, f.law.alpha, f.law.beta)),
             f"{f.law.exponent_a:.3f}", f"{est.noise[s]:.4f}"] for s, f in est.fits.items()]
    runs = [[r.get("trial_number"), r["run_id"], r["status"], f"{r['n_params']:.3g}", f"{r['n_tokens']:.3g}",
             f"{r['flops']:.3g}", *(f"{r.get(f'loss/{s}', float('nan')):.4f}" for s in cfg.skills),
             f"{r.get('wall_s', 0):.1f}", f"{r.get('mfu', 0):.3f}"]
            for r in sorted(rows, key=lambda r: r.get("trial_number", 0))]
    whatif_rows = [[", ".join(f"{k}={v:.1f}" for k, v in w["weights"].items()), f"{w['n_params']:.4g}",
                    f"[{w['n_params_ci95'][0]:.4g}, {w['n_params_ci95'][1]:.4g}]", f"{w['n_params_ratio']:.3f}"]
                   for w in whatif]
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>skillscale: {html.escape(cfg.name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(cfg.name)}</h1>
<p>{html.escape(status)} &middot; {len(rows)} runs &middot; {spent:.3g} FLOPs of a {cfg.compute_cap:.3g} cap
&middot; tolerance ±{100 * cfg.tolerance:.0f}% &middot; backend {html.escape(cfg.backend.name)}</p>
<p>Conventions: N counts non-embedding parameters that take part in matmuls (blocks + output head);
C = 6·N·D; losses in nats/token. Intervals: 95% bias-corrected bootstrap percentile intervals over
runs; ±rel = (hi − lo) / (2·N*).</p>
<h2>Targets</h2>{_table(["target", "weights", "C_target", "N*", "N* 95% CI", "D*", "±rel"], targets)}
<h2>Laws: L = E + A·N^-α + B·D^-β</h2>
{_table(["skill", "E", "A", "B", "α", "β", "a = β/(α+β)", "noise (log std)"], laws)}
<h2>Plots</h2><img src="isoflop.png"><img src="optimum.png"><img src="runs.png">
{'<img src="composition.png">' if whatif else ''}
{('<h2>Validation-composition what-if</h2>' + _table(["weights", "N*", "95% CI", "N* / first"], whatif_rows))
 if whatif else ''}
<h2>Runs</h2>{_table(["#", "run_id", "status", "N", "D", "C", *cfg.skills, "wall s", "MFU"], runs)}
</body></html>"""
    atomic_write_text(out / "index.html", page)
    return out / "index.html"


def cmd_report(args: argparse.Namespace) -> int:
    study_dir = Path(args.study_dir)
    page = write_report(study_dir, Path(args.out) if args.out else study_dir / "report")
    print(f"report: {page}")
    return 0
