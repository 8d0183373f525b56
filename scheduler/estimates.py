"""Refit: from the ledger's finished runs to per-skill law ensembles and per-target estimates.

One bootstrap resample of *runs* is shared by every skill, so member k of each skill's ensemble saw
the same data and a composition target (Σ_s w_s L_s) can be optimised member by member.

Each skill's law is the study's `law`: `auto` (the default) averages every applicable law family by how well
each predicts the largest runs from the others (fitting/averaging.py), so the ensemble mixes families and
every estimate carries the doubt about the law's form; a family name fits that family alone.

A target's interval is the 95% bias-corrected percentile interval of N*_t(C_target) over the ensemble (for a
mixture of families, each family's members corrected about its own point estimate:
fitting.averaging.mixture_interval), its point estimate the weighted geometric mean of the families' ones;
its relative half-width, the stop rule's quantity, is (hi - lo) / (2 * N*_point). It is infinite (the target
is not identifiable, the study cannot stop on it and the proposer keeps filling space) while any law the
target uses has an exponent on the solver's bound: such a law's interval is narrow because of the bound.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from fitting.averaging import (
    AUTO,
    AveragedFit,
    FamilyScore,
    bootstrap_average,
    fit_average,
    member_families,
    mixture_interval,
)
from fitting.conventions import FLOPS_PER_PARAM_TOKEN
from fitting.law import LawEnsemble, ParametricLaw
from fitting.noise import correlated_draws
from fitting.optimum import composition_optimum
from fitting.parametric import ParametricFit, fit_parametric
from scheduler.config import StudyConfig, Target
from scheduler.ledger import row_unique_tokens

REPEATED_EPOCHS_MATTER = 4.0  # up to ~4 epochs repeated tokens are worth nearly new ones (Muennighoff et al. 2023)


@dataclass(frozen=True)
class TargetEstimate:
    """N*(C_target) for one target, with its 95% interval."""

    name: str
    weights: dict[str, float]
    mix: dict[str, float]
    flops: float
    n_params: float
    n_params_ci95: tuple[float, float]
    n_tokens: float
    n_tokens_ci95: tuple[float, float]
    rel_halfwidth: float  # inf while not identifiable (see _rel_halfwidth and `degenerate`)
    degenerate: tuple[str, ...] = ()  # exponents of the laws it uses that sit on a solver bound, e.g. "code: beta=0.01"
    families: dict = field(default_factory=dict)  # family -> {weight, n_params, n_params_ci95}: each form's own answer
    unresolved: tuple[str, ...] = ()  # what the runs cannot settle yet, e.g. the target's data repetition (no N* then)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["n_params_ci95"], d["n_tokens_ci95"] = list(self.n_params_ci95), list(self.n_tokens_ci95)
        d["degenerate"], d["unresolved"] = list(self.degenerate), list(self.unresolved)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TargetEstimate:
        """Back from to_dict() as written to JSON (a null number, i.e. not identifiable, reads as inf/nan)."""
        num = lambda v, missing: missing if v is None else float(v)  # noqa: E731
        return cls(name=d["name"], weights=dict(d["weights"]), mix=dict(d.get("mix") or {}), flops=float(d["flops"]),
                   n_params=num(d.get("n_params"), np.nan),
                   n_params_ci95=tuple(num(v, np.nan) for v in d.get("n_params_ci95") or (None, None)),
                   n_tokens=num(d.get("n_tokens"), np.nan),
                   n_tokens_ci95=tuple(num(v, np.nan) for v in d.get("n_tokens_ci95") or (None, None)),
                   rel_halfwidth=num(d.get("rel_halfwidth"), np.inf), degenerate=tuple(d.get("degenerate") or ()),
                   families=dict(d.get("families") or {}), unresolved=tuple(d.get("unresolved") or ()))


@dataclass(frozen=True)
class Estimates:
    """Everything one refit knows: point fits, ensembles, noise and target estimates."""

    n_runs: int
    fits: dict[str, ParametricFit]  # per skill, the fit of its leading family (largest weight)
    ensembles: dict[str, LawEnsemble]  # per skill: one family's ensemble or a mixture (fitting/averaging.py)
    noise: dict[str, float]  # log-loss noise sigma per skill at the runs' typical (N, D) (fits[s].noise)
    targets: list[TargetEstimate]
    runs: tuple = ()  # distinct finished (requested N, D, mix tuple in cfg.domains order, unique tokens or None):
    # replicate candidates
    averages: dict[str, AveragedFit] = field(default_factory=dict)  # per skill: every family's fit and weight

    @property
    def noise_models(self) -> dict:
        """Per skill, the fitted sigma(N, D) (fitting.noise.NoiseModel; None for a fit without one)."""
        return {s: f.noise for s, f in self.fits.items()}

    def converged(self, tolerance: float) -> bool:
        return all(t.rel_halfwidth <= tolerance for t in self.targets)


def precision_text(rel_halfwidth: float | None, degenerate=(), digits: int = 1, unresolved=()) -> str:
    """How a target's precision reads in logs, tables and reports: "±9.5%", or why there is none.

    rel_halfwidth is inf (a TargetEstimate) or None (read back from result.json) when not identifiable."""
    if degenerate:
        return f"n/a: {', '.join(degenerate)} on a solver bound"
    if unresolved:
        return f"n/a: {'; '.join(unresolved)}"
    if rel_halfwidth is None or not np.isfinite(rel_halfwidth):
        return "n/a: not identifiable"
    return f"±{100 * rel_halfwidth:.{digits}f}%"


def family_text(families: dict, tolerance: float) -> str:
    """Each law family's own N* and weight for one target, and whether they disagree beyond the tolerance:
    "laws: chinchilla 0.75 -> 4.98e+09, farseer 0.25 -> 4.32e+09 (spread x1.15: the runs must settle it)"."""
    parts, points = [], []
    for name, f in families.items():
        n = f.get("n_params")
        ok = n is not None and np.isfinite(n) and n > 0
        weight = f.get("weight", 0.0)
        parts.append(f"{name} {weight:.2f} -> {n:.3g}" if ok else f"{name} {weight:.2f} -> n/a")
        if ok and f.get("weight", 0.0) >= 0.1:
            points.append(n)
    text = "laws: " + ", ".join(parts)
    if len(points) > 1:
        spread = max(points) / min(points)
        settled = spread <= 1 + 2 * tolerance
        text += f" (spread x{spread:.2f}{'' if settled else ': the families disagree; runs must settle it'})"
    return text


def init_seed(seed: int, label: str, n_params: int, n_tokens, mix: dict[str, float], *parts) -> int:
    """The seed that draws a run's (or a family's) initialisation: a hash of the study seed and what is trained,
    N, D (one or a list of branch D) and the mix to 12 digits, plus `parts` (a replicate index)."""
    tokens = [int(d) for d in n_tokens] if isinstance(n_tokens, list | tuple) else int(n_tokens)
    key_mix = sorted((d, round(float(w), 12)) for d, w in mix.items())
    return derived_seed(seed, label, int(n_params), tokens, key_mix, *parts)


def derived_seed(seed: int, *parts) -> int:
    """A 32-bit seed derived from the study seed and a label (deterministic across restarts)."""
    key = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")


def fit_inputs(cfg: StudyConfig, rows: list[dict]) -> dict:
    """Arrays for fitting from ledger rows (finished ok, finite), ordered by trial number."""
    good = [r for r in rows if r["status"] == "ok" and all(np.isfinite(r.get(f"loss/{s}", np.nan)) for s in cfg.skills)]
    good.sort(key=lambda r: (r.get("trial_number", -1), r["run_id"]))
    out = {
        "n_params": np.array([r["n_params"] for r in good], float),
        "n_tokens": np.array([r["n_tokens"] for r in good], float),
        "loss": {s: np.array([r[f"loss/{s}"] for r in good], float) for s in cfg.skills},
        "mix": None,
        "family_id": [r.get("family_id") or "" for r in good],  # "" for a plain run (scheduler/families.py)
        "unique": _unique_tokens(good),
    }
    if cfg.mix.space == "simplex":
        out["mix"] = np.array([[r.get(f"mix/{d}", 0.0) or 0.0 for d in cfg.domains] for r in good], float)
    return out


def _unique_tokens(rows: list[dict]) -> np.ndarray | None:
    """Unique tokens each run's data held: the fewer of `n_unique_tokens` (a prior run's, or the limit a loop run
    asked for) and D / (its most repeated domain's epochs) where the backend recorded epochs over its text (a
    limit the data could not fill, or a world with fewer tokens, repeats more); None when no run repeated its data."""
    out = []
    for r in rows:
        unique = r.get("n_unique_tokens")
        unique = None if unique is None or not np.isfinite(unique) else float(unique)
        epochs = [float(v) for k, v in r.items() if k.startswith("epochs/") and v is not None and np.isfinite(v)]
        if epochs and max(epochs) > 1.0:
            read = float(r["n_tokens"]) / max(epochs)
            unique = read if unique is None else min(unique, read)
        out.append(np.inf if unique is None or not np.isfinite(unique) else float(unique))
    arr = np.array(out, float)
    return arr if np.any(np.isfinite(arr)) else None


def single_member(law, domains: tuple[str, ...]):
    """A one-member ensemble holding a point estimate (of any family)."""
    if not isinstance(law, ParametricLaw):
        return law.one  # a FamilyLaw holds its one-member ensemble
    transfer = None if law.transfer is None else np.array([[law.transfer[d] for d in domains]])
    return LawEnsemble(E=np.array([law.E]), A=np.array([law.A]), B=np.array([law.B]),
                       alpha=np.array([law.alpha]), beta=np.array([law.beta]),
                       transfer=transfer, domains=domains if transfer is not None else ())


def target_optimum(ensembles: dict[str, LawEnsemble], cfg: StudyConfig, target: Target,
                   mix: dict[str, float] | None = None):
    """Per-member (N*, D*) of one target: closed form for one skill, numerical for a composition.

    Mixture-aware ensembles are read at `mix`, by default the target's mix when the study's mix is a simplex
    (with a fixed mix the fitted laws are plain ones: their data all had that mix). A known mixture-aware truth
    of a fixed-mix study is read at the fixed mix: pass `mix=cfg.target_mix(target)`."""
    if mix is None and cfg.mix.space == "simplex":
        mix = cfg.target_mix(target)
    weights = {s: w for s, w in target.weights.items() if w > 0}
    unique = target.unique_tokens  # None: unlimited data
    if len(weights) == 1:
        (skill,) = weights
        return ensembles[skill].optimum(target.flops, mix=mix, unique=unique)
    return composition_optimum({s: ensembles[s] for s in weights}, weights, target.flops, mix=mix, unique=unique)


def _inflate(ci: tuple[float, float], point: float, factor: float) -> tuple[float, float]:
    """Stretch an interval about `point` by `factor` in log space (factor 1: unchanged)."""
    if factor == 1.0 or not (0 < point < np.inf) or not all(np.isfinite(ci)) or min(ci) <= 0:
        return ci
    lo, hi = np.log(ci[0] / point), np.log(ci[1] / point)
    return float(point * np.exp(factor * lo)), float(point * np.exp(factor * hi))


def _rel_halfwidth(point: float, ci: tuple[float, float], samples: np.ndarray) -> float:
    """(hi - lo) / (2 * point); infinite when the law is not yet identifiable: a point estimate that is
    0 or infinite, an interval that is not finite, or more than 5% of members without a finite optimum."""
    finite = np.isfinite(samples) & (samples > 0)
    if not (0 < point < np.inf) or not all(np.isfinite(ci)) or finite.mean() < 0.95:
        return float("inf")
    return (ci[1] - ci[0]) / (2 * point)


def _shared_draws(cfg: StudyConfig, data: dict, fits: dict[str, ParametricFit], n_boot: int,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Standard-normal draws (n_boot, n_runs) per skill for the parametric bootstrap, correlated across skills as
    the runs' standardized residuals are (fitting.noise.correlated_draws), so member k of every skill saw
    consistent noise and a composition target keeps the cross-skill correlation of one run's losses."""
    n, d, mix = data["n_params"], data["n_tokens"], data["mix"]
    standardized = []
    for skill in cfg.skills:
        law, fit = fits[skill].law, fits[skill]
        sigma = fit.noise.sigma(n, d) if fit.noise is not None else np.full(n.shape, fit.residual_std)
        residual = np.log(data["loss"][skill]) - np.log(law.loss(n, d, mix if law.transfer else None))
        standardized.append(residual / np.maximum(sigma, 1e-12))
    z = correlated_draws(np.array(standardized), n_boot, rng)
    return {skill: z[i] for i, skill in enumerate(cfg.skills)}


