"""Issue 20: renewals nobody waits for. Refresh ahead, in the background, once per fleet.

A token past its refresh-ahead point (about 10 % of its life before its
renewal point) is served at once while one background renewal runs through
the same single flight as every renewal. Real parts only: the embedded
Auth0-compatible server with a slow token endpoint (``token_delay``), real
files, real Redis, real worker processes. The cached token is moved into its
refresh-ahead window by rewriting its times in the cache (its JWT stays valid
at the API), so no test waits for a token to age.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import trio
from _worker import Worker
from conftest import release_together

from hoxton_auth import (
    CacheEntry,
    ConfigError,
    FileTokenCache,
    HoxtonAuth,
    RedisTokenCache,
    TokenCache,
)
from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer

Spawn = Callable[[str, "dict[str, Any]"], Worker]
SLOW = 2.0  # seconds the token endpoint takes to answer a renewal
# A bound on a stream of calls every 50 ms (a count, not a clock: a machine's
# clock may jump): far more than the renewal needs.
MAX_CALLS = int(30 * SLOW / 0.05)


@pytest.fixture
def server(hoxton_auth_server: AuthServer) -> AuthServer:
    return hoxton_auth_server


def digest(token: str) -> str:
    """A token's fingerprint: tokens never reach the test's output."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def into_refresh_ahead_window(cache: TokenCache) -> None:
    """Date the cache's one entry so that it is past its refresh-ahead point, not yet due."""
    ((key, entry),) = cache.entries().items()
    now = time.time()
    # A day-long token with an hour left: its renewal point (60 s before expiry)
    # is an hour away, its refresh-ahead point (~2.4 h before that) has passed.
    token = dataclasses.replace(entry.token, obtained_at=now - 23 * 3600, expires_at=now + 3600)
    with cache.lock(key, 5):
        cache.store(key, CacheEntry(token, entry.meta))


def machine(server: AuthServer, cache: TokenCache, **options: Any) -> HoxtonAuth:
    made: HoxtonAuth = HoxtonAuth(
        DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=cache, **options
    )
    return made


def seeded_in_window(server: AuthServer, cache: TokenCache) -> str:
    """A token in the cache, moved into its refresh-ahead window; its fingerprint."""
    first = digest(machine(server, cache).get_token())
    into_refresh_ahead_window(cache)
    server.token_delay = SLOW
    return first


# -- callers never wait: every transport --------------------------------------------------


@dataclasses.dataclass
class Stream:
    """What a stream of API calls saw: the token each carried and the server's state."""

    calls: list[tuple[str, int, int]] = dataclasses.field(default_factory=list)

    def add(self, authorization: str, status: int, token_requests: int) -> None:
        self.calls.append((digest(authorization.removeprefix("Bearer ")), status, token_requests))

    def renewed(self) -> bool:
        """Whether the last call carried another token than the first."""
        return self.calls[-1][0] != self.calls[0][0]

    def check(self, old: str) -> None:
        statuses = {status for _, status, _ in self.calls}
        assert statuses == {200}, "the API refused a token (expired, or a 401 renewal)"
        # Calls made while the renewal's request was at the slow endpoint carried the
        # old token: they did not wait for it.
        during = [t for t, _, requests_seen in self.calls if requests_seen == 2 and t == old]
        assert len(during) >= 3, f"only {len(during)} calls went on during the renewal"
        assert self.calls[-1][0] != old, "the background renewal never replaced the token"


def stream_sync(server: AuthServer, get: Callable[[], Any]) -> Stream:
    stream = Stream()
    for _ in range(MAX_CALLS):
        response = get()
        stream.add(response.request.headers["Authorization"], response.status_code, server.count())
        if stream.renewed():
            break
        time.sleep(0.05)
    return stream


@pytest.mark.parametrize("transport", ["requests", "httpx"])
def test_sync_callers_never_wait_for_a_renewal(
    server: AuthServer, isolated_cache: Path, transport: str
) -> None:
    cache = FileTokenCache(isolated_cache)
    old = seeded_in_window(server, cache)
    auth = machine(server, cache)

    if transport == "requests":
        with requests.Session() as session:
            stream = stream_sync(server, lambda: session.get(server.api_url, auth=auth, timeout=30))
    else:
        with httpx.Client(auth=auth, timeout=30) as client:
            stream = stream_sync(server, lambda: client.get(server.api_url))

    stream.check(old)
    assert server.count() == 2  # the first token, one background renewal


