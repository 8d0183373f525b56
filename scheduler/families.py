"""Run families in the scheduler: one warmup-stable-decay training at N gives several D as cooldown branches,
so a family (N, [D_1 < ... < D_k], mix) is proposed, valued and priced as ONE candidate.

    families: {enabled: true, max_branches: 4, branch_span: 10, cooldown_fraction: 0.2}    # study.yaml

Why: a constant-lr run cooled down at D_i matches a cosine run to D_i (Hägele et al. 2024, arXiv:2405.18392;
MiniCPM's WSD schedule, arXiv:2404.06395), so the branches cost the longest run plus their cooldowns:
C = 6 N (D_k + f * sum_(i<k) D_i) (trainers.spec.FamilySpec.flops) instead of 6 N sum_i D_i.

Branches. The proposer chooses (N, D_k, mix) in the ordinary search space (scheduler/proposer.py); the other
branches are log-spaced below D_k down to D_1 = max(D_k / branch_span, the D bound, the D/N band's floor, the
per-run FLOP floor / 6N) -- every branch is a run inside the study's bounds and the realistic tokens-per-parameter
band, and branches are at least MIN_BRANCH_GAP_DECADES apart (fewer branches near the band's floor).

Value. For M candidate families the bootstrap ensemble predicts the log-losses of every skill at every branch:
y (K, M, k*S). Observing that vector with noise covariance R reduces the targets' variance by
    ΔVar_t = c_tᵀ (Σ_yy + R)⁻¹ c_t,   c_t = Cov(y, q_t)                       (the linear-Gaussian update)
with R = C_k(ρ) ⊗ diag(σ_s²): a skill's noise is correlated with coefficient ρ (families.noise_correlation)
between branches of one family (they share the stable phase, the seed and the data order) and independent
across skills, as in the single-run acquisition (scheduler/acquisition.py, whose chance correction is applied
with P = k*S observed quantities). The acquisition is the weighted gain / (family FLOPs + overhead_flops), the
overhead counted once per family: it is one training (when the study's run budget binds, each branch also pays
the shadow price of a run, Study.run_price, since each is a row of max_runs). Batches condition the ensemble on
all branches jointly (an ensemble-Kalman step with perturbations drawn from N(0, R)).

Optuna and the ledger. Each branch is its own trial of the persistent study and its own ledger row (columns
`family_id`, `branch`): the branches of a family are enqueued together (each with user_attrs {"family":
FamilySpec.to_dict(), "branch": i}) and asked at once, and each is told when its row is recorded. A killed study's
`reconcile()` finds the family's RUNNING/WAITING trials, rebuilds the same FamilySpec (same family_id) from their
user_attrs and hands its unrecorded branches back; the dispatcher sends the family to the backend's
`run_family`, which resumes it from its checkpoints (torch) or recomputes it (simulated); branches already in
the ledger are never recorded twice (Study.record_family records only outstanding ones). max_runs counts
branches: the last family may pass it by up to max_branches - 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.stats import chi2

from fitting.conventions import training_flops
from scheduler.acquisition import CHANCE_QUANTILE, Belief, kalman_update, target_weights
from scheduler.config import StudyConfig
from scheduler.estimates import Estimates, derived_seed, init_seed
from scheduler.proposer import MIN_SEPARATION, Point, Proposer
from trainers.spec import FamilySpec, RunSpec

MIN_BRANCH_GAP_DECADES = 0.1  # adjacent branches at least 10^0.1 = 1.26x apart in D


@dataclass(frozen=True)
class FamilyPoint:
    """A family to train: N, its branches' D (increasing) and the mix."""

    n_params: int
    n_tokens: tuple[int, ...]
    mix: dict[str, float]
    cooldown_fraction: float = 0.2

    @property
    def flops(self) -> float:
        """True cost: the stable phase to D_k plus every cooldown (= FamilySpec.flops)."""
        return family_flops(self.n_params, self.n_tokens, self.cooldown_fraction)


def family_flops(n_params: float, n_tokens, cooldown_fraction: float) -> float:
    """6 N (D_k + f * sum_(i<k) D_i): what FamilySpec.flops computes, for arrays of candidates too."""
    tokens = np.asarray(n_tokens, float)
    return training_flops(n_params, tokens[..., -1] + cooldown_fraction * tokens[..., :-1].sum(-1))


