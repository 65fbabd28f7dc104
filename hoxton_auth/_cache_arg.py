"""The ``cache=`` argument: ``DEFAULT``, and the ``TokenCache`` each value stands for.

Shared by the auth classes and ``hoxton-auth status``, so that a path or a
``redis://`` URL means the same cache to both. ``RedisTokenCache`` is
imported only for a Redis URL: redis-py is an optional extra.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ._cache import MemoryTokenCache, TokenCache
from ._errors import ConfigError
from ._file_cache import FileTokenCache

__all__ = ["DEFAULT", "CacheArg", "resolve_cache"]


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()
"""The shared file cache (``FileTokenCache()``); the default of ``cache=``."""

_REDIS_SCHEMES = ("redis", "rediss", "unix")
# RFC 3986 scheme, then "://"; a Windows drive ("C:\\x", "C:/x") has no "//".
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")

CacheArg = TokenCache | str | os.PathLike[str] | None


def resolve_cache(cache: CacheArg) -> TokenCache:
    """Turn the ``cache=`` argument into a ``TokenCache``.

    Raises:
        ConfigError: If ``cache`` is of an unknown kind.
    """
    if cache is DEFAULT:
        configured = os.environ.get("HOXTON_AUTH_CACHE", "")
        return resolve_cache(configured) if configured else FileTokenCache()
    if cache is None:
        return MemoryTokenCache()
    if isinstance(cache, TokenCache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        location = os.fspath(cache)
        if location.startswith(tuple(s + "://" for s in _REDIS_SCHEMES)):
            from ._redis_cache import RedisTokenCache

            cache_from_url: TokenCache = RedisTokenCache(location)
            return cache_from_url
        scheme = _URL_SCHEME.match(location)
        if scheme is not None:  # "memcached://x" is no path: it would create ./memcached:/x
            raise ConfigError(
                f"cache {location!r} has the unknown scheme {scheme.group(1)!r}; "
                f"supported: a file path, {', '.join(s + '://' for s in _REDIS_SCHEMES)} "
                f"URLs, a TokenCache, or None"
            )
        return FileTokenCache(location)
    raise ConfigError(
        f"cache must be a TokenCache, a path, a redis:// URL or None, got {type(cache).__name__}"
    )
