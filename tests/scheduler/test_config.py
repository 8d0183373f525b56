"""Bad configs fail before Ray starts, with one line naming the field, exit status 2."""

import subprocess
import sys

import pytest
import yaml

from scheduler.config import parse_study_config
from skillscale.errors import InputError


def test_small_study_is_valid(small_study):
    cfg = parse_study_config(small_study)
    assert cfg.domains == ["knowledge", "code", "general"]
    assert cfg.skill_domains == {"knowledge": "knowledge", "code": "code"}
    assert cfg.target_mix(cfg.targets[0]) == {"knowledge": 0.4, "code": 0.4, "general": 0.2}


def test_numbers_written_as_strings_are_accepted(small_study):
    small_study["compute_cap"] = "1e21"
    assert parse_study_config(small_study).compute_cap == 1e21


def _break(study, path, value):
    node = study
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return study


BAD = [
    (("targets", 0, "weights"), {"reasoning": 1.0}, "targets[0].weights", "unknown skill 'reasoning'"),
    (("mix", "fixed"), {"knowledge": 0.5, "code": 0.4, "general": 0.2}, "mix.fixed", "sum to 1"),
    (("mix", "fixed"), {"knowledge": 1.2, "code": -0.2}, "mix.fixed.code", ">= 0"),
    (("n_params",), [3e9, 1e7], "n_params", "lo < hi"),
    (("tolerance",), 0.0, "tolerance", "greater than 0"),
    (("tolerance",), -0.1, "tolerance", "greater than 0"),
    (("backend", "name"), "jax", "backend.name", "'simulated' or 'torch'"),
    (("max_concurrent",), 0, "max_concurrent", "greater than or equal to 1"),
    (("targets", 1, "name"), "knowledge", "targets", "duplicate"),
    (("surprise",), 1, "surprise", "unknown field"),
]


@pytest.mark.parametrize("path,value,field,words", BAD, ids=[b[2] + ":" + b[3] for b in BAD])
def test_bad_config_names_the_field(small_study, path, value, field, words):
    with pytest.raises(InputError) as exc:
        parse_study_config(_break(small_study, path, value), "study.yaml")
    message = str(exc.value)
    assert message.startswith(f"study.yaml: {field}"), message
    assert words in message, message
    assert "\n" not in message


@pytest.mark.parametrize("path,value,field,words", BAD[:5], ids=[b[2] for b in BAD[:5]])
def test_cli_exits_2_with_one_line_before_ray(tmp_path, small_study, path, value, field, words):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(_break(small_study, path, value)))
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "run", str(config), "--study-dir",
                           str(tmp_path / "s")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and words in lines[0], proc.stderr
    assert not (tmp_path / "s").exists()  # nothing started


def test_missing_and_malformed_files(tmp_path):
    from scheduler.cli import main

    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text("skills: [a, b\n")
    assert main(["run", str(broken)]) == 2


def test_unknown_truth_preset_is_refused_before_ray(tmp_path, small_study, capsys):
    from scheduler.cli import main

    small_study["backend"]["truth"] = "gpt-4"
    config = tmp_path / "s.yaml"
    config.write_text(yaml.safe_dump(small_study))
    assert main(["run", str(config), "--study-dir", str(tmp_path / "s")]) == 2
    assert "backend.truth" in capsys.readouterr().err


TYPED_BACKEND = [
    ({"name": "torch", "trainer": {"seq_len": 0}}, "backend.trainer.seq_len", "positive integer"),
    ({"name": "torch", "trainer": {"seqlen": 64}}, "backend.trainer.seqlen", "unknown field"),
    ({"name": "torch", "trainer": {"seed_replicas": 0}}, "backend.trainer.seed_replicas", "positive integer"),
    ({"name": "torch", "data": {"knowledge_entities": "many"}}, "backend.data.knowledge_entities", "valid integer"),
    ({"name": "torch", "data": {"knowledge_entities": -1}}, "backend.data.knowledge_entities", "positive integer"),
    ({"name": "simulated", "noise": -0.1}, "backend.noise", "greater than or equal to 0"),
    ({"name": "simulated", "seed_replicas": 0}, "backend.seed_replicas", "greater than or equal to 1"),
    ({"name": "simulated", "noise": 1e300}, "backend.noise", "less than or equal to 1"),  # overflowed in exp()
    ({"name": "simulated", "truth": {"knowledge": {"E": 2.0}}}, "backend.truth.knowledge", "expected keys"),
    ({"name": "simulated", "settings": {"noise": 0.01}}, "backend.settings", "fields of `backend:` itself"),
]


@pytest.mark.parametrize("backend,field,words", TYPED_BACKEND, ids=[b[1] + ":" + b[2] for b in TYPED_BACKEND])
def test_typed_backend_errors_name_the_field(small_study, backend, field, words):
    small_study["backend"] = backend
    with pytest.raises(InputError) as exc:
        parse_study_config(small_study, "study.yaml")
    message = str(exc.value)
    assert message.startswith(f"study.yaml: {field}: ") and words in message and "\n" not in message, message


def test_typed_backend_sections_build_the_trainers_dataclasses(small_study):
    from trainers.data import DataSettings
    from trainers.torch_backend import TrainerSettings

    small_study["backend"] = {"name": "torch", "trainer": {"device": "cpu", "seq_len": "2.56e2"},
                              "data": {"knowledge_entities": "3e3"}}
    small_study["hparams"] = {"batch_tokens": "8e3", "lr": 1e-3}
    cfg = parse_study_config(small_study)
    assert isinstance(cfg.backend.trainer, TrainerSettings) and cfg.backend.trainer.seq_len == 256
    assert isinstance(cfg.backend.data, DataSettings) and cfg.backend.data.knowledge_entities == 3000
    assert cfg.hparams.overrides() == {"batch_tokens": 8000, "lr": 1e-3}  # only what was set; ints stay ints
    frozen = cfg.frozen_dict()
    assert frozen["backend"]["trainer"]["seq_len"] == 256 and frozen["hparams"] == {"batch_tokens": 8000, "lr": 1e-3}
    assert parse_study_config({**small_study, **frozen}).backend == cfg.backend  # the frozen copy reads back


def test_a_study_can_ask_for_the_initialisation_and_qk_norm(small_study):
    small_study["backend"] = {"name": "torch", "trainer": {"device": "cpu", "qk_norm": True}}
    small_study["hparams"] = {"init_scheme": "small-init"}
    cfg = parse_study_config(small_study)
    assert cfg.backend.trainer.qk_norm is True and cfg.hparams.overrides() == {"init_scheme": "small-init"}
    with pytest.raises(InputError, match="hparams.init_scheme"):
        parse_study_config({**small_study, "hparams": {"init_scheme": "xavier"}})
    with pytest.raises(InputError, match="hparams: init_std: init_scheme small-init .the default. sets the std"):
        parse_study_config({**small_study, "hparams": {"init_std": 0.01}})
    gpt2 = parse_study_config({**small_study, "hparams": {"init_scheme": "gpt2", "init_std": 0.01}})
    assert gpt2.hparams.overrides() == {"init_scheme": "gpt2", "init_std": 0.01}
