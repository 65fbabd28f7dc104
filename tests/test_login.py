"""``HoxtonAuth.login``: the browser flow, driven end to end by a fake browser.

The fake browser (``tests/fake_browser.py``) is a real process started by
``webbrowser``: it GETs the ``/authorize`` URL of the local test server and
follows the redirect to our loopback callback, as a user who approves would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import webbrowser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from hoxton_auth import (
    AuthorizationCodeAuth,
    ConfigError,
    HoxtonAuth,
    HoxtonAuthError,
    LoginError,
)
from hoxton_auth._auth import LOGIN_SCOPE
from hoxton_auth.testing import DEFAULT_CLIENT_ID, PUBLIC_CLIENT_ID, AuthServer


class FakeBrowser:
    """Controls the fake browser process and reads what it did."""

    def __init__(self, command: Path, log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.command = command
        self.log = log
        self._monkeypatch = monkeypatch

    def mode(self, mode: str) -> None:
        # Read by the browser process, which inherits os.environ when started.
        self._monkeypatch.setenv("FAKE_BROWSER_MODE", mode)

    def visits(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]


@pytest.fixture
def browser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_browser_command: Path
) -> FakeBrowser:
    """$BROWSER is the fake browser; it is also registered first with webbrowser.

    webbrowser reads $BROWSER once per process, so a test run where something
    used webbrowser earlier would ignore our variable: the registration (a
    public webbrowser API) makes these in-process tests independent of that.
    A fresh process honouring $BROWSER alone is tested separately below.
    """
    command = fake_browser_command
    log = tmp_path / "browser.log"
    monkeypatch.setenv("BROWSER", str(command))
    monkeypatch.setenv("FAKE_BROWSER_LOG", str(log))
    monkeypatch.setenv("FAKE_BROWSER_MODE", "follow")
    webbrowser.register(
        "hoxton-auth-test-browser", None, webbrowser.GenericBrowser(str(command)), preferred=True
    )
    return FakeBrowser(command, log, monkeypatch)


def login(server: AuthServer, **kwargs: Any) -> AuthorizationCodeAuth:
    kwargs.setdefault("timeout", 60.0)
    return HoxtonAuth.login(
        kwargs.pop("client_id", PUBLIC_CLIENT_ID), domain=server.domain, **kwargs
    )


def session_of(server: AuthServer) -> AuthorizationCodeAuth:
    """What a later program builds to use the login's tokens."""
    return AuthorizationCodeAuth(PUBLIC_CLIENT_ID, scope=LOGIN_SCOPE, domain=server.domain)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def test_login_end_to_end(hoxton_auth_server: AuthServer, browser: FakeBrowser) -> None:
    auth = login(hoxton_auth_server)

    assert isinstance(auth, AuthorizationCodeAuth)
    (authorize,) = hoxton_auth_server.authorize_requests
    assert authorize["response_type"] == "code"
    assert authorize["client_id"] == PUBLIC_CLIENT_ID
    redirect = urlsplit(authorize["redirect_uri"])
    assert (redirect.scheme, redirect.hostname, redirect.path) == ("http", "127.0.0.1", "/callback")
    assert redirect.port is not None
    assert authorize["scope"] == LOGIN_SCOPE
    assert authorize["audience"] == "https://api.hoxton.cloud"
    assert len(authorize["state"]) >= 32
    assert authorize["code_challenge_method"] == "S256"

    (exchange,) = hoxton_auth_server.token_requests
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["redirect_uri"] == authorize["redirect_uri"]
    assert 43 <= len(exchange["code_verifier"]) <= 128  # RFC 7636 section 4.1
    assert s256(exchange["code_verifier"]) == authorize["code_challenge"]

    (visit,) = browser.visits()
    assert visit["status"] == 200
    assert "You can close this tab" in visit["text"]

    response = requests.get(hoxton_auth_server.api_url, auth=auth, timeout=30)
    assert response.status_code == 200
    assert hoxton_auth_server.count() == 1  # the login's token was used, not a new one


def test_each_login_has_its_own_state_and_verifier(
    hoxton_auth_server: AuthServer, browser: FakeBrowser
) -> None:
    login(hoxton_auth_server)
    login(hoxton_auth_server)

    first, second = hoxton_auth_server.authorize_requests
    assert first["state"] != second["state"]
    assert first["code_challenge"] != second["code_challenge"]


def test_tokens_land_in_the_cache_for_other_objects_and_processes(
    hoxton_auth_server: AuthServer, browser: FakeBrowser, isolated_cache: Path
) -> None:
    token = login(hoxton_auth_server).get_token()

    document = json.loads(isolated_cache.read_text(encoding="utf-8"))
    (entry,) = document["entries"].values()
    assert entry["meta"]["client_id"] == PUBLIC_CLIENT_ID
    assert entry["meta"]["grant"] == "login"
    assert entry["meta"]["subject"] == "login"
    assert entry["meta"]["scope"] == ""  # the logged-in session, whatever the scope
    assert entry["token"]["access_token"] == token
    assert entry["token"]["refresh_token"]  # offline_access is in the default scope

    later = AuthorizationCodeAuth(
        PUBLIC_CLIENT_ID, scope=LOGIN_SCOPE, domain=hoxton_auth_server.domain
    )
    assert later.get_token() == token

    script = textwrap.dedent(
        """
        import sys
        from hoxton_auth import AuthorizationCodeAuth
        auth = AuthorizationCodeAuth(sys.argv[1], scope=sys.argv[2], domain=sys.argv[3])
        first = auth.get_token()
        auth.invalidate()  # the next token must come from the login's refresh token
        second = auth.get_token()
        print(first == sys.argv[4], second != first)
        """
    )
    args = [PUBLIC_CLIENT_ID, LOGIN_SCOPE, hoxton_auth_server.domain, token]
    result = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]
    assert hoxton_auth_server.count("authorization_code") == 1
    assert hoxton_auth_server.count("refresh_token") == 1


