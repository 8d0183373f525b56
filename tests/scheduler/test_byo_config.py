"""The command and python backends' sections of the study config (no Ray): one-line errors naming the field,
the study's skills reaching the trainer, and the pre-flight check that `skillscale run` makes."""

import json
from pathlib import Path

import pytest

from scheduler.config import parse_study_config
from skillscale.errors import InputError
from trainers.backend import make_backend
from trainers.spec import RunSpec


@pytest.mark.parametrize("backend, message", [
    ({"name": "command", "command": ["{python}", "train.py", "{rundir}"]},
     "backend.command[2]: unknown placeholder '{rundir}' in '{rundir}' (known: {run_dir}, {run_id}"),
    ({"name": "command", "command": []}, "backend.command: List should have at least 1 item"),
    ({"name": "command", "command": "train.sh {run_dir}"}, "backend.command: Input should be a valid list"),
    ({"name": "command", "command": ["a"], "timeout_s": 0}, "backend.timeout_s: Input should be greater than 0"),
    ({"name": "command", "command": ["a"], "shell": True}, "backend.shell: unknown field"),
    ({"name": "python", "function": "trainer.train"}, "backend.function: expected 'package.module:function'"),
    ({"name": "python"}, "backend.function: Field required"),
])
def test_bad_backend_sections_are_one_line_naming_the_field(small_study, backend, message):
    small_study["backend"] = backend
    with pytest.raises(InputError) as info:
        parse_study_config(small_study)
    assert str(info.value).startswith(f"study config: {message}"), str(info.value)
    assert "\n" not in str(info.value)


def test_the_trainer_is_told_the_study_skills_which_the_frozen_config_does_not_repeat(small_study, tmp_path):
    small_study["backend"] = {"name": "command", "command": ["{python}", "-c", "pass"], "timeout_s": "1e3"}
    cfg = parse_study_config(small_study)
    assert cfg.frozen_dict()["backend"] == {"name": "command", "command": ["{python}", "-c", "pass"],
                                            "timeout_s": 1000.0, "kill_grace_s": 30.0, "env": {}, "cwd": None}
    backend = make_backend(cfg.backend)
    assert backend.skills == ["knowledge", "code"] and backend.timeout_s == 1000.0
    result = backend.run(RunSpec(n_params=10, n_tokens=10, mix={}), tmp_path)  # `pass` writes no result.json
    assert result.status == "failed" and "losses" not in result.error and "result.json: missing" in result.error


def test_preflight_check_names_a_program_or_function_that_is_not_there(small_study):
    spec = RunSpec(n_params=10, n_tokens=10, mix={})
    small_study["backend"] = {"name": "command", "command": ["no-such-trainer-xyz", "{run_dir}"]}
    with pytest.raises(InputError, match=r"^backend.command\[0\]: program 'no-such-trainer-xyz' not found"):
        parse_study_config(small_study).backend.check(["knowledge"], spec)
    small_study["backend"] = {"name": "command", "command": ["{python}", "{run_dir}"]}
    parse_study_config(small_study).backend.check(["knowledge"], spec)  # {python} is this interpreter
    small_study["backend"] = {"name": "python", "function": "no_such_module_xyz:train"}
    with pytest.raises(InputError, match=r"^backend.function: cannot import 'no_such_module_xyz:train'"):
        parse_study_config(small_study).backend.check(["knowledge"], spec)


def test_user_skills_reach_the_torch_trainer_which_reports_their_loss(small_study, tmp_path):
    """`skills: [{name: math, eval: math.jsonl}, code]`: the torch backend evaluates math from that file."""
    from tests.conftest import TINY_TORCH_SETTINGS, torch_backend_section

    evals = tmp_path / "math.jsonl"
    evals.write_text("".join(json.dumps({"prompt": f"{a}+{b}=", "answer": str(a + b)}) + "\n"
                             for a in range(6) for b in range(4)))
    small_study.update(skills=[{"name": "math", "eval": str(evals)}, "code"],
                       targets=[{"name": "math", "weights": {"math": 1.0}, "flops": 1e12}],
                       backend=torch_backend_section(TINY_TORCH_SETTINGS))
    cfg = parse_study_config(small_study)
    assert cfg.skills == ["math", "code"] and cfg.skill_evals == {"math": str(evals)}
    assert cfg.backend.data.skill_evals == {"math": str(evals)}
    spec = RunSpec(n_params=70_000, n_tokens=10_000, mix=cfg.mix.fixed)
    cfg.backend.check(cfg.skills, spec)  # the pre-flight check knows the user skill
    result = make_backend(cfg.backend).run(spec, tmp_path / "run")
    assert result.status == "ok" and 0 < result.losses["math"] < 8 and "code" in result.losses


@pytest.mark.parametrize("skills, message", [
    ([{"name": "math"}, "code"], "skills[0].eval: Field required"),
    ([{"name": "math", "eval": "m.jsonl", "weight": 2}], "skills[0].weight: unknown field"),
    (["code", 3], "skills[1]: Input should be a valid string"),
])
def test_bad_skill_entries_name_the_entry(small_study, skills, message):
    small_study["skills"] = skills
    with pytest.raises(InputError, match="^study config: " + message.replace("[", r"\[").replace("]", r"\]")):
        parse_study_config(small_study)


def test_command_trainers_get_the_eval_files_in_their_spec(small_study, tmp_path):
    small_study["skills"] = [{"name": "knowledge", "eval": "data/k.jsonl"}, "code"]
    small_study["backend"] = {"name": "command", "command": ["{python}", "-c", "pass"]}
    make_backend(parse_study_config(small_study).backend).run(RunSpec(n_params=10, n_tokens=10, mix={}), tmp_path)
    spec = json.loads((tmp_path / "spec.json").read_text())
    assert spec["skills"] == ["knowledge", "code"]
    assert spec["skill_evals"] == {"knowledge": str(Path("data/k.jsonl").absolute())}
