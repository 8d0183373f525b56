"""Model uncertainty: fit every applicable law family, weight them by how well each predicts beyond its data.

`--law auto` (the default of `skillscale fit` and of studies) does not pick a form; it averages them:

1. **Weights by extrapolation** (`family_weights`). The runs are split by compute: the largest ones (the
   top HOLDOUT_SHARE of the distinct runs by 6ND, at least MIN_HOLDOUT) are held out, every applicable family
   is fitted to the rest, and each predicts the held-out log-losses with a predictive sd that holds the
   measurement noise (its fit's noise model) and its parameter uncertainty (the Laplace covariance, delta
   method). The weights are the stacking weights of those predictive densities (Yao et al. 2018, "Using
   stacking to average Bayesian predictive distributions"): w = argmax_w sum_i log sum_f w_f p_f(y_i) over
   the simplex, by EM. Stacking rewards the family that predicts beyond its data and, unlike weights from
   each family's own score, keeps several where they predict equally well. The held-out runs are a handful
   of the largest, one draw of the extrapolation error (neighbouring runs share it), so half of the weight
   (PRIOR_SHARE) is spread equally over the plausible families, those whose held-out error is within 1.5x
   the best one's: the largest runs can favour the family that predicts still larger models worst (the
   data-constrained ladder: BENCHMARKS.md, Law families on real ladders). Families below MIN_WEIGHT are
   dropped, and so are families whose fit put an exponent on its bound. Each family's held-out error (RMS of
   log-residuals) and lack of fit (that RMS over the noise sigma: about 1 when the family extrapolates within
   the noise) are reported beside its weight.
2. **The ensemble is drawn from all families by weight** (`bootstrap_average`): of K members, about
   w_f K come from family f's own bootstrap (fitting/parametric.py), in contiguous blocks in FAMILIES order, so
   member k of every skill used the same draw k. Every N*, D*, interval and prediction comes from that
   mixture, so where the families disagree about N*, the interval holds the disagreement.
3. **Intervals** (`mixture_interval`): each family's members are bias-corrected about that family's point
   estimate (Efron 1981, as fitting.law.interval does for one family), and the 95% interval is read from the
   weighted mixture of those corrected distributions: M(x) = sum_f w_f Phi(Phi^-1(F_f(x)) - 2 z0_f). The
   correction is measured calibrated for the Chinchilla form only (BC_CALIBRATED; BENCHMARKS.md, Interval
   coverage). The other families' members can be skewed where the correction cuts off the side the truth is
   on: a farseer-world study stopped 14.8% below the true N* at +-8.2% while its uncorrected 95% range held the
   truth (BENCHMARKS.md, Misspecified truths). So where a member's family is another, the interval is the union
   of the corrected one and the one read with those families uncorrected (z0 = 0). The point estimate is the
   weighted geometric mean of the families' point estimates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from fitting.conventions import FLOPS_PER_PARAM_TOKEN
from fitting.families import CHINCHILLA, FAMILIES, LawFamily, get_family
from fitting.law import interval
from fitting.parametric import ParametricFit, bootstrap_parametric, design_of, fit_parametric, laplace_covariance
from skillscale.errors import InputError

HOLDOUT_SHARE = 0.2  # the largest-compute share of the runs held out to weigh the families
MIN_HOLDOUT = 3
MIN_WEIGHT = 0.02  # families below this weight are dropped
PRIOR_SHARE = 0.5  # share of the weight spread equally over the plausible families (see point 1)
PLAUSIBLE_RMSE_RATIO = 1.5  # a family is plausible when its held-out error is within 1.5x the best one's
EM_ITERS = 500
BC_CALIBRATED = frozenset({"chinchilla"})  # families whose bias-corrected interval was measured calibrated
AUTO = "auto"
DEGENERATE = "degenerate: "  # how a FamilyScore note names a family dropped for an exponent on its bound


@dataclass(frozen=True)
class FamilyScore:
    """How one family predicted the held-out largest runs, and its weight in the average."""

    family: str
    weight: float
    holdout_rmse: float | None  # RMS of held-out log-residuals (about the relative error); None: not scored
    lack_of_fit: float | None  # holdout_rmse over the noise sigma at those runs: ~1 extrapolates within noise
    log_score: float | None  # mean held-out log predictive density
    note: str = ""  # why a family was not used, if it was not
    surprise: float | None = None  # RMS of held-out residuals over their predictive sd (noise and parameters): ~1
    # when the family extrapolates as well as its own uncertainty says (reported only)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AveragedFit:
    """Every applicable family's point fit on all runs, and their weights (`scores`)."""

    fits: dict[str, ParametricFit]  # family -> fit on all runs (families with weight > 0)
    scores: dict[str, FamilyScore]  # every family tried, used or not
    n_holdout: int = 0

    @property
    def weights(self) -> dict[str, float]:
        return {f: self.scores[f].weight for f in self.fits}

    @property
    def leading(self) -> ParametricFit:
        """The fit of the family with the largest weight (its noise model and residuals describe the data)."""
        return self.fits[max(self.fits, key=lambda f: self.scores[f].weight)]

    def predict_point(self, n_params, n_tokens, mix=None, unique=None) -> np.ndarray:
        """The weighted mean of the families' point predictions of the loss, (M,)."""
        return sum(w * self.fits[f].law.loss(n_params, n_tokens, mix, unique) for f, w in self.weights.items())

    def optimum_point(self, flops, mix=None, unique=None) -> tuple[float, float]:
        """(N*, D*) at `flops`: the weighted geometric mean of the families' point optima."""
        points = {f: float(self.fits[f].law.optimum(flops, mix, unique)[0][0]) for f in self.fits}
        usable = {f: w for f, w in self.weights.items() if np.isfinite(points[f]) and points[f] > 0}
        if not usable:
            return float("nan"), float("nan")
        total = sum(usable.values())  # a family without an optimum in reach says nothing of where it is
        n_opt = float(np.exp(sum(w * np.log(points[f]) for f, w in usable.items()) / total))
        return n_opt, float(flops) / (FLOPS_PER_PARAM_TOKEN * n_opt)


