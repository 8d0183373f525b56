"""Coverage of the 95% interval of N*(C_target) inside a realistic tokens-per-parameter band.

    python benchmarks/bench_coverage.py --truths chinchilla besiroglu --noise 0.005 0.015 0.03 \\
        --designs random isoflop edge --band 10 100 --runs 48 --sets 40 --methods residual parametric laplace

For every cell (truth, noise, design, extrapolation) `--sets` data sets are simulated from a known law with
multiplicative log-normal noise, every run inside the band D/N in [band_lo, band_hi]; each is fitted once
(fitting.fit_parametric) and its interval computed by every method (fitting.bootstrap_parametric's
`method`; the bias-corrected percentile interval of fitting.law.interval). C_target is `--extrapolation`
times the largest run's FLOPs (10x and 100x by default). Designs, each `--runs` runs:

- random: log-uniform C in [c_lo, c_hi], log-uniform D/N in the band (a practitioner's random design);
- isoflop: an isoFLOP grid inside the band: ~sqrt(runs/2) budgets log-spaced in [c_lo, c_hi], sizes
  log-spaced so D/N spans the band at each budget;
- edge: what an FLOP-aware adaptive design converges to (the c-optimal design for log N*(C) puts its runs
  at the band's two edges at small budgets): half the runs at each edge, C log-uniform in [c_lo/10, c_hi/10];
- file: the (N, D) of a real design, e.g. the runs an adaptive study chose (`--design-file`, JSON with
  lists "n" and "d"); --runs and --band are ignored for it.

Per cell: coverage (with its Wilson 95% interval), the median log half-width of the interval, the median
|log error| of the point estimate, and `needed_scale`: the factor by which every interval (its side toward
the truth, in log space) would have to be scaled for 95% of them to cover -- 1 is calibrated, below 1 the
intervals are wider than needed, above 1 too narrow. Rows go to benchmarks/results/coverage.jsonl.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy
from _provenance import append_rows, git_commit  # benchmarks/ is on sys.path when run as a script

from fitting.conventions import FLOPS_PER_PARAM_TOKEN
from fitting.law import ParametricLaw, interval
from fitting.parametric import bootstrap_parametric, fit_parametric
from skillscale.errors import InputError, OneLineArgumentParser

RESULTS = os.path.join(os.path.dirname(__file__), "results", "coverage.jsonl")
TRUTHS = {
    "chinchilla": ParametricLaw(1.69, 406.4, 410.7, 0.34, 0.28),  # Hoffmann et al. 2022, eq. 10
    "besiroglu": ParametricLaw(1.82, 482.01, 2085.43, 0.3478, 0.3658),  # Besiroglu et al. 2024, Table 1
}
Z95 = 1.959964


def design(kind: str, n_runs: int, band: tuple[float, float], c_range: tuple[float, float],
           rng: np.random.Generator, design_file: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) of one design (module docstring), every run with D/N inside `band`."""
    log_band = np.log(band)
    if kind == "file":
        if design_file is None:
            raise InputError("--designs file needs --design-file")
        try:
            data = json.loads(Path(design_file).read_text())
            return np.asarray(data["n"], float), np.asarray(data["d"], float)
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"{design_file}: expected JSON with lists 'n' and 'd' ({exc})") from None
    if kind == "random":
        c = np.exp(rng.uniform(*np.log(c_range), n_runs))
        ratio = np.exp(rng.uniform(*log_band, n_runs))
    elif kind == "isoflop":
        n_budgets = max(2, int(round(np.sqrt(n_runs / 2))))
        n_sizes = max(3, n_runs // n_budgets)
        c = np.repeat(np.geomspace(*c_range, n_budgets), n_sizes)
        ratio = np.tile(np.geomspace(*band, n_sizes), n_budgets)
    elif kind == "edge":
        half = n_runs // 2
        c = np.exp(rng.uniform(np.log(c_range[0] / 10), np.log(c_range[1] / 10), n_runs))
        ratio = np.where(np.arange(n_runs) < half, band[0], band[1])
    else:
        raise InputError(f"--designs: unknown design {kind!r} (random, isoflop, edge, file)")
    n = np.sqrt(c / (FLOPS_PER_PARAM_TOKEN * ratio))  # C = 6 N D and D = ratio * N
    return n, c / (FLOPS_PER_PARAM_TOKEN * n)


def seed_shared_noise(n: np.ndarray, d: np.ndarray, rho: float, rng: np.random.Generator) -> np.ndarray:
    """Standard normal errors, one per run. rho > 0 models a study that starts every run of a shape from the same
    seed, as skillscale did before per-run seeds (scheduler/study.py run_seed): the k-th run at each (N, D)
    trained from seed k, so the runs of one shape (N within 2%) with the same replicate index share a component
    of variance rho -- their initialisation draw (on the H200 a seed's deviation correlated ~0.5 across LR,
    batch and warmup variants). rho = 0: independent errors."""
    z = rng.standard_normal(n.size)
    if rho <= 0:
        return z
    shape = np.round(np.log(n) / np.log(1.02)).astype(int)
    seen: dict[tuple, int] = {}
    replicate = np.empty(n.size, int)
    for i, key in enumerate(zip(shape.tolist(), np.round(np.log(d), 6).tolist(), strict=True)):
        replicate[i] = seen.get(key, 0)
        seen[key] = replicate[i] + 1
    _, group = np.unique(np.stack([shape, replicate], axis=1), axis=0, return_inverse=True)  # (shape, replicate)
    shared = rng.standard_normal(group.max() + 1)[group.ravel()]
    return np.sqrt(rho) * shared + np.sqrt(1 - rho) * z


def wilson(hits: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927)."""
    if total == 0:
        return float("nan"), float("nan")
    p = hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return float(centre - half), float(centre + half)


def run_cell(truth: str, sigma: float, kind: str, args, log=print) -> list[dict]:
    """All data sets of one (truth, noise, design); one row per (method, extrapolation)."""
    law = TRUTHS[truth]
    records: dict[tuple[str, float], list[tuple[bool, float, float, float]]] = {}
    seconds: dict[str, float] = {m: 0.0 for m in args.methods}
    fit_seconds = 0.0
    for i in range(args.sets):
        rng = np.random.default_rng([args.seed, i, int(sigma * 1e5), len(kind)])
        n, d = design(kind, args.runs, tuple(args.band), tuple(args.c_range), rng, args.design_file)
        loss = law.loss(n, d) * np.exp(sigma * seed_shared_noise(n, d, args.shared_seed_correlation, rng))
        t0 = time.perf_counter()
        fit = fit_parametric(n, d, loss)
        fit_seconds += time.perf_counter() - t0
        c_max, n_runs = float(np.max(FLOPS_PER_PARAM_TOKEN * n * d)), int(n.size)
        for method in args.methods:
            t0 = time.perf_counter()
            ens = bootstrap_parametric(n, d, loss, n_boot=args.n_boot, seed=i, fit=fit, method=method)
            seconds[method] += time.perf_counter() - t0
            for factor in args.extrapolation:
                c_target = factor * c_max
                true_n = law.optimum(c_target)[0][0]
                point = fit.law.optimum(c_target)[0][0]
                with np.errstate(all="ignore"):
                    lo, hi = interval(ens.optimum(c_target)[0], point=point)
                err = np.log(point / true_n)
                side = np.log(point / lo) if err > 0 else np.log(hi / point)  # the side toward the truth
                records.setdefault((method, factor), []).append(
                    (bool(lo <= true_n <= hi), float(np.log(hi / lo) / 2), float(abs(err)),
                     float(abs(err) / side) if side > 0 else float("inf")))
    rows = []
    for (method, factor), rec in records.items():
        covered, halfwidth, error, scale = (np.array(x) for x in zip(*rec, strict=True))
        hits = int(covered.sum())
        rows.append({
            "truth": truth, "noise": sigma, "design": kind, "design_file": args.design_file, "runs": n_runs,
            **({"shared_seed_correlation": args.shared_seed_correlation} if args.shared_seed_correlation else {}),
            "band": list(args.band),
            "c_range": list(args.c_range), "extrapolation": factor, "method": method, "sets": args.sets,
            "n_boot": args.n_boot, "coverage": hits / args.sets, "coverage_ci95": list(wilson(hits, args.sets)),
            "median_log_halfwidth": float(np.median(halfwidth)), "median_abs_log_error": float(np.median(error)),
            "needed_scale": float(np.quantile(scale, 0.95)),
            "seconds_per_interval": seconds[method] / args.sets, "seconds_per_fit": fit_seconds / args.sets,
        })
        r = rows[-1]
        log(f"{truth:10s} noise {sigma:.3f} {kind:7s} x{factor:<4g} {method:10s} coverage {r['coverage']:.2f} "
            f"[{r['coverage_ci95'][0]:.2f}, {r['coverage_ci95'][1]:.2f}]  half-width {r['median_log_halfwidth']:.3f}"
            f"  |err| {r['median_abs_log_error']:.3f}  needed scale {r['needed_scale']:.2f}  "
            f"{r['seconds_per_interval']:.2f} s")
    return rows


def main() -> None:
    parser = OneLineArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--truths", nargs="+", default=["chinchilla", "besiroglu"], choices=sorted(TRUTHS))
    parser.add_argument("--noise", type=float, nargs="+", default=[0.005, 0.015, 0.03])
    parser.add_argument("--designs", nargs="+", default=["random", "isoflop", "edge"])
    parser.add_argument("--band", type=float, nargs=2, default=[10.0, 100.0], help="tokens per parameter")
    parser.add_argument("--c-range", type=float, nargs=2, default=[1e17, 1e19], help="per-run FLOPs")
    parser.add_argument("--runs", type=int, default=48)
    parser.add_argument("--sets", type=int, default=40)
    parser.add_argument("--methods", nargs="+", default=["residual", "parametric", "laplace"])
    parser.add_argument("--extrapolation", type=float, nargs="+", default=[10.0, 100.0])
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--design-file", default=None, help="JSON {n: [...], d: [...]} for --designs file")
    parser.add_argument("--shared-seed-correlation", type=float, default=0.0,
                        help="share this fraction of each run's noise variance with the runs of its shape and "
                             "replicate index (one seed per shape, the old seeding); 0: independent")
    parser.add_argument("--no-record", action="store_true", help="print only; append nothing")
    args = parser.parse_args()
    if not 0 <= args.shared_seed_correlation < 1:
        raise InputError("--shared-seed-correlation: expected a number in [0, 1)")
    if not (0 < args.band[0] < args.band[1]) or not (0 < args.c_range[0] < args.c_range[1]):
        raise InputError("--band and --c-range: expected 0 < lo < hi")
    if args.runs < 8 or args.sets < 1 or args.n_boot < 20 or any(s < 0 for s in args.noise):
        raise InputError("--runs must be >= 8, --sets >= 1, --n-boot >= 20, --noise >= 0")
    start = time.perf_counter()
    rows = []
    for truth in args.truths:
        for sigma in args.noise:
            for kind in args.designs:
                rows += run_cell(truth, sigma, kind, args)
    provenance = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                  "commit": git_commit(), "cpu": platform.processor() or platform.machine(),
                  "n_cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                  "scipy": scipy.__version__, "wall_s": round(time.perf_counter() - start, 1)}
    print(f"{len(rows)} rows in {provenance['wall_s']} s")
    if not args.no_record:
        append_rows(RESULTS, [{**row, **provenance} for row in rows])


if __name__ == "__main__":
    try:
        main()
    except InputError as exc:  # a bad flag or design file: one line, exit status 2
        print(f"bench_coverage: {exc}", file=sys.stderr)
        sys.exit(2)
