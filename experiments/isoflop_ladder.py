"""isoFLOP ladders through the real trainer: several model sizes at each of several FLOP budgets, one data mix;
per-skill U-shapes and the Approach-2 fit N*(C) = k C^a per skill with bootstrap intervals (issue #15, item 7).

    PYTHONPATH=. python3 experiments/isoflop_ladder.py --budget 1.25e14,5e14,2e15 --sizes 3e5,6e5,1.2e6,2.4e6,4.8e6 \
        --rows experiments/results/gpu_runs.jsonl --fit-out experiments/results/isoflop_ladders.jsonl \
        --plot experiments/results/isoflop_ladders.png
    PYTHONPATH=. python3 experiments/isoflop_ladder.py --analyze-only --rows experiments/results/gpu_runs.jsonl \
        --fit-out experiments/results/isoflop_ladders.jsonl --plot experiments/results/isoflop_ladders.png
    PYTHONPATH=. python3 experiments/isoflop_ladder.py --device cpu --budget 1e11,4e11 --sizes 7e4,1.2e5,2e5 \
        --seq-len 64 --eval-samples 16 --rows /tmp/rows.jsonl --out /tmp/ladder.json            # CPU smoke

For each target N the exact N comes from the shape rule (trainers/shapes.py) and D = C / (6 N), so every run of
a budget costs the same C = 6·N·D. The same sizes are used at every budget, so a study of B budgets and S sizes
compiles S shapes, not B x S. Runs go through TorchBackend.run (GPU: bf16 autocast, Triton kernels,
torch.compile), one process (experiments/_trainer_runs.py): generated corpora and evaluation sets are built once,
each finished run is appended to --rows at once, and a rerun with the same --rows trains only what is missing
(a ladder continues across GPU sittings).

Analysis (for every skill's answer NLL and every domain's held-out loss): per budget the sizes' losses (the mean
over seeds where seed replicates exist), the size with the lowest loss and whether it is interior (a U), the
minimum of the parabola in log N fitted to the points with D/N >= --min-tokens-per-param (default 1: below one
token per parameter the loss is a wall, not the U's arm)
(fitting.isoflop: Chinchilla Approach 2, Hoffmann et al. 2022 §3.2); then N*(C) = k C^a over the budgets, and
a stratified bootstrap over runs (resampled within each budget, the same resamples for every loss, so ratios
pair up) for 95% percentile intervals of a, of N* at each budget and of the knowledge/code ratio of N*. Where
the rows also hold seed replicates (experiments/seed_noise.py), a second interval refits the ladder to its losses
perturbed by the largest relative seed std measured for that loss (a parametric bootstrap: the scatter of the
fit if every run were retrained with another seed), since 5-7 points per budget make the pairs bootstrap coarse.
--fit-out appends one row per run (kind "run"), per loss (kind "fit") and the ratio (kind "ratio").
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))  # _provenance, _trainer_flags
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # the repository root

from _provenance import append_rows  # noqa: E402  (experiments/ and benchmarks/ are on sys.path)
from _trainer_runs import (  # noqa: E402
    PlannedRun,
    add_backend_args,
    by_the_rules,
    execute,
    loss_items,
    make_backend,
    optimisation_key,
    parse_floats,
    read_rows,
    tokens_for_budget,
    trained_rows,
)

from fitting.conventions import conventions_dict  # noqa: E402
from fitting.isoflop import bootstrap_isoflop, fit_isoflop  # noqa: E402
from skillscale.atomic import atomic_write_json, finite_or_none  # noqa: E402
from skillscale.errors import InputError, OneLineArgumentParser  # noqa: E402
from trainers.cli import parse_pairs  # noqa: E402

RATIO = ("knowledge", "code")  # N*(knowledge) / N*(code): arXiv:2503.10061 finds knowledge capacity-hungry


def plan(backend, budgets: list[float], sizes: list[float], mix: dict[str, float], seed: int = 0) -> list[PlannedRun]:
    """One run per (size, budget), sizes outermost so that a shape's runs are consecutive."""
    return [
        PlannedRun("isoflop", n, tokens_for_budget(backend, n, c, mix), c, seed=seed)
        for n in sizes
        for c in budgets
    ]


def plan_points(backend, points: list[tuple[float, float]], mix: dict[str, float], seed: int = 0) -> list[PlannedRun]:
    """One run per (target N, budget C) pair: a ladder whose sizes differ per budget (each budget's sizes
    bracketing its own optimum inside the D/N band, instead of one grid that leaves the band at the ends)."""
    return [PlannedRun("isoflop", n, tokens_for_budget(backend, n, c, mix), c, seed=seed) for n, c in points]


