"""Law families: the forms a scaling law may take. The fit, the bootstrap, the optimum and the plots take any.

Every family shares the Chinchilla core and adds what it needs between the core and the mixture transfer:

    chinchilla        L = E + A N^-alpha + B D_eff^-beta                        Hoffmann et al. 2022, eq. 2
    farseer           L = E + A N^-alpha + B (N/N0)^nu D_eff^-beta(N),            after Li et al. 2025 (Farseer,
                      beta(N) = beta (N/N0)^kappa                                 arXiv:2506.10972)
    data_constrained  L = E + A N^-alpha + B D'_eff^-beta,                        Muennighoff et al. 2023
                      D' = U + U R* (1 - exp(-(D/U - 1) / R*)) for D > U, else D  (arXiv:2305.16264, eq. 5)

theta = (e, a, b, alpha, beta, <family extras>, tau_1..tau_J) with E, A, B = exp(e), exp(a), exp(b), the extras
(nu, kappa) or (rho = log R*), and the mixture transfer t_j = exp(tau_j) of the non-own domains
(fitting/law.py): D_eff = D' T(m), T(m) = sum_j t_j m_j. U is the number of unique tokens a run's data held
(`n_unique_tokens`); a run without it, or with D <= U, saw no repetition (D' = D).

Farseer's published law makes the data term's coefficient and exponent stretched exponentials of N,
exp(a N^g + b); `farseer` keeps them to first order in log N around N0 = 1e8 (two parameters, nu and kappa,
instead of four), which is what a ladder of a few decades in N can determine. With nu = kappa = 0 it is the
Chinchilla form, and with R* -> inf so is `data_constrained`: both start their fits from the Chinchilla fit.

`data_constrained` keeps only the data side of Muennighoff et al.'s law (repeated tokens lose value after
~R* epochs); their parameter-side term (excess parameters decay) is left out, as the runs here give no
separate unique-parameter budget.

Compute optimum under C = 6ND: closed form for `chinchilla` (fitting/law.py), otherwise a bounded search on
the isoFLOP line (`isoflop_argmin`: a log-N grid over 1e-4..1e4 x a D/N = 20 guess, then golden section),
read at unlimited unique data unless `unique=` gives the tokens available.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from fitting._solver import ALPHA_BOUNDS, CHINCHILLA_MODEL, E_MIN, TAU_BOUNDS, Design
from fitting.conventions import FLOPS_PER_PARAM_TOKEN

N0 = 1e8  # farseer's reference size: nu and kappa are slopes in log(N / N0)
NU_BOUNDS = (-1.5, 1.5)  # B(N) = B (N/N0)^nu: at most ~30x over a decade
KAPPA_BOUNDS = (-0.2, 0.2)  # beta(N) = beta (N/N0)^kappa: beta moves at most 1.6x per decade of N
RHO_BOUNDS = (np.log(0.1), np.log(1e4))  # R* between 0.1 and 10^4 epochs
MUENNIGHOFF_R_STAR = 15.4  # Muennighoff et al. 2023: fitted R_D*, epochs after which repeats are ~worthless
SEARCH_DECADES = 4.0  # isoflop_argmin searches N in guess * 10^(+-4)
SEARCH_POINTS = 384
GOLDEN_ITERS = 60  # the bracket shrinks by 0.618**60 ~ 3e-13 in log N
INV_PHI = (np.sqrt(5.0) - 1.0) / 2.0
GUESS_TOKENS_PER_PARAM = 20.0


def isoflop_argmin(loss_fn, flops: float, n_members: int, center=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-member argmin over N of L_k(N, C/(6N)): (N*, D*), each (K,).

    `loss_fn(log_n)` takes per-member grids (K, G) and returns losses (K, G). The search covers
    center * 10^(+-SEARCH_DECADES) (center: (K,) or a scalar; default the D/N = 20 point), first on a grid,
    then by a vectorised golden-section refinement inside the bracket around each member's grid minimum.
    Along the isoFLOP line every family here is a sum of terms convex in log N, so the bracket holds the
    global minimum; a member whose minimum sits on the grid's edge has none in reach and returns NaN."""
    if center is None:
        center = np.sqrt(flops / (FLOPS_PER_PARAM_TOKEN * GUESS_TOKENS_PER_PARAM))
    log_c = np.broadcast_to(np.log(np.asarray(center, float)), (n_members,))
    span = SEARCH_DECADES * np.log(10.0)
    grid = log_c[:, None] + np.linspace(-span, span, SEARCH_POINTS)[None, :]  # (K, G)
    with np.errstate(all="ignore"):
        values = loss_fn(grid)
    i = np.argmin(np.where(np.isfinite(values), values, np.inf), axis=1)
    rows = np.arange(n_members)
    a = grid[rows, np.clip(i - 1, 0, SEARCH_POINTS - 1)]
    b = grid[rows, np.clip(i + 1, 0, SEARCH_POINTS - 1)]

    def f(x):
        with np.errstate(all="ignore"):
            return loss_fn(x[:, None])[:, 0]

    c, d = b - INV_PHI * (b - a), a + INV_PHI * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(GOLDEN_ITERS):
        left = fc < fd  # minimum in [a, d]: drop (d, b]; else drop [a, c)
        a, b = np.where(left, a, c), np.where(left, d, b)
        c, d = np.where(left, b - INV_PHI * (b - a), d), np.where(left, c, a + INV_PHI * (b - a))
        f_new = f(np.where(left, c, d))
        fc, fd = np.where(left, f_new, fd), np.where(left, fc, f_new)
    n_opt = np.exp(0.5 * (a + b))
    at_edge = (i == 0) | (i == SEARCH_POINTS - 1)  # no minimum inside 10^(+-4) of the guess: none at all
    n_opt = np.where(at_edge, np.nan, n_opt)
    return n_opt, flops / (FLOPS_PER_PARAM_TOKEN * n_opt)


