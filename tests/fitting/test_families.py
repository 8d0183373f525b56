"""Law families (fitting/families.py) and their weighted average (fitting/averaging.py)."""

from pathlib import Path

import numpy as np
import pytest

from fitting._solver import Design, objective
from fitting.averaging import (
    AveragedEnsemble,
    allocate_members,
    bootstrap_average,
    fit_average,
    mixture_interval,
    prediction_interval,
)
from fitting.families import FAMILIES, isoflop_argmin
from fitting.law import interval
from fitting.parametric import fit_parametric, refit_batch
from fitting.truths import FARSEER_SINGLE_EPOCH
from skillscale.errors import InputError

from ._data import CHINCHILLA, isoflop_design

LADDERS = Path(__file__).resolve().parents[3] / "shared" / "data" / "real-ladders"


def _design(n=12, mix=False, unique=False, seed=0):
    rng = np.random.default_rng(seed)
    log_n = np.log(rng.uniform(1e7, 1e9, n))
    log_d = log_n + np.log(rng.uniform(5, 200, n))
    m = rng.dirichlet(np.ones(3), n) if mix else None
    log_u = log_d - np.log(rng.uniform(0.5, 20, n)) if unique else None
    return Design(log_n, log_d, m, 0 if mix else None, log_u)


@pytest.mark.parametrize("name", ["farseer", "data_constrained"])
@pytest.mark.parametrize("mix", [False, True])
def test_jacobian_matches_finite_differences(name, mix):
    family = FAMILIES[name]
    design = _design(mix=mix, unique=True)
    theta = np.array([[0.5, 6.0, 6.5, 0.35, 0.3] + [0.1, 0.02][:len(family.extras)]
                      + ([0.2, -0.5] if mix else [])])
    if name == "data_constrained":
        theta[0, 5] = np.log(8.0)
    _, jac = family.forward(theta, design, with_jac=True)
    eps = 1e-6
    for p in range(theta.shape[1]):
        up, down = theta.copy(), theta.copy()
        up[0, p] += eps
        down[0, p] -= eps
        numeric = (family.forward(up, design, False)[0] - family.forward(down, design, False)[0]) / (2 * eps)
        np.testing.assert_allclose(jac[0, :, p], numeric[0], rtol=1e-5, atol=1e-8)


def test_extended_families_reduce_to_chinchilla():
    """nu = kappa = 0 is the Chinchilla law; so is data_constrained without repetition."""
    n, d = np.array([1e7, 1e8, 1e9]), np.array([1e9, 3e9, 2e10])
    base = (np.log(1.69), np.log(406.4), np.log(410.7), 0.34, 0.28)
    farseer = FAMILIES["farseer"].law((*base, 0.0, 0.0))
    constrained = FAMILIES["data_constrained"].law((*base, np.log(15.4)))
    np.testing.assert_allclose(farseer.loss(n, d), CHINCHILLA.loss(n, d), rtol=1e-12)
    np.testing.assert_allclose(constrained.loss(n, d, unique=d * 2), CHINCHILLA.loss(n, d), rtol=1e-12)
    assert np.all(constrained.loss(n, d, unique=d / 10) > CHINCHILLA.loss(n, d))  # ten epochs are worth less


def test_numerical_optimum_matches_the_closed_form():
    ens = FAMILIES["farseer"].ensemble(np.array([[np.log(1.69), np.log(406.4), np.log(410.7), 0.34, 0.28, 0.0, 0.0]]))
    n_opt, d_opt = ens.optimum(1e22)
    n_true, d_true = CHINCHILLA.optimum(1e22)
    np.testing.assert_allclose(n_opt, n_true, rtol=1e-6)
    np.testing.assert_allclose(d_opt, d_true, rtol=1e-6)
    edge, _ = isoflop_argmin(lambda log_n: -log_n, 1e20, 1)  # no interior minimum: none in reach
    assert np.isnan(edge[0])


def test_farseer_fit_recovers_its_truth():
    truth = FARSEER_SINGLE_EPOCH
    n, d = isoflop_design(CHINCHILLA, n_sizes=7)
    fit = fit_parametric(n, d, truth.loss(n, d), family="farseer")
    assert fit.family.name == "farseer"
    np.testing.assert_allclose(fit.law.loss(n, d), truth.loss(n, d), rtol=1e-5)
    np.testing.assert_allclose(fit.law.optimum(1e21)[0], truth.optimum(1e21)[0], rtol=0.02)


