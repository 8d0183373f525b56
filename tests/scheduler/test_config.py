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


def test_whole_numbers_written_like_1e3_are_integers_and_fractions_are_refused(small_study):
    small_study.update(max_runs="1e3", seed="2")
    cfg = parse_study_config(small_study)
    assert (cfg.max_runs, cfg.seed) == (1000, 2) and isinstance(cfg.max_runs, int)
    small_study["max_runs"] = "2.5"
    with pytest.raises(InputError, match="max_runs"):
        parse_study_config(small_study)


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


def test_typed_backend_sections_build_the_trainers_settings(small_study):
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


BAD_TORCH_FIELDS = [
    ("trainer", "seq_len", 0, "expected a positive integer, got 0"),
    ("trainer", "checkpoint_every", -1, "expected >= 0, got -1"),
    ("trainer", "qk_norm", "yes", "expected true or false, got 'yes'"),
    ("trainer", "use_triton", "maybe", "expected true, false or 'auto', got 'maybe'"),
    ("trainer", "seq_len", 2.5, "valid integer"),
    ("data", "heldout_percent", 100, "expected a number in (0, 100), got 100"),
    ("data", "code_source", "web", "expected one of stdlib, stdlib+site-packages, generated, got 'web'"),
    ("data", "corpora", {"web": ""}, "expected a mapping of names to file paths"),
]


@pytest.mark.parametrize("section,field,value,words", BAD_TORCH_FIELDS,
                         ids=[f"{b[0]}.{b[1]}={b[2]!r}" for b in BAD_TORCH_FIELDS])
def test_a_bad_trainer_setting_names_its_full_path(small_study, section, field, value, words):
    """The settings' own validators run inside the study's validation: the error names the field where the user
    wrote it (`backend.trainer.seq_len`), on one line, with the settings' own message."""
    small_study["backend"] = {"name": "torch", section: {field: value}}
    with pytest.raises(InputError) as exc:
        parse_study_config(small_study, "study.yaml")
    message = str(exc.value)
    assert message.startswith(f"study.yaml: backend.{section}.{field}: ") and words in message, message
    assert "\n" not in message


def test_a_bad_trainer_setting_in_a_study_file_exits_2_with_one_line(small_study, tmp_path, capsys):
    from scheduler.cli import main

    small_study["backend"] = {"name": "torch", "trainer": {"device": "cpu", "seq_len": 0}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(small_study))
    assert main(["run", str(path), "--study-dir", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err
    assert err == f"skillscale run: error: {path}: backend.trainer.seq_len: expected a positive integer, got 0\n"
    assert not (tmp_path / "study").exists()  # refused before anything was written


def test_trainer_numbers_written_like_8e6_are_read_from_yaml(small_study, tmp_path):
    """YAML 1.1 reads `8e6` as a string; the settings read it as the number it names (an int for an int field)."""
    from scheduler.config import load_study_config

    small_study["backend"] = {"name": "torch", "trainer": {"device": "cpu"}, "data": {}}
    text = yaml.safe_dump(small_study).replace("data: {}", "data: {domain_tokens: 8e6, heldout_percent: 2.5e0, "
                                                           "knowledge_popularity: 1e0}")
    text = text.replace("device: cpu", "device: cpu\n    seq_len: 2.56e2\n    checkpoint_every: 1_000")
    assert "domain_tokens: 8e6" in text and yaml.safe_load(text)["backend"]["data"]["domain_tokens"] == "8e6"
    (tmp_path / "study.yaml").write_text(text)
    cfg = load_study_config(tmp_path / "study.yaml")
    data, trainer = cfg.backend.data, cfg.backend.trainer
    assert (data.domain_tokens, data.heldout_percent, data.knowledge_popularity) == (8_000_000, 2.5, 1.0)
    assert type(data.domain_tokens) is int and (trainer.seq_len, trainer.checkpoint_every) == (256, 1000)


def test_torch_settings_keep_their_keys_and_travel_by_pickle(small_study):
    """study.yaml freezes every YAML field of both sections under the names it always had (a resume compares
    them); the callback is left out; the config crosses to Ray workers by pickle."""
    import pickle

    small_study["backend"] = {"name": "torch", "trainer": {"device": "cpu"}}
    cfg = parse_study_config(small_study)
    frozen = cfg.frozen_dict()["backend"]
    assert set(frozen["trainer"]) == {
        "device", "compile", "cuda_graphs", "use_triton", "seq_len", "tokenizer", "eval_every", "checkpoint_every",
        "log_every", "micro_batch_rows", "heldout_rows", "shape_grid", "qk_norm", "recompile_limit", "seed_replicas"}
    assert set(frozen["data"]) == {
        "data_seed", "data_order", "knowledge_entities", "knowledge_popularity", "knowledge_popularity_offset",
        "domain_tokens", "heldout_tokens", "eval_samples", "knowledge_eval", "code_source", "general_source",
        "heldout_percent", "code_eval_max_chars", "skill_evals", "corpora", "bpe_train_chars", "cache_dir"}
    assert pickle.loads(pickle.dumps(cfg.backend)) == cfg.backend
    with_callback = cfg.backend.trainer.model_copy(update={"progress": print})
    assert "progress" not in with_callback.model_dump() and with_callback.progress is print


def test_a_null_settings_section_takes_the_defaults(small_study):
    from trainers.settings import TrainerSettings

    small_study["backend"] = {"name": "torch", "trainer": None}
    assert parse_study_config(small_study).backend.trainer == TrainerSettings()


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
