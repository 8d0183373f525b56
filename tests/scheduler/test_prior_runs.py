"""Prior runs (scheduler/prior_runs.py): they enter the ledger once, count in every fit, are not charged, are
never trained again; a killed and resumed study records nothing twice; bad rows and a changed file are one line."""

import csv

import pytest

from scheduler import Study, parse_study_config, read_status
from scheduler.cli import main
from skillscale.errors import InputError
from trainers.simulated import SimulatedBackend
from trainers.spec import RunSpec

MIX = {"knowledge": 0.4, "code": 0.4, "general": 0.2}


def write_ladder(path, n_params=(1e7, 3e7, 1e8, 3e8), tokens_per_param=(10, 20, 40), **extra_columns):
    """A small simulated ladder (the small study's truth and noise) as a prior-runs CSV."""
    backend = SimulatedBackend(truth="knowledge-code", noise=0.005)
    rows = []
    for n in n_params:
        for r in tokens_per_param:
            spec = RunSpec(n_params=int(n), n_tokens=int(n * r), mix=MIX, seed=7)
            result = backend.run(spec, path.parent / "unused")
            rows.append({"n_params": spec.n_params, "n_tokens": spec.n_tokens,
                         **{f"loss/{s}": v for s, v in result.losses.items()},
                         **{f"mix/{d}": w for d, w in MIX.items()}, "seed": 7, **extra_columns})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _config(small_study, prior_path, **changes):
    small_study.update(prior_runs=str(prior_path), **changes)
    small_study["proposer"] = {"n_boot": 40, "inner_trials": 0, "n_candidates": 128, "overhead_flops": 1e17}
    return parse_study_config(small_study)


def test_prior_runs_enter_once_uncharged_and_a_killed_study_records_nothing_twice(small_study, tmp_path):
    prior = tmp_path / "prior.csv"
    file_rows = write_ladder(prior)
    cfg = _config(small_study, prior)
    study_dir = tmp_path / "study"
    backend = cfg.backend.build()

    first = Study(cfg, study_dir)
    assert first.reconcile() == []
    assert len(first.ledger.prior_rows()) == len(file_rows) and first.ledger.flops_spent() == 0
    assert first.estimates is not None and first.estimates.n_runs == len(file_rows)  # they are in the fit at once
    specs = first.propose(2)
    assert specs and all(s.flops > 0 for s in specs)
    first.record(specs[0], backend.run(specs[0], study_dir / "runs" / specs[0].run_id))
    status = first.status()
    assert (status.n_runs, status.n_prior_runs) == (1, len(file_rows))
    assert status.flops_spent == pytest.approx(specs[0].flops)  # the study's own run only
    assert status.flops_prior == pytest.approx(sum(6.0 * r["n_params"] * r["n_tokens"] for r in file_rows))
    first.close()  # killed with specs[1:] still training

    second = Study(cfg, study_dir)  # resumed with the same config and the same file
    resumed = second.reconcile()
    assert [s.run_id for s in resumed] == [s.run_id for s in specs[1:]]
    for spec in resumed:
        second.record(spec, backend.run(spec, study_dir / "runs" / spec.run_id))
    more = second.propose(1)
    for spec in more:
        second.record(spec, backend.run(spec, study_dir / "runs" / spec.run_id))
    rows = second.ledger.rows
    assert len({r["run_id"] for r in rows}) == len(rows)  # nothing recorded twice
    assert len(second.ledger.prior_rows()) == len(file_rows)  # the prior runs entered once
    trained = {(r["n_params"], r["n_tokens"]) for r in second.ledger.trained_rows()}
    assert not trained & {(r["n_params"], r["n_tokens"]) for r in file_rows}  # never trained again
    assert second.status().n_runs == len(specs) + len(more)
    result = second.finish("max_runs")
    assert result["n_prior_runs"] == len(file_rows) and result["prior_runs"]["sha256"] == rows[0]["prior_sha256"]
    assert result["flops_spent"] == pytest.approx(sum(r["flops"] for r in second.ledger.trained_rows()))
    second.close()
    on_disk = read_status(study_dir)  # what `skillscale status` shows
    assert (on_disk.n_runs, on_disk.n_prior_runs) == (len(specs) + len(more), len(file_rows))


