"""Unit tests of the caches: MemoryTokenCache and FileTokenCache on real files.

Cross-process behaviour (herds, SIGKILL, stuck holders) is in
``test_cross_process.py``; how the token manager uses a cache is in
``test_manager.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from hoxton_auth import (
    CacheEntry,
    CacheError,
    ConfigError,
    FileTokenCache,
    HoxtonAuth,
    HoxtonAuthWarning,
    MemoryTokenCache,
    Token,
)
from hoxton_auth._cache import CacheLockTimeoutError, CacheUnavailableError, cache_key
from hoxton_auth._file_cache import FORMAT_MARKER, FORMAT_VERSION, STALE_TEMP_AFTER
from hoxton_auth.testing import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    AuthServer,
)

KEY = cache_key("https://auth.example/oauth/token", "client", "aud", "client_credentials", "")
OTHER_KEY = cache_key("https://auth.example/oauth/token", "other", "aud", "client_credentials", "")
META = {"client_id": "client", "grant": "client_credentials"}


def make_entry(
    access_token: str = "access-1",  # noqa: S107  a made-up token for the test
    *,
    refresh_token: str | None = None,
    expires_in: float = 3600.0,
    age: float = 0.0,
) -> CacheEntry:
    """An entry obtained ``age`` seconds ago that lives ``expires_in`` seconds."""
    obtained_at = time.time() - age
    token = Token(
        access_token=access_token,
        expires_at=obtained_at + expires_in,
        obtained_at=obtained_at,
        refresh_token=refresh_token,
    )
    return CacheEntry(token, META)


def write_document(path: Path, entries: dict[str, CacheEntry], version: object = 1) -> None:
    """A cache file as FileTokenCache writes it, bypassing it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "version": version,
        "entries": {
            key: {"meta": dict(entry.meta), "token": entry.token.to_dict()}
            for key, entry in entries.items()
        },
    }
    path.write_text(json.dumps(document, indent=1, sort_keys=True))
    path.chmod(0o600)


