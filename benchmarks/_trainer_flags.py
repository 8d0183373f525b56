"""The `--set NAME=VALUE` flag of the scripts that train through TorchBackend (bench_compile_shapes.py,
family_parity.py and the trainer measurements in experiments/): any TrainerSettings or DataSettings field, its
value read as JSON where it parses."""

from __future__ import annotations

import json

from skillscale.errors import InputError


def parse_setting(text: str) -> tuple[str, object]:
    """'name=value' for a TorchBackend setting; the value is read as JSON when it parses (numbers, true,
    {"code": "stdlib"}), else kept as a string."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise InputError(f"--set: expected NAME=VALUE (a TorchBackend setting), got {text!r}")
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value


def parse_settings(items: list[str]) -> dict:
    """--set NAME=VALUE items (any TrainerSettings or DataSettings field; JSON values where they parse)."""
    from trainers.data import DataSettings
    from trainers.settings import TrainerSettings

    out = dict(parse_setting(item) for item in items)
    unknown = set(out) - set(TrainerSettings.model_fields) - set(DataSettings.model_fields)
    if unknown:
        raise InputError(f"--set: unknown setting(s) {sorted(unknown)}")
    return out
