"""Sharing a failed fetch with the callers that waited for it (issue 5).

While one process (or thread) fetches a token, the others wanting the same
cache entry wait on the cache lock. If the fetch succeeds they find its
token. If it fails after all its retries, say because the token endpoint is
down, each waiter used to start its own round of retries in turn: N waiters,
N times the requests, and the last one waiting N times the retry deadline
(long enough for the later ones to time out on the lock). Instead the holder
writes a note of its failure into the cache entry's ``meta``, and a caller
that started waiting before that note was written raises the same error at
once. A caller that arrives after the failure tries again: the endpoint may
be back.

Only "the endpoint is in trouble" failures are shared (network failures,
429 and 5xx after retries): a refusal such as ``invalid_grant`` costs one
request, not a round of retries.

One refusal does change the entry: a ``LoginRequiredError`` means every
refresh token tried, the cached one first, was rejected. The entry then
forgets its refresh token, so that later callers (and later cron runs) do not
send a dead token again before they, too, are told to log in.

Pure functions: no I/O, no clock (callers pass times).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from ._cache import CacheEntry
from ._errors import LoginRequiredError, TokenEndpointUnreachableError, TokenRequestError
from ._token import Token

__all__ = [
    "FAILURE_META",
    "entry_after_failure",
    "failure_note",
    "shared_failure",
    "with_failure_note",
]

FAILURE_META = "last_failure"  # the meta field holding the note (JSON, no secret)

SharedError = TokenEndpointUnreachableError | TokenRequestError


def failure_note(error: Exception, now: float) -> str | None:
    """The note to store for ``error``, or ``None`` if it is not worth sharing.

    The message is the error's own, which never holds a secret.
    """
    if isinstance(error, TokenEndpointUnreachableError):
        note: dict[str, Any] = {"kind": "unreachable"}
    elif isinstance(error, TokenRequestError) and (
        error.status_code == 429 or error.status_code >= 500
    ):
        note = {
            "kind": "refused",
            "status_code": error.status_code,
            "error": error.error,
            "error_description": error.error_description,
        }
    else:
        return None
    note.update(at=now, message=str(error), url=error.url, attempts=error.attempts)
    return json.dumps(note, sort_keys=True)


def with_failure_note(
    entry: CacheEntry | None, meta: Mapping[str, str], error: Exception, now: float
) -> CacheEntry | None:
    """``entry`` (tokens untouched) plus a note of ``error``, or ``None`` if not worth sharing.

    With no ``entry`` (nothing cached yet), a new one with ``meta`` and no access token.
    """
    note = failure_note(error, now)
    if note is None:
        return None
    if entry is None:  # nothing cached yet: an entry with no access token (is_fresh: no),
        # dated now so that a cache does not prune it as long dead
        return CacheEntry(Token("", now, now), {**meta, FAILURE_META: note})
    return CacheEntry(entry.token, {**entry.meta, FAILURE_META: note})


def entry_after_failure(
    entry: CacheEntry | None, meta: Mapping[str, str], error: Exception, now: float
) -> CacheEntry | None:
    """What a failed fetch leaves in the cache, or ``None`` to leave the entry alone.

    A rejected refresh token is dropped (with the stale access token); an
    endpoint in trouble leaves a note for the waiters (``with_failure_note``).
    """
    if isinstance(error, LoginRequiredError) and entry is not None and entry.token.refresh_token:
        # Times kept: the entry ages out like any expired one.
        token = dataclasses.replace(entry.token, access_token="", refresh_token=None)
        return CacheEntry(token, entry.meta)
    return with_failure_note(entry, meta, error, now)


def shared_failure(meta: Mapping[str, str], since: float) -> SharedError | None:
    """The error of a fetch that failed after ``since``, rebuilt from ``meta``.

    ``None`` when there is no note, it is older than ``since``, or it cannot
    be read (a note is advice: a damaged one means "fetch yourself").
    """
    raw = meta.get(FAILURE_META)
    if not raw:
        return None
    try:
        note = json.loads(raw)
        at, message = float(note["at"]), str(note["message"])
        url, attempts = str(note["url"]), int(note["attempts"])
        if not math.isfinite(at) or at < since:
            return None
        message += " (this call waited for that fetch, made by another process or thread)"
        if note["kind"] == "unreachable":
            return TokenEndpointUnreachableError(message, url=url, attempts=attempts)
        if note["kind"] == "refused":
            error, description = note.get("error"), note.get("error_description")
            return TokenRequestError(
                message,
                status_code=int(note["status_code"]),
                error=error if isinstance(error, str) else None,
                error_description=description if isinstance(description, str) else None,
                url=url,
                attempts=attempts,
            )
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError):
        return None
    return None