def _fit_skill(cfg: StudyConfig, data: dict, skill: str, kws: dict) -> AveragedFit:
    """The skill's law: every applicable family weighted (`law: auto`), or the one family the study names."""
    args = (data["n_params"], data["n_tokens"], data["loss"][skill])
    if cfg.law == AUTO:
        return fit_average(*args, **kws, unique=data["unique"])
    fit = fit_parametric(*args, **kws, family=cfg.law, unique=data["unique"])
    return AveragedFit({cfg.law: fit}, {cfg.law: FamilyScore(cfg.law, 1.0, None, None, None, "the study's law")})


def _target_estimate(cfg: StudyConfig, target: Target, averages: dict[str, AveragedFit], ensembles: dict,
                     domains: tuple[str, ...]) -> TargetEstimate:
    """N*, D* of one target and their intervals from the (possibly mixed) ensembles; each family's own answer."""
    skills = [s for s, w in target.weights.items() if w > 0]
    labels = np.array(["+".join(parts) for parts in zip(*(member_families(ensembles[s]) for s in skills),
                                                         strict=True)], dtype=object)
    points_n, points_d = {}, {}
    with np.errstate(all="ignore"):  # degenerate fits (alpha or beta -> 0) give 0/inf optima
        for label in dict.fromkeys(labels.tolist()):
            laws = {s: single_member(averages[s].fits[f].law, domains) for s, f in zip(skills, label.split("+"),
                                                                                     strict=True)}
            n_pt, d_pt = target_optimum(laws, cfg, target)
            points_n[label], points_d[label] = float(n_pt[0]), float(d_pt[0])
        n_b, d_b = target_optimum(ensembles, cfg, target)
    share = {label: float(np.mean(labels == label)) for label in points_n}
    n_hat = float(np.exp(sum(w * np.log(points_n[lb]) for lb, w in share.items())))
    d_hat = target.flops / (FLOPS_PER_PARAM_TOKEN * n_hat) if np.isfinite(n_hat) and n_hat > 0 else float("nan")
    n_ci = mixture_interval(n_b, labels, points_n)
    d_ci = mixture_interval(d_b, labels, points_d)
    inflation = cfg.proposer.interval_inflation
    n_ci, d_ci = _inflate(n_ci, n_hat, inflation), _inflate(d_ci, d_hat, inflation)
    degenerate = tuple(f"{s}: {e}" for s in skills for e in averages[s].leading.exponents_at_bounds())
    unresolved = _unresolved_repetition(target, averages, skills, d_hat, cfg.max_run_epochs > 1.0)
    families = {}
    for family in dict.fromkeys(f for s in skills for f in averages[s].fits):
        if not all(family in averages[s].fits for s in skills):
            continue
        label = "+".join([family] * len(skills))
        own = labels == label
        families[family] = {
            "weight": float(np.mean([averages[s].weights[family] for s in skills])),
            "n_params": points_n[label] if label in points_n else _own_point(cfg, target, averages, skills, family,
                                                                            domains),
            "n_params_ci95": list(mixture_interval(n_b[own], labels[own], points_n)) if own.sum() >= 20 else None,
        }
    return TargetEstimate(
        name=target.name, weights=dict(target.weights), mix=cfg.target_mix(target), flops=target.flops,
        n_params=n_hat, n_params_ci95=n_ci, n_tokens=d_hat, n_tokens_ci95=d_ci,
        rel_halfwidth=float("inf") if degenerate or unresolved else _rel_halfwidth(n_hat, n_ci, n_b),
        degenerate=degenerate, families=families, unresolved=unresolved)


