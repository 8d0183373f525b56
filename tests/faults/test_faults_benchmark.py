"""benchmarks/faults.py stops only the Ray it started (issue #16, item 11): `ray stop --force` killed every Ray
process on the host, other users' clusters included. Read from the source (running the benchmark takes
minutes): no `ray stop`/`ray start` command, and the cluster it starts is the driver's own (ray.init), which
ray.shutdown() ends."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_faults_benchmark_never_runs_ray_stop():
    tree = ast.parse((ROOT / "benchmarks" / "faults.py").read_text())
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert not {"stop", "--force", "start"} & strings
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert {"ray.init", "ray.shutdown"} <= calls
