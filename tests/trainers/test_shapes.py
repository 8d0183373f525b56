import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from skillscale.errors import InputError
from trainers.model import Transformer
from trainers.shapes import ModelConfig, count_params, flops_per_token, grid_points, shape_for, smallest_shape

V, T = 260, 128


@pytest.mark.parametrize("target", [7e4, 1e6, 3e6, 1e7, 4e7, 8e7, 3e8, 1e9])
def test_shape_rule(target):
    cfg = shape_for(target, V, T)
    assert cfg.d_model % 64 == 0
    assert cfg.head_dim in (32, 64) and cfg.d_model == cfg.n_heads * cfg.head_dim
    assert cfg.ffn_hidden % 64 == 0 and abs(cfg.ffn_hidden - 8 * cfg.d_model / 3) <= 32
    assert 32 <= cfg.d_model / cfg.n_layers <= 128
    assert abs(math.log(count_params(cfg) / target)) < 0.12


def test_shape_rule_is_monotone():
    sizes = [count_params(shape_for(n, V, T)) for n in (1e6, 3e6, 1e7, 3e7, 1e8, 3e8, 1e9)]
    assert sizes == sorted(sizes)


def test_below_smallest_shape_is_input_error():
    n_min = count_params(smallest_shape(V, T))
    assert shape_for(n_min, V, T) == smallest_shape(V, T)
    with pytest.raises(InputError, match="n_params"):
        shape_for(n_min - 1, V, T)


@pytest.mark.parametrize("target", [7e4, 1e6, 2e7, 1e9])
def test_count_params_matches_module(target):
    cfg = shape_for(target, V, T)
    with torch.device("meta"):  # no memory, even at 1B
        model = Transformer(cfg)
    linear = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert count_params(cfg) == sum(w.numel() for w in linear)
    # every parameter is either counted, the input embedding, or a 1-D norm gain
    counted = {id(w) for w in linear}
    rest = [p for p in model.parameters() if id(p) not in counted]
    assert sum(p.numel() for p in rest) == cfg.vocab_size * cfg.d_model + (2 * cfg.n_layers + 1) * cfg.d_model


def test_flops_match_an_independent_count():
    """FlopCounterMode counts matmuls in forward + backward: 6N per token, plus attention. The math SDPA
    backend computes the full T x T scores, twice the causal convention's 6*L*T*d."""
    cfg = ModelConfig(d_model=64, n_layers=2, n_heads=2, vocab_size=V, seq_len=32)
    model = Transformer(cfg)
    B = 3
    x = torch.randint(0, V, (B, cfg.seq_len))
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        model(x, x).backward()
    counts = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    tokens = B * cfg.seq_len
    assert counts["aten.mm"] == 6 * count_params(cfg) * tokens
    attention = flops_per_token(cfg, attention=True) - flops_per_token(cfg, attention=False)
    assert counts["aten.bmm"] == 2 * attention * tokens
    assert flops_per_token(cfg, attention=False) == 6 * count_params(cfg)


def test_config_validates_itself():
    with pytest.raises(InputError, match="n_heads"):
        ModelConfig(d_model=64, n_layers=1, n_heads=3, vocab_size=V, seq_len=T)
    with pytest.raises(InputError, match="seq_len"):
        ModelConfig(d_model=64, n_layers=1, n_heads=2, vocab_size=V, seq_len=0)


def test_shape_grid_keeps_the_shapes_of_a_study_few():
    """Targets spread continuously over 1e6-1e8 (as an adaptive study proposes them) meet at most 8 shapes per
    decade on the grid, against one shape nearly per target without it; realised N stays within exp(0.19) = 21%."""
    targets = [10 ** (6 + 2 * i / 199) for i in range(200)]
    fine = {shape_for(n, V, T) for n in targets}
    coarse = [shape_for(n, V, T, grid_per_decade=8) for n in targets]
    assert len(set(coarse)) <= 17 < len(fine)
    assert all(abs(math.log(count_params(c) / n)) < 0.19 for c, n in zip(coarse, targets, strict=True))
    low, high = grid_points(1.1e6, 8)
    assert low == pytest.approx(1e6) and high == pytest.approx(10 ** (6 + 1 / 8))
    # where shapes are sparse (the smallest ones) the grid never moves N further than the nearest grid shape
    assert shape_for(89_561, V, 32, grid_per_decade=8) == shape_for(89_561, V, 32)
    assert shape_for(count_params(smallest_shape(V, T)), V, T, grid_per_decade=8) == smallest_shape(V, T)
