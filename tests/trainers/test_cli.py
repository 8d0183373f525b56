"""`skillscale train`: bad input is one line on stderr and exit status 2; a good run writes result.json."""

import json

import pytest
import torch

from trainers import torch_backend
from trainers.cli import main, parse_count, settings_flags
from trainers.data import DataSettings
from trainers.settings import TrainerSettings

TINY = [
    "--params",
    "7e4",
    "--tokens",
    "3000",
    "--seq-len",
    "32",
    "--device",
    "cpu",
    "--eval-samples",
    "8",
    "--knowledge-entities",
    "50",
    "--domain-tokens",
    "20000",
    "--quiet",
]


def _entry():
    """The `skillscale` entry point when the whole CLI imports; else this module's equivalent."""
    try:
        from scheduler.cli import build_parser
        from scheduler.cli import main as scheduler_main

        build_parser()  # imports every subcommand's module
    except ImportError:
        return main
    return scheduler_main


NO_CUDA = [] if torch.cuda.is_available() else [(["--device", "cuda"], "CUDA")]


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--mix", "knowledge=0.5,poetry=0.5"], "'poetry'"),
        (["--mix", "knowledge=0.5,code=0.3"], "sum to 1"),
        (["--mix", "knowledge"], "NAME=VALUE"),
        (["--params", "1000"], "n_params"),
        (["--params", "lots"], "--params"),
        (["--tokens", "-5"], "--tokens"),
        (["--corpus", "web=/nonexistent/web.parquet", "--mix", "web=1"], "/nonexistent/web.parquet"),
        (["--hparam", "learning_rate=0.1"], "'learning_rate'"),
        (["--tokens", "100", "--seq-len", "512"], "at least 512"),  # below one batch (one sequence, the smallest)
        (["--seq-len", "-3"], "--seq-len"),
        (["--seq-len", "0"], "--seq-len: expected a positive integer, got 0"),  # the model's check, named by flag
        (["--code-source", "web"], "--code-source: expected one of stdlib"),
        (["--hparam", "schedule=linear"], "hparams.schedule"),
        *NO_CUDA,
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, needle, tmp_path, capsys):
    code = _entry()(["train", *TINY, "--out", str(tmp_path / "run"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_run_writes_result_and_refuses_existing_checkpoint_without_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out), "--checkpoint-every", "2"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert set(result) >= {
        "run_id",
        "status",
        "n_params",
        "n_tokens",
        "flops",
        "shape",
        "losses",
        "domain_losses",
        "wall_s",
        "tokens_per_s",
        "mfu",
    }
    assert result["status"] == "ok" and result["n_tokens"] == 3000
    assert set(result["losses"]) == {"knowledge", "code"} and result["shape"]["d_model"] == 64
    capsys.readouterr()
    assert main(["train", *TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume" in err
    assert main(["train", *TINY, "--out", str(out), "--resume"]) == 0  # finished: re-evaluates, same losses
    assert json.loads((out / "result.json").read_text())["losses"] == result["losses"]


def test_parse_count():
    assert parse_count("1e6", "x") == 1_000_000
    assert parse_count("2_000_000", "x") == 2_000_000
    assert parse_count("1.5M", "x") == 1_500_000


def test_a_size_that_cannot_fit_is_refused_naming_the_memory(tmp_path, capsys, monkeypatch):
    """--params 1e15 realises the largest shape (~13e9 parameters: ~200 GiB of weights, gradients and AdamW
    state); on a machine with 24 GiB that is one line naming both, exit 2, before any data or model is built."""
    monkeypatch.setattr(torch_backend, "available_memory_bytes", lambda device: 24 * 2**30)
    code = main(["train", *TINY, "--out", str(tmp_path / "run"), "--params", "1e15"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "needs about" in err and "GiB" in err and "has 24.0 GiB" in err, err
    assert not (tmp_path / "run").exists()


def test_flags_take_their_defaults_and_help_from_the_settings_models():
    """Every field of TrainerSettings and DataSettings (but the progress callback) is a flag, a flag not given
    leaves the model's default, and its help is the field's description: nothing is restated in the CLI."""
    from trainers.cli import _settings_from_args

    for cls, section in ((TrainerSettings, "trainer"), (DataSettings, "data")):
        names = {name for name, _, _ in settings_flags(cls)}
        assert names == set(cls.model_fields) - {"progress"}
        args = type("Args", (), {})()  # no flag given
        assert _settings_from_args(args, cls, section) == cls()
    flags = {flag for _, _, flag in settings_flags(TrainerSettings)}
    assert {"--seq-len", "--compile", "--no-cuda-graphs", "--shape-grid"} <= flags


def test_train_help_prints_every_settings_flag(capsys):
    """--help formats every field's comment as help text (a '%' in one, "~2% per-window", used to crash it)."""
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "--heldout-rows" in out and "~2% per-window" in out and "--no-qk-norm" in out


def test_a_no_flag_says_it_turns_the_setting_off(capsys):
    """`--no-cuda-graphs` turns CUDA graphs off; its help used to read as if the flag switched them on."""
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--no-cuda-graphs turn off: with compile on CUDA: replay forward/backward as CUDA graphs" in out
    assert "--compile torch.compile the training forward (CUDA: recommended) (default: off)" in out


def test_several_token_counts_train_a_run_family(tmp_path, capsys):
    out = tmp_path / "family"
    argv = ["train", *TINY, "--tokens", "3072,1536", "--hparam", "batch_tokens=512", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    assert [b["n_tokens"] for b in result["branches"]] == [1536, 3072]
    assert [b["branch"] for b in result["branches"]] == [0, 1] and result["family_id"]
    assert result["flops"] == pytest.approx(sum(b["flops"] for b in result["branches"]))
    capsys.readouterr()
    assert main(argv) == 2 and "--resume" in capsys.readouterr().err  # started: continue only on purpose
    assert main([*argv, "--resume"]) == 0  # finished: read back
    assert json.loads((out / "result.json").read_text())["branches"] == result["branches"]
    assert main(["train", *TINY, "--cooldown-fraction", "0.3", "--out", str(tmp_path / "plain")]) == 2


def test_cpu_evaluation_is_smaller_by_default_and_says_so():
    """On a CPU the defaults (262,144 draws, 512 windows) were 4.5 of a 6-minute 3e5-token run; now fewer, unless
    the flags are given, and the run says so."""
    import argparse

    from trainers.cli import CPU_EVAL_SAMPLES, CPU_HELDOUT_ROWS, cpu_evaluation_defaults

    none = argparse.Namespace()
    trainer, data, note = cpu_evaluation_defaults(TrainerSettings(device="cpu"), DataSettings(), none)
    assert data.eval_samples == CPU_EVAL_SAMPLES and trainer.heldout_rows == CPU_HELDOUT_ROWS
    assert "--eval-samples" in note and "--heldout-rows" in note
    given = argparse.Namespace(data__eval_samples="4096", trainer__heldout_rows="512")
    trainer, data, note = cpu_evaluation_defaults(TrainerSettings(device="cpu"), DataSettings(), given)
    assert (data, trainer.heldout_rows, note) == (DataSettings(), 512, "")
    if not torch.cuda.is_available():  # "auto" is the CPU here
        assert cpu_evaluation_defaults(TrainerSettings(), DataSettings(), none)[2]


def test_the_progress_bar_says_when_it_evaluates():
    import io

    from rich.console import Console

    from trainers.cli import train_progress

    bar, progress = train_progress(Console(file=io.StringIO()))
    progress(3, 10, 2.5, 1e-3)
    assert bar.tasks[0].description == "train"
    progress(10, 10, 2.4, 1e-4)  # the last step: the final evaluation follows
    assert bar.tasks[0].description.startswith("evaluate")
