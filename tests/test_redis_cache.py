"""``RedisTokenCache`` against a real ``redis-server`` (issue 7).

The Redis comes from ``$HOXTON_TEST_REDIS_URL`` (CI starts one), else the
``redis_url`` fixture (``conftest.py``) starts its own ``redis-server`` on a
free loopback port in a temporary directory. Without the binary the tests
skip, unless ``$HOXTON_TEST_REQUIRE_REDIS`` is set (CI): then they fail.

Every test writes under its own key prefix, so tests never see each other's
entries on a shared server. Fleets are real interpreters
(``tests/_worker.py token``, the ``spawn`` fixture), each with its own Redis
client, released together once all of them are ready.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from _worker import Worker
from conftest import RedisServer, free_port, release_together

from hoxton_auth import (
    CacheEntry,
    CacheError,
    CacheLockTimeoutError,
    CacheUnavailableError,
    HoxtonAuth,
    HoxtonAuthWarning,
    RedisTokenCache,
    Token,
)
from hoxton_auth.testing import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    AuthServer,
    cache_key,
)

pytestmark = pytest.mark.redis

Spawn = Callable[[str, "dict[str, Any]"], Worker]


@pytest.fixture
def prefix() -> str:
    return f"hoxton-test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def make_cache(prefix: str) -> Iterator[Callable[..., RedisTokenCache]]:
    """Build caches under this test's prefix; all closed at the end."""
    made: list[RedisTokenCache] = []

    def make(url: str, **options: Any) -> RedisTokenCache:
        cache = RedisTokenCache(url, prefix=prefix, **options)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client to look at what the cache wrote."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def auth_server() -> Iterator[AuthServer]:
    # ~100 ms per token request, like a real tenant: races that exist in
    # production stay visible (DESIGN.md, "Notes for measuring").
    with AuthServer(token_delay=0.1) as server:
        yield server


def _client_auth(server: AuthServer, cache: RedisTokenCache, **options: Any) -> HoxtonAuth:
    made: HoxtonAuth = HoxtonAuth(
        DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=cache, **options
    )
    return made


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- a fleet of processes -----------------------------------------------------------


def _herd(spawn: Spawn, count: int, config: dict[str, Any]) -> list[str]:
    workers = [spawn("token", config) for _ in range(count)]
    return [result["token"] for result in release_together(workers)]


@pytest.mark.slow
def test_sixteen_processes_make_one_token_request(
    redis_url: str, prefix: str, auth_server: AuthServer, spawn: Spawn
) -> None:
    config = {
        "redis": redis_url,
        "prefix": prefix,
        "lock_timeout": 15.0,
        "auth": {
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "domain": auth_server.domain,
        },
    }
    digests = _herd(spawn, 16, config)
    assert auth_server.count() == 1
    assert len(set(digests)) == 1


@pytest.mark.slow
def test_eight_processes_share_one_refresh_of_a_rotated_token(
    redis_url: str,
    prefix: str,
    auth_server: AuthServer,
    spawn: Spawn,
    make_cache: Callable[..., RedisTokenCache],
) -> None:
    original = auth_server.mint_refresh_token()
    seeded: dict[str, Any] = {
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "refresh_token": original,
        "domain": auth_server.domain,
    }
    # One run rotates the original; the cache now holds its successor, and an
    # access token nobody may use any more.
    first = HoxtonAuth(cache=make_cache(redis_url), **seeded)
    first.get_token()
    first.invalidate()
    assert auth_server.count("refresh_token") == 1

    # Eight cron-style processes that all still pass the ORIGINAL token.
    config = {"redis": redis_url, "prefix": prefix, "lock_timeout": 15.0, "auth": seeded}
    digests = _herd(spawn, 8, config)

    assert auth_server.count("refresh_token") == 2
    assert auth_server.count() == 2
    assert auth_server.reuse_detected == 0
    assert len(set(digests)) == 1
    # The shared token is the live one: the API accepts it.
    later = HoxtonAuth(cache=make_cache(redis_url), **seeded)
    assert _digest(later.get_token()) == digests[0]
    assert requests.get(auth_server.api_url, auth=later, timeout=30).status_code == 200
    assert auth_server.count() == 2