@dataclass(frozen=True)
class AveragedEnsemble:
    """K members drawn from several families' ensembles, in contiguous blocks (`parts`, in member order)."""

    parts: tuple  # per family: a LawEnsemble or FamilyEnsemble

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)

    @property
    def family(self):
        return self.parts[0].family if len(self.parts) == 1 else None

    @property
    def families(self) -> np.ndarray:
        """The family name of every member, (K,)."""
        return np.concatenate([np.full(p.size, p.family.name, dtype=object) for p in self.parts])

    @property
    def transfer(self):
        ts = [p.transfer for p in self.parts]
        return None if any(t is None for t in ts) else np.concatenate(ts)

    @property
    def domains(self) -> tuple[str, ...]:
        return self.parts[0].domains

    def _slices(self):
        start = 0
        for p in self.parts:
            yield slice(start, start + p.size), p
            start += p.size

    def loss(self, n_params, n_tokens, mix=None, unique=None) -> np.ndarray:
        return np.concatenate([p.loss(n_params, n_tokens, mix, unique) for p in self.parts], axis=0)

    def loss_members(self, n_params, n_tokens, mix=None, unique=None) -> np.ndarray:
        n, d = np.asarray(n_params, float), np.asarray(n_tokens, float)
        return np.concatenate([p.loss_members(n[s], d[s], mix, unique) for s, p in self._slices()], axis=0)

    def optimum(self, flops, mix=None, unique=None) -> tuple[np.ndarray, np.ndarray]:
        out = [p.optimum(flops, mix, unique) for p in self.parts]
        return np.concatenate([n for n, _ in out]), np.concatenate([d for _, d in out])

    def exponent_at(self, flops, mix=None) -> np.ndarray:
        return np.concatenate([np.broadcast_to(p.exponent_at(flops, mix), (p.size,)) for p in self.parts])

    def blocks(self):
        """(member indices, part) per family: what the ensemble Kalman step updates separately."""
        return [(np.arange(s.start, s.stop), p) for s, p in self._slices()]

    def with_blocks(self, parts) -> AveragedEnsemble:
        return AveragedEnsemble(tuple(parts))


