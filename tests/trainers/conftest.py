"""Shared settings for the trainer tests: tiny CPU configurations so the suite runs in minutes on 2 cores."""

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _cpu_threads():
    torch.set_num_threads(2)


@pytest.fixture
def tiny_settings():
    """A CPU backend whose data and evaluation sets are small enough to build in well under a second."""
    return dict(
        device="cpu",
        seq_len=32,
        knowledge_entities=50,
        domain_tokens=20_000,
        heldout_tokens=4_000,
        eval_samples=16,
        heldout_rows=4,
        checkpoint_every=0,
        log_every=1,
    )


MIX = {"knowledge": 0.5, "code": 0.3, "general": 0.2}
