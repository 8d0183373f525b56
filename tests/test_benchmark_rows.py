"""Benchmark scripts record their rows through benchmarks/_provenance.py: appended whole, never torn."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _provenance import append_rows, git_commit  # noqa: E402


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