def branch_tokens(cfg: StudyConfig, n_params: float, d_max: float) -> tuple[int, ...]:
    """The branches of a family at N whose longest branch is D_k = d_max (module docstring)."""
    fam = cfg.families
    lo = max(cfg.n_tokens.lo, d_max / fam.branch_span, cfg.min_run_flops / training_flops(n_params, 1.0))
    if cfg.tokens_per_param is not None:
        lo = max(lo, cfg.tokens_per_param.lo * n_params)
    decades = math.log10(d_max / lo) if lo < d_max else 0.0
    k = min(fam.max_branches, 1 + int(decades / MIN_BRANCH_GAP_DECADES + 1e-9))
    if k <= 1:
        return (int(round(d_max)),)
    tokens = tuple(int(round(d)) for d in np.geomspace(lo, d_max, k))
    return tuple(sorted(set(tokens)))


def family_point(cfg: StudyConfig, point: Point) -> FamilyPoint:
    """The family whose longest branch is `point`."""
    return FamilyPoint(point.n_params, branch_tokens(cfg, point.n_params, point.n_tokens), dict(point.mix),
                       float(cfg.families.cooldown_fraction))


def family_spec(cfg: StudyConfig, point: FamilyPoint) -> FamilySpec:
    """The FamilySpec a study trains for `point` (its seed, hparams overrides and cooldown). The seed is a hash of
    the study seed and the family's (N, D..., mix), so families at different points start from different
    initialisations (scheduler/study.py run_seed says why); a resumed family keeps the seed its trials recorded."""
    seed = init_seed(cfg.seed, "init-family", point.n_params, list(point.n_tokens), point.mix)
    return FamilySpec(n_params=point.n_params, n_tokens=point.n_tokens, mix=dict(point.mix), seed=seed,
                      hparams=cfg.hparams.overrides(), cooldown_fraction=float(cfg.families.cooldown_fraction),
                      cooldown_shape=cfg.families.cooldown_shape)


def branch_spec(family: FamilySpec, branch: int, trial_number: int) -> RunSpec:
    """Branch `branch` of a family as the RunSpec of its own trial."""
    return replace(family.branches()[branch], trial_number=trial_number)