def ladder_rows(rows: list[dict], seed: int = 0) -> list[dict]:
    """Rule-LR runs at `seed` without overrides (a --seed-variant run is never a ladder point), one per
    (budget, N): the ladder's points."""
    keep = {}
    for row in trained_rows(rows):
        if row["seed"] == seed and row["lr_multiplier"] == 1.0 and by_the_rules(row):
            keep[(row["budget"], row["n_params"])] = row
    return [keep[k] for k in sorted(keep)]


def _point_key(row: dict) -> tuple:
    """(budget, N, every hyperparameter): the runs that are replicates of one ladder point."""
    return row["budget"], row["n_params"], optimisation_key(row)


def ladder_points(rows: list[dict], seed: int = 0) -> list[tuple[dict, dict[str, float], int]]:
    """Per ladder run: (its row, its losses averaged over every rule-LR seed trained at that (budget, N), the
    number of seeds). Seed replicates (experiments/seed_noise.py) thus sharpen the ladder points they sit on; only
    replicates trained with every hyperparameter of the ladder run count (a default changed since keeps the point,
    and a variant never joins it)."""
    replicates: dict[tuple, list[dict]] = {}
    for row in trained_rows(rows):
        if row["lr_multiplier"] == 1.0:
            replicates.setdefault(_point_key(row), []).append(loss_items(row))
    out = []
    for row in ladder_rows(rows, seed):
        items = replicates[_point_key(row)]
        names = set.intersection(*(set(i) for i in items))
        out.append((row, {k: float(np.mean([i[k] for i in items])) for k in names}, len(items)))
    return out


def _percentile_ci(values: np.ndarray) -> tuple[float | None, float | None, float]:
    """95% percentile interval over the finite members and the fraction of members that were finite."""
    finite = values[np.isfinite(values)]
    if finite.size < 10:
        return None, None, finite.size / max(values.size, 1)
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return float(lo), float(hi), finite.size / values.size


def stratified_resamples(budgets: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) row indices, each resample drawing with replacement within every budget."""
    rng = np.random.default_rng(seed)
    idx = np.empty((n_boot, budgets.size), dtype=int)
    for c in np.unique(budgets):
        members = np.flatnonzero(budgets == c)
        idx[:, members] = members[rng.integers(0, members.size, size=(n_boot, members.size))]
    return idx


def noise_members(n, d, loss, budget, rel_std, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(k, a) of n_boot refits to the losses perturbed by the measured seed noise, loss * (1 + rel_std * z)
    (rel_std per point: a point averaged over s seeds has rel_std / sqrt(s)): what the fit would scatter by if
    each run were retrained with other seeds (a parametric bootstrap)."""
    rng = np.random.default_rng(seed)
    k, a = np.full(n_boot, np.nan), np.full(n_boot, np.nan)
    for i in range(n_boot):
        try:
            fit = fit_isoflop(n, d, loss * (1.0 + rel_std * rng.standard_normal(loss.size)), flops=budget)
        except InputError:
            continue
        k[i], a[i] = fit.k[0], fit.a[0]
    return k, a


