"""`skillscale fit` end to end: a good table gives a report; bad input exits 2 with one line."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scheduler.cli import main

from ._data import BESIROGLU, CHINCHILLA, isoflop_design, noisy_loss


def _columns():
    n, d = isoflop_design(CHINCHILLA, budgets=np.geomspace(1e18, 1e20, 4), n_sizes=5)
    rows = {"n_params": [], "n_tokens": [], "loss": [], "skill": []}
    for i, (skill, law) in enumerate([("knowledge", CHINCHILLA), ("code", BESIROGLU)]):
        rows["n_params"] += n.tolist()
        rows["n_tokens"] += d.tolist()
        rows["loss"] += noisy_loss(law, n, d, 0.01, seed=i).tolist()
        rows["skill"] += [skill] * n.size
    return rows


def _write_csv(path, cols):
    names = list(cols)
    lines = [",".join(names)] + [",".join(str(cols[c][i]) for c in names) for i in range(len(cols[names[0]]))]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_fit_writes_report(tmp_path, capsys):
    runs = tmp_path / "runs.parquet"
    pq.write_table(pa.table(_columns()), runs)
    out = tmp_path / "laws.json"
    rc = main(["fit", str(runs), "--bootstrap", "50", "--target-flops", "1e21", "1e22", "--json", str(out),
               "--plot", str(tmp_path / "laws.png")])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["conventions"]["flops"] == "C = 6*N*D"
    assert set(report["skills"]) == {"knowledge", "code"}
    k = report["skills"]["knowledge"]
    assert k["law"]["family"] in k["families"]  # the leading family's parameters (auto: the largest weight)
    assert set(k["law"]) >= {"family", "E", "A", "B", "alpha", "beta"}
    assert set(k["ci95"]) >= {"E", "A", "B", "alpha", "beta"}
    lo, hi = k["exponent_a_ci95"]
    assert lo <= k["exponent_a"] <= hi
    assert [o["flops"] for o in k["optimum"]] == [1e21, 1e22]
    o = k["optimum"][0]
    assert o["n_params_ci95"][0] < o["n_params"] < o["n_params_ci95"][1]
    assert (tmp_path / "laws.png").stat().st_size > 0 and (tmp_path / "laws_optimum.png").stat().st_size > 0
    assert "knowledge" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".fit-")] == []  # no temp file left


def test_isoflop_law(tmp_path):
    runs = _write_csv(tmp_path / "runs.csv", _columns())
    out = tmp_path / "iso.json"
    assert main(["fit", runs, "--law", "isoflop", "--bootstrap", "50", "--json", str(out)]) == 0
    assert set(json.loads(out.read_text())["skills"]["code"]["law"]) == {"k", "a"}


def _bad(cols, change):
    cols = {k: list(v) for k, v in cols.items()}
    change(cols)
    return cols


BAD_INPUTS = {
    "missing column": (lambda c: c.pop("n_tokens"), "missing column(s) n_tokens"),
    "negative params": (lambda c: c["n_params"].__setitem__(3, -5.0), "'n_params' must be positive; row 4"),
    "zero tokens": (lambda c: c["n_tokens"].__setitem__(0, 0.0), "'n_tokens' must be positive; row 1"),
    "zero loss": (lambda c: c["loss"].__setitem__(7, 0.0), "'loss' must be positive; row 8"),
    "nan loss": (lambda c: c["loss"].__setitem__(2, float("nan")), "'loss' has NaN"),
    "too few runs": (lambda c: [c[k].__delitem__(slice(5, None)) for k in c], "fewer than needed"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, case):
    change, expected = BAD_INPUTS[case]
    runs = _write_csv(tmp_path / "runs.csv", _bad(_columns(), change))
    out = tmp_path / "laws.json"
    assert main(["fit", runs, "--bootstrap", "20", "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert runs in err and expected in err, err
    assert not out.exists()


@pytest.mark.parametrize("argv, expected", [
    (["fit", "runs.csv", "--bootstrap", "abc"], "argument --bootstrap: invalid int value: 'abc'"),
    (["train", "--params"], "argument --params: expected one argument"),
    (["run"], "the following arguments are required"),
])
def test_bad_flags_exit_2_with_one_line(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and expected in err and "usage:" not in err, err


def test_unreadable_and_missing_files_exit_2(tmp_path, capsys):
    garbage = tmp_path / "runs.parquet"
    garbage.write_bytes(b"\x00\x01 not parquet")
    assert main(["fit", str(garbage)]) == 2
    assert main(["fit", str(tmp_path / "nope.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert "cannot read as parquet" in err[0] and "no such file" in err[1]


def test_subprocess_has_no_traceback(tmp_path):
    import subprocess
    import sys

    runs = _write_csv(tmp_path / "runs.csv", _bad(_columns(), lambda c: c.pop("loss")))
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "fit", runs],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    expected = f"skillscale fit: error: {runs}: missing column(s) loss; need n_params, n_tokens, loss"
    assert proc.stderr.strip() == expected


def test_fit_predicts_a_plan_with_intervals_and_reports_every_family(tmp_path, capsys):
    runs = tmp_path / "runs.parquet"
    pq.write_table(pa.table(_columns()), runs)
    plan = _write_csv(tmp_path / "plan.csv", {"n_params": [3e9, 1e8], "n_tokens": [6e10, 2e9],
                                              "skill": ["code", "knowledge"]})
    out = tmp_path / "laws.json"
    assert main(["fit", str(runs), "--bootstrap", "40", "--predict", plan, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["law"] == "auto"
    families = report["skills"]["code"]["families"]
    assert set(families) == {"chinchilla", "farseer", "data_constrained"}
    assert sum(f["weight"] for f in families.values()) == pytest.approx(1.0)
    assert "not applicable" in families["data_constrained"]["note"]
    (code, knowledge) = report["predictions"]
    assert (code["skill"], knowledge["skill"]) == ("code", "knowledge")
    for p, law in ((code, BESIROGLU), (knowledge, CHINCHILLA)):
        lo, hi = p["loss_pi95"]
        assert lo < p["loss"] < hi
        assert lo < float(law.loss(p["n_params"], p["n_tokens"])[0]) < hi
    printed = capsys.readouterr().out
    assert "predicted losses" in printed and "law families" in printed


def test_fit_with_one_family(tmp_path):
    runs = tmp_path / "runs.parquet"
    pq.write_table(pa.table(_columns()), runs)
    out = tmp_path / "laws.json"
    assert main(["fit", str(runs), "--law", "farseer", "--bootstrap", "20", "--json", str(out)]) == 0
    skill = json.loads(out.read_text())["skills"]["knowledge"]
    assert skill["law"]["family"] == "farseer" and set(skill["law"]) >= {"nu", "kappa"}


@pytest.mark.parametrize("plan, message", [
    ({"n_params": [1e9]}, "missing column(s) n_tokens"),
    ({"n_params": [1e9], "n_tokens": [-5.0]}, "column 'n_tokens' must be positive; row 1"),
    ({"n_params": [1e9], "n_tokens": [1e10], "skill": ["math"]}, "column 'skill' names 'math'"),
])
def test_a_bad_plan_is_one_line_and_exit_2(tmp_path, capsys, plan, message):
    runs = tmp_path / "runs.parquet"
    pq.write_table(pa.table(_columns()), runs)
    path = _write_csv(tmp_path / "plan.csv", plan)
    assert main(["fit", str(runs), "--predict", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "plan.csv" in err and message in err
