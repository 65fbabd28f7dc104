"""The token manager: memory, cache, lock and flow, put together once.

``get_token`` (threads) and ``aget_token`` (asyncio) mirror each other line
for line. The hot path, a fresh token in memory, reads one attribute and the
clock: no file, no lock, no network.

The slow path is double-checked single flight (issue 3): take this object's
lock and read the cache without its lock, which is enough when another
process has already cached a fresh token; only on a miss or near expiry take
the cache's lock (shared with other processes), read the cache again (someone
may just have filled it), and only then run a flow; its token is stored before
the lock is released. Refreshing always uses the cache's refresh token, the
newest, never one remembered in memory: a rotated refresh token used twice
makes Auth0 revoke the whole family.

A fetch that fails after its retries leaves a note in the entry's meta, and
callers that were waiting for it raise its error instead of retrying in turn
(``_failures.py``, issue 5).

A lock that is not released in time (a stuck holder, STYLE section 5) never
hangs us: a grant that is safe to repeat fetches without the cache, with a
warning; anything that would refresh raises ``CacheLockTimeoutError`` (a
``CacheError``), whose message names the lock.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from ._cache import (
    CacheEntry,
    CacheLockTimeoutError,
    CacheUnavailableError,
    MemoryTokenCache,
    TokenCache,
)
from ._config import ClientConfig
from ._errors import CacheError, HoxtonAuthError
from ._failures import FAILURE_META, failure_note, shared_failure
from ._flow import obtain_token, plan_grants, revoke_refresh_token
from ._grants import AuthorizationCode, Grant
from ._messages import Backoff, Flow, Reply, TokenRequest
from ._token import Token

if TYPE_CHECKING:
    import asyncio

__all__ = ["AsyncTransport", "SyncTransport", "TokenManager", "adrive", "drive"]

logger = logging.getLogger("hoxton_auth")

T = TypeVar("T")
SyncTransport = Callable[[TokenRequest], Reply]
AsyncTransport = Callable[[TokenRequest], Awaitable[Reply]]

LOCK_MARGIN = 15.0  # seconds a waiter allows beyond the holder's own fetch deadline
# A fleet whose Redis is down would otherwise log the same warning on every
# renewal of every auth object: once per cache location per this many seconds
# is enough. Keyed by repr (URL and prefix, no password): every auth object
# built from HOXTON_AUTH_CACHE=redis://... has a cache object of its own.
UNAVAILABLE_WARNING_INTERVAL = 60.0
_last_unavailable_warning: dict[str, float] = {}
_memory_fallback_warned: set[str] = set()


def _warn_unavailable(cache: TokenCache, message: str, *args: object) -> None:
    """WARNING at most once per interval per cache location, DEBUG in between."""
    now = time.monotonic()
    last = _last_unavailable_warning.get(repr(cache))
    if last is not None and now - last < UNAVAILABLE_WARNING_INTERVAL:
        logger.debug(message, *args)
        return
    _last_unavailable_warning[repr(cache)] = now
    logger.warning(message, *args)


def drive(flow: Flow[T], send: SyncTransport) -> T:
    """Run a flow to its end with a blocking transport."""
    try:
        action = next(flow)
        while True:
            if isinstance(action, Backoff):
                time.sleep(action.delay)
                action = flow.send(time.time())
            else:
                action = flow.send(send(action))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]  # the flow's return value


async def adrive(flow: Flow[T], send: AsyncTransport) -> T:
    """Run a flow to its end with an asyncio transport."""
    import asyncio  # here, not at the top: sync-only processes never load asyncio (issue 6)

    try:
        action = next(flow)
        while True:
            if isinstance(action, Backoff):
                await asyncio.sleep(action.delay)
                action = flow.send(time.time())
            else:
                action = flow.send(await send(action))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]  # the flow's return value


class TokenManager:
    """Gets, caches, shares and renews the tokens of one auth object."""

    def __init__(
        self,
        config: ClientConfig,
        grant: Grant | None,
        cache: TokenCache,
        key: str,
        meta: Mapping[str, str],
        seed_refresh_token: str | None = None,
    ) -> None:
        self.config = config
        self.cache = cache
        self.key = key
        self._meta = dict(meta)
        self._grant = grant
        self._seed_refresh_token = seed_refresh_token
        self._rng = random.Random()  # noqa: S311  backoff jitter, not cryptography
        # (access token, renew at): one tuple, swapped atomically between threads.
        self._current: tuple[str, float] | None = None
        self._thread_lock = threading.Lock()
        self._loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]
        self._loop_locks = weakref.WeakKeyDictionary()
        wait = cache.lock_wait_timeout
        # Long enough for a holder to finish its own fetch, retries included.
        default_wait = config.retry_deadline + config.timeout + LOCK_MARGIN
        self._lock_timeout = wait if wait is not None else default_wait

    # -- the hot path ---------------------------------------------------------

    def cached_access_token(self) -> str | None:
        """The in-memory access token if it is fresh, else ``None``."""
        current = self._current
        if current is not None and time.time() < current[1]:
            return current[0]
        return None

    # -- threads ------------------------------------------------------------------

    def get_token(self, send: SyncTransport) -> str:
        """A fresh access token, fetched with ``send`` if needed."""
        token = self.cached_access_token()
        if token is not None:
            return token
        since = time.time()  # a fetch that fails after this is the one we waited for
        with self._thread_lock:
            token = self.cached_access_token()
            if token is not None:
                return token
            return self._remember(self._renew(send, since))

    def _renew(self, send: SyncTransport, since: float) -> Token:
        token = self._fresh(self._peek())
        if token is not None:
            logger.debug("cache hit without locking: %s", self._describe())
            return token
        try:
            with self.cache.lock(self.key, self._lock_timeout):
                return self._renew_locked(send, since)
        except CacheUnavailableError as exc:
            if self.cache.transient:
                self._check_safe_without_cache(exc)
                return drive(self._obtain_flow(None), send)
            self._fall_back_to_memory(exc)  # a memory cache is always available
            return self._renew(send, since)
        except CacheLockTimeoutError as exc:
            return self._renew_without_lock(send, exc)

    def _renew_locked(self, send: SyncTransport, since: float) -> Token:
        entry = self.cache.load(self.key)
        fresh = self._fresh(entry)
        if fresh is not None:
            logger.debug("cache hit: %s", self._describe())
            return fresh
        self._raise_shared_failure(entry, since)
        logger.debug("cache miss: %s", self._describe())
        try:
            token = drive(self._obtain_flow(entry), send)
        except HoxtonAuthError as exc:
            noted = self._with_failure_note(entry, exc)
            if noted is not None:
                with contextlib.suppress(CacheError):  # the fetch's error matters more
                    self._store(noted)
            raise
        self._store(CacheEntry(token, self._meta))
        return token

    def _renew_without_lock(self, send: SyncTransport, exc: CacheLockTimeoutError) -> Token:
        token = self._fresh(self._peek())  # the holder may have finished at the last moment
        return token if token is not None else drive(self._lockless_flow(exc), send)

    def invalidate(self, access_token: str | None = None) -> None:
        """Forget ``access_token`` (default: any) in memory and in the cache."""
        with self._thread_lock:
            if access_token is None or (self._current and self._current[0] == access_token):
                self._current = None
            if not self._matches(self._peek(), access_token):
                return  # gone already, or another process cached a newer token: keep that
            try:
                with self.cache.lock(self.key, self._lock_timeout):
                    entry = self.cache.load(self.key)
                    if entry is not None and self._matches(entry, access_token):
                        self._store(CacheEntry(entry.token.without_access_token(), entry.meta))
                        logger.debug("access token dropped from the cache: %s", self._describe())
            except (CacheLockTimeoutError, CacheUnavailableError) as exc:
                logger.warning("could not drop the token from the cache: %s", exc)

    def logout(self, send: SyncTransport) -> None:
        """Revoke the refresh token, if any, and remove the cache entry.

        The entry is removed even when the revocation fails (the error is
        raised afterwards): the user asked for this machine to forget the login.
        """
        with self._thread_lock, self.cache.lock(self.key, self._lock_timeout):
            self._current = None
            entry = self.cache.load(self.key)
            try:
                if entry is not None and entry.token.refresh_token:
                    flow = revoke_refresh_token(
                        self.config, entry.token.refresh_token, time.time(), self._rng
                    )
                    drive(flow, send)
            finally:
                self.cache.delete(self.key)

    def begin_session(self, send: SyncTransport) -> str:
        """Exchange the grant now and store its token, replacing the cached one.

        For ``login()``: a user who has just logged in (perhaps as someone
        else) gets the new session, not a fresh token or a refresh token the
        cache still holds for this identity, which ``get_token`` would prefer.

        Raises:
            LoginRequiredError: There is no grant to exchange (it was used).
            CacheError: The cache lock is stuck (a code is never sent twice).
        """
        with self._thread_lock:
            try:
                with self.cache.lock(self.key, self._lock_timeout):
                    return self._begin_session_locked(send)
            except CacheUnavailableError as exc:
                self._fall_back_to_memory(exc)  # a memory cache is always available
                with self.cache.lock(self.key, self._lock_timeout):
                    return self._begin_session_locked(send)

    def _begin_session_locked(self, send: SyncTransport) -> str:
        plan = [self._grant] if self._grant is not None else []
        self._grant = None  # an authorization code is single-use: never send it again
        token = drive(obtain_token(self.config, plan, time.time(), self._rng), send)
        self._store(CacheEntry(token, self._meta))
        return self._remember(token)

    # -- asyncio ------------------------------------------------------------------

    async def aget_token(self, send: AsyncTransport) -> str:
        """``get_token`` for asyncio: no wait blocks the event loop."""
        token = self.cached_access_token()
        if token is not None:
            return token
        since = time.time()  # a fetch that fails after this is the one we waited for
        async with self._loop_lock():
            token = self.cached_access_token()
            if token is not None:
                return token
            return self._remember(await self._arenew(send, since))

    async def _arenew(self, send: AsyncTransport, since: float) -> Token:
        token = self._fresh(await self._apeek())
        if token is not None:
            logger.debug("cache hit without locking: %s", self._describe())
            return token
        try:
            async with self.cache.alock(self.key, self._lock_timeout):
                return await self._arenew_locked(send, since)
        except CacheUnavailableError as exc:
            if self.cache.transient:
                self._check_safe_without_cache(exc)
                return await adrive(self._obtain_flow(None), send)
            self._fall_back_to_memory(exc)  # a memory cache is always available
            return await self._arenew(send, since)
        except CacheLockTimeoutError as exc:
            return await self._arenew_without_lock(send, exc)

    async def _arenew_locked(self, send: AsyncTransport, since: float) -> Token:
        entry = await self.cache.aload(self.key)
        fresh = self._fresh(entry)
        if fresh is not None:
            logger.debug("cache hit: %s", self._describe())
            return fresh
        self._raise_shared_failure(entry, since)
        logger.debug("cache miss: %s", self._describe())
        try:
            token = await adrive(self._obtain_flow(entry), send)
        except HoxtonAuthError as exc:
            noted = self._with_failure_note(entry, exc)
            if noted is not None:
                with contextlib.suppress(CacheError):  # the fetch's error matters more
                    await self._astore(noted)
            raise
        await self._astore(CacheEntry(token, self._meta))
        return token

    async def _arenew_without_lock(self, send: AsyncTransport, exc: CacheLockTimeoutError) -> Token:
        token = self._fresh(await self._apeek())  # the holder may have finished just now
        return token if token is not None else await adrive(self._lockless_flow(exc), send)

    async def ainvalidate(self, access_token: str | None = None) -> None:
        """``invalidate`` for asyncio."""
        async with self._loop_lock():
            if access_token is None or (self._current and self._current[0] == access_token):
                self._current = None
            if not self._matches(await self._apeek(), access_token):
                return  # gone already, or another process cached a newer token: keep that
            try:
                async with self.cache.alock(self.key, self._lock_timeout):
                    entry = await self.cache.aload(self.key)
                    if entry is not None and self._matches(entry, access_token):
                        token = entry.token.without_access_token()
                        await self._astore(CacheEntry(token, entry.meta))
                        logger.debug("access token dropped from the cache: %s", self._describe())
            except (CacheLockTimeoutError, CacheUnavailableError) as exc:
                logger.warning("could not drop the token from the cache: %s", exc)

    def _loop_lock(self) -> asyncio.Lock:
        import asyncio  # here, not at the top: sync-only processes never load asyncio (issue 6)

        loop = asyncio.get_running_loop()
        lock = self._loop_locks.get(loop)
        if lock is None:
            lock = self._loop_locks[loop] = asyncio.Lock()
        return lock

    # -- shared helpers ---------------------------------------------------------------

    def _obtain_flow(self, entry: CacheEntry | None) -> Flow[Token]:
        cached_refresh = entry.token.refresh_token if entry is not None else None
        plan = plan_grants(self._grant, cached_refresh, self._seed_refresh_token)
        if isinstance(self._grant, AuthorizationCode) and self._grant in plan:
            # An authorization code is single-use: whatever happens now, never send it again.
            self._grant = None
        return obtain_token(self.config, plan, time.time(), self._rng)

    def _raise_shared_failure(self, entry: CacheEntry | None, since: float) -> None:
        """Raise the error of the fetch this call waited for, if that fetch failed."""
        failure = shared_failure(entry.meta, since) if entry is not None else None
        if failure is not None:
            logger.debug("the fetch this call waited for failed: %s", self._describe())
            raise failure

    def _with_failure_note(self, entry: CacheEntry | None, exc: Exception) -> CacheEntry | None:
        """``entry`` (tokens untouched) plus a note of ``exc`` for the callers waiting."""
        now = time.time()
        note = failure_note(exc, now)
        if note is None:
            return None
        if entry is None:  # nothing cached yet: an entry with no access token (is_fresh: no),
            # dated now so that a cache does not prune it as long dead
            return CacheEntry(Token("", now, now), {**self._meta, FAILURE_META: note})
        return CacheEntry(entry.token, {**entry.meta, FAILURE_META: note})

    def _peek(self) -> CacheEntry | None:
        """The cache's entry, read without its lock (the lock is for misses only)."""
        try:
            return self.cache.load(self.key)
        except CacheUnavailableError:
            return None  # taking the lock reports it and decides what to do

    async def _apeek(self) -> CacheEntry | None:
        try:
            return await self.cache.aload(self.key)
        except CacheUnavailableError:
            return None  # taking the lock reports it and decides what to do

    def _fresh(self, entry: CacheEntry | None) -> Token | None:
        if entry is not None and entry.token.is_fresh(time.time(), self.config.leeway):
            return entry.token
        return None

    def _lockless_flow(self, exc: CacheLockTimeoutError) -> Flow[Token]:
        """The cache lock is stuck: fetch without it only with a grant safe to repeat.

        Never a refresh, not even for a password grant with a cached refresh
        token: that refresh token may be the one the stuck holder is using.

        Raises:
            CacheLockTimeoutError: The grant is not safe to repeat.
        """
        grant = self._grant
        if grant is None or not grant.repeatable:
            raise CacheLockTimeoutError(
                f"{exc}; not refreshing without it, because a refresh token used twice "
                "makes Auth0 revoke the whole login"
            ) from exc
        logger.warning("%s; fetching a token without the cache", exc)
        return obtain_token(self.config, [grant], time.time(), self._rng)

    def _check_safe_without_cache(self, exc: CacheUnavailableError) -> None:
        """A transient cache is down: allow a direct fetch only for a repeatable grant.

        Not a switch to memory for good, as for a broken file cache: Redis comes
        back, and the next renewal should share tokens through it again. No
        refresh: the newest refresh token is in the unreachable cache, and an
        older one, used again, makes Auth0 revoke the whole login.
        """
        grant = self._grant
        if self._seed_refresh_token is not None or grant is None or not grant.repeatable:
            raise CacheUnavailableError(
                f"{exc}; not refreshing without the shared cache, because a refresh "
                "token used twice makes Auth0 revoke the whole login"
            ) from exc
        _warn_unavailable(self.cache, "%s; fetching tokens directly until it is back", exc)

    def _store(self, entry: CacheEntry) -> None:
        try:
            self.cache.store(self.key, entry)
        except CacheUnavailableError as exc:
            if self.cache.transient:
                self._store_failed(entry, exc)
                return
            self._fall_back_to_memory(exc)
            self.cache.store(self.key, entry)

    async def _astore(self, entry: CacheEntry) -> None:
        try:
            await self.cache.astore(self.key, entry)
        except CacheUnavailableError as exc:
            if self.cache.transient:
                self._store_failed(entry, exc)
                return
            self._fall_back_to_memory(exc)
            await self.cache.astore(self.key, entry)

    def _store_failed(self, entry: CacheEntry, exc: CacheUnavailableError) -> None:
        """The token is in hand (this call succeeds) but the shared cache missed it."""
        if entry.token.refresh_token:
            # Not rate-limited: if the server rotated the refresh token, the
            # cache still holds the old one, and the next refresh may end the login.
            logger.warning("%s; a new refresh token could not be saved", exc)
        else:
            _warn_unavailable(self.cache, "%s; the new token was not shared", exc)

    def _fall_back_to_memory(self, exc: Exception) -> None:
        # One warning per unusable location per process, however many auth
        # objects (or renewals) run into it: the calls themselves still succeed.
        message = str(exc)
        if message in _memory_fallback_warned:
            logger.debug("%s; keeping tokens in memory for this process", message)
        else:
            _memory_fallback_warned.add(message)
            logger.warning("%s; keeping tokens in memory for this process", message)
        self.cache = MemoryTokenCache()

    @staticmethod
    def _matches(entry: CacheEntry | None, access_token: str | None) -> bool:
        """Whether ``entry`` holds ``access_token`` (``None``: any access token)."""
        if entry is None or not entry.token.access_token:
            return False
        return access_token is None or entry.token.access_token == access_token

    def _remember(self, token: Token) -> str:
        self._current = (token.access_token, token.renew_at(self.config.leeway))
        return token.access_token

    def _describe(self) -> str:
        return f"client_id={self.config.client_id} grant={self._meta.get('grant', '?')}"