@pytest.mark.slow
def test_a_killed_lock_holder_blocks_others_only_until_the_lock_timeout(
    redis_url: str,
    prefix: str,
    raw: redis.Redis,
    make_cache: Callable[..., RedisTokenCache],
    caplog: pytest.LogCaptureFixture,
    spawn: Spawn,
    auth_server: AuthServer,
) -> None:
    holder_dead = threading.Event()
    answer: dict[str, Any] = {"status": 200, "headers": {"Content-Type": "application/json"}}
    # The holder's request is kept unanswered (inside the lock) until it is killed.
    body = {"access_token": "token-1", "token_type": "Bearer", "expires_in": 3600}
    auth_server.fail_next(**answer, body=body, hold=holder_dead)
    auth_server.fail_next(**answer, body={**body, "access_token": "token-2"})
    domain = auth_server.domain
    options: dict[str, Any] = {
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
    }
    # A short fetch deadline: if the dead holder's lock never expired, our
    # wait would end after ~25 s in a lockless fetch with a warning.
    options.update(domain=domain, timeout=5.0, retry_deadline=5.0)
    config = {"redis": redis_url, "prefix": prefix, "lock_timeout": 1.0, "auth": options}
    holder = spawn("token", config)
    try:
        holder.expect("ready")
        holder.send("go")
        assert auth_server.wait_for_token_requests(1, timeout=60)
        [lock_key] = raw.keys(prefix + "lock:*")
        assert 0 < raw.pttl(lock_key) <= 1000  # a TTL: a dead holder cannot block forever
        holder.kill()  # SIGKILL
    finally:
        holder_dead.set()

    caplog.set_level(logging.WARNING, logger="hoxton_auth")
    auth = HoxtonAuth(cache=make_cache(redis_url, lock_timeout=1.0), **options)
    assert auth.get_token() == "token-2"
    assert auth_server.count() == 2
    assert not caplog.records  # it went through the lock, not around it
    assert raw.keys(prefix + "lock:*") == []


# -- Redis unreachable --------------------------------------------------------------


def test_redis_stopped_mid_run_calls_succeed_then_recover(
    own_redis: RedisServer,
    auth_server: AuthServer,
    make_cache: Callable[..., RedisTokenCache],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = make_cache(own_redis.url)
    first = _client_auth(auth_server, cache)
    first.get_token()
    assert auth_server.count() == 1

    own_redis.stop()
    caplog.set_level(logging.WARNING, logger="hoxton_auth")
    assert first.get_token()  # in memory: Redis is not needed
    second = _client_auth(auth_server, cache)
    with pytest.warns(HoxtonAuthWarning, match="fetching tokens directly"):
        assert requests.get(auth_server.api_url, auth=second, timeout=30).status_code == 200
    # Said once (filterwarnings=error would fail a second one), however many objects.
    assert _client_auth(auth_server, cache).get_token()
    # Another cache object for the same Redis (as HOXTON_AUTH_CACHE makes for
    # each auth object): its warning is the same location's, so not repeated.
    assert asyncio.run(_client_auth(auth_server, make_cache(own_redis.url)).aget_token())
    assert auth_server.count() == 4  # each fetched directly
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # rate-limited
    assert "fetching tokens directly" in warnings[0]
    assert "127.0.0.1" in warnings[0]

    own_redis.start()  # empty: nothing was persisted
    _client_auth(auth_server, cache).get_token()
    assert auth_server.count() == 5
    assert len(cache.entries()) == 1  # shared through Redis again...
    _client_auth(auth_server, make_cache(own_redis.url)).get_token()
    assert auth_server.count() == 5  # ...by a fresh client too


def test_a_silent_redis_times_out_into_a_direct_fetch(
    auth_server: AuthServer, make_cache: Callable[..., RedisTokenCache]
) -> None:
    # Accepts connections (the kernel's backlog) and never answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        cache = make_cache(f"redis://127.0.0.1:{port}/0", socket_timeout=0.3)
        with pytest.raises(CacheUnavailableError, match="TimeoutError"):
            cache.load("anything")
        # For a while no call waits for it again: straight to a direct fetch.
        with pytest.raises(CacheUnavailableError, match="not waiting for it again"):
            cache.load("anything")
        with pytest.warns(HoxtonAuthWarning, match="fetching tokens directly"):
            assert _client_auth(auth_server, cache).get_token()
        cache.close()
    assert auth_server.count() == 1


def test_no_refresh_without_redis(
    auth_server: AuthServer, make_cache: Callable[..., RedisTokenCache]
) -> None:
    # The newest refresh token is in Redis: refreshing with an older one would
    # make the server revoke the login, so the call fails instead.
    cache = make_cache(f"redis://127.0.0.1:{free_port()}/0")
    auth = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        refresh_token=auth_server.mint_refresh_token(),
        domain=auth_server.domain,
        cache=cache,
    )
    with pytest.raises(CacheError, match="not refreshing without the shared cache"):
        auth.get_token()
    with pytest.raises(CacheError, match="not refreshing without the shared cache"):
        asyncio.run(auth.aget_token())
    assert auth_server.count() == 0


