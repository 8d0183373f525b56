"""Building blocks of every config a user writes (pydantic): the study file and each component's settings below it.

    class MySettings(ConfigModel):        # frozen, unknown keys refused
        budget: Number = Field(default=1e18, description="FLOPs the study may spend")   # '1e18' reads as a number
        steps: Integer = Field(default=100, description="optimizer steps")                # so does '1e2'
        order: one_of("study", "run") = Field(default="study", description="...")       # `expected one of study, run`
        fast: Switch = Field(default=False, description="...")                           # true or false, not 'yes'

A field's meaning is its `Field(description=...)`: the reference (docs/gen_config_reference.py) and the `skillscale
train` flags' help (trainers/cli.py) read it there. A check is a validator on the model, so its error carries the
field's own location (`backend.trainer.seq_len`); `one_line` writes a ValidationError as the one line a user reads.
A validator that wants its error to name a field below the one being validated raises FieldError; `one_line`
joins its path to the location pydantic reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError


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
Integer = Annotated[int, BeforeValidator(read_number)]  # '8e6' -> 8000000; '2.5' is still refused


def true_or_false(value: Any) -> bool:
    """A switch is written true or false; 'yes' or 1 is refused rather than guessed at."""
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


Switch = Annotated[bool, BeforeValidator(true_or_false)]


def one_of(*choices: str) -> Any:
    """The type of a field that takes one of `choices` (a Literal, so the reference lists them), whose error
    lists them too: `expected one of study, run, got 'sudy'`."""

    def check(value: Any) -> Any:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    return Annotated[Literal[choices], BeforeValidator(check)]


class ConfigModel(BaseModel):
    """Base of every config section: frozen, and an unknown key is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldError(ValueError):
    """A validation problem at `field` (a dotted path below the value being validated)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _location(parts: Sequence[Any]) -> str:
    """('targets', 0, 'weights') -> 'targets[0].weights'; a key that would not read as one is quoted."""
    def part(p: Any) -> str:
        if isinstance(p, int):
            return f"[{p}]"
        text = str(p)
        return text if text and text.isprintable() and text.strip() == text else repr(p)

    return ".".join(part(p) for p in parts).replace(".[", "[")


def located_error(exc: ValidationError, prefix: Sequence[Any] = (), unions: Sequence[str] = ()) -> tuple[str, str]:
    """(field path, problem) of the first error of `exc`. The path is `prefix` followed by the location pydantic
    reports; after a field named in `unions` (a discriminated union) the tag pydantic puts in the location is left
    out, since the YAML never writes it (`backend.trainer.x`, not `backend.torch.trainer.x`). A FieldError raised
    by a validator adds its own field below that."""
    err = exc.errors()[0]
    loc = list(err["loc"])
    for i in range(len(loc) - 1):
        if loc[i] in unions:
            del loc[i + 1]
            break
    where = _location([*prefix, *loc])
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, FieldError):
        return ".".join(p for p in (where, cause.field) if p).replace(".[", "["), cause.message
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown field"
    elif err["type"] == "literal_error":
        message = f"{message}, got {err.get('input')!r}"
    return where, message


def one_line(exc: ValidationError, prefix: Sequence[Any] = (), unions: Sequence[str] = ()) -> str:
    """The first error of `exc` as the one line a user reads: `<field path>: <problem>` (see located_error)."""
    where, message = located_error(exc, prefix, unions)
    return " ".join(f"{where or '(top level)'}: {message}".split())
