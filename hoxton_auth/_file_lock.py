"""The lock of ``FileTokenCache``: ``<path>.lock``, held with filelock by threads or tasks.

Why it is safe against a dead holder: filelock takes ``flock`` on POSIX,
which the kernel releases when its holder dies, SIGKILL included. The lock
file is never deleted: two processes could otherwise lock two different
inodes. A holder that is alive but stuck is reported, never waited for
forever: after ``timeout`` seconds a ``CacheLockTimeoutError`` names the lock
file and how to find its holder.

filelock is imported when a lock is taken, never at import time.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from ._cache import CacheLockTimeoutError, CacheUnavailableError

__all__ = ["LOCK_POLL_INTERVAL", "ahold_lock", "ensure_directory", "hold_lock"]

# Seconds between two tries of a lock another process holds. Every try costs
# CPU (measured: 32 waiters polling every 10 ms burn a third of a 2-core
# machine, slowing the one process that is fetching the token they wait for);
# 50 ms costs a quarter of that, and a waiter's extra latency is at most 50 ms
# once per token lifetime.
LOCK_POLL_INTERVAL = 0.05


def ensure_directory(directory: Path) -> None:
    """Create the cache's directory (0700) if it is missing."""
    if not directory.is_dir():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)


@contextlib.contextmanager
def hold_lock(lock_path: Path, timeout: float) -> Iterator[None]:
    """Hold ``lock_path``, waiting at most ``timeout`` seconds.

    Raises:
        CacheLockTimeoutError: Held by another process for ``timeout`` s.
        CacheUnavailableError: The lock file cannot be created.
    """
    import filelock

    file_lock = filelock.FileLock(str(lock_path), timeout=timeout, **_filelock_options())
    with _translate_lock_errors(lock_path, timeout):
        ensure_directory(lock_path.parent)
        file_lock.acquire()
    try:
        yield
    finally:
        file_lock.release()


@contextlib.asynccontextmanager
async def ahold_lock(lock_path: Path, timeout: float) -> AsyncIterator[None]:
    """``hold_lock`` for asyncio: polls the lock without blocking the loop.

    Raises:
        CacheLockTimeoutError: Held by another process for ``timeout`` s.
        CacheUnavailableError: The lock file cannot be created.
    """
    import asyncio  # here, not at the top: sync-only processes never load asyncio (issue 6)

    import filelock

    file_lock = filelock.AsyncFileLock(str(lock_path), timeout=timeout, **_filelock_options())
    with _translate_lock_errors(lock_path, timeout):
        await asyncio.to_thread(ensure_directory, lock_path.parent)
        await file_lock.acquire()
    try:
        yield
    finally:
        await file_lock.release()


def _filelock_options() -> dict[str, Any]:
    import filelock

    options: dict[str, Any] = {"mode": 0o600}
    parameters = inspect.signature(filelock.FileLock.__init__).parameters
    if "poll_interval" in parameters:
        options["poll_interval"] = LOCK_POLL_INTERVAL
    if "preserve_lock_file" in parameters:
        options["preserve_lock_file"] = True  # deleting a lock file races with its next user
    return options


@contextlib.contextmanager
def _translate_lock_errors(lock_path: Path, timeout: float) -> Iterator[None]:
    import filelock

    try:
        yield
    except filelock.Timeout:
        raise CacheLockTimeoutError(
            f"token cache lock {lock_path} is held by another process and was not "
            f"released within {timeout:g}s; the holder looks stuck (find it with "
            f"`fuser {lock_path}`)"
        ) from None
    except OSError as exc:
        raise CacheUnavailableError(f"cannot lock token cache {lock_path}: {exc}") from exc
