"""``RedisTokenCache``: tokens shared by a whole fleet (issue 7), with its client and lease.

Every process on every host that points at the same Redis shares one entry per
identity under ``<prefix>token:<hash>`` and one lock per identity under
``<prefix>lock:<hash>``, so single flight makes one token request, and one
refresh, per expiry for the fleet.

The lock is a lease (``RedisLease``): its key has a TTL of ``lock_timeout``
seconds, renewed by a heartbeat thread every third of that while the holder
lives. A holder killed mid-fetch stops renewing and a waiter takes over; a
live holder whose token request takes long (retries, a slow tenant) keeps it.

The client is blocking, not ``redis.asyncio`` (bound to the loop that opened
its connections): one cache serves threads and any number of asyncio or trio
loops, whose slow path runs in a worker thread. redis-py is an optional extra
(``hoxton-auth[redis]``), imported only when a ``RedisTokenCache`` is created.
Reprs and messages never hold the URL's password.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Union
from urllib.parse import urlsplit

from ._cache import LOCK_POLL_INTERVAL, CacheEntry, TokenCache
from ._cache_format import is_sealed
from ._config import cache_key_file
from ._errors import (
    CacheLockTimeoutError,
    CacheUnavailableError,
    ConfigError,
    MaskedBytes,
    warn_once,
)
from ._sealing import SealedValueError, load_key
from ._token import Token, TokenFormatError

if TYPE_CHECKING:
    import redis

__all__ = ["INSTALL_HINT", "ClientArg", "RedisLease", "RedisTokenCache"]

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
# An entry holding a refresh token outlives its access token; every refresh
# restarts the TTL, like Auth0's *inactivity* lifetime. 400 days (the file
# cache's pruning age) exceeds any lifetime Auth0 allows for rotating tokens
# (one year), so no refresh token the tenant honours is forgotten; pass
# ``refresh_token_ttl`` to match a tenant's shorter lifetime.
DEFAULT_REFRESH_TOKEN_TTL = 400 * 24 * 3600.0

INSTALL_HINT = (
    'RedisTokenCache needs redis-py: pip install "redis>=4.5" '
    '(hoxton-auth is not on PyPI yet; in its checkout: pip install -e ".[redis]")'
)

ClientArg = Union[str, "redis.Redis"]


def import_redis() -> Any:
    """The ``redis`` module.

    Raises:
        ImportError: redis-py is not installed; the message says how to install it.
    """
    try:
        import redis
    except ImportError as exc:
        raise ImportError(INSTALL_HINT, name="redis") from exc
    return redis


def make_client(url_or_client: ClientArg, socket_timeout: float) -> tuple[redis.Redis, str]:
    """The client to use, and where it points (for repr and messages, no password).

    Raises:
        ConfigError: ``url_or_client`` is a ``redis.asyncio`` client.
    """
    redis_module = import_redis()
    if isinstance(url_or_client, str):
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # redis-py's default retries a dead server ten times with backoff;
        # here a failure falls back to a direct token fetch, so fail fast.
        # One retry on a connection error still heals a pooled connection
        # that a Redis restart broke; a timeout is not retried.
        client: redis.Redis = redis_module.Redis.from_url(
            url_or_client,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 1, (redis_module.ConnectionError,)),
        )
        return client, _safe_url(url_or_client)
    if inspect.iscoroutinefunction(getattr(url_or_client, "execute_command", None)):
        raise ConfigError(
            "RedisTokenCache needs a blocking client (redis.Redis), not a "
            "redis.asyncio one; it serves asyncio through worker threads"
        )
    return url_or_client, _describe_client(url_or_client)


def _safe_url(url: str) -> str:
    """The URL without user and password, for repr and messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{netloc}{parts.path}"


