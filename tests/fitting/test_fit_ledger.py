"""`skillscale fit` on a study's own ledger, and on data that cannot determine a law (issue #16, item 8)."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scheduler.cli import main
from scheduler.ledger import Ledger
from trainers.simulated import SimulatedBackend
from trainers.spec import RunResult, RunSpec

from ._data import CHINCHILLA, isoflop_design

MIX = {"knowledge": 0.4, "code": 0.4, "general": 0.2}


def _study_ledger(path, n_sizes=5):
    """runs.parquet as a study writes it (wide: loss/<skill>, status), one run failed."""
    backend = SimulatedBackend(truth="knowledge-code", noise=0.005)
    ledger = Ledger(path)
    n, d = isoflop_design(CHINCHILLA, budgets=np.geomspace(1e17, 1e19, 4), n_sizes=n_sizes)
    for i, (n_i, d_i) in enumerate(zip(n, d, strict=True)):
        spec = RunSpec(int(n_i), int(d_i), MIX, trial_number=i)
        result = backend.run(spec, path.parent / "runs" / spec.run_id)
        if i == 3:
            result = RunResult(spec.run_id, "failed", spec.n_params, spec.n_tokens, spec.flops,
                               {s: float("nan") for s in result.losses}, error="worker died")
        ledger.append(spec, result)
    return ledger


def test_fit_reads_a_study_ledger(tmp_path, capsys):
    ledger = _study_ledger(tmp_path / "runs.parquet")
    out = tmp_path / "laws.json"
    assert main(["fit", str(tmp_path / "runs.parquet"), "--bootstrap", "20", "--json", str(out),
                 "--plot", str(tmp_path / "laws.png")]) == 0
    report = json.loads(out.read_text())
    assert set(report["skills"]) == {"knowledge", "code"}
    assert report["skills"]["code"]["n_points"] == len(ledger) - 1  # the failed run is left out
    assert report["skills"]["code"]["identifiable"] is True
    assert (tmp_path / "laws_optimum.png").stat().st_size > 1000
    assert "skill knowledge" in capsys.readouterr().out


def test_thirty_identical_rows_are_not_identifiable(tmp_path, capsys):
    path = tmp_path / "same.parquet"
    pq.write_table(pa.table({"n_params": [1e8] * 30, "n_tokens": [2e9] * 30, "loss": [3.0] * 30}), path)
    assert main(["fit", str(path), "--bootstrap", "20"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not identifiable from 30 rows at 1 distinct (N, D) points" in err


def test_a_law_on_the_solver_bound_reports_no_interval(tmp_path, capsys):
    """Loss that does not depend on N: alpha runs to the solver's bound; no N*, no interval, n/a."""
    n, d = isoflop_design(CHINCHILLA, n_sizes=5)
    path = tmp_path / "flat.parquet"
    pq.write_table(pa.table({"n_params": n, "n_tokens": d, "loss": 1.7 + 400 * d ** -0.28}), path)
    out = tmp_path / "flat.json"
    assert main(["fit", str(path), "--bootstrap", "20", "--json", str(out)]) == 0
    text = out.read_text()
    assert "Infinity" not in text and "NaN" not in text
    skill = json.loads(text)["skills"]["all"]
    assert skill["identifiable"] is False and skill["degenerate"] == ["alpha=3"]
    assert all(o["n_params"] is None and o["n_params_ci95"] == [None, None] for o in skill["optimum"])
    printed = " ".join(capsys.readouterr().out.split())  # rich wraps at the terminal's width
    assert "not identifiable (alpha=3 on the solver's bound)" in printed and "n/a" in printed