def single_blocks(ensemble):
    """(member indices, part) per law family: a mixture's blocks, or all members of one family's ensemble."""
    if isinstance(ensemble, AveragedEnsemble):
        return ensemble.blocks()
    return [(np.arange(ensemble.size), ensemble)]


def with_blocks(ensemble, parts):
    if isinstance(ensemble, AveragedEnsemble):
        return ensemble.with_blocks(parts)
    (part,) = parts
    return part


def member_families(ensemble) -> np.ndarray:
    """The family name of every member, (K,), for any ensemble."""
    if isinstance(ensemble, AveragedEnsemble):
        return ensemble.families
    return np.full(ensemble.size, ensemble.family.name, dtype=object)


# ----------------------------------------------------------------------------------------- weights


def _holdout_split(n_params, n_tokens, mix) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices: the runs of the largest compute, whole budgets at a time (runs of one
    compute are held out together), until at least HOLDOUT_SHARE of them (and MIN_HOLDOUT) are held out; no
    split when fewer than 3 budgets would be left to fit."""
    flops = np.asarray(n_params, float) * np.asarray(n_tokens, float)
    keys = np.round(np.log(flops), 6)
    budgets, counts = np.unique(keys, return_counts=True)
    need = max(MIN_HOLDOUT, int(np.ceil(HOLDOUT_SHARE * flops.size)))
    held_budgets = np.flatnonzero(np.cumsum(counts[::-1]) >= need)
    if not held_budgets.size:
        return np.arange(flops.size), np.array([], int)
    n_held_budgets = int(held_budgets[0]) + 1
    if budgets.size - n_held_budgets < 3:
        return np.arange(flops.size), np.array([], int)
    cut = budgets[-n_held_budgets]
    return np.flatnonzero(keys < cut), np.flatnonzero(keys >= cut)


def _predictive(fit: ParametricFit, args: dict, rows: np.ndarray):
    """Predictive mean of log L, noise sigma and Jacobian at `rows` of `args`, for a fit made without them."""
    design = design_of(**_rows(args, rows))
    mu, jac = fit.family.forward(np.array(fit.theta)[None, :], design, with_jac=True)
    sigma = fit.noise.sigma(args["n_params"][rows], args["n_tokens"][rows]) if fit.noise else fit.residual_std
    return mu[0], np.broadcast_to(np.asarray(sigma, float), mu[0].shape), jac[0]


def _rows(args: dict, rows: np.ndarray | None = None) -> dict:
    """design_of's keywords for `rows` of the fit arguments (all rows by default)."""
    take = (lambda x: x) if rows is None else (lambda x: None if x is None else x[rows])  # noqa: E731
    return {"n_params": take(args["n_params"]), "n_tokens": take(args["n_tokens"]), "mix": take(args.get("mix")),
            "domains": args.get("domains", ()), "own_domain": args.get("own_domain"),
            "unique": take(args.get("unique"))}


