"""``HoxtonAuth.login``: the browser flow, driven end to end by a fake browser.

The fake browser (``tests/fake_browser.py``) is a real process started by
``webbrowser``: it GETs the ``/authorize`` URL of the local test server and
follows the redirect to our loopback callback, as a user who approves would.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import webbrowser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from conftest import pkce_challenge

from hoxton_auth import (
    AuthorizationCodeAuth,
    ConfigError,
    HoxtonAuth,
    HoxtonAuthError,
    LoginError,
)
from hoxton_auth._auth import LOGIN_SCOPE
from hoxton_auth._config import ClientConfig
from hoxton_auth._grants import authorize_url
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
    # Any free port: the fixed default ports are shared with every other test run.
    kwargs.setdefault("port", 0)
    return HoxtonAuth.login(
        kwargs.pop("client_id", PUBLIC_CLIENT_ID), domain=server.domain, **kwargs
    )


def session_of(server: AuthServer) -> AuthorizationCodeAuth:
    """What a later program builds to use the login's tokens."""
    return AuthorizationCodeAuth(PUBLIC_CLIENT_ID, scope=LOGIN_SCOPE, domain=server.domain)


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
    assert pkce_challenge(exchange["code_verifier"]) == authorize["code_challenge"]

    (visit,) = browser.visits()
    assert visit["status"] == 200
    assert "You can close this tab" in visit["text"]

    response = requests.get(hoxton_auth_server.api_url, auth=auth, timeout=30)
    assert response.status_code == 200
    assert hoxton_auth_server.count() == 1  # the login's token was used, not a new one


def test_the_authorize_url_carries_the_organization() -> None:
    # Auth0 logs the user in to an Organization only when /authorize names it.
    with_org = ClientConfig("cid", organization="org_abc123")
    query = parse_qs(urlsplit(authorize_url(with_org, "http://127.0.0.1:1/cb", "s", "c")).query)
    assert query["organization"] == ["org_abc123"]
    without = authorize_url(ClientConfig("cid"), "http://127.0.0.1:1/cb", "s", "c")
    assert "organization" not in parse_qs(urlsplit(without).query)


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


def test_state_mismatch_is_refused_and_the_login_waits_on(
    hoxton_auth_server: AuthServer, browser: FakeBrowser
) -> None:
    browser.mode("tamper-state")

    with pytest.raises(LoginError, match=r"within 1s \(1 redirect\(s\) with a wrong"):
        login(hoxton_auth_server, timeout=1.0)

    assert hoxton_auth_server.count() == 0  # the forged code was never exchanged
    (visit,) = browser.visits()
    assert visit["status"] == 400
    assert "did not match this login" in visit["text"]


def test_a_stray_callback_does_not_abort_the_login(
    hoxton_auth_server: AuthServer, browser: FakeBrowser
) -> None:
    browser.mode("forge-then-follow")  # wrong state, then no state, then the real redirect

    auth = login(hoxton_auth_server)

    (visit,) = browser.visits()
    assert visit["forged"] == [400, 400]
    assert visit["status"] == 200
    assert hoxton_auth_server.count("authorization_code") == 1
    assert auth.get_token()


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
        with pytest.raises(LoginError, match=r"cannot listen for the redirect: port \d+ is busy"):
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


# -- callback ports -----------------------------------------------------------------------


def _free_ports(count: int) -> tuple[list[socket.socket], list[int]]:
    """``count`` distinct ports, each held by a listening socket until closed."""
    held = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        held.append(sock)
    return held, [s.getsockname()[1] for s in held]


def test_busy_default_ports_fall_back_to_the_next(
    hoxton_auth_server: AuthServer, browser: FakeBrowser, monkeypatch: pytest.MonkeyPatch
) -> None:
    held, ports = _free_ports(3)
    held[2].close()  # the third is free again: the login must end up there
    monkeypatch.setattr("hoxton_auth._login.LOGIN_PORTS", tuple(ports))
    monkeypatch.delenv("HOXTON_LOGIN_PORT", raising=False)
    try:
        login(hoxton_auth_server, port=None)
    finally:
        for sock in held[:2]:
            sock.close()

    (authorize,) = hoxton_auth_server.authorize_requests
    assert authorize["redirect_uri"] == f"http://127.0.0.1:{ports[2]}/callback"