def test_bootstrap_refits_find_the_minimum_a_fit_from_scratch_finds():
    """Farseer's extras have several basins: resamples simulated from the fit whose lowest minimum lies in another
    basin are refit there too, as a fit from scratch would (from the point's basin alone, 4 of these 20 were not)."""
    rng = np.random.default_rng(3)
    c, ratio = np.exp(rng.uniform(np.log(1e16), np.log(6e18), 120)), np.exp(rng.uniform(np.log(5), np.log(640), 120))
    n = np.sqrt(c / (6 * ratio))
    d = c / (6 * n)
    farseer = FAMILIES["farseer"]
    design = Design(np.log(n), np.log(d))
    loss = np.exp(farseer.forward(FARSEER_SINGLE_EPOCH.theta.reshape(1, -1), design, False)[0][0]
                  + 0.005 * rng.standard_normal(n.size))
    fit = fit_parametric(n, d, loss, family=farseer)
    resamples = (farseer.forward(np.array(fit.theta)[None], design, False)[0]
                 + 0.005 * rng.standard_normal((20, n.size)))
    ones = np.ones_like(resamples)
    refits = objective(refit_batch(fit, design, resamples, ones, 1e-3), design, resamples, ones, 1e-3, farseer)
    scratch = [objective(np.array(fit_parametric(n, d, np.exp(y), family=farseer).theta)[None], design, y, 1.0, 1e-3,
                         farseer)[0] for y in resamples]
    assert np.all(refits <= np.array(scratch) * (1 + 1e-6))


def test_data_constrained_fit_recovers_r_star():
    base = (np.log(1.8), np.log(480.0), np.log(2000.0), 0.35, 0.37)
    truth = FAMILIES["data_constrained"].law((*base, np.log(15.4)))
    n, d = isoflop_design(CHINCHILLA, n_sizes=7)
    unique = d / np.tile([0.5, 1, 2, 4, 8, 16, 32], d.size // 7)
    fit = fit_parametric(n, d, truth.loss(n, d, unique=unique), family="data_constrained", unique=unique)
    assert fit.law.to_dict()["R_star"] == pytest.approx(15.4, rel=0.02)
    with pytest.raises(InputError, match="does not apply"):
        fit_parametric(n, d, truth.loss(n, d), family="data_constrained")


def _noisy(law, sigma, seed):
    n, d = isoflop_design(CHINCHILLA, n_sizes=7)
    rng = np.random.default_rng(seed)
    return n, d, law.loss(n, d) * np.exp(sigma * rng.standard_normal(n.size))


def test_auto_weighs_the_family_that_predicts_beyond_the_runs():
    n, d, loss = _noisy(FARSEER_SINGLE_EPOCH, 0.002, seed=1)
    avg = fit_average(n, d, loss)
    assert avg.weights["farseer"] > avg.weights.get("chinchilla", 0.0)
    assert avg.scores["data_constrained"].weight == 0 and "not applicable" in avg.scores["data_constrained"].note
    assert avg.scores["farseer"].holdout_rmse < avg.scores["chinchilla"].holdout_rmse


@pytest.mark.parametrize("seed", [0, 2])
def test_auto_keeps_chinchilla_where_it_is_true(seed):
    """Farseer nests the Chinchilla form, so on Chinchilla data the two predict alike and share the weight (seed 2:
    Farseer 0.71); the Chinchilla fit inside is today's, and the mixture's interval holds the true N*."""
    n, d, loss = _noisy(CHINCHILLA, 0.005, seed=seed)
    avg = fit_average(n, d, loss)
    assert avg.weights["chinchilla"] >= 0.25
    assert sum(avg.weights.values()) == pytest.approx(1.0)
    assert avg.fits["chinchilla"].theta == fit_parametric(n, d, loss).theta
    ens = bootstrap_average(avg, n, d, loss, n_boot=100, seed=seed)
    points = {f: fit.law.optimum(1e22)[0][0] for f, fit in avg.fits.items()}
    lo, hi = mixture_interval(ens.optimum(1e22)[0], ens.families, points)
    assert lo < CHINCHILLA.optimum(1e22)[0][0] < hi


def test_members_follow_the_weights_and_share_draws():
    assert allocate_members({"a": 0.75, "b": 0.25}, 200) == {"a": 150, "b": 50}
    assert allocate_members({"a": 0.999, "b": 0.001}, 20) == {"a": 18, "b": 2}
    n, d, loss = _noisy(FARSEER_SINGLE_EPOCH, 0.003, seed=3)
    avg = fit_average(n, d, loss)
    ens = bootstrap_average(avg, n, d, loss, n_boot=40, seed=0)
    if isinstance(ens, AveragedEnsemble):
        assert ens.size == 40 and set(ens.families) == set(avg.fits)
    assert ens.loss(n[:3], d[:3]).shape == (40, 3)


def test_mixture_interval_spans_disagreeing_families():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.05, 300), rng.normal(2.0, 0.05, 100)
    x = np.concatenate([a, b])
    labels = np.array(["a"] * 300 + ["b"] * 100, dtype=object)
    lo, hi = mixture_interval(x, labels, {"a": 1.0, "b": 2.0})
    assert lo < 1.0 and hi > 1.9  # the interval holds both answers
    single = mixture_interval(a, np.array(["chinchilla"] * 300, dtype=object), {"chinchilla": 1.0})
    assert single == interval(a, point=1.0)


