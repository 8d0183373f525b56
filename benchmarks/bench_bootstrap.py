"""Benchmark: vectorised bootstrap of the parametric law, 500 resamples over 250 runs.

    python benchmarks/bench_bootstrap.py [--n-boot 500] [--n-runs 250]

Times `fit_parametric` and `bootstrap_parametric` (batched Levenberg-Marquardt/IRLS, several starts per
resample) on data from the Chinchilla law (Hoffmann et al. 2022) with 1% log-normal noise, against a
baseline measured in the same run: one scipy L-BFGS-B refit per resample in a Python loop from the
point estimate (the naive, single-start bootstrap), timed on a subset and scaled to n_boot. Prints a
table and appends one JSON line (date, CPU, versions) to benchmarks/results/bootstrap.jsonl.
"""

from __future__ import annotations

import datetime
import os
import platform
import time

import numpy as np
import scipy
from _provenance import append_rows  # benchmarks/ is on sys.path when run as a script
from scipy.optimize import minimize

from fitting._solver import Design, _forward, huber
from fitting.conventions import FLOPS_PER_PARAM_TOKEN
from fitting.law import ParametricLaw
from fitting.parametric import bootstrap_parametric, bootstrap_starts, fit_parametric, resample_counts
from skillscale.errors import OneLineArgumentParser

CHINCHILLA = ParametricLaw(1.69, 406.4, 410.7, 0.34, 0.28)  # Hoffmann et al. 2022, eq. 10 fit
RESULTS = os.path.join(os.path.dirname(__file__), "results", "bootstrap.jsonl")


def make_runs(n_runs: int, seed: int = 0):
    """An isoFLOP-like design: 10 budgets from 1e17 to 1e20, n_runs/10 sizes per budget over 1/8x-8x."""
    rng = np.random.default_rng(seed)
    budgets = np.geomspace(1e17, 1e20, 10)
    per = n_runs // budgets.size
    n, d = [], []
    for c in budgets:
        n_opt = CHINCHILLA.optimum(c)[0][0]
        for f in np.geomspace(1 / 8, 8, per):
            n.append(n_opt * f)
            d.append(c / (FLOPS_PER_PARAM_TOKEN * n_opt * f))
    n, d = np.array(n), np.array(d)
    return n, d, CHINCHILLA.loss(n, d) * np.exp(rng.normal(0, 0.01, n.size))


def naive_bootstrap_seconds(n, d, loss, fit, counts, n_timed: int) -> float:
    """Seconds per resample for a loop of single-start scipy L-BFGS-B refits (the baseline)."""
    design, y = Design(np.log(n), np.log(d)), np.log(loss)
    theta0 = np.array(fit.theta)
    t0 = time.perf_counter()
    for w in counts[:n_timed]:
        def fun(x, w=w):
            lse, jac = _forward(x[None, :], design, with_jac=True)
            r = y - lse[0]
            return float((w * huber(r, 1e-3)).sum()), -((w * np.clip(r, -1e-3, 1e-3)) @ jac[0])
        minimize(fun, theta0, jac=True, method="L-BFGS-B")
    return (time.perf_counter() - t0) / n_timed


def main() -> None:
    parser = OneLineArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-boot", type=int, default=500)
    parser.add_argument("--n-runs", type=int, default=250)
    args = parser.parse_args()
    n, d, loss = make_runs(args.n_runs)

    t0 = time.perf_counter()
    fit = fit_parametric(n, d, loss)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    ens = bootstrap_parametric(n, d, loss, n_boot=args.n_boot, fit=fit, seed=1)
    t_boot = time.perf_counter() - t0
    counts = resample_counts(n.size, args.n_boot, seed=1)
    per_naive = naive_bootstrap_seconds(n, d, loss, fit, counts, n_timed=min(40, args.n_boot))
    t_naive = per_naive * args.n_boot
    n_starts = bootstrap_starts(fit).shape[0]
    n_opt = ens.optimum(1e22)[0]

    rows = [("point fit (grid + LM + L-BFGS polish)", t_fit, ""),
            (f"vectorised bootstrap, {args.n_boot} x {n_starts} starts", t_boot, f"{t_naive / t_boot:.1f}x"),
            (f"naive loop, 1 start (scaled from {min(40, args.n_boot)})", t_naive, "1.0x")]
    print(f"bootstrap of the parametric law: {args.n_runs} runs, {args.n_boot} resamples, "
          f"{os.cpu_count()} CPUs")
    print(f"{'what':58s} {'seconds':>9s} {'speed-up':>9s}")
    for what, sec, ratio in rows:
        print(f"{what:58s} {sec:9.2f} {ratio:>9s}")
    lo, hi = np.quantile(n_opt, [0.025, 0.975])
    print(f"N*(1e22) 95% interval [{lo:.3e}, {hi:.3e}], truth {CHINCHILLA.optimum(1e22)[0][0]:.3e}")

    record = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": platform.processor() or platform.machine(), "n_cpus": os.cpu_count(),
        "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
        "n_runs": args.n_runs, "n_boot": args.n_boot, "n_starts": n_starts,
        "fit_s": round(t_fit, 3), "bootstrap_s": round(t_boot, 3), "naive_loop_s": round(t_naive, 3),
        "speedup_vs_naive": round(t_naive / t_boot, 2),
    }
    append_rows(RESULTS, [record])


if __name__ == "__main__":
    main()
