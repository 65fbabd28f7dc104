"""The degraded paths: what the token manager does when the cache itself fails.

* A lock not released in time (a stuck holder, STYLE section 5) never hangs
  us: a grant that is safe to repeat fetches without the cache, with a
  warning; anything that would refresh raises ``CacheLockTimeoutError`` (a
  ``CacheError``), whose message names the lock.
* A local cache that cannot be used (a read-only file, a path that is not a
  directory...) is replaced by memory for the rest of the process.
* A transient cache that is down (Redis: ``TokenCache.transient``) is not
  replaced: a grant that is safe to repeat fetches directly until it is back,
  a refresh never runs without it, and a token it failed to store is used anyway.

No refresh ever runs without the shared cache and its lock: a rotated refresh
token used twice makes Auth0 revoke the whole login. Calls that take a
degraded path still succeed, so its warnings are not repeated on every call:
once per location per process for the switch to memory, at most once a
minute per location for a cache that is down.
"""

from __future__ import annotations

import logging
import time

from ._cache import (
    CacheEntry,
    MemoryTokenCache,
    TokenCache,
)
from ._errors import CacheLockTimeoutError, CacheUnavailableError
from ._grants import Grant

__all__ = [
    "UNAVAILABLE_WARNING_INTERVAL",
    "check_fetch_without_cache",
    "fall_back_to_memory",
    "grant_without_lock",
    "warn_not_stored",
]

logger = logging.getLogger("hoxton_auth")

# A fleet whose Redis is down would otherwise log the same warning on every
# renewal of every auth object: once per cache location per this many seconds
# is enough. Keyed by repr (URL and prefix, no password): every auth object
# built from HOXTON_AUTH_CACHE=redis://... has a cache object of its own.
UNAVAILABLE_WARNING_INTERVAL = 60.0
_last_unavailable_warning: dict[str, float] = {}
_memory_fallback_warned: set[str] = set()


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
    logger.warning("%s; fetching a token without the cache", exc)
    return grant


def check_fetch_without_cache(
    cache: TokenCache,
    grant: Grant | None,
    seed_refresh_token: str | None,
    exc: CacheUnavailableError,
) -> None:
    """A transient cache is down: allow a direct fetch only for a repeatable grant.

    Not a switch to memory for good, as for a broken file cache: Redis comes
    back, and the next renewal should share tokens through it again. No
    refresh: the newest refresh token is in the unreachable cache, and an
    older one, used again, makes Auth0 revoke the whole login.

    Raises:
        CacheUnavailableError: The fetch would need a refresh token.
    """
    if seed_refresh_token is not None or grant is None or not grant.repeatable:
        raise CacheUnavailableError(
            f"{exc}; not refreshing without the shared cache, because a refresh "
            "token used twice makes Auth0 revoke the whole login"
        ) from exc
    _warn_unavailable(cache, "%s; fetching tokens directly until it is back", exc)


def warn_not_stored(cache: TokenCache, entry: CacheEntry, exc: CacheUnavailableError) -> None:
    """The token is in hand (the call succeeds) but the transient cache missed it."""
    if entry.token.refresh_token:
        # Not rate-limited: if the server rotated the refresh token, the
        # cache still holds the old one, and the next refresh may end the login.
        logger.warning("%s; a new refresh token could not be saved", exc)
    else:
        _warn_unavailable(cache, "%s; the new token was not shared", exc)


def fall_back_to_memory(exc: Exception) -> MemoryTokenCache:
    """The memory cache that replaces a local cache which cannot be used."""
    # One warning per unusable location per process, however many auth
    # objects (or renewals) run into it: the calls themselves still succeed.
    message = str(exc)
    if message in _memory_fallback_warned:
        logger.debug("%s; keeping tokens in memory for this process", message)
    else:
        _memory_fallback_warned.add(message)
        logger.warning("%s; keeping tokens in memory for this process", message)
    return MemoryTokenCache()


def _warn_unavailable(cache: TokenCache, message: str, *args: object) -> None:
    """WARNING at most once per interval per cache location, DEBUG in between."""
    now = time.monotonic()
    last = _last_unavailable_warning.get(repr(cache))
    if last is not None and now - last < UNAVAILABLE_WARNING_INTERVAL:
        logger.debug(message, *args)
        return
    _last_unavailable_warning[repr(cache)] = now
    logger.warning(message, *args)
