"""A node lost mid-study (issue 36): the session's cluster gets a second node, a run trains there, the node dies (its
worker first, its raylet 5 s later, while Ray still counts it alive). The run is retried once, on the node that is
left: its replacement worker is not placed on the dying node (where it used to die too, a second try).

The second node is this test's own `ray start` process group, killed by its id; nothing else on the machine is."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _descendants(roots: list[int], names: tuple[str, ...]) -> list[int]:
    """Processes below `roots` (the node's processes: its raylet starts its workers) whose command starts with one of
    `names` (a busy actor's process is titled after its task: `ray::run <run_id> ...`)."""
    table = [line.split(None, 2) for line in subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True,
                                                            text=True).stdout.splitlines()]
    children, found, todo = {}, [], list(roots)
    for pid, ppid, *args in table:
        children.setdefault(int(ppid), []).append((int(pid), args[0] if args else ""))
    while todo:
        for pid, args in children.get(todo.pop(), []):
            todo.append(pid)
            if args.startswith(names):
                found.append(pid)
    return found


@pytest.fixture
def second_node(ray_head, tmp_path):
    import ray

    log = open(tmp_path / "second_node.log", "w")  # noqa: SIM115 (closed at the end of the fixture)

    before = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    # a node joining a cluster: without the single-machine switch, which refuses multi-node clusters
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"},
           "RAY_AUTH_MODE": "disabled"}
    ray_bin = str(Path(sys.executable).parent / "ray")
    # its own --temp-dir: `ray start` records the cluster's address in <temp dir>/ray_current_cluster, and a plain
    # ray.init() on this machine would connect to it (short: Ray's socket paths must fit 107 bytes)
    temp_dir = tempfile.mkdtemp(prefix="rn-", dir="/tmp")
    proc = subprocess.Popen([ray_bin, "start", f"--address={ray_head}", "--num-cpus=2", "--block",
                             "--node-ip-address=127.0.0.1", "--disable-usage-stats", f"--temp-dir={temp_dir}"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            new = {n["NodeID"] for n in ray.nodes() if n["Alive"]} - before
            if new:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the second node did not join: {(tmp_path / 'second_node.log').read_text()[-2000:]}")
        yield new.pop(), proc, temp_dir
    finally:
        own = subprocess.run(["pgrep", "-f", temp_dir], capture_output=True, text=True).stdout.split()
        for pid in [proc.pid, *map(int, own)]:  # the node's processes: its group, and any holding its temp dir
            try:
                os.killpg(pid, signal.SIGKILL) if pid == proc.pid else os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)
        log.close()


def test_a_lost_node_costs_its_run_one_try(second_node, small_study, tmp_path):
    from scheduler.config import parse_study_config
    from scheduler.controller import Controller

    node, proc, temp_dir = second_node
    small_study.update(name="node-loss", max_concurrent=2, max_runs=2, flops=[1e16, 2e16],
                       resources={"num_cpus": 1.5})  # one worker per 2-CPU node
    small_study["backend"]["sleep_per_flop"] = 2e-15  # 20-40 s per run: the controller learns where (within 10 s)
    controller = Controller(parse_study_config(small_study), tmp_path)
    killed, done = threading.Event(), threading.Event()

    def kill_when_a_run_trains_there():
        while not done.is_set():
            if node in controller.node_of.values() and controller.in_flight:
                # A node going down: its worker dies first, and Ray still counts the node alive for a while (here:
                # until its raylet is killed, 5 s later); a replacement placed there meanwhile dies with it.
                own = subprocess.run(["pgrep", "-f", temp_dir], capture_output=True, text=True).stdout.split()
                workers = _descendants([proc.pid, *map(int, own)], ("ray::run ", "ray::TrainerActor"))
                if not workers:  # placed there, its process not yet named (a loaded machine): look again
                    time.sleep(0.2)
                    continue
                for pid in workers:
                    os.kill(pid, signal.SIGKILL)
                time.sleep(5.0)
                os.killpg(proc.pid, signal.SIGKILL)
                killed.set()
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_when_a_run_trains_there, daemon=True)
    killer.start()
    try:
        result = controller.run()
    finally:
        done.set()
    assert killed.is_set() and result["n_runs_failed"] == 0 and result["n_runs_ok"] == 2
    attempts = json.loads((tmp_path / "attempts.json").read_text())
    assert [entry["tries"] for entry in attempts.values()] == [1], attempts  # one run interrupted, once
