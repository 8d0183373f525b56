"""`skillscale train`: bad input is one line on stderr and exit status 2; a good run writes result.json."""

import json

import pytest
import torch

from trainers.cli import main, parse_count

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
