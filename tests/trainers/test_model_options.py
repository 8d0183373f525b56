"""The decoder's optional initialisation and QK-norm, and how a run asks for them (CPU, tiny shapes)."""

import json
import math

import pytest
import torch
from pydantic import ValidationError

from skillscale.errors import InputError
from tests.trainers.conftest import MIX
from trainers.hparams import resolve
from trainers.model import Transformer
from trainers.settings import TrainerSettings
from trainers.shapes import ModelConfig, count_params
from trainers.spec import RunSpec
from trainers.torch_backend import TorchBackend

CFG = ModelConfig(d_model=64, n_layers=2, n_heads=2, vocab_size=97, seq_len=16)


def _loss(model: Transformer, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, CFG.vocab_size, (2, CFG.seq_len), generator=g)
    return model(idx, torch.roll(idx, -1, dims=1))


def test_zero_out_init_starts_every_seed_from_the_uniform_prediction():
    model = Transformer(CFG)
    for seed in (0, 1):
        torch.manual_seed(seed)
        model.init_weights(0.02, "zero-out")
        assert torch.count_nonzero(model.head.weight) == 0
        for block in model.blocks:
            assert torch.count_nonzero(block.attn.wo.weight) == 0 and torch.count_nonzero(block.mlp.w_down.weight) == 0
            assert block.attn.wqkv.weight.std().item() == pytest.approx(0.02, rel=0.1)
        assert _loss(model).item() == pytest.approx(math.log(CFG.vocab_size), abs=1e-5)
    _loss(model).backward()  # the head gets a gradient at once; the blocks' inputs to it follow from the next step
    assert model.head.weight.grad.abs().sum() > 0


def test_gpt2_init_is_the_models_own_default_and_an_unknown_scheme_is_refused():
    model = Transformer(CFG)
    torch.manual_seed(0)
    model.init_weights(0.02)
    first = [p.clone() for p in model.parameters()]
    torch.manual_seed(0)
    model.init_weights(0.02, "gpt2")
    assert all(torch.equal(a, b) for a, b in zip(first, model.parameters(), strict=True))
    std_out = model.blocks[0].attn.wo.weight.std().item()
    assert std_out == pytest.approx(0.02 / math.sqrt(2 * CFG.n_layers), rel=0.15)
    with pytest.raises(ValueError, match="init scheme"):
        model.init_weights(0.02, "xavier")


def test_small_init_scales_the_std_with_the_width():
    for d_model in (64, 256):
        cfg = ModelConfig(d_model=d_model, n_layers=4, n_heads=2, vocab_size=97, seq_len=16)
        model = Transformer(cfg)
        torch.manual_seed(0)
        model.init_weights(0.02, "small-init")  # init_std is replaced by the width rule
        want = math.sqrt(2 / (5 * d_model))
        assert model.blocks[0].mlp.w_gate_up.weight.std().item() == pytest.approx(want, rel=0.05)
        assert model.head.weight.std().item() == pytest.approx(want, rel=0.05)
        assert model.blocks[0].mlp.w_down.weight.std().item() == pytest.approx(want / math.sqrt(8), rel=0.05)


def test_orthogonal_init_has_small_inits_norm_and_a_flat_spectrum_whose_directions_the_seed_draws():
    cfg = ModelConfig(d_model=64, n_layers=4, n_heads=2, vocab_size=97, seq_len=16)
    model, gaussian = Transformer(cfg), Transformer(cfg)
    std = math.sqrt(2 / (5 * cfg.d_model))
    torch.manual_seed(0)
    gaussian.init_weights(0.02, "small-init")
    draws = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model.init_weights(0.02, "orthogonal")
        draws.append(model.blocks[0].attn.wqkv.weight.clone())
        scaled = [("wqkv", model.blocks[0].attn.wqkv.weight, std), ("embed", model.embed.weight, std),
                  ("w_down", model.blocks[1].mlp.w_down.weight, std / math.sqrt(8)), ("head", model.head.weight, std)]
        for name, w, s in scaled:
            singular = torch.linalg.svdvals(w)
            torch.testing.assert_close(singular, torch.full_like(singular, s * math.sqrt(max(w.shape))), rtol=1e-4,
                                       atol=0, msg=name)
        for w, g in [(model.head.weight, gaussian.head.weight), (model.blocks[0].mlp.w_gate_up.weight,
                                                                 gaussian.blocks[0].mlp.w_gate_up.weight)]:
            assert w.norm().item() == pytest.approx(g.norm().item(), rel=0.05)  # a Gaussian of that std's norm
    assert not torch.equal(draws[0], draws[1])
    assert math.isfinite(_loss(model).item())


