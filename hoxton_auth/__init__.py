"""Auth for requests and httpx against the HoxtonAI API.

``auth=HoxtonAuth(client_id, client_secret)`` is the whole change: tokens are
fetched, cached for every process of the user, renewed and retried inside.
"""

from __future__ import annotations

import importlib

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

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _cli.py)
if TYPE_CHECKING:
    from typing import Any

    from ._arguments import DEFAULT
    from ._auth import (
        AuthorizationCodeAuth,
        ClientCredentialsAuth,
        HoxtonAuth,
        LoginRequest,
        PasswordAuth,
        RefreshTokenAuth,
    )
    from ._cache import CacheEntry, MemoryTokenCache, TokenCache
    from ._file_cache import FileTokenCache
    from ._redis_cache import RedisTokenCache
    from ._session import TokenInfo
    from ._token import Token

__version__ = "0.2.0.dev1"

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
    "LoginRequest",
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

# Where each public name not imported above lives. They load on first use
# (PEP 562), each once: the auth classes subclass requests' and httpx's base
# classes, the caches and Token are dataclasses, and RedisTokenCache needs
# redis-py (an optional extra: `hoxton-auth[redis]`). A cached `hoxton-auth
# token` needs none of them (tests/test_imports.py, NOT_FOR_CLI_FAST_TOKEN;
# the cost: benchmarks/bench_cli.py).
_LAZY = {
    "DEFAULT": "_arguments",
    "AuthorizationCodeAuth": "_auth",
    "ClientCredentialsAuth": "_auth",
    "HoxtonAuth": "_auth",
    "PasswordAuth": "_auth",
    "RefreshTokenAuth": "_auth",
    "CacheEntry": "_cache",
    "MemoryTokenCache": "_cache",
    "TokenCache": "_cache",
    "FileTokenCache": "_file_cache",
    "RedisTokenCache": "_redis_cache",
    "TokenInfo": "_session",
    "Token": "_token",
    "LoginRequest": "_auth",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    if name != "RedisTokenCache":  # that one is looked up each time: redis may appear later
        globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