class AsyncStream:
    """API calls every 50 ms beside an event-loop heartbeat every 10 ms."""

    def __init__(self, server: AuthServer, auth: HoxtonAuth, sleep: Any) -> None:
        self.server, self.auth, self.sleep = server, auth, sleep
        self.stream = Stream()
        self.longest_gap = 0.0  # the heartbeat's longest wait between two beats
        self.done = False

    async def heartbeat(self) -> None:
        last = time.monotonic()
        while not self.done:
            await self.sleep(0.01)
            now = time.monotonic()
            self.longest_gap, last = max(self.longest_gap, now - last), now

    async def calls(self) -> None:
        server, auth = self.server, self.auth
        async with httpx.AsyncClient(auth=auth, timeout=30) as client:
            for _ in range(MAX_CALLS):
                response = await client.get(server.api_url)
                authorization = response.request.headers["Authorization"]
                self.stream.add(authorization, response.status_code, server.count())
                # Stop on a call that carried the renewed token. (Stopping when
                # token_info() first shows it, as this did, raced: the renewal
                # could land between a call with the old token and that look.)
                if self.stream.renewed():
                    break
                await self.sleep(0.05)
        self.done = True


def run_under(library: str, run: AsyncStream) -> None:
    """The stream and its heartbeat, side by side on ``library``'s event loop."""
    if library == "asyncio":

        async def main() -> None:
            beat = asyncio.ensure_future(run.heartbeat())
            await run.calls()
            await beat

        asyncio.run(main())
        return

    async def in_nursery() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run.heartbeat)
            nursery.start_soon(run.calls)

    trio.run(in_nursery)


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_async_callers_never_wait_and_the_loop_never_stalls(
    server: AuthServer, isolated_cache: Path, library: str
) -> None:
    cache = FileTokenCache(isolated_cache)
    old = seeded_in_window(server, cache)
    sleep = asyncio.sleep if library == "asyncio" else trio.sleep
    run = AsyncStream(server, machine(server, cache), sleep)

    run_under(library, run)

    run.stream.check(old)
    assert run.longest_gap < SLOW, "the event loop stalled while the token was renewed"
    assert server.count() == 2


# -- once per fleet: 8 processes on a file, 8 on Redis ------------------------------------


def full_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()  # as tests/_worker.py reports it


def fleet_renews_once(server: AuthServer, spawn: Spawn, cache: TokenCache, where: Any) -> None:
    """8 processes that find the shared token in its refresh-ahead window: each is
    served it at once, and the fleet renews it once, with the rotated refresh token."""
    seed = server.mint_refresh_token()
    auth: dict[str, Any] = {"client_id": DEFAULT_CLIENT_ID}
    auth.update(client_secret=DEFAULT_CLIENT_SECRET, domain=server.domain, refresh_token=seed)
    first = HoxtonAuth(**auth, cache=cache).get_token()
    into_refresh_ahead_window(cache)
    server.token_delay = SLOW
    workers = [spawn("token", {"auth": auth, **where}) for _ in range(8)]

    results = release_together(workers)
    for worker in workers:
        assert worker.proc.wait(60) == 0  # each exits once its background renewal is done

    assert [r["token"] for r in results] == [full_digest(first)] * 8  # served at once
    assert server.count() == 2  # the first token, then ONE renewal for all 8
    assert server.count("refresh_token") == 2
    assert server.reuse_detected == 0
    renewed = HoxtonAuth(**auth, cache=cache).get_token()
    assert digest(renewed) != digest(first), "the fleet's renewal was not stored"
    assert server.count() == 2


@pytest.mark.slow
def test_a_fleet_on_one_file_renews_once_ahead(
    server: AuthServer, spawn: Spawn, isolated_cache: Path
) -> None:
    cache = FileTokenCache(isolated_cache)
    fleet_renews_once(server, spawn, cache, {"cache": str(isolated_cache)})


@pytest.mark.slow
@pytest.mark.redis
def test_a_fleet_on_redis_renews_once_ahead(
    server: AuthServer, spawn: Spawn, redis_url: str
) -> None:
    prefix = f"hoxton-test-{uuid.uuid4().hex[:12]}:"
    cache = RedisTokenCache(redis_url, prefix=prefix)
    try:
        where = {"redis": redis_url, "prefix": prefix, "keep_open": True}
        fleet_renews_once(server, spawn, cache, where)
    finally:
        cache.close()


