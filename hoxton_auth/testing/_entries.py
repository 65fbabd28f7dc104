"""What a test may look at in an auth object: its cache entry, its key, its lock wait.

These read an auth object's session for tests, so that tests need not reach
into private attributes; they never change the object, and they never send a
request. Nothing here reads a secret back: the key is a hash, the metadata
holds only salted verifiers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hoxton_auth import CacheEntry, HoxtonAuth, TokenCache

__all__ = ["cache_key", "cached_entry", "lock_timeout", "owner_meta"]


def cache_key(auth: HoxtonAuth) -> str:
    """The key of ``auth``'s entry in its cache: a hash of its identity, no secret in it.

    Two auth objects share cached tokens exactly when their keys are equal
    (and their credentials match the entry's verifier).

    Args:
        auth: Any auth object.

    Returns:
        The key under which ``auth`` reads and stores its tokens.

    Raises:
        LookupError: ``auth`` holds an authorization code not exchanged yet,
            which has no entry until the exchange names its user.
    """
    return auth._manager.key


def cached_entry(auth: HoxtonAuth, cache: TokenCache | None = None) -> CacheEntry | None:
    """The entry a cache holds under ``auth``'s key now, read without its lock.

    The entry is returned as stored: whether ``auth`` would serve its token
    (its owner, its expiry) is not checked.

    Args:
        auth: Any auth object.
        cache: The cache to read; default: the one ``auth`` uses (``auth.cache``).
            Pass another ``FileTokenCache`` of the same file to read it as
            another process would.

    Returns:
        The stored ``CacheEntry``, or ``None`` if there is none.

    Raises:
        LookupError: As ``cache_key``.
        CacheError: The cache could not be read.
    """
    return (auth.cache if cache is None else cache).load(cache_key(auth))


def owner_meta(auth: HoxtonAuth) -> dict[str, str]:
    """The metadata that marks a cache entry as ``auth``'s own, to plant a token.

    ``CacheEntry(token, owner_meta(auth))`` stored under ``cache_key(auth)`` is
    what another process of the same identity (same client, user and
    credentials) would have written, so ``auth`` serves that token. For
    credentials with a verifier it holds a freshly salted one, never the
    secret.

    Args:
        auth: An auth object whose entry exists (see ``cache_key``).

    Returns:
        A new dict, the caller's to change.
    """
    return auth._manager.identity.meta_for(None)


def lock_timeout(auth: HoxtonAuth) -> float:
    """How long ``auth`` waits for its cache entry's lock, in seconds.

    The cache's ``lock_wait_timeout`` if it has one, else long enough for
    another process to finish its own fetch, retries included
    (``retry_deadline + timeout`` plus a margin).

    Args:
        auth: Any auth object.
    """
    return auth._manager.entry.lock_timeout
