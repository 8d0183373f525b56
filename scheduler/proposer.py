"""Where to train next: the search space and the proposer.

Search space. A run is (N, D, mix[, U]). Candidates are parametrised as (log C, u, mix[, r]): C = 6ND is drawn
log-uniformly within the affordable range and u in [0, 1] places log N within the N range that is
feasible at that C under the N and D bounds; on a simplex the mix is a uniform point on the simplex
(spacings of sorted uniforms) lifted above `mix.floor`. Where a target declares `unique_tokens`, the backend can
repeat data and the law has a repetition term (StudyConfig.max_run_epochs > 1), r places the run's epochs: the
lower REPEAT_OFF of its range trains on all the data, the rest limits the run to U = D / e unique tokens with e
log-uniform in [1, max_run_epochs]. So the seed design already holds runs that repeat their data, the law
families with a repetition term can be fitted from the start, and the acquisition buys more such runs where the
families disagree about what repetition costs the target (without them no run could tell: BENCHMARKS.md,
Misspecified truths).

Proposer lifecycle (called only by the controller):
    proposer = Proposer(cfg)
    points = proposer.propose(k, estimates, in_flight, n_asked, budget_left)   # repeatedly
`estimates` is the latest refit (None before the laws are identifiable), `in_flight` the points still
training, `n_asked` how many trials the persistent study holds (it indexes the seed design, so a
resumed controller continues the same sequence).

- Seed design: Optuna's QMC sampler (scrambled Sobol) over the unit cube, until `seed_runs` runs have
  been asked for and the laws can be fitted; the budget coordinate is raised to `seed_budget_skew`, so
  the design still spans the budget range but spends about half the FLOPs of a log-uniform one.
- Then: the candidate with the largest acquisition (scheduler/acquisition.py) — screened over a Sobol
  set of candidates, refined by an inner in-memory Optuna study (TPE) started from the best screened
  ones. A batch of k conditions the ensemble on each chosen point before choosing the next.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import optuna
from scipy.stats import qmc

from fitting.conventions import FLOPS_PER_PARAM_TOKEN, training_flops
from scheduler.acquisition import Belief, acquisition, condition
from scheduler.config import StudyConfig
from scheduler.estimates import Estimates, derived_seed, target_optimum

optuna.logging.set_verbosity(optuna.logging.WARNING)
N_REFINE_STARTS = 8  # screened candidates enqueued into the inner study
MIN_SEPARATION = 0.05  # decades of N, D and epochs: a candidate this close to a chosen/in-flight run is skipped
REPEAT_OFF = 0.5  # share of the repetition coordinate whose runs train on all their data (one epoch or less)


@dataclass(frozen=True)
class Point:
    """A run to train: requested parameters, tokens, mix and unique tokens (None: all the data there is)."""

    n_params: int
    n_tokens: int
    mix: dict[str, float]
    unique_tokens: int | None = None

    @property
    def flops(self) -> float:
        return training_flops(self.n_params, self.n_tokens)

    @property
    def epochs(self) -> float:
        """Times the run reads its unique tokens (1.0: not limited to fewer than it trains on)."""
        return max(self.n_tokens / self.unique_tokens, 1.0) if self.unique_tokens else 1.0

    @property
    def unique(self) -> float:
        """unique_tokens as the laws take it: inf for all the data."""
        return float(self.unique_tokens) if self.unique_tokens else math.inf


class SearchSpace:
    """Maps unit-cube coordinates to runs inside the study's bounds (see the module docstring)."""

    def __init__(self, cfg: StudyConfig):
        self.cfg = cfg
        self.domains = list(cfg.domains)
        self.simplex = cfg.mix.space == "simplex"
        self.mix_dims = len(self.domains) - 1 if self.simplex else 0
        self.max_epochs = cfg.max_run_epochs  # 1.0: no run repeats its data
        self.repeats = self.max_epochs > 1.0
        self.dims = 2 + self.mix_dims + int(self.repeats)

    def optuna_distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """The persistent study's trial parameters."""
        cfg = self.cfg
        dist = {
            "log10_n_params": optuna.distributions.FloatDistribution(math.log10(cfg.n_params.lo),
                                                                     math.log10(cfg.n_params.hi)),
            "log10_n_tokens": optuna.distributions.FloatDistribution(math.log10(cfg.n_tokens.lo),
                                                                     math.log10(cfg.n_tokens.hi)),
        }
        if self.simplex:
            dist.update({f"mix/{d}": optuna.distributions.FloatDistribution(0.0, 1.0) for d in self.domains})
        if self.repeats:
            dist["log10_epochs"] = optuna.distributions.FloatDistribution(0.0, math.log10(self.max_epochs))
        return dist

    def optional_params(self) -> dict[str, float]:
        """Parameters a trial may lack, with the value it then has: a study that could not repeat data when its
        trials were asked (log10_epochs 0: all the data)."""
        return {"log10_epochs": 0.0} if self.repeats else {}

    def to_params(self, point: Point) -> dict[str, float]:
        dist = self.optuna_distributions()
        params = {"log10_n_params": math.log10(point.n_params), "log10_n_tokens": math.log10(point.n_tokens)}
        if self.simplex:
            params.update({f"mix/{d}": point.mix[d] for d in self.domains})
        if self.repeats:
            params["log10_epochs"] = math.log10(point.epochs)
        return {k: min(max(v, dist[k].low), dist[k].high) for k, v in params.items()}

    def from_params(self, params: dict[str, float]) -> Point:
        mix = ({d: params[f"mix/{d}"] for d in self.domains} if self.simplex else dict(self.cfg.mix.fixed))
        n_tokens = int(round(10 ** params["log10_n_tokens"]))
        epochs = 10 ** params.get("log10_epochs", 0.0)
        unique = int(round(n_tokens / epochs)) if epochs > 1.0 + 1e-9 else None
        return Point(n_params=int(round(10 ** params["log10_n_params"])), n_tokens=n_tokens, mix=mix,
                     unique_tokens=unique)

    def _mix_from_unit(self, u: np.ndarray) -> np.ndarray:
        """(M, k-1) uniforms -> (M, k) mixes on the simplex above the floor."""
        if not self.simplex:
            return np.tile([self.cfg.mix.fixed[d] for d in self.domains], (u.shape[0], 1))
        cuts = np.sort(u, axis=1)
        edges = np.concatenate([np.zeros((u.shape[0], 1)), cuts, np.ones((u.shape[0], 1))], axis=1)
        spacings = np.diff(edges, axis=1)
        floor = self.cfg.mix.floor
        return floor + (1 - floor * len(self.domains)) * spacings

    def from_unit(self, u: np.ndarray, max_flops: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(M, dims) unit coordinates -> N (M,), D (M,), mix (M, n_domains); NaN rows where infeasible."""
        cfg = self.cfg
        u = np.atleast_2d(u)
        log_c = np.log(cfg.min_run_flops) + u[:, 0] * (np.log(max_flops) - np.log(cfg.min_run_flops))
        c = np.exp(log_c)
        n_lo, n_hi = cfg.n_bounds(c)
        ok = n_lo <= n_hi
        n = np.exp(np.log(n_lo) + u[:, 1] * (np.log(np.maximum(n_hi, n_lo)) - np.log(n_lo)))
        n = np.where(ok, np.round(n), np.nan)
        d = np.round(c / (FLOPS_PER_PARAM_TOKEN * n))
        return n, d, self._mix_from_unit(u[:, 2:2 + self.mix_dims])

    def unique_from_unit(self, u: np.ndarray, d: np.ndarray) -> np.ndarray:
        """(M, dims) unit coordinates and their D (M,) -> unique tokens (M,): inf (all the data) unless the
        repetition coordinate asks for e > 1 epochs (module docstring), then D / e."""
        u = np.atleast_2d(u)
        if not self.repeats:
            return np.full(u.shape[0], np.inf)
        x = (u[:, -1] - REPEAT_OFF) / (1.0 - REPEAT_OFF)
        return np.where(x > 0, np.round(d / self.max_epochs ** np.maximum(x, 0.0)), np.inf)

    def point(self, n: float, d: float, mix_row: np.ndarray, unique: float = math.inf) -> Point:
        return Point(int(n), int(d), {dom: float(w) for dom, w in zip(self.domains, mix_row, strict=True)},
                     int(unique) if math.isfinite(unique) and unique < d else None)


class _TargetSamples:
    """(K, T) log N*_t samples of a set of ensembles; the Belief's target_fn."""

    def __init__(self, cfg: StudyConfig):
        self.cfg = cfg

    def __call__(self, ensembles) -> np.ndarray:
        with np.errstate(all="ignore"):
            cols = [np.log(target_optimum(ensembles, self.cfg, t)[0]) for t in self.cfg.targets]
        return _finite_beyond(np.stack(cols, axis=1))


def _finite_beyond(q: np.ndarray) -> np.ndarray:
    """Samples of log N* with the members that have no optimum in reach (NaN or inf: a law family that puts it
    beyond its search) placed a decade beyond the column's finite ones, so that they still count as spread."""
    finite = np.isfinite(q)
    if finite.all():
        return q
    with np.errstate(all="ignore"):
        top = np.where(finite.any(axis=0), np.nanmax(np.where(finite, q, np.nan), axis=0), 0.0)
    return np.where(finite, q, top[None, :] + np.log(10.0))


class Proposer:
    """Seed design, then acquisition-maximising proposals (see the module docstring)."""

    def __init__(self, cfg: StudyConfig):
        self.cfg = cfg
        self.space = SearchSpace(cfg)
        # variance of log N* at which a target's (inflated) interval reaches the tolerance
        self.v_tol = (cfg.tolerance / (1.96 * cfg.proposer.interval_inflation)) ** 2
        # FLOPs charged per run when candidates are ranked: overhead_flops, raised by the Study when its run
        # budget binds before its FLOP budget (Study.run_price)
        self.run_price = float(cfg.proposer.overhead_flops)

    # -------------------------------------------------------------------------------- seed design
    def seed_design(self, start: int, k: int, max_flops: float) -> list[Point]:
        """Points start..start+k-1 of the scrambled-Sobol design (Optuna's QMCSampler)."""
        with warnings.catch_warnings():  # QMCSampler is marked experimental; its output is all we use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True,
                                                 seed=derived_seed(self.cfg.seed, "qmc"),
                                                 warn_independent_sampling=False, warn_asynchronous_seeding=False)
        study = optuna.create_study(sampler=sampler)
        dist = {f"u{i}": optuna.distributions.FloatDistribution(0.0, 1.0) for i in range(self.space.dims)}
        units = []
        for _ in range(start + k):
            trial = study.ask(dist)
            units.append([trial.params[f"u{i}"] for i in range(self.space.dims)])
            study.tell(trial, 0.0)
        u = np.array(units[start:])
        u[:, 0] = u[:, 0] ** self.cfg.proposer.seed_budget_skew  # cheap budgets denser: the laws are unknown yet
        n, d, mix = self.space.from_unit(u, max_flops)
        unique = self.space.unique_from_unit(u, d)
        return [self.space.point(n[i], d[i], mix[i], unique[i]) for i in range(len(u)) if np.isfinite(n[i])]

    # ----------------------------------------------------------------------------------- adaptive
    def belief(self, estimates: Estimates) -> Belief:
        return Belief(ensembles=estimates.ensembles, noise=estimates.noise, noise_models=estimates.noise_models,
                      target_fn=_TargetSamples(self.cfg), v_tol=self.v_tol)

    def _value(self, belief: Belief, n, d, mix, avoid: list[Point], unique=None) -> np.ndarray:
        cost = training_flops(n, d) + self.run_price
        mix_arg = mix if self.space.simplex else None
        unique = np.full(np.shape(n), np.inf) if unique is None else np.asarray(unique, float)
        value = acquisition(belief, n, d, mix_arg, cost, unique if self.space.repeats else None)
        epochs = np.maximum(d / unique, 1.0)
        for p in avoid:  # the ensemble update makes repeats unattractive; this makes them impossible
            near = ((np.abs(np.log10(n / p.n_params)) < MIN_SEPARATION)
                    & (np.abs(np.log10(d / p.n_tokens)) < MIN_SEPARATION)
                    & (np.abs(np.log10(epochs / p.epochs)) < MIN_SEPARATION))
            value = np.where(near, -np.inf, value)
        return value

    def _replicate_candidates(self, estimates: Estimates) -> list[Point]:
        """Finished runs as candidates for a replicate (same N, D, mix, U; the Study gives it the next seed)."""
        return [Point(n, d, dict(zip(self.space.domains, mix, strict=True)), unique if self.space.repeats else None)
                for n, d, mix, unique in estimates.runs]

    def best(self, belief: Belief, max_flops: float, seed: int, avoid: list[Point] = (),
             replicates: list[Point] = ()) -> tuple[Point, float] | None:
        """The candidate with the largest acquisition: Sobol screen, then an inner Optuna refinement; a finished
        run is proposed again (a replicate) when its value per FLOP beats every new candidate's."""
        pc = self.cfg.proposer
        sobol = qmc.Sobol(d=self.space.dims, scramble=True, seed=seed)
        u = sobol.random(pc.n_candidates)
        n, d, mix = self.space.from_unit(u, max_flops)
        ok = np.isfinite(n)
        if not ok.any():
            return None
        u, n, d, mix = u[ok], n[ok], d[ok], mix[ok]
        values = self._value(belief, n, d, mix, list(avoid), self.space.unique_from_unit(u, d))
        order = np.argsort(-values)
        best_u, best_v = u[order[0]], float(values[order[0]])
        if pc.inner_trials > 0:
            inner = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
            for i in order[:N_REFINE_STARTS]:
                inner.enqueue_trial({f"u{j}": float(u[i, j]) for j in range(self.space.dims)})

            def objective(trial: optuna.Trial) -> float:
                x = np.array([[trial.suggest_float(f"u{j}", 0.0, 1.0) for j in range(self.space.dims)]])
                nn, dd, mm = self.space.from_unit(x, max_flops)
                if not np.isfinite(nn[0]):
                    return -1e300
                v = float(self._value(belief, nn, dd, mm, list(avoid), self.space.unique_from_unit(x, dd))[0])
                return v if math.isfinite(v) else -1e300

            inner.optimize(objective, n_trials=N_REFINE_STARTS + pc.inner_trials)
            if inner.best_value > best_v:
                best_u = np.array([inner.best_params[f"u{j}"] for j in range(self.space.dims)])
                best_v = inner.best_value
        replicate = self._best_replicate(belief, max_flops, list(avoid), list(replicates))
        if replicate is not None and replicate[1] > best_v:
            return replicate
        if not math.isfinite(best_v) or best_v <= -1e300:
            return None
        n, d, mix = self.space.from_unit(best_u[None], max_flops)
        return self.space.point(n[0], d[0], mix[0], self.space.unique_from_unit(best_u[None], d)[0]), best_v

    def _best_replicate(self, belief: Belief, max_flops: float, avoid: list[Point],
                        replicates: list[Point]) -> tuple[Point, float] | None:
        affordable = [p for p in replicates if p.flops <= max_flops]
        if not affordable:
            return None
        n = np.array([p.n_params for p in affordable], float)
        d = np.array([p.n_tokens for p in affordable], float)
        mix = np.array([[p.mix[k] for k in self.space.domains] for p in affordable], float)
        values = self._value(belief, n, d, mix, avoid, np.array([p.unique for p in affordable]))
        i = int(np.argmax(values))
        return (affordable[i], float(values[i])) if np.isfinite(values[i]) else None

    def propose(self, k: int, estimates: Estimates | None, in_flight: list[Point], n_asked: int,
                budget_left: float) -> list[Point]:
        """Up to k new points (fewer if nothing affordable is left)."""
        max_flops = min(self.cfg.max_run_flops, budget_left)
        if k <= 0 or max_flops < self.cfg.min_run_flops:
            return []
        if (estimates is None or n_asked < self.cfg.proposer.seed_runs
                or not all(np.isfinite(t.rel_halfwidth) for t in estimates.targets)):
            points = []  # laws not (yet) identifiable: keep filling space, within the budget left
            for p in self.seed_design(n_asked, k, max_flops):
                if sum(q.flops for q in points) + p.flops <= budget_left:
                    points.append(p)
            return points
        rng = np.random.default_rng(derived_seed(self.cfg.seed, "enkf", n_asked))
        belief = self.belief(estimates)
        for p in in_flight:
            belief = self._conditioned(belief, p, rng)
        points = []
        for j in range(k):
            every = self.cfg.proposer.explore_every
            if every and (n_asked + j) % every == 0:  # a reserved space-filling run
                explore = [p for p in self.seed_design(n_asked + j, 1, max_flops) if p.flops <= max_flops]
                if explore:
                    points.append(explore[0])
                    belief = self._conditioned(belief, explore[0], rng)
                    max_flops = min(max_flops, budget_left - sum(p.flops for p in points))
                    if max_flops < self.cfg.min_run_flops:
                        break
                    continue
            found = self.best(belief, max_flops, derived_seed(self.cfg.seed, "screen", n_asked + j),
                              avoid=[*in_flight, *points], replicates=self._replicate_candidates(estimates))
            if found is None:
                break
            point, _ = found
            points.append(point)
            belief = self._conditioned(belief, point, rng)
            max_flops = min(max_flops, budget_left - sum(p.flops for p in points))
            if max_flops < self.cfg.min_run_flops:
                break
        return points

    def _conditioned(self, belief: Belief, p: Point, rng) -> Belief:
        mix = [[p.mix[d] for d in self.space.domains]] if self.space.simplex else None
        return condition(belief, p.n_params, p.n_tokens, mix, rng, [p.unique] if self.space.repeats else None)
