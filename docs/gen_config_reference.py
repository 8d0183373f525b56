"""Render docs/configuration.md, the reference of the study YAML, from the config models themselves.

    python docs/gen_config_reference.py            # rewrite docs/configuration.md
    python docs/gen_config_reference.py --check    # exit 1 if the file is out of date (tests/test_config_reference.py)

Each section of the study file is a pydantic model (scheduler/config.py, scheduler/trackers.py, the backend
configs in trainers/, and the torch backend's `trainer:` and `data:` sections, trainers/settings.py and
trainers/data.py). A field's meaning is its `Field(description=...)`; a field left out when a config is written
down (a callback set from Python) is not listed. Imports neither torch nor Ray.
"""

from __future__ import annotations

import inspect
import re
import sys
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "configuration.md"
sys.path.insert(0, str(ROOT))

from pydantic import BaseModel  # noqa: E402
from pydantic_core import PydanticUndefined  # noqa: E402

from scheduler import config as study_config  # noqa: E402
from scheduler import trackers  # noqa: E402
from skillscale.atomic import atomic_write_text  # noqa: E402
from trainers.backend import TorchConfig  # noqa: E402
from trainers.command import CommandConfig  # noqa: E402
from trainers.data import DataSettings  # noqa: E402
from trainers.function import PythonConfig  # noqa: E402
from trainers.settings import TrainerSettings  # noqa: E402
from trainers.simulated import SimulatedConfig  # noqa: E402

# (heading, YAML path, model); nested models are linked to their own section.
SECTIONS = [
    ("Study", "", study_config.StudyConfig),
    ("Ranges", "n_params, n_tokens, flops, tokens_per_param", study_config.Range),
    ("mix", "mix", study_config.MixSpace),
    ("targets", "targets[]", study_config.Target),
    ("resources", "resources", study_config.Resources),
    ("proposer", "proposer", study_config.ProposerConfig),
    ("hparams", "hparams", study_config.HParamOverrides),
    ("families", "families", study_config.FamiliesConfig),
    ("trackers", "trackers", trackers.TrackersConfig),
    ("trackers.tensorboard", "trackers.tensorboard", trackers.TensorBoardConfig),
    ("trackers.mlflow", "trackers.mlflow", trackers.MlflowConfig),
    ("trackers.wandb", "trackers.wandb", trackers.WandbConfig),
    ("backend: simulated", "backend", SimulatedConfig),
    ("backend: torch", "backend", TorchConfig),
    ("backend.trainer (torch)", "backend.trainer", TrainerSettings),
    ("backend.data (torch)", "backend.data", DataSettings),
    ("backend: command", "backend", CommandConfig),
    ("backend: python", "backend", PythonConfig),
]

_ANCHOR = {m: re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h, _, m in SECTIONS}


def _number(x: float) -> str:
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return f"{x:_}".replace("_", ",") if abs(x) >= 100_000 else str(x)
    return f"{x:g}".replace("e+", "e")


def _yaml(value: Any) -> str:
    """A default as it would be written in YAML."""
    if value is None:
        return "null"
    if isinstance(value, (bool, int, float)):
        return _number(value)
    if isinstance(value, study_config.Range):
        return f"[{_number(value.lo)}, {_number(value.hi)}]"
    if isinstance(value, BaseModel):
        return "see below" if type(value) in _ANCHOR else "{}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"' if value == "" else value
    return str(value)


def _type(annotation: Any) -> str:
    """A reader's name for a field's type: number, int, text, one of ..., a link to a section."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is typing.Literal:
        return " | ".join(f"`{a}`" for a in args)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        names = [_type(a) for a in args if a is not type(None)]
        if "int" in names and "number" in names:
            names.remove("int")  # int | float: a number, kept an int when written as one
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) > 1 and len(models) == len(names):
            return "one of the backends below"
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin in (list, tuple):
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {_type(args[0])} to {_type(args[1])}" if args else "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        anchor = _ANCHOR.get(annotation)
        return f"[{annotation.__name__}](#{anchor})" if anchor else annotation.__name__
    return {float: "number", int: "int", str: "text", bool: "true/false", Any: "any", typing.Any: "any"}.get(
        annotation, getattr(annotation, "__name__", str(annotation)))


def _bounds(metadata: list) -> str:
    parts = []
    for m in metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "at least")):
            if getattr(m, attr, None) is not None:
                parts.append(f"{sign} {_number(getattr(m, attr))}")
    return ", ".join(parts)


def _cell(text: str) -> str:
    """One table cell: one line, pipes escaped, `<` outside code spans written as an entity (not a tag)."""
    parts = " ".join(str(text).split()).replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;") for i, p in enumerate(parts))


def _model_rows(model: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue  # a callback, set from Python: not YAML
        if field.default is not PydanticUndefined:
            default = _yaml(field.default)
        elif field.default_factory is not None:
            default = _yaml(field.default_factory())
        else:
            default = "required"
        kind = _type(field.annotation)
        bounds = _bounds(field.metadata)
        meaning = field.description or ""
        rows.append((f"`{name}`", kind + (f", {bounds}" if bounds else ""), default, meaning))
    return rows


def render() -> str:
    out = [
        "# Study configuration reference",
        "",
        "<!-- Generated by docs/gen_config_reference.py from the config models; edit those, then rerun it. -->",
        "",
        "A study is one YAML file (`skillscale run study.yaml`). It is validated before anything starts: an unknown",
        "key or a bad value stops with one line naming the field (`backend.trainer.seq_len: expected a positive",
        "integer, got 0`). Numbers may be written `1e18`. `configs/quickstart.yaml` is a commented example;",
        "[design.md](design.md) explains N, D and C = 6ND.",
        "",
    ]
    for heading, path, model in SECTIONS:
        doc = inspect.cleandoc(model.__dict__.get("__doc__") or "")  # its own, not a base class's
        out += [f"## {heading}", ""]
        if path:
            out += [" ".join([f"YAML: `{path}`.", _cell(doc.split("\n\n")[0])]).rstrip(), ""]
        rows = _model_rows(model)
        out += ["| field | type | default | meaning |", "|---|---|---|---|"]
        out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
        out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run python docs/gen_config_reference.py")
            return 1
        return 0
    atomic_write_text(OUTPUT, text)
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({len(text)} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
