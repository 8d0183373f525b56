"""The python backend (trainers/function.py), without Ray: functions in a module written to tmp_path."""

import json
import math
import sys
import textwrap

import pytest

from skillscale.errors import InputError
from trainers.function import FunctionBackend, FunctionFailed, load_function
from trainers.spec import RunSpec

SPEC = RunSpec(n_params=1_000_000, n_tokens=20_000_000, mix={"code": 1.0}, seed=1)
SKILLS = ["math", "code"]

MODULE = '''
import json
import math
from pathlib import Path

calls = []

def train(spec, run_dir):
    calls.append(spec["run_id"])
    (run_dir / "seen.json").write_text(json.dumps({"spec": spec, "run_dir": str(run_dir)}))
    n = spec["n_params"]
    return {"losses": {"math": 2.0 + 100 * n ** -0.3, "code": 1.0 + 50 * n ** -0.3}, "n_params": n - 7}

def forgets_math(spec, run_dir):
    return {"losses": {"code": 1.0}}

def nan_loss(spec, run_dir):
    return {"losses": {"math": math.nan, "code": 1.0}}

def returns_list(spec, run_dir):
    return [1.0]

def raises(spec, run_dir):
    raise ValueError("shard 7 is corrupt\\nsecond line")

class Trainer:
    @staticmethod
    def train(spec, run_dir):
        return {"losses": {"math": 2.0, "code": 1.0}}

not_callable = 3
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module `byo_user_trainer` importable for this test only."""
    (tmp_path / "byo_user_trainer.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "byo_user_trainer"
    sys.modules.pop("byo_user_trainer", None)


def test_the_function_gets_the_spec_and_run_dir_and_its_result_is_read(user_module, tmp_path):
    backend = FunctionBackend(f"{user_module}:train", skills=SKILLS)
    result = backend.run(SPEC, tmp_path / "run")
    assert result.status == "ok" and result.n_params == SPEC.n_params - 7
    assert result.flops == pytest.approx(6 * (SPEC.n_params - 7) * SPEC.n_tokens)
    assert result.losses["math"] == pytest.approx(2.0 + 100 * SPEC.n_params ** -0.3)
    seen = json.loads((tmp_path / "run" / "seen.json").read_text())
    assert seen["spec"]["skills"] == SKILLS and seen["spec"]["n_tokens"] == SPEC.n_tokens
    assert seen["run_dir"] == str((tmp_path / "run").absolute())
    assert json.loads((tmp_path / "run" / "spec.json").read_text()) == seen["spec"]


def test_dotted_attributes(user_module, tmp_path):
    assert FunctionBackend(f"{user_module}:Trainer.train", skills=SKILLS).run(SPEC, tmp_path).status == "ok"


@pytest.mark.parametrize("name, status, reason", [
    ("forgets_math", "failed", ":forgets_math: losses.math: missing (skills: math, code)"),
    ("nan_loss", "diverged", ":nan_loss: losses.math is nan"),
    ("returns_list", "failed", ":returns_list: expected a JSON object"),
])
def test_bad_returns_are_statuses_naming_the_function_and_key(user_module, tmp_path, name, status, reason):
    result = FunctionBackend(f"{user_module}:{name}", skills=SKILLS).run(SPEC, tmp_path)
    assert result.status == status and result.error.startswith(user_module + reason), result.error
    assert math.isnan(result.losses["math"])


def test_an_exception_is_a_failed_attempt_with_one_line_and_the_traceback_in_the_log(user_module, tmp_path):
    with pytest.raises(FunctionFailed) as info:
        FunctionBackend(f"{user_module}:raises", skills=SKILLS).run(SPEC, tmp_path / "run")
    reason = str(info.value)
    assert reason.startswith(f"{user_module}:raises raised ValueError: shard 7 is corrupt") and "\n" not in reason
    assert info.value.__cause__ is None  # nothing of the user's types has to cross Ray
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "Traceback" in log and "second line" in log


@pytest.mark.parametrize("target, message", [
    ("no_colon", "backend.function: expected 'package.module:function', got 'no_colon'"),
    (":train", "backend.function: expected 'package.module:function'"),
    ("no_such_module_xyz:train", "backend.function: cannot import 'no_such_module_xyz:train' (ModuleNotFoundError"),
    ("{mod}:missing", "backend.function: cannot import '{mod}:missing' (module '{mod}' has no 'missing')"),
    ("{mod}:not_callable", "backend.function: '{mod}:not_callable' is a int, not a callable"),
])
def test_import_problems_are_one_line_naming_the_function_string(user_module, target, message):
    target, message = target.format(mod=user_module), message.format(mod=user_module)
    with pytest.raises(InputError) as info:
        load_function(target)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
