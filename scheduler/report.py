"""`skillscale report STUDY_DIR`: plots and an HTML page for a study (finished or in progress).

    skillscale report studies/quickstart            # -> studies/quickstart/report/index.html

Refits the laws from runs.parquet (the same fit the controller uses) and writes, atomically:
  isoflop.png      loss vs N per skill, the fitted law along the isoFLOP line of each budget the runs were
                   trained at (legend: budget and runs), runs at lone budgets in grey
  optimum.png      N*(C) per skill and per composite target with its 95% band, target budgets marked; a law
                   that is not identifiable gets no band, only a note saying why
  composition.png  the validation-composition what-if: N*(C_target) as the skill weights move
  runs.png         the runs in (N, D) space, coloured by the order they were proposed
  index.html       the plots, the targets with intervals, the laws and the runs table ("n/a" where a
                   quantity is not identifiable, never inf or nan)
"""

from __future__ import annotations

import argparse
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fitting.averaging import DEGENERATE  # noqa: E402
from fitting.conventions import FLOPS_PER_PARAM_TOKEN  # noqa: E402
from fitting.optimum import composition_whatif  # noqa: E402
from fitting.plots import N_LABEL, REPEATED_MARK, plot_isoflop_panels, plot_optimum, save_figure  # noqa: E402
from scheduler.config import StudyConfig, load_study_config  # noqa: E402
from scheduler.estimates import Estimates, fit_inputs, precision_text, refit, target_optimum  # noqa: E402
from scheduler.ledger import Ledger  # noqa: E402
from scheduler.store import read_result  # noqa: E402
from skillscale.atomic import atomic_write_text  # noqa: E402
from skillscale.errors import InputError  # noqa: E402

MAX_COMPOSITES = 8  # composite targets drawn in optimum.png (all of them are in the page's table)


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="plots and an HTML page for a study")
    p.add_argument("study_dir")
    p.add_argument("--out", help="output folder (default: STUDY_DIR/report)")
    p.set_defaults(func=cmd_report)


def plot_isoflop_runs(cfg: StudyConfig, rows: list[dict], est: Estimates, path: Path) -> None:
    """Per skill: observed loss vs N, the law along the isoFLOP line of each budget the runs were trained at
    (fitting.plots.plot_isoflop_panels), over the N the study allows at that budget."""
    data = fit_inputs(cfg, rows)
    runs = {s: (data["n_params"], data["n_tokens"], data["loss"][s]) for s in cfg.skills}
    mix = cfg.mix.fixed if cfg.mix.space == "fixed" else cfg.target_mix(cfg.targets[0])
    repeated = None
    if data["unique"] is not None:  # runs that read their data many times sit above the curves at unlimited data
        mask = data["n_tokens"] > REPEATED_MARK * data["unique"]
        repeated = {s: mask for s in cfg.skills}
    plot_isoflop_panels(runs, {s: est.fits[s].law for s in cfg.skills}, path, mix=mix,
                        n_range=lambda c: tuple(float(v) for v in cfg.n_bounds(c)),
                        optimum_window=(cfg.n_params.lo / 10, cfg.n_params.hi * 10), repeated=repeated)


def not_identifiable_laws(est: Estimates) -> dict[str, str]:
    """skill -> why its law cannot place N*, for the plots' notes: an exponent of its leading fit on the solver's
    bound, or (with several families) its own target's interval unbounded, naming the families dropped as
    degenerate, e.g. "alpha=2.97 on the solver's bound (chinchilla, dropped); farseer: N* interval unbounded"."""
    out = {}
    for skill, fit in est.fits.items():
        if fit.exponents_at_bounds():
            out[skill] = f"{', '.join(fit.exponents_at_bounds())} on the solver's bound"
            continue
        own = [t for t in est.targets if {k for k, w in t.weights.items() if w > 0} == {skill}]
        if not own or all(np.isfinite(t.rel_halfwidth) for t in own):
            continue
        average = est.averages.get(skill)
        dropped = [f"{sc.note.removeprefix(DEGENERATE)} ({family}, dropped)"
                   for family, sc in (average.scores.items() if average else ()) if sc.note.startswith(DEGENERATE)]
        used = ", ".join(average.fits) if average else "the law"
        out[skill] = "; ".join([*dropped, f"{used}: N* interval unbounded"])
    return out


