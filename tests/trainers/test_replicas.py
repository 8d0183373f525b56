"""Seed replicas (trainers/replicas.py): R models fused in one module train as their R single-model runs would."""

import math

import pytest
import torch

from skillscale.errors import InputError
from tests.trainers.conftest import MIX
from trainers.model import Transformer
from trainers.replicas import ReplicatedTransformer, replica_seed
from trainers.shapes import ModelConfig
from trainers.spec import FamilySpec, RunSpec
from trainers.torch_backend import RunStopped, TorchBackend

CFG = ModelConfig(d_model=32, n_layers=2, n_heads=2, ffn_hidden=64, vocab_size=50, seq_len=16, qk_norm=True)
TINY = RunSpec(n_params=70_000, n_tokens=6_000, mix=MIX, seed=1, hparams={"batch_tokens": 512})


def plain(seed: int, scheme: str = "small-init") -> Transformer:
    """A single-model run's starting weights: the (cached) model is seeded, then re-initialised."""
    model = Transformer(CFG)
    torch.manual_seed(seed)
    model.init_weights(0.02, scheme)
    return model


@pytest.mark.parametrize("scheme", ["small-init", "orthogonal"])
def test_each_replica_starts_where_its_own_run_starts(scheme):
    fused = ReplicatedTransformer(CFG, 3)
    fused.init_replicas(7, 0.02, scheme)
    assert [replica_seed(7, r) for r in range(3)] == [7, 1007, 2007]
    for r in range(3):
        expected = plain(replica_seed(7, r), scheme).state_dict()
        got = fused.replica_state(r)
        assert got.keys() == expected.keys()
        for name in expected:
            assert torch.equal(got[name], expected[name]), (r, name)
    a, b = fused.replica_state(0), fused.replica_state(1)
    assert not torch.equal(a["head.weight"], b["head.weight"])  # the replicas differ


def test_fused_loss_is_the_sum_of_the_replicas_losses_and_so_are_the_gradients():
    torch.manual_seed(0)
    idx, targets = torch.randint(0, CFG.vocab_size, (2, 2, CFG.seq_len))
    targets[0, :3] = -100  # ignored targets count for nothing in either
    fused = ReplicatedTransformer(CFG, 2)
    fused.init_replicas(3, 0.02, "small-init")
    fused(idx, targets).backward()
    loss = 0.0
    for r in range(2):
        model = plain(replica_seed(3, r))
        single = model(idx, targets)
        single.backward()
        loss += single.item()
        for name, p in model.named_parameters():
            fused_grad = dict(fused.named_parameters())[name].grad[r]
            torch.testing.assert_close(fused_grad, p.grad, rtol=1e-4, atol=1e-6, msg=f"{r} {name}")
    assert math.isclose(fused(idx, targets).item(), loss, rel_tol=1e-5)


def test_replicas_evaluated_together_score_as_each_alone(tiny_settings):
    """Evaluator.run_with_errors_each (every replica in each forward) against run_with_errors on each replica loaded
    into a plain Transformer: the same skill losses, standard errors and domain losses, to rounding."""
    backend = TorchBackend(**tiny_settings, seed_replicas=3)
    plan = backend._plan_run(TINY)
    _, evaluator = backend._data(plan)
    fused = ReplicatedTransformer(plan.cfg, 3)
    fused.init_replicas(5, 0.02, "small-init")
    together = evaluator.run_with_errors_each(fused, torch.device("cpu"))
    alone = [evaluator.run_with_errors(view, torch.device("cpu")) for view in fused.replica_models()]
    assert len(together) == 3
    for r in range(3):
        for part in range(3):  # skills, domains, errors
            assert together[r][part].keys() == alone[r][part].keys()
            for key, value in alone[r][part].items():
                assert together[r][part][key] == pytest.approx(value, rel=1e-5), (r, part, key)
    assert together[0][0] != together[1][0]  # each replica its own numbers


def test_clipping_is_per_replica():
    fused = ReplicatedTransformer(CFG, 2)
    for p in fused.parameters():
        p.grad = torch.zeros_like(p)
    fused.head.weight.grad[0].fill_(1.0)  # replica 0: norm sqrt(V*C) >> 1; replica 1: norm 0.1
    fused.embed.weight.grad[1, 0, 0] = 0.1
    norms = fused.clip_grad_norm_(1.0)
    assert norms[0].item() == pytest.approx(math.sqrt(CFG.vocab_size * CFG.d_model))
    assert fused.head.weight.grad[0].norm().item() == pytest.approx(1.0, rel=1e-5)
    assert fused.embed.weight.grad[1, 0, 0].item() == pytest.approx(0.1)  # under the limit: untouched


