"""Building blocks of the YAML configs a user writes (pydantic), shared by the study config and the backends.

    class MyConfig(ConfigModel):          # frozen, unknown keys refused
        budget: Number = 1e18             # '1e18' (a string to YAML 1.1) is read as a number

    section = dataclass_section(TrainerSettings, {"seq_len": "256"}, "trainer")   # -> TrainerSettings(seq_len=256)

A validator that wants its error to name a field below the one being validated raises FieldError; the
study config's error formatter (scheduler/config.py) joins its path to the location pydantic reports, so
the user reads `backend.trainer.seq_len: expected an integer`, not a trace.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from skillscale.errors import InputError


def read_number(value: Any) -> Any:
    """Accept '1e18' and '1_000' style strings as numbers (YAML 1.1 leaves '1e18' a string); anything
    else is returned unchanged for the field's own type to judge."""
    if isinstance(value, str):
        try:
            number = float(value.replace("_", ""))
        except ValueError:
            return value
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    return value


def finite_number(value: float) -> float:
    """Infinities and NaN are refused: `compute_cap: 1e400` read as inf would run a study without a cap."""
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")
    return value


Number = Annotated[float, BeforeValidator(read_number), AfterValidator(finite_number)]


class ConfigModel(BaseModel):
    """Base of every user-facing config section: frozen, and an unknown key is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldError(ValueError):
    """A validation problem at `field` (a dotted path below the value being validated)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _wants_number(annotation: Any) -> bool:
    args = typing.get_args(annotation) or (annotation,)
    return any(a in (int, float) for a in args) and str not in args


def _yaml_fields(cls: type) -> dict[str, Any]:
    """name -> type of the init fields of dataclass `cls` that YAML can express (not a Callable callback)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init and "Callable" not in str(hints[f.name])}


def _section_model(cls: type) -> type[BaseModel]:
    """A pydantic model with the init fields of the stdlib dataclass `cls` (same names, types, defaults),
    numbers readable from '8e6'-style strings, unknown keys refused. Fields that are not plain data (a
    callback typed Callable) are left out: YAML cannot express them."""
    yaml_fields = _yaml_fields(cls)
    fields = {}
    for f in dataclasses.fields(cls):
        if f.name not in yaml_fields:
            continue
        annotation = yaml_fields[f.name]
        if _wants_number(annotation):
            annotation = Annotated[annotation, BeforeValidator(read_number)]
        if f.default_factory is not dataclasses.MISSING:
            fields[f.name] = (annotation, Field(default_factory=f.default_factory))
        else:
            fields[f.name] = (annotation, f.default)
    return create_model(f"{cls.__name__}Section", __base__=ConfigModel, **fields)


def dataclass_section(cls: type, value: Any, section: str) -> Any:
    """Validate a YAML mapping as the frozen dataclass `cls` and build it.

    Types and unknown keys are checked by a pydantic model generated from the dataclass's fields; the
    dataclass's own `__post_init__` checks then run, and an InputError they raise whose message starts
    with `<section>.<field>: ` becomes a FieldError at that field. An instance of `cls` passes through.
    """
    if isinstance(value, cls):
        return value
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of {cls.__name__} fields, got {type(value).__name__}")
    try:
        checked = _section_model(cls).model_validate(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"][:1]) or "(section)"
        message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        raise FieldError(field, message) from None
    try:
        return cls(**dict(checked))
    except InputError as exc:
        match = re.match(rf"{re.escape(section)}\.(\w+): (.*)", str(exc))
        if match:
            raise FieldError(match.group(1), match.group(2)) from None
        raise ValueError(str(exc)) from None


def dataclass_fields_dict(value: Any) -> dict:
    """The YAML-expressible fields of a dataclass instance (what `dataclass_section` accepts back)."""
    return {name: getattr(value, name) for name in _yaml_fields(type(value))}