# -- what is stored, and for how long ---------------------------------------------------


def test_entries_expire_with_the_token(
    redis_url: str,
    prefix: str,
    auth_server: AuthServer,
    raw: redis.Redis,
    make_cache: Callable[..., RedisTokenCache],
) -> None:
    auth = _client_auth(auth_server, make_cache(redis_url))
    auth.get_token()
    [key] = raw.keys(prefix + "token:*")
    life_ms = 86_400 * 1000  # AuthServer's token_lifetime
    assert life_ms - 60_000 < raw.pttl(key) <= life_ms
    auth.invalidate()  # nothing left worth keeping: only a short linger
    assert 0 < raw.pttl(key) <= 60_000


def test_entries_with_a_refresh_token_outlive_the_access_token(
    redis_url: str,
    prefix: str,
    auth_server: AuthServer,
    raw: redis.Redis,
    make_cache: Callable[..., RedisTokenCache],
) -> None:
    auth_server.token_lifetime = 3600
    week = 7 * 86_400
    cache = make_cache(redis_url, refresh_token_ttl=week)
    auth = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        refresh_token=auth_server.mint_refresh_token(),
        domain=auth_server.domain,
        cache=cache,
    )
    auth.get_token()
    [key] = raw.keys(prefix + "token:*")
    assert (week - 60) * 1000 < raw.pttl(key) <= week * 1000
    auth.invalidate()  # the access token goes, the refresh token stays
    assert (week - 60) * 1000 < raw.pttl(key) <= week * 1000
    [entry] = cache.entries().values()
    assert entry.token.access_token == ""
    assert entry.token.refresh_token


def test_a_spent_entry_lingers_briefly_for_its_meta(
    redis_url: str, raw: redis.Redis, prefix: str, make_cache: Callable[..., RedisTokenCache]
) -> None:
    # A holder whose fetch failed leaves a note for those who waited (issue 5).
    cache = make_cache(redis_url)
    spent = Token("", expires_at=0.0, obtained_at=0.0)
    cache.store("k", CacheEntry(spent, {"last_failure": "{}"}))
    assert 0 < raw.pttl(prefix + "token:k") <= 60_000
    assert cache.load("k") == CacheEntry(spent, {"last_failure": "{}"})


def test_entries_lists_this_prefix_only_and_skips_damaged_ones(
    redis_url: str, raw: redis.Redis, prefix: str, make_cache: Callable[..., RedisTokenCache]
) -> None:
    cache = make_cache(redis_url)
    now = time.time()
    token = Token("access", expires_at=now + 3600, obtained_at=now)
    with cache.lock("a", timeout=5):
        cache.store("a", CacheEntry(token, {"client_id": "one"}))
    cache.store("b", CacheEntry(token, {"client_id": "two"}))
    raw.set(prefix + "token:broken", b"{not json")
    raw.set("other-" + prefix + "token:c", b"{}")
    with pytest.warns(HoxtonAuthWarning, match="entry broken skipped"):  # issue 11
        entries = cache.entries()
    assert sorted(entries) == ["a", "b"]
    assert entries["a"].meta == {"client_id": "one"}
    assert cache.load("a") == entries["a"]
    assert cache.load("broken") is None
    cache.delete("a")
    assert cache.load("a") is None
    raw.delete("other-" + prefix + "token:c")