def _lse3(u0, u1, u2):
    """log(exp u0 + exp u1 + exp u2) and the three softmax weights, elementwise."""
    m = np.maximum(np.maximum(u0, u1), u2)
    p0, p1, p2 = np.exp(u0 - m), np.exp(u1 - m), np.exp(u2 - m)
    s = p0 + p1 + p2
    return m + np.log(s), p0 / s, p1 / s, p2 / s


def repeated_log_tokens(log_d, log_u, log_r_star):
    """log D' of D tokens drawn from U unique ones (Muennighoff et al. 2023, eq. 5), and d log D' / d log R*.

    D' = U + U R* (1 - exp(-R / R*)), R = D/U - 1 repeated epochs; D' = D where D <= U."""
    r = np.exp(log_d - log_u) - 1.0  # epochs beyond the first
    r_star = np.exp(log_r_star)
    x = np.maximum(r, 0.0) / r_star
    decay = np.exp(-x)
    d_prime_over_u = 1.0 + r_star * (1.0 - decay)
    repeated = r > 0
    log_dp = np.where(repeated, log_u + np.log(d_prime_over_u), log_d)
    dlog_dp = np.where(repeated, r_star * (1.0 - decay * (1.0 + x)) / d_prime_over_u, 0.0)
    return log_dp, dlog_dp