def write_private(path: Path, content: bytes) -> None:
    """Write ``content`` as a 0600 file, creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(0o600)


# -- keys ---------------------------------------------------------------------------


def test_cache_key_is_a_stable_hash_of_the_whole_identity() -> None:
    key = cache_key("https://auth/oauth/token", "client", "aud", "password:alice", "read")

    assert key == cache_key("https://auth/oauth/token", "client", "aud", "password:alice", "read")
    assert len(key) == 32
    assert int(key, 16) >= 0
    assert "alice" not in key
    assert key != cache_key("https://auth/oauth/token", "client", "aud", "password:bob", "read")
    # Parts are separated, not just concatenated.
    assert cache_key("ab", "c") != cache_key("a", "bc")


# -- MemoryTokenCache -----------------------------------------------------------------


def test_memory_cache_stores_loads_and_deletes() -> None:
    cache = MemoryTokenCache()
    entry = make_entry()

    cache.store(KEY, entry)

    assert cache.load(KEY) == entry
    assert cache.entries() == {KEY: entry}
    assert "access-1" not in repr(cache)
    cache.delete(KEY)
    cache.delete(KEY)
    assert cache.load(KEY) is None


def test_memory_cache_lock_times_out_while_another_thread_holds_it() -> None:
    cache = MemoryTokenCache()
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with cache.lock(KEY, timeout=5):
            held.set()
            release.wait()

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait()
    try:
        with pytest.raises(CacheLockTimeoutError), cache.lock(KEY, timeout=0.01):
            pass  # pragma: no cover  never entered
        with cache.lock(OTHER_KEY, timeout=0.01):
            pass  # another key has its own lock
    finally:
        release.set()
        thread.join()
    with cache.lock(KEY, timeout=0.01):
        pass


def test_memory_cache_async_lock_times_out_and_works_again() -> None:
    cache = MemoryTokenCache()

    async def scenario() -> CacheEntry | None:
        async with cache.alock(KEY, timeout=1):
            with pytest.raises(CacheLockTimeoutError):
                async with cache.alock(KEY, timeout=0.02):
                    pass  # pragma: no cover  never entered
            await cache.astore(KEY, make_entry())
        async with cache.alock(KEY, timeout=0.02):
            loaded = await cache.aload(KEY)
            await cache.adelete(KEY)
        return loaded

    assert asyncio.run(scenario()) is not None
    assert cache.load(KEY) is None


# -- FileTokenCache: location ------------------------------------------------------


def test_location_is_the_argument_then_the_environment_then_the_user_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path
) -> None:
    assert FileTokenCache().path == isolated_cache
    assert FileTokenCache(tmp_path / "given.json").path == tmp_path / "given.json"
    assert HoxtonAuth("c", "s").cache.path == isolated_cache  # type: ignore[attr-defined]  # a FileTokenCache
    given = HoxtonAuth("c", "s", cache=tmp_path / "given.json")
    assert given.cache.path == tmp_path / "given.json"  # type: ignore[attr-defined]  # a FileTokenCache

    monkeypatch.delenv("HOXTON_AUTH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    expected = tmp_path / "xdg" / "hoxton-auth" / "tokens.json"
    if sys.platform.startswith("linux"):
        assert FileTokenCache().path == expected
        assert HoxtonAuth("c", "s").cache.path == expected  # type: ignore[attr-defined]  # a FileTokenCache
    assert FileTokenCache().path.parts[-2:] == ("hoxton-auth", "tokens.json")


def test_a_relative_path_is_fixed_when_the_cache_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cache = FileTokenCache("tokens.json")
    monkeypatch.chdir("/")

    assert cache.path == tmp_path / "tokens.json"
    assert cache.lock_path == tmp_path / "tokens.json.lock"


def test_lock_wait_timeout_must_be_a_finite_number() -> None:
    assert FileTokenCache(lock_wait_timeout=0).lock_wait_timeout == 0
    for bad in (-1, float("inf"), float("nan"), "5", True):
        with pytest.raises(ConfigError, match="lock_wait_timeout"):
            FileTokenCache(lock_wait_timeout=bad)  # type: ignore[arg-type]  # wrong on purpose


# -- FileTokenCache: permissions and secrets ------------------------------------------


def test_directory_is_created_0700_and_files_0600_whatever_the_umask(
    isolated_cache: Path,
) -> None:
    cache = FileTokenCache(isolated_cache)
    old_umask = os.umask(0)
    try:
        with cache.lock(KEY, timeout=1):
            cache.store(KEY, make_entry())
    finally:
        os.umask(old_umask)

    assert stat.S_IMODE(isolated_cache.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(isolated_cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.lock_path.stat().st_mode) == 0o600
    assert cache.lock_path.exists()  # never deleted: waiters must share one inode


def test_a_cache_file_open_to_others_is_tightened_with_a_warning(
    isolated_cache: Path, warnings_log: pytest.LogCaptureFixture
) -> None:
    write_document(isolated_cache, {KEY: make_entry()})
    isolated_cache.chmod(0o644)

    with pytest.warns(HoxtonAuthWarning, match="tightened to 0600"):
        entry = FileTokenCache(isolated_cache).load(KEY)

    assert entry is not None
    assert stat.S_IMODE(isolated_cache.stat().st_mode) == 0o600
    [record] = warnings_log.records
    assert str(isolated_cache) in record.getMessage()
    assert "644" in record.getMessage()


def test_no_secret_or_password_is_written_to_disk(
    hoxton_auth_server: AuthServer, isolated_cache: Path
) -> None:
    domain = hoxton_auth_server.domain
    password_auth = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        username=DEFAULT_USERNAME,
        password=DEFAULT_PASSWORD,
        scope="openid offline_access",
        domain=domain,
    )
    machine_auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=domain)
    password_auth.get_token()
    machine_auth.get_token()

    files = list(isolated_cache.parent.iterdir())
    assert isolated_cache in files
    everything = b"".join(path.read_bytes() for path in files)
    for secret in (DEFAULT_CLIENT_SECRET, DEFAULT_PASSWORD):
        assert secret.encode() not in everything
    entries = FileTokenCache(isolated_cache).entries()
    assert len(entries) == 2
    for key, entry in entries.items():
        assert len(key) == 32
        assert DEFAULT_CLIENT_ID not in key
        assert entry.token.access_token.encode() in everything  # tokens are what it is for


# -- FileTokenCache: writing -------------------------------------------------------------


def test_a_write_replaces_the_file_instead_of_rewriting_it(isolated_cache: Path) -> None:
    cache = FileTokenCache(isolated_cache)
    with cache.lock(KEY, timeout=1):
        cache.store(KEY, make_entry("old"))
    with open(isolated_cache, "rb") as old_file:
        with cache.lock(KEY, timeout=1):
            cache.store(KEY, make_entry("new"))
        # Whoever had the old file open still reads the old document, whole.
        assert json.loads(old_file.read())["entries"][KEY]["token"]["access_token"] == "old"
    loaded = cache.load(KEY)
    assert loaded is not None
    assert loaded.token.access_token == "new"
    # No temporary file is left behind.
    assert {p.name for p in isolated_cache.parent.iterdir()} == {"tokens.json", "tokens.json.lock"}


def test_temporary_files_left_by_dead_writers_are_removed(isolated_cache: Path) -> None:
    isolated_cache.parent.mkdir(parents=True)
    stale = isolated_cache.parent / ".tokens.json.dead1234.tmp"
    recent = isolated_cache.parent / ".tokens.json.live5678.tmp"
    for path in (stale, recent):
        path.write_text("{")
    long_ago = time.time() - STALE_TEMP_AFTER - 60
    os.utime(stale, (long_ago, long_ago))
    cache = FileTokenCache(isolated_cache)

    with cache.lock(KEY, timeout=1):
        cache.store(KEY, make_entry())

    assert not stale.exists()
    assert recent.exists()


def test_dead_entries_are_pruned_on_write_and_live_ones_kept(isolated_cache: Path) -> None:
    day = 24 * 3600.0
    entries = {
        cache_key("expired long ago"): make_entry(age=3 * day, expires_in=day),
        cache_key("expired just now"): make_entry(age=2 * 3600, expires_in=3600),
        cache_key("refreshable"): make_entry(refresh_token="r", age=30 * day, expires_in=day),
        cache_key("refresh token too old"): make_entry(refresh_token="r", age=401 * day),
        cache_key("fresh"): make_entry(),
    }
    write_document(isolated_cache, entries)
    cache = FileTokenCache(isolated_cache)

    with cache.lock(KEY, timeout=1):
        cache.store(KEY, make_entry())

    assert set(cache.entries()) == {
        KEY,
        cache_key("expired just now"),
        cache_key("refreshable"),
        cache_key("fresh"),
    }


def test_delete_removes_one_entry_and_keeps_the_others(isolated_cache: Path) -> None:
    write_document(isolated_cache, {KEY: make_entry(), OTHER_KEY: make_entry("other")})
    cache = FileTokenCache(isolated_cache)

    with cache.lock(KEY, timeout=1):
        cache.delete(KEY)
        cache.delete(KEY)

    assert set(cache.entries()) == {OTHER_KEY}


def test_deleting_from_an_absent_file_creates_nothing(isolated_cache: Path) -> None:
    cache = FileTokenCache(isolated_cache)

    cache.delete(KEY)

    assert not isolated_cache.exists()


def test_async_methods_use_the_same_file(isolated_cache: Path) -> None:
    cache = FileTokenCache(isolated_cache)

    async def scenario() -> CacheEntry | None:
        async with cache.alock(KEY, timeout=1):
            await cache.astore(KEY, make_entry("async"))
        loaded = await cache.aload(KEY)
        async with cache.alock(KEY, timeout=1):
            await cache.adelete(KEY)
        return loaded

    loaded = asyncio.run(scenario())
    assert loaded is not None
    assert loaded.token.access_token == "async"
    assert cache.entries() == {}


# -- FileTokenCache: damaged files ------------------------------------------------------


def valid_document_text(entries: dict[str, CacheEntry]) -> str:
    """The exact text FileTokenCache writes for ``entries``."""
    document = {
        "format": FORMAT_MARKER,
        "version": FORMAT_VERSION,
        "entries": {
            key: {"meta": dict(entry.meta), "token": entry.token.to_dict()}
            for key, entry in sorted(entries.items())
        },
    }
    return json.dumps(document, indent=1)


KEPT = cache_key("kept")
LOST = cache_key("lost")
GOOD_TEXT = valid_document_text({KEPT: make_entry("kept"), LOST: make_entry("lost")})
DAMAGED = {
    "empty": ("", set()),
    "blank": ("\n  \n", set()),
    # Cut inside the second entry (keys are sorted, so KEPT/LOST order is fixed).
    "truncated": (GOOD_TEXT[: GOOD_TEXT.index('"' + max(KEPT, LOST)) + 60], {min(KEPT, LOST)}),
    "legacy 0.1 file, truncated": ('{"version": 1, "entries": {"abc', set()),
    "entries not an object": (
        json.dumps({"format": FORMAT_MARKER, "version": 1, "entries": []}),
        set(),
    ),
}
# Entries this version cannot read: skipped, but written back as they were
# (they may belong to a newer hoxton-auth).
UNREADABLE_ENTRIES = {
    "one bad entry": GOOD_TEXT.replace('"access_token": "lost"', '"access_token": 42'),
    "one entry of the wrong shape": json.dumps(
        {
            "format": FORMAT_MARKER,
            "version": 1,
            "entries": {**json.loads(GOOD_TEXT)["entries"], LOST: []},
        }
    ),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_a_damaged_file_loses_only_what_cannot_be_read_and_is_rewritten_valid(
    case: str, isolated_cache: Path, warnings_log: pytest.LogCaptureFixture
) -> None:
    text, readable = DAMAGED[case]
    write_private(isolated_cache, text.encode("latin-1"))
    cache = FileTokenCache(isolated_cache)

    with pytest.warns(HoxtonAuthWarning, match="the next write repairs it"):
        assert cache.load(KEY) is None
    assert set(cache.entries()) == readable
    # What the manager does on a miss: read again under the lock, then store.
    with cache.lock(KEY, timeout=1):
        assert cache.load(KEY) is None
        cache.store(KEY, make_entry("new"))

    document = json.loads(isolated_cache.read_text())
    assert document["version"] == FORMAT_VERSION
    assert document["format"] == FORMAT_MARKER
    assert set(document["entries"]) == readable | {KEY}
    assert set(FileTokenCache(isolated_cache).entries()) == readable | {KEY}
    assert len(warnings_log.records) == 1, [r.getMessage() for r in warnings_log.records]
    assert str(isolated_cache) in warnings_log.records[0].getMessage()


def test_an_empty_file_is_reported(
    isolated_cache: Path, warnings_log: pytest.LogCaptureFixture
) -> None:
    write_private(isolated_cache, b"")

    with pytest.warns(HoxtonAuthWarning, match="is empty"):
        assert FileTokenCache(isolated_cache).load(KEY) is None

    [record] = warnings_log.records
    assert "is empty" in record.getMessage()


def test_the_same_damage_is_reported_once_and_new_damage_again(
    isolated_cache: Path, warnings_log: pytest.LogCaptureFixture
) -> None:
    write_private(isolated_cache, GOOD_TEXT[:100].encode())
    cache = FileTokenCache(isolated_cache)

    def read_often() -> None:
        for _ in range(3):
            cache.load(KEY)
        FileTokenCache(isolated_cache).load(KEY)  # once per process, not per object

    with pytest.warns(HoxtonAuthWarning) as caught:
        read_often()
    assert len(warnings_log.records) == len(caught) == 1

    write_private(isolated_cache, GOOD_TEXT[:120].encode())  # another damage, another size
    with pytest.warns(HoxtonAuthWarning):
        cache.load(KEY)
    assert len(warnings_log.records) == 2


def test_a_directory_at_the_cache_path_is_refused(
    isolated_cache: Path, warnings_log: pytest.LogCaptureFixture
) -> None:
    isolated_cache.mkdir(parents=True)  # a directory where the file should be

    with (
        pytest.warns(HoxtonAuthWarning, match="not a regular file"),
        pytest.raises(CacheUnavailableError, match="HOXTON_AUTH_CACHE"),
    ):
        FileTokenCache(isolated_cache).load(KEY)
    assert "not a regular file" in warnings_log.records[0].getMessage()


# -- FileTokenCache: locking and unusable locations -------------------------------------


def test_the_lock_times_out_with_an_error_naming_the_lock_file(isolated_cache: Path) -> None:
    holder, waiter = FileTokenCache(isolated_cache), FileTokenCache(isolated_cache)

    with holder.lock(KEY, timeout=1):
        with pytest.raises(CacheLockTimeoutError) as raised, waiter.lock(KEY, timeout=0.05):
            pass  # pragma: no cover  never entered
        assert isinstance(raised.value, CacheError)
        assert str(waiter.lock_path) in str(raised.value)
    with waiter.lock(KEY, timeout=0.05):
        pass


def test_the_async_lock_times_out_with_an_error_naming_the_lock_file(
    isolated_cache: Path,
) -> None:
    holder, waiter = FileTokenCache(isolated_cache), FileTokenCache(isolated_cache)

    async def scenario() -> None:
        with pytest.raises(CacheLockTimeoutError, match=str(waiter.lock_path)):
            async with waiter.alock(KEY, timeout=0.05):
                pass  # pragma: no cover  never entered

    with holder.lock(KEY, timeout=1):
        asyncio.run(scenario())


def test_a_location_under_a_file_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    cache = FileTokenCache(blocker / "tokens.json")

    with pytest.raises(CacheUnavailableError, match="cannot read"):
        cache.load(KEY)
    with pytest.raises(CacheUnavailableError), cache.lock(KEY, timeout=0.1):
        pass  # pragma: no cover  never entered
    with pytest.raises(CacheUnavailableError):
        cache.store(KEY, make_entry())


def test_a_read_only_directory_can_be_read_but_not_written(read_only_dir: Path) -> None:
    cache = FileTokenCache(read_only_dir / "tokens.json")

    assert cache.load(KEY) is None
    with pytest.raises(CacheUnavailableError, match="cannot"):
        cache.store(KEY, make_entry())
    with (
        pytest.raises(CacheUnavailableError, match=str(cache.lock_path)),
        cache.lock(KEY, timeout=0.1),
    ):
        pass  # pragma: no cover  never entered
    assert list(read_only_dir.iterdir()) == []