def test_a_deeply_nested_value_is_damage_a_miss_with_a_warning(
    redis_url: str,
    raw: redis.Redis,
    prefix: str,
    make_cache: Callable[..., RedisTokenCache],
    auth_server: AuthServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Issue 11 item 8: json.loads raised RecursionError out of get_token().
    first = _client_auth(auth_server, make_cache(redis_url))
    first.get_token()
    [name] = raw.keys(prefix + "token:*")
    raw.set(name, b"[" * 100_000)
    caplog.set_level(logging.WARNING, logger="hoxton_auth")

    later = _client_auth(auth_server, make_cache(redis_url))
    with pytest.warns(HoxtonAuthWarning, match="skipped"):  # seen without logging (issue 11)
        assert later.get_token()

    assert auth_server.count() == 2  # a miss: the token was fetched again
    assert any("skipped" in r.getMessage() for r in caplog.records)
    key = (name.decode() if isinstance(name, bytes) else name)[len(prefix + "token:") :]
    assert key in make_cache(redis_url).entries()  # and rewritten valid


def test_no_secret_reaches_redis_or_the_log(
    redis_url: str,
    auth_server: AuthServer,
    raw: redis.Redis,
    make_cache: Callable[..., RedisTokenCache],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="hoxton_auth")
    url = redis_url.replace("redis://", "redis://default:unused-redis-password@", 1)
    cache = make_cache(redis_url)
    _client_auth(auth_server, cache).get_token()
    HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        username=DEFAULT_USERNAME,
        password=DEFAULT_PASSWORD,
        scope="openid offline_access",
        domain=auth_server.domain,
        cache=cache,
    ).get_token()
    assert "unused-redis-password" not in repr(RedisTokenCache(url))

    stored = []
    for name in raw.scan_iter(count=1000):
        stored.append(name)
        if raw.type(name) == b"string":
            stored.append(raw.get(name) or b"")
    assert any(b"access_token" in value for value in stored)  # the scan saw our entries
    for secret in (DEFAULT_CLIENT_SECRET, DEFAULT_PASSWORD):
        assert not any(secret.encode() in value for value in stored)
        assert secret not in caplog.text


def test_an_unreachable_redis_url_keeps_its_password_out_of_errors(
    make_cache: Callable[..., RedisTokenCache],
) -> None:
    cache = make_cache(f"redis://user:p4ss-w0rd@127.0.0.1:{free_port()}/0")
    assert "p4ss-w0rd" not in repr(cache)
    with pytest.raises(CacheUnavailableError) as caught:
        cache.load("key")
    assert "p4ss-w0rd" not in str(caught.value)


# -- the hot path -----------------------------------------------------------------


def _commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def test_the_hot_path_makes_no_redis_round_trip(
    own_redis: RedisServer, auth_server: AuthServer, make_cache: Callable[..., RedisTokenCache]
) -> None:
    auth = _client_auth(auth_server, make_cache(own_redis.url))
    auth.get_token()
    with redis.Redis.from_url(own_redis.url) as observer:
        before = _commands(observer)
        for _ in range(200):
            auth.get_token()
        with requests.Session() as session:
            for _ in range(5):
                assert session.get(auth_server.api_url, auth=auth, timeout=30).ok
        asyncio.run(auth.aget_token())
        assert _commands(observer) == before


# -- locking --------------------------------------------------------------------------


def test_a_held_lock_times_out_waiters(
    redis_url: str, make_cache: Callable[..., RedisTokenCache]
) -> None:
    holder, waiter = make_cache(redis_url, lock_timeout=1.0), make_cache(redis_url)
    with holder.lock("k", timeout=5):
        # Held past its own timeout: the heartbeat keeps a live holder's lock.
        threading.Event().wait(2.5)
        with pytest.raises(CacheLockTimeoutError, match="lock:k"), waiter.lock("k", timeout=0.2):
            pass  # pragma: no cover
    with waiter.lock("k", timeout=0.2):  # released on exit
        pass


def test_async_single_flight_across_clients(
    redis_url: str, auth_server: AuthServer, make_cache: Callable[..., RedisTokenCache]
) -> None:
    async def main() -> list[str]:
        auths = [_client_auth(auth_server, make_cache(redis_url)) for _ in range(4)]
        return await asyncio.gather(*(auth.aget_token() for auth in auths))

    tokens = asyncio.run(main())
    assert len(set(tokens)) == 1
    assert auth_server.count() == 1


