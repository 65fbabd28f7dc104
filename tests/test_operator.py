"""Issue 22, an operator's day: exit statuses, containers, typos and hostile text.

Every test runs the installed console script (or an interpreter) as a real
subprocess against a real local server, a real closed port, a real silent
socket, a real uid without a passwd entry (``setpriv``) and a real ``env -i``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer

from hoxton_auth import ConfigError, HoxtonAuth, HoxtonAuthWarning
from hoxton_auth.testing import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    PUBLIC_CLIENT_ID,
    AuthServer,
)

CONSOLE_SCRIPT = Path(sys.executable).with_name("hoxton-auth")
ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x1b[31mFAKE PROMPT\u202e"


def _environment(env: dict[str, str]) -> dict[str, str]:
    full = {**os.environ, **env}
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "TERM"):  # no real browser
        full.pop(name, None)
    return full


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script, with the test's environment plus ``env``."""
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args],
        capture_output=True,
        text=True,
        env=_environment(env or {}),
        timeout=120,
    )


def assert_one_line_each(stderr: str) -> None:
    """Every line of stderr is one of ours: no traceback, no Python warning source line."""
    for line in stderr.splitlines():
        assert line.startswith("hoxton-auth: "), stderr
    assert "Traceback" not in stderr


@pytest.fixture
def public(hoxton_auth_server: AuthServer) -> dict[str, str]:
    return {
        "HOXTON_AUTH_DOMAIN": hoxton_auth_server.domain,
        "HOXTON_CLIENT_ID": PUBLIC_CLIENT_ID,
        "HOXTON_LOGIN_PORT": "0",
    }


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that refuses connections: bound, never listening, so nobody else takes it."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        yield closed.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        yield silent.getsockname()[1]


# -- 1. the exit statuses, one table ---------------------------------------------------