class LawFamily:
    """One form of the law. Subclasses set `name`, `citation`, `extras` (names of the parameters between the
    Chinchilla core and the transfer), `extra_bounds` and `extra_starts`, and implement `_data_term`."""

    name = ""
    citation = ""
    extras: tuple[str, ...] = ()
    extra_bounds: tuple[tuple[float, float], ...] = ()
    extra_starts: tuple[tuple[float, ...], ...] = ((),)
    needs_unique_tokens = False

    # ----------------------------------------------------------------- shape of theta
    @property
    def n_core(self) -> int:
        return 5 + len(self.extras)

    def n_params(self, design: Design) -> int:
        return self.n_core + len(design.free_domains)

    def param_names(self, design: Design) -> tuple[str, ...]:
        return ("e", "a", "b", "alpha", "beta", *self.extras) + tuple(f"tau{j}" for j in design.free_domains)

    def bounds(self, n_params: int) -> list[tuple[float | None, float | None]]:
        """Box bounds of theta (None: unbounded), as scipy's L-BFGS-B takes them."""
        core = [(E_MIN, None), (None, None), (None, None), ALPHA_BOUNDS, ALPHA_BOUNDS, *self.extra_bounds]
        return core + [TAU_BOUNDS] * (n_params - self.n_core)

    def project(self, theta: np.ndarray) -> np.ndarray:
        """Clip theta (B, P) into the bounds, in place."""
        for i, (lo, hi) in enumerate(self.bounds(theta.shape[1])):
            if lo is not None or hi is not None:
                theta[:, i] = np.clip(theta[:, i], lo, hi)
        return theta

    def applicable(self, design: Design) -> str | None:
        """None when this family can be fitted to `design`, else why not (one line)."""
        if design.log_n.size <= self.n_params(design) + 1:
            return f"{design.log_n.size} runs for {self.n_params(design)} parameters"
        return None

    # ----------------------------------------------------------------- the law
    def forward(self, theta: np.ndarray, design: Design, with_jac: bool):
        """log L (B, n) at the design's points for every row of theta (B, P), and its Jacobian (B, n, P).

        The design's log_n / log_d may be (n,) or per-problem (B, n) (then without a Jacobian)."""
        e, a, b, alpha, beta = (theta[:, i:i + 1] for i in range(5))
        extra = theta[:, 5:self.n_core]
        log_n = design.log_n
        log_d = np.broadcast_to(design.log_d, np.broadcast_shapes(np.shape(design.log_d), (theta.shape[0], 1)))
        free = design.free_domains
        transfer = None
        if free:
            t = np.ones((theta.shape[0], design.mix.shape[1]))
            t[:, free] = np.exp(theta[:, self.n_core:])
            transfer = t @ design.mix.T  # (B, n)
        shift_b, beta_eff, log_dp, partials = self._data_term(extra, beta, log_n, log_d, design.log_u)
        if transfer is not None:
            log_dp = log_dp + np.log(transfer)
        u1 = a - alpha * log_n
        u2 = b + shift_b - beta_eff * log_dp
        lse, p0, p1, p2 = _lse3(np.broadcast_to(e, u1.shape), u1, np.broadcast_to(u2, u1.shape))
        if not with_jac:
            return lse, None
        jac = np.empty(lse.shape + (theta.shape[1],))
        jac[..., 0], jac[..., 1], jac[..., 2] = p0, p1, p2
        jac[..., 3] = -p1 * log_n
        jac[..., 4] = -p2 * (beta_eff / beta) * log_dp
        for i, d_u2 in enumerate(partials(log_dp)):
            jac[..., 5 + i] = p2 * d_u2
        for k, j in enumerate(free):  # d log T / d tau_j = t_j m_ij / T_i
            t_j = np.exp(theta[:, self.n_core + k:self.n_core + k + 1])
            jac[..., self.n_core + k] = -p2 * beta_eff * (t_j * design.mix[:, j]) / transfer
        return lse, jac

    def _data_term(self, extra, beta, log_n, log_d, log_u):
        """(shift of log B, beta_eff, log D' before the transfer, partials) for this family, where
        partials(log_dp) lists d u2 / d extra_i (u2 = b + shift - beta_eff log D'_eff)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- starts, bounds, reading theta
    def starts(self, chinchilla_starts: np.ndarray) -> np.ndarray:
        """Starting points (S, P) from Chinchilla solutions (S0, 5 + J): each with every extra start."""
        rows = []
        for base in np.atleast_2d(chinchilla_starts):
            for extra in self.extra_starts:
                rows.append(np.concatenate([base[:5], extra, base[5:]]))
        return np.array(rows)

    def exponent_indices(self) -> tuple[int, ...]:
        """Positions of the exponents that trade off along the law's valleys (bootstrap starts move them)."""
        return (3, 4)

    def exponents_at_bounds(self, theta) -> tuple[str, ...]:
        """Exponents pinned (within 5%) against ALPHA_BOUNDS, e.g. ("alpha=2.97",): the bound, not the data,
        decided them."""
        lo, hi = ALPHA_BOUNDS
        return tuple(f"{name}={value:.3g}" for name, value in (("alpha", theta[3]), ("beta", theta[4]))
                     if value <= lo * 1.05 or value >= hi * 0.95)

    def readable(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """The parameters as a reader knows them (E, A, B, alpha, beta, extras), each (K,) for theta (K, P)."""
        theta = np.atleast_2d(theta)
        out = {"E": np.exp(theta[:, 0]), "A": np.exp(theta[:, 1]), "B": np.exp(theta[:, 2]),
               "alpha": theta[:, 3].copy(), "beta": theta[:, 4].copy()}
        out.update({name: theta[:, 5 + i].copy() for i, name in enumerate(self.extras)})
        return out

    def law(self, theta, domains: tuple[str, ...] = (), own: int | None = None) -> FamilyLaw:
        """The point law of one theta (mixture-aware over `domains` when `own` is given)."""
        return FamilyLaw(self, FamilyEnsemble(self, np.atleast_2d(np.asarray(theta, float)), tuple(domains), own))

    def ensemble(self, thetas, domains: tuple[str, ...] = (), own: int | None = None) -> FamilyEnsemble:
        return FamilyEnsemble(self, np.atleast_2d(np.asarray(thetas, float)), tuple(domains), own)


class Chinchilla(LawFamily):
    name = "chinchilla"
    citation = "Hoffmann et al. 2022, arXiv:2203.15556, eq. 2 (Approach 3)"

    def forward(self, theta, design, with_jac):
        return CHINCHILLA_MODEL.forward(theta, design, with_jac)

    def _data_term(self, extra, beta, log_n, log_d, log_u):
        return 0.0, beta, log_d, lambda log_dp: []

    def law(self, theta, domains=(), own=None):
        from fitting.parametric import law_from_theta

        return law_from_theta(np.asarray(theta, float), domains, own)

    def ensemble(self, thetas, domains=(), own=None):
        from fitting.parametric import ensemble_from_thetas

        return ensemble_from_thetas(np.atleast_2d(np.asarray(thetas, float)), domains, own)


class Farseer(LawFamily):
    name = "farseer"
    citation = "after Li et al. 2025, Farseer, arXiv:2506.10972 (coefficient and exponent of the D term vary with N)"
    extras = ("nu", "kappa")
    extra_bounds = (NU_BOUNDS, KAPPA_BOUNDS)
    extra_starts = ((0.0, 0.0), (0.0, 0.03), (0.0, -0.03), (0.2, 0.03), (-0.2, -0.03))

    def _data_term(self, extra, beta, log_n, log_d, log_u):
        nu, kappa = extra[:, 0:1], extra[:, 1:2]
        x = log_n - np.log(N0)
        beta_eff = beta * np.exp(kappa * x)
        return nu * x, beta_eff, log_d, lambda log_dp: [x + 0.0 * log_dp, -beta_eff * x * log_dp]


class DataConstrained(LawFamily):
    name = "data_constrained"
    citation = "Muennighoff et al. 2023, arXiv:2305.16264, eq. 5 (data side)"
    extras = ("rho",)
    extra_bounds = (RHO_BOUNDS,)
    extra_starts = ((np.log(MUENNIGHOFF_R_STAR),), (np.log(3.0),), (np.log(100.0),))
    needs_unique_tokens = True

    def applicable(self, design):
        if design.log_u is None or not np.any(design.log_d > design.log_u + np.log(1.05)):
            return "no run repeated its data (give n_unique_tokens)"
        return super().applicable(design)

    def _data_term(self, extra, beta, log_n, log_d, log_u):
        if log_u is None:
            return 0.0, beta, log_d, lambda log_dp: [np.zeros_like(log_dp)]
        log_dp, dlog_dp = repeated_log_tokens(log_d, log_u, extra[:, 0:1])
        return 0.0, beta, log_dp, lambda _: [-beta * dlog_dp]

    def readable(self, theta):
        out = super().readable(theta)
        out["R_star"] = np.exp(out.pop("rho"))
        return out


FAMILIES: dict[str, LawFamily] = {f.name: f for f in (Chinchilla(), Farseer(), DataConstrained())}
CHINCHILLA = FAMILIES["chinchilla"]


def get_family(name: str) -> LawFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown law family {name!r}; known: {', '.join(FAMILIES)}") from None


# --------------------------------------------------------------------------- laws of the generic families


def query_design(n_params, n_tokens, mix, domains, own, unique=None) -> Design:
    """The Design of query points: arrays (M,) or per-member (K, G), one mix for all or one per point."""
    from fitting.law import mix_matrix

    log_n = np.log(np.asarray(n_params, float))
    log_d = np.log(np.asarray(n_tokens, float))
    log_n, log_d = np.broadcast_arrays(log_n, log_d)
    m = None
    if domains and mix is not None:
        m = mix_matrix(mix, domains, log_n.shape[-1])
    elif domains:  # a mixture-aware law read without a mix: its own domain alone, T = 1
        m = np.zeros((log_n.shape[-1], len(domains)))
        m[:, own] = 1.0
    log_u = None
    if unique is not None:
        log_u = np.broadcast_to(np.log(np.asarray(unique, float)), log_n.shape)
    return Design(log_n, log_d, m, own if m is not None else None, log_u)


@dataclass(frozen=True)
class FamilyEnsemble:
    """K members of one skill's law in a family other than Chinchilla: theta (K, P) in the family's layout."""

    family: LawFamily
    theta: np.ndarray
    domains: tuple[str, ...] = ()
    own: int | None = None

    @property
    def size(self) -> int:
        return int(self.theta.shape[0])

    @property
    def transfer(self) -> np.ndarray | None:
        if not self.domains:
            return None
        t = np.ones((self.size, len(self.domains)))
        t[:, [j for j in range(len(self.domains)) if j != self.own]] = np.exp(self.theta[:, self.family.n_core:])
        return t

    def loss(self, n_params, n_tokens, mix=None, unique=None) -> np.ndarray:
        """Predicted loss of every member at M query points, (K, M)."""
        n = np.atleast_1d(np.asarray(n_params, float))
        d = np.atleast_1d(np.asarray(n_tokens, float))
        n, d = np.broadcast_arrays(n, d)
        design = query_design(n, d, mix, self.domains, self.own, unique)
        return np.exp(self.family.forward(self.theta, design, with_jac=False)[0])

    def loss_members(self, n_params, n_tokens, mix=None, unique=None) -> np.ndarray:
        """Member k's loss at its own query points (K, G) -> (K, G)."""
        design = query_design(n_params, n_tokens, mix, self.domains, self.own, unique)
        return np.exp(self.family.forward(self.theta, design, with_jac=False)[0])

    def optimum(self, flops, mix=None, unique=None) -> tuple[np.ndarray, np.ndarray]:
        c = float(flops)
        def loss_on_line(log_n):
            n = np.exp(log_n)
            return self.loss_members(n, c / (FLOPS_PER_PARAM_TOKEN * n), mix, unique)

        return isoflop_argmin(loss_on_line, c, self.size)

    def exponent_at(self, flops, mix=None, rel_step: float = 0.05) -> np.ndarray:
        """Local a(C) = d log N* / d log C per member."""
        up = self.optimum(flops * (1 + rel_step), mix)[0]
        down = self.optimum(flops / (1 + rel_step), mix)[0]
        return (np.log(up) - np.log(down)) / (2 * np.log1p(rel_step))

    def params(self) -> dict[str, np.ndarray]:
        return self.family.readable(self.theta)

    def pack(self) -> np.ndarray:
        """Members' parameters as the ensemble Kalman step moves them, (K, P)."""
        return self.theta.copy()

    def unpack(self, theta: np.ndarray) -> FamilyEnsemble:
        return dataclasses.replace(self, theta=self.family.project(np.array(theta, float)))

    def take(self, index) -> FamilyEnsemble:
        return dataclasses.replace(self, theta=self.theta[np.asarray(index)])

    def member(self, k: int) -> FamilyLaw:
        return FamilyLaw(self.family, self.take([k]))


@dataclass(frozen=True)
class FamilyLaw:
    """A point estimate in a family other than Chinchilla (a one-member FamilyEnsemble underneath)."""

    family: LawFamily
    one: FamilyEnsemble

    @property
    def theta(self) -> np.ndarray:
        return self.one.theta[0]

    @property
    def transfer(self) -> dict[str, float] | None:
        t = self.one.transfer
        return None if t is None else {d: float(x) for d, x in zip(self.one.domains, t[0], strict=True)}

    def loss(self, n_params, n_tokens, mix=None, unique=None) -> np.ndarray:
        return self.one.loss(n_params, n_tokens, mix, unique)[0]

    def optimum(self, flops, mix=None, unique=None) -> tuple[np.ndarray, np.ndarray]:
        out = [self.one.optimum(c, mix, unique) for c in np.atleast_1d(np.asarray(flops, float))]
        return np.array([n[0] for n, _ in out]), np.array([d[0] for _, d in out])

    def exponent_at(self, flops, mix=None) -> float:
        return float(self.one.exponent_at(flops, mix)[0])

    def to_dict(self) -> dict:
        out = {"family": self.family.name, **{k: float(v[0]) for k, v in self.one.params().items()}}
        if self.transfer is not None:
            out["transfer"] = self.transfer
        return out
