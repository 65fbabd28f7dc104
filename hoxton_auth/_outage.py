"""Auth0's bad days: failure notes, shared cooldowns and stale-while-failing.

The pure rules of an outage of the token endpoint; what happens when the
cache itself fails is decided beside the single flight (``SharedEntry`` in
``_renewal.py``), and when a token is fresh or usable in ``_freshness.py``.

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
to send (``Token.usable_until``): then it is served, as after
a transient failure (``token_despite_failure``), with a warning once per
outage. A note dated in the future or longer than ``MAX_COOLDOWN`` is not
trusted: a host with a skewed clock cannot lock the fleet out.

No I/O and no clock: callers pass the time of day; warnings, log records and
telemetry (``_telemetry.py``: cooldown skips, stale tokens served) are the
only side effects.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from ._cache import CacheEntry
from ._errors import (
    LoginRequiredError,
    TokenEndpointUnreachableError,
    TokenRequestError,
    warn_once,
)
from ._telemetry import cooldown_skip, stale_served
from ._token import Token

__all__ = [
    "BLOCKED_COOLDOWN",
    "COOLDOWN_STEPS",
    "FAILURE_META",
    "MAX_COOLDOWN",
    "claim_renewal",
    "during_cooldown",
    "entry_after_failure",
    "failure_note",
    "shared_failure",
    "token_despite_failure",
    "transient",
]

FAILURE_META = "last_failure"  # the meta field holding the note (JSON, no secret)
# Cooldown after the n-th consecutive failed fetch without a server-given wait.
COOLDOWN_STEPS = (5.0, 10.0, 20.0, 40.0, 60.0)
# No note may stop the fleet asking for longer than this (a day: Auth0's
# daily quota), nor be dated more than CLOCK_TOLERANCE in the future.
MAX_COOLDOWN = 24 * 3600.0
BLOCKED_COOLDOWN = 300.0  # Auth0's too_many_attempts: until someone unblocks the login
CLOCK_TOLERANCE = 5.0

SharedError = TokenEndpointUnreachableError | TokenRequestError


def transient(error: Exception) -> bool:
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
    if not transient(error):
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


def shared_failure(meta: Mapping[str, str], since: float, now: float) -> SharedError | None:
    """The error of a fetch that failed after ``since``, rebuilt from ``meta``.

    ``None`` when there is no note, it is older than ``since``, dated in the
    future (another host's clock runs ahead: it must stop nobody), or cannot
    be read (a note is advice: a damaged one means "fetch yourself").
    """
    note = _read_note(meta, now)
    if note is None or float(note["at"]) < since:
        return None
    why = "this call waited for that fetch, made by another process or thread"
    return _rebuild(note, why, None)


def during_cooldown(
    entry: CacheEntry | None, now: float, since: float, *, quiet: bool = False
) -> Token | None:
    """What a caller gets while a shared cooldown runs: ``None`` if none runs.

    The cached token if it is still good to send (stale-while-failing, with
    a warning once per outage unless ``quiet``: a background renewal), else
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
    if entry.token.usable_until() > now:
        if not quiet:  # a background renewal keeps its token: it serves nobody
            warn_stale_served(entry.token, note, now)
            stale_served("cooldown")
        cooldown_skip("stale")
        return entry.token
    left = float(note["until"]) - now
    why = f"not asking again for {left:.0f}s: a cooldown shared through the cache"
    if float(note["at"]) >= since:
        why = f"this call waited for that fetch, made by another process or thread; {why}"
    failure = _rebuild(note, why, left)
    if failure is None:
        return None
    cooldown_skip("error")
    raise failure


def token_despite_failure(entry: CacheEntry | None, error: Exception, now: float) -> Token | None:
    """The cached token to serve although renewing it failed with ``error``, if any.

    Only for transient failures (network, 429, 5xx), and only while the
    token is good to send: a refusal (``invalid_grant``...) is always raised.
    """
    if entry is None or not transient(error) or entry.token.usable_until() <= now:
        return None
    note = _read_note(entry.meta, now) or {"first_at": now, "message": str(error)}
    warn_stale_served(entry.token, note, now)
    stale_served("failure")
    return entry.token


def claim_renewal(entry: CacheEntry | None, now: float, budget: float) -> CacheEntry | None:
    """``entry`` with its cooldown stretched over a renewal about to start, or ``None``.

    Only during an outage (a note is there) and while the cached token is good
    to send: the others keep using it for the ``budget`` of this fetch (its
    deadline), instead of queueing on the cache lock behind it.
    """
    if entry is None or entry.token.usable_until() <= now:
        return None
    note = _read_note(entry.meta, now)
    if note is None:
        return None
    note["until"] = max(float(note.get("until", now)), now + budget)
    return CacheEntry(entry.token, {**entry.meta, FAILURE_META: json.dumps(note, sort_keys=True)})


def warn_stale_served(token: Token, note: Mapping[str, Any], now: float) -> None:
    """Say once per outage (and process) that a token is served while renewal fails."""
    began = note.get("first_at", note.get("at", now))
    outage = (str(note.get("url", "")), float(began) if isinstance(began, (int, float)) else now)
    text = (
        "could not renew the access token (%s); using the cached one, valid for %.0fs "
        "more, until the token endpoint is back"
    )
    args = (note.get("message", "token endpoint in trouble"), token.expires_at - now)
    warn_once("stale served", repr(outage), text, *args)


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
