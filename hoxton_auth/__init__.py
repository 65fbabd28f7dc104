"""Auth for requests and httpx against the HoxtonAI API.

``auth=HoxtonAuth(client_id, client_secret)`` is the whole change: tokens are
fetched, cached for every process of the user, renewed and retried inside.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._arguments import DEFAULT
from ._cache import CacheEntry, MemoryTokenCache, TokenCache
from ._errors import (
    CacheError,
    CacheLockTimeoutError,
    CacheUnavailableError,
    ConfigError,
    HoxtonAuthError,
    HoxtonAuthWarning,
    InsecureTransportError,
    InvalidGrantError,
    LoginError,
    LoginRequiredError,
    MfaRequiredError,
    NotLoggedInError,
    TokenEndpointUnreachableError,
    TokenRequestError,
)
from ._file_cache import FileTokenCache
from ._session import TokenInfo
from ._token import Token

if TYPE_CHECKING:
    from ._auth import (
        AuthorizationCodeAuth,
        ClientCredentialsAuth,
        HoxtonAuth,
        PasswordAuth,
        RefreshTokenAuth,
    )
    from ._redis_cache import RedisTokenCache

__version__ = "0.2.0.dev0"

__all__ = [
    "DEFAULT",
    "AuthorizationCodeAuth",
    "CacheEntry",
    "CacheError",
    "CacheLockTimeoutError",
    "CacheUnavailableError",
    "ClientCredentialsAuth",
    "ConfigError",
    "FileTokenCache",
    "HoxtonAuth",
    "HoxtonAuthError",
    "HoxtonAuthWarning",
    "InsecureTransportError",
    "InvalidGrantError",
    "LoginError",
    "LoginRequiredError",
    "MemoryTokenCache",
    "MfaRequiredError",
    "NotLoggedInError",
    "PasswordAuth",
    "RedisTokenCache",
    "RefreshTokenAuth",
    "Token",
    "TokenCache",
    "TokenEndpointUnreachableError",
    "TokenInfo",
    "TokenRequestError",
    "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())


_AUTH_CLASSES = frozenset(
    {
        "AuthorizationCodeAuth",
        "ClientCredentialsAuth",
        "HoxtonAuth",
        "PasswordAuth",
        "RefreshTokenAuth",
    }
)


def __getattr__(name: str) -> Any:
    # The auth classes are imported on first use: they subclass requests' and
    # httpx's base classes, and `import requests, httpx` costs +228 ms of CPU
    # over `python -c pass` (48 ms) here (getrusage of 20 runs, CPython 3.11,
    # shared 2-core machine; ~117 ms idle, README figure 3), while the CLI
    # answering from the cache (`hoxton-auth token`) needs neither (issue 15).
    if name in _AUTH_CLASSES:
        from . import _auth

        value: Any = getattr(_auth, name)
        globals()[name] = value  # later lookups skip this function
        return value
    # RedisTokenCache is imported on first use, so that `import hoxton_auth`
    # never imports redis-py (an optional extra: `hoxton-auth[redis]`).
    if name == "RedisTokenCache":
        from ._redis_cache import RedisTokenCache

        return RedisTokenCache
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
