"""The ``hoxton-auth`` command, run as a real subprocess against the local server."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
import webbrowser
from pathlib import Path

import pytest

from hoxton_auth import TokenRequestError
from hoxton_auth.__main__ import main
from hoxton_auth.testing import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    PUBLIC_CLIENT_ID,
    AuthServer,
)

COMMANDS = ("token", "login", "logout", "status")
CONSOLE_SCRIPT = Path(sys.executable).with_name("hoxton-auth")


def run(
    *args: str, env: dict[str, str] | None = None, module: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with this interpreter; the environment is the test's plus ``env``."""
    full_env = {**os.environ, **(env or {})}
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "TERM"):  # webbrowser finds no real browser
        full_env.pop(name, None)
    command = [sys.executable, "-m", "hoxton_auth"] if module else [str(CONSOLE_SCRIPT)]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=full_env, timeout=120
    )


@pytest.fixture
def public(hoxton_auth_server: AuthServer, fake_browser_command: Path) -> dict[str, str]:
    """Variables for the server's public client, with the fake browser as $BROWSER."""
    return {
        "HOXTON_AUTH_DOMAIN": hoxton_auth_server.domain,
        "HOXTON_CLIENT_ID": PUBLIC_CLIENT_ID,
        "BROWSER": str(fake_browser_command),
        "FAKE_BROWSER_MODE": "follow",
        # Any free callback port: the fixed defaults are shared with other test runs.
        "HOXTON_LOGIN_PORT": "0",
    }


def assert_clean_failure(result: subprocess.CompletedProcess[str], status: int = 1) -> None:
    assert result.returncode == status, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1].startswith("hoxton-auth: ")
    assert "Traceback" not in result.stderr


# -- help -------------------------------------------------------------------------------


def test_help() -> None:
    result = run("--help")

    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command(command: str) -> None:
    result = run(command, "--help")

    assert result.returncode == 0, result.stderr
    assert f"usage: hoxton-auth {command}" in result.stdout
    assert "--cache" in result.stdout
    if command != "status":
        for option in ("--client-id", "--client-secret", "--domain", "--audience", "--scope"):
            assert option in result.stdout


def test_no_command_is_a_usage_error() -> None:
    result = run()

    assert result.returncode == 2
    assert "usage:" in result.stderr


# -- token --------------------------------------------------------------------------------


def test_token_prints_only_the_token(
    m2m: dict[str, str], hoxton_auth_server: AuthServer, isolated_cache: Path
) -> None:
    result = run("token", env=m2m)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    token = result.stdout.removesuffix("\n")
    assert "\n" not in token
    assert token.count(".") == 2  # a JWT
    cached = json.loads(isolated_cache.read_text(encoding="utf-8"))
    assert [e["token"]["access_token"] for e in cached["entries"].values()] == [token]


def test_the_console_script_and_the_cache_shared_between_runs(
    m2m: dict[str, str], hoxton_auth_server: AuthServer
) -> None:
    first = run("token", env=m2m)
    second = run("token", env=m2m, module=False)

    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert hoxton_auth_server.count() == 1


# -- a bare `token` answered before the parser loads (issue 15) --------------------------
# It must answer exactly what the whole command would, and step aside otherwise.


def test_a_cached_token_of_another_secret_is_not_answered(
    m2m: dict[str, str], hoxton_auth_server: AuthServer
) -> None:
    token = run("token", env=m2m).stdout.strip()
    wrong = run("token", env={**m2m, "HOXTON_CLIENT_SECRET": "not-the-secret"})

    assert_clean_failure(wrong, status=6)  # the server refused the wrong secret
    assert token not in wrong.stdout + wrong.stderr
    assert "not-the-secret" not in wrong.stderr
    assert hoxton_auth_server.count() == 2


def test_a_cached_token_due_for_renewal_is_renewed(
    m2m: dict[str, str], hoxton_auth_server: AuthServer, isolated_cache: Path
) -> None:
    token = run("token", env=m2m).stdout.strip()
    document = json.loads(isolated_cache.read_text(encoding="utf-8"))
    (entry,) = document["entries"].values()
    now = time.time()  # 30 s left of a day: inside the 60 s leeway
    entry["token"].update(expires_at=now + 30, obtained_at=now - 86370)
    isolated_cache.write_text(json.dumps(document), encoding="utf-8")

    renewed = run("token", env=m2m)

    assert renewed.returncode == 0, renewed.stderr
    assert renewed.stdout.strip() not in ("", token)
    assert hoxton_auth_server.count() == 2


