"""A local Auth0-compatible identity provider for tests and offline work.

Use it from pytest through the `hoxton_auth_server` fixture (plugin
`hoxton_auth.testing.pytest_plugin`), from code as a context manager::

    with AuthServer() as server:
        auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)

or from a shell with ``python -m hoxton_auth.testing serve``.

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
from hoxton_auth.testing._server import AuthServer

__all__ = [
    "AUDIENCE",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_PASSWORD",
    "DEFAULT_USERNAME",
    "PUBLIC_CLIENT_ID",
    "AuthServer",
]
