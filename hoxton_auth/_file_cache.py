"""``FileTokenCache``: one JSON file shared by every process of a user, and its lock.

How it stays safe with many processes:

* Readers take no lock. Every write goes to a temporary file in the same
  directory, flushed and fsynced, then ``os.replace``-d over the cache, so a
  reader, or a process killed mid-write, sees the old file or the new one.
* Writers hold ``<path>.lock`` with filelock (``flock`` on POSIX, released by
  the kernel when its holder dies, SIGKILL included). The lock file is never
  deleted: two processes could otherwise lock two different inodes.

How it stays safe on a shared machine (issue 11; StrictModes in OpenSSH):
the file is opened with ``O_NOFOLLOW | O_NONBLOCK`` and used only if it is a
regular file of the effective user, at most ``MAX_FILE_BYTES`` long, in a
directory that no other user can write to (unless sticky and ours), holding a
hoxton-auth document. Anything else is *refused*: every operation raises
``CacheUnavailableError`` naming the path, the reason and ``HOXTON_AUTH_CACHE``,
with one ``HoxtonAuthWarning``, and the file is never chmod-ed, truncated or
replaced. The lock file gets the same type and owner checks before it is locked.

How a refresh answer always has somewhere to go (issue 11, full disk):
holding the lock *reserves* the space of the next write first: the
replacement temporary file is created and pre-allocated (``posix_fallocate``)
to the current file's size plus ``RESERVE_MARGIN``. If the filesystem has no
room, ``lock()`` raises ``CacheUnavailableError`` before any token request is
sent: a rotated refresh token that cannot be stored is never asked for. A
``store()`` under the lock writes into the reserved file and renames it. If a
write still fails, the entry stays *pending* in this object: ``load()`` serves
it, every later ``lock()`` and ``store()`` tries to write it again, and each
failure is a ``HoxtonAuthWarning``: a rotated refresh token is never dropped
silently.

The document format (marker, version, unknown fields kept, salvage of a
damaged file) is in ``_cache_format.py``; a file of a newer major version or
without the marker is refused like the rest.
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import logging
import math
import os
import stat
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._cache import (
    LOCK_POLL_INTERVAL,
    PRUNE_EXPIRED_AFTER,
    PRUNE_REFRESHABLE_AFTER,
    CacheEntry,
    TokenCache,
)
from ._cache_format import decode, encode
from ._errors import CacheLockTimeoutError, CacheUnavailableError, ConfigError, HoxtonAuthWarning
from ._token import Token, TokenFormatError

__all__ = [
    "MAX_FILE_BYTES",
    "RESERVE_MARGIN",
    "FileTokenCache",
    "default_cache_path",
]

logger = logging.getLogger("hoxton_auth")

MAX_FILE_BYTES = 4 * 1024 * 1024  # a thousand entries fit in far less; more is not ours
# Temporary files are only written under the lock, so one older than this
# belongs to a writer that died mid-write.
STALE_TEMP_AFTER = 600.0
# Room reserved beyond the current file for the answer of a refresh: a rotated
# refresh token and an access token are a few KiB, a JWT with large custom
# claims rarely tens of KiB.
RESERVE_MARGIN = 64 * 1024
_NO_SPACE = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG) if code
)
_O_OPEN = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
_O_OPEN |= getattr(os, "O_CLOEXEC", 0)
_warned: set[tuple[object, ...]] = set()  # (cause, path, ...): one warning each per process

PathArg = str | os.PathLike[str]


def default_cache_path() -> Path:
    """``$HOXTON_AUTH_CACHE``, else the user cache dir + ``hoxton-auth/tokens.json``."""
    configured = os.environ.get("HOXTON_AUTH_CACHE")
    if configured:
        return Path(configured).expanduser()
    import platformdirs  # imported here: only a process that touches the disk needs it

    return platformdirs.user_cache_path("hoxton-auth", appauthor=False) / "tokens.json"


def _warn_once(key: tuple[object, ...], message: str, *args: object) -> None:
    """A log record and a ``HoxtonAuthWarning``, once per ``key`` in this process."""
    if key in _warned:
        return
    _warned.add(key)
    logger.warning(message, *args)
    warnings.warn(message % args, HoxtonAuthWarning, stacklevel=3)


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
        # Under the lock only: the reserved replacement file (fd, name), and
        # whether this object holds the lock. Only one holder at a time per
        # path exists (the lock is a flock), so plain attributes suffice.
        self._reservation: tuple[int, str] | None = None
        self._locked = False
        # Entries whose write failed after a reservation: served by load()
        # and written again at every later lock() and store().
        self._pending: dict[str, CacheEntry] = {}

    def __repr__(self) -> str:
        return f"FileTokenCache({str(self.path)!r})"

    # -- refusal ----------------------------------------------------------------

    def _refuse(self, path: Path, reason: str) -> CacheUnavailableError:
        message = (
            f"token cache {path} refused: {reason}; hoxton-auth does not read, change or "
            f"replace it (remove it, or set HOXTON_AUTH_CACHE to another file)"
        )
        _warn_once(("refused", str(path), reason), "%s", message)
        return CacheUnavailableError(message)

    def _check_directory(self) -> None:
        """Refuse a directory another user can write to (they could swap our files)."""
        directory = self.path.parent
        try:
            info = os.stat(directory)
        except FileNotFoundError:
            return  # created 0700 by the first write
        except OSError as exc:
            raise CacheUnavailableError(f"cannot use token cache {self.path}: {exc}") from exc
        if os.name != "posix" or not stat.S_ISDIR(info.st_mode):
            return  # Windows: ACLs guard it; not a directory: the open fails clearly
        euid = os.geteuid()
        if info.st_uid not in (euid, 0):
            raise self._refuse(self.path, f"its directory belongs to uid {info.st_uid}")
        open_to_others = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if open_to_others and not (info.st_mode & stat.S_ISVTX and info.st_uid == euid):
            mode = stat.S_IMODE(info.st_mode)
            raise self._refuse(self.path, f"its directory is writable by others (mode {mode:o})")

    def _check_file(self, path: Path, info: os.stat_result) -> None:
        if not stat.S_ISREG(info.st_mode):
            raise self._refuse(path, "it is not a regular file")
        if os.name == "posix" and info.st_uid != os.geteuid():
            raise self._refuse(path, f"it belongs to uid {info.st_uid}, not to this user")

    # -- reading (no lock needed) ------------------------------------------------

    def load(self, key: str) -> CacheEntry | None:
        """The entry for ``key``, or ``None`` when absent or unreadable.

        Raises:
            CacheUnavailableError: The file is refused (see the class docstring).
        """
        raw = self._read_document().get("entries", {}).get(key)
        stored = None if raw is None else self._parse(key, raw)
        pending = self._pending.get(key)
        if pending is not None and not _newer(stored, pending):
            return pending
        return stored

    def entries(self) -> dict[str, CacheEntry]:
        """Every readable entry.

        Raises:
            CacheUnavailableError: The file is refused (see the class docstring).
        """
        raws = self._read_document().get("entries", {})
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
        self._check_directory()
        try:
            fd = os.open(self.path, _O_OPEN)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            if os.path.islink(self.path):  # ELOOP from O_NOFOLLOW
                raise self._refuse(self.path, "it is a symbolic link") from exc
            raise CacheUnavailableError(f"cannot read token cache {self.path}: {exc}") from exc
        try:
            info = os.fstat(fd)
            self._check_file(self.path, info)  # before reading: a FIFO or /dev/zero is never read
            chunks, size = [], 0
            while size <= MAX_FILE_BYTES and (chunk := os.read(fd, MAX_FILE_BYTES + 1 - size)):
                chunks.append(chunk)
                size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise self._refuse(self.path, f"it is larger than {MAX_FILE_BYTES} bytes")
            decoded = decode(b"".join(chunks).decode("utf-8", errors="replace"))
            if decoded.refused is not None:
                raise self._refuse(self.path, decoded.refused)
            self._tighten(fd, info)  # only now: a file that is not ours is never chmod-ed
        except OSError as exc:
            if isinstance(exc, CacheUnavailableError):
                raise
            raise CacheUnavailableError(f"cannot read token cache {self.path}: {exc}") from exc
        finally:
            os.close(fd)
        if decoded.damage is not None:
            _warn_once(
                ("damaged", str(self.path), info.st_ino, info.st_mtime_ns, info.st_size),
                "token cache %s %s; the next write repairs it",
                self.path,
                decoded.damage,
            )
        return decoded.document

    def _tighten(self, fd: int, info: os.stat_result) -> None:
        # Windows reports every file as 0o666 and has no fchmod: ACLs guard it there.
        mode = stat.S_IMODE(info.st_mode)
        if os.name != "posix" or not mode & (stat.S_IRWXG | stat.S_IRWXO):
            return
        # Tokens are credentials: another user who can read them is the user.
        try:
            os.fchmod(fd, 0o600)
        except OSError as exc:
            _warn_once(
                ("open", str(self.path), mode),
                "token cache %s is open to other users (mode %o) and could not be tightened: %s",
                self.path,
                mode,
                str(exc),
            )
            return
        _warn_once(
            ("tightened", str(self.path), info.st_ino, mode),
            "token cache %s was open to other users (mode %o); tightened to 0600",
            self.path,
            mode,
        )

    def _parse(self, key: str, raw: Any) -> CacheEntry | None:
        try:
            if not isinstance(raw, dict) or not isinstance(raw.get("meta"), dict):
                raise TokenFormatError("an entry must be an object with token and meta")
            meta = {str(k): str(v) for k, v in raw["meta"].items()}
            return CacheEntry(Token.from_dict(raw.get("token")), meta)
        except TokenFormatError as exc:
            # Not dropped: it may be the entry of a newer hoxton-auth; it is kept on rewrite.
            _warn_once(
                ("skipped", str(self.path), key, str(exc)),
                "token cache %s: entry %s skipped (kept in the file): %s",
                self.path,
                key[:8],
                str(exc),
            )
            return None

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
            if key != storing and _newer(self._parse(key, old) if old else None, entry):
                continue  # another process stored a newer token since the failed write
            unknown = (
                {k: v for k, v in old.items() if k not in ("meta", "token")}
                if isinstance(old, dict)
                else {}
            )
            entries[key] = {**unknown, "meta": dict(entry.meta), "token": entry.token.to_dict()}
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
            logger.warning("%s", message)
            warnings.warn(message, HoxtonAuthWarning, stacklevel=4)
            return
        self._pending.clear()

    def _write(self, document: dict[str, Any]) -> None:
        now = time.time()
        entries = {}
        for key in sorted(document.get("entries", {})):
            raw = document["entries"][key]
            parsed = self._parse(key, raw)
            if parsed is None or not _prunable(parsed.token, now):
                entries[key] = raw
        payload = encode(document, entries)
        reservation, self._reservation = self._reservation, None
        try:
            if reservation is None:
                self._ensure_directory()
                reservation = self._create_temp()
        except OSError as exc:
            raise CacheUnavailableError(f"cannot write token cache {self.path}: {exc}") from exc
        fd, temp_name = reservation
        try:
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.ftruncate(fd, len(payload))  # the reserved tail is given back
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp_name, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise CacheUnavailableError(f"cannot write token cache {self.path}: {exc}") from exc
        self._sync_directory()
        self._remove_stale_temp_files(now)

    def _create_temp(self) -> tuple[int, str]:
        # mkstemp creates it 0600, in the cache's directory so os.replace is atomic.
        return tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")

    # -- reserving the space of the next write (under the lock) ---------------------

    def _reserve(self) -> None:
        """Create and pre-allocate the replacement file of the next write.

        Raises:
            CacheUnavailableError: There is no room for it (or no way to create it).
        """
        try:
            size = min(os.stat(self.path).st_size, MAX_FILE_BYTES)
        except OSError:
            size = 0
        size += RESERVE_MARGIN
        try:
            fd, temp_name = self._create_temp()
        except OSError as exc:
            raise self._unreservable(size, exc) from exc
        try:
            _allocate(fd, size)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise self._unreservable(size, exc) from exc
        self._reservation = (fd, temp_name)

    def _unreservable(self, size: int, exc: OSError) -> CacheUnavailableError:
        if exc.errno in _NO_SPACE:
            return CacheUnavailableError(
                f"token cache {self.path}: no room to store a renewed token (could not reserve "
                f"{size} bytes in {self.path.parent}: {exc.strerror}); no token request is sent "
                f"whose answer could be lost. Free space on that filesystem, or set "
                f"HOXTON_AUTH_CACHE to a file elsewhere"
            )
        return CacheUnavailableError(f"cannot write token cache {self.path}: {exc}")

    def _release_reservation(self) -> None:
        reservation, self._reservation = self._reservation, None
        if reservation is not None:
            fd, temp_name = reservation
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp_name)

    def _locked_begin(self) -> None:
        """Right after the lock is taken: reserve, then write what is still pending.

        Raises:
            CacheUnavailableError: No room for the next write.
        """
        self._reserve()
        self._locked = True
        if self._pending:
            self._write_pending(self._read_document())
            if self._reservation is None:
                self._reserve()

    def _locked_end(self) -> None:
        self._locked = False
        self._release_reservation()

    def _ensure_directory(self) -> None:
        """Create the cache's directory (0700) if it is missing."""
        if not self.path.parent.is_dir():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

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

    # -- locking -----------------------------------------------------------------

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
            self._ensure_directory()
        self._check_directory()
        for path in (self.path, self.lock_path):  # the cache too: no lock file beside /dev/null
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise CacheUnavailableError(f"cannot lock token cache {path}: {exc}") from exc
            if stat.S_ISLNK(info.st_mode):
                raise self._refuse(path, "it is a symbolic link")
            self._check_file(path, info)

    @contextlib.contextmanager
    def _hold_lock(self, timeout: float) -> Iterator[None]:
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
        import filelock

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


def _allocate(fd: int, size: int) -> None:
    """Make ``size`` bytes of ``fd`` really take disk blocks (not a sparse file)."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(fd, 0, size)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
    # No fallocate here (Windows, macOS, or a filesystem without it): zeros take blocks too.
    remaining = size
    while remaining:
        remaining -= os.write(fd, bytes(min(remaining, 65536)))
    os.lseek(fd, 0, os.SEEK_SET)


def _lock_options() -> dict[str, Any]:
    import filelock

    options: dict[str, Any] = {"mode": 0o600}
    parameters = inspect.signature(filelock.FileLock.__init__).parameters
    if "poll_interval" in parameters:
        options["poll_interval"] = LOCK_POLL_INTERVAL
    if "preserve_lock_file" in parameters:
        options["preserve_lock_file"] = True  # deleting a lock file races with its next user
    return options
