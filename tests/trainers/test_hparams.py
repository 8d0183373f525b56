import pytest

from skillscale.errors import InputError
from trainers.hparams import OVERRIDABLE, lr_at, resolve, step_rows


@pytest.mark.parametrize("n_tokens", [10_007, 123_456, 2_000_000])
def test_run_trains_exactly_d_tokens(n_tokens):
    hp = resolve(1_000_000, n_tokens, 128)
    rows_tokens = [step_rows(s, hp, n_tokens) for s in range(hp.n_steps)]
    assert sum(t for _, t in rows_tokens) == n_tokens
    assert all(rows * hp.seq_len >= t > (rows - 1) * hp.seq_len for rows, t in rows_tokens)


def test_schedule_warmup_then_cosine_to_zero_at_the_end():
    hp = resolve(1_000_000, 2_000_000, 128)
    lrs = [lr_at(s, hp) for s in range(hp.n_steps)]
    assert lrs[hp.warmup_steps - 1] == pytest.approx(hp.lr)
    assert all(a < b for a, b in zip(lrs[: hp.warmup_steps], lrs[1 : hp.warmup_steps], strict=False))
    decay = lrs[hp.warmup_steps - 1 :]
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    floor = resolve(1_000_000, 2_000_000, 128, {"min_lr_ratio": 0.1})
    assert lr_at(floor.n_steps - 1, floor) == pytest.approx(0.1 * floor.lr)


def test_lr_rule_is_half_deepseek_capped():
    from trainers.hparams import LR_MAX, deepseek_lr

    hp = resolve(1_000_000, 20_000_000, 128)
    assert hp.lr == pytest.approx(0.5 * deepseek_lr(6 * 1_000_000 * 20_000_000))
    assert resolve(10_000, 100_000, 16).lr <= LR_MAX


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


@pytest.mark.parametrize("shape", ["linear", "1-sqrt"])
def test_wsd_warmup_then_constant_then_cooldown_to_the_floor(shape):
    hp = resolve(1_000_000, 2_000_000, 128, {"schedule": "wsd", "cooldown_fraction": 0.2, "cooldown_shape": shape,
                                             "min_lr_ratio": 0.1})
    lrs = [lr_at(s, hp) for s in range(hp.n_steps)]
    assert hp.cooldown_steps == round(0.2 * hp.n_steps) and hp.cooldown_start == hp.n_steps - hp.cooldown_steps
    assert lrs[hp.warmup_steps - 1] == pytest.approx(hp.lr)
    assert all(lr == hp.lr for lr in lrs[hp.warmup_steps : hp.cooldown_start])  # the stable phase
    cooldown = lrs[hp.cooldown_start - 1 :]
    assert all(a > b for a, b in zip(cooldown, cooldown[1:], strict=False))
    assert lrs[-1] == pytest.approx(0.1 * hp.lr)
    middle = lrs[hp.cooldown_start + hp.cooldown_steps // 2 - 1]  # half-way through the cooldown
    fall = 0.5 if shape == "linear" else 0.5**0.5  # 1-sqrt falls faster early
    assert middle == pytest.approx(hp.lr - (hp.lr - 0.1 * hp.lr) * fall, rel=0.05)


def test_the_stable_phase_does_not_depend_on_where_the_run_ends():
    """The basis of run families: with the rules evaluated at one D (rule_n_tokens), runs to different D share
    lr, batch and warmup, and every step before the shorter run's cooldown has the same lr in both."""
    common = {"schedule": "wsd", "rule_n_tokens": 4_000_000}
    short, long = resolve(1e6, 1_000_000, 128, common), resolve(1e6, 4_000_000, 128, common)
    assert (short.lr, short.batch_seqs, short.warmup_steps) == (long.lr, long.batch_seqs, long.warmup_steps)
    shared = range(short.cooldown_start)
    assert [lr_at(s, short) for s in shared] == [lr_at(s, long) for s in shared]
    assert lr_at(short.cooldown_start, short) < lr_at(short.cooldown_start, long)


def test_token_counts_below_one_batch_are_refused_naming_the_minimum():
    with pytest.raises(InputError, match=r"n_tokens: 100 is below one batch .* at least 512"):
        resolve(1e6, 100, 512)
    assert resolve(1e6, 512, 512).n_steps == 1
    with pytest.raises(InputError, match="at least 4,096"):
        resolve(1e6, 1_000, 512, {"batch_tokens": 4096})


def test_bad_schedule_overrides_name_the_key():
    with pytest.raises(InputError, match="hparams.schedule: expected one of cosine, wsd"):
        resolve(1e6, 1e6, 128, {"schedule": "linear"})
    with pytest.raises(InputError, match="hparams.cooldown_shape"):
        resolve(1e6, 1e6, 128, {"schedule": "wsd", "cooldown_shape": "cosine"})
    with pytest.raises(InputError, match="hparams.cooldown_fraction"):
        resolve(1e6, 1e6, 128, {"schedule": "wsd", "cooldown_fraction": 1.5})
    with pytest.raises(InputError, match="inside the .*warmup"):
        resolve(1e6, 1e6, 128, {"schedule": "wsd", "cooldown_fraction": 0.99, "warmup_steps": 10})
