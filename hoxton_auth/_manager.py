"""The token manager: memory, cache, lock and flow, put together once.

``get_token`` (threads) and ``aget_token`` (asyncio) mirror each other line
for line. The hot path, a fresh token in memory, reads one attribute and the
clock: no file, no lock, no network.

The slow path is double-checked single flight: take this object's lock, then
the cache's lock (shared with other processes), read the cache again (someone
may just have filled it), and only then run a flow; its token is stored before
the lock is released. Refreshing always uses the cache's refresh token, the
newest, never one remembered in memory: a rotated refresh token used twice
makes Auth0 revoke the whole family.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar, Union

from ._cache import (
    CacheEntry,
    CacheLockTimeoutError,
    CacheUnavailableError,
    MemoryTokenCache,
    TokenCache,
)
from ._config import ClientConfig
from ._flow import (
    Backoff,
    Flow,
    TokenRequest,
    TokenResponse,
    TransportFailure,
    obtain_token,
    plan_grants,
    revoke_refresh_token,
)
from ._grants import AuthorizationCode, Grant
from ._token import Token

__all__ = ["AsyncTransport", "SyncTransport", "TokenManager", "adrive", "drive"]

logger = logging.getLogger("hoxton_auth")

T = TypeVar("T")
Reply = Union[TokenResponse, TransportFailure]
SyncTransport = Callable[[TokenRequest], Reply]
AsyncTransport = Callable[[TokenRequest], Awaitable[Reply]]

LOCK_MARGIN = 15.0  # seconds a waiter allows beyond the holder's own fetch deadline


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
        self._lock_timeout = config.retry_deadline + config.timeout + LOCK_MARGIN

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
        with self._thread_lock:
            token = self.cached_access_token()
            if token is not None:
                return token
            return self._remember(self._renew(send))

    def _renew(self, send: SyncTransport) -> Token:
        try:
            with self.cache.lock(self.key, self._lock_timeout):
                return self._renew_locked(send)
        except CacheUnavailableError as exc:
            self._fall_back_to_memory(exc)  # a memory cache is always available
            return self._renew(send)
        except CacheLockTimeoutError:
            return self._renew_without_lock(send)

    def _renew_locked(self, send: SyncTransport) -> Token:
        entry = self.cache.load(self.key)
        if entry is not None and entry.token.is_fresh(time.time(), self.config.leeway):
            logger.debug("cache hit: %s", self._describe())
            return entry.token
        logger.debug("cache miss: %s", self._describe())
        token = drive(self._obtain_flow(entry), send)
        self._store(CacheEntry(token, self._meta))
        return token

    def _renew_without_lock(self, send: SyncTransport) -> Token:
        self._check_safe_without_lock(self.cache.load(self.key))
        return drive(self._obtain_flow(None), send)

    def invalidate(self, access_token: str | None = None) -> None:
        """Forget ``access_token`` (default: any) in memory and in the cache."""
        with self._thread_lock:
            if access_token is None or (self._current and self._current[0] == access_token):
                self._current = None
            try:
                with self.cache.lock(self.key, self._lock_timeout):
                    entry = self.cache.load(self.key)
                    if entry is not None and self._matches(entry, access_token):
                        self._store(CacheEntry(entry.token.without_access_token(), entry.meta))
            except (CacheLockTimeoutError, CacheUnavailableError) as exc:
                logger.warning("could not drop the token from the cache: %s", exc)

    def logout(self, send: SyncTransport) -> None:
        """Revoke the refresh token, if any, and remove the cache entry."""
        with self._thread_lock, self.cache.lock(self.key, self._lock_timeout):
            self._current = None
            entry = self.cache.load(self.key)
            if entry is not None and entry.token.refresh_token:
                flow = revoke_refresh_token(
                    self.config, entry.token.refresh_token, time.time(), self._rng
                )
                drive(flow, send)
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
        async with self._loop_lock():
            token = self.cached_access_token()
            if token is not None:
                return token
            return self._remember(await self._arenew(send))

    async def _arenew(self, send: AsyncTransport) -> Token:
        try:
            async with self.cache.alock(self.key, self._lock_timeout):
                return await self._arenew_locked(send)
        except CacheUnavailableError as exc:
            self._fall_back_to_memory(exc)  # a memory cache is always available
            return await self._arenew(send)
        except CacheLockTimeoutError:
            return await self._arenew_without_lock(send)

    async def _arenew_locked(self, send: AsyncTransport) -> Token:
        entry = await self.cache.aload(self.key)
        if entry is not None and entry.token.is_fresh(time.time(), self.config.leeway):
            logger.debug("cache hit: %s", self._describe())
            return entry.token
        logger.debug("cache miss: %s", self._describe())
        token = await adrive(self._obtain_flow(entry), send)
        await self._astore(CacheEntry(token, self._meta))
        return token

    async def _arenew_without_lock(self, send: AsyncTransport) -> Token:
        self._check_safe_without_lock(await self.cache.aload(self.key))
        return await adrive(self._obtain_flow(None), send)

    async def ainvalidate(self, access_token: str | None = None) -> None:
        """``invalidate`` for asyncio."""
        async with self._loop_lock():
            if access_token is None or (self._current and self._current[0] == access_token):
                self._current = None
            try:
                async with self.cache.alock(self.key, self._lock_timeout):
                    entry = await self.cache.aload(self.key)
                    if entry is not None and self._matches(entry, access_token):
                        token = entry.token.without_access_token()
                        await self._astore(CacheEntry(token, entry.meta))
            except (CacheLockTimeoutError, CacheUnavailableError) as exc:
                logger.warning("could not drop the token from the cache: %s", exc)

    def _loop_lock(self) -> asyncio.Lock:
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

    def _check_safe_without_lock(self, entry: CacheEntry | None) -> None:
        """Allow a lockless fetch only for grants that are safe to repeat."""
        grant = self._grant
        needs_refresh = (entry is not None and entry.token.refresh_token) or (
            self._seed_refresh_token is not None
        )
        if needs_refresh or grant is None or not grant.repeatable:
            raise CacheLockTimeoutError(
                f"{self._lock_timeout_message()}; not refreshing without it, because a "
                "refresh token used twice makes Auth0 revoke the whole login"
            )
        logger.warning("%s; fetching a token without the cache", self._lock_timeout_message())

    def _lock_timeout_message(self) -> str:
        where = getattr(self.cache, "lock_path", None) or repr(self.cache)
        return f"token cache lock {where} not acquired within {self._lock_timeout:.0f}s"

    def _store(self, entry: CacheEntry) -> None:
        try:
            self.cache.store(self.key, entry)
        except CacheUnavailableError as exc:
            self._fall_back_to_memory(exc)
            self.cache.store(self.key, entry)

    async def _astore(self, entry: CacheEntry) -> None:
        try:
            await self.cache.astore(self.key, entry)
        except CacheUnavailableError as exc:
            self._fall_back_to_memory(exc)
            await self.cache.astore(self.key, entry)

    def _fall_back_to_memory(self, exc: Exception) -> None:
        logger.warning("%s; keeping tokens in memory for this process", exc)
        self.cache = MemoryTokenCache()

    @staticmethod
    def _matches(entry: CacheEntry, access_token: str | None) -> bool:
        return access_token is None or entry.token.access_token == access_token

    def _remember(self, token: Token) -> str:
        self._current = (token.access_token, token.renew_at(self.config.leeway))
        return token.access_token

    def _describe(self) -> str:
        return f"client_id={self.config.client_id} grant={self._meta.get('grant', '?')}"