def plot_optimum_study(cfg: StudyConfig, est: Estimates, flops_range, path: Path) -> int:
    """N*(C) per skill and per composite target (the first MAX_COMPOSITES), bands only where identifiable.
    Returns how many composite targets were left out of the plot."""
    mix = cfg.target_mix(cfg.targets[0]) if cfg.mix.space == "simplex" else None
    composite = [t for t in cfg.targets if sum(w > 0 for w in t.weights.values()) > 1]
    curves = {}
    for target in composite[:MAX_COMPOSITES]:
        degenerate = [s for s, w in target.weights.items() if w > 0 and s in not_identifiable_laws(est)]
        if degenerate:
            continue  # a composition of a degenerate law is as undetermined as the law (named in its note)
        curves[f"target {target.name}"] = (
            lambda c, t=target: target_optimum(est.ensembles, cfg, t.model_copy(update={"flops": float(c)}))[0])
    families = {s: {f: (fit.law, avg.weights[f]) for f, fit in avg.fits.items()}
                for s, avg in est.averages.items() if len(avg.fits) > 1}
    plot_optimum(est.ensembles, flops_range, path, target_flops=sorted({t.flops for t in cfg.targets}),
                 not_identifiable=not_identifiable_laws(est), composites=curves, mix=mix, families=families)
    return max(0, len(composite) - MAX_COMPOSITES)


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
        ax.plot(nn, c / (FLOPS_PER_PARAM_TOKEN * nn), color="grey", lw=0.6, ls=":")
    ax.set(xscale="log", yscale="log", xlabel=N_LABEL, ylabel="D (training tokens)",
           title="runs, coloured by proposal order (dotted: isoFLOP lines)",
           xlim=(cfg.n_params.lo / 1.5, cfg.n_params.hi * 1.5), ylim=(cfg.n_tokens.lo / 1.5, cfg.n_tokens.hi * 1.5))
    fig.colorbar(sc, ax=ax, label="proposal order (run number)")
    ax.legend(fontsize=8)
    save_figure(fig, path)


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
    degenerate = {s: why for s, why in not_identifiable_laws(est).items() if s in (a, b)}
    if degenerate:  # the compositions inherit the degenerate law's bound: no band, no numbers
        ok[:] = False
        for r in rows:
            r.update(n_params=float("nan"), n_params_ci95=[float("nan")] * 2, n_params_ratio=float("nan"))
    if not ok.any():
        why = "; ".join(f"{s}: {w}" for s, w in degenerate.items()) or "the laws put N* at 0 or infinity"
        ax.text(0.5, 0.5, f"N* of the compositions is not identifiable from these runs\n({why})", ha="center",
                va="center")
        ax.axis("off")
        save_figure(fig, path)
        return rows
    ax.plot(w[ok], mid[ok], "o-")
    ax.fill_between(w[ok], lo[ok], hi[ok], alpha=0.25)
    ax.set(yscale="log", xlabel=f"validation weight on {a} (rest on {b})",
           ylabel=f"N* at C = {c:.2g} FLOPs (non-embedding parameters)",
           title="what the validation composition does to N*")
    save_figure(fig, path)
    return rows


