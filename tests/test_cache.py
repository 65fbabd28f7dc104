"""Unit tests of the caches: MemoryTokenCache and FileTokenCache on real files.

Cross-process behaviour (herds, SIGKILL, stuck holders) is in
``test_cross_process.py``; how the token manager uses a cache is in
``test_session.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hoxton_auth import (
    CacheEntry,
    CacheError,
    CacheLockTimeoutError,
    CacheUnavailableError,
    ConfigError,
    FileTokenCache,
    HoxtonAuth,
    HoxtonAuthWarning,
    MemoryTokenCache,
    Token,
)
from hoxton_auth._cache import cache_key
from hoxton_auth._cache_format import FORMAT_MARKER, FORMAT_VERSION, encode
from hoxton_auth._private_file import LARGE_FILE_BYTES, MAX_FILE_BYTES, STALE_TEMP_AFTER
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


def test_dead_entries_are_pruned_when_no_other_writer_is_recent(isolated_cache: Path) -> None:
    """Pruning needs no fresh entry of another writer: the file's own write time vouches."""
    day = 24 * 3600.0
    dead = {cache_key(f"expired {n}"): make_entry(age=3 * day, expires_in=day) for n in range(20)}
    write_document(isolated_cache, dead)
    cache = FileTokenCache(isolated_cache)

    with cache.lock(KEY, timeout=1):
        cache.store(KEY, make_entry())

    assert set(cache.entries()) == {KEY}


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


def valid_document_text(entries: dict[str, CacheEntry]) -> str:
    """The exact text FileTokenCache writes for ``entries``."""
    raw = {
        key: {"meta": dict(entry.meta), "token": entry.token.to_dict()}
        for key, entry in entries.items()
    }
    return encode({}, raw).decode()


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


# -- FileTokenCache: what is not ours is refused and left untouched (issue 11) ----------

NOBODY = 65534
needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root: a file or process of a second uid is made with chown/setpriv",
)
FOREIGN_TEXT = b"machine api.example.com login me password hunter2\n"


def fingerprint(path: Path) -> tuple[bytes, int, int]:
    """Content, mode and owner of a file (what a refusal must leave as it was)."""
    info = path.stat()
    return path.read_bytes(), stat.S_IMODE(info.st_mode), info.st_uid


def try_everything(cache: FileTokenCache, *, lock: bool = True) -> None:
    """Every way the cache touches its path; each must be refused.

    ``lock=False``: the file's type and owner are fine, its content is not
    ours; the lock checks type and owner only, every read checks the content.
    """
    with pytest.raises(CacheUnavailableError, match="HOXTON_AUTH_CACHE"):
        cache.load(KEY)
    with pytest.raises(CacheUnavailableError, match="refused"):
        cache.entries()
    if lock:
        with pytest.raises(CacheUnavailableError, match="refused"), cache.lock(KEY, timeout=1):
            pass  # pragma: no cover  never entered
    with pytest.raises(CacheUnavailableError, match="refused"):
        cache.store(KEY, make_entry())
    with pytest.raises(CacheUnavailableError, match="refused"):
        cache.delete(KEY)


def test_a_foreign_file_is_refused_and_left_untouched(isolated_cache: Path) -> None:
    write_private(isolated_cache, FOREIGN_TEXT)
    before = fingerprint(isolated_cache)

    with pytest.warns(HoxtonAuthWarning, match="not a hoxton-auth token cache") as caught:
        try_everything(FileTokenCache(isolated_cache), lock=False)

    assert fingerprint(isolated_cache) == before
    assert len(caught) == 1  # once per cause and path
    assert str(isolated_cache) in str(caught[0].message)


@pytest.mark.parametrize(
    "text",
    ['{"editor": {"theme": "dark"}}', "[1, 2]", '{"version": 1}', "{not json"],
    ids=["other JSON", "a list", "no entries", "broken, no marker"],
)
def test_json_that_is_not_a_token_cache_is_refused(isolated_cache: Path, text: str) -> None:
    write_private(isolated_cache, text.encode())
    isolated_cache.chmod(0o644)  # not ours: not tightened either

    with pytest.warns(HoxtonAuthWarning, match="not a hoxton-auth token cache"):
        try_everything(FileTokenCache(isolated_cache), lock=False)
    assert isolated_cache.read_text() == text
    assert stat.S_IMODE(isolated_cache.stat().st_mode) == 0o644


def test_the_auth_object_goes_on_in_memory_beside_a_foreign_file(
    hoxton_auth_server: AuthServer, isolated_cache: Path
) -> None:
    write_private(isolated_cache, FOREIGN_TEXT)

    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=hoxton_auth_server.domain)
    with pytest.warns(HoxtonAuthWarning, match="HOXTON_AUTH_CACHE"):
        assert auth.get_token()

    assert isolated_cache.read_bytes() == FOREIGN_TEXT
    assert auth.get_token()  # from memory, no warning again
    assert hoxton_auth_server.count() == 1