def test_a_cache_open_to_others_is_tightened_and_reported(
    m2m: dict[str, str], hoxton_auth_server: AuthServer, isolated_cache: Path
) -> None:
    token = run("token", env=m2m).stdout.strip()
    isolated_cache.chmod(0o644)

    again = run("token", env=m2m)

    assert again.stdout.strip() == token
    assert "tightened to 0600" in again.stderr
    assert stat.S_IMODE(isolated_cache.stat().st_mode) == 0o600
    assert hoxton_auth_server.count() == 1


def _planted_copy(cache: Path, planted: str) -> Path:
    """A copy of ``cache`` beside it, its entry's access token replaced by ``planted``."""
    document = json.loads(cache.read_text(encoding="utf-8"))
    (entry,) = document["entries"].values()
    entry["token"].update(access_token=planted, expires_at=time.time() + 86400)
    copy = cache.with_name("planted.json")
    copy.write_text(json.dumps(document), encoding="utf-8")
    copy.chmod(0o600)  # private, as the real file: only the link is wrong
    return copy


def test_a_token_planted_through_a_symbolic_link_is_never_answered(
    m2m: dict[str, str], hoxton_auth_server: AuthServer, isolated_cache: Path
) -> None:
    run("token", env=m2m)
    planted = _planted_copy(isolated_cache, "planted.token.value")
    isolated_cache.unlink()
    isolated_cache.symlink_to(planted)  # the verifier is genuine: only the link gives it away

    result = run("token", env=m2m)

    assert result.returncode == 0, result.stderr
    assert "planted.token.value" not in result.stdout
    assert "symbolic link" in result.stderr  # refused, said, and a token fetched in memory
    assert hoxton_auth_server.count() == 2


def test_a_token_in_a_directory_others_can_write_is_never_answered(
    m2m: dict[str, str], hoxton_auth_server: AuthServer, isolated_cache: Path
) -> None:
    token = run("token", env=m2m).stdout.strip()
    isolated_cache.parent.chmod(0o777)  # anyone could have swapped the file

    result = run("token", env=m2m)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() not in ("", token)
    assert "writable by others" in result.stderr
    assert hoxton_auth_server.count() == 2


def test_a_damaged_cache_is_reported_and_its_token_kept(
    m2m: dict[str, str], hoxton_auth_server: AuthServer, isolated_cache: Path
) -> None:
    token = run("token", env=m2m).stdout.strip()
    with isolated_cache.open("a", encoding="utf-8") as file:
        file.write('{"garbage": ')

    again = run("token", env=m2m)

    assert again.stdout.strip() == token
    assert "the next write repairs it" in again.stderr
    assert hoxton_auth_server.count() == 1


def test_token_json(m2m: dict[str, str]) -> None:
    result = run("token", "--json", env=m2m)

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"access_token", "token_type", "expires_at", "expires_in"}
    assert document["token_type"] == "Bearer"
    assert 0 < document["expires_in"] <= 86400
    assert document["expires_at"].endswith("Z")


def test_options_override_the_environment(
    m2m: dict[str, str], hoxton_auth_server: AuthServer
) -> None:
    wrong = {**m2m, "HOXTON_CLIENT_SECRET": "wrong", "HOXTON_AUTH_DOMAIN": "https://x.invalid"}

    result = run(
        "token",
        "--client-secret",
        DEFAULT_CLIENT_SECRET,
        "--domain",
        hoxton_auth_server.domain,
        "--scope",
        "read:things",
        env=wrong,
    )

    assert result.returncode == 0, result.stderr
    (request,) = hoxton_auth_server.token_requests
    assert request["scope"] == "read:things"


def test_token_refused(m2m: dict[str, str]) -> None:
    result = run("token", env={**m2m, "HOXTON_CLIENT_SECRET": "not-the-secret"})

    assert_clean_failure(result, status=6)
    assert "invalid_client" in result.stderr
    # What to do: which client id was refused, and where it and the secret came from.
    assert f"client id {DEFAULT_CLIENT_ID!r} (from $HOXTON_CLIENT_ID)" in result.stderr
    assert "secret from $HOXTON_CLIENT_SECRET" in result.stderr
    assert "not-the-secret" not in result.stderr


