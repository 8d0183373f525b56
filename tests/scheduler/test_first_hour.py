"""What a newcomer meets in the first hour (issue 36): each check here failed before its fix."""

import io
import json
import re
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from scheduler.cli import main
from scheduler.config import load_study_config, parse_study_config
from scheduler.progress import Progress
from scheduler.study import Study
from skillscale.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


def _recording_progress() -> tuple[Progress, io.StringIO]:
    out = io.StringIO()
    return Progress(console=Console(file=out, width=400, highlight=False, soft_wrap=True)), out


def test_quickstart_comment_states_the_noise_it_sets():
    text = (ROOT / "configs" / "quickstart.yaml").read_text()
    stated = {float(p) / 100 for p in re.findall(r"([\d.]+)% noise", text)}
    assert stated == {load_study_config(ROOT / "configs" / "quickstart.yaml").backend.noise}


def test_a_cap_that_cannot_buy_one_run_is_refused_in_one_line(small_study, tmp_path, capsys):
    small_study["compute_cap"] = 5e15  # the smallest run: flops.lo = 1e16
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(small_study))
    assert main(["run", str(path), "--study-dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "compute_cap: 5e+15 FLOPs cannot buy one run" in err and "costs 1e+16" in err
    assert not (tmp_path / "s").exists()  # refused before anything was written
    small_study["compute_cap"] = 1.5e16
    small_study["backend"]["seed_replicas"] = 2  # a run of two models costs twice
    with pytest.raises(InputError, match=r"costs 2e\+16 \(2 models per run\)"):
        parse_study_config(small_study)
    small_study["compute_cap"] = 2e16
    parse_study_config(small_study)  # exactly one run: allowed


def test_the_smallest_run_respects_tokens_per_param(small_study):
    small_study.update(n_params=[1e6, 1e9], n_tokens=[1e6, 1e11], tokens_per_param=[20, 100])
    del small_study["flops"]
    cfg = parse_study_config(small_study)
    assert cfg.smallest_run() == (1e6, 2e7)  # D/N >= 20 at the smallest N
    small_study["compute_cap"] = 1e14  # 6 x 1e6 x 2e7 = 1.2e14
    with pytest.raises(InputError, match=r"compute_cap: .*costs 1\.2e\+14"):
        parse_study_config(small_study)


def test_rerunning_a_finished_study_prints_its_stored_table(ray_local, small_study, tmp_path):
    from scheduler.controller import Controller

    cfg = parse_study_config(small_study)
    study = Study(cfg, tmp_path)
    stored = study.finish("budget_exhausted")
    study.close()
    stored["targets"] = [{"name": "knowledge", "flops": 1e20, "n_params": 1.23e9, "n_params_ci95": [1.1e9, 1.4e9],
                          "n_tokens": 1.4e10, "rel_halfwidth": 0.12}]  # as if its runs had pinned one target
    (tmp_path / "result.json").write_text(json.dumps(stored))
    progress, out = _recording_progress()
    assert Controller(cfg, tmp_path, progress).run() == stored
    text = out.getvalue()
    assert "already stopped" in text and "stopped (budget_exhausted) after 0 runs" in text
    assert re.search(r"knowledge .*1e\+20 .*1\.23e\+09 .*\[1\.1e\+09, 1\.4e\+09\]", text), text


def test_progress_lines_stay_short_and_forecasts_read_as_numbers(small_study):
    from scheduler.progress import MAX_LINE, forecast_text
    from trainers.spec import RunResult

    skills = [f"skill_with_a_long_name_{i}" for i in range(30)]
    small_study.update(skills=skills, domains=skills, mix={"space": "fixed"},
                       backend={"name": "simulated", "truth": {s: {"E": 1.7, "A": 400, "B": 400, "alpha": 0.34,
                                                                   "beta": 0.28} for s in skills}},
                       targets=[{"name": f"target_{s}", "weights": {s: 1.0}, "flops": 1e20} for s in skills[:6]])
    cfg = parse_study_config(small_study)
    with Study(cfg) as study:
        status = study.status()
    status = type(status)(**{**status.__dict__, "forecast": {"flops_needed": 3.1e29, "runs_needed": 4098362152.0,
                                                               "reachable": False}})
    progress, out = _recording_progress()
    progress.run_finished(status, RunResult("r", "ok", 10**7, 10**9, 6e16, {s: 3.0 for s in skills}))
    line = out.getvalue().rstrip("\n")
    assert "\n" not in line and len(line) <= MAX_LINE, (len(line), line)
    assert "> 1000 runs (out of reach" in line and "4098362152" not in line
    assert forecast_text({"flops_needed": 2e20, "runs_needed": 37.4, "reachable": True}) == \
        " | to tol: ~2e+20 FLOPs, ~37 runs"
    assert "out of reach" in forecast_text({"flops_needed": float("inf"), "runs_needed": float("inf")})


@pytest.mark.slow
def test_the_dashboard_opens_with_the_token_it_names_and_ray_prints_no_token_warning(small_study, tmp_path):
    """`skillscale run --dashboard` on a local instance, RAY_AUTH_MODE unset (a new user): Ray runs with token auth and
    prints no warning about it; the printed URL serves the dashboard to the token the printed line names (Ray wrote
    it to ~/.ray/auth_token, here a fresh HOME) and refuses a request without it."""
    import os
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    small_study.update(name="dash", max_runs=2, max_concurrent=1, flops=[1e16, 2e16])
    small_study["backend"]["sleep_per_flop"] = 2e-16  # 2-4 s per run: time to open the page meanwhile
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(small_study))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "scheduler.cli", "run", str(config), "--study-dir",
                             str(tmp_path / "s"), "--dashboard", "--num-cpus", "1"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ray dashboard:" in line:
                break
        url = re.search(r"Ray dashboard: (http://\S+)", "".join(lines)).group(1)
        lines.append(proc.stdout.readline())
        assert "`ray get-auth-token`" in lines[-1] and "~/.ray/auth_token" in lines[-1]
        token = (tmp_path / "home" / ".ray" / "auth_token").read_text().strip()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/api/version", timeout=30)
        assert refused.value.code == 401
        ok = urllib.request.urlopen(urllib.request.Request(f"{url}/api/version",
                                                           headers={"Authorization": f"Bearer {token}"}), timeout=30)
        assert ok.status == 200
        rest, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(lines) + rest
    assert proc.returncode == 0, output[-3000:]
    assert "Token authentication is" not in output and "RAY_AUTH_MODE=disabled to opt out" not in output


def test_runs_no_node_can_host_show_as_pending_and_end_in_one_line(ray_local, small_study, tmp_path):
    """Workers asking for a GPU on the session's CPU-only cluster: the heartbeat says pending, not training, and after
    the placement timeout the study pauses with one line (a cluster given by --address used to wait for ever)."""
    from scheduler.controller import Controller

    small_study["resources"] = {"num_cpus": 0.5, "num_gpus": 1}
    cfg = parse_study_config(small_study)
    progress, out = _recording_progress()
    with pytest.raises(InputError) as error:
        Controller(cfg, tmp_path, progress, placement_timeout_s=2).run()
    message = str(error.value)
    assert "\n" not in message and re.fullmatch(
        r"resources: each worker asks for CPU 0\.5, GPU 1, but no Ray node has that \(nodes: .*\); 2 runs waited \d+ s "
        r"for a node to be placed on; add such a node or lower resources\.num_gpus/num_cpus, then rerun to resume",
        message), message
    assert "waiting: 0 runs training, 2 pending (no node has placed their worker yet), 0 finished" in out.getvalue()
    assert not (tmp_path / "result.json").exists()  # a pause: the same command resumes its runs


def test_proposals_and_refits_run_without_numpy_warnings_reaching_the_console(small_study, monkeypatch):
    """Ensemble members on a solver bound made numpy warn (log of zero in the Kalman step, overflow) on the console
    of the bring-your-own example; such members are already scored as non-finite, so both calls run under
    study.NUMERIC_ERRSTATE."""
    import numpy as np

    from scheduler import study as study_module

    seen = []
    with Study(parse_study_config(small_study)) as study:
        study.reconcile()
        monkeypatch.setattr(study.proposer, "propose", lambda *args, **kwargs: seen.append(np.geterr()) or [])
        monkeypatch.setattr(study_module, "refit", lambda cfg, rows: seen.append(np.geterr()) or None)
        study.propose(1)
        study.refit()
    assert len(seen) == 2 and all(e["divide"] == e["over"] == e["invalid"] == "ignore" for e in seen), seen
    assert np.geterr()["over"] == "warn"  # numpy's default again outside them


def test_rays_node_death_notice_prints_as_one_line():
    """Ray's driver prints cluster notices from its own thread onto sys.stdout; a node's death was several lines of
    Ray's text between the study's progress lines. Under run_study they print as their first line."""
    from scheduler.progress import MAX_LINE, OneLineRayNotices, one_line_ray_notices

    out = io.StringIO()
    notices = OneLineRayNotices(out)
    death = ("The node with node id: 5f3a and address: 127.0.0.1 and node name: 127.0.0.1 has been marked dead because "
             "the detector has missed too many heartbeats from it. This can happen when a \t(1) raylet crashes "
             "unexpectedly (OOM, etc.) \n\t(2) raylet has lagging heartbeats due to slow network or busy workload.")
    print(f"\x1b[36m(raylet)\x1b[0m {death}", file=notices)  # as Ray's print_worker_logs writes it
    print("[0:00:12] run   3 ok       N=1e+07 D=1e+09", file=notices)
    print("a traceback\n  of ours", file=notices)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and "has been marked dead" in lines[0] and len(lines[0]) <= MAX_LINE + 12
    assert lines[1:] == ["[0:00:12] run   3 ok       N=1e+07 D=1e+09", "a traceback", "  of ours"]
    import sys

    before = sys.stdout
    with one_line_ray_notices():
        assert isinstance(sys.stdout, OneLineRayNotices) and sys.stdout.stream is before
    assert sys.stdout is before


def test_an_n_star_outside_the_searched_range_is_flagged(small_study):
    """The bring-your-own example ended with an N* beyond its n_params range and nothing said so."""
    with Study(parse_study_config(small_study)) as study:  # n_params: [1e7, 3e9]
        assert [study._outside_searched(n) for n in (5e9, 1e6, 1e8, float("nan"))] == ["above", "below", None, None]
        status = study.status()
    result = {"stop_reason": "max_runs", "n_runs": 40, "flops_spent": 5e12, "targets": [
        {"name": "code", "flops": 1e12, "n_params": 8.1e9, "n_params_ci95": [5e9, 1.2e10], "n_tokens": 2e7,
         "rel_halfwidth": 0.45, "outside_searched_n": "above"}]}
    progress, out = _recording_progress()
    progress.finished(status, result)
    assert "code: N* 8.1e+09 lies above the searched n_params range" in out.getvalue()


def test_readme_and_the_byo_yaml_tell_the_same_time_and_runs():
    """README said 'a few minutes' for the bring-your-own example; its YAML measured 11.4 minutes for 40 runs."""
    readme = " ".join((ROOT / "docs" / "byo-trainer.md").read_text().split())
    minutes, runs = re.search(r"about (\d+) minutes on 2 cores for its (\d+) runs \(`max_runs`\)", readme).groups()
    study = (ROOT / "examples" / "byo-trainer" / "study.yaml").read_text()
    measured = float(re.search(r"(\d+(?:\.\d+)?) min, stopped at\s+#?\s*max_runs", study).group(1))
    assert int(runs) == yaml.safe_load(study)["max_runs"] and abs(measured - int(minutes)) < 1