def noise_covariance(sigma: np.ndarray, n_branches: int, rho: float) -> np.ndarray:
    """R of a family's observation, ordered branch-major: sigma (..., k*S), each branch's noise sigma per skill (the
    measured sigma(N, D), Belief.noise_at) -> (..., k*S, k*S) with
    R[(i, s), (j, r)] = [s == r] * (1 if i == j else rho) * sigma_(i,s) * sigma_(j,r)."""
    sigma = np.asarray(sigma, float)
    corr = np.full((n_branches, n_branches), rho) + (1.0 - rho) * np.eye(n_branches)
    pattern = np.kron(corr, np.eye(sigma.shape[-1] // n_branches))  # (k*S, k*S)
    return pattern * sigma[..., :, None] * sigma[..., None, :]


def joint_variance_reduction(q: np.ndarray, y: np.ndarray, noise_cov: np.ndarray) -> np.ndarray:
    """The linear-Gaussian variance reduction of every target from observing a vector: q (K, T), y (K, M, P),
    noise_cov (P, P) -> (M, T), less the gain a finite ensemble shows by chance (as acquisition.variance_reduction,
    with P observed quantities)."""
    k = q.shape[0]
    qc, yc = q - q.mean(0), y - y.mean(0)
    c = np.einsum("kmp,kt->mpt", yc, qc) / (k - 1)  # (M, P, T)
    signal_cov = np.einsum("kmp,kmr->mpr", yc, yc) / (k - 1)  # (M, P, P)
    noise_cov = np.broadcast_to(noise_cov, signal_cov.shape)
    syy = signal_cov + noise_cov
    sol = np.linalg.solve(syy, c)
    gain = np.einsum("mpt,mpt->mt", c, sol)
    p = y.shape[2]
    signal = np.einsum("mpr,mrp->m", signal_cov, np.linalg.inv(syy))  # tr(Σ_yy (Σ_yy + R)⁻¹)
    chance = signal[:, None] * q.var(0, ddof=1)[None, :] / (k - 1) * chi2.ppf(CHANCE_QUANTILE, p) / p
    return np.maximum(gain - chance, 0.0)


def _family_predictions(belief: Belief, n_params: np.ndarray, tokens: np.ndarray, mix) -> np.ndarray:
    """(K, M, k*S) predicted log-losses of M families of k branches each (tokens (M, k)), branch-major."""
    m, k = tokens.shape
    flat_mix = None if mix is None else np.repeat(np.asarray(mix), k, axis=0)
    with np.errstate(all="ignore"):
        y = belief.predict(np.repeat(n_params, k), tokens.reshape(-1), flat_mix)  # (K, M*k, S)
    return y.reshape(y.shape[0], m, k * y.shape[2])


def family_acquisition(belief: Belief, n_params: np.ndarray, tokens: np.ndarray, mix, cost: np.ndarray,
                       rho: float) -> np.ndarray:
    """Weighted joint variance reduction per unit cost of M families with the same branch count, shape (M,)."""
    q = belief.q
    y = _family_predictions(belief, n_params, tokens, mix)
    good = np.all(np.isfinite(y), axis=(0, 2))
    y = np.where(np.isfinite(y), y, 0.0)
    m, k = tokens.shape
    sigma = belief.noise_at(np.repeat(n_params, k), tokens.reshape(-1)).reshape(m, k * len(belief.skills))
    r = noise_covariance(sigma, k, rho)  # (M, k*S, k*S): each branch's measured sigma(N, D)
    gain = joint_variance_reduction(q, y, r) @ target_weights(q, belief.v_tol) / belief.v_tol
    return np.where(good, gain / np.asarray(cost, float), -np.inf)


def condition_family(belief: Belief, n_params: float, tokens, mix, rho: float, rng: np.random.Generator) -> Belief:
    """The belief after (pretending to) observe every branch of a family: acquisition.condition's ensemble
    Kalman step with the family's vector observation and correlated perturbations ε_k ~ N(0, R)."""
    tokens = np.asarray(tokens, float)[None, :]
    mix_rows = None if mix is None else np.asarray(mix, float)
    y = _family_predictions(belief, np.array([float(n_params)]), tokens, mix_rows)[:, 0, :]  # (K, k*S)
    n_branches = tokens.shape[1]
    sigma = belief.noise_at(np.full(n_branches, float(n_params)), tokens[0]).reshape(-1)  # (k*S,), branch-major
    r = noise_covariance(sigma, n_branches, rho)
    perturbation = rng.standard_normal(y.shape) @ np.linalg.cholesky(r).T
    return replace(belief, ensembles=kalman_update(belief.ensembles, y, y.mean(0) + perturbation - y, r))


class FamilyProposer(Proposer):
    """The Proposer with families as candidates: the same search space, seed design and refinement (a candidate's
    (N, D) is the family's longest branch), valued by `family_acquisition` and returning FamilyPoints."""

    def __init__(self, cfg: StudyConfig):
        super().__init__(cfg)
        self.rho = float(cfg.families.noise_correlation)
        self._budget_left = math.inf  # a family's true cost must fit what is left; set per `propose`

    def _value(self, belief: Belief, n, d, mix, avoid: list, unique=None) -> np.ndarray:
        """Families train on all their data (StudyConfig.max_run_epochs is 1 with families): `unique` is unused."""
        n, d = np.asarray(n, float), np.asarray(d, float)
        value = np.full(n.shape, -np.inf)
        designs = [branch_tokens(self.cfg, n[i], d[i]) for i in range(len(n))]
        f = float(self.cfg.families.cooldown_fraction)
        for size in sorted({len(t) for t in designs}):
            idx = np.array([i for i, t in enumerate(designs) if len(t) == size])
            tokens = np.array([designs[i] for i in idx], float)
            flops = family_flops(n[idx], tokens, f)
            overhead = self.cfg.proposer.overhead_flops  # once: one training (module docstring)
            cost = flops + overhead + len(tokens[0]) * (self.run_price - overhead)  # + each row's shadow price
            mix_arg = mix[idx] if self.space.simplex else None
            v = family_acquisition(belief, n[idx], tokens, mix_arg, cost, self.rho)
            value[idx] = np.where(flops <= self._budget_left, v, -np.inf)
        for p in avoid:  # never a second family (or run) at an N and D_k still training or just chosen
            d_p = p.n_tokens[-1] if isinstance(p, FamilyPoint) else p.n_tokens
            near = ((np.abs(np.log10(n / p.n_params)) < MIN_SEPARATION)
                    & (np.abs(np.log10(d / d_p)) < MIN_SEPARATION))
            value = np.where(near, -np.inf, value)
        return value

    def propose(self, k: int, estimates: Estimates | None, in_flight: list, n_asked: int,
                budget_left: float) -> list[FamilyPoint]:
        """Up to k new families (fewer if nothing affordable is left); `in_flight` holds Points and FamilyPoints."""
        cfg = self.cfg
        self._budget_left = budget_left
        max_flops = min(cfg.max_run_flops, budget_left)
        if k <= 0 or max_flops < cfg.min_run_flops:
            return []
        chosen: list[FamilyPoint] = []

        def room() -> float:
            return budget_left - sum(p.flops for p in chosen)

        if (estimates is None or n_asked < cfg.proposer.seed_runs
                or not all(np.isfinite(t.rel_halfwidth) for t in estimates.targets)):
            for p in self.seed_design(n_asked, k, max_flops):  # laws not identifiable yet: fill space with families
                fam = family_point(cfg, p)
                if fam.flops <= room():
                    chosen.append(fam)
            return chosen
        rng = np.random.default_rng(derived_seed(cfg.seed, "enkf-family", n_asked))
        belief = self.belief(estimates)
        for p in in_flight:
            belief = self._conditioned_any(belief, p, rng)
        for j in range(k):
            self._budget_left = room()
            max_flops = min(cfg.max_run_flops, self._budget_left)
            if max_flops < cfg.min_run_flops:
                break
            every = cfg.proposer.explore_every
            fam = None
            if every and (n_asked + j) % every == 0:  # a reserved space-filling family
                explore = [family_point(cfg, p) for p in self.seed_design(n_asked + j, 1, max_flops)]
                fam = next((f for f in explore if f.flops <= self._budget_left), None)
            if fam is None:
                found = self.best(belief, max_flops, derived_seed(cfg.seed, "screen-family", n_asked + j),
                                  avoid=[*in_flight, *chosen])
                if found is None:
                    break
                fam = family_point(cfg, found[0])
                if fam.flops > self._budget_left:
                    break
            chosen.append(fam)
            belief = self._conditioned_any(belief, fam, rng)
        return chosen

    def _conditioned_any(self, belief: Belief, p, rng) -> Belief:
        if not isinstance(p, FamilyPoint):
            return self._conditioned(belief, p, rng)
        mix = [[p.mix[d] for d in self.space.domains]] if self.space.simplex else None
        return condition_family(belief, p.n_params, p.n_tokens, mix, self.rho, rng)


def make_proposer(cfg: StudyConfig) -> Proposer:
    """The study's proposer: FamilyProposer when families are enabled."""
    return FamilyProposer(cfg) if cfg.families.enabled else Proposer(cfg)


def in_flight_points(outstanding: list[RunSpec], families: dict[str, FamilySpec]) -> list:
    """What the proposer conditions on: a Point per outstanding plain run, a FamilyPoint per family with an
    outstanding branch (the whole family: its recorded branches are in the fit already, which double-counts them
    a little for the conditioning only)."""
    points, seen = [], set()
    for s in outstanding:
        if s.family_id and s.family_id in families:
            if s.family_id not in seen:
                seen.add(s.family_id)
                fam = families[s.family_id]
                points.append(FamilyPoint(fam.n_params, fam.n_tokens, dict(fam.mix), fam.cooldown_fraction))
        else:
            points.append(Point(s.n_params, s.n_tokens, s.mix, s.unique_tokens))
    return points