# -- failures in the background are quiet --------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 503, "headers": {"Retry-After": "1"}},
        {"status": 429, "headers": {"Retry-After": "1"}},
        {"disconnect": True},
    ],
    ids=["503", "429", "network"],
)
def test_a_failed_background_renewal_is_quiet_and_retried_after_the_cooldown(
    server: AuthServer, isolated_cache: Path, fault: dict[str, Any]
) -> None:
    cache = FileTokenCache(isolated_cache)
    old = seeded_in_window(server, cache)
    server.token_delay = 0
    server.fail_next(**fault)
    auth = machine(server, cache, max_attempts=1)

    # filterwarnings = error: any warning fails the test; the old token is served
    # while the renewal fails, and during the shared cooldown nobody asks again.
    assert digest(auth.get_token()) == old
    assert server.wait_for_token_requests(2)
    deadline = time.monotonic() + 30
    while server.count() < 3 and time.monotonic() < deadline:
        assert digest(auth.get_token()) == old
        time.sleep(0.05)
    assert server.count() == 3, "not retried after the cooldown"
    while digest(auth.get_token()) == old and time.monotonic() < deadline:
        time.sleep(0.05)
    assert digest(auth.get_token()) != old, "the retry's token was not used"


# -- interpreter exit during a background renewal -------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("ending", ["normal exit", "killed"])
def test_exit_during_a_background_renewal_leaves_a_consistent_cache(
    server: AuthServer, spawn: Spawn, isolated_cache: Path, ending: str
) -> None:
    cache = FileTokenCache(isolated_cache)
    seed = server.mint_refresh_token()
    auth: dict[str, Any] = {"client_id": DEFAULT_CLIENT_ID}
    auth.update(client_secret=DEFAULT_CLIENT_SECRET, domain=server.domain, refresh_token=seed)
    first = HoxtonAuth(**auth, cache=cache).get_token()
    into_refresh_ahead_window(cache)
    server.token_delay = SLOW
    worker = spawn("token", {"auth": auth, "cache": str(isolated_cache)})

    (result,) = release_together([worker])
    assert result["token"] == full_digest(first)
    assert server.wait_for_token_requests(2)  # its background renewal is at the endpoint
    if ending == "killed":
        worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait(60)

    server.token_delay = 0
    later = HoxtonAuth(**auth, cache=FileTokenCache(isolated_cache))
    token = later.get_token()  # the file reads whole, and its session still works
    if ending == "normal exit":  # the exit waited for the renewal to be stored
        assert digest(token) != digest(first)
        assert server.count() == 2
    assert server.reuse_detected == 0 or ending == "killed"


# -- the setting ---------------------------------------------------------------------------


def test_refresh_ahead_zero_turns_it_off(server: AuthServer, isolated_cache: Path) -> None:
    cache = FileTokenCache(isolated_cache)
    old = seeded_in_window(server, cache)
    server.token_delay = 0
    auth = machine(server, cache, refresh_ahead=0)
    for _ in range(3):
        assert digest(auth.get_token()) == old
    assert not server.wait_for_token_requests(2, timeout=0.5)  # nothing renews it early


def test_the_variable_sets_the_default_and_the_keyword_wins(
    server: AuthServer, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = FileTokenCache(isolated_cache)
    old = seeded_in_window(server, cache)
    server.token_delay = 0
    monkeypatch.setenv("HOXTON_REFRESH_AHEAD", "0")
    assert digest(machine(server, cache).get_token()) == old
    assert not server.wait_for_token_requests(2, timeout=0.5)
    machine(server, cache, refresh_ahead=0.1).get_token()
    assert server.wait_for_token_requests(2)


@pytest.mark.parametrize(("value", "error"), [(0.9, "from 0 .off. to 0.5"), (-1, ">= 0")])
def test_a_bad_refresh_ahead_is_a_config_error(value: float, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, refresh_ahead=value, cache=None)


def test_a_bad_refresh_ahead_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOXTON_REFRESH_AHEAD", "ten percent")
    with pytest.raises(ConfigError, match="HOXTON_REFRESH_AHEAD"):
        HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, cache=None)


def test_the_cli_never_renews_in_the_background(server: AuthServer, isolated_cache: Path) -> None:
    cache = FileTokenCache(isolated_cache)
    old = seeded_in_window(server, cache)
    server.token_delay = 0
    env = {
        "HOXTON_CLIENT_ID": DEFAULT_CLIENT_ID,
        "HOXTON_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "HOXTON_AUTH_DOMAIN": server.domain,
        "HOXTON_AUTH_CACHE": str(isolated_cache),
    }
    for command in (["token"], ["token", "--json"]):  # the cached path, and the full one
        result = subprocess.run(
            [sys.executable, "-m", "hoxton_auth", *command],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        printed = result.stdout.strip()
        token = json.loads(printed)["access_token"] if printed.startswith("{") else printed
        assert digest(token) == old
    assert server.count() == 1  # the fresh-enough token was printed; nothing renewed it
