"""Failures: of a token fetch (notes, cooldowns, stale-while-failing) and of the cache.

A failed fetch is shared with the callers that waited for it (issue 5): the
holder of the cache lock writes a note of its failure into the entry's
``meta``, and a caller that started waiting before the note raises the same
error at once instead of retrying in turn; one arriving later tries again.
Only "the endpoint is in trouble" is shared (network, 429 and 5xx after
retries): a refusal such as ``invalid_grant`` costs one request. A
``LoginRequiredError`` makes the entry forget its refresh token.

A note is also a *cooldown* (issue 12): a 429's wait (``Retry-After``,
``X-RateLimit-Reset``), else a backoff growing with each consecutive failure
(``COOLDOWN_STEPS``). Until then everyone sharing the cache fails fast without
a request (``during_cooldown``), unless the cached access token is still good
to send (up to ``STALE_MARGIN`` before its ``exp``): then it is served, as after
a transient failure (``token_despite_failure``), with a warning once per
outage. A note dated in the future or longer than ``MAX_COOLDOWN`` is not
trusted: a host with a skewed clock cannot lock the fleet out.

When the cache fails: a stuck lock never hangs us (a grant safe to repeat
fetches without it; a refresh raises ``CacheLockTimeoutError``); an unusable
local cache is replaced by memory for the process; a transient one that is
down (Redis) is not, and a repeatable grant fetches directly until it is back.
No refresh ever runs without the shared cache and its lock: a rotated refresh
token used twice makes Auth0 revoke the whole login.

No I/O; callers pass the time of day (only the rate limit of warnings reads
the monotonic clock); warnings and log records are the only side effects.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import warnings
from collections.abc import Mapping
from typing import Any

from ._cache import CacheEntry, MemoryTokenCache, TokenCache
from ._errors import (
    CacheLockTimeoutError,
    CacheUnavailableError,
    HoxtonAuthWarning,
    LoginRequiredError,
    TokenEndpointUnreachableError,
    TokenRequestError,
)
from ._grants import Grant
from ._token import Token

__all__ = [
    "BLOCKED_COOLDOWN",
    "COOLDOWN_STEPS",
    "FAILURE_META",
    "MAX_COOLDOWN",
    "STALE_MARGIN",
    "UNAVAILABLE_WARNING_INTERVAL",
    "check_fetch_without_cache",
    "claim_renewal",
    "during_cooldown",
    "entry_after_failure",
    "failure_note",
    "fall_back_to_memory",
    "grant_without_lock",
    "refuse_refresh_without_cache",
    "shared_failure",
    "token_despite_failure",
    "usable_until",
    "warn_degraded",
    "warn_not_stored",
    "warn_stale_served",
]

logger = logging.getLogger("hoxton_auth")

FAILURE_META = "last_failure"  # the meta field holding the note (JSON, no secret)
# A token is served during an outage until this many seconds before its exp,
# so that the API call it is put on arrives while it is still valid.
STALE_MARGIN = 5.0
# Cooldown after the n-th consecutive failed fetch without a server-given wait.
COOLDOWN_STEPS = (5.0, 10.0, 20.0, 40.0, 60.0)
# No note may stop the fleet asking for longer than this (a day: Auth0's
# daily quota), nor be dated more than CLOCK_TOLERANCE in the future.
MAX_COOLDOWN = 24 * 3600.0
BLOCKED_COOLDOWN = 300.0  # Auth0's too_many_attempts: until someone unblocks the login
CLOCK_TOLERANCE = 5.0

SharedError = TokenEndpointUnreachableError | TokenRequestError


def _transient(error: Exception) -> bool:
    """The endpoint is in trouble (network, 429, 5xx), not refusing this grant."""
    if isinstance(error, TokenRequestError):
        return error.status_code == 429 or error.status_code >= 500
    return isinstance(error, TokenEndpointUnreachableError)


def _read_note(meta: Mapping[str, str], now: float) -> dict[str, Any] | None:
    """The note in ``meta`` if it can be trusted at ``now``, else ``None``."""
    raw = meta.get(FAILURE_META)
    if not raw:
        return None
    try:
        note = json.loads(raw)
        at = float(note["at"])
        until = float(note.get("until", at))
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError):
        return None
    if not isinstance(note, dict) or not (math.isfinite(at) and math.isfinite(until)):
        return None
    if at > now + CLOCK_TOLERANCE or until - at > MAX_COOLDOWN:
        return None  # another host's clock runs ahead, or the note is nonsense
    return note


def failure_note(
    error: Exception, now: float, previous: Mapping[str, str] | None = None
) -> str | None:
    """The note to store for ``error``, or ``None`` if it is not worth sharing.

    The message is the error's own, which never holds a secret. ``previous``
    (the entry's meta) carries the outage on: when it began and how many
    fetches failed in a row, which sets the cooldown.
    """
    if not isinstance(error, (TokenEndpointUnreachableError, TokenRequestError)):
        return None
    if not _transient(error):
        return None
    before = (_read_note(previous, now) if previous is not None else None) or {}
    count = before.get("failures", 1) if before else 0
    failures = (count if isinstance(count, int) else 1) + 1
    began = before.get("first_at", now)
    first_at = float(began) if isinstance(began, (int, float)) else now
    retry_after = getattr(error, "retry_after", None)
    step = COOLDOWN_STEPS[min(failures, len(COOLDOWN_STEPS)) - 1]
    wait = min(retry_after if retry_after is not None else step, MAX_COOLDOWN)
    if isinstance(error, TokenRequestError) and error.error == "too_many_attempts":
        wait = max(wait, BLOCKED_COOLDOWN)  # a blocked login stays blocked: don't keep asking
    if isinstance(error, TokenEndpointUnreachableError):
        note: dict[str, Any] = {"kind": "unreachable"}
    else:
        note = {"kind": "refused", "status_code": error.status_code, "error": error.error}
        note.update(error_description=error.error_description, retry_after=error.retry_after)
    note.update(at=now, message=str(error), url=error.url, attempts=error.attempts)
    note.update(until=now + wait, first_at=first_at, failures=failures)
    return json.dumps(note, sort_keys=True)


def entry_after_failure(
    entry: CacheEntry | None, meta: Mapping[str, str], error: Exception, now: float
) -> CacheEntry | None:
    """What a failed fetch leaves in the cache, or ``None`` to leave the entry alone.

    A rejected refresh token is dropped (with the stale access token); an
    endpoint in trouble leaves a note for the waiters, tokens untouched (with
    no ``entry`` yet, in a new one with ``meta`` and no access token).
    """
    if isinstance(error, LoginRequiredError) and entry is not None and entry.token.refresh_token:
        # Times kept: the entry ages out like any expired one.
        token = dataclasses.replace(entry.token, access_token="", refresh_token=None)
        return CacheEntry(token, entry.meta)
    note = failure_note(error, now, entry.meta if entry is not None else None)
    if note is None:
        return None
    if entry is None:  # no access token (is_fresh: no), dated now so no cache prunes it as dead
        return CacheEntry(Token("", now, now), {**meta, FAILURE_META: note})
    return CacheEntry(entry.token, {**entry.meta, FAILURE_META: note})


def shared_failure(meta: Mapping[str, str], since: float) -> SharedError | None:
    """The error of a fetch that failed after ``since``, rebuilt from ``meta``.

    ``None`` when there is no note, it is older than ``since``, or it cannot
    be read (a note is advice: a damaged one means "fetch yourself").
    """
    note = _read_note(meta, since + MAX_COOLDOWN)  # the clock check is during_cooldown's
    if note is None or float(note["at"]) < since:
        return None
    why = "this call waited for that fetch, made by another process or thread"
    return _rebuild(note, why, None)


def during_cooldown(entry: CacheEntry | None, now: float, since: float) -> Token | None:
    """What a caller gets while a shared cooldown runs: ``None`` if none runs.

    The cached token if it is still good to send (stale-while-failing), else
    the noted error, with ``retry_after``, raised without asking the server.
    ``since``: when the caller started waiting (for the error's wording).

    Raises:
        TokenRequestError: The cooldown of a 429 or 5xx, and no usable token.
        TokenEndpointUnreachableError: The cooldown of a network failure, and no usable token.
    """
    if entry is None:
        return None
    note = _read_note(entry.meta, now)
    if note is None or now >= float(note["until"] if "until" in note else note["at"]):
        return None
    if usable_until(entry.token) > now:
        warn_stale_served(entry.token, note, now)
        return entry.token
    left = float(note["until"]) - now
    why = f"not asking again for {left:.0f}s: a cooldown shared through the cache"
    if float(note["at"]) >= since:
        why = f"this call waited for that fetch, made by another process or thread; {why}"
    failure = _rebuild(note, why, left)
    if failure is None:
        return None
    raise failure


def token_despite_failure(entry: CacheEntry | None, error: Exception, now: float) -> Token | None:
    """The cached token to serve although renewing it failed with ``error``, if any.

    Only for transient failures (network, 429, 5xx), and only while the
    token is good to send: a refusal (``invalid_grant``...) is always raised.
    """
    if entry is None or not _transient(error) or usable_until(entry.token) <= now:
        return None
    note = _read_note(entry.meta, now) or {"first_at": now, "message": str(error)}
    warn_stale_served(entry.token, note, now)
    return entry.token


def claim_renewal(entry: CacheEntry | None, now: float, budget: float) -> CacheEntry | None:
    """``entry`` with its cooldown stretched over a renewal about to start, or ``None``.

    Only during an outage (a note is there) and while the cached token is good
    to send: the others keep using it for the ``budget`` of this fetch (its
    deadline), instead of queueing on the cache lock behind it.
    """
    if entry is None or usable_until(entry.token) <= now:
        return None
    note = _read_note(entry.meta, now)
    if note is None:
        return None
    note["until"] = max(float(note.get("until", now)), now + budget)
    return CacheEntry(entry.token, {**entry.meta, FAILURE_META: json.dumps(note, sort_keys=True)})


def usable_until(token: Token) -> float:
    """Until when ``token`` may be served although it is due for renewal."""
    return token.expires_at - STALE_MARGIN if token.access_token else -math.inf


def warn_stale_served(token: Token, note: Mapping[str, Any], now: float) -> None:
    """Say once per outage (and process) that a token is served while renewal fails."""
    began = note.get("first_at", note.get("at", now))
    outage = (str(note.get("url", "")), float(began) if isinstance(began, (int, float)) else now)
    text = (
        "could not renew the access token (%s); using the cached one, valid for %.0fs "
        "more, until the token endpoint is back"
    )
    args = (note.get("message", "token endpoint in trouble"), token.expires_at - now)
    warn_degraded("stale served", repr(outage), text, *args)


def _rebuild(note: Mapping[str, Any], why: str, retry_after: float | None) -> SharedError | None:
    try:
        message = f"{note['message']} ({why})"
        url, attempts = str(note["url"]), int(note["attempts"])
        if note["kind"] == "unreachable":
            return TokenEndpointUnreachableError(
                message, url=url, attempts=attempts, retry_after=retry_after
            )
        if note["kind"] == "refused":
            error, description = note.get("error"), note.get("error_description")
            return TokenRequestError(
                message,
                status_code=int(note["status_code"]),
                error=error if isinstance(error, str) else None,
                error_description=description if isinstance(description, str) else None,
                url=url,
                attempts=attempts,
                retry_after=retry_after if retry_after is not None else note.get("retry_after"),
            )
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError):
        return None
    return None


# -- the cache itself fails -------------------------------------------------------------

# A WARNING record per cache location (its repr: URL and prefix, no password)
# at most this often, not on every renewal of every auth object of a fleet.
UNAVAILABLE_WARNING_INTERVAL = 60.0
_last_unavailable_warning: dict[str, float] = {}
_warned_degraded: set[tuple[str, str]] = set()


def warn_degraded(cause: str, where: str, message: str, *args: object) -> None:
    """A degraded but working state: a ``HoxtonAuthWarning`` and a WARNING record.

    Once per cause and location (path, Redis URL, tenant) per process, later
    ones as DEBUG records: the calls still succeed. The warning reaches users
    who configured no logging (the package logger has a ``NullHandler``; issue 11).
    """
    if (cause, where) in _warned_degraded:
        logger.debug(message, *args)
        return
    _warned_degraded.add((cause, where))
    logger.warning(message, *args)
    warnings.warn(message % args, HoxtonAuthWarning, stacklevel=3)


def grant_without_lock(grant: Grant | None, exc: CacheLockTimeoutError) -> Grant:
    """The cache lock is stuck: the grant to fetch without it, if it is safe to repeat.

    Never a refresh, not even for a password grant with a cached refresh
    token: that refresh token may be the one the stuck holder is using.

    Raises:
        CacheLockTimeoutError: The grant is not safe to repeat.
    """
    if grant is None or not grant.repeatable:
        raise CacheLockTimeoutError(
            f"{exc}; not refreshing without it, because a refresh token used twice "
            "makes Auth0 revoke the whole login"
        ) from exc
    warn_degraded("lockless fetch", str(exc), "%s; fetching a token without the cache", exc)
    return grant


def check_fetch_without_cache(
    cache: TokenCache,
    grant: Grant | None,
    seed_refresh_token: str | None,
    exc: CacheUnavailableError,
) -> None:
    """A transient cache is down: allow a direct fetch only for a repeatable grant.

    Not a switch to memory for good: Redis comes back, and the next renewal
    shares tokens through it again.

    Raises:
        CacheUnavailableError: The fetch would need a refresh token.
    """
    refuse_refresh_without_cache(grant, seed_refresh_token, exc)
    _warn_unavailable(
        cache, "fetch without cache", "%s; fetching tokens directly until it is back", exc
    )


def refuse_refresh_without_cache(
    grant: Grant | None, seed_refresh_token: str | None, exc: CacheUnavailableError
) -> None:
    """Go on without the shared cache only with a grant that is safe to repeat (issue 11).

    A refresh token in the cache, or the constructor's seed, may be held by
    other processes too: without the shared lock, it may be sent twice.

    Raises:
        CacheUnavailableError: Renewing would send such a refresh token.
    """
    if seed_refresh_token is not None or grant is None or not grant.repeatable:
        raise CacheUnavailableError(
            f"{exc}; not refreshing without the shared cache and its lock, because a "
            "refresh token used twice makes Auth0 revoke the whole login (make the "
            "cache usable, or set HOXTON_AUTH_CACHE to a file this user owns)"
        ) from exc


def warn_not_stored(cache: TokenCache, entry: CacheEntry, exc: CacheUnavailableError) -> None:
    """The token is in hand (the call succeeds) but the transient cache missed it."""
    if not entry.token.refresh_token:
        _warn_unavailable(cache, "token not stored", "%s; the new token was not shared", exc)
        return
    # A WARNING record every time: if the server rotated the refresh token, the
    # cache still holds the old one, and the next refresh may end the login.
    message = "%s; a new refresh token could not be saved"
    if ("refresh token not stored", repr(cache)) in _warned_degraded:
        logger.warning(message, exc)
    else:
        warn_degraded("refresh token not stored", repr(cache), message, exc)


def fall_back_to_memory(exc: Exception) -> MemoryTokenCache:
    """The memory cache that replaces a local cache which cannot be used."""
    warn_degraded("memory fallback", str(exc), "%s; keeping tokens in memory for this process", exc)
    return MemoryTokenCache()


def _warn_unavailable(cache: TokenCache, cause: str, message: str, *args: object) -> None:
    """A warning once per cause and location; a WARNING record at most once per interval."""
    where = repr(cache)
    if (cause, where) not in _warned_degraded:
        _last_unavailable_warning[where] = time.monotonic()
        warn_degraded(cause, where, message, *args)
        return
    now = time.monotonic()
    last = _last_unavailable_warning.get(where)
    if last is not None and now - last < UNAVAILABLE_WARNING_INTERVAL:
        logger.debug(message, *args)
        return
    _last_unavailable_warning[where] = now
    logger.warning(message, *args)