def test_a_skewed_uncalibrated_family_keeps_the_tail_the_correction_would_cut():
    """Members skewed above the point: the bias correction moves the interval down, cutting the upper tail. For
    the Chinchilla form (measured calibrated) that is the interval; for another family the union with the
    uncorrected one keeps the tail."""
    rng = np.random.default_rng(1)
    x = 1.5 * np.exp(np.abs(rng.normal(0, 0.08, 400)) - 0.02)  # most members above the point 1.5, a long upper tail
    corrected = interval(x, point=1.5)
    plain = interval(x)
    assert corrected[1] < plain[1]  # the correction cuts the upper tail
    chinchilla = mixture_interval(x, np.array(["chinchilla"] * 400, dtype=object), {"chinchilla": 1.5})
    farseer = mixture_interval(x, np.array(["farseer"] * 400, dtype=object), {"farseer": 1.5})
    assert chinchilla == corrected
    assert farseer == (min(corrected[0], plain[0]), plain[1])
    both = np.array(["chinchilla"] * 200 + ["chinchilla+farseer"] * 200, dtype=object)  # a combination label
    mixed = mixture_interval(x, both, {"chinchilla": 1.5, "chinchilla+farseer": 1.5})
    assert mixed[1] > mixture_interval(x, np.array(["chinchilla"] * 400, dtype=object), {"chinchilla": 1.5})[1]


def test_prediction_interval_covers_noisy_observations():
    n, d, loss = _noisy(CHINCHILLA, 0.01, seed=4)
    avg = fit_average(n, d, loss)
    ens = bootstrap_average(avg, n, d, loss, n_boot=100, seed=1)
    rng = np.random.default_rng(5)
    observed = CHINCHILLA.loss(n, d) * np.exp(0.01 * rng.standard_normal(n.size))
    _, lo, hi = prediction_interval(ens, avg, n, d)
    inside = np.mean((observed >= lo) & (observed <= hi))
    assert 0.85 <= inside <= 1.0
    assert np.median((hi - lo) / 2 / observed) < 0.05  # and the interval is not vacuous


@pytest.mark.skipif(not (LADDERS / "data_constrained_train.csv").exists(), reason="shared/data not beside the repo")
def test_real_ladder_held_out_runs_fall_inside_their_intervals():
    """The small CI version of benchmarks/bench_real_ladders.py on Muennighoff et al.'s ladder."""
    from benchmarks.bench_real_ladders import evaluate, load_ladder

    (problem,) = load_ladder("data_constrained", LADDERS)
    row = evaluate(problem, "auto", n_boot=40, seed=0)
    assert row["holdout_r2"] > 0.95
    assert row["pi95_coverage"] >= 0.9
    assert set(row["weights"]) <= set(FAMILIES) and sum(row["weights"].values()) == pytest.approx(1.0)
    lo, hi = row["optimum"][-1]["n_params_ci95"]
    assert lo < row["optimum"][-1]["n_params"] < hi