def test_a_symlink_is_refused_and_its_target_neither_read_nor_changed(
    isolated_cache: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text(valid_document_text({KEY: make_entry("planted")}))
    victim.chmod(0o644)
    isolated_cache.parent.mkdir(parents=True)
    isolated_cache.symlink_to(victim)
    before = fingerprint(victim)

    with pytest.warns(HoxtonAuthWarning, match="symbolic link"):
        try_everything(FileTokenCache(isolated_cache))

    assert fingerprint(victim) == before  # not chmod-ed to 0600, not replaced
    assert isolated_cache.is_symlink()


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(
    isolated_cache: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"x" * 14_000)
    cache = FileTokenCache(isolated_cache)
    isolated_cache.parent.mkdir(parents=True)
    cache.lock_path.symlink_to(victim)

    with (
        pytest.warns(HoxtonAuthWarning, match="symbolic link"),
        pytest.raises(CacheUnavailableError, match=str(cache.lock_path)),
        cache.lock(KEY, timeout=1),
    ):
        pass  # pragma: no cover  never entered
    assert victim.read_bytes() == b"x" * 14_000


def test_a_fifo_is_refused_at_once_instead_of_hanging(isolated_cache: Path) -> None:
    isolated_cache.parent.mkdir(parents=True)
    os.mkfifo(isolated_cache, 0o600)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            with pytest.warns(HoxtonAuthWarning):
                FileTokenCache(isolated_cache).load(KEY)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)  # a bound, not a measurement: on 0.1 this read blocked forever

    assert not reader.is_alive(), "reading a FIFO hung"
    [error] = outcome
    assert isinstance(error, CacheUnavailableError)
    assert "not a regular file" in str(error)


def test_dev_zero_is_refused_without_reading_it() -> None:
    with pytest.warns(HoxtonAuthWarning, match="not a regular file"):
        try_everything(FileTokenCache("/dev/zero"))


@needs_root
def test_dev_null_as_root_is_refused_and_stays_a_device() -> None:
    with pytest.warns(HoxtonAuthWarning, match="not a regular file"):
        try_everything(FileTokenCache("/dev/null"))

    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not os.path.lexists("/dev/null.lock")


def test_a_file_larger_than_the_cap_that_is_not_ours_is_refused(isolated_cache: Path) -> None:
    write_private(isolated_cache, b'{"entries-of-something-else": ' + b" " * 5_000_000)

    with pytest.warns(HoxtonAuthWarning, match="larger than"):
        try_everything(FileTokenCache(isolated_cache), lock=False)
    assert isolated_cache.stat().st_size > 5_000_000


def many_sessions(path: Path, sessions: int) -> list[str]:
    """A cache file of ``sessions`` entries as large as a web session's (~1.9 KB); their keys."""
    now = time.time()
    entries = {
        cache_key(f"session {n}"): make_entry(
            f"access-{n}-" + "a" * 800, refresh_token=f"refresh-{n}-" + "r" * 50
        )
        for n in range(sessions)
    }
    for key, entry in entries.items():
        entries[key] = CacheEntry(
            dataclasses.replace(entry.token, id_token="i" * 700, obtained_at=now), entry.meta
        )
    write_private(path, valid_document_text(entries).encode())
    return list(entries)


def test_a_cache_of_20000_sessions_keeps_working_and_said_so_once_long_before(
    isolated_cache: Path,
) -> None:
    # Issue 21: 0.2 refused its own file past 4 MiB (about 2,150 sessions).
    # benchmarks/bench_file_cache_size.py measures the cost; this checks that it works.
    keys = many_sessions(isolated_cache, 20_000)
    assert isolated_cache.stat().st_size > 8 * LARGE_FILE_BYTES
    cache = FileTokenCache(isolated_cache)

    with pytest.warns(HoxtonAuthWarning, match="20000 entries.*use RedisTokenCache") as caught:
        found = cache.load(keys[12_345])
    assert found is not None
    renewed = make_entry("renewed")
    with cache.lock(keys[0], timeout=60):
        cache.store(keys[0], renewed)  # no second warning: filterwarnings = error
    assert cache.load(keys[0]) == renewed
    assert len(FileTokenCache(isolated_cache).entries()) == 20_000
    assert len(caught) == 1