def family_weights(args: dict, families: list[LawFamily],
                   huber_delta: float = 1e-3) -> tuple[dict[str, FamilyScore], int]:
    """Stacking weights of `families` from held-out largest runs (module docstring, point 1).

    `args`: the keyword arrays of fit_parametric (n_params, n_tokens, loss, mix, domains, own_domain, unique).
    Returns each family's FamilyScore (weight 0 and a note where it could not be scored) and the number of
    held-out runs. With too few runs to hold any out, the families that fit are weighted equally."""
    train, held = _holdout_split(args["n_params"], args["n_tokens"], args.get("mix"))
    scores: dict[str, FamilyScore] = {}
    dens, names, rmse, lack, log_score, surprise = [], [], {}, {}, {}, {}
    sub = {k: (v[train] if isinstance(v, np.ndarray) and k not in ("domains",) else v) for k, v in args.items()}
    chin_train = None
    if held.size:
        try:
            chin_train = fit_parametric(**sub, huber_delta=huber_delta)
        except InputError:
            held = np.array([], int)
    for family in families:
        if not held.size:
            break
        try:
            fit = fit_parametric(**sub, huber_delta=huber_delta, family=family,
                                 base=chin_train if family is not CHINCHILLA else None)
        except InputError as exc:
            scores[family.name] = FamilyScore(family.name, 0.0, None, None, None, f"not scored: {exc}")
            continue
        y = np.log(args["loss"][held])
        with np.errstate(all="ignore"):
            mu, sigma, jac = _predictive(fit, args, held)
            try:
                cov = laplace_covariance(fit, design_of(**_rows(args, train)), huber_delta)
                var_param = np.einsum("np,pq,nq->n", jac, cov, jac)
            except (np.linalg.LinAlgError, ValueError):
                var_param = np.zeros_like(mu)
        sd = np.sqrt(sigma ** 2 + np.where(np.isfinite(var_param), np.maximum(var_param, 0), 0))
        resid = y - mu
        if not np.all(np.isfinite(resid)):
            scores[family.name] = FamilyScore(family.name, 0.0, None, None, None, "not scored: non-finite prediction")
            continue
        logp = -0.5 * (resid / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)
        dens.append(logp)
        names.append(family.name)
        rmse[family.name] = float(np.sqrt(np.mean(resid ** 2)))
        lack[family.name] = float(np.sqrt(np.mean((resid / sigma) ** 2)))
        surprise[family.name] = float(np.sqrt(np.mean((resid / sd) ** 2)))
        log_score[family.name] = float(np.mean(logp))
    if names:
        w = _stacking_weights(np.array(dens))
        errors = np.array([rmse[name] for name in names])
        plausible = errors <= PLAUSIBLE_RMSE_RATIO * errors.min()
        w = (1 - PRIOR_SHARE) * w + PRIOR_SHARE * plausible / plausible.sum()
        w = np.where(w < MIN_WEIGHT, 0.0, w)
        w = w / w.sum()
        for name, wf in zip(names, w, strict=True):
            scores[name] = FamilyScore(name, float(wf), rmse[name], lack[name], log_score[name],
                                       "" if wf > 0 else "weight below the threshold", surprise[name])
    return scores, int(held.size)


def _stacking_weights(log_dens: np.ndarray) -> np.ndarray:
    """argmax_w sum_i log sum_f w_f exp(log_dens[f, i]) over the simplex (EM; the problem is concave)."""
    n_fam = log_dens.shape[0]
    w = np.full(n_fam, 1.0 / n_fam)
    shifted = np.exp(log_dens - log_dens.max(axis=0, keepdims=True))  # (F, n)
    for _ in range(EM_ITERS):
        resp = w[:, None] * shifted
        resp /= resp.sum(axis=0, keepdims=True)
        new = resp.mean(axis=1)
        if np.abs(new - w).max() < 1e-10:
            w = new
            break
        w = new
    return w


def applicable_families(args: dict, names=None) -> tuple[list[LawFamily], dict[str, str]]:
    """The families (all, or `names`) that can be fitted to these runs, and why each other one cannot."""
    families = [get_family(n) for n in names] if names else list(FAMILIES.values())
    design = design_of(**_rows(args))
    ok, why = [], {}
    for family in families:
        reason = family.applicable(design)
        if reason is None:
            ok.append(family)
        else:
            why[family.name] = reason
    return ok, why


