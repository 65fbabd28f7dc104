"""The session: one auth object's token, renewed once for threads and event loops.

``TokenManager`` is the auth object's session. Its hot path, a fresh token in
memory, reads one attribute and the clock: no file, no lock, no network. Its
slow path takes an in-process lock, so that one caller per process renews
while the others wait; event loops (asyncio, trio) queue on a per-loop
``anyio.Lock`` and run that same sync slow path in a worker thread. The
renewal itself, single flight across processes through the cache, is the
``SharedEntry`` of ``_renewal.py``.

It also answers the adapters' plain questions when the API answers 401 (is
this our token, renew it once? ``refused_by_401``; the resend's answer,
``after_resend``), with what that rule needs to remember (when the token
arrived, whether the API refused it when new: issue 12); the token served
stale during an outage; ``token_info()``; and the ``on_token`` hook, told of
each fetched token after it is stored, outside every lock. A forked child
starts with fresh locks (issue 11).
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING

from ._cache import TokenCache
from ._config import ClientConfig
from ._fork import reset_after_fork
from ._grants import Grant
from ._identity import Identity
from ._renewal import SharedEntry, SyncTransport
from ._telemetry import background_renewal, cache_hit, log_extra
from ._token import Token, subject_of

if TYPE_CHECKING:
    import anyio

    from ._types import OnToken

__all__ = [
    "BEARER",
    "MIN_AGE_TO_RENEW_AFTER_401",
    "TokenInfo",
    "TokenManager",
]

#: How the adapters send a token in the ``Authorization`` header (RFC 6750 §2.1).
BEARER = "Bearer "

logger = logging.getLogger("hoxton_auth")

# -- the API's 401: one rule for every adapter path (issue 12) --------------------------

# A 401 to a token younger than this is not the token's fault (wrong audience,
# missing permission, an API misconfigured): renewing would only burn quota.
MIN_AGE_TO_RENEW_AFTER_401 = 60.0


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    """What is known about a token, without any of its secrets.

    Attributes:
        expires_at: When the access token expires (seconds since the epoch).
        obtained_at: When it arrived (seconds since the epoch, this machine's clock).
        scope: The scope the server granted, if it said.
        subject: The token's ``sub`` claim (the user, or ``<client>@clients``), if any.
        has_refresh_token: Whether a refresh token came with it (not the token itself).
    """

    expires_at: float
    obtained_at: float
    scope: str | None
    subject: str | None
    has_refresh_token: bool

    @classmethod
    def of(cls, token: Token) -> TokenInfo:
        """The facts of ``token``; its access, refresh and ID tokens stay out."""
        return cls(
            expires_at=token.expires_at,
            obtained_at=token.obtained_at,
            scope=token.scope,
            subject=subject_of(token),
            has_refresh_token=bool(token.refresh_token),
        )


# Background renewals under way -> how long one may still take (its fetch deadline).
_background: weakref.WeakKeyDictionary[threading.Thread, float] = weakref.WeakKeyDictionary()


def _join_at_exit() -> None:
    """Let background renewals finish before the interpreter exits.

    A refresh whose rotated refresh token is not stored would leave the cache
    with the spent one, and the next refresh would end the login: a normal
    exit waits for it (at most its fetch deadline). A killed process cannot,
    like any process killed during a renewal; the cache file stays whole (it
    is replaced atomically).
    """
    for thread, deadline in list(_background.items()):
        thread.join(deadline)


atexit.register(_join_at_exit)


class TokenManager:
    """Gets, caches, shares and renews the tokens of one auth object."""

    def __init__(
        self,
        config: ClientConfig,
        grant: Grant | None,
        cache: TokenCache,
        identity: Identity,
        seed_refresh_token: str | None = None,
        on_token: OnToken | None = None,
    ) -> None:
        self.config = config
        self.entry = SharedEntry(config, grant, cache, identity, seed_refresh_token)
        self._on_token = on_token
        self._token: Token | None = None  # the last token served, for token_info()
        # (access token, refresh-ahead point, renewal point, usable until): the
        # token in memory and its timeline (_freshness.py), one tuple swapped
        # atomically between threads.
        self._current: tuple[str, float, float, float] | None = None
        # (access token, obtained at, refused by the API when new): the 401 rule, issue 12
        self._obtained: tuple[str, float, bool] | None = None
        self._dead: str | None = None  # the last access token this session declared dead
        self._thread_lock = threading.Lock()  # held by the one renewal of this process
        self._loop_locks: weakref.WeakKeyDictionary[object, anyio.Lock]
        self._loop_locks = weakref.WeakKeyDictionary()
        self._ahead: threading.Thread | None = None  # the background renewal, if one runs
        self._ahead_guard = threading.Lock()  # starts at most one
        reset_after_fork(self)

    def _after_fork(self) -> None:
        # Issue 11: a child forked while another thread renewed would wait
        # forever on the inherited lock; the child starts with fresh ones, and
        # its own background renewal (the parent's thread did not come along).
        self._thread_lock = threading.Lock()
        self._loop_locks = weakref.WeakKeyDictionary()
        self._ahead = None
        self._ahead_guard = threading.Lock()

    @property
    def cache(self) -> TokenCache:
        """The cache in use: the one given, or memory once that one proved unusable."""
        return self.entry.cache

    @property
    def key(self) -> str:
        """The cache key of this identity (a hash, no secret in it).

        Raises:
            LookupError: An authorization code not exchanged yet has no entry.
        """
        return self.entry.key

    @property
    def identity(self) -> Identity:
        """Whose entry this object uses (set once a code is exchanged)."""
        return self.entry.identity

    # -- the hot path ---------------------------------------------------------

    def cached_access_token(self) -> str | None:
        """The in-memory access token if it is before its refresh-ahead point, else ``None``."""
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
        held = self._held(send, since, self._thread_lock.locked())
        if held is not None:
            return held
        try:
            token = self._renew(send, since)
        finally:
            self._report()
        self._served_ahead(send, time.time())  # found in its window: renew it now
        return token

    def _held(self, send: SyncTransport, now: float, renewing: bool) -> str | None:
        """The token in memory, to serve at once although past its refresh-ahead point, or
        ``None``: the caller must renew (and wait).

        Before its renewal point: served, and one background renewal starts.
        Past it, while still usable: served if a renewal is under way here
        (``renewing``), as during an outage (issue 12).
        """
        served = self._served_ahead(send, now)
        if served is not None:
            cache_hit(self.entry, "memory")
            return served
        current = self._current
        if renewing and current is not None and now < current[3] and current[0] != self._dead:
            cache_hit(self.entry, "memory")
            return current[0]
        return None

    def _served_ahead(self, send: SyncTransport, now: float) -> str | None:
        """The token in memory if it is past its refresh-ahead point and before its
        renewal point, with one background renewal started; else ``None``."""
        current = self._current
        if current is None or current[0] == self._dead or not current[1] <= now < current[2]:
            return None
        self._renew_ahead(send)
        return current[0]

    def _renew(self, send: SyncTransport, since: float, refused: str | None = None) -> str:
        """The slow path: one caller per process renews, the others wait and reuse.

        ``refused``: the access token the API answered 401 to, declared dead
        and replaced (unless another thread replaced it already). A caller
        that holds a usable token does not wait for a renewal another process
        or host has under way: it keeps its token.
        """
        with self._thread_lock:
            if refused is not None:
                self._declare_dead(refused)
            token = self.cached_access_token()
            if token is not None:  # another thread renewed it meanwhile
                cache_hit(self.entry, "memory")
                return token
            current = self._current
            if refused is None and current is not None and time.time() < current[3]:
                renewed = self.entry.renew_unless_busy(send, since, ahead=False)
                if renewed is None:  # renewing elsewhere: keep the usable token
                    cache_hit(self.entry, "memory")
                    return current[0]
                return self._remember(renewed)
            return self._remember(self.entry.renew(send, since, refused))

    # -- refresh ahead, in the background (issue 20) --------------------------------

    def _renew_ahead(self, send: SyncTransport) -> None:
        """Start the one background renewal of this process, unless one is under way."""
        if self.config.refresh_ahead <= 0 or self._thread_lock.locked():
            return
        with self._ahead_guard:
            if self._ahead is not None and self._ahead.is_alive():
                return
            if self._ahead is None:
                self.entry.prepare_background()  # once: no import may wait for an exit
            thread = threading.Thread(
                target=self._renew_in_background,
                args=(send,),
                name="hoxton-auth refresh-ahead",
                daemon=True,  # never keeps a process alive; exit waits for it (_join_at_exit)
            )
            try:
                thread.start()
            except RuntimeError:  # the interpreter is shutting down: no new threads
                return
            self._ahead = thread
            _background[thread] = self.config.retry_deadline + self.config.timeout

    def _renew_in_background(self, send: SyncTransport) -> None:
        """One renewal ahead of time, through the same single flight as every renewal.

        Never waits for a lock: if this process, another or another host is
        renewing, there is nothing to do. Quiet: a failure is noted in the
        cache (the shared cooldown) and logged at DEBUG; the valid token keeps
        being served, and from its renewal point on the callers renew (and
        warn) themselves.
        """
        if not self._thread_lock.acquire(blocking=False):
            background_renewal(self.entry, "busy")
            return
        try:
            renewed = self.entry.renew_unless_busy(send, time.time(), ahead=True)
            if renewed is not None:
                self._remember(renewed)
            outcome = "busy" if renewed is None else "renewed"
        except Exception as exc:  # quiet until the renewal point (issue 20)
            outcome = "failed"
            message = "background renewal failed; the valid token is kept: %s"
            logger.debug(message, exc, extra=log_extra(self.entry.facts(outcome=outcome)))
        finally:
            self._thread_lock.release()
        background_renewal(self.entry, outcome)
        self._report()

    def invalidate(self, access_token: str | None = None) -> None:
        """Declare ``access_token`` dead (default: the one this object last served,
        else the one the cache holds now).

        No caller of this session gets it again; the cache drops it only if it
        still holds that very token (a newer one another process stored is kept).
        """
        with self._thread_lock:
            if access_token is None:
                access_token = self._token.access_token if self._token is not None else None
            if access_token is None and self.entry.exchanged:
                cached = self.entry.peek_owned()
                access_token = cached.token.access_token if cached is not None else None
            if not access_token:
                return  # no token to declare dead
            self._declare_dead(access_token)
            self.entry.drop_access_token(access_token)

    def _declare_dead(self, access_token: str) -> None:
        self._dead = access_token
        if self._current is not None and self._current[0] == access_token:
            self._current = None
        if self._token is not None and self._token.access_token == access_token:
            self._token = None

    def logout(self, send: SyncTransport) -> None:
        """Revoke the refresh token, if any, and remove the cache entry.

        The entry is removed even when the revocation fails (the error is
        raised afterwards): the user asked for this machine to forget the login.
        """
        with self._thread_lock:
            if self._token is not None:
                self._declare_dead(self._token.access_token)
            self._current = self._token = None
            if not self.entry.exchanged:
                return  # a code never exchanged: no session to end
            with self.entry.lock():
                self.entry.revoke_and_delete(send)

    def begin_session(self, send: SyncTransport, *, login: bool = False) -> str:
        """Exchange the code now and store its token, replacing the cached one.

        ``login=True`` (for ``login()``): the session becomes this OS user's
        logged-in session of (domain, client, audience), and the refresh token
        of the session it replaces is revoked. Otherwise it is filed under the
        user's ``sub``.

        Raises:
            NotLoggedInError: There is no code to exchange (it was used).
        """
        try:
            with self._thread_lock:
                return self._remember(self.entry.begin_session(send, login=login))
        finally:
            self._report()

    def store_login(self, token: Token, send: SyncTransport) -> None:
        """Make ``token`` (from a device login) the logged-in session; ``on_token`` hears of it."""
        with self._thread_lock:
            self.entry.store_login(token, send)
            self._remember(token)
        self._tell(token)

    # -- web back ends (issue 21) ------------------------------------------------------

    def begin_web_session(self, send: SyncTransport, identity: Identity) -> str:
        """Exchange the code now and store its token under a web session's ``identity``."""
        try:
            with self._thread_lock:
                return self._remember(self.entry.begin_web_session(send, identity))
        finally:
            self._report()

    def resume(self, identity: Identity) -> bool:
        """Use the web session ``identity`` from now on; whether the cache holds it."""
        with self._thread_lock:
            self._current = self._token = None
            return self.entry.resume(identity)

    # -- event loops (asyncio, trio): the same slow path, in a worker thread ------

    async def aget_token(self, send: SyncTransport) -> str:
        """``get_token`` for asyncio and trio: the event loop never blocks.

        The tasks of one loop queue on that loop's lock; the one holding it runs
        the sync slow path in a worker thread (``anyio.to_thread``), so there is
        one renewal path for threads and every kind of event loop.
        """
        token = self.cached_access_token()
        if token is not None:
            return token
        # Here, not at the top: anyio is for event loops only, and sync-only
        # processes (the CLI, cron jobs with requests) never load it
        # (tests/test_imports.py).
        import anyio.to_thread

        since = time.time()  # a fetch that fails after this is the one we waited for
        lock = self._loop_lock()
        held = self._held(send, since, lock.locked() or self._thread_lock.locked())
        if held is not None:
            return held
        try:
            async with lock:
                token = self.cached_access_token()
                if token is not None:  # another task renewed it meanwhile
                    cache_hit(self.entry, "memory")
                    return token
                # Not abandoned on cancellation: the thread finishes its fetch (and stores
                # it) before the task ends, so the lock is never left held by a ghost.
                token = await anyio.to_thread.run_sync(self._renew, send, since)
        finally:
            self._report()
        self._served_ahead(send, time.time())  # found in its window: renew it now
        return token

    def _loop_lock(self) -> anyio.Lock:
        """This event loop's lock (asyncio's loop or trio's token as the key)."""
        import anyio.lowlevel  # here, not at the top: see aget_token

        loop = anyio.lowlevel.current_token().native_token
        lock = self._loop_locks.get(loop)
        if lock is None:
            lock = self._loop_locks[loop] = anyio.Lock()
        return lock

    # -- the API's 401: the adapters' plain questions (issue 12) -------------------

    def refused_by_401(self, authorization: str | None, resendable: bool) -> str | None:
        """The API answered 401: the refused access token to renew once, or ``None``.

        ``None`` hands the 401 back as the answer: the request carried none
        of our tokens (a redirect to another origin drops the header, and that
        host's 401 says nothing about our token); its body is a spent stream;
        or the API refused this token as soon as it was fetched (the resend
        got a 401 too: wrong audience, missing permission), less than
        ``MIN_AGE_TO_RENEW_AFTER_401`` seconds ago. So an API that refuses
        every token costs at most 2 token requests in its first minute and 1
        a minute after, while a revoked token (whose successor works) is
        always replaced. The adapter then calls ``replace`` and resends once.
        """
        if authorization is None or not authorization.startswith(BEARER):
            return None
        sent = authorization[len(BEARER) :]
        known = self._obtained
        refused_new = known is not None and known[0] == sent and known[2]
        if (
            refused_new
            and known is not None
            and time.time() - known[1] < MIN_AGE_TO_RENEW_AFTER_401
        ):
            logger.debug("401 to a token fetched moments ago: not renewing it (issue 12)")
            return None
        if not resendable:
            logger.debug("401 not retried: the request body is a stream that cannot be resent")
            return None
        logger.debug("API answered 401; retrying once with a new token")
        return sent

    def replace(self, refused: str, send: SyncTransport) -> str:
        """Declare ``refused`` dead and get another token, for the resend after a 401."""
        try:
            return self._renew(send, time.time(), refused)
        finally:
            self._report()

    async def areplace(self, refused: str, send: SyncTransport) -> str:
        """``replace`` for asyncio and trio: the renewal runs in a worker thread."""
        import anyio.to_thread  # here, not at the top: see aget_token

        try:
            async with self._loop_lock():
                return await anyio.to_thread.run_sync(self._renew, send, time.time(), refused)
        finally:
            self._report()

    def after_resend(self, token: str, status: int) -> None:
        """The resend with the new ``token`` got ``status``: a 401 marks it refused when new."""
        known = self._obtained
        if status == 401 and known is not None and known[0] == token:
            self._obtained = (token, known[1], True)  # refused when new: a 401 storm

    # -- shared helpers ---------------------------------------------------------------

    def token_info(self) -> TokenInfo | None:
        """The facts of the token this object uses: the one it last served, else the
        cache's (read without its lock); ``None`` while there is none. Never sends."""
        token = self._token
        if token is None and self.entry.exchanged:
            entry = self.entry.peek_owned()
            token = entry.token if entry is not None and entry.token.access_token else None
        return TokenInfo.of(token) if token is not None else None

    def _remember(self, token: Token) -> str:
        self._token = token
        known = self._obtained
        if known is None or known[0] != token.access_token:
            self._obtained = (token.access_token, token.obtained_at, False)
        leeway = self.config.leeway
        ahead_at = token.refresh_ahead_at(leeway, self.config.refresh_ahead)
        self._current = (token.access_token, ahead_at, token.renew_at(leeway), token.usable_until())
        return token.access_token

    def _report(self) -> None:
        """Tell ``on_token`` of the tokens fetched: after they are stored, outside every lock."""
        for token in self.entry.take_fetched():
            self._tell(token)

    def _tell(self, token: Token) -> None:
        if self._on_token is None:
            return
        try:
            self._on_token(TokenInfo.of(token))
        except Exception:  # a metrics hook must never break the call it reports on
            logger.exception("the on_token hook raised; the token is used anyway")
