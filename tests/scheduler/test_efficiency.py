"""The study's efficiency: model FLOPs of its finished runs over its sittings' GPU seconds at the card's peak."""

import argparse
import json

import pytest

from scheduler.commands import cmd_status
from scheduler.config import load_study_config, parse_study_config
from scheduler.controller import Controller
from scheduler.efficiency import (
    GPU_TIME_FILE,
    Sitting,
    SittingLog,
    efficiency,
    efficiency_text,
    gpus_held,
    read_sittings,
)
from scheduler.study import read_status
from skillscale.errors import InputError

H100 = 989e12


def test_efficiency_is_model_flops_over_gpu_seconds_at_peak():
    sittings = [Sitting("2026-12-07T05:00:00Z", wall_s=450.0, gpus=1, device="NVIDIA H100 80GB HBM3", peak_flops=H100),
                Sitting("2026-12-07T06:00:00Z", wall_s=100.0, gpus=2, device="NVIDIA H200", peak_flops=H100)]
    eff = efficiency(1.75e16, sittings)
    assert eff["gpu_s"] == pytest.approx(650.0)
    assert eff["efficiency"] == pytest.approx(1.75e16 / (650.0 * H100))
    assert eff["peak_flops"] == pytest.approx(H100)
    assert eff["devices"] == ["NVIDIA H100 80GB HBM3", "NVIDIA H200"] and eff["sittings"] == 2
    assert "of the dense bf16 peak (989 TFLOP/s" in efficiency_text(eff)


def test_where_the_workers_time_went_sums_to_one_with_the_idle_rest():
    sittings = [Sitting("a", wall_s=100.0, gpus=1, device="H100", peak_flops=H100, workers=2),
                Sitting("b", wall_s=50.0, gpus=1, device="H100", peak_flops=H100, workers=2)]
    rows = [{"time/setup": 5.0, "time/first_step": 20.0, "time/train": 60.0, "time/evaluate": 10.0},
            {"time/setup": 5.0, "time/first_step": 0.0, "time/train": 100.0, "time/evaluate": 10.0},
            {"time/train": 1000.0, "source": "prior"},  # trained elsewhere: not this study's GPU time
            {"wall_s": 3.0}]  # a backend that reports no phases
    spent = efficiency(1e16, sittings, rows)["time"]
    assert spent["slot_s"] == 300.0 and spent["run_s"] == 210.0
    assert spent["shares"]["train"] == pytest.approx(160 / 300) and spent["shares"]["idle"] == pytest.approx(0.3)
    assert sum(spent["shares"].values()) == pytest.approx(1.0)
    text = efficiency_text(efficiency(1e16, sittings, rows))
    assert "workers' time: train 53%, idle 30%, first step 7%" in text
    assert efficiency(1e16, sittings, [{"wall_s": 3.0}])["time"] is None  # no phases recorded
    old = [Sitting("a", wall_s=100.0, gpus=1, device="H100", peak_flops=H100)]  # before workers were recorded
    assert efficiency(1e16, old, rows)["time"] is None


def test_the_pilot_reads_about_four_percent():
    """issue 35's pilot: 1.75e16 FLOPs (replicas counted) in 7.5 minutes of one H100 was ~4% of the bf16 peak."""
    eff = efficiency(1.75e16, [Sitting("t", wall_s=450.0, gpus=1, device="H100", peak_flops=H100)])
    assert 0.035 < eff["efficiency"] < 0.045


def test_sittings_on_an_unknown_card_are_left_out_and_reported():
    sittings = [Sitting("a", wall_s=100.0, gpus=1, device="H100", peak_flops=H100),
                Sitting("b", wall_s=50.0, gpus=1, device="", peak_flops=0.0)]
    eff = efficiency(1e16, sittings)
    assert eff["gpu_s"] == 100.0 and eff["gpu_s_unknown_peak"] == 50.0
    assert efficiency(1e16, sittings[1:]) is None
    assert efficiency(1e16, []) is None
    assert efficiency(1e16, [Sitting("c", wall_s=100.0, gpus=0)]) is None  # CPU workers: nothing to compare with
    assert efficiency_text(None).startswith("efficiency: n/a")


@pytest.mark.parametrize("actors, num_gpus, held", [(6, 0.16, 1), (2, 1.0, 2), (4, 0.25, 1), (3, 0.5, 2), (2, 0, 0)])
def test_gpus_held_by_a_studys_workers(actors, num_gpus, held):
    assert gpus_held(actors, num_gpus) == held


def test_each_sitting_is_appended_and_kept_across_restarts(tmp_path):
    log = SittingLog(tmp_path)
    log.start(gpus=1)
    log.update("NVIDIA H100 80GB HBM3", H100)
    log.update()  # a later tick keeps the device
    again = SittingLog(tmp_path)  # the next sitting, in a new process
    again.start(gpus=1)
    sittings = read_sittings(tmp_path)
    assert len(sittings) == 2 and sittings[0].device == "NVIDIA H100 80GB HBM3" and sittings[0].peak_flops == H100
    assert sittings[0].wall_s >= 0 and sittings[1].device == "" and sittings[1].gpus == 1


def test_an_unreadable_gpu_time_file_is_one_line_naming_it(tmp_path):
    (tmp_path / GPU_TIME_FILE).write_text("{not json")
    with pytest.raises(InputError, match=GPU_TIME_FILE) as info:
        read_sittings(tmp_path)
    assert "\n" not in str(info.value)


def test_a_study_records_its_sitting_and_status_shows_the_efficiency(ray_local, small_study, tmp_path, capsys):
    small_study["compute_cap"] = 2e18
    result = Controller(parse_study_config(small_study), tmp_path).run()
    (sitting,) = read_sittings(tmp_path)
    assert sitting.workers == small_study["max_concurrent"]
    assert sitting.gpus == 0 and sitting.wall_s > 0 and sitting.device == ""  # CPU workers: no peak to compare with
    assert result["efficiency"] is None and json.loads((tmp_path / "result.json").read_text())["efficiency"] is None
    # the same study as if its sitting had held an H100: status reads the ledger and gpu_time.json
    data = json.loads((tmp_path / GPU_TIME_FILE).read_text())
    data["sittings"][0].update(gpus=1, device="NVIDIA H100 80GB HBM3", peak_flops=H100, wall_s=100.0)
    (tmp_path / GPU_TIME_FILE).write_text(json.dumps(data))
    status = read_status(tmp_path)
    assert status.efficiency["efficiency"] == pytest.approx(result["flops_spent"] / (100.0 * H100))
    assert cmd_status(argparse.Namespace(study_dir=str(tmp_path))) == 0
    assert "efficiency: " in capsys.readouterr().out


def test_the_h200_study_config_is_what_its_comments_say():
    cfg = load_study_config("configs/skills-h200.yaml")
    assert [t.name for t in cfg.targets] == ["knowledge", "code", "half-half"]
    assert dict(cfg.targets[2].weights) == {"knowledge": 0.5, "code": 0.5}
    assert cfg.tolerance == 0.15 and cfg.backend.trainer.seed_replicas == 6 and cfg.backend.trainer.compile
    largest_run = cfg.flops.hi
    assert all(30 <= t.flops / largest_run <= 100 for t in cfg.targets)  # C_target 30-100x beyond the largest run
    assert gpus_held(cfg.max_concurrent, cfg.resources.num_gpus) == 1  # one GPU