def test_a_new_login_replaces_the_cached_session(
    hoxton_auth_server: AuthServer, browser: FakeBrowser
) -> None:
    first = login(hoxton_auth_server).get_token()
    second = login(hoxton_auth_server).get_token()

    assert second != first
    assert hoxton_auth_server.count("authorization_code") == 2
    later = AuthorizationCodeAuth(
        PUBLIC_CLIENT_ID, scope=LOGIN_SCOPE, domain=hoxton_auth_server.domain
    )
    assert later.get_token() == second


def test_state_mismatch_is_refused(hoxton_auth_server: AuthServer, browser: FakeBrowser) -> None:
    browser.mode("tamper-state")

    with pytest.raises(LoginError, match="state parameter"):
        login(hoxton_auth_server)

    assert hoxton_auth_server.count() == 0  # the forged code was never exchanged
    (visit,) = browser.visits()
    assert visit["status"] == 400
    assert "You can close this tab" in visit["text"]


def test_access_denied(hoxton_auth_server: AuthServer, browser: FakeBrowser) -> None:
    hoxton_auth_server.deny_authorization = True

    with pytest.raises(LoginError, match="access_denied: User did not authorize") as caught:
        login(hoxton_auth_server)

    assert isinstance(caught.value, HoxtonAuthError)
    assert hoxton_auth_server.count() == 0
    (visit,) = browser.visits()
    assert "Login failed" in visit["text"]


def test_timeout(
    hoxton_auth_server: AuthServer, browser: FakeBrowser, capsys: pytest.CaptureFixture[str]
) -> None:
    browser.mode("ignore")

    with pytest.raises(LoginError, match=r"no login redirect reached .* within 0.2s"):
        login(hoxton_auth_server, timeout=0.2)

    assert hoxton_auth_server.count() == 0
    assert len(browser.visits()) == 1  # the browser was started
    assert "/authorize?" in capsys.readouterr().err


def test_without_a_browser_the_url_is_printed(
    hoxton_auth_server: AuthServer, browser: FakeBrowser, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(LoginError, match="within"):
        login(hoxton_auth_server, open_browser=False, timeout=0.2)

    err = capsys.readouterr().err
    assert "Open this URL in a browser to log in" in err
    assert f"{hoxton_auth_server.domain}/authorize?response_type=code" in err
    assert browser.visits() == []


def test_noise_on_the_callback_server_is_ignored(
    hoxton_auth_server: AuthServer, browser: FakeBrowser
) -> None:
    browser.mode("stray-then-follow")  # /callback without parameters, then /favicon.ico

    login(hoxton_auth_server).get_token()

    assert hoxton_auth_server.count("authorization_code") == 1


def test_localhost_redirect_uri(hoxton_auth_server: AuthServer, browser: FakeBrowser) -> None:
    login(hoxton_auth_server, redirect_host="localhost")

    (authorize,) = hoxton_auth_server.authorize_requests
    assert authorize["redirect_uri"].startswith("http://localhost:")
    assert authorize["redirect_uri"].endswith("/callback")


def test_port_in_use(hoxton_auth_server: AuthServer, browser: FakeBrowser) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(LoginError, match=r"cannot listen on 127\.0\.0\.1"):
            login(hoxton_auth_server, port=taken.getsockname()[1])

    assert browser.visits() == []


def test_confidential_client_without_its_secret(
    hoxton_auth_server: AuthServer, browser: FakeBrowser
) -> None:
    with pytest.raises(LoginError, match="refused the authorization code: invalid_client"):
        login(hoxton_auth_server, client_id=DEFAULT_CLIENT_ID)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"redirect_host": "example.com"}, "redirect_host"),
        ({"timeout": 0}, "timeout"),
        ({"code": "abc"}, "code"),
        ({"username": "u"}, "username"),
        ({"audience": ""}, "audience"),
    ],
)
def test_bad_arguments_fail_before_any_browser(
    hoxton_auth_server: AuthServer, browser: FakeBrowser, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        login(hoxton_auth_server, **kwargs)

    assert browser.visits() == []
    assert hoxton_auth_server.authorize_requests == []


def test_no_secret_in_logs_or_output(
    hoxton_auth_server: AuthServer,
    browser: FakeBrowser,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)

    auth = login(hoxton_auth_server)
    token = auth.get_token()

    (exchange,) = hoxton_auth_server.token_requests
    secrets = [exchange["code"], exchange["code_verifier"], token]
    captured = capsys.readouterr()
    for secret in secrets:
        assert secret not in caplog.text
        assert secret not in captured.err + captured.out
        assert secret not in repr(auth)


def test_a_fresh_process_honours_browser_variable(
    hoxton_auth_server: AuthServer, tmp_path: Path, fake_browser_command: Path
) -> None:
    command = fake_browser_command
    log = tmp_path / "browser.log"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(BROWSER=str(command), FAKE_BROWSER_LOG=str(log), FAKE_BROWSER_MODE="follow")
    script = (
        "import sys; from hoxton_auth import HoxtonAuth; "
        "a = HoxtonAuth.login(sys.argv[1], domain=sys.argv[2], timeout=60); "
        "print(a.get_token())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, PUBLIC_CLIENT_ID, hoxton_auth_server.domain],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert len(log.read_text(encoding="utf-8").splitlines()) == 1
    later = AuthorizationCodeAuth(
        PUBLIC_CLIENT_ID, scope=LOGIN_SCOPE, domain=hoxton_auth_server.domain
    )
    assert later.get_token() == result.stdout.strip()
