"""Token caches: where tokens live between requests and between processes.

The only module that opens files or takes locks. A cache stores tokens and
harmless metadata (client id, audience, grant kind, scope), never a client
secret or password, under a key that is a hash.

Contract used by the token manager: ``load`` may be called at any time (file
writes are atomic); ``store`` and ``delete`` only while holding ``lock``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import hashlib
import inspect
import json
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any, Union

from ._errors import CacheError
from ._token import Token, TokenFormatError

__all__ = [
    "CacheEntry",
    "CacheLockTimeoutError",
    "CacheUnavailableError",
    "FileTokenCache",
    "MemoryTokenCache",
    "TokenCache",
    "cache_key",
    "default_cache_path",
]

logger = logging.getLogger("hoxton_auth")

FORMAT_VERSION = 1
LOCK_POLL_INTERVAL = 0.01
# Entries nobody can use any more are pruned on write: an access token expired
# this long ago with no refresh token, or a refresh token unused this long.
PRUNE_EXPIRED_AFTER = 24 * 3600.0
PRUNE_REFRESHABLE_AFTER = 400 * 24 * 3600.0

PathArg = Union[str, "os.PathLike[str]"]


class CacheLockTimeoutError(CacheError):
    """Another process held the cache lock for longer than the timeout."""


class CacheUnavailableError(CacheError):
    """The cache location cannot be used (read-only, not a directory...)."""


def cache_key(*parts: str) -> str:
    """A stable key for an identity: a hash, so nothing in it can be read back."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """A cached token and what it is for (``meta`` holds no secret)."""

    token: Token
    meta: Mapping[str, str]


class TokenCache(abc.ABC):
    """Where tokens are kept. Subclass it to store them elsewhere."""

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

    @abc.abstractmethod
    def lock(self, key: str, timeout: float) -> contextlib.AbstractContextManager[None]:
        """Exclusive access to ``key`` for everyone sharing this cache.

        Raises:
            CacheLockTimeoutError: Not acquired within ``timeout`` seconds.
            CacheUnavailableError: The lock cannot be taken at all.
        """

    def alock(self, key: str, timeout: float) -> contextlib.AbstractAsyncContextManager[None]:
        """``lock`` for asyncio; waits without blocking the event loop."""
        return _thread_lock_in_async(self.lock(key, timeout))

    async def aload(self, key: str) -> CacheEntry | None:
        """``load`` off the event loop."""
        return await asyncio.to_thread(self.load, key)

    async def astore(self, key: str, entry: CacheEntry) -> None:
        """``store`` off the event loop."""
        await asyncio.to_thread(self.store, key, entry)

    async def adelete(self, key: str) -> None:
        """``delete`` off the event loop."""
        await asyncio.to_thread(self.delete, key)


@contextlib.asynccontextmanager
async def _thread_lock_in_async(
    lock: contextlib.AbstractContextManager[None],
) -> AsyncIterator[None]:
    await asyncio.to_thread(lock.__enter__)
    try:
        yield
    finally:
        await asyncio.to_thread(lock.__exit__, None, None, None)


class MemoryTokenCache(TokenCache):
    """Tokens in this process's memory; share one instance between auth objects."""

    def __init__(self) -> None:
        self._entries: dict[str, CacheEntry] = {}
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def __repr__(self) -> str:
        return f"MemoryTokenCache(entries={len(self._entries)})"

    def load(self, key: str) -> CacheEntry | None:
        return self._entries.get(key)

    def store(self, key: str, entry: CacheEntry) -> None:
        self._entries[key] = entry

    def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    def entries(self) -> dict[str, CacheEntry]:
        return dict(self._entries)

    def _key_lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[None]:
        key_lock = self._key_lock(key)
        if not key_lock.acquire(timeout=timeout):
            raise CacheLockTimeoutError(f"in-memory token cache lock not acquired in {timeout}s")
        try:
            yield
        finally:
            key_lock.release()

    @contextlib.asynccontextmanager
    async def alock(self, key: str, timeout: float) -> AsyncIterator[None]:
        key_lock = self._key_lock(key)
        deadline = time.monotonic() + timeout
        # Polling, not a thread blocked in acquire(): a cancelled task must not
        # leave a thread behind that takes the lock later and never frees it.
        while not key_lock.acquire(blocking=False):
            if time.monotonic() > deadline:
                raise CacheLockTimeoutError(
                    f"in-memory token cache lock not acquired in {timeout}s"
                )
            await asyncio.sleep(LOCK_POLL_INTERVAL)
        try:
            yield
        finally:
            key_lock.release()

    async def aload(self, key: str) -> CacheEntry | None:
        return self.load(key)

    async def astore(self, key: str, entry: CacheEntry) -> None:
        self.store(key, entry)

    async def adelete(self, key: str) -> None:
        self.delete(key)


