"""The shared file cache across real processes (issue 3).

Every other process is a fresh interpreter running ``tests/_worker.py`` (the
``spawn`` fixture); the token server runs in this process and counts what it
receives. Workers are released together: each prints ``ready`` and blocks on a line from stdin, and
the test writes that line to all of them at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _worker import SILENCE_LIMIT, Worker, digest
from conftest import release_together

from hoxton_auth import CacheEntry, CacheError, FileTokenCache, HoxtonAuth, HoxtonAuthWarning
from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer, cache_key

# A real identity provider answers in about this long (DESIGN.md): shorter
# delays would hide the races a herd runs into in production.
TOKEN_DELAY = 0.1


Spawn = Callable[[str, "dict[str, Any]"], Worker]


@pytest.fixture
def server() -> Iterator[AuthServer]:
    """A local Auth0-compatible server with a realistic token delay."""
    with AuthServer(token_delay=TOKEN_DELAY) as running:
        yield running


@pytest.fixture
def lock_holder(isolated_cache: Path, spawn: Spawn) -> Worker:
    """A worker holding the cache's lock until it is killed or sent ``release``.

    It answers ``release`` with ``released``, once the lock is free.
    """
    holder = spawn("hold", {"cache": str(isolated_cache)})
    holder.expect("locked")
    return holder


def herd_args(server: AuthServer, cache_path: Path, **extra: Any) -> dict[str, Any]:
    """Arguments of the ``herd`` command for the default confidential client."""
    return {
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "domain": server.domain,
        "api_url": server.api_url,
        "cache": str(cache_path),
        **extra,
    }


def seal_if(sealed: bool, request: pytest.FixtureRequest) -> None:
    """Turn sealing on (issue 24: a file-backed keyring, sealing required): the
    single flight and rotation rules must hold alike."""
    if sealed:
        request.getfixturevalue("keyring_home")


@pytest.mark.slow
@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
def test_32_processes_on_an_empty_cache_make_one_token_request(
    server: AuthServer,
    isolated_cache: Path,
    spawn: Spawn,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    sealed: bool,
) -> None:
    seal_if(sealed, request)
    if sealed:  # the access token too: 32 processes race to make the keyring's key
        monkeypatch.setenv("HOXTON_AUTH_SEAL_ACCESS_TOKENS", "1")
    workers = [spawn("herd", herd_args(server, isolated_cache)) for _ in range(32)]

    results = release_together(workers)

    assert server.count() == 1
    assert [result["status"] for result in results] == [200] * 32
    assert len({result["access"] for result in results}) == 1
    assert ('"access_token": "eyJ' in isolated_cache.read_text()) is not sealed


@pytest.mark.slow
@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
def test_8_processes_with_an_expired_token_make_one_refresh_request(
    server: AuthServer,
    isolated_cache: Path,
    spawn: Spawn,
    request: pytest.FixtureRequest,
    sealed: bool,
) -> None:
    seal_if(sealed, request)
    # An earlier run left the cache with a rotated refresh token; every worker
    # is still given the original one, as a cron job's configuration would.
    original = server.mint_refresh_token()
    cache = FileTokenCache(isolated_cache)
    seeder = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        refresh_token=original,
        domain=server.domain,
        cache=cache,
    )
    seeder.get_token()
    key = cache_key(seeder)
    expire_access_token(cache, key)
    rotated = refresh_token_in(cache, key)
    assert rotated != original
    server.token_requests.clear()
    workers = [
        spawn("herd", herd_args(server, isolated_cache, refresh_token=original)) for _ in range(8)
    ]

    results = release_together(workers)

    assert server.count() == 1
    assert server.token_requests[0]["refresh_token"] == rotated
    assert server.reuse_detected == 0
    newest = refresh_token_in(cache, key)
    assert newest not in (original, rotated)
    assert [result["status"] for result in results] == [200] * 8
    assert {result["refresh"] for result in results} == {digest(newest)}
    # The family lives on: the next renewal uses the newest refresh token.
    expire_access_token(cache, key)
    later = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        refresh_token=original,
        domain=server.domain,
        cache=cache,
    )
    later.get_token()
    assert server.token_requests[-1]["refresh_token"] == newest
    assert server.reuse_detected == 0
    # Sealed: no refresh token of the family is in the file in plain text.
    text = isolated_cache.read_text()
    family = [original, rotated, newest, refresh_token_in(cache, key)]
    assert any(token in text for token in family) is not sealed


def expire_access_token(cache: FileTokenCache, key: str) -> None:
    """Make the cached access token look expired, as after a night's sleep."""
    entry = cache.load(key)
    assert entry is not None
    token = dataclasses.replace(entry.token, expires_at=time.time() - 1)
    with cache.lock(key, timeout=10):
        cache.store(key, CacheEntry(token, entry.meta))


