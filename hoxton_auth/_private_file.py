"""The token cache's file on disk: used only if it is this user's, written atomically.

How it stays safe on a shared machine (issue 11; StrictModes in OpenSSH):
the file is opened with ``O_NOFOLLOW | O_NONBLOCK`` and used only if it is a
regular file of the effective user, in a
directory that no other user can write to (unless sticky and ours), holding a
hoxton-auth document (``_cache_format.py``; of a file that does not begin as
one, at most ``MAX_FILE_BYTES`` are read). Anything else is *refused*:
``CacheUnavailableError`` naming the path, the reason and ``HOXTON_AUTH_CACHE``,
with one ``HoxtonAuthWarning``, and the file is never chmod-ed, truncated or
replaced. The lock file gets the same type and owner checks before it is locked.

How a write is atomic: it goes to a temporary file (0600) in the same
directory, flushed and fsynced, then ``os.replace``-d over the file, so a
reader, or a process killed mid-write, sees the old file or the new one.

How a write always has room (issue 11, full disk): ``reserve`` creates that
temporary file in advance and pre-allocates (``posix_fallocate``) the
current file's size plus ``RESERVE_MARGIN``; ``replace`` then writes into it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

from ._cache_format import NOT_OURS, Decoded, begins_as_ours, decode
from ._config import LOGIN_KEY_VARIABLE, read_environment
from ._errors import CacheUnavailableError, ConfigError, warn_once

__all__ = [
    "LARGE_FILE_BYTES",
    "LOGIN_KEY_BYTES",
    "LOGIN_KEY_VARIABLE",
    "MAX_FILE_BYTES",
    "RESERVE_MARGIN",
    "STALE_TEMP_AFTER",
    "Reservation",
    "check_before_locking",
    "check_directory",
    "default_cache_path",
    "ensure_directory",
    "expand_path",
    "login_key_path",
    "read_document",
    "read_login_key",
    "release",
    "replace",
    "reserve",
]

# Read at most this much of a file that does not begin as ours (issue 11). A
# file of ours is read whole however large (issue 21: a back end with 2,150
# sessions outgrew the 4 MiB cap and refused its own file); from
# LARGE_FILE_BYTES on, one warning points to RedisTokenCache, because every
# write rewrites the whole file (benchmarks/bench_file_cache_size.py).
MAX_FILE_BYTES = 4 * 1024 * 1024
LARGE_FILE_BYTES = 4 * 1024 * 1024  # about 2,000 sessions: where 0.2 refused its own file
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

#: A temporary file created (and pre-allocated) for the next write: (fd, name).
Reservation = tuple[int, str]


def expand_path(path: str | os.PathLike[str]) -> Path:
    """``path`` with a leading ``~`` expanded.

    Raises:
        ConfigError: It starts with ``~`` and this user has no home directory
            (``HOME`` unset and no passwd entry, as in ``docker run --user 4242``).
    """
    try:
        expanded = Path(path).expanduser()
    except (RuntimeError, KeyError):  # pathlib: "Could not determine home directory"
        expanded = Path(path)
    if expanded.parts[:1] and expanded.parts[0].startswith("~"):
        raise ConfigError(
            f"token cache path {os.fspath(path)!r} starts with ~, but this user (uid "
            f"{_uid()}) has no home directory (HOME is unset and there is no passwd "
            f"entry): give HOXTON_AUTH_CACHE or cache= an absolute path"
        )
    return expanded


def _uid() -> object:
    return os.geteuid() if hasattr(os, "geteuid") else "?"


def default_cache_path() -> Path:
    """``$HOXTON_AUTH_CACHE``, else the user cache dir + ``hoxton-auth/tokens.json``.

    Raises:
        ConfigError: ``$HOXTON_AUTH_CACHE`` starts with ``~`` and there is no home.
        CacheUnavailableError: There is no user cache dir: no home directory
            (a container's uid without a passwd entry, ``env -i``). Never a
            relative ``~/.cache`` (platformdirs before 4.12 returned one, which
            would put tokens in ``./~/`` of the working directory).
    """
    configured = read_environment().get("cache")
    if configured:
        return expand_path(configured)
    return (
        _user_cache_dir(
            "no default token cache", "HOXTON_AUTH_CACHE to a file path (or a redis:// URL)"
        )
        / "tokens.json"
    )


def _user_cache_dir(what: str, instead: str) -> Path:
    """This user's private cache directory for hoxton-auth (platformdirs).

    Raises:
        CacheUnavailableError: There is none: no home directory (a container's
            uid without a passwd entry, ``env -i``). Never a relative
            ``~/.cache`` (platformdirs before 4.12 returned one, which would put
            files in ``./~/`` of the working directory). The message says
            ``what`` is missing and to set ``instead``.
    """
    import platformdirs  # imported here: only a process that touches the disk needs it

    try:
        directory: Path | None = platformdirs.user_cache_path("hoxton-auth", appauthor=False)
    except (RuntimeError, KeyError, OSError):  # platformdirs >= 4.12: no home directory
        directory = None
    if directory is None or not directory.is_absolute() or "~" in directory.parts[0]:
        raise CacheUnavailableError(
            f"{what}: this user (uid {_uid()}) has no home directory (HOME is unset and "
            f"there is no passwd entry); set {instead}"
        )
    return directory


# -- is it ours ----------------------------------------------------------------------


def _refuse(
    path: Path,
    reason: str,
    *,
    quiet: bool = False,
    what: str = "token cache",
    instead: str = "remove it, or set HOXTON_AUTH_CACHE to another file",
) -> CacheUnavailableError:
    """The error (and, unless ``quiet``, the one warning) for a file we do not touch."""
    message = (
        f"{what} {path} refused: {reason}; hoxton-auth does not read, change or "
        f"replace it ({instead})"
    )
    if not quiet:
        warn_once("refused", f"{path}: {reason}", "%s", message)
    return CacheUnavailableError(message)


def check_directory(path: Path, *, quiet: bool = False) -> None:
    """Refuse a directory another user can write to (they could swap our files).

    ``quiet``: no warning (for ``read_document(quiet=True)``).

    Raises:
        CacheUnavailableError: The directory of ``path`` is refused or unusable.
    """
    directory = path.parent
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        return  # created 0700 by the first write
    except OSError as exc:
        raise CacheUnavailableError(f"cannot use token cache {path}: {exc}") from exc
    if os.name != "posix" or not stat.S_ISDIR(info.st_mode):
        return  # Windows: ACLs guard it; not a directory: the open fails clearly
    euid = os.geteuid()
    if info.st_uid not in (euid, 0):
        raise _refuse(path, f"its directory belongs to uid {info.st_uid}", quiet=quiet)
    open_to_others = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if open_to_others and not (info.st_mode & stat.S_ISVTX and info.st_uid == euid):
        mode = stat.S_IMODE(info.st_mode)
        raise _refuse(path, f"its directory is writable by others (mode {mode:o})", quiet=quiet)
    _check_ancestors(path, euid, quiet=quiet)


def _check_ancestors(path: Path, euid: int, *, quiet: bool) -> None:
    """Refuse a cache under a directory others could rename ours away in (issue 22).

    OpenSSH's StrictModes: every directory from the cache's up to the home
    directory (or ``/``) belongs to this user or root and is not writable by
    group or others; a sticky directory (``/tmp``) is fine, since others cannot
    rename what is ours in it.
    """
    home = os.environ.get("HOME") or None
    for ancestor in path.parent.parents:
        try:
            info = os.stat(ancestor)
        except OSError:
            continue  # missing (created 0700 by the first write) or not searchable
        if info.st_uid not in (euid, 0):
            reason = f"its ancestor directory {ancestor} belongs to uid {info.st_uid}"
            raise _refuse(path, reason, quiet=quiet)
        writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if writable and not info.st_mode & stat.S_ISVTX:
            mode = stat.S_IMODE(info.st_mode)
            reason = (
                f"its ancestor directory {ancestor} is writable by others (mode {mode:o}): "
                "they could move the cache's directory away and put theirs in its place"
            )
            raise _refuse(path, reason, quiet=quiet)
        if home is not None and str(ancestor) == home.rstrip("/"):
            return


def _check_file(path: Path, info: os.stat_result, *, quiet: bool = False) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(path, "it is not a regular file", quiet=quiet)
    if os.name == "posix" and info.st_uid != os.geteuid():
        raise _refuse(path, f"it belongs to uid {info.st_uid}, not to this user", quiet=quiet)


def check_before_locking(path: Path, lock_path: Path) -> None:
    """Refuse a lock path (or cache path) that is not a private file of ours.

    Raises:
        CacheUnavailableError: Either path is refused, or cannot be examined.
    """
    check_directory(path)
    for each in (path, lock_path):  # the cache too: no lock file beside /dev/null
        try:
            info = os.lstat(each)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise CacheUnavailableError(f"cannot lock token cache {each}: {exc}") from exc
        if stat.S_ISLNK(info.st_mode):
            raise _refuse(each, "it is a symbolic link")
        _check_file(each, info)


# -- reading -----------------------------------------------------------------------------


def read_document(
    path: Path, *, quiet: bool = False, move_aside: bool = False
) -> tuple[Decoded, os.stat_result] | None:
    """The decoded file and its ``fstat``, or ``None`` when absent.

    ``quiet``: a look that changes and reports nothing (a cached ``hoxton-auth
    token``): a refused file raises with no warning, and a file open to
    other users raises instead of being tightened. The caller then takes the
    full path, which reports it.

    ``move_aside``: ``path`` is the library's own default file, in its own
    private directory: a file of ours there that is not a hoxton-auth document
    (garbage, another program's) is renamed ``<name>.unreadable-<time>``
    (kept, never deleted), with one warning naming it, and reads as absent,
    so that a fresh cache starts. A path the user chose is never moved.

    Raises:
        CacheUnavailableError: The file is refused, or cannot be read.
    """
    check_directory(path, quiet=quiet)
    fd = _open_own(path, "token cache", lambda reason: _refuse(path, reason, quiet=quiet))
    if fd is None:
        return None
    try:
        info = os.fstat(fd)
        _check_file(path, info, quiet=quiet)  # before reading: a FIFO or /dev/zero is never read
        chunks, size = [], 0
        while size <= MAX_FILE_BYTES and (chunk := os.read(fd, MAX_FILE_BYTES + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_FILE_BYTES:
            start = chunks[0][:4096].decode("utf-8", errors="replace")
            if not begins_as_ours(start):
                raise _refuse(path, f"it is larger than {MAX_FILE_BYTES} bytes", quiet=quiet)
            while chunk := os.read(fd, max(info.st_size - size, 0) + 65536):
                chunks.append(chunk)  # ours: read whole, at linear cost (issue 21)
                size += len(chunk)
        decoded = decode(b"".join(chunks).decode("utf-8", errors="replace"))
        if decoded.refused == NOT_OURS and move_aside and not quiet:
            _move_aside(path, info)
            return None
        if decoded.refused is not None:
            raise _refuse(path, decoded.refused, quiet=quiet)
        if quiet and _open_to_others(info):
            raise CacheUnavailableError(f"token cache {path} is open to other users")
        _tighten(path, fd, info)  # only now: a file that is not ours is never chmod-ed
    except OSError as exc:
        if isinstance(exc, CacheUnavailableError):
            raise
        raise CacheUnavailableError(f"cannot read token cache {path}: {exc}") from exc
    finally:
        os.close(fd)
    return decoded, info


def _move_aside(path: Path, info: os.stat_result) -> None:
    """Rename the unreadable file at ``path`` out of the way, keeping it (issue 22).

    Raises:
        CacheUnavailableError: It could not be renamed (then it is refused as before).
    """
    import time  # here: only a damaged default cache needs it

    moved = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}")
    try:
        if moved.exists():  # a second one in the same second: never overwrite the first
            moved = path.with_name(f"{moved.name}-{info.st_ino}")
        # Only the file we read: another process may have replaced it since.
        if os.lstat(path).st_ino != info.st_ino:
            return
        os.rename(path, moved)
    except OSError as exc:
        raise _refuse(path, f"{NOT_OURS}, and could not be moved aside: {exc}") from exc
    warn_once(
        "moved aside",
        f"{path} {info.st_ino}",
        "token cache %s was not a hoxton-auth token cache; moved aside to %s (kept, "
        "not deleted) and a fresh cache started",
        path,
        moved,
    )


def _open_to_others(info: os.stat_result) -> bool:
    # Windows reports every file as 0o666 and has no fchmod: ACLs guard it there.
    return os.name == "posix" and bool(info.st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def _tighten(path: Path, fd: int, info: os.stat_result) -> None:
    mode = stat.S_IMODE(info.st_mode)
    if not _open_to_others(info):
        return
    # Tokens are credentials: another user who can read them is the user.
    try:
        os.fchmod(fd, 0o600)
    except OSError as exc:
        warn_once(
            "open to others",
            f"{path} {mode:o}",
            "token cache %s is open to other users (mode %o) and could not be tightened: %s",
            path,
            mode,
            str(exc),
        )
        return
    warn_once(
        "tightened",
        f"{path} {info.st_ino} {mode:o}",
        "token cache %s was open to other users (mode %o); tightened to 0600",
        path,
        mode,
    )


# -- writing -----------------------------------------------------------------------------


def ensure_directory(path: Path) -> None:
    """Create the directory of ``path`` (0700) if it is missing."""
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)


def _create_temp(path: Path) -> Reservation:
    # mkstemp creates it 0600, in the cache's directory so os.replace is atomic.
    # Here, not at the top: a cached `hoxton-auth token` only reads, and never
    # loads tempfile (tests/test_imports.py, NOT_FOR_CLI_FAST_TOKEN).
    import tempfile

    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")


def replace(path: Path, payload: bytes, reservation: Reservation | None, now: float) -> None:
    """Write ``payload`` over ``path`` atomically, into ``reservation`` if one is given.

    Raises:
        CacheUnavailableError: The write failed (the old file is left as it was).
    """
    try:
        if reservation is None:
            ensure_directory(path)
            reservation = _create_temp(path)
    except OSError as exc:
        raise CacheUnavailableError(f"cannot write token cache {path}: {exc}") from exc
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
        os.replace(temp_name, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise CacheUnavailableError(f"cannot write token cache {path}: {exc}") from exc
    _sync_directory(path)
    _remove_stale_temp_files(path, now)


def _sync_directory(path: Path) -> None:
    # The rename is durable only once the directory is on disk (power loss).
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_stale_temp_files(path: Path, now: float) -> None:
    for temp in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if temp.stat().st_mtime < now - STALE_TEMP_AFTER:
                temp.unlink()


# -- reserving the space of the next write -------------------------------------------


def reserve(path: Path) -> Reservation:
    """Create and pre-allocate the replacement file of the next write.

    Raises:
        CacheUnavailableError: There is no room for it (or no way to create it).
    """
    try:
        size = os.stat(path).st_size
    except OSError:
        size = 0
    size += RESERVE_MARGIN
    try:
        fd, temp_name = _create_temp(path)
    except OSError as exc:
        raise _unreservable(path, size, exc) from exc
    try:
        _allocate(fd, size)
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise _unreservable(path, size, exc) from exc
    return fd, temp_name


def _unreservable(path: Path, size: int, exc: OSError) -> CacheUnavailableError:
    if exc.errno in _NO_SPACE:
        return CacheUnavailableError(
            f"token cache {path}: no room to store a renewed token (could not reserve "
            f"{size} bytes in {path.parent}: {exc.strerror}); no token request is sent "
            f"whose answer could be lost. Free space on that filesystem, or set "
            f"HOXTON_AUTH_CACHE to a file elsewhere"
        )
    return CacheUnavailableError(f"cannot write token cache {path}: {exc}")


def release(reservation: Reservation | None) -> None:
    """Give back a reservation no write used."""
    if reservation is not None:
        fd, temp_name = reservation
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp_name)


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


# -- the login key: what makes a logged-in session this user's (issue 21) ----------------

LOGIN_KEY_BYTES = 32
_NOT_A_KEY = "it is not a hoxton-auth login key"


def login_key_path() -> Path:
    """``$HOXTON_AUTH_LOGIN_KEY``, else the user cache dir + ``hoxton-auth/login.key``.

    Raises:
        ConfigError: ``$HOXTON_AUTH_LOGIN_KEY`` starts with ``~`` and there is no home.
        CacheUnavailableError: There is no user cache dir (no home directory).

    Not beside ``$HOXTON_AUTH_CACHE``: a cache may be shared (Redis, a file on a
    shared disk), the key never is.
    """
    configured = os.environ.get(LOGIN_KEY_VARIABLE, "").strip()
    if configured:
        return expand_path(configured).absolute()
    return _user_cache_dir("no login key", f"{LOGIN_KEY_VARIABLE} to a file path") / "login.key"


def read_login_key(path: Path, *, create: bool, quiet: bool = False) -> bytes | None:
    """This user's login key at ``path``; with ``create``, made first if missing.

    The key is 32 random bytes (hex) in a private file of this user (0600, in
    a directory others cannot write to, never a symbolic link): only who can
    read it can reach the logged-in session it binds. Created atomically
    (``os.link`` of a complete temporary file), so two processes logging in
    at once end up with the same key.

    Returns:
        The key, or ``None`` when there is none and ``create`` is false.

    Raises:
        CacheUnavailableError: The file is refused (open to others, not ours,
            not a key) or cannot be read or created.
    """
    check_directory(path, quiet=quiet)
    found = _read_key(path, quiet=quiet)
    if found is not None or not create:
        return found
    key = os.urandom(LOGIN_KEY_BYTES)
    try:
        ensure_directory(path)
        check_directory(path, quiet=quiet)
        fd, temp_name = _create_temp(path)
        try:
            try:
                os.write(fd, key.hex().encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.link(temp_name, path)  # never replaces: a concurrent creator's key wins
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
    except OSError as exc:
        if isinstance(exc, CacheUnavailableError):
            raise
        raise CacheUnavailableError(f"cannot create the login key {path}: {exc}") from exc
    _sync_directory(path)
    return _read_key(path, quiet=quiet)


def _open_own(path: Path, what: str, refuse: Callable[[str], CacheUnavailableError]) -> int | None:
    """A read-only descriptor of ``path``, never through a symbolic link; ``None`` if absent.

    Raises:
        CacheUnavailableError: ``path`` is a symbolic link (``refuse``), or unreadable.
    """
    try:
        return os.open(path, _O_OPEN)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.islink(path):  # ELOOP from O_NOFOLLOW
            raise refuse("it is a symbolic link") from exc
        raise CacheUnavailableError(f"cannot read the {what} {path}: {exc}") from exc


def _read_key(path: Path, *, quiet: bool) -> bytes | None:
    fd = _open_own(path, "login key", lambda reason: _refuse_key(path, reason, quiet))
    if fd is None:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse_key(path, "it is not a regular file", quiet)
        if os.name == "posix" and info.st_uid != os.geteuid():
            raise _refuse_key(path, f"it belongs to uid {info.st_uid}, not to this user", quiet)
        if _open_to_others(info):
            # Whoever could read it may hold the session: it is not used, not repaired.
            mode = stat.S_IMODE(info.st_mode)
            raise _refuse_key(path, f"it is open to other users (mode {mode:o})", quiet)
        text = os.read(fd, 4 * LOGIN_KEY_BYTES).decode("ascii", errors="replace").strip()
    except OSError as exc:
        if isinstance(exc, CacheUnavailableError):
            raise
        raise CacheUnavailableError(f"cannot read the login key {path}: {exc}") from exc
    finally:
        os.close(fd)
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != LOGIN_KEY_BYTES:
        raise _refuse_key(path, _NOT_A_KEY, quiet)
    return key


def _refuse_key(path: Path, reason: str, quiet: bool) -> CacheUnavailableError:
    instead = f"remove it and log in again, or set {LOGIN_KEY_VARIABLE} to another file"
    return _refuse(path, reason, quiet=quiet, what="login key", instead=instead)
