"""Issue 5, point 5: what hoxton_auth logs, and that no secret is ever in it.

All log output (every logger, DEBUG and up, including urllib3, httpx and
httpcore) is captured while full flows run against a local Auth0-like
server: client credentials, password, authorization code with PKCE,
refresh with rotation, retries, a 401 from the API, refusals, an
unreachable endpoint, damaged cache files, logout. Every secret that took
part (what the client sent, as the server recorded it, and every token it
got back) is then looked for in that output and in the errors' messages.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import requests
from conftest import free_port, pkce_challenge

from hoxton_auth import HoxtonAuth, HoxtonAuthError, HoxtonAuthWarning, InvalidGrantError
from hoxton_auth.testing import DEFAULT_USERNAME, AuthServer

CLIENT_ID = "logging-client"
CLIENT_SECRET = "logging-client-secret-5e1f0a"
USERNAME = "logging-user@example.com"
PASSWORD = "logging-user-password-b7c2d9"
REDIRECT_URI = "http://127.0.0.1:8765/callback"
SECRET_FIELDS = ("client_secret", "password", "code", "code_verifier", "refresh_token", "token")
TOKEN_FIELDS = ("access_token", "refresh_token", "id_token")


class Secrets:
    """Every secret seen during a test, by a name that can be printed."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def add(self, name: str, value: str | None) -> None:
        if not value:
            return
        self.values.setdefault(value, f"{name}#{len(self.values)}")
        # A JWT's header is the same for every token; its signature is not.
        if value.count(".") == 2 and len(value.rsplit(".", 1)[1]) >= 16:
            self.values.setdefault(value.rsplit(".", 1)[1], f"{name}-signature#{len(self.values)}")

    def add_requests(self, requests_seen: Iterable[dict[str, str]]) -> None:
        for fields in requests_seen:
            for name in SECRET_FIELDS:
                self.add(name, fields.get(name))

    def add_cache(self, path: Path) -> None:
        if not path.exists():
            return
        for entry in json.loads(path.read_text())["entries"].values():
            for name in TOKEN_FIELDS:
                self.add(name, entry["token"].get(name))

    def leaks(self, text: str) -> list[str]:
        """Names (never values) of the secrets found in ``text``."""
        return sorted(name for value, name in self.values.items() if value in text)


def all_output(caplog: pytest.LogCaptureFixture, messages: Iterable[str]) -> str:
    records = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.args!r} {r.exc_text or ''}"
        for r in caplog.records
    )
    return "\n".join([caplog.text, records, *messages])


def is_ours(record: logging.LogRecord) -> bool:
    """The library's records, not the test server's (``hoxton_auth.testing``)."""
    return record.name == "hoxton_auth" or (
        record.name.startswith("hoxton_auth.") and not record.name.startswith("hoxton_auth.testing")
    )


def pkce_code(server: AuthServer, client_id: str) -> tuple[str, str]:
    """An authorization code from ``/authorize`` (auto-approved) and its PKCE verifier."""
    verifier = secrets.token_urlsafe(48)
    challenge = pkce_challenge(verifier)
    response = requests.get(
        server.domain + "/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid offline_access",
            "audience": "https://api.hoxton.cloud",
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
        timeout=10,
    )
    code = parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]
    return code, verifier