def test_all_ports_busy_names_the_callback_urls_to_register(
    hoxton_auth_server: AuthServer, browser: FakeBrowser, monkeypatch: pytest.MonkeyPatch
) -> None:
    held, ports = _free_ports(3)
    monkeypatch.setattr("hoxton_auth._login.LOGIN_PORTS", tuple(ports))
    monkeypatch.delenv("HOXTON_LOGIN_PORT", raising=False)
    try:
        with pytest.raises(LoginError, match="every callback port is busy") as caught:
            login(hoxton_auth_server, port=None)
    finally:
        for sock in held:
            sock.close()

    for port in ports:
        assert f"http://127.0.0.1:{port}/callback" in str(caught.value)
    assert browser.visits() == []


def test_the_default_ports_are_fixed_and_documented() -> None:
    from hoxton_auth._login import LOGIN_PORTS

    assert LOGIN_PORTS[0] == 8765
    guide = Path(__file__).parents[1] / "docs" / "how-to" / "notebooks.md"
    text = guide.read_text(encoding="utf-8")
    for url in (f"http://127.0.0.1:{port}/callback" for port in LOGIN_PORTS):
        assert url in text


def test_login_port_variable(
    hoxton_auth_server: AuthServer, browser: FakeBrowser, monkeypatch: pytest.MonkeyPatch
) -> None:
    held, (port,) = _free_ports(1)
    held[0].close()
    monkeypatch.setenv("HOXTON_LOGIN_PORT", str(port))

    login(hoxton_auth_server, port=None)

    (authorize,) = hoxton_auth_server.authorize_requests
    assert authorize["redirect_uri"] == f"http://127.0.0.1:{port}/callback"