def test_missing_configuration_is_exit_2() -> None:
    result = run("token")

    assert_clean_failure(result, status=2)
    assert "HOXTON_CLIENT_ID" in result.stderr


def test_debug_shows_the_traceback(m2m: dict[str, str]) -> None:
    result = run("token", "--debug", env={**m2m, "HOXTON_CLIENT_SECRET": "not-the-secret"})

    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "not-the-secret" not in result.stderr


def test_token_without_secret_or_login(public: dict[str, str]) -> None:
    result = run("token", env=public)

    assert_clean_failure(result, status=4)
    assert "hoxton-auth login" in result.stderr


# -- login, then token, status and logout -----------------------------------------------


def test_login_then_token_status_logout(
    public: dict[str, str], hoxton_auth_server: AuthServer
) -> None:
    login = run("login", "--scope", "openid offline_access", env=public)
    assert login.returncode == 0, login.stderr
    assert login.stdout == ""
    assert "Logged in" in login.stderr

    # No secret, no grant, no --scope: the login's tokens, found in the cache.
    token = run("token", env=public)
    assert token.returncode == 0, token.stderr
    (exchange,) = hoxton_auth_server.token_requests
    assert exchange["grant_type"] == "authorization_code"

    status = run("status", env=public)
    assert status.returncode == 0, status.stderr
    assert PUBLIC_CLIENT_ID in status.stdout
    assert "login (logged-in session)" in status.stdout
    assert "offline_access" in status.stdout
    assert "refresh   yes" in status.stdout
    assert token.stdout.strip() not in status.stdout

    logout = run("logout", env=public)
    assert logout.returncode == 0, logout.stderr
    assert len(hoxton_auth_server.revoke_requests) == 1
    assert "0 entries" in run("status", env=public).stdout
    assert_clean_failure(run("token", env=public), status=4)


def test_login_session_wins_when_asked_even_with_a_secret(
    public: dict[str, str], hoxton_auth_server: AuthServer
) -> None:
    env = {**public, "HOXTON_CLIENT_ID": DEFAULT_CLIENT_ID}
    env["HOXTON_CLIENT_SECRET"] = DEFAULT_CLIENT_SECRET
    assert run("login", env=env).returncode == 0

    result = run("token", "--login-session", env=env)

    assert result.returncode == 0, result.stderr
    assert hoxton_auth_server.count("authorization_code") == 1
    assert hoxton_auth_server.count("client_credentials") == 0


def test_login_failures_are_clean(public: dict[str, str]) -> None:
    forged = run("login", "--timeout", "1", env={**public, "FAKE_BROWSER_MODE": "tamper-state"})
    timed_out = run("login", "--no-browser", "--timeout", "0.2", env=public)

    assert_clean_failure(forged)
    assert "wrong or missing state were refused" in forged.stderr
    assert_clean_failure(timed_out)
    assert "Open this URL in a browser" in timed_out.stderr
    assert "/authorize?response_type=code" in timed_out.stderr


def test_logout_of_machine_tokens_forgets_them(
    m2m: dict[str, str], hoxton_auth_server: AuthServer
) -> None:
    assert run("token", env=m2m).returncode == 0

    result = run("logout", env=m2m)

    assert result.returncode == 0, result.stderr
    assert "Logged out" in result.stderr
    assert hoxton_auth_server.revoke_requests == []  # no refresh token to revoke
    assert "0 entries" in run("status", env=m2m).stdout


@pytest.mark.skipif(sys.platform == "darwin", reason="webbrowser always finds the macOS browser")
def test_login_when_no_browser_can_be_opened(public: dict[str, str]) -> None:
    result = run("login", "--timeout", "0.2", env={**public, "FAKE_BROWSER_MODE": "fail"})

    assert_clean_failure(result)
    assert "No browser could be opened" in result.stderr
    assert "/authorize?response_type=code" in result.stderr


def test_logout_without_a_login() -> None:
    result = run("logout", env={"HOXTON_CLIENT_ID": PUBLIC_CLIENT_ID})

    assert result.returncode == 0, result.stderr
    assert "nothing to log out" in result.stderr


