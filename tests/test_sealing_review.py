"""Review of issue 24 part 1 (sealed refresh tokens): defects found, each as a test."""

from __future__ import annotations

import base64
import traceback
from collections.abc import Iterator
from typing import Any

import keyring
import pytest
from keyring.backends.fail import Keyring as FailKeyring

from hoxton_auth import (
    ConfigError,
    HoxtonAuth,
    RedisTokenCache,
)
from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer


@pytest.fixture
def server(hoxton_auth_server: AuthServer) -> AuthServer:
    return hoxton_auth_server


def refreshing(server: AuthServer, cache: Any, refresh_token: str) -> HoxtonAuth:
    auth: HoxtonAuth = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        refresh_token=refresh_token,
        domain=server.domain,
        cache=cache,
    )
    return auth


@pytest.fixture
def failing_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    keyring.set_keyring(FailKeyring())  # type: ignore[no-untyped-call]  # keyring: untyped
    try:
        yield
    finally:
        keyring.set_keyring(previous)


@pytest.mark.parametrize(
    ("url", "more", "error"),
    [
        ("redis://127.0.0.1:1/0", {"lock_timeout": 0}, ConfigError),
        ("redis://127.0.0.1:1/0", {"socket_timeout": -1}, ConfigError),
        ("nonsense://127.0.0.1/0", {}, ValueError),  # redis-py's own check of the URL
    ],
)
@pytest.mark.parametrize("given", ["text", "bytes"])
def test_redis_key_never_in_traceback_locals_when_another_argument_fails(
    url: str, more: dict[str, Any], error: type[Exception], given: str
) -> None:
    raw = b"S" * 32
    key: bytes | str = base64.b64encode(raw).decode() if given == "text" else raw
    with pytest.raises(error) as caught:
        RedisTokenCache(url, encryption_key=key, **more)
    shown = [str(caught.value), repr(caught.value)]
    for frame, _ in traceback.walk_tb(caught.value.__traceback__):
        if frame.f_code.co_filename != __file__:  # this test's frame holds the key given
            shown.extend(repr(value) for value in list(frame.f_locals.values()))
    for text in shown:
        assert "SSSS" not in text
        assert base64.b64encode(raw).decode()[:16] not in text
