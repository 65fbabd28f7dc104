"""The fleet-wide lock of ``RedisTokenCache``: a redis-py ``Lock`` held as a lease.

Why it is safe against a dead holder: the lock is a Redis key with a TTL of
``ttl`` seconds, renewed by a heartbeat thread every third of that while the
holder is alive. A holder killed mid-fetch stops renewing, so the key expires
within ``ttl`` and a waiter takes over; a live holder whose token request
takes longer (retries, a slow tenant) keeps its lock.

redis-py is imported when a lease is made, never at import time.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from ._cache import LOCK_POLL_INTERVAL

__all__ = ["RedisLease"]

logger = logging.getLogger("hoxton_auth")


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
        # thread_local=False: the heartbeat thread must see the token; each
        # lease has its own Lock object, so no two holders ever share one.
        self._lock = client.lock(name, timeout=ttl, sleep=LOCK_POLL_INTERVAL, thread_local=False)
        self._stopped = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def acquire(self, wait: float) -> bool:
        """Take the lock, waiting at most ``wait`` seconds; ``False`` if not."""
        with self._translate():
            won = bool(self._lock.acquire(blocking_timeout=wait))
        if won:
            self._start_heartbeat()
        return won

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