@pytest.mark.parametrize("value", ["-1", "65536", "http"])
def test_a_bad_login_port_variable_is_a_config_error(
    hoxton_auth_server: AuthServer, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("HOXTON_LOGIN_PORT", value)
    with pytest.raises(ConfigError, match="HOXTON_LOGIN_PORT"):
        login(hoxton_auth_server, port=None)


@pytest.mark.parametrize("port", [-1, 65536, 2**70, "8765", True])
def test_a_bad_port_is_a_config_error(hoxton_auth_server: AuthServer, port: Any) -> None:
    with pytest.raises(ConfigError, match="port must be an integer"):
        login(hoxton_auth_server, port=port)


def test_localhost_binds_both_loopback_addresses(
    hoxton_auth_server: AuthServer, browser: FakeBrowser
) -> None:
    """A squatter on [::1]:PORT must not get the code: --localhost refuses that port."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    squatter = socket.socket(socket.AF_INET6)
    try:
        squatter.bind(("::1", 0))
    except OSError:
        squatter.close()
        pytest.skip("no IPv6 loopback")
    squatter.listen()
    port = squatter.getsockname()[1]
    try:
        with pytest.raises(LoginError, match=f"port {port} is busy"):
            login(hoxton_auth_server, port=port, redirect_host="localhost")
    finally:
        squatter.close()
    assert browser.visits() == []


def test_prompt_login_is_sent(hoxton_auth_server: AuthServer, browser: FakeBrowser) -> None:
    login(hoxton_auth_server, prompt="login")

    (authorize,) = hoxton_auth_server.authorize_requests
    assert authorize["prompt"] == "login"


def test_a_bad_prompt_is_a_config_error(hoxton_auth_server: AuthServer) -> None:
    with pytest.raises(ConfigError, match="prompt"):
        login(hoxton_auth_server, prompt="again")


# -- the device flow ------------------------------------------------------------------


def approve_soon(server: AuthServer, **kwargs: Any) -> threading.Thread:
    """Approve the next device code from another thread, as the user on their phone."""

    def approve() -> None:
        server.approve_device(server.wait_for_device_code(timeout=30), **kwargs)

    thread = threading.Thread(target=approve, daemon=True)
    thread.start()
    return thread


def test_device_login_end_to_end(
    hoxton_auth_server: AuthServer, capsys: pytest.CaptureFixture[str]
) -> None:
    hoxton_auth_server.device_interval = 0.05
    approver = approve_soon(hoxton_auth_server)

    auth = login(hoxton_auth_server, device=True)
    approver.join()

    assert isinstance(auth, AuthorizationCodeAuth)
    assert hoxton_auth_server.authorize_requests == []  # no browser step
    assert {r["grant_type"] for r in hoxton_auth_server.token_requests} == {
        "urn:ietf:params:oauth:grant-type:device_code"
    }
    token = auth.get_token()
    assert requests.get(hoxton_auth_server.api_url, auth=auth, timeout=10).status_code == 200
    # The tokens are where a browser login's are: a later program finds them.
    assert session_of(hoxton_auth_server).get_token() == token
    err = capsys.readouterr().err
    assert f"{hoxton_auth_server.domain}/activate" in err
    assert "/activate?user_code=" in err
    assert re.search(r"enter the code:\s+[A-Z]{4}-[A-Z]{4}", err)


def test_device_login_as_another_user(hoxton_auth_server: AuthServer) -> None:
    import jwt

    hoxton_auth_server.device_interval = 0.05
    hoxton_auth_server.add_user("other@example.com", "pw-of-the-other-user")
    approve_soon(hoxton_auth_server, username="other@example.com")
    first = login(hoxton_auth_server, device=True).get_token()
    approve_soon(hoxton_auth_server)
    second = login(hoxton_auth_server, device=True).get_token()

    def subject(token: str) -> str:
        claims = jwt.decode(token, options={"verify_signature": False})
        return str(claims["sub"])

    assert subject(first) != subject(second)
    # A device login is the logged-in session too: the second replaced the
    # first, whose refresh token was revoked, and a plain object finds it.
    assert len(hoxton_auth_server.revoke_requests) == 1
    found = AuthorizationCodeAuth(PUBLIC_CLIENT_ID, domain=hoxton_auth_server.domain)
    assert found.get_token() == second


@pytest.mark.parametrize(
    ("control", "message"),
    [("deny_device", "the login was denied"), ("expire_device", "device code expired")],
)
def test_device_login_denied_or_expired(
    hoxton_auth_server: AuthServer, control: str, message: str
) -> None:
    hoxton_auth_server.device_interval = 0.05

    def act() -> None:
        getattr(hoxton_auth_server, control)(hoxton_auth_server.wait_for_device_code(30))

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    with pytest.raises(LoginError, match=message):
        login(hoxton_auth_server, device=True)
    thread.join()
    assert session_of(hoxton_auth_server).cache.entries() == {}


def test_device_polling_waits_the_interval_and_slows_down(
    hoxton_auth_server: AuthServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sleep that only records: the server sees polls too fast and says slow_down."""
    from hoxton_auth._auth import run_login
    from hoxton_auth._login import LoginOptions

    hoxton_auth_server.device_interval = 1
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            hoxton_auth_server.approve_device()

    auth = run_login(
        PUBLIC_CLIENT_ID,
        scope=LOGIN_SCOPE,
        domain=hoxton_auth_server.domain,
        options=LoginOptions(device=True, sleep=sleep),
    )

    # pending after the first wait; the second poll came too fast: slow_down, 1 + 5 s.
    assert waits == [1.0, 1.0, 6.0]
    assert hoxton_auth_server.device_polls() == 3
    assert auth.get_token()
    # Not a terminal: plain lines, no carriage-return countdown.
    err = capsys.readouterr().err
    assert "Waiting for the login to be approved" in err
    assert "\r" not in err


class _Mortal:
    """An object that can have a ``weakref.finalize``."""


def test_ctrl_c_dropped_in_a_finalizer_still_ends_a_device_login(
    hoxton_auth_server: AuthServer,
) -> None:
    """CPython drops a KeyboardInterrupt raised in a finalizer ("Exception ignored in");
    each poll runs one (urllib3 closing a pool), so Ctrl-C often landed there and the
    login polled on to its timeout (``test_interrupted_login_exits_130`` hung)."""
    import weakref

    from hoxton_auth._auth import run_login
    from hoxton_auth._login import LoginOptions

    hoxton_auth_server.device_interval = 1
    waits: list[float] = []
    hook = sys.unraisablehook

    def ctrl_c() -> None:
        raise KeyboardInterrupt

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:
            weakref.finalize(_Mortal(), ctrl_c)  # dies at once: Ctrl-C inside its finalizer
        elif len(waits) == 3:
            hoxton_auth_server.approve_device()  # without the fix the login would succeed

    with pytest.raises(KeyboardInterrupt):
        run_login(
            PUBLIC_CLIENT_ID,
            scope=LOGIN_SCOPE,
            domain=hoxton_auth_server.domain,
            options=LoginOptions(device=True, sleep=sleep),
        )

    assert waits == [1.0]  # the next wait raised it
    assert hoxton_auth_server.device_polls() == 1
    assert sys.unraisablehook is hook  # the login's own hook is gone


def test_device_code_never_shown_or_logged(
    hoxton_auth_server: AuthServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    hoxton_auth_server.device_interval = 0.05
    approve_soon(hoxton_auth_server)
    auth = login(hoxton_auth_server, device=True)

    (request,) = [r for r in hoxton_auth_server.token_requests if "device_code" in r][-1:]
    device_code = request["device_code"]
    out, err = capsys.readouterr()
    for text in (out, err, caplog.text, repr(auth)):
        assert device_code not in text
        assert auth.get_token() not in text


@pytest.mark.parametrize(
    ("environ", "platform", "expected"),
    [
        ({}, "linux", False),
        ({"DISPLAY": ":0"}, "linux", True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
        ({"DISPLAY": ":0", "SSH_CONNECTION": "10.0.0.1 5 10.0.0.2 22"}, "linux", False),
        ({"SSH_TTY": "/dev/pts/1"}, "darwin", False),
        ({}, "darwin", True),
        ({}, "win32", True),
        ({"BROWSER": "lynx", "SSH_TTY": "/dev/pts/1"}, "linux", True),
    ],
)
def test_browser_available(environ: dict[str, str], platform: str, expected: bool) -> None:
    from hoxton_auth._login import browser_available

    assert browser_available(environ, platform) is expected


def test_a_headless_machine_logs_in_with_a_device_code(
    hoxton_auth_server: AuthServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSH_CONNECTION", "192.0.2.1 50000 192.0.2.2 22")
    hoxton_auth_server.device_interval = 0.05
    approve_soon(hoxton_auth_server)

    login(hoxton_auth_server).get_token()  # device=None: chosen from the environment

    assert hoxton_auth_server.authorize_requests == []
    assert "No browser can be opened here" in capsys.readouterr().err


def test_the_browser_flow_can_be_forced_on_a_headless_machine(
    hoxton_auth_server: AuthServer, browser: FakeBrowser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSH_CONNECTION", "192.0.2.1 50000 192.0.2.2 22")
    monkeypatch.delenv("BROWSER")

    login(hoxton_auth_server, device=False)

    assert len(hoxton_auth_server.authorize_requests) == 1


class _Terminal(io.StringIO):
    """stderr as a terminal: the device login shows a live countdown there."""

    def isatty(self) -> bool:
        return True


def test_device_login_shows_a_countdown_on_a_terminal(
    hoxton_auth_server: AuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hoxton_auth._auth import run_login
    from hoxton_auth._login import LoginOptions

    hoxton_auth_server.device_interval = 2.5
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            hoxton_auth_server.approve_device()

    run_login(
        PUBLIC_CLIENT_ID,
        scope=LOGIN_SCOPE,
        domain=hoxton_auth_server.domain,
        options=LoginOptions(device=True, sleep=sleep),
    )

    assert waits == [1.0, 1.0, 0.5]  # one 2.5 s wait, in steps of at most a second
    lines = terminal.getvalue()
    assert re.search(r"\rWaiting for approval of [A-Z]{4}-[A-Z]{4}: 4:\d\d left", lines)
    assert "Waiting for the login to be approved" not in lines
