"""Fixtures shared by every test module.

Every test gets its own cache location: nothing ever touches the real user's
token cache, and no test sees another's tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import subprocess

    from _worker import Worker

    from hoxton_auth.testing import AuthServer

# The package's own pytest plugin (the ``hoxton_auth_server`` fixture) loads
# here, not through its ``pytest11`` entry point (``-p no:hoxton_auth`` in
# pyproject.toml): entry points load before pytest-cov starts measuring, in
# every xdist worker, so ``hoxton_auth`` would be imported unmeasured and its
# module-level lines missed (88% instead of the real figure); conftest files
# load after.
pytest_plugins = ["hoxton_auth.testing.pytest_plugin"]

#: The redirect URI the test server's clients accept in these tests (any loopback URL).
REDIRECT_URI = "http://127.0.0.1:8765/callback"
#: A scope that gets a refresh token.
OFFLINE = "openid offline_access"


def pkce_challenge(verifier: str) -> str:
    """The S256 PKCE challenge of ``verifier`` (RFC 7636 section 4.2)."""
    import base64
    import hashlib

    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_code(
    server: AuthServer,
    *,
    scope: str = OFFLINE,
    client_id: str | None = None,
    verifier: str | None = None,
    username: str | None = None,
    redirect_uri: str = REDIRECT_URI,
) -> str:
    """A code from the test server's ``/authorize``, as a browser brings it back.

    ``username`` picks the user (``login_hint``); ``verifier`` adds its PKCE challenge.
    """
    from urllib.parse import parse_qsl, urlsplit

    # requests, not httpx: httpcore's DEBUG trace logs the Location header,
    # code included, and test_auth checks that no log line holds a secret.
    import requests

    from hoxton_auth.testing import AUDIENCE, DEFAULT_CLIENT_ID

    params = {
        "response_type": "code",
        "client_id": client_id or DEFAULT_CLIENT_ID,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "audience": AUDIENCE,  # else Auth0 (and the test server) issue an opaque token
        "state": "s1",
    }
    if username is not None:
        params["login_hint"] = username
    if verifier is not None:
        params["code_challenge"] = pkce_challenge(verifier)
        params["code_challenge_method"] = "S256"
    url = f"{server.domain}/authorize"
    with requests.get(url, params=params, allow_redirects=False, timeout=30) as response:
        assert response.status_code == 302, response.text
        query = dict(parse_qsl(urlsplit(response.headers["Location"]).query))
    assert "code" in query, query
    return query["code"]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``$HOXTON_AUTH_CACHE`` and ``$HOXTON_AUTH_LOGIN_KEY`` at fresh files; clear
    other HOXTON_ variables."""
    path = tmp_path / "cache" / "tokens.json"
    for name in (
        "HOXTON_CLIENT_ID",
        "HOXTON_CLIENT_SECRET",
        "HOXTON_USERNAME",
        "HOXTON_PASSWORD",
        "HOXTON_REFRESH_TOKEN",
        "HOXTON_SCOPE",
        "HOXTON_AUDIENCE",
        "HOXTON_AUTH_DOMAIN",
        "HOXTON_PRIVATE_KEY_FILE",
        "HOXTON_KEY_ID",
        "HOXTON_AUTH_SEAL_ACCESS_TOKENS",
        "HOXTON_AUTH_CACHE_KEY_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    # The suite stores plain text, as a machine without the keyring extra does
    # (the test extra installs it); tests/test_sealing.py and the keyring_home
    # fixture turn sealing on.
    monkeypatch.setenv("HOXTON_AUTH_SEALING", "off")
    monkeypatch.setenv("HOXTON_AUTH_CACHE", str(path))
    # The login key (issue 21) is private to each test too, never the real user's.
    monkeypatch.setenv("HOXTON_AUTH_LOGIN_KEY", str(tmp_path / "login-key" / "login.key"))
    return path


@pytest.fixture
def m2m(hoxton_auth_server: AuthServer) -> dict[str, str]:
    """The ``HOXTON_*`` variables of the test server's confidential client."""
    from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

    return {
        "HOXTON_AUTH_DOMAIN": hoxton_auth_server.domain,
        "HOXTON_CLIENT_ID": DEFAULT_CLIENT_ID,
        "HOXTON_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
    }


@pytest.fixture
def keyring_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A file-backed keyring (keyrings.alt's) private to this test, for this process and
    the workers it starts; sealing required. Returns the keyring's directory."""
    import keyring
    from keyrings.alt.file import PlaintextKeyring

    home = tmp_path / "keyring"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.setenv("HOXTON_AUTH_SEALING", "required")
    previous = keyring.get_keyring()
    keyring.set_keyring(PlaintextKeyring())
    try:
        yield home
    finally:
        keyring.set_keyring(previous)


#: HS256 key for test tokens. The library never verifies signatures (the API
#: does), so any key works; 32+ bytes keeps PyJWT from warning about its length.
TEST_JWT_KEY = "hoxton-auth-test-signing-key-not-a-secret-0123456789"


@pytest.fixture
def make_jwt() -> Callable[..., str]:
    """Return a function that mints an HS256 JWT with the given claims."""
    import jwt

    def mint(**claims: Any) -> str:
        return jwt.encode(claims, TEST_JWT_KEY, algorithm="HS256")

    return mint


@pytest.fixture
def fake_browser_command(tmp_path: Path) -> Path:
    """An executable for ``$BROWSER`` that runs ``tests/fake_browser.py`` (see its docstring).

    ``webbrowser`` runs ``$BROWSER`` as one program name, without arguments,
    so this interpreter and the script go into a small shell wrapper.
    """
    import sys

    if sys.platform == "win32":  # pragma: no cover
        pytest.skip("the fake browser wrapper is a POSIX shell script")
    script = Path(__file__).with_name("fake_browser.py")
    command = tmp_path / "fake-browser"
    command.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n', encoding="utf-8")
    command.chmod(0o755)
    return command


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody can create files in, root included.

    Mode 0500 for ordinary users; root ignores permission bits, so for root the
    directory gets the immutable attribute (``chattr +i``) instead. Skips when
    neither works (root without ``chattr`` or its capability).
    """
    import os
    import shutil
    import subprocess

    directory = tmp_path / "read-only"
    directory.mkdir()
    chattr = shutil.which("chattr")
    immutable = os.geteuid() == 0
    if immutable:
        if chattr is None or subprocess.run([chattr, "+i", str(directory)]).returncode:
            pytest.skip("root needs chattr +i for a read-only directory")
    else:
        directory.chmod(0o500)
    try:
        probe = directory / "probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip("could not make a read-only directory here")
        yield directory
    finally:
        if immutable:
            subprocess.run([str(chattr), "-i", str(directory)], check=True)
        else:
            directory.chmod(0o700)


@pytest.fixture
def warnings_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog at WARNING for the package logger."""
    import logging

    caplog.set_level(logging.WARNING, logger="hoxton_auth")
    return caplog


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB tmpfs, mounted for this test and unmounted after it.

    For full-disk tests (issue 11): ``fill`` it with :func:`fill_filesystem`.
    Skips, with the reason, where mounting is not permitted (not root, or no
    ``CAP_SYS_ADMIN`` in a container).
    """
    import shutil
    import subprocess
    import sys

    mount, umount = shutil.which("mount"), shutil.which("umount")
    if sys.platform != "linux" or mount is None or umount is None:  # pragma: no cover
        pytest.skip("tmpfs mounts need Linux with mount(8)")
    mount_point = tmp_path / "small-fs"
    mount_point.mkdir()
    mounted = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run([umount, "-l", str(mount_point)], check=True)


def fill_filesystem(directory: Path) -> Path:
    """Write a file in ``directory`` until its filesystem reports ENOSPC; return it."""
    import errno
    import os

    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 1):  # big steps, then fill the last block's bytes
            while True:
                try:
                    os.write(fd, bytes(size))
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


# -- subprocesses: the one harness (tests/_worker.py) ------------------------------


@pytest.fixture
def spawn() -> Iterator[Callable[[str, dict[str, Any]], Worker]]:
    """Start ``tests/_worker.py`` processes; every one is killed and reaped after the test."""
    from _worker import Worker

    workers: list[Worker] = []

    def start(command: str, args: dict[str, Any]) -> Worker:
        worker = Worker(command, args)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.close()


def release_together(workers: list[Worker]) -> list[Any]:
    """Wait until all are ready, release them at once, collect their results.

    The release line is the time of the release (``herd`` measures from it).
    """
    import time

    for worker in workers:
        worker.expect("ready")
    released_at = repr(time.time())
    for worker in workers:
        worker.send(released_at)
    results = [worker.read() for worker in workers]
    for worker in workers:
        assert worker.finish() == 0, worker.stderr()
    return results


# -- a real redis-server --------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _redis_binary() -> str:
    """The redis-server binary; skip (or fail in CI) when there is none."""
    import os
    import shutil

    binary = shutil.which("redis-server")
    if binary is not None:
        return binary
    reason = "redis-server is not installed (apt-get install redis-server)"
    if os.environ.get("HOXTON_TEST_REQUIRE_REDIS"):
        pytest.fail(f"{reason}, and $HOXTON_TEST_REQUIRE_REDIS is set")
    pytest.skip(f"{reason}; the Redis cache tests need a real server")


class RedisServer:
    """One ``redis-server`` on loopback, in its own directory, without persistence."""

    READY_LINE = "Ready to accept connections"
    STOP_TIMEOUT = 30.0

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (again, on the same port) and wait for its ready line."""
        import subprocess

        self.process = subprocess.Popen(
            [
                *(self.binary, "--bind", "127.0.0.1", "--port", str(self.port)),
                *("--dir", str(self.directory), "--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        seen = []
        for line in self.process.stdout:  # ends at EOF if the server dies
            seen.append(line)
            if self.READY_LINE in line:
                return
        self.process.wait()
        raise RuntimeError("redis-server did not start:\n" + "".join(seen[-20:]))

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=self.STOP_TIMEOUT)
            assert self.process.stdout is not None
            self.process.stdout.close()
            self.process = None


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis for the whole session: ``$HOXTON_TEST_REDIS_URL``, else our own.

    Skips without a ``redis-server`` binary, unless ``$HOXTON_TEST_REQUIRE_REDIS``
    is set (CI): then it fails. Tests share it, each under its own key prefix.
    """
    import os

    configured = os.environ.get("HOXTON_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    server = RedisServer(_redis_binary(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis this test alone uses, and may stop and start."""
    server = RedisServer(_redis_binary(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
