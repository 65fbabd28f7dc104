"""The session: one auth object's token, renewed once for threads and event loops.

``TokenManager`` is the auth object's session. Its hot path, a fresh token in
memory, reads one attribute and the clock: no file, no lock, no network. Its
slow path takes an in-process lock, so that one caller per process renews
while the others wait; event loops (asyncio, trio) queue on a per-loop
``anyio.Lock`` and run that same sync slow path in a worker thread. The
renewal itself, single flight across processes through the cache, is the
``SharedEntry`` of ``_renewal.py``.

It also holds the one rule every adapter path follows when the API answers
401 (``answer_401``, a sans-I/O generator) and what that rule needs (when the
token arrived, whether it was refused when new: issue 12), the token served stale during an outage,
and ``token_info()``; a forked child starts with fresh locks (issue 11).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

from ._cache import TokenCache
from ._config import ClientConfig
from ._failures import usable_until
from ._grants import Grant
from ._identity import Identity
from ._renewal import SharedEntry, SyncTransport
from ._token import Token, subject_of

if TYPE_CHECKING:
    import anyio

__all__ = [
    "BEARER",
    "MIN_AGE_TO_RENEW_AFTER_401",
    "Answer401",
    "OnToken",
    "Renew",
    "Resend",
    "TokenInfo",
    "TokenManager",
    "answer_401",
]

#: How the adapters send a token in the ``Authorization`` header (RFC 6750 §2.1).
BEARER = "Bearer "

logger = logging.getLogger("hoxton_auth")

# -- the API's 401: one rule for every adapter path (issue 12) --------------------------

# A 401 to a token younger than this is not the token's fault (wrong audience,
# missing permission, an API misconfigured): renewing would only burn quota.
MIN_AGE_TO_RENEW_AFTER_401 = 60.0


@dataclasses.dataclass(frozen=True)
class Renew:
    """Release the API's 401, drop ``refused``, get a new token: send back its access token."""

    refused: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class Resend:
    """Send the request again with ``Authorization: Bearer <token>``: send back its status."""

    token: str = dataclasses.field(repr=False)


Answer401 = Generator[Renew | Resend, str | int | None, str | None]


def answer_401(
    sent: str | None, resendable: bool, last: tuple[str, float, bool] | None, now: float
) -> Answer401:
    """The API answered 401: yield ``Renew``, then ``Resend``, or nothing. Never more.

    A spent stream is not resent: the 401 is the answer. A token the API
    refused as soon as it was fetched (the resend got a 401 too) is not the
    problem (wrong audience, missing permission): it is not renewed again
    until ``MIN_AGE_TO_RENEW_AFTER_401`` seconds old. So an API that refuses
    every token costs at most 2 token requests in its first minute and 1 a
    minute after, while a revoked token (whose successor works) is always replaced.

    Args:
        sent: The access token the 401 answered; ``None`` when the request
            carried none of ours (a redirect to another origin drops it, and
            that host's 401 says nothing about our token).
        resendable: Whether the request's body can be sent again.
        last: The session's last token: its access token, when it was
            obtained, whether the API refused it when new.
        now: The time.

    Returns:
        The new access token if the API refused it too (for the session to
        remember as refused when new), else ``None``.
    """
    if sent is None:
        return None
    refused_new_at = last[1] if last is not None and last[0] == sent and last[2] else None
    if refused_new_at is not None and now - refused_new_at < MIN_AGE_TO_RENEW_AFTER_401:
        logger.debug("401 to a token fetched moments ago: not renewing it (issue 12)")
        return None
    if not resendable:
        logger.debug("401 not retried: the request body is a stream that cannot be resent")
        return None
    new = yield Renew(sent)
    assert isinstance(new, str)  # noqa: S101  a Renew is answered by the new token
    logger.debug("API answered 401; retrying once with a new token")
    status = yield Resend(new)
    return new if status == 401 else None


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


OnToken = Callable[[TokenInfo], None]


def _tell(on_token: OnToken, token: Token) -> None:
    """Pass the facts of a fetched token, never its secrets, to the ``on_token`` hook."""
    on_token(TokenInfo.of(token))


