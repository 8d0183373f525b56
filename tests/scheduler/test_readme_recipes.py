"""README's "Start from runs you have" and "Replay a ladder" recipes, run as written (their study dirs moved into
the test's tmp_path), on the session's Ray."""

import re
import shlex
from pathlib import Path

import pytest

from scheduler.cli import main
from tests.conftest import benchmark_module

ROOT = Path(__file__).resolve().parents[2]


def recipe(section: str) -> list[list[str]]:
    """The commands of the first bash block under README's `## <section>`, split as a shell would."""
    readme = (ROOT / "README.md").read_text()
    body = readme.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", body, re.S).group(1)
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


def _moved(argv: list[str], tmp_path: Path) -> list[str]:
    return [str(tmp_path / a) if a.startswith("studies/") else a for a in argv]


def test_start_from_runs_you_have_as_written(ray_local, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    run, status = recipe("Start from runs you have")
    assert run[:2] == ["skillscale", "run"] and status[:2] == ["skillscale", "status"]
    assert main(_moved(run[1:], tmp_path)) == 0
    assert main(_moved(status[1:], tmp_path)) == 0
    out = capsys.readouterr().out
    assert "15 prior runs in every fit" in out and "not charged" in out


def test_replay_a_ladder_as_written(ray_local, tmp_path, monkeypatch, capsys):
    if not (ROOT.parent / "shared" / "data" / "real-ladders" / "data_constrained_train.csv").exists():
        pytest.skip("the published ladders live in shared/ beside the clone")
    monkeypatch.chdir(ROOT)
    run, status, bench = recipe("Replay a ladder")
    assert main(_moved(run[1:], tmp_path)) == 0
    assert main(_moved(status[1:], tmp_path)) == 0
    assert "12 runs" in capsys.readouterr().out
    assert bench[:2] == ["python3", "benchmarks/bench_replay.py"]
    benchmark_module("bench_replay").build_parser().parse_args(bench[2:])  # the documented flags exist
