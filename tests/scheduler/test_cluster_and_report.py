"""cluster.yaml passes Ray's own cluster-config schema; `skillscale report` writes its plots and page."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_cluster_yaml_is_valid_for_the_ray_cluster_launcher():
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # what `ray up` runs first
    gpu_types = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
    assert all(t["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot" for t in gpu_types)
    assert any("--dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"])
    broken = {**config, "max_workerz": 3}
    with pytest.raises(Exception, match="max_workerz"):
        validate_config(prepare_config(broken))


def test_report_writes_plots_and_html(ray_local, small_study, tmp_path):
    from scheduler.config import parse_study_config
    from scheduler.controller import Controller
    from scheduler.report import write_report

    small_study["max_runs"] = 20
    Controller(parse_study_config(small_study), tmp_path).run()
    page = write_report(tmp_path, tmp_path / "report")
    for name in ("isoflop.png", "optimum.png", "composition.png", "runs.png"):
        data = (tmp_path / "report" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    text = page.read_text()
    assert "knowledge" in text and "95%" in text and "C = 6·N·D" in text
    assert text.count("<tr>") >= 20  # one row per run at least


def test_report_on_a_directory_that_is_not_a_study(tmp_path, capsys):
    from scheduler.cli import main

    assert main(["report", str(tmp_path)]) == 2
    assert "not a study directory" in capsys.readouterr().err


@pytest.mark.parametrize("example", ["skills-h100-first", "skills-h100"])
def test_degenerate_fits_from_a_real_gpu_study_are_reported_not_crashed(tmp_path, example):
    """examples/ holds real H100 studies whose laws are degenerate or not identifiable (BENCHMARKS.md):
    the refit must never call them converged (the first has infinite half-widths, the second intervals of
    tens to hundreds of percent), the proposer must keep going, and the report must still render."""
    import shutil

    from scheduler.config import load_study_config
    from scheduler.estimates import refit
    from scheduler.ledger import Ledger
    from scheduler.proposer import Proposer
    from scheduler.report import write_report

    study = tmp_path / "study"
    shutil.copytree(ROOT / "examples" / example, study, ignore=shutil.ignore_patterns("report"))
    cfg = load_study_config(study / "study.yaml")
    rows = Ledger(study / "runs.parquet").rows
    est = refit(cfg, rows)
    assert not est.converged(cfg.tolerance)
    widest = max(t.rel_halfwidth for t in est.targets)
    assert widest == float("inf") if example == "skills-h100-first" else widest > 0.5
    assert len(Proposer(cfg).propose(2, est, [], len(rows), cfg.compute_cap)) == 2  # keeps exploring
    write_report(study, study / "report")
    assert (study / "report" / "optimum.png").stat().st_size > 1000