def _describe_client(client: Any) -> str:
    """``redis client host:port/db`` when the client says, else its type."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if not isinstance(kwargs, dict) or "host" not in kwargs:
        return f"{type(client).__name__} client"
    return f"redis client {kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


# -- the lease ----------------------------------------------------------------

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
        heartbeat = threading.Thread(target=self._beat, name="hoxton-auth-redis-lock", daemon=True)
        try:
            heartbeat.start()
        except RuntimeError:
            # The interpreter is exiting (a background renewal the exit waits for;
            # Python 3.12+ starts no thread then): the lease's TTL covers the fetch.
            logger.debug("Redis lock %s held without a heartbeat: the interpreter exits", self.name)
            return
        self._heartbeat = heartbeat

    def _beat(self) -> None:
        while not self._stopped.wait(self.ttl / 3):
            try:
                self._lock.reacquire()
            except self._not_owned:
                return  # lost it; release() says so
            except self._errors:
                continue  # a Redis hiccup: the TTL still runs, try again next beat


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
        encryption_key: Seal every value (AES-GCM, meta and tokens alike) with
            this 32-byte key (bytes, or their base64): the fleet's hosts share
            it, Redis and its backups never see a token. Values written
            without a key are read as before and sealed on their next write; a
            value sealed with another key is a miss, with one warning.
        encryption_key_file: A file holding that key in base64 (make one with
            ``openssl rand -base64 32``). Default: ``$HOXTON_AUTH_CACHE_KEY_FILE``.

    Raises:
        ImportError: redis-py is not installed (``pip install "redis>=4.5"``).
        ConfigError: A timeout is not positive, or the key is not 32 bytes.
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
        encryption_key: bytes | str | None = None,
        encryption_key_file: str | os.PathLike[str] | None = None,
    ) -> None:
        # First: a traceback's locals show this object (repr) and this frame's
        # arguments even if __init__ fails (a timeout, the URL), so the key is masked.
        self.prefix, self._where, self._key = prefix, "(not built)", None
        self._unreadable: dict[str, str] = {}  # key -> why its value did not open
        if encryption_key is not None:
            encryption_key = MaskedBytes(
                encryption_key.encode() if isinstance(encryption_key, str) else encryption_key
            )
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
        if encryption_key is None and encryption_key_file is None:
            encryption_key_file = cache_key_file()
        try:
            self._key = load_key(encryption_key, encryption_key_file)
        except ConfigError as exc:
            raise ConfigError(str(exc)) from None
        self.client: redis.Redis
        self.client, self._where = make_client(url_or_client, socket_timeout)

    def __repr__(self) -> str:
        sealed = "" if self._key is None else f", sealed with key {self._key.key_id!r}"
        return f"RedisTokenCache({self._where!r}, prefix={self.prefix!r}{sealed})"

    def describe_storage(self) -> str:
        """How entries are stored, for ``hoxton-auth status``."""
        if self._key is None:
            return "plain text in Redis (give encryption_key= or HOXTON_AUTH_CACHE_KEY_FILE)"
        return f"every value sealed with the fleet's encryption key (key id {self._key.key_id})"

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
        self._unreadable.pop(key, None)
        return None if raw is None else self._parse(key, raw)

    def unreadable(self, key: str) -> str | None:
        """Why ``key``'s value did not open at the last ``load`` (sealed), else ``None``."""
        return self._unreadable.get(key)

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
        if self._key is not None:
            sealed = self._key.seal(payload, self._entry_key(key))
            payload = json.dumps({"version": FORMAT_VERSION, **sealed})
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
        self._unreadable.clear()  # noted again by _parse, for these entries only
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
            if isinstance(data, dict) and is_sealed({k: data.get(k) for k in ("sealed", "key")}):
                if self._key is None:
                    raise SealedValueError("it is sealed and this cache has no encryption key")
                data = json.loads(self._key.open(data, self._entry_key(key)))
            if not isinstance(data, dict) or not isinstance(data.get("meta"), dict):
                raise TokenFormatError("an entry must be an object with token and meta")
            if data.get("version") != FORMAT_VERSION:
                raise TokenFormatError(f"unknown format version {data.get('version')!r}")
            meta = {str(k): str(v) for k, v in data["meta"].items()}
            return CacheEntry(Token.from_dict(data.get("token")), meta)
        # JSON, UTF-8 and TokenFormatError are ValueErrors; RecursionError: "[[[[..." too deep
        except (ValueError, RecursionError) as exc:
            if isinstance(exc, SealedValueError):
                self._unreadable[key] = str(exc)
            text = f"Redis token cache {self._where}: entry {key[:8]} skipped: {exc}"
            # Seen by users who configured no logging too (issue 11): damage
            # in a fleet's cache costs every host a token request.
            warn_once("entry skipped", text, "%s", text)
            return None

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[None]:
        """Hold the fleet-wide lock of ``key``, waiting at most ``timeout`` s.

        Raises:
            CacheLockTimeoutError: Another process held it for ``timeout`` s.
            CacheUnavailableError: Redis cannot be reached.
        """
        name = self._lock_key(key)
        lease = RedisLease(
            self.client, name, self.lock_timeout, functools.partial(self._translate, "lock")
        )
        if not lease.acquire(timeout):
            raise CacheLockTimeoutError(
                f"Redis lock {name} on {self._where} is held by another process "
                f"and was not released within {timeout:.0f}s"
            )
        try:
            yield
        finally:
            lease.release()
