"""Renewal of one identity's shared cache entry: single flight through the cache.

``SharedEntry`` renews one identity's entry once for all the processes that
share the cache: double-checked (issue 3), it reads the cache without its
lock, which is enough when another process has already cached a fresh token;
only on a miss or near expiry does it take the cache's lock, read the cache
again, and run a flow, whose token is stored before the lock is released.
Refreshing always uses the cache's refresh token, the newest, never one
remembered in memory: a rotated refresh token used twice makes Auth0 revoke
the whole family. Failure notes, cooldowns, stale-while-failing and what
happens when the cache itself fails are decided in ``_failures.py``. It also
runs the exchanges that begin a session (an authorization code, ``login()``)
and end one (``logout()``).

Whose entry it is (issue 10, ``_identity.py``): an entry is read only if its
subject and verifier are this object's; anyone else's entry is a miss whose
tokens are never sent, never renewed and never noted or dropped by this
object. A success replaces it (a changed password). An authorization code is
always exchanged, outside the cache; the user's entry is known only from its
token.

``drive`` runs a flow to its end: a ``TokenRequest`` goes to the transport
(one of the adapters' ``send`` functions), whose ``Reply`` is sent back; a
``Backoff`` is slept, and the time is sent back. This is the only place where
a flow meets the network and the clock.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from ._cache import CacheEntry, TokenCache
from ._config import ClientConfig
from ._errors import CacheError, CacheLockTimeoutError, CacheUnavailableError, HoxtonAuthError
from ._failures import (
    check_fetch_without_cache,
    claim_renewal,
    during_cooldown,
    entry_after_failure,
    failure_note,
    fall_back_to_memory,
    grant_without_lock,
    refuse_refresh_without_cache,
    shared_failure,
    token_despite_failure,
    warn_degraded,
    warn_not_stored,
)
from ._grants import AuthorizationCode, Grant
from ._identity import Identity, login_identity, session_identity
from ._token import Token, subject_of

if TYPE_CHECKING:
    from ._wire import Flow, Reply, TokenRequest

__all__ = ["LOCK_MARGIN", "OnFetch", "SharedEntry", "SyncTransport", "drive"]

logger = logging.getLogger("hoxton_auth")

T = TypeVar("T")
# Quoted: the message types are imported only when a flow runs (see drive).
SyncTransport = Callable[["TokenRequest"], "Reply"]
OnFetch = Callable[[Token], None]  # told of every token fetched (the session's on_token)

LOCK_MARGIN = 15.0  # seconds a waiter allows beyond the holder's own fetch deadline


def drive(flow: Flow[T], send: SyncTransport, sleep: Callable[[float], None] = time.sleep) -> T:
    """Run a flow to its end with a blocking transport; ``sleep`` waits out each ``Backoff``."""
    # Here, not at the top: a process that finds its token in the cache never
    # creates the message dataclasses (each compiles its methods; issue 6).
    from ._wire import Backoff

    try:
        action = next(flow)
        while True:
            if isinstance(action, Backoff):
                sleep(action.delay)
                action = flow.send(time.time())
            else:
                action = flow.send(send(action))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]  # the flow's return value


class SharedEntry:
    """The cache entry of one identity, and the grant that renews it."""

    def __init__(
        self,
        config: ClientConfig,
        grant: Grant | None,
        cache: TokenCache,
        identity: Identity,
        seed_refresh_token: str | None = None,
        on_fetch: OnFetch | None = None,
    ) -> None:
        self.config = config
        self.cache = cache
        self.on_fetch = on_fetch
        self.identity = identity
        self._grant = grant
        self._seed_refresh_token = seed_refresh_token
        self._rng = random.Random()  # noqa: S311  backoff jitter, not cryptography
        wait = cache.lock_wait_timeout
        # Long enough for a holder to finish its own fetch, retries included.
        default_wait = config.retry_deadline + config.timeout + LOCK_MARGIN
        self.lock_timeout = wait if wait is not None else default_wait

    @property
    def key(self) -> str:
        """The cache key; a code not exchanged yet has none (it is never looked up)."""
        if self.identity.key is None:
            raise LookupError("an authorization code not exchanged yet has no cache entry")
        return self.identity.key

    @property
    def exchanged(self) -> bool:
        """False while an authorization code waits to be exchanged (no entry yet)."""
        return self.identity.key is not None

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """The cache's lock on this entry."""
        return self.cache.lock(self.key, self.lock_timeout)

    # -- renewal: single flight through the cache ----------------------------------

    def renew(self, send: SyncTransport, since: float) -> Token:
        """A fresh token from the cache, else fetched with ``send`` and stored.

        ``since``: when the caller started waiting; a fetch that failed after
        it is the one it waited for, and its error is raised.
        """
        if not self.exchanged:
            return self._exchange_code(send)
        entry = self._owned(self._peek())
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
                return self._fetch(self._obtain_flow(None), send)
            refuse_refresh_without_cache(self._grant, self._seed_refresh_token, exc)
            self.cache = fall_back_to_memory(exc)  # a memory cache is always available
            return self.renew(send, since)
        except CacheLockTimeoutError as exc:
            return self._renew_without_lock(send, exc)

    def _renew_locked(self, send: SyncTransport, since: float) -> Token:
        stored = self.cache.load(self.key)
        entry = self._owned(stored)
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
            token = self._fetch(self._obtain_flow(entry), send)
        except HoxtonAuthError as exc:
            noted = self._after_failure(stored, entry, exc)
            if noted is not None:
                with contextlib.suppress(CacheError):  # the fetch's error matters more
                    self._store(noted)
            stale = token_despite_failure(noted or entry, exc, time.time())  # issue 12
            if stale is not None:
                return stale
            raise
        self._store(self._entry_for(token, stored))
        return token

    def _renew_without_lock(self, send: SyncTransport, exc: CacheLockTimeoutError) -> Token:
        # The holder may have finished at the last moment.
        token = self._fresh(self._owned(self._peek()))
        return token if token is not None else self._fetch(self._lockless_flow(exc), send)

    def drop_access_token(self, access_token: str | None) -> None:
        """Drop ``access_token`` (``None``: any) from the cache, keeping the refresh token."""
        if not self.exchanged or not self._matches(self._owned(self._peek()), access_token):
            return  # gone already, someone else's, or a newer token: keep that
        try:
            with self.lock():
                entry = self._owned(self.cache.load(self.key))
                if entry is not None and self._matches(entry, access_token):
                    self._store(CacheEntry(entry.token.without_access_token(), entry.meta))
                    logger.debug("access token dropped from the cache: %s", self._describe())
        except (CacheLockTimeoutError, CacheUnavailableError) as exc:
            logger.warning("could not drop the token from the cache: %s", exc)

    def revoke_and_delete(self, send: SyncTransport) -> None:
        """Revoke the refresh token, if any, then delete the entry; hold ``lock()``.

        The entry is deleted even when the revocation fails (its error is
        raised). Someone else's entry (another credential's) is left alone.
        """
        from ._flow import revoke_refresh_token  # lazily, as in _flow_for

        stored = self.cache.load(self.key)
        entry = self._owned(stored)
        if stored is not None and entry is None:
            logger.debug("logout: the cached entry is not this credential's; kept")
            return
        try:
            if entry is not None and entry.token.refresh_token:
                flow = revoke_refresh_token(
                    self.config, entry.token.refresh_token, time.time(), self._rng
                )
                drive(flow, send)
        finally:
            self.cache.delete(self.key)

    def begin_session(self, send: SyncTransport, *, login: bool = False) -> Token:
        """Exchange the grant now and store its token, whatever the cache holds.

        ``login``: the session becomes this OS user's logged-in session of
        (domain, client, audience), replacing the previous one, whose refresh
        token is revoked (best effort: a failure is logged, not raised).
        Otherwise it is filed under the user's ``sub``.

        Raises:
            LoginRequiredError: There is no grant to exchange (it was used).
            CacheError: The cache lock is stuck (a code is never sent twice).
        """
        if not login:
            return self._exchange_code(send)
        self.identity = login_identity(self.config)
        try:
            with self.lock():
                token, replaced = self._begin_login_locked(send)
        except CacheUnavailableError as exc:
            self.cache = fall_back_to_memory(exc)  # a memory cache is always available
            with self.lock():
                token, replaced = self._begin_login_locked(send)
        if replaced is not None and replaced != token.refresh_token:
            self._revoke_replaced(replaced, send)
        return token

    def _begin_login_locked(self, send: SyncTransport) -> tuple[Token, str | None]:
        previous = self._owned(self.cache.load(self.key))
        token = self._fetch(self._flow_for(self._take_code()), send)
        self._store(self._entry_for(token, None))
        return token, previous.token.refresh_token if previous is not None else None

    def _revoke_replaced(self, refresh_token: str, send: SyncTransport) -> None:
        """Revoke the replaced login's refresh token: Auth0 keeps ~200 per user and app."""
        from ._flow import revoke_refresh_token  # lazily, as in _flow_for

        try:
            drive(revoke_refresh_token(self.config, refresh_token, time.time(), self._rng), send)
        except HoxtonAuthError as exc:
            warn_degraded(
                "replaced login not revoked",
                self.config.domain,
                "the replaced login's refresh token was not revoked: %s",
                exc,
            )

    def _exchange_code(self, send: SyncTransport, identity: Identity | None = None) -> Token:
        """Exchange the code (never from the cache), then store under the user's entry.

        ``identity``: where to store it instead (a web session's, issue 21).
        """
        token = self._fetch(self._flow_for(self._take_code()), send)
        if identity is None:
            identity = session_identity(self.config, subject_of(token))
        self.identity = identity
        try:
            with self.lock():
                self._store(self._entry_for(token, None))
        except CacheUnavailableError as exc:
            self.cache = fall_back_to_memory(exc)  # a memory cache is always available
            self._store(self._entry_for(token, None))
        except CacheLockTimeoutError as exc:
            warn_degraded(
                "token not stored", str(exc), "the new session was not stored in the cache: %s", exc
            )
        logger.debug("code exchanged: %s", self._describe())
        return token

    # -- web back ends (issue 21): a session filed under its own random id ----------

    def begin_web_session(self, send: SyncTransport, identity: Identity) -> Token:
        """Exchange the code now (never from the cache) and store its token under ``identity``.

        Raises:
            LoginRequiredError: There is no grant to exchange (it was used).
        """
        return self._exchange_code(send, identity)

    def resume(self, identity: Identity) -> bool:
        """From now on use ``identity``'s entry, renewed by its refresh token only.

        Returns whether the cache holds that entry (read without the lock).

        Raises:
            CacheUnavailableError: The cache cannot be read (not a missing session).
        """
        self.identity = identity
        self._grant = None
        return self._owned(self.cache.load(self.key)) is not None

    def _take_code(self) -> list[Grant]:
        plan = [self._grant] if self._grant is not None else []
        self._grant = None  # an authorization code is single-use: never send it again
        return plan

    # -- shared helpers ---------------------------------------------------------------

    def _fetch(self, flow: Flow[Token], send: SyncTransport) -> Token:
        """Run a flow that asks the token endpoint, then tell the ``on_fetch`` hook."""
        token = drive(flow, send)
        if self.on_fetch is not None:
            try:
                self.on_fetch(token)
            except Exception:  # a metrics hook must never break the call it reports on
                logger.exception("the on_token hook raised; the token is used anyway")
        return token

    def _owned(self, entry: CacheEntry | None) -> CacheEntry | None:
        """``entry`` if it is this identity's, else ``None`` (a miss, issue 10)."""
        if entry is None or self.identity.owns(entry.meta):
            return entry
        logger.debug("cached entry belongs to another credential: %s", self._describe())
        return None

    def _entry_for(self, token: Token, stored: CacheEntry | None) -> CacheEntry:
        """The entry to store for ``token``, reusing ``stored``'s verifier if it is ours."""
        return CacheEntry(token, self.identity.meta_for(stored.meta if stored else None))

    def _after_failure(
        self, stored: CacheEntry | None, entry: CacheEntry | None, exc: Exception
    ) -> CacheEntry | None:
        """What a failure leaves in the cache; never anything in someone else's entry."""
        if stored is not None and entry is None:
            return None  # a wrong credential must not touch the right one's entry
        now = time.time()
        if entry is None and failure_note(exc, now) is None:
            return None  # nothing to note (and no verifier worth computing)
        meta = entry.meta if entry is not None else self.identity.meta_for(None)
        return entry_after_failure(entry, meta, exc, now)

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

    def peek_owned(self) -> CacheEntry | None:
        """This identity's cache entry, read without the lock, or ``None``."""
        return self._owned(self._peek())

    def _peek(self) -> CacheEntry | None:
        """The cache's entry, read without its lock (the lock is for misses only)."""
        try:
            return self.cache.load(self.key)
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

    @staticmethod
    def _matches(entry: CacheEntry | None, access_token: str | None) -> bool:
        """Whether ``entry`` holds ``access_token`` (``None``: any access token)."""
        if entry is None or not entry.token.access_token:
            return False
        return access_token is None or entry.token.access_token == access_token

    def _describe(self) -> str:
        meta = self.identity.meta
        return (
            f"client_id={self.config.client_id} grant={meta.get('grant', '?')} "
            f"subject={meta.get('subject', '?')}"
        )
