"""docs/configuration.md is generated from the config models: it must say what they say.

A failure means a config field, default or description changed; run `python docs/gen_config_reference.py`.
"""

import importlib.util
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

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


def test_every_field_is_documented(gen):
    undocumented = [line.split("|")[1].strip() for line in gen.render().splitlines()
                    if line.startswith("| `") and line.rstrip().endswith("|  |")]
    assert undocumented == [], f"fields without a meaning: {undocumented}"


def _models_below(model: type[BaseModel]) -> set[type[BaseModel]]:
    """`model` and every config model its fields hold, however nested (lists, unions, mappings)."""
    found, todo = set(), [model]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        found.add(current)
        for field in current.model_fields.values():
            stack = [field.annotation]
            while stack:
                annotation = stack.pop()
                if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                    todo.append(annotation)
                stack.extend(typing.get_args(annotation))
    return found


def test_every_config_field_carries_its_description():
    """The study file and every section below it, down to the trainer's and the data's settings, say what each
    field means beside the field (Field(description=...)): the reference and `skillscale train --help` read it."""
    from scheduler.config import StudyConfig
    from trainers.data import DataSettings
    from trainers.settings import TrainerSettings

    models = _models_below(StudyConfig)
    assert {TrainerSettings, DataSettings} <= models
    missing = [f"{m.__name__}.{name}" for m in models for name, field in m.model_fields.items()
               if not (field.description or "").strip()]
    assert missing == [], f"fields without a description: {missing}"
