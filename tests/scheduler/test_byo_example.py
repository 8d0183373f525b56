"""examples/byo-trainer/train.py keeps the program's side of the contract on its own (no Ray, no skillscale):
SIGTERM checkpoints and exits, the same command resumes and finishes, a finished run exits at once."""

import json
import signal
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "byo-trainer"


def test_sigterm_checkpoints_and_the_same_command_resumes(tmp_path):
    run_dir = tmp_path / "run"
    argv = [sys.executable, str(EXAMPLE / "train.py"), "--run-dir", str(run_dir), "--params", "4000",
            "--tokens", "60000", "--checkpoint-every", "0", "--mix", '{"arithmetic": 0.3, "code": 0.7}']
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    first_line = proc.stdout.readline()  # printed just before the training loop starts
    assert first_line.startswith("d_model=8 N="), first_line
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "SIGTERM: checkpointed at step" in out
    assert (run_dir / "checkpoint.pt").exists() and not (run_dir / "result.json").exists()

    resumed = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    result = json.loads((run_dir / "result.json").read_text())
    assert set(result["losses"]) == {"arithmetic", "code"} and result["n_params"] > 0
    again = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "already finished" in again.stdout


def test_a_bad_flag_exits_2(tmp_path):
    bad = subprocess.run([sys.executable, str(EXAMPLE / "train.py"), "--run-dir", str(tmp_path), "--params", "4e3",
                          "--tokens", "100", "--mix", '{"poetry": 1}'], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--mix" in bad.stderr
