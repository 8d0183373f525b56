"""Trainer tests run on 2 CPU threads (their tiny settings are `tiny_settings` in tests/conftest.py)."""

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _cpu_threads():
    torch.set_num_threads(2)


MIX = {"knowledge": 0.5, "code": 0.3, "general": 0.2}
