"""README's Python snippets run as written: each ```python block, in order, as files in a fresh directory (a block
that opens with `# name.py:` is that module; the others run in one script), attached to the session's Ray cluster
as a second driver, so that its workers import the snippet's module from that directory as README says."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, re.S | re.M)


def test_readme_python_snippets_run_as_written(ray_head, tmp_path):
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 2
    script = []
    for block in blocks:
        module = re.match(r"# (\w+\.py):", block)
        if module:
            (tmp_path / module.group(1)).write_text(block)
        else:
            script.append(block)
    (tmp_path / "readme_snippets.py").write_text("\n".join(script))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ray_head}
    done = subprocess.run([sys.executable, "readme_snippets.py"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    first = done.stdout.splitlines()[0].split()
    assert first[0] in ("converged", "max_runs") and float(first[1]) > 0  # stop reason and N* of run_study's result
    assert (tmp_path / "studies" / "mine" / "result.json").exists() and any((tmp_path / "runs").iterdir())