def _interrupted_login(public: dict[str, str], server: AuthServer) -> tuple[int, str, str]:
    server.device_interval = 0.05
    process = subprocess.Popen(
        [str(CONSOLE_SCRIPT), "login", "--device"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(public),
    )
    server.wait_for_device_code(timeout=60)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


EXIT_CASES: dict[str, tuple[int, Callable[..., Any], str]] = {
    "token": (0, lambda e, **_: run("token", env=e["m2m"]), ""),
    "login times out": (
        1,
        lambda e, **_: run("login", "--no-browser", "--timeout", "0.1", env=e["public"]),
        "within 0.1s",
    ),
    "no client id": (2, lambda e, **_: run("token"), "HOXTON_CLIENT_ID"),
    "empty domain": (
        2,
        lambda e, **_: run("token", env={**e["m2m"], "HOXTON_AUTH_DOMAIN": ""}),
        "domain is empty",
    ),
    "endpoint as domain": (
        2,
        lambda e, **_: run(
            "token", env={**e["m2m"], "HOXTON_AUTH_DOMAIN": "https://x.example/oauth/token"}
        ),
        "'https://x.example'",
    ),
    "not logged in": (4, lambda e, **_: run("token", env=e["public"]), "hoxton-auth login"),
    "connection refused": (
        5,
        lambda e, closed, **_: run(
            "token", env={**e["m2m"], "HOXTON_AUTH_DOMAIN": f"http://127.0.0.1:{closed}"}
        ),
        "could not reach",
    ),
    "silent server, --timeout": (
        5,
        lambda e, silent, **_: run(
            "token",
            "--timeout",
            "1",
            env={**e["m2m"], "HOXTON_AUTH_DOMAIN": f"http://127.0.0.1:{silent}"},
        ),
        "1s",
    ),
    "identity provider down": (5, lambda e, server, **_: _down(e, server), "HTTP 503"),
    "wrong secret": (
        6,
        lambda e, **_: run("token", env={**e["m2m"], "HOXTON_CLIENT_SECRET": "not-the-secret"}),
        "invalid_client",
    ),
    "interrupted": (130, lambda e, server, **_: _interrupted_login(e["public"], server), ""),
}


def _down(e: dict[str, dict[str, str]], server: AuthServer) -> subprocess.CompletedProcess[str]:
    server.fail_always(status=503)
    return run("token", "--timeout", "2", env=e["m2m"])


@pytest.mark.parametrize("case", list(EXIT_CASES))
def test_exit_status_table(
    case: str,
    m2m: dict[str, str],
    public: dict[str, str],
    hoxton_auth_server: AuthServer,
    closed_port: int,
    silent_port: int,
) -> None:
    status, command, words = EXIT_CASES[case]
    result = command(
        {"m2m": m2m, "public": public},
        server=hoxton_auth_server,
        closed=closed_port,
        silent=silent_port,
    )
    returncode, stdout, stderr = (
        result if isinstance(result, tuple) else (result.returncode, result.stdout, result.stderr)
    )

    assert returncode == status, stderr
    assert "Traceback" not in stderr
    assert words in stderr
    if status:
        assert stdout == ""
        assert stderr.splitlines()[-1].startswith("hoxton-auth: ")


def test_help_documents_every_exit_status() -> None:
    from hoxton_auth._cli import EXIT_STATUSES

    for command in ([], ["token"]):
        shown = run(*command, "--help").stdout
        for status in EXIT_STATUSES:
            assert f"\n  {status} " in shown
    assert "--timeout SECONDS" in run("token", "--help").stdout
    page = Path(__file__).parents[1].joinpath("docs", "reference", "exit-statuses.md")
    table = page.read_text(encoding="utf-8")
    for status in EXIT_STATUSES:
        assert f"| {status} |" in table


# -- 2. containers: no home directory, no passwd entry ------------------------------------


def _no_passwd_uid() -> int:
    import pwd

    for uid in range(4242, 4300):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    pytest.skip("no free uid without a passwd entry")  # pragma: no cover


@pytest.fixture
def stranger(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run a command as a uid without a passwd entry, with ``env -i`` (a container's user).

    The process keeps CAP_DAC_READ_SEARCH only so that it can reach this
    interpreter (which may live under a private home); it writes nothing
    outside its world-writable working directory either way.
    """
    setpriv = shutil.which("setpriv")
    if sys.platform != "linux" or setpriv is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv(1) to run as a uid without a passwd entry")
    uid = _no_passwd_uid()
    work = tmp_path / "work"
    work.mkdir()
    work.chmod(0o777)

    def as_stranger(*command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        prefix = [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        caps = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
        variables = [f"{k}={v}" for k, v in env.items()]
        return subprocess.run(
            [*prefix, *caps, "env", "-i", *variables, *command],
            capture_output=True,
            text=True,
            cwd=work,
            timeout=120,
        )

    as_stranger.work = work  # type: ignore[attr-defined]  # the test looks inside
    return as_stranger


def test_no_home_directory_cli_keeps_tokens_in_memory(
    stranger: Callable[..., subprocess.CompletedProcess[str]],
    m2m: dict[str, str],
    hoxton_auth_server: AuthServer,
) -> None:
    result = stranger(str(CONSOLE_SCRIPT), "token", env=m2m)

    assert result.returncode == 0, result.stderr
    assert result.stdout.count(".") == 2  # a JWT, and nothing else
    assert_one_line_each(result.stderr)
    (warning,) = result.stderr.splitlines()
    assert "no home directory" in warning
    assert "HOXTON_AUTH_CACHE" in warning
    assert list(stranger.work.iterdir()) == []  # type: ignore[attr-defined]  # no ./~ directory
    status = stranger(str(CONSOLE_SCRIPT), "status", env={})
    assert status.returncode == 0, status.stderr
    assert "Stored in: memory only" in status.stdout


def test_no_home_directory_library_warns_once(
    stranger: Callable[..., subprocess.CompletedProcess[str]],
    m2m: dict[str, str],
    hoxton_auth_server: AuthServer,
) -> None:
    script = (
        "import warnings, requests\n"
        "from hoxton_auth import HoxtonAuth\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    auth = HoxtonAuth.from_env()\n"
        "    auth.get_token(); auth.get_token()\n"
        "    HoxtonAuth.from_env().get_token()\n"
        "print(len(seen)); print(seen[0].message); print(type(auth.cache).__name__)\n"
    )
    result = stranger(sys.executable, "-c", script, env=m2m)

    assert result.returncode == 0, result.stderr
    count, message, cache = result.stdout.splitlines()
    assert count == "1"
    assert "HOXTON_AUTH_CACHE" in message
    assert cache == "MemoryTokenCache"
    assert list(stranger.work.iterdir()) == []  # type: ignore[attr-defined]


def test_a_tilde_cache_path_without_home_is_a_config_error(
    stranger: Callable[..., subprocess.CompletedProcess[str]], m2m: dict[str, str]
) -> None:
    result = stranger(
        str(CONSOLE_SCRIPT), "token", env={**m2m, "HOXTON_AUTH_CACHE": "~/tokens.json"}
    )

    assert result.returncode == 2, result.stderr
    assert "absolute path" in result.stderr
    assert_one_line_each(result.stderr)


# -- 3. configuration checks -------------------------------------------------------------


def test_misspelt_variables_are_named_once_with_the_closest_known_one(
    m2m: dict[str, str],
) -> None:
    result = run("token", env={**m2m, "HOXTON_DOMAN": "x", "HOXTON_CACHE": "y"})

    assert result.returncode == 0, result.stderr
    assert_one_line_each(result.stderr)
    (warning,) = result.stderr.splitlines()
    assert "HOXTON_DOMAN (did you mean HOXTON_AUTH_DOMAIN?)" in warning
    assert "HOXTON_CACHE (did you mean HOXTON_AUTH_CACHE?)" in warning


def test_whitespace_around_a_secret_is_flagged(hoxton_auth_server: AuthServer) -> None:
    with pytest.warns(HoxtonAuthWarning, match="client_secret has whitespace") as seen:
        HoxtonAuth(
            DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET + "\n", domain=hoxton_auth_server.domain
        )

    assert DEFAULT_CLIENT_SECRET not in str(seen[0].message)


@pytest.mark.parametrize(
    ("domain", "words"),
    [
        ("", "domain is empty"),
        ("https://tenant.example/oauth/token", "'https://tenant.example'"),
        ("https://tenant.example/authorize/", "'https://tenant.example'"),
    ],
)
def test_bad_domains_are_refused_before_any_request(domain: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        HoxtonAuth("cid", "secret", domain=domain)


# -- 5. hostile text never reaches the terminal ------------------------------------------


def test_escape_sequences_from_the_server_are_escaped(
    m2m: dict[str, str], hoxton_auth_server: AuthServer, make_jwt: Callable[..., str]
) -> None:
    hoxton_auth_server.fail_next(
        status=400, body={"error": "invalid_request", "error_description": ESCAPES}
    )
    refused = run("token", env=m2m)
    now = int(time.time())
    token = make_jwt(sub="x", iat=now, exp=now + 3600)
    answer = {"access_token": token, "token_type": "Bearer", "expires_in": 3600, "scope": ESCAPES}
    hoxton_auth_server.fail_next(status=200, body=answer)
    fetched = run("token", env=m2m)
    status = run("status", env=m2m)
    status_json = run("status", "--json", env=m2m)

    assert refused.returncode == 1, refused.stderr
    assert fetched.returncode == 0, fetched.stderr
    for result in (refused, status):
        assert "\x1b" not in result.stdout + result.stderr
        assert "\x07" not in result.stdout + result.stderr
        assert "\u202e" not in result.stdout + result.stderr
    assert "\\x1b]0;pwned\\x07" in refused.stderr
    assert "\\x1b[2J" in status.stdout
    # JSON escapes control characters itself, and keeps the value exact.
    (entry,) = json.loads(status_json.stdout)["entries"]
    assert entry["scope"] == ESCAPES


# -- 8. one line per warning ---------------------------------------------------------------


def test_a_refused_cache_is_one_warning_line(m2m: dict[str, str], tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # others could swap the file: refused

    result = run("token", env={**m2m, "HOXTON_AUTH_CACHE": str(shared / "tokens.json")})

    assert result.returncode == 0, result.stderr
    assert_one_line_each(result.stderr)
    assert len(result.stderr.splitlines()) == 1
    assert "writable by others" in result.stderr


# -- 6. the truth about storage --------------------------------------------------------------


def test_login_that_could_not_be_stored_fails(
    public: dict[str, str], fake_browser_command: Path, small_filesystem: Path
) -> None:
    from conftest import fill_filesystem

    cache = small_filesystem / "cache" / "tokens.json"
    cache.parent.mkdir(mode=0o700)
    fill_filesystem(small_filesystem)
    browser = {"BROWSER": str(fake_browser_command), "FAKE_BROWSER_MODE": "follow"}

    result = run("login", env={**public, **browser, "HOXTON_AUTH_CACHE": str(cache)})

    assert result.returncode == 1, result.stderr
    assert "could not be stored" in result.stderr
    assert "Logged in to" not in result.stderr
    assert "Traceback" not in result.stderr
    assert "HoxtonAuthWarning" not in result.stderr  # no Python warning lines


# -- 5. the device flow trusts nothing it shows or waits for -------------------------------


def _device_server(httpserver: HTTPServer, **answer: Any) -> dict[str, str]:
    """A tenant whose device authorization says ``answer``; every poll is pending."""
    document = {
        "device_code": "dc",
        "user_code": "ABCD-EFGH",
        "verification_uri": "https://tenant.example/activate",
        "expires_in": 600,
        "interval": 5,
        **answer,
    }
    httpserver.expect_request("/oauth/device/code", method="POST").respond_with_json(document)
    httpserver.expect_request("/oauth/token", method="POST").respond_with_json(
        {"error": "authorization_pending"}, status=400
    )
    return {
        "HOXTON_AUTH_DOMAIN": httpserver.url_for("/").rstrip("/"),
        "HOXTON_CLIENT_ID": PUBLIC_CLIENT_ID,
    }


def _polls(httpserver: HTTPServer) -> int:
    return sum(1 for request, _ in httpserver.log if request.path == "/oauth/token")


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ({"verification_uri": "http://evil.example/activate"}, "not an https:// URL"),
        ({"verification_uri": "javascript:alert(1)"}, "not an https:// URL"),
        ({"verification_uri_complete": "https://x.example/\x1b[2J"}, "not a plain URL"),
        ({"user_code": "AB\x1b]0;pwned\x07CD"}, "user_code has control characters"),
    ],
)
def test_device_prompts_only_plain_https_pages_and_codes(
    httpserver: HTTPServer, answer: dict[str, Any], words: str
) -> None:
    result = run("login", "--device", "--timeout", "5", env=_device_server(httpserver, **answer))

    assert result.returncode == 1, result.stderr
    assert words in result.stderr
    assert "\x1b" not in result.stderr
    assert "open this page" not in result.stderr
    assert _polls(httpserver) == 0


@pytest.mark.parametrize("interval", [0.001, 86400])
def test_device_interval_is_bounded_and_timeout_wins(
    httpserver: HTTPServer, interval: float
) -> None:
    env = _device_server(httpserver, interval=interval)

    result = run("login", "--device", "--timeout", "2", env=env)

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    # At least a second between polls: two seconds allow at most two.
    assert _polls(httpserver) <= 2


# -- 4. no secret to a proxy in clear ----------------------------------------------------------


@pytest.fixture
def recording_proxy() -> Iterator[tuple[str, list[bytes]]]:
    """A "proxy" that records the bytes it receives and answers 502."""
    received: list[bytes] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            with connection:
                connection.settimeout(2)
                try:
                    received.append(connection.recv(65536))
                    connection.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", received
    finally:
        done.set()
        thread.join()
        listener.close()


def test_a_loopback_http_token_request_never_goes_through_a_proxy(
    hoxton_auth_server: AuthServer,
    recording_proxy: tuple[str, list[bytes]],
    m2m: dict[str, str],
) -> None:
    url, received = recording_proxy
    auth = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        domain=hoxton_auth_server.domain,
        proxy=url,
        cache=None,
    )
    assert auth.get_token()
    with httpx.Client(auth=auth) as client:  # the httpx transport's own token request
        auth.invalidate()
        assert client.get(hoxton_auth_server.api_url).status_code == 200
    from_env = run("token", env={**m2m, "HTTP_PROXY": url, "http_proxy": url, "NO_PROXY": ""})

    assert from_env.returncode == 0, from_env.stderr
    assert hoxton_auth_server.count() == 3
    assert received == []


@pytest.mark.parametrize("transport", ["requests", "httpx"])
def test_a_ca_bundle_gone_since_construction_is_a_config_error_without_secrets(
    transport: str, tmp_path: Path, closed_port: int
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not yet a certificate")
    secret = "s3cret-never-in-a-frame"
    auth = HoxtonAuth(
        "cid", secret, domain=f"https://127.0.0.1:{closed_port}", verify=bundle, cache=None
    )
    bundle.unlink()  # a stale REQUESTS_CA_BUNDLE, a rotated mount

    def fetch() -> None:
        if transport == "requests":
            auth.get_token()
            return
        with httpx.Client(auth=auth) as client:
            client.get(f"https://127.0.0.1:{closed_port}/api")

    with pytest.raises(ConfigError, match=r"verify=.*ca\.pem") as caught:
        fetch()

    for error in (caught.value, caught.value.__context__):
        # From below this test's own frames (which hold the secret it passed).
        traceback = error.__traceback__.tb_next if error and error.__traceback__ else None
        while traceback is not None:
            if traceback.tb_frame.f_code.co_name != "fetch":
                assert secret not in repr(traceback.tb_frame.f_locals)
            traceback = traceback.tb_next


def test_a_stale_ssl_cert_file_is_a_config_error_without_secrets(
    tmp_path: Path, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """httpx reads SSL_CERT_FILE itself with trust_env; a stale one must not raise a raw
    OSError from a frame that holds the encoded form."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "gone.pem"))
    secret = "s3cret-never-in-a-frame"
    auth = HoxtonAuth("cid", secret, domain=f"https://127.0.0.1:{closed_port}", cache=None)

    with pytest.raises(ConfigError, match="SSL_CERT_FILE") as caught:
        asyncio.run(auth.aget_token())  # token requests through the httpx transport

    error: BaseException | None = caught.value
    while error is not None:
        traceback = error.__traceback__
        while traceback is not None:
            if (
                traceback.tb_frame.f_code.co_name
                != "test_a_stale_ssl_cert_file_is_a_config_error_without_secrets"
            ):
                assert secret not in repr(traceback.tb_frame.f_locals)
            traceback = traceback.tb_next
        error = error.__context__


# -- 9. the login callback -------------------------------------------------------------------


def test_a_non_ascii_state_on_the_callback_is_refused_quietly(public: dict[str, str]) -> None:
    import re
    import urllib.error
    import urllib.request

    process = subprocess.Popen(
        [str(CONSOLE_SCRIPT), "login", "--browser", "--no-browser", "--timeout", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(public),
    )
    assert process.stderr is not None
    lines: list[str] = []
    while not any("redirect_uri=" in line for line in lines):
        lines.append(process.stderr.readline())
    port = re.search(r"redirect_uri=http%3A%2F%2F127\.0\.0\.1%3A(\d+)", "".join(lines))
    assert port is not None
    callback = f"http://127.0.0.1:{port.group(1)}/callback"
    statuses = []
    for state in ("%C3%A9t%C3%A9", "%FF%FE", "%E2%80%AE"):
        try:
            urllib.request.urlopen(f"{callback}?state={state}&code=x", timeout=10)  # noqa: S310  a loopback URL built here
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)

    assert statuses == [400, 400, 400]
    assert "Traceback" not in rest
    assert "TypeError" not in rest


# -- 6. who is logged in, and where the session lives ----------------------------------------


def test_login_and_status_say_who_is_logged_in_and_where(
    public: dict[str, str], fake_browser_command: Path, isolated_cache: Path
) -> None:
    browser = {"BROWSER": str(fake_browser_command), "FAKE_BROWSER_MODE": "follow"}

    scope = "openid profile email offline_access"
    login = run("login", "--scope", scope, env={**public, **browser})
    status = run("status", env=public)

    assert login.returncode == 0, login.stderr
    assert "User: " in login.stderr
    assert "(from the ID token, unverified)" in login.stderr
    assert status.returncode == 0, status.stderr
    assert f"Stored in: file {isolated_cache}" in status.stdout
    (user,) = [line for line in status.stdout.splitlines() if line.startswith("  user ")]
    assert "unverified" in user
    assert "@example" in user  # the name and email claims


# -- 7. the cache file: numbers past any limit are damage ------------------------------------


@pytest.mark.parametrize("digits", [4301, 400])
def test_huge_numbers_in_the_cache_file_are_damage_not_a_crash(
    m2m: dict[str, str], hoxton_auth_server: AuthServer, isolated_cache: Path, digits: int
) -> None:
    token = run("token", env=m2m).stdout.strip()
    text = isolated_cache.read_text(encoding="utf-8")
    huge = "9" * digits  # 4301: past int's digit limit; 400: past float's range
    planted = f'"entries": {{"{"b" * 32}": {{"meta": {{}}, "token": {{"expires_at": {huge}}}}},'
    isolated_cache.write_text(text.replace('"entries": {', planted, 1), encoding="utf-8")

    again = run("token", env=m2m)
    status = run("status", env=m2m)

    for result in (again, status):
        assert result.returncode == 0, result.stderr
        assert_one_line_each(result.stderr)
    assert again.stdout.strip() == token  # the good entry is kept and served
    assert hoxton_auth_server.count() == 1


# -- 7. every ancestor of the cache is checked (OpenSSH StrictModes) -------------------------


def test_a_group_writable_ancestor_is_refused_and_named(
    m2m: dict[str, str], hoxton_auth_server: AuthServer, tmp_path: Path
) -> None:
    team = tmp_path / "team"
    private = team / "alice" / "cache"
    private.mkdir(parents=True)
    (team / "alice").chmod(0o700)
    private.chmod(0o700)
    team.chmod(0o775)  # a group member could rename alice/ away and plant their own
    cache = private / "tokens.json"

    first = run("token", env={**m2m, "HOXTON_AUTH_CACHE": str(cache)})

    assert first.returncode == 0, first.stderr  # served from memory, with one warning
    assert_one_line_each(first.stderr)
    assert f"ancestor directory {team} is writable by others (mode 775)" in first.stderr
    assert not cache.exists()
    with pytest.warns(HoxtonAuthWarning, match="ancestor directory"):
        HoxtonAuth(
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
            domain=hoxton_auth_server.domain,
            cache=str(cache),
        ).get_token()
    assert not cache.exists()


def test_a_sticky_ancestor_is_fine(m2m: dict[str, str], tmp_path: Path) -> None:
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: others cannot rename what is ours
    private = shared / "mine"
    private.mkdir(mode=0o700)
    cache = private / "tokens.json"

    result = run("token", env={**m2m, "HOXTON_AUTH_CACHE": str(cache)})

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert cache.exists()


# -- 7. garbage in the library's own file is moved aside, a chosen path is left alone ----------


def test_garbage_in_the_default_cache_is_moved_aside_and_kept(
    m2m: dict[str, str],
    hoxton_auth_server: AuthServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HOXTON_AUTH_CACHE")
    home = tmp_path / "home"
    own = home / ".cache" / "hoxton-auth"
    own.mkdir(parents=True, mode=0o700)
    (own / "tokens.json").write_text("GARBAGE from a crashed editor\n")
    (own / "tokens.json").chmod(0o600)
    env = {**m2m, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}

    first = run("token", env=env)
    second = run("token", env=env)

    assert first.returncode == 0, first.stderr
    assert_one_line_each(first.stderr)
    (moved,) = own.glob("tokens.json.unreadable-*")
    assert f"moved aside to {moved}" in first.stderr
    assert moved.read_text() == "GARBAGE from a crashed editor\n"
    assert json.loads((own / "tokens.json").read_text())["format"] == "hoxton-auth token cache"
    assert second.returncode == 0, second.stderr
    assert second.stderr == ""
    assert second.stdout == first.stdout  # shared again
    assert hoxton_auth_server.count() == 1


def test_garbage_at_a_chosen_path_is_left_alone(m2m: dict[str, str], isolated_cache: Path) -> None:
    isolated_cache.parent.mkdir(mode=0o700)
    isolated_cache.write_text("my notes, not tokens\n")
    isolated_cache.chmod(0o600)

    result = run("token", env=m2m)

    assert result.returncode == 0, result.stderr
    assert "not a hoxton-auth token cache" in result.stderr
    assert isolated_cache.read_text() == "my notes, not tokens\n"
    assert not list(isolated_cache.parent.glob("*.unreadable-*"))


def test_a_device_login_the_application_may_not_use_says_what_to_do(
    httpserver: HTTPServer,
) -> None:
    words = "Grant type 'urn:ietf:params:oauth:grant-type:device_code' not allowed for the client."
    httpserver.expect_request("/oauth/device/code", method="POST").respond_with_json(
        {"error": "unauthorized_client", "error_description": words}, status=403
    )
    env = {
        "HOXTON_AUTH_DOMAIN": httpserver.url_for("/").rstrip("/"),
        "HOXTON_CLIENT_ID": DEFAULT_CLIENT_ID,
        "HOXTON_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
    }

    result = run("login", "--device", env=env)

    assert result.returncode == 6, result.stderr
    assert "needs a Native application with the Device Code grant" in result.stderr
    assert f"client id {DEFAULT_CLIENT_ID!r} (from $HOXTON_CLIENT_ID)" in result.stderr
    assert_one_line_each(result.stderr)


# -- the core's side of it, without a process: exit statuses, device answers, user -----------


def test_each_error_carries_its_exit_status() -> None:
    from hoxton_auth import (
        CacheUnavailableError,
        InsecureTransportError,
        InvalidGrantError,
        LoginError,
        LoginRequiredError,
        MfaRequiredError,
        NotLoggedInError,
        TokenEndpointUnreachableError,
        TokenRequestError,
    )

    def refusal(status: int, error: str | None) -> TokenRequestError:
        return TokenRequestError("x", status_code=status, error=error)

    assert ConfigError("x").exit_status == 2
    assert InsecureTransportError("x").exit_status == 2
    assert NotLoggedInError("x").exit_status == 4
    assert LoginRequiredError("x", status_code=403, error="invalid_grant").exit_status == 4
    assert TokenEndpointUnreachableError("x", url="u", attempts=1).exit_status == 5
    assert refusal(503, None).exit_status == 5
    assert refusal(429, "too_many_requests").exit_status == 5
    assert refusal(401, "invalid_client").exit_status == 6
    assert refusal(429, "too_many_attempts").exit_status == 6  # a blocked user
    assert InvalidGrantError("x", status_code=403, error="invalid_grant").exit_status == 6
    assert refusal(400, "invalid_request").exit_status == 1
    assert MfaRequiredError("x", status_code=403, error="mfa_required").exit_status == 1
    assert LoginError("x").exit_status == 1
    assert CacheUnavailableError("x").exit_status == 1


def _device_answer(**answer: Any) -> Any:
    from hoxton_auth._config import ClientConfig
    from hoxton_auth._flow import request_device_code
    from hoxton_auth._wire import TokenResponse

    body = {
        "device_code": "dc",
        "user_code": "BCDF-GHJK",
        "verification_uri": "https://auth.example/activate",
        "expires_in": 900,
        "interval": 5,
        **answer,
    }
    flow = request_device_code(ClientConfig("cid"), 1000.0, __import__("random").Random(1))
    next(flow)
    with pytest.raises(StopIteration) as done:
        flow.send(TokenResponse(200, json.dumps(body).encode(), {}, 1000.0))
    return done.value.value


@pytest.mark.parametrize(("given", "kept"), [(0.001, 1.0), (5, 5.0), (86400, 900.0), (3600, 900.0)])
def test_device_interval_is_kept_within_a_second_and_the_lifetime(
    given: float, kept: float
) -> None:
    assert _device_answer(interval=given).interval == kept


@pytest.mark.parametrize(
    "answer",
    [
        {"verification_uri": "http://evil.example/activate"},
        {"verification_uri": "file:///etc/passwd"},
        {"verification_uri_complete": "https://auth.example/\x1b[2J"},
        {"verification_uri_complete": 42},
        {"user_code": "AB\u202eCD"},
    ],
)
def test_a_device_answer_unsafe_to_show_is_refused(answer: dict[str, Any]) -> None:
    from hoxton_auth import TokenRequestError

    with pytest.raises(TokenRequestError, match="refused: its"):
        _device_answer(**answer)


def test_a_loopback_verification_uri_is_fine() -> None:
    answer = _device_answer(verification_uri="http://127.0.0.1:8080/activate")
    assert answer.verification_uri == "http://127.0.0.1:8080/activate"


def test_who_the_id_token_names(make_jwt: Callable[..., str]) -> None:
    from hoxton_auth._token import Token, user_of

    def user(id_token: str | None) -> str | None:
        return user_of(Token("at", 2000.0, 1000.0, id_token=id_token))

    assert user(make_jwt(name="Ann", email="ann@x.example", sub="auth0|1")) == (
        "Ann <ann@x.example> (auth0|1)"
    )
    assert user(make_jwt(email="ann@x.example", name="ann@x.example")) == "ann@x.example"
    assert user(make_jwt(sub="auth0|1")) == "auth0|1"
    assert user(make_jwt(aud="x")) is None
    assert user(None) is None
    assert user("a.!!!.c") is None
    assert user("a.WzFd.c") is None  # a JSON list, not claims


def test_no_home_directory_a_logged_in_session_is_a_clear_miss(
    stranger: Callable[..., subprocess.CompletedProcess[str]],
    m2m: dict[str, str],
    hoxton_auth_server: AuthServer,
) -> None:
    """Without a home there is no login key either: `login` sessions live in memory,
    and asking for one that does not exist says "log in", never a RuntimeError."""
    public = {k: v for k, v in m2m.items() if k != "HOXTON_CLIENT_SECRET"}
    result = stranger(str(CONSOLE_SCRIPT), "token", env=public)

    assert result.returncode == 4, result.stderr  # login needed
    assert "RuntimeError" not in result.stderr
    assert "Traceback" not in result.stderr
    script = (
        "import warnings\n"
        "from hoxton_auth import AuthorizationCodeAuth, NotLoggedInError\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    try:\n"
        "        AuthorizationCodeAuth.from_env().get_token()\n"
        "    except NotLoggedInError:\n"
        "        print('not logged in')\n"
        "print(any('HOXTON_AUTH_LOGIN_KEY' in str(w.message) for w in seen))\n"
    )
    library = stranger(sys.executable, "-c", script, env=public)
    assert library.returncode == 0, library.stderr
    assert library.stdout.splitlines() == ["not logged in", "True"]


SLOW_DISK_TOKEN = """
import runpy, sys, time
from hoxton_auth import FileTokenCache

# A disk that takes seconds to write (an NFS home under load): the store of the
# rotated refresh token is still running when the --timeout backstop fires.
write = FileTokenCache.store
def slow_store(self, key, entry):
    time.sleep(4)
    write(self, key, entry)
FileTokenCache.store = slow_store
sys.argv = ["hoxton-auth", "token", "--timeout", "0.5"]
runpy.run_module("hoxton_auth", run_name="__main__")
"""


def test_token_timeout_never_loses_a_rotated_refresh_token(
    hoxton_auth_server: AuthServer, isolated_cache: Path
) -> None:
    seed = hoxton_auth_server.mint_refresh_token()
    env = {
        **_environment({}),
        "HOXTON_AUTH_DOMAIN": hoxton_auth_server.domain,
        "HOXTON_CLIENT_ID": DEFAULT_CLIENT_ID,
        "HOXTON_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "HOXTON_REFRESH_TOKEN": seed,
    }
    child = subprocess.run(
        [sys.executable, "-c", SLOW_DISK_TOKEN],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )

    # The backstop fired during the store and waited for it: then either it ends
    # the command (5) or the command ends first with its token (0); never earlier.
    status, said = child.returncode, child.stderr  # (stdout holds a token: never shown)
    assert status in (0, 5), said
    assert "Traceback" not in said
    assert hoxton_auth_server.count("refresh_token") == 1
    # The rotated refresh token was stored: the next run renews with it.
    auth = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        refresh_token=seed,
        domain=hoxton_auth_server.domain,
    )
    auth.get_token()  # the token the child stored
    assert hoxton_auth_server.count("refresh_token") == 1
    auth.invalidate()  # as after a 401: renew with the stored (rotated) refresh token
    auth.get_token()
    assert hoxton_auth_server.count("refresh_token") == 2
    assert hoxton_auth_server.reuse_detected == 0