# -- status -------------------------------------------------------------------------------


def test_status_lists_entries_without_secrets(m2m: dict[str, str]) -> None:
    token = run("token", env=m2m).stdout.strip()

    text = run("status", env=m2m)
    as_json = run("status", "--json", env=m2m)

    assert text.returncode == 0, text.stderr
    for needle in (DEFAULT_CLIENT_ID, "https://api.hoxton.cloud", "client_credentials", "(in 2"):
        assert needle in text.stdout
    (entry,) = json.loads(as_json.stdout)["entries"]
    assert entry["client_id"] == DEFAULT_CLIENT_ID
    assert entry["grant"] == "client_credentials"
    assert entry["valid"] is True
    assert 0 < entry["expires_in"] <= 86400
    for output in (text.stdout + text.stderr, as_json.stdout + as_json.stderr):
        assert token not in output
        assert DEFAULT_CLIENT_SECRET not in output


def test_status_of_an_empty_cache(isolated_cache: Path) -> None:
    result = run("status")

    assert result.returncode == 0, result.stderr
    assert str(isolated_cache) in result.stdout
    assert "0 entries" in result.stdout


# -- import cost ---------------------------------------------------------------------------


def test_import_does_not_load_the_cli_or_login_machinery() -> None:
    code = (
        "import sys, hoxton_auth; "
        "print([m for m in ('argparse', 'http.server', 'webbrowser') if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )

    assert result.stdout.strip() == "[]", result.stderr


# -- the README's "Try it offline" ----------------------------------------------------------


def test_offline_readme_commands() -> None:
    """`python -m hoxton_auth.testing serve`, then `hoxton-auth token` with its variables.

    The README uses --port 8760; a free port keeps parallel runs apart.
    """
    server = subprocess.Popen(
        [sys.executable, "-m", "hoxton_auth.testing", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()  # the server prints it once it listens
        found = re.search(r" on (http://127\.0\.0\.1:\d+) ", banner)
        assert found, banner
        env = {
            "HOXTON_AUTH_DOMAIN": found.group(1),
            "HOXTON_CLIENT_ID": "test-client",
            "HOXTON_CLIENT_SECRET": "test-secret",
        }
        result = run("token", env=env, module=False)
    finally:
        server.terminate()
        server.communicate(timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout.count(".") == 2  # one JWT
    assert server.returncode == 0


def test_the_test_server_names_the_extra_it_needs() -> None:
    code = (
        "import sys; sys.modules['cryptography'] = None; "  # as if it were not installed
        "from hoxton_auth.testing.__main__ import main; sys.exit(main(['serve', '--port', '0']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 1
    assert 'pip install "cryptography>=41"' in result.stderr
    assert 'pip install -e ".[testing]"' in result.stderr
    assert "Traceback" not in result.stderr


# -- in-process: main() directly (fast, and seen by coverage, which subprocesses are not) --


@pytest.fixture
def in_process_browser(fake_browser_command: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake browser first in webbrowser's list for this process (see test_login)."""
    monkeypatch.setenv("BROWSER", str(fake_browser_command))
    monkeypatch.setenv("FAKE_BROWSER_MODE", "follow")
    browser = webbrowser.GenericBrowser(str(fake_browser_command))
    webbrowser.register("hoxton-auth-test-browser", None, browser, preferred=True)


def set_env(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def test_main_machine_tokens(
    m2m: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_env(monkeypatch, m2m)

    assert main(["token"]) == 0
    token = capsys.readouterr().out.strip()
    assert main(["token", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["access_token"] == token
    assert main(["status"]) == 0
    assert "client_credentials" in capsys.readouterr().out
    assert main(["logout"]) == 0
    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == []


def test_main_login_session(
    public: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    in_process_browser: None,
    hoxton_auth_server: AuthServer,
) -> None:
    set_env(monkeypatch, public)
    assert main(["logout"]) == 0  # nothing to log out yet

    assert main(["login", "--localhost"]) == 0
    assert main(["token"]) == 0
    token = capsys.readouterr().out.strip()
    assert main(["token", "--scope", "openid profile offline_access"]) == 0
    assert capsys.readouterr().out.strip() == token
    assert main(["status"]) == 0
    status = capsys.readouterr().out
    assert "login (logged-in session)" in status
    assert token not in status

    # One logged-in session per (domain, client, audience), whatever the scope:
    # a second login replaces the first and revokes its refresh token (issue 10).
    assert main(["login", "--scope", "openid offline_access"]) == 0
    assert len(hoxton_auth_server.revoke_requests) == 1
    assert main(["token"]) == 0
    second = capsys.readouterr().out.strip()
    assert second != token
    assert main(["token", "--scope", "offline_access  openid"]) == 0
    assert capsys.readouterr().out.strip() == second
    assert main(["logout"]) == 0
    assert len(hoxton_auth_server.revoke_requests) == 2
    capsys.readouterr()
    assert main(["token"]) != 0
    assert "run `hoxton-auth login` first" in capsys.readouterr().err
    assert hoxton_auth_server.count("authorization_code") == 2


def test_main_errors(
    m2m: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token"]) == 2
    assert "HOXTON_CLIENT_ID" in capsys.readouterr().err
    set_env(monkeypatch, {**m2m, "HOXTON_CLIENT_SECRET": "not-the-secret"})
    assert main(["token"]) == 6
    err = capsys.readouterr().err
    assert "invalid_client" in err
    assert "not-the-secret" not in err
    with pytest.raises(TokenRequestError):
        main(["token", "--debug"])
    assert main(["login", "--no-browser", "--timeout", "0.1"]) == 1
    assert "within 0.1s" in capsys.readouterr().err
    monkeypatch.delenv("HOXTON_CLIENT_ID")
    assert main(["login"]) == 2


# -- the device flow through the command ----------------------------------------------------


def start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start the CLI without waiting for it (see ``run``)."""
    full_env = {**os.environ, **env}
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "TERM", "BROWSER"):
        full_env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, "-m", "hoxton_auth", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )


@pytest.fixture
def device(hoxton_auth_server: AuthServer) -> dict[str, str]:
    """Variables for the public client on a machine without a browser (an SSH session)."""
    hoxton_auth_server.device_interval = 0.05
    return {
        "HOXTON_AUTH_DOMAIN": hoxton_auth_server.domain,
        "HOXTON_CLIENT_ID": PUBLIC_CLIENT_ID,
        "SSH_CONNECTION": "192.0.2.1 50000 192.0.2.2 22",
    }


@pytest.mark.parametrize("flag", [[], ["--device"]])
def test_device_login_then_token_and_status_check(
    device: dict[str, str], hoxton_auth_server: AuthServer, flag: list[str]
) -> None:
    process = start("login", *flag, env=device)
    user_code = hoxton_auth_server.wait_for_device_code(timeout=60)
    hoxton_auth_server.approve_device(user_code)
    out, err = process.communicate(timeout=60)

    assert process.returncode == 0, err
    assert out == ""
    assert user_code in err
    assert f"{hoxton_auth_server.domain}/activate" in err
    assert f"/activate?user_code={user_code}" in err
    assert "Logged in" in err
    assert hoxton_auth_server.authorize_requests == []
    token = run("token", env=device)
    assert token.returncode == 0, token.stderr
    check = run("status", "--check", env=device)
    assert check.returncode == 0, check.stderr
    assert check.stdout == ""
    assert token.stdout.strip() not in check.stderr


@pytest.mark.parametrize(
    ("control", "words"),
    [("deny_device", "the login was denied"), ("expire_device", "device code expired")],
)
def test_device_login_denied_or_expired_exit_1(
    device: dict[str, str], hoxton_auth_server: AuthServer, control: str, words: str
) -> None:
    process = start("login", "--device", env=device)
    getattr(hoxton_auth_server, control)(hoxton_auth_server.wait_for_device_code(timeout=60))
    out, err = process.communicate(timeout=60)

    assert process.returncode == 1, err
    assert out == ""
    assert words in err
    assert "Traceback" not in err


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_interrupted_login_exits_130(
    device: dict[str, str], hoxton_auth_server: AuthServer
) -> None:
    import signal

    process = start("login", "--device", env=device)
    hoxton_auth_server.wait_for_device_code(timeout=60)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)

    assert process.returncode == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err


def test_browser_flag_forces_the_browser_on_a_headless_machine(
    public: dict[str, str], hoxton_auth_server: AuthServer
) -> None:
    env = {**public, "SSH_CONNECTION": "192.0.2.1 50000 192.0.2.2 22"}
    result = run("login", "--browser", env=env)

    assert result.returncode == 0, result.stderr
    assert len(hoxton_auth_server.authorize_requests) == 1


def test_login_prompt_and_logout_url(
    public: dict[str, str], hoxton_auth_server: AuthServer
) -> None:
    assert run("login", "--prompt", "login", env=public).returncode == 0
    (authorize,) = hoxton_auth_server.authorize_requests
    assert authorize["prompt"] == "login"

    logout = run("logout", env=public)

    assert logout.returncode == 0, logout.stderr
    assert len(hoxton_auth_server.revoke_requests) == 1
    assert f"{hoxton_auth_server.domain}/v2/logout?client_id={PUBLIC_CLIENT_ID}" in logout.stderr
    assert run("status", "--check", env=public).returncode == 1


# -- scripting: --version, status --check, token --min-valid -------------------------------


def test_version() -> None:
    from hoxton_auth import __version__

    result = run("--version")

    assert result.returncode == 0
    assert result.stdout.strip() == f"hoxton-auth {__version__}"


def test_status_check(m2m: dict[str, str]) -> None:
    empty = run("status", "--check", env=m2m)
    assert empty.returncode == 1
    assert empty.stdout == ""
    assert "No usable token" in empty.stderr

    token = run("token", env=m2m).stdout.strip()
    ok = run("status", "--check", env=m2m)
    other = run("status", "--check", "--client-id", "someone-else", env=m2m)

    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == ""
    assert token not in ok.stderr
    assert DEFAULT_CLIENT_SECRET not in ok.stderr
    assert other.returncode == 1


def test_token_min_valid_renews_a_short_lived_token(
    m2m: dict[str, str], hoxton_auth_server: AuthServer
) -> None:
    hoxton_auth_server.token_lifetime = 3600
    first = run("token", env=m2m).stdout.strip()
    assert run("token", "--min-valid", "600", env=m2m).stdout.strip() == first
    assert hoxton_auth_server.count("client_credentials") == 1

    hoxton_auth_server.token_lifetime = 7200
    renewed = run("token", "--min-valid", "5400", env=m2m)

    assert renewed.returncode == 0, renewed.stderr
    assert renewed.stdout.strip() != first
    assert hoxton_auth_server.count("client_credentials") == 2


def test_token_min_valid_longer_than_any_token_is_exit_2(
    m2m: dict[str, str], hoxton_auth_server: AuthServer
) -> None:
    hoxton_auth_server.token_lifetime = 3600

    assert_clean_failure(run("token", "--min-valid", "7200", env=m2m), status=2)


# -- every row of the README's exit status table --------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["login", "--port", "-1"],
        ["login", "--port", "65536"],
        ["login", "--port", "99999999999999999999999"],
        ["login", "--port", "http"],
        ["login", "--device", "--browser"],
        ["token", "--min-valid", "-5"],
        ["token", "--no-such-option"],
        [],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = run(*args)

    assert result.returncode == 2, result.stderr
    assert "usage: hoxton-auth" in result.stderr
    assert "Traceback" not in result.stderr
    assert "OverflowError" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["token"], {}, "HOXTON_CLIENT_ID"),
        (["login"], {}, "HOXTON_CLIENT_ID"),
        (["login", "--prompt", "again"], {"HOXTON_CLIENT_ID": "x"}, "prompt"),
        (
            ["login", "--browser"],
            {"HOXTON_CLIENT_ID": "x", "HOXTON_LOGIN_PORT": "-1"},
            "HOXTON_LOGIN_PORT",
        ),
        (
            ["token"],
            {
                "HOXTON_CLIENT_ID": "x",
                "HOXTON_CLIENT_SECRET": "s",
                "HOXTON_AUTH_DOMAIN": "http://example.com",
            },
            "http",
        ),
    ],
)
def test_configuration_errors_exit_2(args: list[str], env: dict[str, str], words: str) -> None:
    result = run(*args, env=env)

    assert_clean_failure(result, status=2)
    assert words in result.stderr