def _num(value, spec: str) -> str:
    """A number for the page; "n/a" where there is none or it is not finite (never "inf" or "nan")."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return format(value, spec)


def _ci(pair, spec: str) -> str:
    if pair is None or _num(pair[0], spec) == "n/a" or _num(pair[1], spec) == "n/a":
        return "n/a"
    return f"[{_num(pair[0], spec)}, {_num(pair[1], spec)}]"


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
    ledger = Ledger(study_dir / "runs.parquet")
    rows = ledger.rows  # the study's runs and its prior runs (scheduler/prior_runs.py): all of them in the fit
    est = refit(cfg, rows)
    if est is None:
        raise InputError(f"{study_dir}: too few finished runs ({len(rows)}) to fit the laws")
    out.mkdir(parents=True, exist_ok=True)
    plot_isoflop_runs(cfg, rows, est, out / "isoflop.png")
    c_lo = cfg.min_run_flops
    c_hi = max(t.flops for t in cfg.targets)
    composites_left_out = plot_optimum_study(cfg, est, [c_lo, c_hi], out / "optimum.png")
    whatif = plot_composition(cfg, est, out / "composition.png")
    plot_runs(cfg, rows, out / "runs.png")
    result = read_result(study_dir)
    status = (f"stopped: {result['stop_reason']}" if result else "in progress or interrupted")
    spent, trained, prior = ledger.flops_spent(), ledger.trained_rows(), ledger.prior_rows()
    prior_note = (f" &middot; plus {len(prior)} prior runs ({ledger.flops_prior():.3g} FLOPs, not charged) from "
                  f"{html.escape(str(cfg.prior_runs.path))}" if prior else "")
    targets = []
    for t in est.targets:
        shown = np.isfinite(t.rel_halfwidth)  # not identifiable: no number beside the "n/a" that says why
        targets.append([t.name, ", ".join(f"{k}={v:g}" for k, v in t.weights.items()), f"{t.flops:.3g}",
                        _num(t.n_params if shown else None, ".4g"), _ci(t.n_params_ci95 if shown else None, ".4g"),
                        _num(t.n_tokens if shown else None, ".4g"), precision_text(t.rel_halfwidth, t.degenerate,
                                                                                  unresolved=t.unresolved)])
    laws = _law_rows(cfg, est)
    runs = [[r.get("trial_number"), r["run_id"], r.get("source") or "study", r["status"], r.get("seed", ""),
             _num(r["n_params"], ".3g"),
             _num(r["n_tokens"], ".3g"),
             _num(r["flops"], ".3g"), *(_num(r.get(f"loss/{s}"), ".4f") for s in cfg.skills),
             _num(r.get("wall_s"), ".1f"), _num(r.get("mfu"), ".3f")]
            for r in sorted(rows, key=lambda r: r.get("trial_number", 0))]
    whatif_rows = [[", ".join(f"{k}={v:.1f}" for k, v in w["weights"].items()), _num(w["n_params"], ".4g"),
                    _ci(w["n_params_ci95"], ".4g"), _num(w["n_params_ratio"], ".3f")] for w in whatif]
    left_out = (f"<p>optimum.png draws the first {MAX_COMPOSITES} composite targets; {composites_left_out} more are "
                "in the table only.</p>") if composites_left_out else ""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>skillscale: {html.escape(cfg.name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(cfg.name)}</h1>
<p>{html.escape(status)} &middot; {len(trained)} runs &middot; {spent:.3g} FLOPs of a {cfg.compute_cap:.3g} cap
{prior_note} &middot; tolerance ±{100 * cfg.tolerance:.0f}% &middot; backend {html.escape(cfg.backend.name)}</p>
<p>Conventions: N counts non-embedding parameters that take part in matmuls (blocks + output head);
C = 6·N·D; losses in nats/token. Intervals: 95% bias-corrected bootstrap percentile intervals over
runs; ±rel = (hi − lo) / (2·N*).</p>
<h2>Targets</h2>{_table(["target", "weights", "C_target", "N*", "N* 95% CI", "D*", "±rel"], targets)}
<h2>Laws</h2>
{_table(["skill", "family", "weight", "held-out rms", "parameters", "a at C_target", "noise (log std)",
          "replicate dof", "replicate spread (log std)", "lack of fit"], laws)}
<p>One row per law family tried (fitting/families.py; docs/laws.md). Weight: its share of the mixture every
interval comes from; held-out rms: how well it predicted the largest runs from the others (0 weight and a note
when it was not used). a: the local exponent d log N* / d log C at the largest target's budget.
<p>Noise: the log-loss std the fit uses at the runs' typical (N, D), estimated from residuals and replicate runs
(same N, D and mix, another seed: the runs table's seed column). Replicate spread is the pooled std of those
replicates alone; lack of fit = residual std / replicate spread (about 1 when the law fits, well above when it
does not; n/a with too few replicates).</p>
<h2>Plots</h2>{left_out}<img src="isoflop.png"><img src="optimum.png"><img src="runs.png">
{'<img src="composition.png">' if whatif else ''}
{('<h2>Validation-composition what-if</h2>' + _table(["weights", "N*", "95% CI", "N* / first"], whatif_rows))
 if whatif else ''}
<h2>Runs</h2>{_table(["#", "run_id", "source", "status", "seed", "N", "D", "C", *cfg.skills, "wall s", "MFU"], runs)}
</body></html>"""
    atomic_write_text(out / "index.html", page)
    return out / "index.html"


def _law_rows(cfg, est) -> list[list]:
    """The laws table: a row per skill and family tried, the families in the mixture first."""
    c_target = max(t.flops for t in cfg.targets)
    rows = []
    for skill, fit in est.fits.items():
        average = est.averages.get(skill)
        fits = average.fits if average else {"law": fit}
        scores = average.scores if average else {}
        for family in [*fits, *(f for f in scores if f not in fits)]:
            score = scores.get(family)
            one = fits.get(family)
            if one is None:  # tried, not used: say why instead of numbers
                rows.append([skill, family, "0", _num(score.holdout_rmse, ".4f"), score.note or "unused",
                             "", "", "", "", ""])
                continue
            params = ", ".join(f"{k}={v:.4g}" for k, v in one.law.to_dict().items() if isinstance(v, float))
            with np.errstate(all="ignore"):
                a = one.law.exponent_at(c_target)
            rows.append([skill, family, _num(score.weight if score else 1.0, ".2f"),
                         _num(score.holdout_rmse if score else None, ".4f"), params, _num(a, ".3f"),
                         _num(one.noise.sigma_ref if one.noise else est.noise[skill], ".4f"),
                         *_replicate_cells(one.noise)])
    return rows


def _replicate_cells(noise) -> list[str]:
    """The laws table's replicate columns for a fit's NoiseModel: degrees of freedom, pooled spread, lack of fit."""
    if noise is None:
        return ["n/a"] * 3
    return [str(noise.replicate_dof), _num(noise.replicate_sigma, ".4f"), _num(noise.lack_of_fit, ".2f")]


def cmd_report(args: argparse.Namespace) -> int:
    study_dir = Path(args.study_dir)
    out = Path(args.out) if args.out else study_dir / "report"
    try:
        page = write_report(study_dir, out)
    except OSError as exc:  # a read-only study, a full disk: the study itself is untouched
        raise InputError(f"{exc.filename or out}: cannot write the report ({exc.strerror or exc}); "
                         "choose a writable folder with --out DIR") from None
    print(f"report: {page}")
    return 0