def test_a_cancelled_waiter_never_keeps_the_lock(
    redis_url: str, auth_server: AuthServer, make_cache: Callable[..., RedisTokenCache]
) -> None:
    cache = make_cache(redis_url)  # lock TTL 15 s: a leaked lock would outlast the check
    auth = _client_auth(auth_server, cache)
    key = cache_key(auth)
    release = threading.Event()

    async def main() -> None:
        task = asyncio.ensure_future(auth.aget_token())
        await asyncio.sleep(0.05)  # the task waits for the lock, in a worker thread
        task.cancel()
        release.set()  # the holder lets go; the worker thread finishes its fetch
        with pytest.raises(asyncio.CancelledError):
            await task

    holder = make_cache(redis_url)
    with holder.lock(key, timeout=5):
        waiting = threading.Thread(target=asyncio.run, args=(main(),))
        waiting.start()
        release.wait(10)
    waiting.join(30)
    assert not waiting.is_alive()
    with make_cache(redis_url).lock(key, timeout=5):
        pass


# -- selecting and installing -------------------------------------------------------------


def test_redis_urls_select_the_redis_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # No server needed: the client connects on first use.
    by_argument = HoxtonAuth(
        DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, cache="rediss://cache.internal:6380/2"
    )
    assert repr(by_argument.cache) == (
        "RedisTokenCache('rediss://cache.internal:6380/2', prefix='hoxton-auth:')"
    )
    monkeypatch.setenv("HOXTON_AUTH_CACHE", "redis://127.0.0.1:6379/3")
    by_environment = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
    assert isinstance(by_environment.cache, RedisTokenCache)
    assert repr(by_environment.cache) == (
        "RedisTokenCache('redis://127.0.0.1:6379/3', prefix='hoxton-auth:')"
    )
    for auth in (by_argument, by_environment):
        assert isinstance(auth.cache, RedisTokenCache)
        auth.cache.close()


@pytest.mark.parametrize("option", ["lock_timeout", "refresh_token_ttl", "socket_timeout"])
def test_bad_options_are_refused(option: str) -> None:
    options: dict[str, Any] = {option: 0}
    with pytest.raises(ValueError, match=f"{option} must be positive"):
        RedisTokenCache("redis://127.0.0.1:6379/0", **options)


def test_a_given_client_is_used_as_is(redis_url: str, prefix: str, raw: redis.Redis) -> None:
    cache = RedisTokenCache(raw, prefix=prefix)
    assert cache.client is raw
    assert "redis client 127.0.0.1:" in repr(cache)
    now = time.time()
    cache.store("k", CacheEntry(Token("access", expires_at=now + 60, obtained_at=now), {}))
    assert raw.exists(prefix + "token:k") == 1
    cache.delete("k")


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )


def test_import_does_not_load_redis() -> None:
    result = _run_python(
        "import sys, hoxton_auth\n"
        "assert 'redis' not in sys.modules\n"
        "assert 'RedisTokenCache' in hoxton_auth.__all__\n"
        "print(hoxton_auth.RedisTokenCache.__name__)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "RedisTokenCache"


def test_without_redis_py_the_error_says_how_to_install_it() -> None:
    result = _run_python(
        "import sys\n"
        "sys.modules['redis'] = None  # as if redis-py were not installed\n"
        "import hoxton_auth\n"
        "for make in (lambda: hoxton_auth.RedisTokenCache('redis://localhost/0'),\n"
        "             lambda: hoxton_auth.HoxtonAuth('id', 's', cache='redis://localhost/0')):\n"
        "    try:\n"
        "        make()\n"
        "    except ImportError as exc:\n"
        "        print(exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.splitlines()
        == [
            'RedisTokenCache needs redis-py: pip install "redis>=4.5" '
            '(hoxton-auth is not on PyPI yet; in its checkout: pip install -e ".[redis]")'
        ]
        * 2
    )


def test_an_asyncio_client_is_refused() -> None:
    import redis.asyncio

    async def build_and_refuse() -> None:
        client = redis.asyncio.Redis.from_url("redis://127.0.0.1:6379/0")
        with pytest.raises(ValueError, match=r"blocking client \(redis.Redis\)"):
            RedisTokenCache(client)  # type: ignore[arg-type]  # the mistake under test

    asyncio.run(build_and_refuse())
