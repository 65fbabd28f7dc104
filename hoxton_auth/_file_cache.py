"""``FileTokenCache``: one JSON file shared by every process of a user (issue 3).

How it stays safe with many processes:

* Readers take no lock. Every write goes to a temporary file in the same
  directory, flushed and fsynced, then ``os.replace``-d over the cache, so a
  reader, or a process killed mid-write, sees the old file or the new one,
  never half of one.
* Writers hold ``<path>.lock`` (``_file_lock.py``: ``flock`` on POSIX, which
  the kernel releases when its holder dies, SIGKILL included). The lock file
  is never deleted: two processes could otherwise lock two different inodes.
* Damage stays local: an unreadable file or entry is a miss with one warning,
  the entries that can be read are kept, and the next write is valid again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import stat
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

from ._cache import (
    PRUNE_EXPIRED_AFTER,
    PRUNE_REFRESHABLE_AFTER,
    CacheEntry,
    CacheUnavailableError,
    TokenCache,
)
from ._errors import ConfigError
from ._file_lock import ahold_lock, ensure_directory, hold_lock
from ._token import Token, TokenFormatError

__all__ = ["FORMAT_VERSION", "FileTokenCache", "default_cache_path"]

logger = logging.getLogger("hoxton_auth")

FORMAT_VERSION = 1
# Temporary files are only written under the lock, so one older than this
# belongs to a writer that died mid-write.
STALE_TEMP_AFTER = 600.0
# The start of one entry in a damaged file: a 32-hex-digit key, then an object.
_ENTRY_START = re.compile(r'"([0-9a-f]{32})"\s*:\s*(?=\{)')

PathArg = Union[str, "os.PathLike[str]"]


def default_cache_path() -> Path:
    """``$HOXTON_AUTH_CACHE``, else the user cache dir + ``hoxton-auth/tokens.json``."""
    configured = os.environ.get("HOXTON_AUTH_CACHE")
    if configured:
        return Path(configured).expanduser()
    import platformdirs  # imported here: only a process that touches the disk needs it

    return platformdirs.user_cache_path("hoxton-auth", appauthor=False) / "tokens.json"


def _salvage(text: str) -> dict[str, Any]:
    """The complete entries of a damaged (e.g. truncated) cache document."""
    decoder = json.JSONDecoder()
    found: dict[str, Any] = {}
    for match in _ENTRY_START.finditer(text):
        try:
            value, _ = decoder.raw_decode(text, match.end())
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict) and "token" in value:
            found[match.group(1)] = value
    return found


def _prunable(token: Token, now: float) -> bool:
    if token.refresh_token:
        return token.obtained_at < now - PRUNE_REFRESHABLE_AFTER
    return token.expires_at < now - PRUNE_EXPIRED_AFTER


class FileTokenCache(TokenCache):
    """One JSON file shared by every process of this user, guarded by a file lock.

    The file holds tokens, their expiry and harmless labels (token URL, client
    id, audience, grant kind, scope) under hashed keys, never a client secret
    or password. Directory 0700, file 0600; a file that others can read is
    tightened back to 0600 with a warning.

    Args:
        path: The cache file. Default: ``$HOXTON_AUTH_CACHE``, else the
            platform's user cache dir + ``hoxton-auth/tokens.json``.
        lock_wait_timeout: Seconds an auth object waits for the lock while
            another process holds it; default: derived by each auth object
            from its ``retry_deadline`` and ``timeout``.

    Raises:
        ConfigError: ``lock_wait_timeout`` is not a number >= 0.
    """

    def __init__(
        self, path: PathArg | None = None, *, lock_wait_timeout: float | None = None
    ) -> None:
        chosen = Path(path).expanduser() if path is not None else default_cache_path()
        # Absolute now: a later chdir() must not move the cache.
        self.path = chosen.absolute()
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        wait = lock_wait_timeout
        if wait is not None and (
            isinstance(wait, bool)
            or not isinstance(wait, (int, float))
            or not math.isfinite(wait)
            or wait < 0
        ):
            raise ConfigError(f"lock_wait_timeout must be a finite number >= 0, got {wait!r}")
        self.lock_wait_timeout = wait
        self._warned: set[tuple[object, ...]] = set()

    def __repr__(self) -> str:
        return f"FileTokenCache({str(self.path)!r})"

    # -- reading (no lock needed) ------------------------------------------

    def load(self, key: str) -> CacheEntry | None:
        """The entry for ``key``, or ``None`` when absent or unreadable."""
        raw = self._read_entries().get(key)
        return None if raw is None else self._parse(key, raw)

    def entries(self) -> dict[str, CacheEntry]:
        """Every readable entry."""
        parsed = {key: self._parse(key, raw) for key, raw in self._read_entries().items()}
        return {key: entry for key, entry in parsed.items() if entry is not None}

    def _warn_once(self, tag: object, message: str, *args: object) -> None:
        # Once per damaged file version: three reads of one bad file during a
        # single renewal must not log three times, a new damage must log again.
        if (tag, message, *args) not in self._warned:
            self._warned.add((tag, message, *args))
            logger.warning(message, *args)

    def _read_entries(self) -> dict[str, Any]:
        """Raw entries of the file; what cannot be read is left out, with a warning."""
        try:
            with open(self.path, "rb") as file:
                info = self._check_permissions(file.fileno())
                raw = file.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            self._warn_once(
                None, "token cache %s cannot be read (%s); using it as empty", self.path, str(exc)
            )
            return {}
        tag = (info.st_ino, info.st_mtime_ns, info.st_size)
        text = raw.decode("utf-8", errors="replace")
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
            kept = _salvage(text)
            problem = "is empty" if not text.strip() else "is not valid JSON"
            if kept:
                problem += f" (its {len(kept)} complete entries are kept)"
            self._warn_once(tag, "token cache %s %s; the next write repairs it", self.path, problem)
            return kept
        if not isinstance(document, dict) or not isinstance(document.get("entries"), dict):
            self._warn_once(
                tag, "token cache %s has an unknown layout; the next write replaces it", self.path
            )
            return {}
        if document.get("version") != FORMAT_VERSION:
            self._warn_once(
                tag,
                "token cache %s has format version %s, this hoxton-auth reads %d; "
                "the next write replaces it",
                self.path,
                # repr, clipped: a string, hashable for _warn_once, one line even for junk
                repr(document.get("version"))[:40],
                FORMAT_VERSION,
            )
            return {}
        entries: dict[str, Any] = document["entries"]
        return entries

    def _check_permissions(self, fd: int) -> os.stat_result:
        info = os.fstat(fd)
        # Windows reports every file as 0o666 and has no fchmod: ACLs guard it there.
        if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            # Tokens are credentials: another user who can read them is the user.
            logger.warning(
                "token cache %s was open to other users (mode %o); tightened to 0600",
                self.path,
                stat.S_IMODE(info.st_mode),
            )
            os.fchmod(fd, 0o600)
        return info

    def _parse(self, key: str, raw: Any) -> CacheEntry | None:
        try:
            if not isinstance(raw, dict) or not isinstance(raw.get("meta"), dict):
                raise TokenFormatError("an entry must be an object with token and meta")
            meta = {str(k): str(v) for k, v in raw["meta"].items()}
            return CacheEntry(Token.from_dict(raw.get("token")), meta)
        except TokenFormatError as exc:
            self._warn_once(
                None, "token cache %s: entry %s skipped: %s", self.path, key[:8], str(exc)
            )
            return None

    # -- writing (under the lock) ------------------------------------------

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
            ensure_directory(self.path.parent)
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
        self._sync_directory()
        self._remove_stale_temp_files(now)

    def _sync_directory(self) -> None:
        # The rename is durable only once the directory is on disk (power loss).
        with contextlib.suppress(OSError):
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _remove_stale_temp_files(self, now: float) -> None:
        for temp in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                if temp.stat().st_mtime < now - STALE_TEMP_AFTER:
                    temp.unlink()

    # -- locking (the lock itself is in _file_lock.py) ---------------------

    def lock(self, key: str, timeout: float) -> contextlib.AbstractContextManager[None]:
        """Hold ``<path>.lock`` (all entries share the one file, so one lock).

        Raises:
            CacheLockTimeoutError: Held by another process for ``timeout`` s.
            CacheUnavailableError: The lock file cannot be created.
        """
        return hold_lock(self.lock_path, timeout)

    def alock(self, key: str, timeout: float) -> contextlib.AbstractAsyncContextManager[None]:
        """``lock`` for asyncio: polls the lock without blocking the loop.

        Raises:
            CacheLockTimeoutError: Held by another process for ``timeout`` s.
            CacheUnavailableError: The lock file cannot be created.
        """
        return ahold_lock(self.lock_path, timeout)
