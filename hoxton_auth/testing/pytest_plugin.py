"""pytest plugin: the `hoxton_auth_server` fixture.

Registered through the `pytest11` entry point `hoxton_auth`, so it loads in
every pytest run where hoxton-auth is installed. It therefore imports
nothing heavy at import time; the server (and PyJWT, cryptography) load only
when a test asks for the fixture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from hoxton_auth.testing import AuthServer

__all__ = ["hoxton_auth_server"]


@pytest.fixture
def hoxton_auth_server() -> Iterator[AuthServer]:
    """A started `hoxton_auth.testing.AuthServer` on a free loopback port.

    Each test gets a fresh server (fresh clients, users, tokens and logs);
    it is stopped, with all its connections closed, after the test.

    Yields:
        The running server; pass `server.domain` as `HoxtonAuth(domain=...)`.
    """
    from hoxton_auth.testing import AuthServer

    server = AuthServer().start()
    try:
        yield server
    finally:
        server.stop()
