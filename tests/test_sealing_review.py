"""Review of issue 24 part 1 (sealed refresh tokens): defects found, each as a test."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends.fail import Keyring as FailKeyring

from hoxton_auth import (
    CacheUnavailableError,
    ConfigError,
    FileTokenCache,
    HoxtonAuth,
    HoxtonAuthWarning,
    NotLoggedInError,
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


@contextlib.contextmanager
def no_keyring_here() -> Iterator[None]:
    """keyring as in a process that reaches no OS keyring (cron, SSH, a container)."""
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


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_a_process_without_the_keyring_never_refreshes_a_sealed_lineage_with_its_seed(
    server: AuthServer,
    isolated_cache: Path,
    keyring_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    seed = server.mint_refresh_token()
    desktop = refreshing(server, FileTokenCache(isolated_cache), seed)
    desktop.get_token()  # the rotated refresh token is sealed in the file
    desktop.invalidate()
    before = isolated_cache.read_bytes()
    # A cron job or an SSH session of the same user: no keyring reachable, sealing auto.
    monkeypatch.setenv("HOXTON_AUTH_SEALING", mode)
    with no_keyring_here():
        cron = refreshing(server, FileTokenCache(isolated_cache), seed)
        with pytest.raises(CacheUnavailableError, match="sealed and no OS keyring works"):
            cron.get_token()
    # Before: the entry was a miss, the seed (superseded) was sent, Auth0 revoked the
    # whole login, and the entry the desktop could still open was deleted.
    assert server.reuse_detected == 0
    assert server.count("refresh_token") == 1
    assert isolated_cache.read_bytes() == before
    monkeypatch.setenv("HOXTON_AUTH_SEALING", "required")
    assert refreshing(server, FileTokenCache(isolated_cache), seed).get_token()
    assert server.reuse_detected == 0


def test_two_spellings_of_one_cache_file_share_one_data_key(
    server: AuthServer, isolated_cache: Path, keyring_home: Path
) -> None:
    # One file, one lock, named two ways (a `..`, or a symlinked directory): one key.
    other_dir = isolated_cache.parent.parent / "elsewhere"
    other_dir.mkdir()
    (isolated_cache.parent.parent / "link").symlink_to(isolated_cache.parent)
    spellings = [
        other_dir / ".." / isolated_cache.parent.name / isolated_cache.name,
        isolated_cache.parent.parent / "link" / isolated_cache.name,
    ]
    seed = server.mint_refresh_token()
    first = refreshing(server, FileTokenCache(isolated_cache), seed)
    first.get_token()
    for spelling in spellings:
        first.invalidate()
        assert refreshing(server, FileTokenCache(spelling), seed).get_token()
    assert server.reuse_detected == 0
    assert server.count("refresh_token") == 3
    (entry,) = json.loads(isolated_cache.read_text())["entries"].values()
    assert isinstance(entry["token"]["refresh_token"], dict)


CHAINED_LOW_BACKENDS = """
import sys
import keyring
from keyring.backend import KeyringBackend

class SecondFileKeyring(KeyringBackend):
    '''Another backend below priority 1 (as keyrings.alt's EncryptedKeyring, 0.6).'''
    priority = 0.6
    kept = {}
    def get_password(self, service, username):
        return self.kept.get((service, username))
    def set_password(self, service, username, password):
        self.kept[(service, username)] = password
    def delete_password(self, service, username):
        self.kept.pop((service, username), None)

from hoxton_auth import CacheUnavailableError, FileTokenCache

chosen = keyring.get_keyring()
print(type(chosen).__name__, [type(b).__name__ for b in chosen.backends])
cache = FileTokenCache(sys.argv[1], sealing="required")
try:
    with cache.lock("0" * 32, 5):
        print("sealed: keys kept", len(SecondFileKeyring.kept))
except CacheUnavailableError as exc:
    print("refused:", exc)
"""


def test_a_chain_of_backends_below_priority_1_is_not_an_os_keyring(
    isolated_cache: Path, tmp_path: Path
) -> None:
    # With two such backends viable (keyrings.alt plus pycryptodome is enough), keyring
    # picks its chainer, whose own priority is 10: it passed as an OS keyring, and the
    # key went to the first chained backend (EncryptedKeyring prompts on the terminal).
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_KEYRING_BACKEND"}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    run = subprocess.run(
        [sys.executable, "-c", CHAINED_LOW_BACKENDS, str(isolated_cache)],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ChainerBackend ['SecondFileKeyring', 'PlaintextKeyring']")
    assert "refused:" in run.stdout
    assert "not an OS keyring" in run.stdout
    assert "sealed:" not in run.stdout


WITHOUT_CRYPTOGRAPHY = """
import sys, warnings
sys.modules["cryptography"] = None  # keyring installed (as many tools bring it), not the extra
from hoxton_auth import FileTokenCache

