"""pytest plugin: the `hoxton_auth_server` fixture.

Registered through the `pytest11` entry point `hoxton_auth`, so it loads in
every pytest run where hoxton-auth is installed. It therefore imports
nothing heavy at import time; the server (and PyJWT, cryptography) load only
when a test asks for the fixture.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from hoxton_auth.testing import AuthServer

__all__ = ["hoxton_auth_server"]

# The cache the developer's shell chose; a test that points HOXTON_AUTH_CACHE
# elsewhere before asking for the fixture keeps its own choice.
_SESSION_CACHE = os.environ.get("HOXTON_AUTH_CACHE")


@pytest.fixture
def hoxton_auth_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AuthServer]:
    """A started `hoxton_auth.testing.AuthServer` on a free loopback port.

    Each test gets a fresh server (fresh clients, users, tokens and logs);
    it is stopped, with all its connections closed, after the test. For the
    test's duration ``HOXTON_AUTH_CACHE`` points at a file in the test's
    ``tmp_path`` (unless the test already pointed it somewhere else), so the
    test tokens of auth objects with the default cache never reach the
    developer's real user cache.

    Yields:
        The running server; pass `server.domain` as `HoxtonAuth(domain=...)`.
    """
    from hoxton_auth.testing import AuthServer

    if os.environ.get("HOXTON_AUTH_CACHE") == _SESSION_CACHE:
        monkeypatch.setenv("HOXTON_AUTH_CACHE", str(tmp_path / "hoxton-auth" / "tokens.json"))
    server = AuthServer().start()
    try:
        yield server
    finally:
        server.stop()
