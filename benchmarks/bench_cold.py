"""Figure 3: a cold process that only needs the token already in the cache.

``python -c`` scripts, each a fresh interpreter: the baseline imports
requests and httpx; the others import a library, build its auth object and
return a valid access token from the library's file cache (filled once
beforehand, so no script touches the network; the token server's counter
checks that). The scripts take turns, the order rotating every round, and
the figure is the median over rounds of (script time - baseline time) in the
same round.

Time is the child's CPU time (user + system, from ``getrusage``): on a shared
two-core machine a process's wall time mostly measures how long it waited for
a core. The scripts do no network I/O and start no threads, so on an idle
machine CPU time and wall time agree; wall times are reported as well.

Bytecode is cached as after ``pip install`` (``PYTHONPYCACHEPREFIX`` points at a
scratch directory, warmed up before timing): this checkout's environment sets
``PYTHONDONTWRITEBYTECODE``, which would make every run compile
``hoxton_auth`` from source while requests and httpx load ``.pyc`` files.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peers
from peers import HOXTON, HTTPX_AUTH, REQUESTS_AUTH, Endpoints

__all__ = ["CLIENT_BASELINES", "COLD_LIBRARIES", "Cold", "run_cold"]

BASELINE_SCRIPT = "import requests, httpx"
COLD_LIBRARIES = (HOXTON, HTTPX_AUTH, REQUESTS_AUTH)

#: The honest baselines (issue 15 item 7): a script that imports only the
#: client it uses. HoxtonAuth subclasses both requests' AuthBase and
#: httpx.Auth, so a requests user pays for importing httpx too, and the other
#: way round; the peers each import only their own client.
CLIENT_BASELINES = {"requests": "import requests", "httpx": "import httpx"}

#: Which client each library's script uses (ours: both; one figure per client).
CLIENTS_OF = {HOXTON: ("requests", "httpx"), HTTPX_AUTH: ("httpx",), REQUESTS_AUTH: ("requests",)}
WARMUP_RUNS = 2


@dataclass(frozen=True)
class Cold:
    """Milliseconds per script: CPU time, and the same for wall time."""

    median_ms: dict[str, float]
    extra_ms: dict[str, float]  # median over rounds of (script - baseline), CPU time
    wall_median_ms: dict[str, float]
    wall_extra_ms: dict[str, float]
    min_extra_ms: dict[str, float]  # fastest script run - fastest baseline run, CPU time
    # (library, client) -> median over rounds of (script - `import <client>`), CPU time
    over_client_ms: dict[tuple[str, str], float]


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _summary(times: dict[str, list[float]]) -> tuple[dict[str, float], dict[str, float]]:
    base = times["baseline"]
    medians = {name: statistics.median(values) for name, values in times.items()}
    extra = {
        name: statistics.median(v - b for v, b in zip(values, base, strict=False))
        for name, values in times.items()
    }
    return medians, extra


def scripts(ends: Endpoints) -> dict[str, str]:
    """The ``python -c`` programs, by library (and ``"baseline"``)."""
    credentials = f"{ends.client_id!r}, {ends.client_secret!r}"
    peer_cache = "{module}.OAuth2.token_cache = {module}.JsonTokenFileCache({path!r})\n"
    peer = (
        "import {module}\n"
        + peer_cache
        + "a = {module}.OAuth2ClientCredentials("
        + f"{ends.token_url!r}, {credentials}, audience={ends.audience!r})\n"
        + "{module}.OAuth2.token_cache.get_token("
        + "a.state, early_expiry=a.early_expiry, on_missing_token=a.request_new_token)\n"
    )
    return {
        "baseline": BASELINE_SCRIPT,
        **{f"baseline {client}": script for client, script in CLIENT_BASELINES.items()},
        HOXTON: (
            "from hoxton_auth import HoxtonAuth\n"
            f"HoxtonAuth({credentials}, domain={ends.domain!r}, audience={ends.audience!r})"
            ".get_token()\n"
        ),
        HTTPX_AUTH: peer.format(module="httpx_auth", path=f"{ends.cache_path}.httpx-auth"),
        REQUESTS_AUTH: peer.format(module="requests_auth", path=f"{ends.cache_path}.requests-auth"),
    }


def environment(workdir: Path) -> dict[str, str]:
    """The children's environment: the default cache location, cached bytecode."""
    env = dict(os.environ)
    env.pop("HOXTON_AUTH_CACHE", None)  # the default location, found by platformdirs
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["XDG_CACHE_HOME"] = str(workdir / "xdg-cache")
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return env


def _prime(ends: Endpoints, env: dict[str, str], script: str) -> None:
    """Fill every library's cache once, through the library itself."""
    subprocess.run([sys.executable, "-c", script], env=env, check=True)
    peers.use_peer_file_cache(ends.cache_path)
    import httpx_auth
    import requests_auth

    ha = peers.httpx_auth_auth(ends)
    httpx_auth.OAuth2.token_cache.get_token(ha.state, on_missing_token=ha.request_new_token)
    ra = peers.requests_auth_auth(ends)
    requests_auth.OAuth2.token_cache.get_token(ra.state, on_missing_token=ra.request_new_token)
    peers.use_peer_memory_cache()


def run_cold(server: Any, ends: Endpoints, workdir: Path, rounds: int) -> Cold:
    """Time the scripts; raises if any of them fetched a token."""
    env = environment(workdir)
    programs = scripts(ends)
    _prime(ends, env, programs[HOXTON])
    names = list(programs)
    for name in names * WARMUP_RUNS:
        subprocess.run([sys.executable, "-c", programs[name]], env=env, check=True)
    fetched = server.count()
    cpu: dict[str, list[float]] = {name: [] for name in names}
    wall: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            # Children run one at a time, so the change in the reaped
            # children's CPU time is this one's.
            cpu_before, start = _cpu_of_children(), time.perf_counter()
            subprocess.run([sys.executable, "-c", programs[name]], env=env, check=True)
            wall[name].append((time.perf_counter() - start) * 1000)
            cpu[name].append((_cpu_of_children() - cpu_before) * 1000)
    if server.count() != fetched:
        raise RuntimeError("a cold-process script fetched a token: its cache was not used")
    fastest = min(cpu["baseline"])
    over_client = {
        (name, client): statistics.median(
            v - b for v, b in zip(cpu[name], cpu[f"baseline {client}"], strict=False)
        )
        for name, clients in CLIENTS_OF.items()
        for client in clients
    }
    return Cold(
        *_summary(cpu),
        *_summary(wall),
        {name: min(values) - fastest for name, values in cpu.items()},
        over_client,
    )
