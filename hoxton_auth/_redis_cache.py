"""``RedisTokenCache``: one token per identity for a whole fleet (issue 7).

Every process on every host that points at the same Redis shares one entry per
identity (token URL, client id, audience, grant, scope, username) under
``<prefix>token:<hash>``, and one redis-py ``Lock`` per identity under
``<prefix>lock:<hash>``: the token manager's double-checked single flight then
makes one token request, and one refresh request, per expiry for the fleet.

The lock is a lease (``_redis_lock.py``): its key expires ``lock_timeout``
seconds after a holder dies, and a live holder keeps renewing it.

Why a sync client serves event loops too, and not ``redis.asyncio``: an
asyncio Redis client is bound to the event loop that opened its connections,
while one cache object serves threads and any number of loops (asyncio or
trio); the slow path runs in a worker thread about once per token life, and
the hot path never reaches the cache at all.

redis-py is imported only when a ``RedisTokenCache`` is created, so
``import hoxton_auth`` works without it; the client is made, and named
without its password, in ``_redis_client.py``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar

from ._cache import (
    CacheEntry,
    TokenCache,
)
from ._errors import CacheLockTimeoutError, CacheUnavailableError, ConfigError
from ._redis_client import ClientArg, import_redis, make_client
from ._redis_lock import RedisLease
from ._token import Token, TokenFormatError

if TYPE_CHECKING:
    import redis

__all__ = ["RedisTokenCache"]

logger = logging.getLogger("hoxton_auth")

FORMAT_VERSION = 1
DEFAULT_LOCK_TIMEOUT = 15.0
# An entry whose token is spent (expired, or dropped by invalidate()) still
# lingers this long rather than vanish at once: what the writer noted in its
# meta, such as a failed fetch (issue 5), must reach the processes that were
# waiting on the lock for it. Nobody uses its token: it is not fresh.
STALE_ENTRY_TTL = 60.0
# A Redis command takes well under a millisecond; a server that has not
# answered in 2 s is in trouble, and the caller is waiting for a token.
DEFAULT_SOCKET_TIMEOUT = 2.0
# After a timeout, calls skip Redis (and go straight to the direct fetch) for
# this long: a black-holed server would otherwise cost every renewal of every
# auth object its timeouts. A refused connection costs nothing and trips nothing.
TIMEOUT_COOLDOWN = 10.0
# An entry holding a refresh token must outlive its access token: the refresh
# token is what renews it. Every refresh rewrites the entry and restarts the
# TTL, so this works like Auth0's *inactivity* lifetime; 400 days (the file
# cache's pruning age) is longer than any lifetime Auth0 lets a tenant set for
# rotating tokens (at most one year), so the cache never forgets a refresh
# token the tenant still honours. Pass ``refresh_token_ttl`` to match a
# tenant's shorter lifetime and not keep dead refresh tokens around.
DEFAULT_REFRESH_TOKEN_TTL = 400 * 24 * 3600.0


class RedisTokenCache(TokenCache):
    """Tokens in Redis, shared by every process of a fleet, with a Redis lock.

    Args:
        url_or_client: A ``redis://``, ``rediss://`` or ``unix://`` URL, or a
            ``redis.Redis`` client (used as configured: give it socket
            timeouts, or an unreachable Redis can stall token renewals).
        prefix: Prepended to every key this cache writes.
        lock_timeout: The Redis lock's timeout: seconds it outlives a holder
            that died (a live holder keeps renewing it). How long a waiter
            waits is each auth object's own deadline (``retry_deadline`` +
            ``timeout`` + a margin), the ``timeout`` given to ``lock``.
        refresh_token_ttl: Seconds an entry holding a refresh token stays in
            Redis after its last write (entries without one expire with their
            access token).
        socket_timeout: Connect and read timeout for a client built from a URL
            (a ``socket_timeout`` in the URL wins).

    Raises:
        ImportError: redis-py is not installed (``pip install "redis>=4.5"``).
        ConfigError: A timeout is not positive.
    """

    transient: ClassVar[bool] = True  # an outage ends: retry Redis on the next renewal

    def __init__(
        self,
        url_or_client: ClientArg,
        *,
        prefix: str = "hoxton-auth:",
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        refresh_token_ttl: float = DEFAULT_REFRESH_TOKEN_TTL,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    ) -> None:
        redis_module = import_redis()
        for name, value in (
            ("lock_timeout", lock_timeout),
            ("refresh_token_ttl", refresh_token_ttl),
            ("socket_timeout", socket_timeout),
        ):
            if not value > 0:
                raise ConfigError(f"{name} must be positive, got {value!r}")
        self.prefix = prefix
        # The lock's life, not ``TokenCache.lock_wait_timeout`` (how long
        # waiters wait), which stays None: they must outwait a live holder's fetch.
        self.lock_timeout = float(lock_timeout)
        self.refresh_token_ttl = float(refresh_token_ttl)
        self._errors: tuple[type[Exception], ...] = (redis_module.RedisError,)
        self._timeouts: tuple[type[Exception], ...] = (redis_module.TimeoutError,)
        self._quiet_until = 0.0  # monotonic time; see TIMEOUT_COOLDOWN
        self._warned: set[str] = set()
        self.client: redis.Redis
        self.client, self._where = make_client(url_or_client, socket_timeout)

    def __repr__(self) -> str:
        return f"RedisTokenCache({self._where!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()

    # -- entries ----------------------------------------------------------------

    def _entry_key(self, key: str) -> str:
        return f"{self.prefix}token:{key}"

    def _lock_key(self, key: str) -> str:
        return f"{self.prefix}lock:{key}"

    @contextlib.contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        if time.monotonic() < self._quiet_until:
            raise CacheUnavailableError(
                f"Redis token cache {self._where} timed out less than "
                f"{TIMEOUT_COOLDOWN:.0f}s ago; not waiting for it again yet"
            )
        try:
            yield
        except self._errors as exc:
            if isinstance(exc, self._timeouts):
                self._quiet_until = time.monotonic() + TIMEOUT_COOLDOWN
            # redis-py's messages name host and port, never the URL's password.
            raise CacheUnavailableError(
                f"Redis token cache {self._where} unavailable ({action}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def load(self, key: str) -> CacheEntry | None:
        """The entry for ``key``, or ``None`` when absent or unreadable.

        Raises:
            CacheUnavailableError: Redis cannot be reached.
        """
        with self._translate("read"):
            raw = self.client.get(self._entry_key(key))
        return None if raw is None else self._parse(key, raw)

    def store(self, key: str, entry: CacheEntry) -> None:
        """Save ``entry`` with a TTL: the token's remaining life (at least
        ``STALE_ENTRY_TTL``), or ``refresh_token_ttl`` when it holds a refresh token.

        Raises:
            CacheUnavailableError: Redis cannot be reached.
        """
        ttl = self._ttl(entry.token, time.time())
        payload = json.dumps(
            {"version": FORMAT_VERSION, "meta": dict(entry.meta), "token": entry.token.to_dict()}
        )
        with self._translate("write"):
            self.client.set(self._entry_key(key), payload, px=math.ceil(ttl * 1000))

    def _ttl(self, token: Token, now: float) -> float:
        remaining = token.expires_at - now
        if token.refresh_token:
            return max(remaining, self.refresh_token_ttl)
        return max(remaining, STALE_ENTRY_TTL)

    def delete(self, key: str) -> None:
        """Forget ``key``.

        Raises:
            CacheUnavailableError: Redis cannot be reached.
        """
        with self._translate("delete"):
            self.client.delete(self._entry_key(key))

    def entries(self) -> dict[str, CacheEntry]:
        """Every readable entry under this cache's prefix.

        Raises:
            CacheUnavailableError: Redis cannot be reached.
        """
        head = self._entry_key("")
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in head) + "*"
        with self._translate("scan"):
            names = list(self.client.scan_iter(match=pattern, count=500))
            values = self.client.mget(names) if names else []
        found: dict[str, CacheEntry] = {}
        for name, raw in zip(names, values, strict=False):
            key = (name.decode() if isinstance(name, bytes) else str(name))[len(head) :]
            entry = None if raw is None else self._parse(key, raw)
            if entry is not None:
                found[key] = entry
        return found

    def _parse(self, key: str, raw: bytes | str) -> CacheEntry | None:
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or not isinstance(data.get("meta"), dict):
                raise TokenFormatError("an entry must be an object with token and meta")
            if data.get("version") != FORMAT_VERSION:
                raise TokenFormatError(f"unknown format version {data.get('version')!r}")
            meta = {str(k): str(v) for k, v in data["meta"].items()}
            return CacheEntry(Token.from_dict(data.get("token")), meta)
        # JSON, UTF-8 and TokenFormatError are ValueErrors; RecursionError: "[[[[..." too deep
        except (ValueError, RecursionError) as exc:
            text = f"Redis token cache {self._where}: entry {key[:8]} skipped: {exc}"
            if text not in self._warned:
                self._warned.add(text)
                logger.warning("%s", text)
            return None

    # -- locking (the lease itself is in _redis_lock.py) ---------------------------

    def _lease(self, key: str) -> RedisLease:
        return RedisLease(
            self.client,
            self._lock_key(key),
            self.lock_timeout,
            functools.partial(self._translate, "lock"),
        )

    def _lock_timeout_error(self, key: str, timeout: float) -> CacheLockTimeoutError:
        return CacheLockTimeoutError(
            f"Redis lock {self._lock_key(key)} on {self._where} is held by another process "
            f"and was not released within {timeout:.0f}s"
        )

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[None]:
        """Hold the fleet-wide lock of ``key``, waiting at most ``timeout`` s.

        Raises:
            CacheLockTimeoutError: Another process held it for ``timeout`` s.
            CacheUnavailableError: Redis cannot be reached.
        """
        lease = self._lease(key)
        if not lease.acquire(timeout):
            raise self._lock_timeout_error(key, timeout)
        try:
            yield
        finally:
            lease.release()