warnings.simplefilter("always")
cache = FileTokenCache(sys.argv[1])
print("mode", cache.sealing.mode)
with cache.lock("0" * 32, 5):
    cache.sealing.key_for_writing()  # what a write of a refresh token asks
import keyring
print("key made", keyring.get_password("hoxton-auth", "data key of " + sys.argv[1]) is not None)
"""


@pytest.mark.parametrize("mode", [None, "auto"])
def test_keyring_without_cryptography_makes_no_key_and_says_what_is_missing(
    isolated_cache: Path, keyring_home: Path, mode: str | None
) -> None:
    env = dict(os.environ)
    env.pop("HOXTON_AUTH_SEALING")
    if mode is not None:
        env["HOXTON_AUTH_SEALING"] = mode
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT_CRYPTOGRAPHY, str(isolated_cache)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    # The default is auto only with the extra (keyring and cryptography), as documented.
    assert f"mode {mode or 'off'}" in run.stdout
    assert "key made False" in run.stdout  # before: a key nothing here could use
    if mode == "auto":
        assert "sealing needs the cryptography package" in run.stderr
        assert "not a 32-byte key" not in run.stderr  # before: "delete it, then log in again"


def test_a_seed_refresh_token_is_never_resent_while_its_sealed_entry_is_unread(
    server: AuthServer, isolated_cache: Path, keyring_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = server.mint_refresh_token()
    refreshing(server, FileTokenCache(isolated_cache), seed).get_token()  # rotated, sealed
    before = isolated_cache.read_bytes()
    # The keyring lost the key (reset, or another machine): the entry does not open.
    keyring.delete_password("hoxton-auth", f"data key of {os.path.realpath(isolated_cache)}")

    auth = refreshing(server, FileTokenCache(isolated_cache), seed)
    with (
        pytest.warns(HoxtonAuthWarning, match="cannot be read"),
        pytest.raises(NotLoggedInError, match="would make Auth0 revoke the whole login") as caught,
    ):
        auth.get_token()

    assert seed not in str(caught.value)
    assert server.count("refresh_token") == 1  # the spent seed was not sent
    assert server.reuse_detected == 0
    assert isolated_cache.read_bytes() == before  # the entry waits for its key
    # A new refresh token is a new session: it works.
    assert refreshing(
        server, FileTokenCache(isolated_cache), server.mint_refresh_token()
    ).get_token()


@pytest.mark.redis
def test_a_seed_refresh_token_is_never_resent_while_its_redis_value_is_unread(
    server: AuthServer, redis_url: str, tmp_path: Path
) -> None:
    prefix = f"seed-{os.getpid()}-{tmp_path.name}:"
    seed = server.mint_refresh_token()
    fleet_key = os.urandom(32)
    first = RedisTokenCache(redis_url, prefix=prefix, encryption_key=fleet_key)
    refreshing(server, first, seed).get_token()
    # A host given another key (a rotation half done): the value does not open.
    other = RedisTokenCache(redis_url, prefix=prefix, encryption_key=os.urandom(32))
    with (
        pytest.warns(HoxtonAuthWarning, match="sealed with another key"),
        pytest.raises(NotLoggedInError),
    ):
        refreshing(server, other, seed).get_token()
    assert server.count("refresh_token") == 1
    assert server.reuse_detected == 0
    first.client.delete(*first.client.keys(prefix + "*"))


class SilentKeyring(KeyringBackend):
    """An OS keyring that never answers (a Secret Service waiting for an unlock
    prompt nobody sees) until ``answer`` is set."""

    priority = 5  # an OS keyring's: above keyring's threshold of 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # keyring is not typed here
        self.answer = threading.Event()

    def get_password(self, service: str, username: str) -> str | None:
        self.answer.wait(120)
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        self.answer.wait(120)

    def delete_password(self, service: str, username: str) -> None:
        self.answer.wait(120)


def test_a_keyring_that_never_answers_does_not_hold_the_cache(
    server: AuthServer, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    silent = SilentKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(silent)
    monkeypatch.setenv("HOXTON_AUTH_SEALING", "auto")
    try:
        auth = refreshing(server, FileTokenCache(isolated_cache), server.mint_refresh_token())
        with pytest.warns(HoxtonAuthWarning, match="did not answer within"):
            auth.get_token()  # after the keyring's timeout: plain text, with the reason
    finally:
        silent.answer.set()
        keyring.set_keyring(previous)
    (entry,) = json.loads(isolated_cache.read_text())["entries"].values()
    assert isinstance(entry["token"]["refresh_token"], str)
    assert server.reuse_detected == 0