def analyze(rows: list[dict], n_boot: int = 2000, seed: int = 0, min_tokens_per_param: float = 1.0) -> dict:
    """U-shapes, N*(C) fits with intervals and the knowledge/code ratio (module docstring). The fits use the
    points with D/N >= min_tokens_per_param: far below it a model has seen less than one token per parameter
    and its loss is a wall, not the U's arm a parabola describes (the DESIGN's band is D/N ~ 1-500)."""
    import seed_noise

    noise: dict[str, float] = {}  # the largest relative seed std measured for each loss, at any point
    for s in seed_noise.summarize(rows):
        if not s.get("overrides"):  # the ladder's own hyperparameters, not a variant's
            noise[s["skill"]] = max(noise.get(s["skill"], 0.0), s["rel_std"])
    points = ladder_points(rows)
    if not points:
        raise InputError("isoflop analysis: no finished rule-LR seed-0 runs in the rows given")
    n_all = np.array([r["n_params"] for r, _, _ in points], float)
    d_all = np.array([r["n_tokens"] for r, _, _ in points], float)
    budget_all = np.array([r["budget"] for r, _, _ in points], float)
    seeds_all = np.array([k for _, _, k in points], float)
    in_fit = d_all / n_all >= min_tokens_per_param
    n, d, budget, n_seeds = n_all[in_fit], d_all[in_fit], budget_all[in_fit], seeds_all[in_fit]
    budgets = np.unique(budget_all)
    names = sorted(set.intersection(*(set(means) for _, means, _ in points)))
    resamples = stratified_resamples(budget, n_boot, seed)
    fits, boots, noise_fits = {}, {}, {}
    out = {"budgets": budgets.tolist(), "n_runs": len(points), "n_in_fit": int(in_fit.sum()),
           "min_tokens_per_param": min_tokens_per_param, "n_boot": n_boot, "losses": {}}
    for name in names:
        loss_all = np.array([means[name] for _, means, _ in points], float)
        loss = loss_all[in_fit]
        curves = []
        for c in budgets:
            at = budget_all == c
            order = np.argsort(n_all[at])
            sizes, values = n_all[at][order], loss_all[at][order]
            best = int(np.argmin(values))
            curves.append({"budget": float(c), "n_params": sizes.tolist(), "n_tokens": d_all[at][order].tolist(),
                           "loss": values.tolist(), "n_seeds": seeds_all[at][order].astype(int).tolist(),
                           "in_fit": in_fit[at][order].tolist(), "best_n": float(sizes[best]),
                           "interior_minimum": 0 < best < sizes.size - 1})
        entry = {"curves": curves}
        try:
            fit = fit_isoflop(n, d, loss, flops=budget)
            boot = bootstrap_isoflop(n, d, loss, flops=budget, resamples=resamples)
        except InputError as exc:
            entry["fit_error"] = str(exc)
            out["losses"][name] = entry
            continue
        fits[name], boots[name] = fit, boot
        for curve in curves:  # the fit's budget groups are geometric means: match them in log C
            g = int(np.argmin(np.abs(np.log(fit.budgets / curve["budget"]))))
            close = abs(np.log(fit.budgets[g] / curve["budget"])) < 0.01
            curve["parabola_n_opt"] = finite_or_none(float(fit.n_opt_per_budget[0][g])) if close else None
        a_lo, a_hi, a_ok = _percentile_ci(boot.a)
        entry.update({
            "a": finite_or_none(float(fit.a[0])),
            "k": finite_or_none(float(fit.k[0])),
            "a_ci95": [a_lo, a_hi],
            "bootstrap_finite_fraction": a_ok,
            "budgets_with_minimum": int(np.isfinite(fit.n_opt_per_budget[0]).sum()),
            "n_opt": [],
        })
        if name in noise:
            noise_k, noise_a = noise_members(n, d, loss, budget, noise[name] / np.sqrt(n_seeds), n_boot, seed)
            lo, hi, ok = _percentile_ci(noise_a)
            entry.update({"seed_rel_std": noise[name], "a_ci95_seed_noise": [lo, hi],
                          "seed_noise_finite_fraction": ok})
            noise_fits[name] = (noise_k, noise_a)
        for c in budgets:
            point = float(fit.optimum(c)[0][0])
            lo, hi, _ = _percentile_ci(boot.optimum(c)[0])
            at = {"budget": float(c), "n_opt": finite_or_none(point), "ci95": [lo, hi]}
            if name in noise_fits:
                nk, na = noise_fits[name]
                at["ci95_seed_noise"] = list(_percentile_ci(nk * c**na)[:2])
            entry["n_opt"].append(at)
        out["losses"][name] = entry
    if all(s in fits for s in RATIO):
        ratio = {"numerator": RATIO[0], "denominator": RATIO[1], "at": []}
        for c in budgets:
            point = float(fits[RATIO[0]].optimum(c)[0][0] / fits[RATIO[1]].optimum(c)[0][0])
            members = boots[RATIO[0]].optimum(c)[0] / boots[RATIO[1]].optimum(c)[0]
            lo, hi, ok = _percentile_ci(members)
            at = {"budget": float(c), "ratio": finite_or_none(point), "ci95": [lo, hi],
                  "bootstrap_finite_fraction": ok}
            if all(s in noise_fits for s in RATIO):  # independent seed-noise draws for the two skills
                (k1, a1), (k2, a2) = (noise_fits[s] for s in RATIO)
                at["ci95_seed_noise"] = list(_percentile_ci(k1 * c**a1 / (k2 * c**a2))[:2])
            ratio["at"].append(at)
        out["ratio"] = ratio
    return out