def test_a_resume_with_a_changed_prior_file_is_refused(small_study, tmp_path):
    prior = tmp_path / "prior.csv"
    write_ladder(prior)
    cfg = _config(small_study, prior)
    Study(cfg, tmp_path / "study").close()
    write_ladder(prior, n_params=(1e7, 3e7, 1e8))  # someone edited the file
    with pytest.raises(InputError, match=r"changed: prior_runs\.sha256"):
        Study(cfg, tmp_path / "study")


def test_status_command_shows_prior_runs_apart(small_study, tmp_path, capsys):
    prior = tmp_path / "prior.csv"
    write_ladder(prior)
    Study(_config(small_study, prior), tmp_path / "study").close()
    assert main(["status", str(tmp_path / "study")]) == 0
    out = capsys.readouterr().out
    assert "0 runs finished" in out and "12 prior runs" in out and "not charged" in out


BAD_CELLS = [  # (column, value, what the one line must say)
    ("n_params", "-5", "row 3, column n_params: expected a positive number"),
    ("loss/code", "low", "row 3, column loss/code: expected a positive number, got 'low'"),
    ("loss/knowledge", "", "row 3, column loss/knowledge: expected a positive number, got an empty or NA cell"),
    ("mix/code", "0.6", "row 3, column mix/"),
    ("seed", "1.5", "row 3, column seed: expected an integer >= 0"),
]


@pytest.mark.parametrize("column, value, message", BAD_CELLS, ids=[c for c, _, _ in BAD_CELLS])
def test_a_bad_row_is_one_line_naming_file_row_and_column_and_exits_2(small_study, tmp_path, capsys, column,
                                                                      value, message):
    prior = tmp_path / "prior.csv"
    rows = write_ladder(prior)
    rows[2][column] = value
    with open(prior, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    small_study.update(prior_runs=str(prior))
    config = tmp_path / "study.yaml"
    import yaml

    config.write_text(yaml.safe_dump(small_study))
    assert main(["run", str(config), "--study-dir", str(tmp_path / "study")]) == 2  # before Ray starts
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(prior) in err and message in err, err
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("problem, edit, message", [
    ("missing skill column", lambda r: r.pop("loss/code"), "missing column 'loss/code'"),
    ("unknown domain", lambda r: r.update({"mix/math": 0.0}), "column 'mix/math' names no domain"),
])
def test_a_bad_table_is_one_line(small_study, tmp_path, problem, edit, message):
    prior = tmp_path / "prior.csv"
    rows = write_ladder(prior)
    for row in rows:
        edit(row)
    with open(prior, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    cfg = _config(small_study, prior)
    with pytest.raises(InputError, match=message) as exc:
        Study(cfg, tmp_path / "study")
    assert str(prior) in str(exc.value) and "\n" not in str(exc.value)


def test_report_shows_prior_runs_apart(small_study, tmp_path):
    from scheduler.report import write_report

    prior = tmp_path / "prior.csv"
    write_ladder(prior)
    cfg = _config(small_study, prior)
    study = Study(cfg, tmp_path / "study")
    study.reconcile()
    (spec,) = study.propose(1)
    study.record(spec, cfg.backend.build().run(spec, tmp_path / "study" / "runs" / spec.run_id))
    study.close()
    page = write_report(tmp_path / "study", tmp_path / "report").read_text()
    assert " 1 runs &middot;" in page and "plus 12 prior runs" in page and "not charged" in page
    assert page.count("<td>prior</td>") == 12 and page.count("<td>study</td>") == 1
