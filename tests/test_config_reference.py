"""docs/configuration.md is generated from the config models: it must say what they say.

A failure means a config field, default or description changed; run `python docs/gen_config_reference.py`.
"""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("gen_config_reference", ROOT / "docs" / "gen_config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_is_up_to_date(gen):
    assert (ROOT / "docs" / "configuration.md").read_text() == gen.render(), (
        "docs/configuration.md is out of date with the config models: run python docs/gen_config_reference.py")


def test_every_field_is_documented_and_no_fallback_meaning_is_stale(gen):
    assert gen.stale_meanings() == [], "MEANINGS entries for fields that are gone or now carry their own description"
    undocumented = [line.split("|")[1].strip() for line in gen.render().splitlines()
                    if line.startswith("| `") and line.rstrip().endswith("|  |")]
    assert undocumented == [], f"fields without a meaning: {undocumented}"