def analysis_rows(rows: list[dict], analysis: dict) -> list[dict]:
    """The rows --fit-out appends: every ladder run, one fit per loss, the ratio; provenance on each."""
    ladder = ladder_rows(rows)
    last = ladder[-1]
    prov = {k: last.get(k) for k in ("gpu", "torch", "triton", "commit", "date")}
    prov["conventions"] = conventions_dict()
    keep = ("key", "run_id", "shape", "n_params", "n_tokens", "budget", "flops", "seed", "lr", "batch_tokens",
            "n_steps", "losses", "domain_losses", "tokens_per_s", "mfu", "wall_s", "gpu", "torch", "triton",
            "commit", "date")
    out = [{"kind": "run", **{k: r.get(k) for k in keep}} for r in ladder]
    for name, entry in analysis["losses"].items():
        out.append({"kind": "fit", "loss": name, "n_boot": analysis["n_boot"], **entry, **prov})
    if "ratio" in analysis:
        out.append({"kind": "ratio", "n_boot": analysis["n_boot"], **analysis["ratio"], **prov})
    return out


def _noise_text(ci, rel_std) -> str:
    if not ci or ci[0] is None:
        return ""
    at = f" at {rel_std:.2%}" if rel_std is not None else ""
    return f"; under the measured seed noise{at}: [{ci[0]:.2f}, {ci[1]:.2f}]"


def print_analysis(analysis: dict) -> None:
    for name, entry in analysis["losses"].items():
        print(f"{name}:")
        for curve in entry["curves"]:
            cells = "  ".join(f"{n / 1e6:.2f}M {v:.4f}{'' if ok else '(out)'}"
                              for n, v, ok in zip(curve["n_params"], curve["loss"], curve["in_fit"], strict=True))
            vertex = curve.get("parabola_n_opt")
            print(f"  C={curve['budget']:.2e}: {cells}   lowest {curve['best_n'] / 1e6:.2f}M "
                  f"({'interior' if curve['interior_minimum'] else 'EDGE'}), parabola "
                  f"{'none' if vertex is None else f'{vertex / 1e6:.2f}M'}")
        if "a" in entry:
            lo, hi = entry["a_ci95"]
            ci = "n/a" if lo is None else f"[{lo:.2f}, {hi:.2f}]"
            a = "n/a" if entry["a"] is None else f"{entry['a']:.2f}"
            print(f"  N*(C) = k C^a: a = {a}, 95% CI {ci} ({entry['bootstrap_finite_fraction']:.0%} of "
                  f"resamples finite)" + _noise_text(entry.get("a_ci95_seed_noise"), entry.get("seed_rel_std")))
        else:
            print(f"  no fit: {entry.get('fit_error')}")
    if "ratio" in analysis:
        for at in analysis["ratio"]["at"]:
            lo, hi = at["ci95"]
            ci = "n/a" if lo is None else f"[{lo:.2f}, {hi:.2f}]"
            r = "n/a" if at["ratio"] is None else f"{at['ratio']:.2f}"
            print(f"N*(knowledge)/N*(code) at C={at['budget']:.2e}: {r}, 95% CI {ci}"
                  + _noise_text(at.get("ci95_seed_noise"), None))


