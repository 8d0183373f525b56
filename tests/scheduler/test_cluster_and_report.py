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
    assert "<th>replicate spread (log std)</th>" in text and "<th>seed</th>" in text


def test_report_shows_each_skills_replicate_spread_and_lack_of_fit():
    from fitting.noise import NoiseModel
    from scheduler.report import _replicate_cells

    noise = NoiseModel(log_sigma=-5.0, replicate_dof=4, replicate_sigma=0.005, lack_of_fit=1.1)
    assert _replicate_cells(noise) == ["4", "0.0050", "1.10"]
    assert _replicate_cells(NoiseModel(log_sigma=-5.0)) == ["0", "n/a", "n/a"]  # no replicates yet
    assert _replicate_cells(None) == ["n/a"] * 3


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


def _capture_figures(monkeypatch):
    """Figures the plots would write, kept open for inspection (name -> Figure)."""
    import fitting.plots
    import scheduler.report

    figures = {}
    for module in (fitting.plots, scheduler.report):
        monkeypatch.setattr(module, "save_figure", lambda fig, path: figures.__setitem__(Path(path).name, fig))
    return figures


@pytest.fixture(scope="module")
def h100_fit():
    """The refit of examples/skills-h100, computed once for the report tests (it is the slow part)."""
    from scheduler.config import load_study_config
    from scheduler.estimates import refit
    from scheduler.ledger import Ledger

    cfg = load_study_config(ROOT / "examples" / "skills-h100" / "study.yaml")
    return refit(cfg, Ledger(ROOT / "examples" / "skills-h100" / "runs.parquet").rows)


def _example(tmp_path, monkeypatch, h100_fit):
    """A copy of examples/skills-h100 whose report reuses the module's refit."""
    import shutil

    import scheduler.report

    study = tmp_path / "study"
    shutil.copytree(ROOT / "examples" / "skills-h100", study, ignore=shutil.ignore_patterns("report"))
    monkeypatch.setattr(scheduler.report, "refit", lambda cfg, rows: h100_fit)
    return study


def test_report_isoflop_curves_sit_at_the_runs_budgets_with_a_legend(tmp_path, monkeypatch, h100_fit):
    import re

    import numpy as np

    from scheduler.ledger import Ledger
    from scheduler.report import write_report

    study = _example(tmp_path, monkeypatch, h100_fit)
    figures = _capture_figures(monkeypatch)
    write_report(study, tmp_path / "out")
    flops = np.array([6 * r["n_params"] * r["n_tokens"] for r in Ledger(study / "runs.parquet").rows
                      if r["status"] == "ok"])
    for ax in figures["isoflop.png"].axes:
        if not ax.get_xlabel():
            continue  # a colorbar
        assert ax.get_xlabel() == "N (non-embedding parameters)" and "nats/token" in ax.get_ylabel()
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        budgets = [float(m.group(1)) for t in labels if (m := re.match(r"C ≈ (\S+) FLOPs", t))]
        assert budgets, labels
        for c in budgets:  # every curve is at a budget runs were trained at
            assert np.min(np.abs(np.log(flops / c))) < np.log(1.25)


def test_report_draws_no_band_for_a_law_that_is_not_identifiable(tmp_path, monkeypatch, h100_fit):
    """examples/skills-h100: knowledge's alpha sits on the solver's bound (README); its N*(C) band used to be
    drawn, as narrow as the bound makes it."""
    from scheduler.report import write_report

    study = _example(tmp_path, monkeypatch, h100_fit)
    figures = _capture_figures(monkeypatch)
    page = write_report(study, tmp_path / "out").read_text()
    (ax,) = figures["optimum.png"].axes
    drawn = [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []
    notes = " ".join(t.get_text() for t in ax.texts)
    assert "knowledge" not in drawn and "knowledge: alpha=" in notes and "not identifiable" in notes
    assert "FLOPs" in ax.get_xlabel() and "parameters" in ax.get_ylabel()
    for poly in ax.collections:  # a band, where drawn, stays within what the study's N range makes plausible
        ys = poly.get_paths()[0].vertices[:, 1]
        assert ys.min() > 1e3 and ys.max() < 1e12
    cells = page.split("<h2>Targets</h2>")[1].split("<h2>")[0]
    assert "n/a" in cells
    for token in (">inf<", ">nan<", "[nan", "inf]", "nan]"):
        assert token not in page


def test_report_plots_composite_targets(ray_local, small_study, tmp_path, monkeypatch):
    from scheduler.config import parse_study_config
    from scheduler.controller import Controller
    from scheduler.report import write_report

    small_study["max_runs"] = 16
    small_study["targets"].append({"name": "mixed", "weights": {"knowledge": 0.6, "code": 0.4}, "flops": 1e20})
    Controller(parse_study_config(small_study), tmp_path).run()
    figures = _capture_figures(monkeypatch)
    write_report(tmp_path, tmp_path / "report")
    (ax,) = figures["optimum.png"].axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "target mixed" in labels and "knowledge" in labels
    assert "FLOPs" in figures["composition.png"].axes[0].get_ylabel()


def test_report_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch, h100_fit):
    """A read-only study (or a full disk): one line naming the file, exit status 2, the study untouched."""
    import errno

    import scheduler.report
    from scheduler.cli import main

    study = _example(tmp_path, monkeypatch, h100_fit)
    (tmp_path / "a-file").write_text("")
    assert main(["report", str(study), "--out", str(tmp_path / "a-file" / "report")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write the report" in err and "--out DIR" in err

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(scheduler.report, "atomic_write_text", full)
    assert main(["report", str(study), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "index.html: cannot write the report (No space left on device)" in err


def test_cluster_path_uses_token_auth_and_readme_says_so():
    """Ray 2.60 clusters need the same token on every node and client (issue #16 item 4): cluster.yaml copies it
    and turns token mode on; README's job submission uploads the checkout so a relative config path resolves."""
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        assert any("RAY_AUTH_MODE=token" in c and "ray start" in c for c in commands)
    readme = (ROOT / "docs" / "cluster.md").read_text()  # README's cluster recipe links there
    submit = next(line for line in readme.splitlines() if "ray job submit" in line)
    assert "RAY_AUTH_MODE=token" in submit and "--working-dir ." in submit


def test_readme_names_the_metrics_as_ray_exports_them():
    """Ray's metrics agent prefixes custom metrics with `ray_` (measured: ray_skillscale_runs_done)."""
    import re

    from scheduler.config import parse_study_config
    from scheduler.metrics import StudyMetrics
    from tests.conftest import SMALL_STUDY

    names = []
    StudyMetrics(parse_study_config(SMALL_STUDY), lambda name, *a, **k: names.append(name) or _NullGauge())
    readme = (ROOT / "docs" / "cluster.md").read_text()
    documented = set(re.findall(r"`(ray_skillscale_\w+)", readme))
    assert documented == {f"ray_{n}" for n in names}
    assert not re.search(r"(?<!ray_)`skillscale_\w+", readme)


class _NullGauge:
    def set(self, value, tags=None):
        pass
