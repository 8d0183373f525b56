"""The replay backend (trainers/replay.py): nearest unused table run, never one twice (also across a resume and
across actors), a one-line failure when nothing is near, a bad table refused before Ray starts."""

import csv

import pytest

from scheduler import Study, parse_study_config
from scheduler.config import check_backend
from scheduler.controller import Controller
from skillscale.errors import InputError
from tests.scheduler.test_prior_runs import MIX, write_ladder
from trainers.replay import CLAIMS_DIR
from trainers.spec import RunSpec


def _config(small_study, table, **backend):
    small_study["backend"] = {"name": "replay", "table": str(table), **backend}
    small_study["proposer"] = {"n_boot": 40, "inner_trials": 0, "n_candidates": 128, "overhead_flops": 1e17,
                               "seed_runs": 6}
    return parse_study_config(small_study)


def _table_key(row: dict) -> tuple:
    return (int(row["n_params"]), int(row["n_tokens"]), round(float(row["loss/knowledge"]), 9),
            round(float(row["loss/code"]), 9))


def _drive(study, backend, runs_dir, n_runs, k=2):
    """Keep k runs outstanding, finish the oldest first, until n_runs were recorded; returns what is left."""
    queue = list(study.reconcile())
    recorded = 0
    while recorded < n_runs:
        queue += study.propose(k - len(queue))
        if not queue:
            break
        spec = queue.pop(0)
        study.record(spec, backend.run(spec, runs_dir / spec.run_id))
        recorded += 1
    return queue


def test_replay_never_returns_a_table_row_twice_also_across_a_resume(small_study, tmp_path):
    table = tmp_path / "ladder.csv"
    file_rows = write_ladder(table, n_params=(1e7, 2e7, 5e7, 1e8, 2e8, 5e8), tokens_per_param=(10, 20, 40, 80))
    cfg = _config(small_study, table)
    study_dir = tmp_path / "study"
    runs_dir = study_dir / "runs"

    first = Study(cfg, study_dir)
    left = _drive(first, cfg.backend.build(), runs_dir, n_runs=6)
    assert left  # killed with runs in flight: a fresh actor must answer them with the rows they had claimed
    claimed_before = {spec.run_id: cfg.backend.build().run(spec, runs_dir / spec.run_id) for spec in left}
    first.close()

    second = Study(cfg, study_dir)
    _drive(second, cfg.backend.build(), runs_dir, n_runs=6)  # a new backend: nothing held in memory
    rows = second.ledger.rows
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) >= 8  # (a run may find nothing near: failed, 0 FLOPs)
    keys = [_table_key(r) for r in ok]
    assert len(set(keys)) == len(keys)  # never the same table run twice
    assert set(keys) <= {_table_key(r) for r in file_rows}  # each is a table run, with its own N, D and losses
    for run_id, result in claimed_before.items():  # a re-dispatched run got back the row it had claimed
        row = second.ledger.row(run_id)
        assert (row["n_params"], row["n_tokens"]) == (result.n_params, result.n_tokens)
    assert len(list((runs_dir / CLAIMS_DIR).iterdir())) == len(ok)
    assert second.status().flops_spent == pytest.approx(sum(6.0 * r["n_params"] * r["n_tokens"] for r in ok))


def test_concurrent_actors_claim_different_rows(small_study, tmp_path):
    table = tmp_path / "ladder.csv"
    write_ladder(table)
    cfg = _config(small_study, table)
    spec_a = RunSpec(n_params=int(1e8), n_tokens=int(2e9), mix=MIX, seed=1)
    spec_b = RunSpec(n_params=int(1e8), n_tokens=int(2e9), mix=MIX, seed=2)
    a = cfg.backend.build().run(spec_a, tmp_path / "runs" / spec_a.run_id)
    b = cfg.backend.build().run(spec_b, tmp_path / "runs" / spec_b.run_id)  # another actor, same claims dir
    assert a.status == b.status == "ok"
    assert (a.n_params, a.n_tokens) == (int(1e8), int(2e9))  # the exact run, distance 0
    assert (b.n_params, b.n_tokens) != (a.n_params, a.n_tokens)