def fit_average(n_params, n_tokens, loss, *, mix=None, domains=(), own_domain=None, unique=None,
                huber_delta=1e-3, families=None) -> AveragedFit:
    """Weights of every applicable family (or of `families`, names) and each one's fit on all runs."""
    args = {"n_params": np.asarray(n_params, float), "n_tokens": np.asarray(n_tokens, float),
            "loss": np.asarray(loss, float), "mix": None if mix is None else np.asarray(mix, float),
            "domains": tuple(domains), "own_domain": own_domain,
            "unique": None if unique is None else np.asarray(unique, float)}
    usable, why = applicable_families(args, families)
    if not usable:
        reasons = "; ".join(f"{k}: {v}" for k, v in why.items())
        raise InputError(f"no law family can be fitted to these runs ({reasons})")
    scores = {name: FamilyScore(name, 0.0, None, None, None, f"not applicable: {reason}")
              for name, reason in why.items()}
    if len(usable) > 1:
        weighted, n_holdout = family_weights(args, usable, huber_delta)
        scores.update(weighted)
    else:
        n_holdout = 0
    if not any(scores.get(f.name) and scores[f.name].weight > 0 for f in usable):  # nothing scored: equal weights
        for f in usable:
            note = scores[f.name].note if f.name in scores else ""
            scores[f.name] = FamilyScore(f.name, 1.0 / len(usable), None, None, None,
                                         note or "equal weight: too few runs to hold any out")
    fits: dict[str, ParametricFit] = {}
    base = None
    for family in usable:
        if scores[family.name].weight <= 0:
            continue
        if family is not CHINCHILLA and base is None:
            base = fit_parametric(**args, huber_delta=huber_delta)
        fits[family.name] = (base if family is CHINCHILLA and base is not None else
                             fit_parametric(**args, huber_delta=huber_delta, family=family,
                                            base=base if family is not CHINCHILLA else None))
        if family is CHINCHILLA:
            base = fits[family.name]
    degenerate = {name: fit.exponents_at_bounds() for name, fit in fits.items() if fit.exponents_at_bounds()}
    if degenerate and len(degenerate) < len(fits):  # a form whose exponent sits on a bound says nothing of N*
        for name, pinned in degenerate.items():
            del fits[name]
            scores[name] = dataclasses.replace(scores[name], weight=0.0,
                                               note=f"{DEGENERATE}{', '.join(pinned)} on the solver's bound")
        total = sum(scores[n].weight for n in fits)
        for name in fits:
            scores[name] = dataclasses.replace(scores[name], weight=scores[name].weight / total)
    ordered = {name: fits[name] for name in FAMILIES if name in fits}
    return AveragedFit(ordered, {n: scores[n] for n in FAMILIES if n in scores}, n_holdout)


def allocate_members(weights: dict[str, float], n_members: int) -> dict[str, int]:
    """Members per family, proportional to the weights (largest remainder), every used family at least 2."""
    names = list(weights)
    raw = np.array([weights[n] for n in names]) * n_members
    counts = np.maximum(np.floor(raw).astype(int), 2)
    while counts.sum() > n_members:
        counts[np.argmax(counts)] -= 1
    order = np.argsort(-(raw - np.floor(raw)))
    i = 0
    while counts.sum() < n_members:
        counts[order[i % len(order)]] += 1
        i += 1
    return dict(zip(names, counts.tolist(), strict=True))


def bootstrap_average(avg: AveragedFit, n_params, n_tokens, loss, *, n_boot=200, mix=None, domains=(),
                      own_domain=None, unique=None, huber_delta=1e-3, seed=0, resamples=None,
                      method="parametric", draws=None) -> AveragedEnsemble:
    """K = n_boot members drawn from the families by weight (module docstring, point 2).

    `resamples` / `draws` (n_boot, n_points) as bootstrap_parametric takes them; family f's block of members
    uses their rows of that block, so member k of several skills saw the same draw k."""
    counts = allocate_members(avg.weights, n_boot)
    rng = np.random.default_rng(seed)
    n_all = np.asarray(loss).size
    if resamples is None:
        resamples = rng.integers(0, n_all, size=(n_boot, n_all))
    parts, start = [], 0
    for name, count in counts.items():
        block = slice(start, start + count)
        start += count
        parts.append(bootstrap_parametric(
            n_params, n_tokens, loss, n_boot=count, mix=mix, domains=domains, own_domain=own_domain,
            huber_delta=huber_delta, seed=seed, resamples=np.asarray(resamples)[block], method=method,
            fit=avg.fits[name], unique=unique, draws=None if draws is None else np.asarray(draws)[block]))
    return parts[0] if len(parts) == 1 else AveragedEnsemble(tuple(parts))