def test_full_flows_log_no_secret(
    caplog: pytest.LogCaptureFixture, isolated_cache: Path, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: every library's output
    found = Secrets()
    found.add("client_secret", CLIENT_SECRET)
    found.add("password", PASSWORD)
    messages: list[str] = []
    tokens: list[str] = []

    def expect_failure(auth: HoxtonAuth) -> None:
        with pytest.raises(HoxtonAuthError) as caught:
            auth.get_token()
        messages.extend([str(caught.value), repr(caught.value), str(caught.value.__cause__)])

    with AuthServer() as server:
        server.add_client(CLIENT_ID, CLIENT_SECRET)
        server.add_user(USERNAME, PASSWORD)
        common: dict[str, Any] = {"domain": server.domain, "max_attempts": 3}

        # Client credentials, through every adapter; a second object hits the cache.
        machine = HoxtonAuth(CLIENT_ID, CLIENT_SECRET, **common)
        assert requests.get(server.api_url, auth=machine, timeout=10).status_code == 200
        with httpx.Client(auth=machine) as client:
            assert client.get(server.api_url).status_code == 200

        async def async_call() -> int:
            async with httpx.AsyncClient(auth=machine) as client:
                return (await client.get(server.api_url)).status_code

        assert asyncio.run(async_call()) == 200
        tokens.append(HoxtonAuth(CLIENT_ID, CLIENT_SECRET, **common).get_token())

        # Retries (WARNING), then the API's 401 on a token we thought fresh.
        machine.invalidate()
        server.fail_next(2, status=503)
        tokens.append(machine.get_token())
        server.expire_access_tokens()
        assert requests.get(server.api_url, auth=machine, timeout=10).status_code == 200
        tokens.append(machine.get_token())

        # Password grant with a refresh token; a refresh with rotation; a
        # rejected refresh token echoed back by the server, then the password again.
        user = HoxtonAuth(
            CLIENT_ID,
            CLIENT_SECRET,
            username=USERNAME,
            password=PASSWORD,
            scope="openid offline_access",
            **common,
        )
        tokens.append(user.get_token())
        found.add_cache(isolated_cache)
        user.invalidate()
        tokens.append(user.get_token())
        found.add_cache(isolated_cache)
        (rotated,) = [  # the refresh token the next refresh will send
            entry["token"]["refresh_token"]
            for entry in json.loads(isolated_cache.read_text())["entries"].values()
            if entry["meta"]["subject"].startswith("password:")
        ]
        server.fail_next(
            1,
            status=403,
            body={"error": "invalid_grant", "error_description": f"Unknown token {rotated}"},
        )
        user.invalidate()
        tokens.append(user.get_token())
        found.add_cache(isolated_cache)

        # Authorization code with PKCE, then logout (revocation of its refresh token).
        code, verifier = pkce_code(server, CLIENT_ID)
        found.add("code", code)
        found.add("code_verifier", verifier)
        session = HoxtonAuth(
            CLIENT_ID,
            CLIENT_SECRET,
            code=code,
            redirect_uri=REDIRECT_URI,
            code_verifier=verifier,
            scope="openid offline_access",
            **common,
        )
        tokens.append(session.get_token())
        found.add_cache(isolated_cache)
        session.logout()

        # Refusals: a wrong password, a wrong secret, a server echoing the secret.
        expect_failure(
            HoxtonAuth(
                CLIENT_ID, CLIENT_SECRET, username=USERNAME, password=PASSWORD + "-wrong", **common
            )
        )
        found.add("password", PASSWORD + "-wrong")
        expect_failure(HoxtonAuth(CLIENT_ID, CLIENT_SECRET + "-wrong", cache=None, **common))
        found.add("client_secret", CLIENT_SECRET + "-wrong")
        server.fail_next(
            1,
            status=400,
            body={"error": "invalid_request", "error_description": f"bad {CLIENT_SECRET}"},
        )
        expect_failure(HoxtonAuth(CLIENT_ID, CLIENT_SECRET, cache=None, **common))

        # Damaged cache files: WARNINGs that name the file, not its contents.
        garbage = tmp_path / "garbage" / "tokens.json"
        garbage.parent.mkdir()
        garbage.write_text('{"entries": {"x": ' + json.dumps(CLIENT_SECRET))
        garbage.chmod(0o600)
        with pytest.warns(HoxtonAuthWarning, match="not valid JSON") as warned:
            tokens.append(HoxtonAuth(CLIENT_ID, CLIENT_SECRET, cache=garbage, **common).get_token())
        messages.extend(str(w.message) for w in warned)  # scanned for secrets too
        damaged = tmp_path / "damaged" / "tokens.json"
        damaged.parent.mkdir()
        planted = "planted-token-" + secrets.token_hex(8)
        found.add("planted", planted)
        bad_entry = {
            "meta": {"client_id": CLIENT_ID},
            "token": {"access_token": planted + "\r\n", "expires_at": 9e9, "obtained_at": 0},
        }
        damaged.write_text(json.dumps({"version": 1, "entries": {"0" * 32: bad_entry}}))
        damaged.chmod(0o600)
        with pytest.warns(HoxtonAuthWarning, match="skipped") as warned:
            tokens.append(HoxtonAuth(CLIENT_ID, CLIENT_SECRET, cache=damaged, **common).get_token())
        messages.extend(str(w.message) for w in warned)

        found.add_requests(server.token_requests)
        found.add_requests(server.revoke_requests)

    # Unreachable: the error carries the network exception as its cause.
    expect_failure(
        HoxtonAuth(
            CLIENT_ID,
            CLIENT_SECRET,
            domain=f"http://127.0.0.1:{free_port()}",
            max_attempts=2,
            cache=None,
        )
    )
    for token in tokens:
        found.add("access_token", token)

    # The scan is only worth something if the secrets really took part.
    names = " ".join(found.values.values())
    for kind in ("client_secret", "password", "code", "code_verifier", "refresh_token", "token"):
        assert f"{kind}#" in names, kind
    assert "id_token#" in names
    assert "access_token#" in names

    assert found.leaks(all_output(caplog, messages)) == []

    ours = [r for r in caplog.records if is_ours(r)]
    debug = " | ".join(r.getMessage() for r in ours if r.levelno == logging.DEBUG)
    warning = " | ".join(r.getMessage() for r in ours if r.levelno == logging.WARNING)
    for event in ("requesting a token", "token received", "cache miss", "cache hit"):
        assert event in debug, event
    assert "retry 1 of 2" in warning
    assert "retry 2 of 2" in warning
    assert "refresh_token grant rejected (Unknown token ***)" in warning  # echo masked
    assert "not valid JSON" in warning
    assert "skipped" in warning
    assert not [r for r in ours if r.levelno >= logging.ERROR]


def test_the_scan_finds_a_leak(caplog: pytest.LogCaptureFixture) -> None:
    """A scanner that cannot fail proves nothing: plant a secret and find it."""
    caplog.set_level(logging.DEBUG)
    found = Secrets()
    found.add("client_secret", CLIENT_SECRET)
    found.add("access_token", "aaaa.bbbb.cccccccccccccccccccc")

    logging.getLogger("hoxton_auth").debug("sent %s", {"client_secret": CLIENT_SECRET})
    logging.getLogger("hoxton_auth").debug("signature cccccccccccccccccccc")

    assert found.leaks(all_output(caplog, [])) == [
        "access_token-signature#2",
        "client_secret#0",
    ]


def test_retries_are_warnings_and_fetches_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="hoxton_auth")
    with AuthServer() as server:
        server.fail_next(1, status=429, headers={"Retry-After": "0"})
        auth = HoxtonAuth(CLIENT_ID, CLIENT_SECRET, domain=server.domain, cache=None)
        server.add_client(CLIENT_ID, CLIENT_SECRET)

        auth.get_token()

    levels = {(r.levelname, r.getMessage().split(":")[0]) for r in caplog.records}
    assert ("DEBUG", "requesting a token") in levels
    assert ("DEBUG", "token received") in levels
    retries = [r for r in caplog.records if "retry 1 of" in r.getMessage()]
    assert [r.levelname for r in retries] == ["WARNING"]
    assert all(r.name == "hoxton_auth" for r in caplog.records if is_ours(r))
    assert f"{server.domain}/oauth/token" in retries[0].getMessage()
    assert "HTTP 429" in retries[0].getMessage()


def test_a_refused_grant_is_not_logged_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A refusal is the caller's error to handle: raised, not also logged loudly."""
    caplog.set_level(logging.DEBUG, logger="hoxton_auth")
    with AuthServer() as server:
        auth = HoxtonAuth(
            CLIENT_ID,
            CLIENT_SECRET,
            username=DEFAULT_USERNAME,
            password="nope",
            cache=None,
            domain=server.domain,
        )
        server.add_client(CLIENT_ID, CLIENT_SECRET)

        with pytest.raises(InvalidGrantError):
            auth.get_token()

    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