def _unresolved_repetition(target: Target, averages: dict[str, AveragedFit], skills: list[str],
                           d_hat: float, repeats: bool = False) -> tuple[str, ...]:
    """Why a target's N* cannot be trusted yet because of data repetition: its D* reads its `unique_tokens` more
    than REPEATED_EPOCHS_MATTER times, and no family with a repetition term could be fitted (no run repeated its
    data enough). The Chinchilla and Farseer forms would read such a target as if the data were unlimited.
    `repeats`: the study's proposals may repeat data (StudyConfig.max_run_epochs > 1), which the reason says."""
    if target.unique_tokens is None or not np.isfinite(d_hat):
        return ()
    epochs = d_hat / float(target.unique_tokens)
    missing = [s for s in skills if not any(averages[s].fits[f].family.needs_unique_tokens for f in averages[s].fits)]
    if epochs <= REPEATED_EPOCHS_MATTER or not missing:
        return ()
    remedy = ("the study buys runs that repeat their data" if repeats else "this study buys no runs that repeat "
              "their data (its backend cannot, or proposer.max_epochs is 1): give prior_runs with n_unique_tokens")
    return (f"D* reads the {target.unique_tokens:.3g} unique tokens ~{epochs:.0f} times and no law with a repetition "
            f"term could be fitted for {', '.join(missing)} yet: {remedy}",)


