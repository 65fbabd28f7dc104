"""Token caches: the interface, its entry type, and the in-memory cache.

A cache stores tokens and harmless metadata (token URL, client id, audience,
grant kind, scope, subject label, a salted verifier), never a client secret
or password, under a key that is a hash (``_identity.py`` says whose entry
it is). The shared on-disk cache, ``FileTokenCache``, and its lock are in
``_file_cache.py``, the file itself in ``_private_file.py``: the only
modules that touch the disk.
``RedisTokenCache`` keeps tokens in Redis (``_redis_cache.py``, with its client
and lock).

The protocol is sync only: the session calls it from threads, and event
loops (asyncio, trio) run the same calls in a worker thread, so a custom
cache implements five plain methods and nothing async.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import hashlib
import threading
from collections.abc import Iterator, Mapping
from typing import ClassVar

from ._errors import CacheLockTimeoutError, library_logger
from ._fork import reset_after_fork
from ._token import Token

__all__ = [
    "LOCK_POLL_INTERVAL",
    "CacheEntry",
    "MemoryTokenCache",
    "TokenCache",
    "cache_key",
]

library_logger()  # its NullHandler, before any module of a session logs

LOCK_POLL_INTERVAL = 0.05  # seconds between two tries of a busy file or Redis lock
# Entries nobody can use any more are dropped, so a cache stays small: an
# access token expired this long ago with no refresh token, or a refresh token
# last renewed this long ago (longer than any lifetime Auth0 lets a tenant set).
PRUNE_EXPIRED_AFTER = 24 * 3600.0
PRUNE_REFRESHABLE_AFTER = 400 * 24 * 3600.0


def cache_key(*parts: str) -> str:
    """A stable key for an identity: a hash, so nothing in it can be read back."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """A cached token and what it is for (``meta`` holds no secret)."""

    token: Token
    meta: Mapping[str, str]


class TokenCache(abc.ABC):
    """Where tokens are kept. Subclass it to store them elsewhere.

    Implement ``load``, ``store``, ``delete``, ``entries`` and ``lock``; all are
    sync (event loops call them from a worker thread). ``load`` may be called
    at any time and must never return a half-written entry; ``store`` and
    ``delete`` are called only while holding ``lock(key)``. Raise
    ``CacheUnavailableError`` when the cache cannot be used at all, and
    ``CacheLockTimeoutError`` from ``lock`` after its timeout.

    Attributes:
        lock_wait_timeout: Seconds an auth object waits for ``lock`` before
            giving up. ``None`` (the default) lets each auth object derive it
            from its ``retry_deadline`` and ``timeout``: long enough for the
            holder to finish its own fetch, retries included.
        transient: ``True`` for a cache on a network service (Redis): when it
            is unavailable the auth object fetches without it for that call
            and tries it again on the next renewal, instead of switching to
            memory for good.
    """

    lock_wait_timeout: float | None = None
    transient: ClassVar[bool] = False

    @abc.abstractmethod
    def load(self, key: str) -> CacheEntry | None:
        """The entry for ``key``, or ``None``."""

    @abc.abstractmethod
    def store(self, key: str, entry: CacheEntry) -> None:
        """Save ``entry`` under ``key``; call while holding ``lock(key)``."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Forget ``key``; call while holding ``lock(key)``."""

    @abc.abstractmethod
    def entries(self) -> dict[str, CacheEntry]:
        """Every readable entry (for ``hoxton-auth status``)."""

    def unreadable(self, key: str) -> str | None:
        """Why the entry under ``key`` exists but could not be read at the last ``load``
        (sealed with a key this process lacks), else ``None``. The default: ``None``.

        A refresh token given to the constructor is never sent again while its
        session's entry exists unread: it was rotated, and Auth0 would revoke
        the whole login (issue 24).
        """
        return None

    def prepare(self) -> None:  # noqa: B027  an optional hook: doing nothing is right for most
        """Load now whatever ``lock`` and ``store`` will import later.

        Called on the caller's thread before a renewal runs in a background
        thread: there, an import at interpreter exit can fail (modules that
        register exit handlers, such as asyncio, refuse to load once the
        interpreter is shutting down). The default does nothing.
        """

    @abc.abstractmethod
    def lock(self, key: str, timeout: float) -> contextlib.AbstractContextManager[None]:
        """Exclusive access to ``key`` for everyone sharing this cache.

        Raises:
            CacheLockTimeoutError: Not acquired within ``timeout`` seconds.
            CacheUnavailableError: The lock cannot be taken at all.
        """


class MemoryTokenCache(TokenCache):
    """Tokens in this process's memory; share one instance between auth objects."""

    def __init__(self) -> None:
        self._entries: dict[str, CacheEntry] = {}
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        reset_after_fork(self)

    def _after_fork(self) -> None:
        # A lock held by another thread at fork would never open in the child.
        self._guard = threading.Lock()
        self._locks = {}

    def __repr__(self) -> str:
        return f"MemoryTokenCache(entries={len(self._entries)})"

    def load(self, key: str) -> CacheEntry | None:
        """The entry for ``key``, or ``None``."""
        return self._entries.get(key)

    def store(self, key: str, entry: CacheEntry) -> None:
        """Save ``entry`` under ``key``."""
        self._entries[key] = entry

    def delete(self, key: str) -> None:
        """Forget ``key``."""
        self._entries.pop(key, None)

    def entries(self) -> dict[str, CacheEntry]:
        """Every entry."""
        return dict(self._entries)

    def _key_lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[None]:
        """Exclusive access to ``key`` for the threads of this process.

        Raises:
            CacheLockTimeoutError: Not acquired within ``timeout`` seconds.
        """
        key_lock = self._key_lock(key)
        if not key_lock.acquire(timeout=timeout):
            raise CacheLockTimeoutError(f"in-memory token cache lock not acquired in {timeout}s")
        try:
            yield
        finally:
            key_lock.release()
