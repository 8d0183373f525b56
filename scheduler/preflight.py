"""Checks before a study's loop starts, so that what cannot work ends within seconds with one line naming
what was asked and what is there, instead of waiting forever (a GPU asked for on a machine without one,
`--num-cpus 0` or an address with nothing listening would otherwise hang).

    check_address("127.0.0.1:6399")                 # InputError unless something accepts connections there
    check_resources(per_worker, nodes, can_grow)     # InputError if no node can host one worker
    explain_ray_init_error(exc, address)             # a one-line InputError, "auth" when it was token auth
    LOCAL_RAY_ENV                                    # environment that keeps a local Ray instance on loopback

Ray-free: the controller passes in what it read from Ray (ray.nodes()), the tests pass dicts.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping

from skillscale.errors import InputError

ADDRESS_PROBE_TIMEOUT_S = 3.0

# Ray on Linux advertises and binds the machine's routable IP; this switch (ray._private.ray_constants,
# ENABLE_RAY_CLUSTER: off means a single-machine instance) makes it use 127.0.0.1 instead, so the GCS,
# raylets, workers and the metrics agent of a *local* instance listen on loopback only. Measured with
# Ray 2.60 (`ss -ltnp`): without it the metrics agent listened on 0.0.0.0 and served the study's metrics
# to anyone on the network, and the GCS and raylet on every interface. Never set for `--address`. Ray reads it
# when it is imported, so `skillscale run` sets it first (scheduler/cli.py); the Python API sets it before
# ray.init, which reaches Ray's own processes but not an already imported driver (set it before `import ray`).
LOCAL_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

# Token auth said explicitly for a local instance that `skillscale run` starts: what Ray 2.59+ does by default for a
# local ray.init, minus the warning Ray prints on every start when RAY_AUTH_MODE is unset (Ray's token-auth docs; Ray
# writes ~/.ray/auth_token if there is none). Only before Ray is imported (scheduler/cli.py): Ray reads the mode once,
# at import, so a mode set later would leave the driver without auth and its GCS with it. A mode the user set stays.
LOCAL_AUTH_ENV = {"RAY_AUTH_MODE": "token"}


def ray_env_for(address: str | None) -> dict[str, str]:
    """Environment for Ray, set before it is imported: loopback for a local instance; for a cluster address,
    token auth when RAY_AUTH_MODE is unset and a token is at hand (RAY_AUTH_TOKEN, or ~/.ray/auth_token as
    cluster.yaml puts on every node), since Ray 2.60 clusters require it (README, On a cluster)."""
    if not address:
        return dict(LOCAL_RAY_ENV)
    token = os.environ.get("RAY_AUTH_TOKEN") or os.path.exists(os.path.expanduser("~/.ray/auth_token"))
    return {"RAY_AUTH_MODE": "token"} if token and "RAY_AUTH_MODE" not in os.environ else {}


AUTH_HINT = ("auth: the cluster requires Ray token authentication; run with RAY_AUTH_MODE=token and the "
             "cluster's token in ~/.ray/auth_token (copy it from the head) or in RAY_AUTH_TOKEN")


def token_source() -> str:
    """Where Ray reads its token from, in Ray's order of precedence (its token-auth docs)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "$RAY_AUTH_TOKEN"
    return os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token"


def dashboard_lines(url: str) -> list[str]:
    """What `skillscale run --dashboard` prints for a local instance: the URL and, under token auth, how to log in
    (the dashboard asks for the token once per browser and keeps it in a cookie; Ray's token-auth docs)."""
    lines = [f"Ray dashboard: {url if '://' in url else 'http://' + url}"]
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        lines.append(f"  it asks for Ray's token once: paste the one `ray get-auth-token` prints (in "
                     f"{token_source()}); RAY_AUTH_MODE=disabled starts without one")
    lines.append("  actors are named by study and worker; each run is a task named 'run <run_id> N=.. D=..'")
    return lines


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a GCS address 'host:port'; None for 'auto', 'local', ray:// or http:// addresses."""
    if "://" in address or address in ("auto", "local") or ":" not in address:
        return None
    host, _, port = address.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return None


def check_address(address: str, timeout_s: float = ADDRESS_PROBE_TIMEOUT_S) -> None:
    """Raise InputError at once if nothing accepts TCP connections at a host:port cluster address (Ray
    itself retries such an address for many minutes, printing only connection warnings)."""
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout_s):
            return
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise InputError(f"--address {address}: no Ray cluster answers there ({why}); start one with "
                         "`ray start --head` or pass the head's address (host:6379, or auto on the head)") from None


def _fmt(resources: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(resources.items())) or "nothing"


def no_node_for(per_worker: Mapping[str, float], nodes: Iterable[Mapping]) -> str | None:
    """'resources: each worker asks for ..., but no Ray node has that (nodes: ...)' when no alive node in `nodes`
    (ray.nodes() entries, {"Alive": bool, "Resources": {...}}) could host one worker needing `per_worker` (e.g.
    {"CPU": 0.5, "GPU": 1}) even when idle; None when one could."""
    asked = {k: float(v) for k, v in per_worker.items() if v > 0}
    alive = [n for n in nodes if n.get("Alive", True)]
    if not asked or any(all((n.get("Resources") or {}).get(k, 0.0) >= v for k, v in asked.items()) for n in alive):
        return None

    def describe(node) -> str:
        res = {k: v for k, v in (node.get("Resources") or {}).items() if k in ("CPU", "GPU") or k in asked}
        res.setdefault("CPU", 0.0)
        where = f"{node['NodeManagerAddress']}: " if node.get("NodeManagerAddress") else ""
        return where + _fmt(res)

    have = "; ".join(describe(n) for n in alive) or "no nodes"
    return f"resources: each worker asks for {_fmt(asked)}, but no Ray node has that (nodes: {have})"


def check_resources(per_worker: Mapping[str, float], nodes: Iterable[Mapping], can_grow: bool) -> str | None:
    """Can any alive node host one worker needing `per_worker`? No node can: InputError naming what was asked and
    what each node has (no_node_for), unless `can_grow` (a cluster whose autoscaler may add a node), where the line is
    returned for the caller to say while it waits (the controller gives up after its placement timeout)."""
    line = no_node_for(per_worker, nodes)
    if line is None:
        return None
    if can_grow:
        return line + "; waiting for the autoscaler to add one"
    raise InputError(line + "; lower resources.num_gpus/num_cpus in the config, or raise --num-cpus")


def explain_ray_init_error(exc: BaseException, address: str | None) -> InputError:
    """ray.init's failure as one line; token-auth failures say "auth" and how to authenticate."""
    text = str(exc)
    first = text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__
    where = f"--address {address}" if address else "local Ray instance"
    lowered = text.lower()
    if any(word in lowered for word in ("auth", "unauthenticated", "token")):
        return InputError(f"{where}: cannot connect to Ray: {AUTH_HINT} ({first})")
    if address and os.environ.get("RAY_AUTH_MODE") != "token":  # Ray's own error rarely names the cause
        return InputError(f"{where}: cannot connect to Ray: {AUTH_HINT} (the likely cause without token mode; Ray "
                          f"said: {first})")
    return InputError(f"{where}: cannot start/connect to Ray ({first})")


def metric_tag(value: str) -> str:
    """A Ray metric tag value: Ray's C++ recorder takes ASCII only (a unicode study or target name raised
    UnicodeEncodeError, after Ray had started); other characters become \\u escapes, still readable."""
    return value.encode("ascii", "backslashreplace").decode("ascii")
