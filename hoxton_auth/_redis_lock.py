"""The fleet-wide lock of ``RedisTokenCache``: a redis-py ``Lock`` held as a lease.

Why it is safe against a dead holder: the lock is a Redis key with a TTL of
``ttl`` seconds, renewed by a heartbeat thread every third of that while the
holder is alive. A holder killed mid-fetch stops renewing, so the key expires
within ``ttl`` and a waiter takes over; a live holder whose token request
takes longer (retries, a slow tenant) keeps its lock.

asyncio waits by polling with non-blocking attempts in worker threads, so the
event loop never blocks; a task cancelled during an attempt never leaves the
lock held (see ``_Attempt``).

redis-py is imported when a lease is made, never at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["POLL_INTERVAL", "RedisLease"]

logger = logging.getLogger("hoxton_auth")

POLL_INTERVAL = 0.05  # seconds between two tries of a busy lock

Translate = Callable[[], contextlib.AbstractContextManager[None]]


class RedisLease:
    """One acquisition of the Redis lock ``name``, renewed while held.

    Args:
        client: A ``redis.Redis``.
        name: The lock's key.
        ttl: Seconds the key outlives a holder that stopped renewing it.
        translate: Wraps each Redis call to turn redis-py errors into ours.
    """

    def __init__(self, client: Any, name: str, ttl: float, translate: Translate) -> None:
        from redis.exceptions import LockNotOwnedError, RedisError

        self.name = name
        self.ttl = ttl
        self._translate = translate
        self._not_owned: type[Exception] = LockNotOwnedError
        self._errors: type[Exception] = RedisError
        # thread_local=False: the heartbeat thread (and, for asyncio, whichever
        # worker thread releases) must see the token; each lease has its own
        # Lock object, so no two holders ever share one.
        self._lock = client.lock(name, timeout=ttl, sleep=POLL_INTERVAL, thread_local=False)
        self._stopped = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def acquire(self, wait: float) -> bool:
        """Take the lock, waiting at most ``wait`` seconds; ``False`` if not."""
        with self._translate():
            won = bool(self._lock.acquire(blocking_timeout=wait))
        if won:
            self._start_heartbeat()
        return won

    async def aacquire(self, wait: float) -> bool:
        """``acquire`` for asyncio: never blocks the event loop."""
        deadline = time.monotonic() + wait
        while True:
            attempt = _Attempt(self)
            try:
                won = await asyncio.to_thread(attempt.run)
            except asyncio.CancelledError:
                attempt.abandon()
                raise
            if won:
                self._start_heartbeat()
                return True
            if time.monotonic() + POLL_INTERVAL > deadline:
                return False
            await asyncio.sleep(POLL_INTERVAL)

    def try_once(self) -> bool:
        """One non-blocking attempt (from a worker thread)."""
        with self._translate():
            return bool(self._lock.acquire(blocking=False))

    def release(self) -> None:
        """Stop renewing and free the key; never raises (the TTL is the backstop)."""
        if self._heartbeat is not None:
            self._stopped.set()  # first: a beat after the release would fail
            self._heartbeat.join()
        try:
            self._lock.release()
        except self._not_owned:
            logger.warning(
                "Redis lock %s expired while held (this process stalled for more than "
                "lock_timeout=%.0fs); another process may have fetched a token too",
                self.name,
                self.ttl,
            )
        except self._errors as exc:
            # The token is already in hand; the lock's TTL frees the key soon.
            logger.debug("Redis lock %s not released (%s); it expires by itself", self.name, exc)

    async def arelease(self) -> None:
        """``release`` off the event loop."""
        await asyncio.to_thread(self.release)

    def _start_heartbeat(self) -> None:
        self._heartbeat = threading.Thread(
            target=self._beat, name="hoxton-auth-redis-lock", daemon=True
        )
        self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stopped.wait(self.ttl / 3):
            try:
                self._lock.reacquire()
            except self._not_owned:
                return  # lost it; release() says so
            except self._errors:
                continue  # a Redis hiccup: the TTL still runs, try again next beat


class _Attempt:
    """One try at the lock from a worker thread, safe against the task's cancellation.

    A cancelled task does not stop its thread, which may still win the lock:
    whichever of the two comes second hands the lock back, so the fleet never
    waits for the TTL of a lock nobody holds.
    """

    def __init__(self, lease: RedisLease) -> None:
        self._lease = lease
        self._guard = threading.Lock()
        self._won = False
        self._abandoned = False

    def run(self) -> bool:
        won = self._lease.try_once()
        with self._guard:
            if not self._abandoned:
                self._won = won
                return won
        if won:
            self._lease.release()
        return False

    def abandon(self) -> None:
        with self._guard:
            self._abandoned = True
            won = self._won
        if won:  # a thread: releasing is a network call, not for the event loop
            threading.Thread(target=self._lease.release, daemon=True).start()