def test_the_size_warning_comes_before_the_old_cap_and_not_for_a_small_back_end(
    isolated_cache: Path,
) -> None:
    keys = many_sessions(isolated_cache, 1_000)  # about 2 MiB: no warning
    assert isolated_cache.stat().st_size < LARGE_FILE_BYTES
    assert FileTokenCache(isolated_cache).load(keys[0]) is not None  # filterwarnings=error

    keys = many_sessions(isolated_cache, 2_400)  # past the 4 MiB 0.2 refused
    assert isolated_cache.stat().st_size > MAX_FILE_BYTES >= LARGE_FILE_BYTES
    with pytest.warns(HoxtonAuthWarning, match="2400 entries.*RedisTokenCache"):
        assert FileTokenCache(isolated_cache).load(keys[-1]) is not None


def test_a_directory_others_can_write_is_refused_unless_sticky(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    cache = FileTokenCache(shared / "tokens.json")

    with pytest.warns(HoxtonAuthWarning, match="writable by others"):
        try_everything(cache)
    assert list(shared.iterdir()) == []

    shared.chmod(0o1777)  # sticky and ours: others cannot replace our files
    with cache.lock(KEY, timeout=1):
        cache.store(KEY, make_entry())
    assert cache.load(KEY) is not None


def write_as_nobody(path: Path, content: bytes) -> None:
    """Create ``path`` (0600) as uid/gid 65534 in a child process: a real second user.

    The child is ``sh``, not Python: this interpreter may live where that
    user cannot reach it (pyenv under /root).
    """
    import shutil
    import subprocess

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv is not installed")
    command = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    script = 'umask 077; cat > "$1"'
    subprocess.run(
        [*command, "/bin/sh", "-c", script, "sh", str(path)], input=content, check=True, timeout=60
    )


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A 0777 directory directly under /tmp, which a second uid can reach."""
    import shutil
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="hoxton-shared-", dir="/tmp"))
    directory.chmod(0o777)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


@needs_root
def test_tokens_planted_by_another_user_are_never_served(shared_dir: Path) -> None:
    path = shared_dir / "tokens.json"
    planted = valid_document_text({KEY: make_entry("planted-by-nobody")})
    write_as_nobody(path, planted.encode())
    before = fingerprint(path)
    assert before[2] == NOBODY
    cache = FileTokenCache(path)

    with pytest.warns(HoxtonAuthWarning, match="writable by others"):
        try_everything(cache)  # the directory first: nobody could swap files in it
    shared_dir.chmod(0o755)  # now only the file's owner is wrong
    with pytest.warns(HoxtonAuthWarning, match=f"belongs to uid {NOBODY}"):
        try_everything(cache)

    assert fingerprint(path) == before


@needs_root
def test_a_lock_file_of_another_user_is_refused(isolated_cache: Path) -> None:
    cache = FileTokenCache(isolated_cache)
    isolated_cache.parent.mkdir(parents=True)
    cache.lock_path.write_bytes(b"")
    os.chown(cache.lock_path, NOBODY, NOBODY)

    with (
        pytest.warns(HoxtonAuthWarning, match=f"belongs to uid {NOBODY}"),
        pytest.raises(CacheUnavailableError, match="HOXTON_AUTH_CACHE"),
        cache.lock(KEY, timeout=1),
    ):
        pass  # pragma: no cover  never entered


@needs_root
def test_a_permission_warning_says_tightened_only_if_it_was(isolated_cache: Path) -> None:
    import shutil
    import subprocess

    write_document(isolated_cache, {KEY: make_entry()})
    isolated_cache.chmod(0o644)
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(isolated_cache)]).returncode:
        pytest.skip("chattr +i is not available here (needed to make fchmod fail as root)")
    try:
        with pytest.warns(HoxtonAuthWarning, match="could not be tightened") as caught:
            assert FileTokenCache(isolated_cache).load(KEY) is not None
    finally:
        subprocess.run([chattr, "-i", str(isolated_cache)], check=True)
    assert "tightened to" not in str(caught[0].message)
    assert stat.S_IMODE(isolated_cache.stat().st_mode) == 0o644


# -- FileTokenCache: versions and what this version does not understand ---------------


def test_a_newer_format_is_refused_and_not_wiped(isolated_cache: Path) -> None:
    document = json.loads(valid_document_text({KEY: make_entry(refresh_token="rt-new")}))
    document["version"] = FORMAT_VERSION + 1
    write_private(isolated_cache, json.dumps(document).encode())
    before = fingerprint(isolated_cache)

    with pytest.warns(HoxtonAuthWarning, match="newer hoxton-auth"):
        try_everything(FileTokenCache(isolated_cache), lock=False)
    assert fingerprint(isolated_cache) == before


def test_fields_and_entries_this_version_does_not_understand_are_kept(
    isolated_cache: Path,
) -> None:
    document = json.loads(valid_document_text({KEY: make_entry("old"), KEPT: make_entry()}))
    document["written_by"] = {"hoxton-auth": "1.4"}
    document["entries"][KEY]["sessions"] = ["device-flow"]
    document["entries"][KEPT]["token"]["dpop_jkt"] = "abc"
    future = {"token": {"kind": "dpop"}, "binding": {"x": 1}}
    document["entries"][OTHER_KEY] = future
    write_private(isolated_cache, json.dumps(document).encode())
    cache = FileTokenCache(isolated_cache)

    with pytest.warns(HoxtonAuthWarning, match="kept in the file"), cache.lock(KEY, timeout=1):
        cache.store(KEY, make_entry("new"))

    after = json.loads(isolated_cache.read_text())
    assert after["written_by"] == {"hoxton-auth": "1.4"}
    assert after["entries"][OTHER_KEY] == future
    assert after["entries"][KEPT] == document["entries"][KEPT]
    assert after["entries"][KEY]["sessions"] == ["device-flow"]
    assert after["entries"][KEY]["token"]["access_token"] == "new"
    assert list(after)[:2] == ["format", "version"]  # the marker survives a truncation


def test_a_file_written_by_0_1_is_read_and_upgraded(isolated_cache: Path) -> None:
    write_document(isolated_cache, {KEY: make_entry("legacy")})  # no marker
    cache = FileTokenCache(isolated_cache)

    loaded = cache.load(KEY)
    assert loaded is not None
    assert loaded.token.access_token == "legacy"
    with cache.lock(KEY, timeout=1):
        cache.store(OTHER_KEY, make_entry())
    assert json.loads(isolated_cache.read_text())["format"] == FORMAT_MARKER


# -- FileTokenCache: salvage is linear in the size of the damage -------------------------

CRAFTED = {
    "nested entry starts": '"' + "a" * 32 + '": {',
    "unterminated strings": '"' + "b" * 32 + '": {"x": "',
    "entry starts in arrays": '"' + "c" * 32 + '": {"l": [',
    "literals cut short": '"' + "e" * 32 + '": {"x": nul',
}


def crafted_damage(unit: str, size: int) -> str:
    head = valid_document_text({KEY: make_entry("salvaged")})
    head = head[: head.rindex("}", 0, head.rindex("}"))]  # cut: no longer valid JSON
    return head + "," + unit * (size // len(unit))


@pytest.mark.parametrize("unit", list(CRAFTED.values()), ids=list(CRAFTED))
def test_salvage_work_grows_linearly_with_crafted_damage(unit: str) -> None:
    from hoxton_auth._cache_format import salvage

    small_found, small_work = salvage(crafted_damage(unit, 100_000))
    large_found, large_work = salvage(crafted_damage(unit, 1_000_000))

    assert set(small_found) == set(large_found) == {KEY}
    # Characters handed to the JSON decoder: ten times the damage costs about
    # ten times the work (0.1 decoded each nested start to the end: quadratic).
    assert large_work < 12 * small_work
    assert large_work < 10 * 1_000_000


def test_a_crafted_1_mb_damaged_file_is_salvaged(isolated_cache: Path) -> None:
    write_private(
        isolated_cache, crafted_damage(CRAFTED["nested entry starts"], 1_000_000).encode()
    )
    cache = FileTokenCache(isolated_cache)

    with pytest.warns(HoxtonAuthWarning, match="1 complete entries are kept"):
        loaded = cache.load(KEY)
    assert loaded is not None
    assert loaded.token.access_token == "salvaged"


# -- the cache= argument -----------------------------------------------------------------


@pytest.mark.parametrize("location", ["memcached://x", "file:///tmp/t.json", "S3://bucket/t"])
def test_an_unknown_url_scheme_is_a_config_error(
    location: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ConfigError, match=r"unknown scheme.*redis://"):
        HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, cache=location)
    monkeypatch.setenv("HOXTON_AUTH_CACHE", location)
    with pytest.raises(ConfigError, match="unknown scheme"):
        HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
    assert list(tmp_path.iterdir()) == []  # no ./memcached:/x


# -- the pytest fixture keeps test tokens out of the developer's cache -------------------


def test_the_pytest_fixture_never_writes_to_the_real_user_cache(tmp_path: Path) -> None:
    import subprocess

    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "test_user.py").write_text(
        "import os\n"
        "from hoxton_auth import HoxtonAuth\n"
        "from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET\n"
        "def test_it(hoxton_auth_server):\n"
        "    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET,\n"
        "                      domain=hoxton_auth_server.domain)\n"
        "    assert auth.get_token()\n"
        "    assert os.path.exists(os.environ['HOXTON_AUTH_CACHE'])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOXTON_", "XDG_"))}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert list(home.rglob("*")) == []  # nothing in ~/.cache/hoxton-auth
