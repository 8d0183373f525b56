"""How much more a study must spend to reach its tolerance: a forecast from its own half-width history.

For a fixed design shape the variance of an estimate falls as 1/information, and information grows in
proportion to the runs (and FLOPs) spent, so the relative half-width of N*(C_target) behaves like

    halfwidth(F) ~ k * F ** -rate,      rate = 1/2 in the asymptotic (linearised) regime.

`forecast_to_tolerance` fits log halfwidth = log k - rate * log F by least squares over the recent
readings (the last `window`, each refit's worst target), with the rate shrunk toward 1/2 by a prior worth
`prior_readings` readings and clipped to [0.2, 1] -- early in a study the half-width falls faster than
1/2 (the laws become identifiable), late it can stall; neither should be extrapolated far -- and solves
for the F at which it reaches the tolerance. The same is done for the run count. A forecast is an
order-of-magnitude statement for the progress line and result.json ("needs ~3e20 FLOPs, cap 1e20"), not
a promise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

RATE_PRIOR = 0.5  # d log(halfwidth) / d log(FLOPs) when information grows in proportion to spend
RATE_BOUNDS = (0.2, 1.0)


@dataclass(frozen=True)
class Forecast:
    """Expected totals at which the worst target's half-width reaches the tolerance."""

    flops_needed: float  # total FLOPs (spent + to come); inf when the half-width is not finite
    runs_needed: float  # total runs
    rate: float  # fitted d log(halfwidth) / d log(FLOPs)
    halfwidth: float  # the latest half-width
    readings: int  # readings the fit used

    def reachable(self, flops_cap: float, max_runs: float) -> bool:
        return self.flops_needed <= flops_cap and self.runs_needed <= max_runs

    def to_dict(self) -> dict:
        return {k: (v if np.isfinite(v) else None) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _rate(log_x: np.ndarray, log_hw: np.ndarray, prior_readings: float) -> float:
    """Slope -d log hw / d log x, a least-squares fit shrunk toward RATE_PRIOR (a conjugate-normal prior
    worth `prior_readings` readings), clipped to RATE_BOUNDS."""
    if log_x.size < 2 or np.ptp(log_x) <= 0:
        return RATE_PRIOR
    dx = log_x - log_x.mean()
    sxx = float(dx @ dx)
    slope = -float(dx @ (log_hw - log_hw.mean())) / sxx
    weight = sxx / (sxx + prior_readings * np.var(log_x)) if np.var(log_x) > 0 else 0.0
    return float(np.clip(weight * slope + (1 - weight) * RATE_PRIOR, *RATE_BOUNDS))


def forecast_to_tolerance(flops, runs, halfwidth, tolerance: float, *, window: int = 30,
                          prior_readings: float = 10.0) -> Forecast:
    """Forecast from readings (cumulative FLOPs, cumulative runs, worst half-width), oldest first."""
    flops, runs, hw = (np.asarray(x, float).ravel() for x in (flops, runs, halfwidth))
    if not (flops.size == runs.size == hw.size) or flops.size == 0:
        raise ValueError(f"flops, runs, halfwidth: different or zero lengths {flops.size}, {runs.size}, {hw.size}")
    ok = np.isfinite(hw) & (hw > 0) & (flops > 0) & (runs > 0)
    latest = float(hw[-1])
    if not ok[-1]:
        return Forecast(float("inf"), float("inf"), RATE_PRIOR, latest, 0)
    keep = np.flatnonzero(ok)[-window:]
    log_f, log_r, log_hw = np.log(flops[keep]), np.log(runs[keep]), np.log(hw[keep])
    rate_f = _rate(log_f, log_hw, prior_readings)
    rate_r = _rate(log_r, log_hw, prior_readings)
    if latest <= tolerance:
        return Forecast(float(flops[-1]), float(runs[-1]), rate_f, latest, int(keep.size))
    gap = np.log(latest / tolerance)  # log of how far the half-width must still fall
    return Forecast(float(flops[-1] * np.exp(gap / rate_f)), float(runs[-1] * np.exp(gap / rate_r)),
                    rate_f, latest, int(keep.size))
