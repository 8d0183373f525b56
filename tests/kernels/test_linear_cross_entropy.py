"""Fused linear cross-entropy vs `kernels.reference.linear_cross_entropy`: loss, dhidden, dweight."""

import pytest
import torch

pytest.importorskip("triton")

import kernels.linear_cross_entropy as lce  # noqa: E402
from kernels import reference  # noqa: E402
from tests.kernels.conftest import DEVICE, HAS_CUDA, assert_close  # noqa: E402

CASES = [pytest.param(torch.float32, 1e-5, 1e-4, id="fp32")]
if HAS_CUDA:  # bf16 logits vs the reference's fp32 logits: a few bf16 ulps of a logit
    CASES.append(pytest.param(torch.bfloat16, 3e-2, 3e-2, id="bf16"))


def _count_calls(monkeypatch, name):
    """Count calls of lce.<name> (still calling it)."""
    calls = {"n": 0}
    original = getattr(lce, name)

    def counted(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)
    monkeypatch.setattr(lce, name, counted)
    return calls


def _run(fn, hidden, weight, targets, reduction, grad):
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss = fn(h, w, targets, -100, reduction)
    loss.backward(grad)
    return loss, h.grad, w.grad


@pytest.mark.parametrize("dtype, atol, rtol", CASES)
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("n_rows, hidden_size, vocab, small_chunks, two_pass, recompute", [
    (67, 96, 1000, True, False, False),   # several chunks, the last one short; one read per row
    (67, 96, 1000, True, True, False),    # the same through the two-pass (large-vocabulary) path
    (13, 200, 32768, False, False, False),  # the largest single-pass vocabulary
    (13, 200, 32768 + 3, False, True, False),  # two-pass, vocab not a multiple of the block
    (67, 96, 1000, True, False, True),    # logits recomputed, never stored: several chunks, partial tiles
    (130, 200, 4096 + 3, False, False, True),  # 3 row tiles, 5 vocabulary splits; the last split has one
                                               # partial tile and 15 tiles wholly past the vocabulary
    (9, 12, 50, False, False, True),      # hidden and vocabulary smaller than one tile
])
def test_linear_cross_entropy_matches_reference(n_rows, hidden_size, vocab, small_chunks, two_pass, recompute,
                                                reduction, dtype, atol, rtol, monkeypatch):
    monkeypatch.setattr(lce, "_RECOMPUTE_MAX_C", hidden_size if recompute else 0)
    passes = _count_calls(monkeypatch, "_row_lse")
    if two_pass:
        monkeypatch.setattr(lce, "_SINGLE_PASS_MAX_V", min(lce._SINGLE_PASS_MAX_V, vocab - 1))
    if small_chunks:
        monkeypatch.setattr(lce, "_MIN_CHUNK_ROWS", 16)  # -> chunks of 64 rows
        monkeypatch.setattr(lce, "_N_CHUNKS", 4)
    torch.manual_seed(0)
    hidden = torch.randn(n_rows, hidden_size, device=DEVICE, dtype=dtype)
    weight = (torch.randn(vocab, hidden_size, device=DEVICE) / hidden_size**0.5).to(dtype)
    targets = torch.randint(0, vocab, (n_rows,), device=DEVICE)
    targets[::4] = -100  # some ignored rows
    grad = torch.tensor(1.7, device=DEVICE) if reduction == "mean" else torch.randn(n_rows, device=DEVICE)
    loss, dh, dw = _run(lce.linear_cross_entropy, hidden, weight, targets, reduction, grad)
    loss_ref, dh_ref, dw_ref = _run(reference.linear_cross_entropy, hidden, weight, targets, reduction, grad)
    assert loss.shape == loss_ref.shape and dh.dtype == dtype and dw.dtype == dtype
    assert (passes["n"] > 0) == recompute  # the strategy under test is the one that ran
    assert_close(loss, loss_ref, atol, rtol, "loss")
    assert_close(dh, dh_ref, atol, rtol, "dhidden")
    assert_close(dw, dw_ref, atol, rtol, "dweight")


def test_linear_cross_entropy_fp32_weight_with_autocast_hidden():
    """Under autocast the head weight stays an fp32 parameter; its gradient comes back in fp32."""
    hidden = torch.randn(20, 96, device=DEVICE, requires_grad=True)
    weight = torch.randn(1000, 96, device=DEVICE, requires_grad=True)
    targets = torch.randint(0, 1000, (20,), device=DEVICE)
    lce.linear_cross_entropy(hidden, weight, targets).backward()
    assert weight.grad.dtype == torch.float32 and hidden.grad.dtype == torch.float32
    assert torch.isfinite(weight.grad).all()


def test_linear_cross_entropy_rejects_bad_shapes():
    with pytest.raises(ValueError, match="targets"):
        lce.linear_cross_entropy(torch.randn(4, 8, device=DEVICE), torch.randn(10, 8, device=DEVICE),
                                 torch.zeros(5, dtype=torch.long, device=DEVICE))


@pytest.mark.parametrize("recompute", [False, True], ids=["materialise", "recompute"])
def test_linear_cross_entropy_forward_only_and_real_ignore_class(recompute, monkeypatch):
    """Without gradients (evaluation) only the losses are computed; ignore_index may be a real class id."""
    monkeypatch.setattr(lce, "_RECOMPUTE_MAX_C", 64 if recompute else 0)
    torch.manual_seed(1)
    hidden = torch.randn(37, 64, device=DEVICE)
    weight = torch.randn(300, 64, device=DEVICE) / 8
    targets = torch.randint(0, 300, (37,), device=DEVICE)
    targets[::3] = 0  # class 0 is ignored below
    for reduction in ("mean", "none"):
        with torch.no_grad():
            loss = lce.linear_cross_entropy(hidden, weight, targets, 0, reduction)
        expected = reference.linear_cross_entropy(hidden, weight, targets, 0, reduction)
        assert_close(loss, expected, 1e-5, 1e-4, f"loss ({reduction})")
    assert float(lce.linear_cross_entropy(hidden, weight, targets, 0, "none")[::3].abs().max()) == 0.0