def test_nothing_near_fails_in_one_line_and_the_proposer_moves_on(small_study, tmp_path):
    table = tmp_path / "ladder.csv"
    write_ladder(table, n_params=(1e7, 3e7, 1e8), tokens_per_param=(10, 20))
    cfg = _config(small_study, table, max_distance=0.3)
    study = Study(cfg, tmp_path / "study")
    backend = cfg.backend.build()
    study.reconcile()
    failures = []
    for _ in range(12):
        specs = study.propose(1)
        if not specs:
            break
        result = study.record(specs[0], backend.run(specs[0], tmp_path / "study" / "runs" / specs[0].run_id))
        if result.status == "failed":
            failures.append((specs[0], result))
    assert failures, "a 6-run table must run out near some proposal"
    for _spec, result in failures:
        assert result.flops == 0 and "\n" not in result.error
        assert result.error.startswith("replay: no unused run of ") and "within distance 0.3" in result.error
    points = [(s.n_params, s.n_tokens) for s, _ in failures]
    assert len(set(points)) == len(points)  # a point that found nothing is not asked for again
    assert study.status().flops_spent == pytest.approx(sum(r["flops"] for r in study.ledger.rows))


def test_rows_outside_the_bounds_are_never_returned(small_study, tmp_path):
    table = tmp_path / "ladder.csv"
    write_ladder(table, n_params=(1e7, 3e7, 1e8, 3e8))
    small_study["n_params"] = [2e7, 3e9]  # the 1e7 rows lie outside
    cfg = _config(small_study, table, max_distance=5.0)
    backend = cfg.backend.build()
    spec = RunSpec(n_params=int(2e7), n_tokens=int(2e8), mix=MIX)
    result = backend.run(spec, tmp_path / "runs" / spec.run_id)
    assert result.status == "ok" and result.n_params >= 2e7


@pytest.mark.parametrize("edit, message", [
    (lambda rows: rows[4].update({"n_tokens": "many"}), "row 5, column n_tokens: expected a positive number"),
    (lambda rows: [r.pop("loss/knowledge") for r in rows], "missing column 'loss/knowledge'"),
])
def test_a_bad_table_is_refused_before_ray_starts(small_study, tmp_path, edit, message):
    table = tmp_path / "ladder.csv"
    rows = write_ladder(table)
    edit(rows)
    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(InputError, match=message) as exc:
        check_backend(_config(small_study, table))
    assert str(table) in str(exc.value) and "\n" not in str(exc.value)


def test_replay_through_the_controller_on_ray(ray_local, small_study, tmp_path):
    """Two actors answering from one table under Ray: every recorded run is a distinct table run."""
    table = tmp_path / "ladder.csv"
    file_rows = write_ladder(table, n_params=(1e7, 2e7, 5e7, 1e8, 2e8), tokens_per_param=(10, 20, 40))
    small_study["max_runs"] = 10
    cfg = _config(small_study, table)
    result = Controller(cfg, tmp_path / "study").run()
    assert result["n_runs"] == 10
    rows = [r for r in __import__("pyarrow.parquet", fromlist=["x"]).read_table(
        tmp_path / "study" / "runs.parquet").to_pylist() if r["status"] == "ok"]
    keys = [_table_key(r) for r in rows]
    assert len(keys) == len(set(keys)) and set(keys) <= {_table_key(r) for r in file_rows}


def test_a_bad_table_through_the_cli_is_one_line_exit_2(small_study, tmp_path, capsys):
    import yaml

    from scheduler.cli import main

    table = tmp_path / "ladder.csv"
    rows = write_ladder(table)
    rows[1]["loss/code"] = "-1"
    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    small_study["backend"] = {"name": "replay", "table": str(table)}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(small_study))
    assert main(["run", str(tmp_path / "study.yaml"), "--study-dir", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{table}: row 2, column loss/code: expected a positive number" in err
    assert not (tmp_path / "study").exists()  # refused before Ray starts, nothing written
