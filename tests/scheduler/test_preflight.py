"""Fail fast (scheduler/preflight.py): an address with nothing there, resources no node has, an auth failure,
and metric tags Ray's recorder can take, each one line (no Ray needed)."""

import re
import socket
import time
from pathlib import Path

import pytest

from scheduler.preflight import check_address, check_resources, explain_ray_init_error, metric_tag
from skillscale.errors import InputError

LAPTOP = [{"Alive": True, "Resources": {"CPU": 2.0, "memory": 8e9, "node:127.0.0.1": 1.0}}]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_an_address_with_nothing_there_fails_within_seconds():
    port = _closed_port()
    start = time.monotonic()
    with pytest.raises(InputError, match=rf"--address 127.0.0.1:{port}: no Ray cluster answers there"):
        check_address(f"127.0.0.1:{port}")
    assert time.monotonic() - start < 5


def test_an_address_that_answers_and_addresses_ray_resolves_itself_pass():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_address(f"127.0.0.1:{server.getsockname()[1]}")
    for address in ("auto", "ray://head:10001", "http://127.0.0.1:8265"):
        check_address(address)


def test_a_gpu_no_node_has_is_named_with_what_the_cluster_has():
    with pytest.raises(InputError) as err:
        check_resources({"CPU": 1, "GPU": 1}, LAPTOP, can_grow=False)
    message = str(err.value)
    assert "each worker asks for CPU 1, GPU 1" in message and "nodes: CPU 2" in message and "\n" not in message


def test_zero_cpus_cannot_host_a_worker_that_needs_one():
    with pytest.raises(InputError, match=r"asks for CPU 0.5, but no Ray node has that \(nodes: CPU 0\)"):
        check_resources({"CPU": 0.5, "GPU": 0}, [{"Alive": True, "Resources": {"CPU": 0.0}}], can_grow=False)


def test_what_fits_passes_and_a_growing_cluster_waits():
    assert check_resources({"CPU": 0.5, "GPU": 0}, LAPTOP, can_grow=False) is None
    assert check_resources({"CPU": 0, "GPU": 0}, [], can_grow=False) is None  # nothing asked: nothing missing
    line = check_resources({"GPU": 1}, LAPTOP, can_grow=True)
    assert "waiting for the autoscaler" in line
    dead_gpu = [{"Alive": False, "Resources": {"GPU": 8.0, "CPU": 96.0}}, *LAPTOP]
    with pytest.raises(InputError):
        check_resources({"GPU": 1}, dead_gpu, can_grow=False)


def test_an_auth_failure_says_auth():
    exc = ConnectionError("Failed to connect to GCS: InvalidAuthToken: the token is missing\nmore lines")
    message = str(explain_ray_init_error(exc, "10.0.0.1:6379"))
    assert message.startswith("--address 10.0.0.1:6379: cannot connect to Ray: auth:")
    assert "RAY_AUTH_MODE=token" in message
    assert "\n" not in message
    other = str(explain_ray_init_error(RuntimeError("no space"), None))
    assert other == "local Ray instance: cannot start/connect to Ray (no space)"


def test_a_failed_connection_without_token_mode_mentions_auth(monkeypatch):
    """Ray's error after its InvalidAuthToken warnings does not always name the cause (issue #16 item 4)."""
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    message = str(explain_ray_init_error(ConnectionError("Could not find any running Ray instance"), "h:6379"))
    assert message.startswith("--address h:6379: cannot connect to Ray: auth:") and "RAY_AUTH_MODE=token" in message
    assert "Could not find any running Ray instance" in message and "\n" not in message
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert "auth" not in str(explain_ray_init_error(ConnectionError("gone"), "h:6379"))


def test_metric_tags_are_ascii():
    assert metric_tag("wissen-ü-名") == "wissen-\\xfc-\\u540d"
    assert metric_tag("plain") == "plain"


def test_the_auth_error_reads_as_readme_says(monkeypatch):
    """README's table of one-line failures quotes the auth error; both of its forms start that way."""
    readme = (Path(__file__).resolve().parents[2] / "docs" / "design.md").read_text()  # its table of failures
    (quoted,) = re.findall(r"^\| a cluster that wants a token \| `([^`]*)`", readme, re.M)
    prefix = quoted.removesuffix("...").replace("--address ...", "--address h:6379").rstrip()
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    unnamed = str(explain_ray_init_error(ConnectionError("Could not find any running Ray instance"), "h:6379"))
    named = str(explain_ray_init_error(ConnectionError("InvalidAuthToken: missing"), "h:6379"))
    assert unnamed.startswith(prefix) and named.startswith(prefix), (prefix, unnamed, named)


def test_a_local_instance_says_token_auth_and_how_to_log_in(monkeypatch):
    from scheduler.preflight import LOCAL_AUTH_ENV, dashboard_lines

    assert LOCAL_AUTH_ENV == {"RAY_AUTH_MODE": "token"}
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    lines = dashboard_lines("127.0.0.1:8265")
    assert lines[0] == "Ray dashboard: http://127.0.0.1:8265"
    assert "`ray get-auth-token`" in lines[1] and "~/.ray/auth_token" in lines[1]
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret")
    assert "$RAY_AUTH_TOKEN" in dashboard_lines("127.0.0.1:8265")[1] and "secret" not in " ".join(lines)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert not any("token" in line for line in dashboard_lines("127.0.0.1:8265"))