def _own_point(cfg, target, averages, skills, family, domains) -> float:
    laws = {s: single_member(averages[s].fits[family].law, domains) for s in skills}
    with np.errstate(all="ignore"):
        return float(target_optimum(laws, cfg, target)[0][0])


def refit(cfg: StudyConfig, rows: list[dict], n_boot: int | None = None) -> Estimates | None:
    """Fit every skill's law (one family or the weighted families) and bootstrap it; None while too few runs."""
    data = fit_inputs(cfg, rows)
    n_pts = len(data["n_params"])
    n_law_params = 5 + (len(cfg.domains) - 1 if data["mix"] is not None else 0)
    if n_pts < max(n_law_params + 2, 8):
        return None
    n_boot = n_boot or cfg.proposer.n_boot
    rng = np.random.default_rng(derived_seed(cfg.seed, "bootstrap", n_pts))
    resamples = rng.integers(0, n_pts, size=(n_boot, n_pts))
    simplex = data["mix"] is not None
    kws = {skill: dict(mix=data["mix"], domains=tuple(cfg.domains) if simplex else (),
                       own_domain=cfg.skill_domains.get(skill) if simplex else None) for skill in cfg.skills}
    averages = {skill: _fit_skill(cfg, data, skill, kws[skill]) for skill in cfg.skills}
    fits = {skill: averages[skill].leading for skill in cfg.skills}
    draws = _shared_draws(cfg, data, fits, n_boot, rng) if cfg.proposer.bootstrap == "parametric" else {}
    if draws and cfg.families.enabled:  # a family's branches share most of their noise: so do their draws
        draws = correlate_within_families(draws, _shared_draws(cfg, data, fits, n_boot, rng), data["family_id"],
                                          cfg.families.noise_correlation)
    ensembles, noise = {}, {}
    for skill in cfg.skills:
        ensembles[skill] = bootstrap_average(averages[skill], data["n_params"], data["n_tokens"], data["loss"][skill],
                                             n_boot=n_boot, resamples=resamples, seed=cfg.seed,
                                             method=cfg.proposer.bootstrap, draws=draws.get(skill),
                                             unique=data["unique"], **kws[skill])
        noise[skill] = max(fits[skill].noise.sigma_ref if fits[skill].noise else fits[skill].residual_std,
                           cfg.proposer.noise_floor)
    domains = tuple(cfg.domains) if simplex else ()
    targets = [_target_estimate(cfg, target, averages, ensembles, domains) for target in cfg.targets]
    runs = tuple(dict.fromkeys(  # the distinct finished runs, as requested: candidates for replicates
        (int(r.get("requested_n_params") or r["n_params"]), int(r["n_tokens"]),
         tuple(float(r.get(f"mix/{d}") or 0.0) for d in cfg.domains), row_unique_tokens(r))
        for r in rows if r["status"] == "ok" and not r.get("family_id")))
    return Estimates(n_runs=n_pts, fits=fits, ensembles=ensembles, noise=noise, targets=targets, runs=runs,
                     averages=averages)


def correlate_within_families(draws: dict[str, np.ndarray], shared: dict[str, np.ndarray], family_ids: list[str],
                              rho: float) -> dict[str, np.ndarray]:
    """The parametric bootstrap's standard-normal draws (n_boot, n_runs) per skill, made correlated rho between the
    branches of one family: z'_i = sqrt(1 - rho) z_i + sqrt(rho) u_f(i), with u_f a second, independent set of
    draws (`shared`, correlated across skills like the first) taken at the family's first row. Unit variance and
    the cross-skill correlation are kept; plain runs are unchanged. Without it the refit treats a family's branches
    as independent runs and its intervals are too narrow (BENCHMARKS.md, Run families in the scheduler)."""
    first: dict[str, int] = {}
    index = np.array([first.setdefault(f, i) if f else i for i, f in enumerate(family_ids)])
    in_family = np.array([bool(f) for f in family_ids])
    a, b = math.sqrt(1.0 - rho), math.sqrt(rho)
    return {s: np.where(in_family[None, :], a * z + b * shared[s][:, index], z) for s, z in draws.items()}
