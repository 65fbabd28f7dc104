"""``FileTokenCache``: one JSON file shared by every process of a user, and its lock.

How it stays safe with many processes:

* Readers take no lock: every write replaces the file atomically, so a
  reader, or a process killed mid-write, sees the old file or the new one.
* Writers hold ``<path>.lock`` with filelock (``flock`` on POSIX, released by
  the kernel when its holder dies, SIGKILL included). The lock file is never
  deleted: two processes could otherwise lock two different inodes.

How it stays safe on a shared machine: a file that is not a private regular
file of this user, in a directory only this user can write to, holding a
hoxton-auth document (``_cache_format.py``), is *refused*: every operation
raises ``CacheUnavailableError`` and the file is left untouched. The checks,
the reading and the atomic writing are ``_private_file.py``.

How a refresh answer always has somewhere to go (issue 11, full disk):
holding the lock *reserves* the space of the next write first. If the
filesystem has no room, ``lock()`` raises ``CacheUnavailableError`` before any
token request is sent: a rotated refresh token that cannot be stored is never
asked for. A ``store()`` under the lock writes into the reserved file. If a
write still fails, the entry stays *pending* in this object: ``load()`` serves
it, every later ``lock()`` and ``store()`` tries to write it again, and each
failure is a ``HoxtonAuthWarning``: a rotated refresh token is never dropped
silently.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._cache import (
    LOCK_POLL_INTERVAL,
    PRUNE_EXPIRED_AFTER,
    PRUNE_REFRESHABLE_AFTER,
    CacheEntry,
    TokenCache,
)
from ._cache_format import encode, is_sealed
from ._config import read_environment
from ._errors import CacheLockTimeoutError, CacheUnavailableError, ConfigError, warn_once
from ._private_file import (
    LARGE_FILE_BYTES,
    Reservation,
    check_before_locking,
    default_cache_path,
    ensure_directory,
    expand_path,
    read_document,
    release,
    replace,
    reserve,
)
from ._sealing import NoKeyringError, SealedValueError, Sealing, without_sealed_values
from ._token import Token, TokenFormatError

if TYPE_CHECKING:
    from ._types import PathArg, SealingMode

__all__ = [
    "FileTokenCache",
]

logger = logging.getLogger("hoxton_auth")

# Pruning trusts this process's clock only up to this far past the newest
# entry that others wrote (see FileTokenCache._write).
PRUNE_CLOCK_MARGIN = 24 * 3600.0


def _prunable(token: Token, now: float) -> bool:
    if token.refresh_token:
        return token.obtained_at < now - PRUNE_REFRESHABLE_AFTER
    return token.expires_at < now - PRUNE_EXPIRED_AFTER


class FileTokenCache(TokenCache):
    """One JSON file shared by every process of this user, guarded by a file lock.

    The file holds tokens, their expiry and harmless labels (token URL, client
    id, audience, grant kind, scope) under hashed keys, never a client secret
    or password. Directory 0700, file 0600; a file of ours that others can
    read is tightened back to 0600 with a warning. A path that is not a
    private regular file of this user holding a hoxton-auth document is
    refused and left untouched (see the module docstring).

    Args:
        path: The cache file. Default: ``$HOXTON_AUTH_CACHE``, else the
            platform's user cache dir + ``hoxton-auth/tokens.json``.
        lock_wait_timeout: Seconds an auth object waits for the lock while
            another process holds it; default: derived by each auth object
            from its ``retry_deadline`` and ``timeout``.
        sealing: ``"auto"``: refresh tokens are sealed (AES-GCM) with a key
            kept in the OS keyring when one works, else written in plain text
            with one ``HoxtonAuthWarning``; ``"required"``: sealed, or nothing
            is written (``CacheUnavailableError``, before any token request);
            ``"off"``: plain text. Default: ``$HOXTON_AUTH_SEALING``, else
            ``"auto"`` when ``hoxton-auth[keyring]`` is installed, else ``"off"``.
        seal_access_tokens: Seal the access and ID tokens too (a cached
            ``hoxton-auth token`` then loads the keyring). Default:
            ``$HOXTON_AUTH_SEAL_ACCESS_TOKENS``, else False.

    Raises:
        ConfigError: ``lock_wait_timeout`` is not a number >= 0, ``sealing``
            is unknown, or ``path`` starts with ``~`` and there is no home directory.
        CacheUnavailableError: No ``path`` and no default: this user has no
            home directory (``resolve_cache`` then keeps tokens in memory).
    """

    def __init__(
        self,
        path: PathArg | None = None,
        *,
        lock_wait_timeout: float | None = None,
        sealing: SealingMode | None = None,
        seal_access_tokens: bool | None = None,
    ) -> None:
        chosen = expand_path(path) if path is not None else default_cache_path()
        # The library's own file in its own directory (no path, no $HOXTON_AUTH_CACHE):
        # garbage there is moved aside, never at a path the user chose (issue 22).
        self._own_file = path is None and not read_environment().get("cache")
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
        #: What this cache seals, and with which key (``_sealing.py``). The key is named
        #: after the real path: one file spelt two ways (``..``, a symlinked directory)
        #: has one lock, so it must have one key.
        self.sealing = Sealing(os.path.realpath(self.path), sealing, seal_access_tokens)
        # Under the lock only: the reserved replacement file (fd, name), and
        # whether this object holds the lock. Only one holder at a time per
        # path exists (the lock is a flock), so plain attributes suffice.
        self._reservation: Reservation | None = None
        self._locked = False
        # Entries whose write failed after a reservation: served by load()
        # and written again at every later lock() and store().
        self._pending: dict[str, CacheEntry] = {}
        self._written_at: float | None = None  # the file's mtime when last read
        self._unreadable: dict[str, str] = {}  # key -> why its entry did not open

    def __repr__(self) -> str:
        return f"FileTokenCache({str(self.path)!r})"

    # -- reading (no lock needed) ------------------------------------------------

    def load(self, key: str) -> CacheEntry | None:
        """The entry for ``key``, or ``None`` when absent or unreadable.

        Raises:
            CacheUnavailableError: The file is refused (see the class docstring),
                or the entry is sealed and no keyring works in this process.
        """
        raw = self._read_document().get("entries", {}).get(key)
        self._unreadable.pop(key, None)
        try:
            stored = None if raw is None else self._parse(key, raw, strict=True)
        except NoKeyringError as exc:
            # Not a miss: its key is likely in a keyring out of this process's reach
            # (cron, SSH), and a miss would send a superseded seed refresh token, which
            # makes Auth0 revoke the whole login for every process (issue 24 review).
            raise CacheUnavailableError(
                f"token cache {self.path}: entry {key[:8]} {exc}; it is not read here "
                "(use it where the OS keyring works, or delete the cache file to start over)"
            ) from None
        pending = self._pending.get(key)
        if pending is not None and not _newer(stored, pending):
            return pending
        return stored

    def unreadable(self, key: str) -> str | None:
        """Why ``key``'s entry did not open at the last ``load`` (a sealed one), else ``None``."""
        return self._unreadable.get(key)

    def entries(self) -> dict[str, CacheEntry]:
        """Every readable entry.

        Raises:
            CacheUnavailableError: The file is refused (see the class docstring).
        """
        raws = self._read_document().get("entries", {})
        self._unreadable.clear()
        parsed = {key: self._parse(key, raw) for key, raw in raws.items()}
        for key, pending in list(self._pending.items()):
            if not _newer(parsed.get(key), pending):
                parsed[key] = pending
        return {key: entry for key, entry in parsed.items() if entry is not None}

    def _read_document(self) -> dict[str, Any]:
        """The file's document (``{}`` when absent); damage of ours is salvaged.

        Raises:
            CacheUnavailableError: The file is refused, or cannot be read.
        """
        read = read_document(self.path, move_aside=self._own_file)
        if read is None:
            self._written_at = None
            return {}
        decoded, info = read
        self._written_at = info.st_mtime  # the last writer's time, for pruning (_write)
        if info.st_size >= LARGE_FILE_BYTES:  # issue 21: said once, long before it hurts
            warn_once(
                "large",
                str(self.path),
                "token cache %s holds %d entries (%.0f MiB) and every renewal rewrites it "
                "whole, so each one costs more as it grows: for a back end with many users' "
                "sessions use RedisTokenCache (pip install 'hoxton-auth[redis]')",
                self.path,
                len(decoded.document.get("entries", {})),
                info.st_size / 2**20,
            )
        if decoded.damage is not None:
            warn_once(
                "damaged",
                f"{self.path} {info.st_ino} {info.st_mtime_ns} {info.st_size}",
                "token cache %s %s; the next write repairs it",
                self.path,
                decoded.damage,
            )
        return decoded.document

    def _parse(
        self, key: str, raw: Any, *, unsealed: bool = True, strict: bool = False
    ) -> CacheEntry | None:
        """The entry ``raw``, or ``None`` (with one warning) when it cannot be read.

        ``unsealed=False``: its sealed fields are left closed (stand-ins), for
        decisions on its times alone; no key is needed. ``strict``: a sealed
        entry that no keyring here can open raises ``NoKeyringError``.
        """
        try:
            if not isinstance(raw, dict) or not isinstance(raw.get("meta"), dict):
                raise TokenFormatError("an entry must be an object with token and meta")
            meta = {str(k): str(v) for k, v in raw["meta"].items()}
            token = raw.get("token")
            if unsealed:
                token = self.sealing.open_token(key, token)
            else:
                token = without_sealed_values(token)
            return CacheEntry(Token.from_dict(token), meta)
        except SealedValueError as exc:
            if strict and isinstance(exc, NoKeyringError):
                raise
            self._unreadable[key] = str(exc)
            # A miss, never a crash: that session logs in again (issue 24).
            warn_once(
                "sealed entry",
                f"{self.path} {key} {exc}",
                "token cache %s: entry %s cannot be read, %s: it is treated as absent "
                "(log in again, or fetch a new token)",
                self.path,
                key[:8],
                str(exc),
            )
            return None
        except TokenFormatError as exc:
            # Not dropped: it may be the entry of a newer hoxton-auth; it is kept on rewrite.
            warn_once(
                "entry skipped",
                f"{self.path} {key} {exc}",
                "token cache %s: entry %s skipped (kept in the file): %s",
                self.path,
                key[:8],
                str(exc),
            )
            return None

    def _parse_times(self, key: str, raw: Any) -> CacheEntry | None:
        """The entry with its sealed fields left closed: for pruning and "which is newer"."""
        return None if raw is None else self._parse(key, raw, unsealed=False)

    def describe_storage(self) -> str:
        """How this cache keeps its secrets, for ``hoxton-auth status`` (issue 24).

        Raises:
            CacheUnavailableError: The file is refused.
        """
        self.entries()  # notes the entries that do not open here (``unreadable``)
        raws = self._read_document().get("entries", {}).values()
        tokens = [raw.get("token") if isinstance(raw, dict) else None for raw in raws]
        refresh = [
            t["refresh_token"]
            for t in tokens
            if isinstance(t, dict) and t.get("refresh_token") is not None
        ]
        sealed = sum(1 for value in refresh if is_sealed(value))
        said = (
            f"{self.sealing.describe()}; {sealed} of the {len(refresh)} refresh token(s) "
            "in the file are sealed"
        )
        if self._unreadable:
            count, why = len(self._unreadable), next(iter(self._unreadable.values()))
            said += f"; {count} entr{'y' if count == 1 else 'ies'} cannot be opened here ({why})"
        return said

    # -- writing (under the lock) ------------------------------------------------

    def store(self, key: str, entry: CacheEntry) -> None:
        """Save ``entry``; long-dead entries are dropped, unknown ones kept.

        Under ``lock()``, the write goes into the space reserved when the lock
        was taken; if it still fails, the entry is kept pending (served by
        ``load``, written again at the next ``lock``/``store``) with a
        ``HoxtonAuthWarning``, instead of raising.

        Raises:
            CacheUnavailableError: The file is refused, or cannot be written
                outside ``lock()``.
        """
        document = self._read_document()
        previous = self._pending.get(key)
        self._pending[key] = entry
        try:
            self._write_pending(document, storing=key)
        except CacheUnavailableError:
            # Outside the lock nothing was reserved: the caller hears of it.
            if previous is None:
                self._pending.pop(key, None)
            else:
                self._pending[key] = previous
            raise

    def delete(self, key: str) -> None:
        """Forget ``key``.

        Raises:
            CacheUnavailableError: The file cannot be written, or is refused.
        """
        document = self._read_document()
        dropped = self._pending.pop(key, None) is not None
        if document.get("entries", {}).pop(key, None) is not None or dropped or self._pending:
            self._write_pending(document)

    def _write_pending(self, document: dict[str, Any], storing: str | None = None) -> None:
        """Write ``document`` with the pending entries; keep them if that fails under the lock.

        ``storing``: the key ``store()`` is saving now; its entry is written
        whatever the file holds. An entry left pending by an earlier failed
        write yields to a newer one another process stored since.

        Raises:
            CacheUnavailableError: The write failed outside ``lock()``.
        """
        entries = document.setdefault("entries", {})
        for key, entry in self._pending.items():
            old = entries.get(key)
            if key != storing and _newer(self._parse_times(key, old), entry):
                continue  # another process stored a newer token since the failed write
            unknown = (
                {k: v for k, v in old.items() if k not in ("meta", "token")}
                if isinstance(old, dict)
                else {}
            )
            token = self.sealing.seal_token(key, entry.token.to_dict())
            entries[key] = {**unknown, "meta": dict(entry.meta), "token": token}
        try:
            self._write(document)
        except CacheUnavailableError as exc:
            if not self._locked:
                raise
            message = (
                f"{exc}; {len(self._pending)} new token(s) are kept in this process's memory "
                "and written again at the next renewal. Until then another process may use a "
                "superseded refresh token and end the login: free space there, or set "
                "HOXTON_AUTH_CACHE to a file elsewhere"
            )
            warn_once("tokens not written", str(self.path), "%s", message, every_time=True)
            return
        self._pending.clear()

    def _write(self, document: dict[str, Any]) -> None:
        now = time.time()
        parsed = {key: self._parse_times(key, raw) for key, raw in document["entries"].items()}
        # Issue 19: whose clock decides that other users' entries are dead? Not
        # this process's alone: one running a year ahead would drop every
        # refresh token in the file. The file's last write and the entries
        # others wrote vouch for the time: no later than the newest of them,
        # plus a day.
        others = [e.token.obtained_at for k, e in parsed.items() if e and k not in self._pending]
        if self._written_at is not None:
            others.append(self._written_at)
        reference = min(now, max(others, default=now) + PRUNE_CLOCK_MARGIN)
        entries = {}
        for key in sorted(parsed):
            entry = parsed[key]
            if entry is None or not _prunable(entry.token, reference):
                entries[key] = document["entries"][key]
        payload = encode(document, entries)
        reservation, self._reservation = self._reservation, None
        replace(self.path, payload, reservation, now)

    # -- taking and giving back the reservation of the next write (under the lock) --

    def _locked_begin(self) -> None:
        """Right after the lock is taken: reserve, then write what is still pending.

        Raises:
            CacheUnavailableError: No room for the next write, or sealing is
                required and no keyring works.
        """
        if self.sealing.mode == "required":
            self.sealing.key_for_writing()  # fail closed now, before any token request
        self._reservation = reserve(self.path)
        self._locked = True
        if self._pending:
            self._write_pending(self._read_document())
            if self._reservation is None:
                self._reservation = reserve(self.path)

    def _locked_end(self) -> None:
        self._locked = False
        reservation, self._reservation = self._reservation, None
        release(reservation)

    # -- locking -----------------------------------------------------------------

    def prepare(self) -> None:
        """Import filelock (and with it asyncio) now, not in a background renewal."""
        import filelock  # noqa: F401  here: see _hold_lock

    def lock(self, key: str, timeout: float) -> contextlib.AbstractContextManager[None]:
        """Hold ``<path>.lock`` (all entries share the one file, so one lock).

        Raises:
            CacheLockTimeoutError: Held by another process for ``timeout`` s.
            CacheUnavailableError: The lock file cannot be created, or is refused.
        """
        return self._hold_lock(timeout)

    def _prepare_lock(self) -> None:
        """Create the directory; refuse a lock path that is not a private file of ours."""
        with self._translate_lock_errors(0):
            ensure_directory(self.path)
        check_before_locking(self.path, self.lock_path)

    @contextlib.contextmanager
    def _hold_lock(self, timeout: float) -> Iterator[None]:
        # Here and below, not at the top: filelock loads asyncio, and a token read
        # from the cache without the lock never loads either (tests/test_imports.py,
        # NOT_FOR_CACHED_TOKEN).
        import filelock

        self._prepare_lock()
        file_lock = filelock.FileLock(str(self.lock_path), timeout=timeout, **_lock_options())
        with self._translate_lock_errors(timeout):
            file_lock.acquire()
        try:
            self._locked_begin()
            yield
        finally:
            self._locked_end()
            file_lock.release()

    @contextlib.contextmanager
    def _translate_lock_errors(self, timeout: float) -> Iterator[None]:
        import filelock  # here, not at the top: see _hold_lock

        try:
            yield
        except filelock.Timeout:
            raise CacheLockTimeoutError(
                f"token cache lock {self.lock_path} is held by another process and was not "
                f"released within {timeout:g}s; the holder looks stuck (find it with "
                f"`fuser {self.lock_path}`)"
            ) from None
        except OSError as exc:
            if isinstance(exc, CacheUnavailableError):
                raise
            raise CacheUnavailableError(f"cannot lock token cache {self.lock_path}: {exc}") from exc


def _newer(stored: CacheEntry | None, pending: CacheEntry) -> bool:
    """Whether ``stored`` was obtained after ``pending`` (another process renewed since)."""
    return stored is not None and stored.token.obtained_at > pending.token.obtained_at


def _lock_options() -> dict[str, Any]:
    import filelock  # here, not at the top: see FileTokenCache._hold_lock

    options: dict[str, Any] = {"mode": 0o600}
    parameters = inspect.signature(filelock.FileLock.__init__).parameters
    if "poll_interval" in parameters:
        options["poll_interval"] = LOCK_POLL_INTERVAL
    if "preserve_lock_file" in parameters:
        options["preserve_lock_file"] = True  # deleting a lock file races with its next user
    return options