_managers: weakref.WeakSet[TokenManager] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for manager in list(_managers):
        manager._after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_reset_after_fork)


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
        on_fetch = functools.partial(_tell, on_token) if on_token is not None else None
        self.entry = SharedEntry(config, grant, cache, identity, seed_refresh_token, on_fetch)
        self._token: Token | None = None  # the last token served, for token_info()
        # (access token, renew at): one tuple, swapped atomically between threads.
        self._current: tuple[str, float] | None = None
        # (access token, obtained at, refused by the API when new): the 401 rule, issue 12
        self._obtained: tuple[str, float, bool] | None = None
        self._stale: tuple[str, float] | None = None  # (token served stale, usable until): issue 12
        self._thread_lock = threading.Lock()
        self._loop_locks: weakref.WeakKeyDictionary[object, anyio.Lock]
        self._loop_locks = weakref.WeakKeyDictionary()
        _managers.add(self)

    def _after_fork(self) -> None:
        # Issue 11: a child forked while another thread renewed would wait
        # forever on the inherited lock; the child starts with fresh ones.
        self._thread_lock = threading.Lock()
        self._loop_locks = weakref.WeakKeyDictionary()

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
        stale = self._stale_while_renewing(self._thread_lock.locked())  # issue 12
        if stale is not None:
            return stale
        return self._renew(send, since)

    def _renew(self, send: SyncTransport, since: float) -> str:
        """The slow path: one caller per process renews, the others wait and reuse."""
        with self._thread_lock:
            token = self.cached_access_token()
            if token is not None:
                return token
            return self._remember(self.entry.renew(send, since))

    def invalidate(self, access_token: str | None = None) -> None:
        """Forget ``access_token`` (default: any) in memory and in the cache."""
        with self._thread_lock:
            if access_token is None or (self._current and self._current[0] == access_token):
                self._current = self._token = None
            self.entry.drop_access_token(access_token)

    def logout(self, send: SyncTransport) -> None:
        """Revoke the refresh token, if any, and remove the cache entry.

        The entry is removed even when the revocation fails (the error is
        raised afterwards): the user asked for this machine to forget the login.
        """
        with self._thread_lock:
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
            LoginRequiredError: There is no grant to exchange (it was used).
            CacheError: The cache lock is stuck (a code is never sent twice).
        """
        with self._thread_lock:
            return self._remember(self.entry.begin_session(send, login=login))

    # -- web back ends (issue 21) ------------------------------------------------------

    def begin_web_session(self, send: SyncTransport, identity: Identity) -> str:
        """Exchange the code now and store its token under a web session's ``identity``."""
        with self._thread_lock:
            return self._remember(self.entry.begin_web_session(send, identity))

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
        # Here, not at the top: anyio costs ~28 ms of import (python -X importtime),
        # which sync-only processes (the CLI, cron jobs with requests) never pay.
        import anyio.to_thread

        since = time.time()  # a fetch that fails after this is the one we waited for
        lock = self._loop_lock()
        stale = self._stale_while_renewing(lock.locked() or self._thread_lock.locked())
        if stale is not None:
            return stale
        async with lock:
            token = self.cached_access_token()
            if token is not None:
                return token
            # Not abandoned on cancellation: the thread finishes its fetch (and stores
            # it) before the task ends, so the lock is never left held by a ghost.
            return await anyio.to_thread.run_sync(self._renew, send, since)

    async def ainvalidate(self, access_token: str | None = None) -> None:
        """``invalidate`` for asyncio and trio: the cache is touched in a worker thread."""
        import anyio.to_thread  # here, not at the top: see aget_token

        async with self._loop_lock():
            await anyio.to_thread.run_sync(self.invalidate, access_token)

    def _loop_lock(self) -> anyio.Lock:
        """This event loop's lock (asyncio's loop or trio's token as the key)."""
        import anyio.lowlevel  # here, not at the top: see aget_token

        loop = anyio.lowlevel.current_token().native_token
        lock = self._loop_locks.get(loop)
        if lock is None:
            lock = self._loop_locks[loop] = anyio.Lock()
        return lock

    # -- shared helpers ---------------------------------------------------------------

    def answer_401(self, authorization: str | None, resendable: bool) -> Answer401:
        """The one 401 rule (``answer_401``) with this session's memory of its token.

        ``authorization`` is the header the 401 answered: a request that
        carried no bearer token (a redirect to another origin drops it) is
        not ours. Adapters drive it: ``Renew`` -> release the 401,
        ``invalidate`` the refused token, send back ``get_token()``;
        ``Resend`` -> resend with the new token and send back the status.
        """
        sent = None
        if authorization is not None and authorization.startswith(BEARER):
            sent = authorization[len(BEARER) :]
        refused = yield from answer_401(sent, resendable, self._obtained, time.time())
        known = self._obtained
        if refused is not None and known is not None and known[0] == refused:
            self._obtained = (refused, known[1], True)  # refused when new: a 401 storm
        return refused

    def _stale_while_renewing(self, renewing: bool) -> str | None:
        """During an outage, the valid token served stale, while another caller renews."""
        stale = self._stale
        if renewing and stale is not None and time.time() < stale[1]:
            return stale[0]
        return None

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
        now = time.time()
        served_stale = not token.is_fresh(now, self.config.leeway)  # issue 12: an outage
        self._stale = (token.access_token, usable_until(token)) if served_stale else None
        known = self._obtained
        if known is None or known[0] != token.access_token:
            self._obtained = (token.access_token, token.obtained_at, False)
        self._current = (token.access_token, token.renew_at(self.config.leeway))
        return token.access_token
