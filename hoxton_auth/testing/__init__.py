"""A local Auth0-compatible identity provider for tests and offline work.

Use it from pytest through the `hoxton_auth_server` fixture (plugin
`hoxton_auth.testing.pytest_plugin`), from code as a context manager::

    with AuthServer() as server:
        auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)

or from a shell with ``python -m hoxton_auth.testing serve``.

``cache_key``, ``cached_entry``, ``owner_meta`` and ``lock_timeout`` let a
test look at an auth object's cache entry without touching its internals.

Importing this package is cheap: PyJWT and cryptography load when a server
starts.
"""

from __future__ import annotations

from hoxton_auth.testing._constants import (
    AUDIENCE,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    PUBLIC_CLIENT_ID,
)
from hoxton_auth.testing._entries import cache_key, cached_entry, lock_timeout, owner_meta
from hoxton_auth.testing._server import AuthServer

__all__ = [
    "AUDIENCE",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_PASSWORD",
    "DEFAULT_USERNAME",
    "PUBLIC_CLIENT_ID",
    "AuthServer",
    "cache_key",
    "cached_entry",
    "lock_timeout",
    "owner_meta",
]