def plot(analysis: dict, path: Path) -> None:
    """Loss against N per budget (one panel per loss) with the fitted parabolas, and N*(C) with intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(analysis["losses"])
    cols = 3
    rows_n = math.ceil((len(names) + 1) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.4 * rows_n), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes.flat, names, strict=False):
        entry = analysis["losses"][name]
        for i, curve in enumerate(entry["curves"]):
            colour = colours[i % len(colours)]
            used = np.array(curve["in_fit"], bool)
            sizes, y_all = np.array(curve["n_params"]), np.array(curve["loss"])
            ax.plot(sizes[used], y_all[used], "o", color=colour, label=f"C={curve['budget']:.1e}")
            ax.plot(sizes[~used], y_all[~used], "o", mfc="none", color=colour)  # D/N below the band: not fitted
            x, y = np.log(sizes[used]), y_all[used]
            if len(x) >= 3:
                coef = np.polyfit(x, y, 2)
                grid = np.linspace(x.min(), x.max(), 50)
                ax.plot(np.exp(grid), np.polyval(coef, grid), "-", color=colour, lw=1)
            vertex = curve.get("parabola_n_opt")
            if vertex and min(curve["n_params"]) / 2 < vertex < 2 * max(curve["n_params"]):
                ax.axvline(vertex, color=colour, ls=":", lw=1)
        fitted = [v for c in entry["curves"] for v, ok in zip(c["loss"], c["in_fit"], strict=True) if ok]
        if fitted:  # points outside the band can sit far above the U: keep the U readable
            ax.set_ylim(0.95 * min(fitted), 1.1 * max(fitted))
        ax.set_xscale("log")
        ax.set_title(name)
        ax.set_xlabel("N (parameters)")
        ax.set_ylabel("loss (nats/token)")
        ax.legend(fontsize=7)
    ax = axes.flat[len(names)]
    for i, (name, entry) in enumerate(analysis["losses"].items()):
        if "n_opt" not in entry:
            continue
        c = [p["budget"] for p in entry["n_opt"]]
        mid = [p["n_opt"] or np.nan for p in entry["n_opt"]]
        band = "ci95_seed_noise" if "ci95_seed_noise" in entry["n_opt"][0] else "ci95"  # the tighter, when known
        lo = [p[band][0] or np.nan for p in entry["n_opt"]]
        hi = [p[band][1] or np.nan for p in entry["n_opt"]]
        ax.plot(c, mid, "-o", color=colours[i % len(colours)], label=f"{name} (a={entry['a'] or np.nan:.2f})")
        ax.fill_between(c, lo, hi, color=colours[i % len(colours)], alpha=0.15)
    ax.set_xscale("log")
    ax.set_yscale("log")
    sizes = [n for entry in analysis["losses"].values() for c in entry["curves"] for n in c["n_params"]]
    ax.set_ylim(min(sizes) / 10, max(sizes) * 10)
    ax.set_title("N*(C), 95% band under the seed noise")
    ax.set_xlabel("C (FLOPs, 6ND)")
    ax.set_ylabel("N*")
    ax.legend(fontsize=7)
    for extra in list(axes.flat)[len(names) + 1 :]:
        extra.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = OneLineArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", "--budgets", dest="budgets", default="1.25e14,5e14,2e15",
                   help="FLOPs per run, C = 6*N*D; comma separated for several ladders")
    p.add_argument("--sizes", default="3e5,6e5,1.2e6,2.4e6,4.8e6", help="target N, comma separated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--knowledge-entities", type=int, default=0, help="(older data settings) world size")
    p.add_argument("--domain-tokens", default="", help="(older data settings) generated stream length")
    p.add_argument("--rows", default="", help="JSON-lines file of run rows: read to resume, appended to (with "
                   "--analyze-only: several files, comma separated, read together)")
    p.add_argument("--analyze-only", action="store_true", help="no training: analyse --rows")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--min-tokens-per-param", type=float, default=1.0, help="fit only points with D/N at least this")
    p.add_argument("--fit-out", default="", help="JSON-lines file the run, fit and ratio rows are appended to")
    p.add_argument("--plot", default="", help="PNG of the U-shapes and N*(C)")
    p.add_argument("--out", default="", help="JSON file with the runs and the analysis")
    p.add_argument("--append", default="", help="(older interface) also append the --out record to this file")
    add_backend_args(p)
    args = p.parse_args(argv)
    rows_paths = [path for path in args.rows.split(",") if path] or [
        os.path.join(tempfile.mkdtemp(prefix="skillscale-ladder-"), "rows.jsonl")]
    try:
        if not args.analyze_only:
            if len(rows_paths) > 1:
                raise InputError(f"--rows: a ladder that trains appends to one file, got {len(rows_paths)}; several "
                                 "files are read together only with --analyze-only")
            rows_path = rows_paths[0]
            mix = parse_pairs(args.mix, "--mix")
            budgets = parse_floats(args.budgets, "--budget")
            sizes = parse_floats(args.sizes, "--sizes")
            if args.knowledge_entities:
                args.set.append(f"knowledge_entities={args.knowledge_entities}")
            if args.domain_tokens:
                args.set.append(f"domain_tokens={int(float(args.domain_tokens))}")
            backend = make_backend(args)
            runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="skillscale-ladder-runs-")
            execute(plan(backend, budgets, sizes, mix, args.seed), backend, mix, rows_out=rows_path,
                    recorded=read_rows([rows_path]), runs_dir=runs_dir, deadline_s=args.deadline_s)
        rows = read_rows(rows_paths)
        analysis = analyze(rows, n_boot=args.n_boot, seed=args.seed, min_tokens_per_param=args.min_tokens_per_param)
    except InputError as exc:
        print(f"isoflop_ladder: {exc}", file=sys.stderr)
        return 2
    print_analysis(analysis)
    if args.fit_out:
        append_rows(args.fit_out, analysis_rows(rows, analysis))
    if args.plot:
        plot(analysis, Path(args.plot))
    if args.out or args.append:
        record = {"benchmark": "isoflop_ladder", "conventions": conventions_dict(), "runs": ladder_rows(rows),
                  "analysis": analysis}
        if args.out:
            atomic_write_json(Path(args.out), record, indent=2)
        if args.append:
            append_rows(args.append, [record])
    return 0


if __name__ == "__main__":
    sys.exit(main())