def test_qk_norm_normalises_queries_and_keys_and_leaves_n_unchanged():
    normed = ModelConfig(d_model=64, n_layers=2, n_heads=2, vocab_size=97, seq_len=16, qk_norm=True)
    assert count_params(CFG) == count_params(normed)
    assert "qk_norm" not in CFG.to_dict() and normed.to_dict()["qk_norm"] is True
    model = Transformer(normed)
    torch.manual_seed(0)
    model.init_weights()
    attn = model.blocks[0].attn
    loss = _loss(model)
    loss.backward()
    assert math.isfinite(loss.item()) and attn.q_norm.grad.abs().sum() > 0 and attn.k_norm.grad.abs().sum() > 0
    x = torch.randn(2, CFG.seq_len, CFG.d_model, generator=torch.Generator().manual_seed(1))
    cos, sin = model.rope_cos, model.rope_sin
    plain = Transformer(CFG)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if "q_norm" not in k and "k_norm" not in k})
    with torch.no_grad():  # scaling the query and key rows of wqkv changes nothing once they are normalised
        outputs = []
        for m in (model, plain):
            a = m.blocks[0].attn
            before = a(x, cos, sin)
            a.wqkv.weight[: 2 * CFG.d_model] *= 3.0
            outputs.append((before, a(x, cos, sin)))
    (normed_before, normed_after), (plain_before, plain_after) = outputs
    torch.testing.assert_close(normed_after, normed_before, rtol=1e-4, atol=1e-6)
    assert (plain_after - plain_before).abs().max() > 10 * (normed_after - normed_before).abs().max() + 1e-6


def test_a_run_asks_for_them_through_hparams_and_trainer_settings(tmp_path, tiny_settings):
    hp = resolve(7e4, 6e3, 64, {"init_scheme": "zero-out", "batch_tokens": 512})
    assert hp.init_scheme == "zero-out" and hp.to_dict()["init_scheme"] == "zero-out"
    default = resolve(7e4, 6e3, 64)
    assert default.init_scheme == "small-init" and default.to_dict()["init_scheme"] == "small-init"
    old = resolve(7e4, 6e3, 64, {"init_scheme": "gpt2"})  # the old default keeps old checkpoints' fingerprints
    assert "init_scheme" not in old.to_dict()
    assert resolve(7e4, 6e3, 64, {"init_scheme": "gpt2", "init_std": 0.05}).init_std == 0.05
    with pytest.raises(InputError, match="hparams.init_scheme: expected one of small-init, gpt2, zero-out, orthogonal"):
        resolve(7e4, 6e3, 64, {"init_scheme": "xavier"})
    for overrides in ({"init_scheme": "small-init", "init_std": 0.05}, {"init_std": 0.05}):
        with pytest.raises(InputError, match="hparams.init_std: init_scheme small-init .the default. sets the std"):
            resolve(7e4, 6e3, 64, overrides)
    with pytest.raises(InputError, match="hparams.init_std: init_scheme orthogonal sets the std from d_model"):
        resolve(7e4, 6e3, 64, {"init_scheme": "orthogonal", "init_std": 0.05})
    with pytest.raises(ValidationError, match="qk_norm\n.*expected true or false, got 'yes'"):
        TrainerSettings(qk_norm="yes")
    assert TrainerSettings().qk_norm is True
    backend = TorchBackend(**tiny_settings)
    spec = RunSpec(n_params=7e4, n_tokens=3e3, mix=MIX, hparams={"init_scheme": "zero-out", "batch_tokens": 512})
    cfg, hp, _ = backend.plan(spec)
    assert cfg.qk_norm and hp.init_scheme == "zero-out"
    result = backend.run(spec, tmp_path)
    assert result.status == "ok" and all(math.isfinite(v) for v in result.losses.values())
    recorded = json.loads((tmp_path / "run.json").read_text())
    assert recorded["shape"]["qk_norm"] is True and recorded["hparams"]["init_scheme"] == "zero-out"