def test_a_target_with_limited_data_reads_the_optimum_with_repetition():
    """`targets[].unique_tokens`: the data_constrained family's N* at a budget whose D* repeats the data is the
    repeated-data truth's own optimum (Muennighoff et al.'s eq. 5 on both sides); unlimited data moves it; the
    Chinchilla family, with no term for repetition, reads the same either way."""
    from fitting.truths import RepeatedDataLaw
    from scheduler.config import parse_study_config
    from scheduler.estimates import single_member, target_optimum

    base = (np.log(1.69), np.log(406.4), np.log(410.7), 0.34, 0.28)
    truth = RepeatedDataLaw(CHINCHILLA, unique_tokens=1e10)
    study = {"name": "u", "skills": ["all"], "domains": ["all"], "mix": {"space": "fixed"},
             "n_params": [1e7, 3e9], "n_tokens": [1e8, 1e11], "flops": [1e16, 1e19],
             "targets": [{"name": "all", "weights": {"all": 1.0}, "flops": 1e22, "unique_tokens": 1e10}],
             "compute_cap": 1e21, "backend": {"name": "simulated", "truth": "besiroglu"}}
    cfg = parse_study_config(study)
    (limited,) = cfg.targets
    unlimited = limited.model_copy(update={"unique_tokens": None})
    constrained = {"all": single_member(FAMILIES["data_constrained"].law((*base, np.log(truth.r_star))), ())}
    chinchilla = {"all": single_member(FAMILIES["chinchilla"].law(base), ())}
    n_limited = float(target_optimum(constrained, cfg, limited)[0][0])
    assert n_limited == pytest.approx(float(truth.optimum(1e22)[0][0]), rel=1e-4)
    assert n_limited > 1.1 * float(target_optimum(constrained, cfg, unlimited)[0][0])  # scarce data: a larger model
    assert float(target_optimum(chinchilla, cfg, limited)[0][0]) == pytest.approx(
        float(target_optimum(chinchilla, cfg, unlimited)[0][0]), rel=1e-12)
    bad = {**study, "targets": [{**study["targets"][0], "unique_tokens": 0}]}
    with pytest.raises(InputError, match="unique_tokens"):
        parse_study_config(bad)


def test_a_target_that_repeats_its_data_has_no_interval_until_runs_repeat_theirs():
    """A target whose D* reads its unique tokens ~10x, fitted from runs that never repeated their data: no family
    with a repetition term can be fitted, so its N* is not trusted (rel_halfwidth inf, the reason named) instead
    of a Chinchilla interval that reads the data as unlimited. Runs that repeat their data lift it."""
    from fitting.truths import RepeatedDataLaw
    from scheduler.config import parse_study_config
    from scheduler.estimates import precision_text, refit

    truth = RepeatedDataLaw(CHINCHILLA, unique_tokens=3e9)
    n, d = isoflop_design(CHINCHILLA, n_sizes=7)
    rng = np.random.default_rng(0)
    cfg = parse_study_config({
        "name": "u", "skills": ["all"], "domains": ["all"], "mix": {"space": "fixed"},
        "n_params": [1e6, 3e10], "n_tokens": [1e7, 1e13], "flops": [1e15, 1e22], "tokens_per_param": [1, 1000],
        "targets": [{"name": "all", "weights": {"all": 1.0}, "flops": 1e22, "unique_tokens": 3e9}],
        "compute_cap": 1e23, "backend": {"name": "simulated", "truth": "besiroglu"}, "proposer": {"n_boot": 40}})

    def rows(repeating: bool):
        out = []
        for i, (ni, di) in enumerate(zip(n, d, strict=True)):
            unique = 3e9 if repeating else max(di, 3e9)  # without repetition each run had fresh data
            loss = float(truth.loss(ni, di)[0]) if repeating else float(CHINCHILLA.loss(ni, di)[0])
            out.append({"run_id": f"r{i}", "status": "ok", "n_params": ni, "n_tokens": di, "flops": 6 * ni * di,
                        "n_unique_tokens": unique, "loss/all": loss * float(np.exp(0.003 * rng.standard_normal()))})
        return out

    (blind,) = refit(cfg, rows(repeating=False)).targets
    assert not np.isfinite(blind.rel_halfwidth) and "unique tokens" in blind.unresolved[0]
    assert precision_text(blind.rel_halfwidth, blind.degenerate, unresolved=blind.unresolved).startswith("n/a: D*")
    (seen,) = refit(cfg, rows(repeating=True)).targets
    assert seen.unresolved == () and "data_constrained" in seen.families