def test_backend_run_with_replicas_matches_the_single_model_runs(tmp_path, tiny_settings):
    fused = TorchBackend(**tiny_settings, seed_replicas=2).run(TINY, tmp_path / "fused")
    assert fused.status == "ok" and len(fused.replica_losses) == 2
    singles = []
    for r in range(2):
        spec = RunSpec(n_params=TINY.n_params, n_tokens=TINY.n_tokens, mix=MIX, seed=replica_seed(TINY.seed, r),
                       hparams=TINY.hparams)
        singles.append(TorchBackend(**tiny_settings).run(spec, tmp_path / f"single{r}"))
    for r, single in enumerate(singles):
        for skill, value in single.losses.items():
            assert fused.replica_losses[r][skill] == pytest.approx(value, rel=2e-3), (r, skill)
    for skill in fused.losses:
        assert fused.losses[skill] == pytest.approx(sum(s[skill] for s in fused.replica_losses) / 2, rel=1e-12)
    assert fused.flops == 2 * singles[0].flops and fused.n_params == singles[0].n_params
    assert fused.replica_losses[0] != fused.replica_losses[1]


def test_replicated_run_resumes_bit_identically(tmp_path, tiny_settings):
    settings = {**tiny_settings, "seed_replicas": 2}
    full = TorchBackend(**settings).run(TINY, tmp_path / "full")
    with pytest.raises(RunStopped):
        TorchBackend(**settings).run(TINY, tmp_path / "resumed", stop_after_steps=5)
    resumed = TorchBackend(**settings).run(TINY, tmp_path / "resumed")
    assert resumed.losses == full.losses and resumed.replica_losses == full.replica_losses


def test_replica_count_is_checked_and_families_refuse_it(tmp_path, tiny_settings):
    with pytest.raises(InputError, match="trainer.seed_replicas: expected a positive integer"):
        TorchBackend(**tiny_settings, seed_replicas=0)
    family = FamilySpec(n_params=70_000, n_tokens=(3_000, 6_000), mix=MIX, hparams={"batch_tokens": 512})
    with pytest.raises(InputError, match="trainer.seed_replicas: run families"):
        TorchBackend(**tiny_settings, seed_replicas=2).run_family(family, tmp_path)


def test_simulated_replicas_report_the_mean_of_r_observations_at_r_times_the_flops(tmp_path):
    from trainers.simulated import SimulatedBackend, SimulatedConfig

    spec = RunSpec(n_params=10**8, n_tokens=2 * 10**9, mix={"knowledge": 0.5, "code": 0.5}, seed=3)
    one = SimulatedBackend(noise=0.02).run(spec, tmp_path)
    assert one.losses == SimulatedBackend(noise=0.02, seed_replicas=1).run(spec, tmp_path).losses  # R = 1: as before
    truth = SimulatedBackend(noise=0.0).true_losses(spec)
    many = [RunSpec(n_params=spec.n_params, n_tokens=spec.n_tokens, mix=spec.mix, seed=s) for s in range(200)]
    spread = {}
    for r in (1, 4):
        backend = SimulatedBackend(noise=0.02, seed_replicas=r)
        results = [backend.run(s, tmp_path) for s in many]
        assert results[0].flops == r * spec.flops
        logs = [math.log(x.losses["knowledge"] / truth["knowledge"]) for x in results]
        spread[r] = float(torch.tensor(logs).std())
    assert spread[4] / spread[1] == pytest.approx(0.5, abs=0.1)  # sqrt(4): 200 runs put the ratio within ~0.05
    cfg = SimulatedConfig.model_validate({"name": "simulated", "seed_replicas": 4})
    assert cfg.capabilities.models_per_run == 4 and cfg.build().seed_replicas == 4
    family = FamilySpec(n_params=10**8, n_tokens=(10**9, 2 * 10**9), mix=spec.mix)
    with pytest.raises(InputError, match="backend.seed_replicas: run families"):
        SimulatedBackend(seed_replicas=2).run_family(family, tmp_path)
