"""A full disk never costs the login (issue 11 item 2), on a real full tmpfs.

The answer of a refresh must be storable before the refresh is asked for:
``FileTokenCache.lock()`` reserves the space of the next write, and refuses
(before any token request) when there is none.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REDIRECT_URI, authorization_code, fill_filesystem

from hoxton_auth import (
    CacheEntry,
    CacheError,
    FileTokenCache,
    HoxtonAuth,
    HoxtonAuthWarning,
    MemoryTokenCache,
    RefreshTokenAuth,
    Token,
)
from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer


@pytest.fixture
def server() -> Iterator[AuthServer]:
    with AuthServer() as running:
        yield running


def refresh_auth(server: AuthServer, cache: FileTokenCache, seed: str) -> RefreshTokenAuth:
    return RefreshTokenAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        refresh_token=seed,
        domain=server.domain,
        cache=cache,
    )


def refresh_requests(server: AuthServer) -> list[str]:
    return [r["refresh_token"] for r in server.token_requests if r["grant_type"] == "refresh_token"]


def auth_cache_path(auth: HoxtonAuth) -> Path:
    cache = auth.cache
    assert isinstance(cache, FileTokenCache)
    return cache.path


def assert_no_refresh_without_room(
    server: AuthServer, small_filesystem: Path, auth: HoxtonAuth
) -> None:
    """Fill the disk under a logged-in ``auth`` whose access token is spent; renew."""
    sent = refresh_requests(server)
    fill_filesystem(small_filesystem)

    # A refresh is never sent without the shared cache (issue 11 item 1): a
    # CacheError naming the path and the fix, and no request went out.
    with pytest.raises(CacheError) as refused:
        auth.get_token()
    assert str(auth_cache_path(auth)) in str(refused.value)
    assert "HOXTON_AUTH_CACHE" in str(refused.value)

    assert refresh_requests(server) == sent  # nothing sent with the refresh token
    assert server.reuse_detected == 0
    # No reservation is left behind to eat the space of the next try.
    assert sorted(p.name for p in small_filesystem.iterdir()) == [
        "filler",
        "tokens.json",
        "tokens.json.lock",
    ]
    # The login survives: once there is room, another process renews from the file.
    (small_filesystem / "filler").unlink()
    ((stored,),) = [
        [
            e.token.refresh_token
            for e in FileTokenCache(small_filesystem / "tokens.json").entries().values()
        ]
    ]
    assert stored is not None
    other = RefreshTokenAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        refresh_token=stored,
        domain=server.domain,
        cache=MemoryTokenCache(),
    )
    other.get_token()
    assert refresh_requests(server) == [*sent, stored]
    assert server.reuse_detected == 0


def test_no_refresh_of_a_login_is_sent_when_its_answer_has_no_room(
    server: AuthServer, small_filesystem: Path
) -> None:
    # A login (authorization code): its refresh token lives only in the file.
    cache = FileTokenCache(small_filesystem / "tokens.json")
    code = authorization_code(server)
    auth = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        code=code,
        redirect_uri=REDIRECT_URI,
        domain=server.domain,
        cache=cache,
    )
    auth.get_token()
    auth.invalidate()  # the next call must refresh
    assert_no_refresh_without_room(server, small_filesystem, auth)


def test_no_refresh_of_a_seed_is_sent_when_its_answer_has_no_room(
    server: AuthServer, small_filesystem: Path
) -> None:
    cache = FileTokenCache(small_filesystem / "tokens.json")
    seed = server.mint_refresh_token()
    auth = refresh_auth(server, cache, seed)
    auth.get_token()
    assert refresh_requests(server) == [seed]
    auth.invalidate()
    assert_no_refresh_without_room(server, small_filesystem, auth)


def test_lock_refuses_before_anything_when_the_space_cannot_be_reserved(
    small_filesystem: Path,
) -> None:
    cache = FileTokenCache(small_filesystem / "tokens.json")
    with cache.lock("k", timeout=1):
        pass  # the lock file exists: only the reservation can fail below
    fill_filesystem(small_filesystem)
    with pytest.raises(CacheError) as info, cache.lock("k", timeout=1):
        pytest.fail("the lock was handed out with no room for the answer")
    message = str(info.value)
    assert str(cache.path) in message
    assert "no room to store a renewed token" in message
    assert "No space left on device" in message
    assert "HOXTON_AUTH_CACHE" in message
    assert sorted(p.name for p in small_filesystem.iterdir()) == ["filler", "tokens.json.lock"]


class FillsTheDiskOnceLocked(FileTokenCache):
    """A file cache whose filesystem fills up right after each ``lock()`` is taken.

    The worst moment for a full disk: after the reservation, before the
    refresh goes out and its rotated token must be written.
    """

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[None]:
        with super().lock(key, timeout):
            fill_filesystem(self.path.parent)
            yield


def test_a_reservation_made_before_the_disk_filled_stores_the_rotated_token(
    server: AuthServer, small_filesystem: Path
) -> None:
    path = small_filesystem / "tokens.json"
    seed = server.mint_refresh_token()
    auth = refresh_auth(server, FileTokenCache(path), seed)
    auth.get_token()
    auth.invalidate()
    ((rt1,),) = [[e.token.refresh_token for e in FileTokenCache(path).entries().values()]]
    filling = refresh_auth(server, FillsTheDiskOnceLocked(path), seed)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # stored for real: no "kept in memory" warning
        filling.get_token()

    assert refresh_requests(server) == [seed, rt1]
    ((rt2,),) = [[e.token.refresh_token for e in FileTokenCache(path).entries().values()]]
    assert rt2 not in (None, seed, rt1)
    # Another process (a new cache object) renews with the rotated token.
    (small_filesystem / "filler").unlink()
    later = refresh_auth(server, FileTokenCache(path), seed)
    later.invalidate()
    later.get_token()
    assert refresh_requests(server) == [seed, rt1, rt2]
    assert server.reuse_detected == 0


def test_an_entry_that_still_cannot_be_written_is_kept_served_and_retried(
    server: AuthServer, small_filesystem: Path
) -> None:
    path = small_filesystem / "tokens.json"
    cache = FileTokenCache(path)
    now = time.time()
    small = CacheEntry(Token("at-1", expires_at=now + 3600, obtained_at=now), {"label": "x"})
    with cache.lock("k", timeout=5):
        cache.store("k", small)
    # Larger than the file plus the reserved margin (64 KiB), so the reservation is not
    # enough; small enough that the file and its next reservation fit in 256 KiB.
    large = CacheEntry(
        Token("at-2", expires_at=now + 3600, obtained_at=now + 1, refresh_token="rt-2"),
        {"label": "x" * (70 * 1024)},
    )

    with cache.lock("k", timeout=5):
        fill_filesystem(small_filesystem)
        with pytest.warns(HoxtonAuthWarning, match="kept in this process's memory"):
            cache.store("k", large)

    assert cache.load("k") == large  # served in this process...
    assert cache.entries() == {"k": large}
    assert FileTokenCache(path).load("k") == small  # ...not yet in the file
    # Tried again at the next lock, still too large: kept, and said again.
    with (
        pytest.warns(HoxtonAuthWarning, match="kept in this process's memory"),
        cache.lock("k", timeout=5),
    ):
        pass
    assert cache.load("k") == large
    (small_filesystem / "filler").unlink()
    with cache.lock("k", timeout=5):  # written at the next lock
        pass
    assert FileTokenCache(path).load("k") == large


def test_without_posix_fallocate_zeros_reserve_the_space(
    small_filesystem: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Windows and macOS have no os.posix_fallocate: the reservation writes zeros,
    # which take real blocks just the same.
    monkeypatch.delattr(os, "posix_fallocate", raising=False)
    cache = FileTokenCache(small_filesystem / "tokens.json")
    now = time.time()
    entry = CacheEntry(Token("at-1", expires_at=now + 3600, obtained_at=now), {"label": "x"})
    with cache.lock("k", timeout=5):
        fill_filesystem(small_filesystem)  # after the reservation: the write still fits
        cache.store("k", entry)
    assert FileTokenCache(cache.path).load("k") == entry
    with pytest.raises(CacheError, match="no room to store a renewed token"):  # noqa: SIM117
        with cache.lock("k", timeout=5):
            pytest.fail("the lock was handed out with no room for the answer")
