"""Renewal of one identity's shared cache entry: single flight through the cache.

``SharedEntry`` renews one identity's entry once for all the processes that
share the cache: double-checked (issue 3), it reads the cache without its
lock, which is enough when another process has already cached a fresh token;
only on a miss or near expiry does it take the cache's lock, read the cache
again, and run a flow, whose token is stored before the lock is released.
Refreshing always uses the cache's refresh token, the newest, never one
remembered in memory: a rotated refresh token used twice makes Auth0 revoke
the whole family. What happens when the cache itself fails (memory, a
direct fetch, or refuse) is decided here, in ``_cache_failed``; the rules of
an outage of the token endpoint (notes, cooldowns, stale-while-failing) are
``_outage.py``'s. It also runs the exchanges that begin a session (an
authorization code, ``login()``) and end one (``logout()``).

Fetched tokens are stored first; the session's ``on_token`` hook hears of them
later, from ``take_fetched``, once every lock is released.

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
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from ._cache import CacheEntry, MemoryTokenCache, TokenCache
from ._config import ClientConfig
from ._errors import (
    CacheError,
    CacheLockTimeoutError,
    CacheUnavailableError,
    HoxtonAuthError,
    NotLoggedInError,
    warn_once,
)
from ._fork import reset_after_fork
from ._grants import AuthorizationCode, Grant
from ._identity import Identity, login_identity, session_identity
from ._outage import (
    claim_renewal,
    during_cooldown,
    entry_after_failure,
    failure_note,
    shared_failure,
    token_despite_failure,
)
from ._telemetry import cache_hit, lock_wait, log_extra, renewal, token_request
from ._token import Token, subject_of

if TYPE_CHECKING:
    from ._wire import Flow, Reply, TokenRequest

__all__ = [
    "ANSWERS_IN_HAND",
    "LOCK_MARGIN",
    "AnswersInHand",
    "SharedEntry",
    "SyncTransport",
    "drive",
]

logger = logging.getLogger("hoxton_auth")

T = TypeVar("T")
# Quoted: the message types are imported only when a flow runs (see drive).
SyncTransport = Callable[["TokenRequest"], "Reply"]

LOCK_MARGIN = 15.0  # seconds a waiter allows beyond the holder's own fetch deadline
# A transient cache (Redis) that is down: a WARNING record at most this often
# per location, not on every renewal of every auth object of a fleet.
UNAVAILABLE_WARNING_INTERVAL = 60.0


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


class AnswersInHand:
    """Token endpoint answers this process has received and not yet stored.

    A rotated refresh token that has arrived but is not in the cache yet is
    the login's only copy. A process that must end at once (the CLI's
    ``--timeout`` backstop, ``_cli._end_after``) first waits for it to be
    stored (``wait_until_stored``), instead of losing it and leaving the old,
    now spent, refresh token for the next run (reuse detection ends the login).
    """

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()
        reset_after_fork(self)

    def _after_fork(self) -> None:
        self._count, self._changed = 0, threading.Condition()  # the child holds no answer

    @contextlib.contextmanager
    def until_stored(self, send: SyncTransport) -> Iterator[SyncTransport]:
        """``send`` for a renewal's fetch: from its first reply to the end of the block
        (the store), that renewal counts as an answer in hand."""
        counted = False

        def send_and_count(request: TokenRequest) -> Reply:
            nonlocal counted
            reply = send(request)
            if not counted:
                counted = True
                with self._changed:
                    self._count += 1
            return reply

        try:
            yield send_and_count
        finally:
            if counted:
                with self._changed:
                    self._count -= 1
                    self._changed.notify_all()

    def wait_until_stored(self, timeout: float) -> bool:
        """Whether every answer received was stored (or given up on) within ``timeout`` s."""
        with self._changed:
            return self._changed.wait_for(lambda: self._count == 0, timeout)


#: This process's answers in hand (one process, one count).
ANSWERS_IN_HAND = AnswersInHand()


class SharedEntry:
    """The cache entry of one identity, and the grant that renews it."""

    def __init__(
        self,
        config: ClientConfig,
        grant: Grant | None,
        cache: TokenCache,
        identity: Identity,
        seed_refresh_token: str | None = None,
    ) -> None:
        self.config = config
        self.cache = cache
        self.identity = identity
        self._fetched: list[Token] = []  # fetched and stored, not yet told to on_token
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

    def renew(self, send: SyncTransport, since: float, refused: str | None = None) -> Token:
        """A fresh token from the cache, else fetched with ``send`` and stored.

        ``since``: when the caller started waiting; a fetch that failed after
        it is the one it waited for, and its error is raised. ``refused``: an
        access token the API refused (a 401): never returned, and replaced in
        the cache under the same lock as the renewal (one lock, one read, one
        write), unless another process replaced it already.
        """
        if not self.exchanged:
            return self.begin_session(send)
        with renewal(self, background=False, after_401=refused is not None):
            token = self._renew(send, since, refused, wait=True, ahead=False)
        if token is None:  # pragma: no cover  a waiting renewal always ends with a token
            raise CacheLockTimeoutError(f"token cache lock not acquired: {self._describe()}")
        return token

    def prepare_background(self) -> None:
        """Load, on the caller's thread, what a renewal in a background thread will import.

        At interpreter exit a background renewal may still be running (the
        exit waits for it), and modules that register exit handlers refuse to
        load then: the flows (and the token parsing they do) and the cache's
        lock are imported here, once per process, by the call that starts the
        first background renewal.
        """
        import jwt  # noqa: F401  what _token reads a new token's exp with

        from . import _flow  # noqa: F401  here, not at the top: see _flow_for

        self.cache.prepare()

    def renew_unless_busy(self, send: SyncTransport, since: float, *, ahead: bool) -> Token | None:
        """``renew``, unless someone else (a thread, process or host) is renewing: ``None``.

        Takes the cache's lock without waiting. ``ahead``: a renewal in the
        background, before the renewal point: the cached token counts as
        fresh only before its refresh-ahead point, and failures are quiet
        (noted for the shared cooldown, raised to the caller, never warned).
        """
        if not self.exchanged:
            return None
        with renewal(self, background=ahead):
            return self._renew(send, since, None, wait=False, ahead=ahead)

    def _renew(
        self, send: SyncTransport, since: float, refused: str | None, *, wait: bool, ahead: bool
    ) -> Token | None:
        entry = self._without(self._owned(self._peek()), refused)
        now = time.time()
        token = self._fresh(entry, ahead)
        if token is not None:
            facts = self.facts(layer="shared_cache", locked=False)
            logger.debug("cache hit without locking: %s", self._describe(), extra=log_extra(facts))
            cache_hit(self, "shared_cache", locked=False)
            return token
        token = during_cooldown(entry, now, since, quiet=ahead)
        if token is not None:
            return token
        try:
            with lock_wait(
                self, self.cache.lock(self.key, self.lock_timeout if wait else 0.0), wait
            ):
                return self._renew_locked(send, since, refused, ahead)
        except CacheError as exc:
            if isinstance(exc, CacheLockTimeoutError) and not wait:
                return None  # someone else is renewing: nothing to do
            grant = self._repeatable_grant()
            if self._cache_failed(exc, grant is not None) == "memory" or grant is None:
                return self._renew(send, since, refused, wait=wait, ahead=ahead)
        # Without the cache: the holder of a stuck lock may have finished meanwhile.
        token = self._fresh(self._without(self._owned(self._peek()), refused))
        return token if token is not None else self._fetch(self._flow_for([grant]), send)

    def _repeatable_grant(self) -> Grant | None:
        """The grant to renew with if it is safe to send twice (never a refresh), else ``None``."""
        grant = self._grant
        if self._seed_refresh_token is None and grant is not None and grant.repeatable:
            return grant
        return None

    def _cache_failed(
        self, exc: CacheError, repeatable: bool, direct: str = "fetching a token without the cache"
    ) -> str:
        """The cache failed: go on in ``"memory"``, go on ``"direct"``-ly, or refuse (raise).

        The one decision for every cache failure. ``repeatable``: what the
        caller is about to do is safe to do twice (a client credentials or
        password grant, or keeping a token already in hand), never a refresh:
        a refresh token used twice, which another process holding the shared
        lock may be using, makes Auth0 revoke the whole login.

        | failure                         | repeatable          | otherwise |
        |---------------------------------|---------------------|-----------|
        | lock held past its timeout      | direct, warned once | refuse    |
        | transient cache down (Redis)    | direct, warned once | refuse    |
        | local cache unusable            | memory, warned once | refuse    |

        "direct" is for this call only: Redis comes back, and the next renewal
        shares tokens through it again; "memory" replaces the cache for this
        session for good. ``direct`` says what "direct" means to the caller
        (in the warning).

        Raises:
            CacheLockTimeoutError: The lock is stuck and a refresh would be needed.
            CacheUnavailableError: The cache is unusable and a refresh would be needed.
        """
        if isinstance(exc, CacheLockTimeoutError):
            if not repeatable:
                raise CacheLockTimeoutError(
                    f"{exc}; not refreshing without it, because a refresh token used twice "
                    "makes Auth0 revoke the whole login"
                ) from exc
            warn_once("lockless", str(exc), "%s; %s", exc, direct)
            return "direct"
        if not repeatable:
            raise CacheUnavailableError(
                f"{exc}; not refreshing without the shared cache and its lock, because a "
                "refresh token used twice makes Auth0 revoke the whole login (make the "
                "cache usable, or set HOXTON_AUTH_CACHE to a file this user owns)"
            ) from exc
        if self.cache.transient:
            warn_once(
                "fetch without cache",
                repr(self.cache),
                "%s; fetching tokens directly until it is back",
                exc,
                log_again_after=UNAVAILABLE_WARNING_INTERVAL,
            )
            return "direct"
        warn_once("memory fallback", str(exc), "%s; keeping tokens in memory for this process", exc)
        self.cache = MemoryTokenCache()  # always available
        return "memory"

    def _renew_locked(
        self, send: SyncTransport, since: float, refused: str | None, ahead: bool
    ) -> Token:
        stored = self.cache.load(self.key)
        if stored is None and self._seed_refresh_token is not None:
            self._refuse_spent_seed()
        owned = self._owned(stored)
        entry = self._without(owned, refused)
        now = time.time()
        fresh = self._fresh(entry, ahead)
        if fresh is not None:
            facts = self.facts(layer="shared_cache", locked=True)
            logger.debug("cache hit: %s", self._describe(), extra=log_extra(facts))
            cache_hit(self, "shared_cache", locked=True)
            return fresh
        fresh = during_cooldown(entry, now, since, quiet=ahead)
        if fresh is not None:
            return fresh
        self._raise_shared_failure(entry, since)
        logger.debug(
            "cache miss: %s", self._describe(), extra=log_extra(self.facts(outcome="miss"))
        )
        claimed = claim_renewal(entry, time.time(), self.lock_timeout)  # issue 12
        if claimed is not None:  # an outage: the others keep the valid token meanwhile
            with contextlib.suppress(CacheError):
                self._store(claimed)
        with ANSWERS_IN_HAND.until_stored(send) as send_and_count:
            try:
                token = self._fetch(self._obtain_flow(entry), send_and_count)
            except HoxtonAuthError as exc:
                noted = self._after_failure(stored, entry, exc)
                if noted is None and entry is not owned:
                    noted = entry  # the refused token goes, whatever else happens
                if noted is not None:
                    with contextlib.suppress(CacheError):  # the fetch's error matters more
                        self._store(noted)
                if ahead:
                    raise  # quiet: the caller still has its valid token
                stale = token_despite_failure(noted or entry, exc, time.time())  # issue 12
                if stale is not None:
                    return stale
                raise
            self._store(self._entry_for(token, stored))
            return token

    def _refuse_spent_seed(self) -> None:
        """Refuse to send the constructor's refresh token while its session's entry
        exists but could not be read (sealed with a key this process lacks).

        The entry holds the lineage's newest refresh token: the one given was
        rotated when that entry was first written, and sending it again makes
        Auth0 revoke the whole login (reuse detection).

        Raises:
            NotLoggedInError: The entry is there, unread.
        """
        reason = self.cache.unreadable(self.key)
        if reason is not None:
            raise NotLoggedInError(
                f"the cached session of this refresh token cannot be read here ({reason}); "
                "its refresh token was rotated since the one given, and sending the given "
                "one again would make Auth0 revoke the whole login: use this cache where "
                "its key is, or give a new refresh token (or log in again)"
            )

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
        """Exchange the code now and keep its token, whatever the cache holds.

        ``login``: the token becomes the logged-in session (``store_login``).
        Otherwise it is filed under the user's ``sub``.

        Raises:
            NotLoggedInError: There is no code to exchange (it was used).
        """
        token = self._fetch(self._flow_for(self._take_code()), send)
        if login:
            self.store_login(token, send)
        else:
            self.identity = session_identity(self.config, subject_of(token))
            self._keep(token)
            logger.debug("code exchanged: %s", self._describe())
        return token

    def store_login(self, token: Token, send: SyncTransport) -> None:
        """Make ``token`` this OS user's logged-in session of (domain, client, audience).

        It replaces the previous login, whose refresh token is revoked (best
        effort: a failure is a warning, not an error).
        """
        self.identity = login_identity(self.config)
        replaced = self._keep(token)
        if replaced is not None and replaced != token.refresh_token:
            self._revoke_replaced(replaced, send)

    def _keep(self, token: Token) -> str | None:
        """Store a token in hand as this identity's entry; the refresh token it replaced."""
        try:
            with self.lock():
                previous = self._owned(self.cache.load(self.key))
                self._store(self._entry_for(token, None))
        except CacheError as exc:
            if (
                self._cache_failed(exc, True, "the new token was not stored in the cache")
                == "memory"
            ):
                return self._keep(token)
            return None  # "direct": this object keeps it in memory; warned
        return previous.token.refresh_token if previous is not None else None

    def _revoke_replaced(self, refresh_token: str, send: SyncTransport) -> None:
        """Revoke the replaced login's refresh token: Auth0 keeps ~200 per user and app."""
        from ._flow import revoke_refresh_token  # lazily, as in _flow_for

        try:
            drive(revoke_refresh_token(self.config, refresh_token, time.time(), self._rng), send)
        except HoxtonAuthError as exc:
            warn_once(
                "replaced login not revoked",
                self.config.domain,
                "the replaced login's refresh token was not revoked: %s",
                exc,
            )

    # -- web back ends (issue 21): a session filed under its own random id ----------

    def begin_web_session(self, send: SyncTransport, identity: Identity) -> Token:
        """Exchange the code now (never from the cache) and store its token under ``identity``.

        Raises:
            NotLoggedInError: There is no code to exchange (it was used).
        """
        token = self._fetch(self._flow_for(self._take_code()), send)
        self.identity = identity
        self._keep(token)
        return token

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
        """Run a flow that asks the token endpoint; its token waits in ``take_fetched``."""
        with token_request(self, send) as recorded:
            token = drive(flow, recorded)
        self._fetched.append(token)
        return token

    def take_fetched(self) -> list[Token]:
        """The tokens fetched since the last call, each handed out once (thread-safe)."""
        taken = []
        while True:
            try:
                taken.append(self._fetched.pop(0))
            except IndexError:
                return taken

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

    def _flow_for(self, plan: Sequence[Grant]) -> Flow[Token]:
        # Here, not at the top: a process that finds its token in the cache never
        # loads the flows, the retry policy or the reading of replies (issue 6).
        from ._flow import obtain_token

        return obtain_token(self.config, plan, time.time(), self._rng)

    def _raise_shared_failure(self, entry: CacheEntry | None, since: float) -> None:
        """Raise the error of the fetch this call waited for, if that fetch failed."""
        failure = shared_failure(entry.meta, since, time.time()) if entry is not None else None
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

    @staticmethod
    def _without(entry: CacheEntry | None, refused: str | None) -> CacheEntry | None:
        """``entry`` with the access token the API refused dropped (the same ``entry`` if
        it does not hold it)."""
        if entry is None or refused is None or entry.token.access_token != refused:
            return entry
        return CacheEntry(entry.token.without_access_token(), entry.meta)

    def _fresh(self, entry: CacheEntry | None, ahead: bool = False) -> Token | None:
        """``entry``'s token if fresh: before its renewal point, or with ``ahead`` before its
        refresh-ahead point (``_freshness.py``)."""
        if entry is None or not entry.token.access_token:
            return None
        token, leeway = entry.token, self.config.leeway
        due = token.refresh_ahead_at(leeway, self.config.refresh_ahead) if ahead else None
        if due is None:
            return token if token.is_fresh(time.time(), leeway) else None
        return token if time.time() < due else None

    def _store(self, entry: CacheEntry) -> None:
        try:
            self.cache.store(self.key, entry)
        except CacheUnavailableError as exc:
            if self._cache_failed(exc, repeatable=True) == "memory":
                self.cache.store(self.key, entry)
            elif entry.token.refresh_token:
                # A WARNING record every time: if the server rotated the refresh token,
                # the cache still holds the old one, and the next refresh may end the login.
                message = "%s; a new refresh token could not be saved"
                warn_once(
                    "refresh token not stored", repr(self.cache), message, exc, log_again_after=0
                )

    @staticmethod
    def _matches(entry: CacheEntry | None, access_token: str | None) -> bool:
        """Whether ``entry`` holds ``access_token`` (``None``: any access token)."""
        if entry is None or not entry.token.access_token:
            return False
        return access_token is None or entry.token.access_token == access_token

    def facts(self, **more: str | bool) -> dict[str, str | bool | int | float]:
        """What telemetry and log records may say about this entry (``_telemetry.py``):
        the client id, the grant kind and the cache's class; never a subject or secret."""
        facts: dict[str, str | bool | int | float] = {
            "client_id": self.config.client_id,
            "grant": self.identity.meta.get("grant", "?"),
            "cache": type(self.cache).__name__,
        }
        facts.update(more)
        return facts

    def _describe(self) -> str:
        meta = self.identity.meta
        return (
            f"client_id={self.config.client_id} grant={meta.get('grant', '?')} "
            f"subject={meta.get('subject', '?')}"
        )