# ----------------------------------------------------------------------------------------- intervals


def mixture_interval(samples, labels, points: dict, level: float = 0.95) -> tuple[float, float]:
    """95% interval of a quantity sampled by the members of a family mixture (module docstring, point 3).

    `samples` (K,), `labels` (K,) the family (or family combination, "a+b") of each member, `points` {label:
    point estimate}. One Chinchilla label: exactly fitting.law.interval(samples, point=...); with a family outside
    BC_CALIBRATED, the union with its uncorrected interval (module docstring, point 3)."""
    x = np.asarray(samples, float)
    labels = np.asarray(labels, dtype=object)
    finite = np.isfinite(x)
    x, labels = x[finite], labels[finite]
    if not x.size:
        return float("nan"), float("nan")
    names = list(dict.fromkeys(labels.tolist()))
    corrected = _mixture_quantiles(x, labels, names, points, level, names)
    uncalibrated = [n for n in names if not set(str(n).split("+")) <= BC_CALIBRATED]
    if not uncalibrated:
        return corrected
    plain = _mixture_quantiles(x, labels, names, points, level, [n for n in names if n not in uncalibrated])
    return min(corrected[0], plain[0]), max(corrected[1], plain[1])


def _mixture_quantiles(x, labels, names, points, level, correct) -> tuple[float, float]:
    """The `level` interval of the mixture of the labels' distributions, those named in `correct` bias-corrected
    about their point estimate (mixture_interval)."""
    if len(names) == 1:
        return interval(x, level, point=points.get(names[0]) if names[0] in correct else None)
    grid = np.sort(x)
    cdf = np.zeros_like(grid)
    for name in names:
        s = np.sort(x[labels == name])
        n = s.size
        f = np.clip(np.searchsorted(s, grid, side="right") / n, 0.5 / n, 1 - 0.5 / n)
        point = points.get(name)
        z0 = 0.0
        if name in correct and point is not None and np.isfinite(point):
            z0 = ndtri(np.clip(np.mean(s < point), 1.0 / (n + 1), n / (n + 1)))
        cdf += (n / x.size) * ndtr(ndtri(f) - 2 * z0)
    lo = grid[min(np.searchsorted(cdf, (1 - level) / 2), grid.size - 1)]
    hi = grid[min(np.searchsorted(cdf, (1 + level) / 2), grid.size - 1)]
    return float(lo), float(hi)


def prediction_interval(ensemble, avg: AveragedFit, n_params, n_tokens, mix=None, unique=None,
                        level: float = 0.95, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query point's predicted loss (the members' median) and a `level` prediction interval (M,) x 3.

    Every member predicts log L and adds its family's measurement noise sigma(N, D) (a standard-normal draw per
    member), so the interval holds noise, parameter uncertainty and the spread between families. Where a
    family predicted the held-out largest runs worse than its noise (lack_of_fit > 1), its sigma is scaled by
    that lack of fit: beyond the runs, the law's own error is part of what a prediction can miss by."""
    fits = avg.fits
    with np.errstate(all="ignore"):
        log_pred = np.log(ensemble.loss(n_params, n_tokens, mix, unique))  # (K, M)
    fam = member_families(ensemble)
    n = np.atleast_1d(np.asarray(n_params, float))
    d = np.broadcast_to(np.atleast_1d(np.asarray(n_tokens, float)), n.shape)
    sigma = np.zeros_like(log_pred)
    for name in np.unique(fam):
        fit = fits[name]
        s = fit.noise.sigma(n, d) if fit.noise is not None else np.full(n.shape, fit.residual_std)
        lack = avg.scores[name].lack_of_fit if name in avg.scores else None
        sigma[fam == name] = s * max(1.0, lack or 1.0)
    rng = np.random.default_rng(seed)
    draws = log_pred + sigma * rng.standard_normal(log_pred.shape)
    tails = [(1 - level) / 2, 0.5, (1 + level) / 2]
    lo, med, hi = np.exp(np.nanquantile(draws, tails, axis=0))
    return med, lo, hi
