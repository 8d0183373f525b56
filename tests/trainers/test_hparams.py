import pytest

from skillscale.errors import InputError
from trainers.hparams import OVERRIDABLE, lr_at, resolve, step_rows


@pytest.mark.parametrize("n_tokens", [10_007, 123_456, 2_000_000])
def test_run_trains_exactly_d_tokens(n_tokens):
    hp = resolve(1_000_000, n_tokens, 128)
    rows_tokens = [step_rows(s, hp, n_tokens) for s in range(hp.n_steps)]
    assert sum(t for _, t in rows_tokens) == n_tokens
    assert all(rows * hp.seq_len >= t > (rows - 1) * hp.seq_len for rows, t in rows_tokens)


def test_schedule_warmup_then_cosine_to_ten_percent_at_the_end():
    hp = resolve(1_000_000, 2_000_000, 128)
    lrs = [lr_at(s, hp) for s in range(hp.n_steps)]
    assert lrs[hp.warmup_steps - 1] == pytest.approx(hp.lr)
    assert all(a < b for a, b in zip(lrs[: hp.warmup_steps], lrs[1 : hp.warmup_steps], strict=False))
    decay = lrs[hp.warmup_steps - 1 :]
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))
    assert lrs[-1] == pytest.approx(0.1 * hp.lr)


def test_rules_scale_with_compute():
    small, large = resolve(1e6, 2e7, 512), resolve(1e8, 2e9, 512)
    assert large.lr < small.lr and large.batch_tokens > small.batch_tokens
    assert (small.beta2, small.weight_decay, small.grad_clip) == (0.95, 0.1, 1.0)


def test_overrides_and_unknown_keys():
    hp = resolve(1e6, 1e6, 128, {"lr": 1e-3, "batch_tokens": 4096, "weight_decay": 0.0})
    assert (hp.lr, hp.batch_seqs, hp.weight_decay) == (1e-3, 32, 0.0)
    with pytest.raises(InputError, match="'learning_rate'"):
        resolve(1e6, 1e6, 128, {"learning_rate": 1e-3})
    with pytest.raises(InputError, match="beta2"):
        resolve(1e6, 1e6, 128, {"beta2": 1.5})
    assert "lr" in OVERRIDABLE
