"""One identity's entry in the shared cache, renewed by one caller at a time.

The slow path of ``TokenManager`` is double-checked single flight (issue 3):
read the cache without its lock, which is enough when another process has
already cached a fresh token; only on a miss or near expiry take the cache's
lock (shared with other processes), read the cache again (someone may just
have filled it), and only then run a flow; its token is stored before the
lock is released. Refreshing always uses the cache's refresh token, the
newest, never one remembered in memory: a rotated refresh token used twice
makes Auth0 revoke the whole family.

A fetch that fails after its retries leaves a note in the entry's meta, and
callers that were waiting for it raise its error instead of retrying in turn
(``_failures.py``, issue 5). When the cache itself fails (a stuck lock, an
unusable file, Redis down), ``_degraded.py`` decides what happens.

The methods for threads and for asyncio mirror each other line for line.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ._cache import CacheEntry, CacheLockTimeoutError, CacheUnavailableError, TokenCache
from ._config import ClientConfig
from ._degraded import (
    check_fetch_without_cache,
    fall_back_to_memory,
    grant_without_lock,
    warn_not_stored,
)
from ._drive import AsyncTransport, SyncTransport, adrive, drive
from ._errors import CacheError, HoxtonAuthError
from ._failures import (
    claim_renewal,
    during_cooldown,
    entry_after_failure,
    shared_failure,
    token_despite_failure,
)
from ._grants import AuthorizationCode, Grant
from ._token import Token

if TYPE_CHECKING:
    from ._messages import Flow

__all__ = ["LOCK_MARGIN", "SharedEntry"]

logger = logging.getLogger("hoxton_auth")

LOCK_MARGIN = 15.0  # seconds a waiter allows beyond the holder's own fetch deadline


class SharedEntry:
    """The cache entry of one identity (``key``), and the grant that renews it."""

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
        wait = cache.lock_wait_timeout
        # Long enough for a holder to finish its own fetch, retries included.
        default_wait = config.retry_deadline + config.timeout + LOCK_MARGIN
        self.lock_timeout = wait if wait is not None else default_wait

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """The cache's lock on this entry."""
        return self.cache.lock(self.key, self.lock_timeout)

    def alock(self) -> contextlib.AbstractAsyncContextManager[None]:
        """``lock`` for asyncio."""
        return self.cache.alock(self.key, self.lock_timeout)

    # -- threads ------------------------------------------------------------------

    def renew(self, send: SyncTransport, since: float) -> Token:
        """A fresh token from the cache, else fetched with ``send`` and stored.

        ``since``: when the caller started waiting; a fetch that failed after
        it is the one it waited for, and its error is raised.
        """
        entry = self._peek()
        token = self._fresh(entry) or during_cooldown(entry, time.time(), since)  # issue 12
        if token is not None:
            logger.debug("cache hit without locking: %s", self._describe())
            return token
        try:
            with self.lock():
                return self._renew_locked(send, since)
        except CacheUnavailableError as exc:
            if self.cache.transient:
                check_fetch_without_cache(self.cache, self._grant, self._seed_refresh_token, exc)
                return drive(self._obtain_flow(None), send)
            self.cache = fall_back_to_memory(exc)  # a memory cache is always available
            return self.renew(send, since)
        except CacheLockTimeoutError as exc:
            return self._renew_without_lock(send, exc)

    def _renew_locked(self, send: SyncTransport, since: float) -> Token:
        entry = self.cache.load(self.key)
        fresh = self._fresh(entry) or during_cooldown(entry, time.time(), since)  # issue 12
        if fresh is not None:
            logger.debug("cache hit: %s", self._describe())
            return fresh
        self._raise_shared_failure(entry, since)
        logger.debug("cache miss: %s", self._describe())
        claimed = claim_renewal(entry, time.time(), self.lock_timeout)  # issue 12
        if claimed is not None:  # an outage: the others keep the valid token meanwhile
            with contextlib.suppress(CacheError):
                self._store(claimed)
        try:
            token = drive(self._obtain_flow(entry), send)
        except HoxtonAuthError as exc:
            noted = entry_after_failure(entry, self._meta, exc, time.time())
            if noted is not None:
                with contextlib.suppress(CacheError):  # the fetch's error matters more
                    self._store(noted)
            stale = token_despite_failure(noted or entry, exc, time.time())  # issue 12
            if stale is not None:
                return stale
            raise
        self._store(CacheEntry(token, self._meta))
        return token

    def _renew_without_lock(self, send: SyncTransport, exc: CacheLockTimeoutError) -> Token:
        token = self._fresh(self._peek())  # the holder may have finished at the last moment
        return token if token is not None else drive(self._lockless_flow(exc), send)

    def drop_access_token(self, access_token: str | None) -> None:
        """Drop ``access_token`` (``None``: any) from the cache, keeping the refresh token."""
        if not self._matches(self._peek(), access_token):
            return  # gone already, or another process cached a newer token: keep that
        try:
            with self.lock():
                entry = self.cache.load(self.key)
                if entry is not None and self._matches(entry, access_token):
                    self._store(CacheEntry(entry.token.without_access_token(), entry.meta))
                    logger.debug("access token dropped from the cache: %s", self._describe())
        except (CacheLockTimeoutError, CacheUnavailableError) as exc:
            logger.warning("could not drop the token from the cache: %s", exc)

    def revoke_and_delete(self, send: SyncTransport) -> None:
        """Revoke the refresh token, if any, then delete the entry; hold ``lock()``.

        The entry is deleted even when the revocation fails (its error is raised).
        """
        from ._flow import revoke_refresh_token  # lazily, as in _flow_for

        entry = self.cache.load(self.key)
        try:
            if entry is not None and entry.token.refresh_token:
                flow = revoke_refresh_token(
                    self.config, entry.token.refresh_token, time.time(), self._rng
                )
                drive(flow, send)
        finally:
            self.cache.delete(self.key)

    def begin_session(self, send: SyncTransport) -> Token:
        """Exchange the grant now and store its token, whatever the cache holds.

        Raises:
            LoginRequiredError: There is no grant to exchange (it was used).
            CacheError: The cache lock is stuck (a code is never sent twice).
        """
        try:
            with self.lock():
                return self._begin_session_locked(send)
        except CacheUnavailableError as exc:
            self.cache = fall_back_to_memory(exc)  # a memory cache is always available
            with self.lock():
                return self._begin_session_locked(send)

    def _begin_session_locked(self, send: SyncTransport) -> Token:
        plan = [self._grant] if self._grant is not None else []
        self._grant = None  # an authorization code is single-use: never send it again
        token = drive(self._flow_for(plan), send)
        self._store(CacheEntry(token, self._meta))
        return token

    # -- asyncio ------------------------------------------------------------------

    async def arenew(self, send: AsyncTransport, since: float) -> Token:
        """``renew`` for asyncio: no wait blocks the event loop."""
        entry = await self._apeek()
        token = self._fresh(entry) or during_cooldown(entry, time.time(), since)  # issue 12
        if token is not None:
            logger.debug("cache hit without locking: %s", self._describe())
            return token
        try:
            async with self.alock():
                return await self._arenew_locked(send, since)
        except CacheUnavailableError as exc:
            if self.cache.transient:
                check_fetch_without_cache(self.cache, self._grant, self._seed_refresh_token, exc)
                return await adrive(self._obtain_flow(None), send)
            self.cache = fall_back_to_memory(exc)  # a memory cache is always available
            return await self.arenew(send, since)
        except CacheLockTimeoutError as exc:
            return await self._arenew_without_lock(send, exc)

    async def _arenew_locked(self, send: AsyncTransport, since: float) -> Token:
        entry = await self.cache.aload(self.key)
        fresh = self._fresh(entry) or during_cooldown(entry, time.time(), since)  # issue 12
        if fresh is not None:
            logger.debug("cache hit: %s", self._describe())
            return fresh
        self._raise_shared_failure(entry, since)
        logger.debug("cache miss: %s", self._describe())
        claimed = claim_renewal(entry, time.time(), self.lock_timeout)  # issue 12
        if claimed is not None:  # an outage: the others keep the valid token meanwhile
            with contextlib.suppress(CacheError):
                await self._astore(claimed)
        try:
            token = await adrive(self._obtain_flow(entry), send)
        except HoxtonAuthError as exc:
            noted = entry_after_failure(entry, self._meta, exc, time.time())
            if noted is not None:
                with contextlib.suppress(CacheError):  # the fetch's error matters more
                    await self._astore(noted)
            stale = token_despite_failure(noted or entry, exc, time.time())  # issue 12
            if stale is not None:
                return stale
            raise
        await self._astore(CacheEntry(token, self._meta))
        return token

    async def _arenew_without_lock(self, send: AsyncTransport, exc: CacheLockTimeoutError) -> Token:
        token = self._fresh(await self._apeek())  # the holder may have finished just now
        return token if token is not None else await adrive(self._lockless_flow(exc), send)

    async def adrop_access_token(self, access_token: str | None) -> None:
        """``drop_access_token`` for asyncio."""
        if not self._matches(await self._apeek(), access_token):
            return  # gone already, or another process cached a newer token: keep that
        try:
            async with self.alock():
                entry = await self.cache.aload(self.key)
                if entry is not None and self._matches(entry, access_token):
                    token = entry.token.without_access_token()
                    await self._astore(CacheEntry(token, entry.meta))
                    logger.debug("access token dropped from the cache: %s", self._describe())
        except (CacheLockTimeoutError, CacheUnavailableError) as exc:
            logger.warning("could not drop the token from the cache: %s", exc)

    # -- shared helpers ---------------------------------------------------------------

    def _obtain_flow(self, entry: CacheEntry | None) -> Flow[Token]:
        from ._flow import plan_grants  # lazily, as in _flow_for

        cached_refresh = entry.token.refresh_token if entry is not None else None
        plan = plan_grants(self._grant, cached_refresh, self._seed_refresh_token)
        if isinstance(self._grant, AuthorizationCode) and self._grant in plan:
            # An authorization code is single-use: whatever happens now, never send it again.
            self._grant = None
        return self._flow_for(plan)

    def _lockless_flow(self, exc: CacheLockTimeoutError) -> Flow[Token]:
        return self._flow_for([grant_without_lock(self._grant, exc)])

    def _flow_for(self, plan: Sequence[Grant]) -> Flow[Token]:
        # Here, not at the top: a process that finds its token in the cache never
        # loads the flows, the retry policy or the reading of replies (issue 6).
        from ._flow import obtain_token

        return obtain_token(self.config, plan, time.time(), self._rng)

    def _raise_shared_failure(self, entry: CacheEntry | None, since: float) -> None:
        """Raise the error of the fetch this call waited for, if that fetch failed."""
        failure = shared_failure(entry.meta, since) if entry is not None else None
        if failure is not None:
            logger.debug("the fetch this call waited for failed: %s", self._describe())
            raise failure

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

    def _store(self, entry: CacheEntry) -> None:
        try:
            self.cache.store(self.key, entry)
        except CacheUnavailableError as exc:
            if self.cache.transient:
                warn_not_stored(self.cache, entry, exc)
                return
            self.cache = fall_back_to_memory(exc)
            self.cache.store(self.key, entry)

    async def _astore(self, entry: CacheEntry) -> None:
        try:
            await self.cache.astore(self.key, entry)
        except CacheUnavailableError as exc:
            if self.cache.transient:
                warn_not_stored(self.cache, entry, exc)
                return
            self.cache = fall_back_to_memory(exc)
            await self.cache.astore(self.key, entry)

    @staticmethod
    def _matches(entry: CacheEntry | None, access_token: str | None) -> bool:
        """Whether ``entry`` holds ``access_token`` (``None``: any access token)."""
        if entry is None or not entry.token.access_token:
            return False
        return access_token is None or entry.token.access_token == access_token

    def _describe(self) -> str:
        return f"client_id={self.config.client_id} grant={self._meta.get('grant', '?')}"
