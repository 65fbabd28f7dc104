"""Auth for requests and httpx against the HoxtonAI API.

``auth=HoxtonAuth(client_id, client_secret)`` is the whole change: tokens are
fetched, cached for every process of the user, renewed and retried inside.
"""

from __future__ import annotations

import logging

from ._auth import (
    DEFAULT,
    AuthorizationCodeAuth,
    ClientCredentialsAuth,
    HoxtonAuth,
    PasswordAuth,
    RefreshTokenAuth,
)
from ._cache import CacheEntry, MemoryTokenCache, TokenCache
from ._errors import (
    CacheError,
    ConfigError,
    HoxtonAuthError,
    InvalidGrantError,
    LoginError,
    LoginRequiredError,
    TokenEndpointUnreachableError,
    TokenRequestError,
)
from ._file_cache import FileTokenCache
from ._token import Token

__version__ = "0.1.0"

__all__ = [
    "DEFAULT",
    "AuthorizationCodeAuth",
    "CacheEntry",
    "CacheError",
    "ClientCredentialsAuth",
    "ConfigError",
    "FileTokenCache",
    "HoxtonAuth",
    "HoxtonAuthError",
    "InvalidGrantError",
    "LoginError",
    "LoginRequiredError",
    "MemoryTokenCache",
    "PasswordAuth",
    "RefreshTokenAuth",
    "Token",
    "TokenCache",
    "TokenEndpointUnreachableError",
    "TokenRequestError",
    "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
