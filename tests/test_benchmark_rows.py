"""Benchmark scripts record their rows through benchmarks/_provenance.py (appended whole, never torn, with where
they came from) and read trainer settings through benchmarks/_trainer_flags.py."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import pytest  # noqa: E402
import torch  # noqa: E402
from _provenance import append_rows, environment, git_commit  # noqa: E402
from _trainer_flags import parse_settings  # noqa: E402

from skillscale.errors import InputError  # noqa: E402


def test_append_rows_adds_lines_and_mends_a_missing_final_newline(tmp_path):
    path = tmp_path / "results" / "rows.jsonl"  # the folder is created
    append_rows(path, [{"a": 1}])
    append_rows(path, [{"a": 2}, {"a": 3}])
    path.write_text(path.read_text().rstrip("\n"))  # a file edited by hand, without the final newline
    append_rows(path, [{"a": 4}])
    assert [json.loads(line)["a"] for line in path.read_text().splitlines()] == [1, 2, 3, 4]
    assert not list(path.parent.glob(".*"))  # no temporary file left behind


def test_git_commit_can_be_given_explicitly(monkeypatch):
    monkeypatch.setenv("SKILLSCALE_COMMIT", "abc1234")
    assert git_commit() == "abc1234"


def test_environment_names_the_device_versions_and_commit(monkeypatch):
    monkeypatch.setenv("SKILLSCALE_COMMIT", "abc1234")
    env = environment(torch.device("cpu"))
    assert env["gpu"] == "cpu" and env["torch"] == torch.__version__ and env["commit"] == "abc1234"
    assert env["date"].endswith("+00:00")


def test_trainer_settings_flag_reads_json_values_and_names_an_unknown_setting():
    assert parse_settings(["seq_len=64", "data_order=run", 'code_source="stdlib"']) == {
        "seq_len": 64, "data_order": "run", "code_source": "stdlib"}
    with pytest.raises(InputError, match=r"unknown setting\(s\) \['seq_length'\]"):
        parse_settings(["seq_length=64"])
    with pytest.raises(InputError, match="expected NAME=VALUE"):
        parse_settings(["=64"])