def refresh_token_in(cache: FileTokenCache, key: str) -> str:
    """The refresh token the cache holds for ``key``."""
    entry = cache.load(key)
    assert entry is not None
    assert entry.token.refresh_token is not None
    return entry.token.refresh_token


@pytest.mark.slow
def test_a_lock_holder_killed_by_sigkill_does_not_block_the_others(
    server: AuthServer, isolated_cache: Path, spawn: Spawn, lock_holder: Worker
) -> None:
    # A long wait: were the lock not freed by the kernel, these would time out
    # and each fetch a token of its own, which the count below would show.
    args = herd_args(server, isolated_cache, lock_wait_timeout=SILENCE_LIMIT / 2)
    waiters = [spawn("herd", args) for _ in range(3)]
    for waiter in waiters:
        waiter.expect("ready")
    for waiter in waiters:
        waiter.send(repr(time.time()))

    lock_holder.kill()

    results = [waiter.read() for waiter in waiters]
    assert [result["status"] for result in results] == [200] * 3
    assert server.count() == 1


def test_a_stuck_lock_holder_gives_repeatable_grants_a_token_without_the_cache(
    server: AuthServer,
    isolated_cache: Path,
    lock_holder: Worker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = FileTokenCache(isolated_cache, lock_wait_timeout=0.2)
    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=cache)

    with (
        caplog.at_level(logging.WARNING, logger="hoxton_auth"),
        pytest.warns(HoxtonAuthWarning, match="without the cache"),
    ):
        token = auth.get_token()

    assert token
    assert server.count("client_credentials") == 1
    assert any(
        str(cache.lock_path) in r.getMessage() and "without the cache" in r.getMessage()
        for r in caplog.records
    )
    assert cache.entries() == {}  # nothing written without the lock
    lock_holder.send("release")
    lock_holder.expect("released")


def test_a_stuck_lock_holder_never_makes_us_refresh_without_the_lock(
    server: AuthServer, isolated_cache: Path, lock_holder: Worker
) -> None:
    refresh_token = server.mint_refresh_token()
    cache = FileTokenCache(isolated_cache, lock_wait_timeout=0.2)
    auth = HoxtonAuth(
        DEFAULT_CLIENT_ID, refresh_token=refresh_token, domain=server.domain, cache=cache
    )

    with pytest.raises(CacheError) as raised:
        auth.get_token()

    assert str(cache.lock_path) in str(raised.value)
    assert "refresh" in str(raised.value)
    assert refresh_token not in str(raised.value)
    assert server.count() == 0
    with pytest.raises(CacheError, match=str(cache.lock_path)):
        asyncio.run(auth.aget_token())
    assert server.count() == 0
    lock_holder.send("release")
    lock_holder.expect("released")


def test_httpx_async_client_waits_for_the_lock_without_blocking_the_loop(
    server: AuthServer,
    isolated_cache: Path,
    lock_holder: Worker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Long enough that a loop blocked in the wait would show: the ticker below
    # could not run, the holder would never be released, and the wait would
    # end in a timeout and a lockless fetch, with its warning.
    cache = FileTokenCache(isolated_cache, lock_wait_timeout=30)
    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=cache)
    ticks_needed = 20

    async def scenario() -> tuple[int, int]:
        async with httpx.AsyncClient(auth=auth) as client:
            call = asyncio.create_task(client.get(server.api_url))
            ticks = 0
            while not call.done():
                await asyncio.sleep(0.005)
                ticks += 1
                if ticks == ticks_needed:
                    lock_holder.send("release")  # only a running loop gets here
            response = await call
        return ticks, response.status_code

    with caplog.at_level(logging.WARNING, logger="hoxton_auth"):
        ticks, status = asyncio.run(scenario())

    assert status == 200
    assert ticks >= ticks_needed
    lock_holder.expect("released")
    assert server.count() == 1
    assert not [r for r in caplog.records if r.name.startswith("hoxton_auth")]
    assert len(cache.entries()) == 1  # fetched under the lock, so it was stored


@pytest.mark.slow
def test_the_cache_file_always_parses_when_a_writer_is_killed_at_random_moments(
    isolated_cache: Path, spawn: Spawn, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(3)  # noqa: S311  test randomness, not cryptography
    reads = 0
    for _ in range(10):
        writer = spawn("write", {"cache": str(isolated_cache)})
        writer.expect("writing")
        # Reading while the writer runs is the random delay, and proves that
        # readers never see a torn file either.
        for _ in range(rng.randrange(1, 60)):
            json.loads(isolated_cache.read_bytes())
            reads += 1
        writer.kill()

        document = json.loads(isolated_cache.read_bytes())
        assert document["version"] == 1
        with caplog.at_level(logging.WARNING, logger="hoxton_auth"):
            assert len(FileTokenCache(isolated_cache).entries()) == len(document["entries"])
        assert not caplog.records
    assert reads >= 10