def default_cache_path() -> Path:
    """``$HOXTON_AUTH_CACHE``, else the user cache dir + ``hoxton-auth/tokens.json``."""
    configured = os.environ.get("HOXTON_AUTH_CACHE")
    if configured:
        return Path(configured).expanduser()
    import platformdirs  # imported here: only a process that touches the disk needs it

    return platformdirs.user_cache_path("hoxton-auth", appauthor=False) / "tokens.json"


def _filelock_options() -> dict[str, Any]:
    import filelock

    options: dict[str, Any] = {"mode": 0o600}
    parameters = inspect.signature(filelock.FileLock.__init__).parameters
    if "poll_interval" in parameters:
        options["poll_interval"] = LOCK_POLL_INTERVAL
    if "preserve_lock_file" in parameters:
        options["preserve_lock_file"] = True  # deleting a lock file races with its next user
    return options


class FileTokenCache(TokenCache):
    """One JSON file shared by every process of this user, guarded by a file lock.

    Args:
        path: The cache file. Default: ``$HOXTON_AUTH_CACHE``, else the
            platform's user cache dir + ``hoxton-auth/tokens.json``.

    The lock is ``<path>.lock``, taken with ``filelock`` (``flock`` on POSIX,
    released by the OS when its holder dies). Writes go to a temporary file in
    the same directory, fsynced, then ``os.replace``-d: a reader sees the old
    file or the new one, never half of one. Directory 0700, file 0600.
    """

    def __init__(self, path: PathArg | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_cache_path()
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"FileTokenCache({str(self.path)!r})"

    # -- reading -------------------------------------------------------------

    def _warn_once(self, message: str, *args: object) -> None:
        text = message % args
        if text not in self._warned:
            self._warned.add(text)
            logger.warning("%s", text)

    def _read_entries(self) -> dict[str, Any]:
        """Raw entries of the file; a damaged file reads as empty, with a warning."""
        try:
            with open(self.path, "rb") as file:
                self._check_permissions(file.fileno())
                raw = file.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            self._warn_once("token cache %s unreadable (%s); treating it as empty", self.path, exc)
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            problem = "is empty" if not raw.strip() else "is not valid JSON"
            self._warn_once("token cache %s %s; it will be rewritten", self.path, problem)
            return {}
        if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
            self._warn_once("token cache %s has an unknown layout; it will be rewritten", self.path)
            return {}
        if data.get("version") != FORMAT_VERSION:
            self._warn_once(
                "token cache %s has format version %r, this hoxton-auth reads %d; "
                "it will be rewritten",
                self.path,
                data.get("version"),
                FORMAT_VERSION,
            )
            return {}
        entries: dict[str, Any] = data["entries"]
        return entries

    def _check_permissions(self, fd: int) -> None:
        mode = os.fstat(fd).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            self._warn_once(
                "token cache %s was readable by other users (mode %o); tightened to 0600",
                self.path,
                stat.S_IMODE(mode),
            )
            os.fchmod(fd, 0o600)

    def _parse(self, key: str, raw: Any) -> CacheEntry | None:
        try:
            if not isinstance(raw, dict) or not isinstance(raw.get("meta"), dict):
                raise TokenFormatError("an entry must be an object with token and meta")
            meta = {str(k): str(v) for k, v in raw["meta"].items()}
            return CacheEntry(Token.from_dict(raw.get("token")), meta)
        except TokenFormatError as exc:
            self._warn_once("token cache %s: entry %s skipped: %s", self.path, key[:8], exc)
            return None

    def load(self, key: str) -> CacheEntry | None:
        """The entry for ``key``, or ``None`` when absent or unreadable."""
        raw = self._read_entries().get(key)
        return None if raw is None else self._parse(key, raw)

    def entries(self) -> dict[str, CacheEntry]:
        """Every readable entry."""
        parsed = {key: self._parse(key, raw) for key, raw in self._read_entries().items()}
        return {key: entry for key, entry in parsed.items() if entry is not None}

    # -- writing (under the lock) -------------------------------------------

    def store(self, key: str, entry: CacheEntry) -> None:
        """Save ``entry``; unreadable and long-dead entries are dropped.

        Raises:
            CacheUnavailableError: The file cannot be written.
        """
        entries = self.entries()
        entries[key] = entry
        self._write(entries)

    def delete(self, key: str) -> None:
        """Forget ``key``.

        Raises:
            CacheUnavailableError: The file cannot be written.
        """
        entries = self.entries()
        if entries.pop(key, None) is not None:
            self._write(entries)

    def _write(self, entries: Mapping[str, CacheEntry]) -> None:
        now = time.time()
        document = {
            "version": FORMAT_VERSION,
            "entries": {
                key: {"meta": dict(entry.meta), "token": entry.token.to_dict()}
                for key, entry in entries.items()
                if not _prunable(entry.token, now)
            },
        }
        payload = json.dumps(document, indent=1, sort_keys=True).encode()
        try:
            self._ensure_directory()
            fd, temp_name = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
            )
        except OSError as exc:
            raise CacheUnavailableError(f"cannot write token cache {self.path}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as file:  # mkstemp creates it 0600
                file.write(payload)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp_name, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise CacheUnavailableError(f"cannot write token cache {self.path}: {exc}") from exc

    def _ensure_directory(self) -> None:
        directory = self.path.parent
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    # -- locking --------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[None]:
        """Hold ``<path>.lock`` (all entries share the one file, so one lock).

        Raises:
            CacheLockTimeoutError: Held by another process for ``timeout`` s.
            CacheUnavailableError: The lock file cannot be created.
        """
        import filelock

        file_lock = filelock.FileLock(str(self.lock_path), timeout=timeout, **_filelock_options())
        with self._translate_lock_errors(timeout):
            self._ensure_directory()
            file_lock.acquire()
        try:
            yield
        finally:
            file_lock.release()

    @contextlib.asynccontextmanager
    async def alock(self, key: str, timeout: float) -> AsyncIterator[None]:
        """``lock`` for asyncio: polls the lock without blocking the loop."""
        import filelock

        file_lock = filelock.AsyncFileLock(
            str(self.lock_path), timeout=timeout, **_filelock_options()
        )
        with self._translate_lock_errors(timeout):
            await asyncio.to_thread(self._ensure_directory)
            await file_lock.acquire()
        try:
            yield
        finally:
            await file_lock.release()

    @contextlib.contextmanager
    def _translate_lock_errors(self, timeout: float) -> Iterator[None]:
        import filelock

        try:
            yield
        except filelock.Timeout:
            raise CacheLockTimeoutError(
                f"token cache lock {self.lock_path} is held by another process and was not "
                f"released within {timeout:.0f}s; if no hoxton-auth process is running, "
                "the holder is stuck: stop it"
            ) from None
        except OSError as exc:
            raise CacheUnavailableError(f"cannot lock token cache {self.lock_path}: {exc}") from exc


def _prunable(token: Token, now: float) -> bool:
    if token.refresh_token:
        return token.obtained_at < now - PRUNE_REFRESHABLE_AFTER
    return token.expires_at < now - PRUNE_EXPIRED_AFTER
