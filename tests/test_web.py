"""Web back ends (issue 21): begin in one worker, finish in another, resume in any.

Real server (``hoxton_auth.testing.AuthServer``, several users, a token
endpoint as slow as a real one), real caches (file, Redis) and real worker
processes (``tests/_worker.py web``). The browser's part, following
``/authorize`` to the app's callback URL, is one HTTP request here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from _worker import Worker
from conftest import release_together

from hoxton_auth import (
    AuthorizationCodeAuth,
    ConfigError,
    FileTokenCache,
    LoginError,
    LoginRequest,
    NotLoggedInError,
    RedisTokenCache,
    TokenCache,
)
from hoxton_auth.testing import AuthServer

CALLBACK = "https://app.example/auth/callback"
WEB_CLIENT_ID = "web-app"
WEB_CLIENT_SECRET = "web-app-secret-8b1f2e"
USERS = {"alice@example.com": "alice-password-Wq81", "bob@example.com": "bob-password-Zt42"}
TOKEN_DELAY = 0.1  # a real identity provider's answer time (DESIGN.md)
WORKERS_PER_USER = 3
Spawn = Callable[[str, "dict[str, Any]"], Worker]


@pytest.fixture
def server() -> Iterator[AuthServer]:
    with AuthServer(token_delay=TOKEN_DELAY) as running:
        for username, password in USERS.items():
            running.add_user(username, password)
        running.add_client(WEB_CLIENT_ID, WEB_CLIENT_SECRET, redirect_uris=[CALLBACK])
        yield running


def sub_of(access_token: str) -> str:
    sub: str = jwt.decode(access_token, options={"verify_signature": False})["sub"]
    return sub


def sub_of_user(server: AuthServer, username: str) -> str:
    """The test server's ``sub`` of a user (``_state.User.subject``)."""
    return "auth0|" + hashlib.sha256(username.encode()).hexdigest()[:24]


def log_in_at_authorize(request: LoginRequest, username: str) -> str:
    """The browser's part: the user approves at ``/authorize``; the callback URL it lands on."""
    url = f"{request.url}&{urlencode({'login_hint': username})}"
    response = httpx.get(url, follow_redirects=False)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(CALLBACK)
    return location


def begin(server: AuthServer) -> LoginRequest:
    return AuthorizationCodeAuth.begin(WEB_CLIENT_ID, redirect_uri=CALLBACK, domain=server.domain)


# -- one process ----------------------------------------------------------------------


def test_begin_makes_the_authorize_url_and_survives_json(server: AuthServer) -> None:
    request = AuthorizationCodeAuth.begin(
        WEB_CLIENT_ID,
        redirect_uri=CALLBACK,
        scope=["openid", "offline_access"],
        domain=server.domain,
        timeout=5.0,  # a setting of finish(): accepted, not kept
    )
    url = urlsplit(request.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{server.domain}/authorize"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    digest = hashlib.sha256(request.code_verifier.encode()).digest()
    assert query == {
        "response_type": "code",
        "client_id": WEB_CLIENT_ID,
        "redirect_uri": CALLBACK,
        "audience": "https://api.hoxton.cloud",
        "scope": "openid offline_access",
        "state": request.state,
        "code_challenge": base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    assert LoginRequest.from_json(request.to_json()) == request
    for secret in (request.state, request.code_verifier):
        assert secret not in repr(request)
    assert begin(server).state != request.state


def test_a_login_request_that_is_not_one_is_a_clear_error() -> None:
    for text in ("{", "[]", json.dumps({"format": "something else"})):
        with pytest.raises(ConfigError, match="not a LoginRequest"):
            LoginRequest.from_json(text)
    with pytest.raises(ConfigError, match="redirect_uri"):
        AuthorizationCodeAuth.begin(WEB_CLIENT_ID, redirect_uri="app/callback")
    with pytest.raises(ConfigError, match="does not take colour"):
        AuthorizationCodeAuth.begin(WEB_CLIENT_ID, redirect_uri=CALLBACK, colour="red")


def test_finish_exchanges_once_and_resume_finds_the_session(server: AuthServer) -> None:
    request = begin(server)
    callback = log_in_at_authorize(request, "alice@example.com")
    text = request.to_json()

    auth = LoginRequest.from_json(text).finish(callback, WEB_CLIENT_SECRET)
    token = auth.get_token()
    assert sub_of(token) == sub_of_user(server, "alice@example.com")
    session_id = auth.session_id
    assert session_id is not None
    assert session_id not in repr(auth)

    with pytest.raises(LoginError, match="already finished"):
        LoginRequest.from_json(text).finish(callback, WEB_CLIENT_SECRET)
    assert server.count("authorization_code") == 1

    resumed = AuthorizationCodeAuth.resume(
        session_id, WEB_CLIENT_ID, WEB_CLIENT_SECRET, domain=server.domain
    )
    assert resumed.get_token() == token
    assert resumed.session_id == session_id
    assert len(server.token_requests) == 1


def test_a_wrong_state_or_an_error_exchanges_nothing(server: AuthServer) -> None:
    request = begin(server)
    callback = log_in_at_authorize(request, "alice@example.com")
    other = begin(server)

    with pytest.raises(LoginError, match="state does not match"):
        other.finish(callback, WEB_CLIENT_SECRET)
    forged = callback.replace(f"state={request.state}", "state=forged")
    with pytest.raises(LoginError, match="state does not match"):
        request.finish(forged, WEB_CLIENT_SECRET)
    denied = f"{CALLBACK}?error=access_denied&error_description=No%20thanks&state={request.state}"
    with pytest.raises(LoginError, match="access_denied: No thanks"):
        request.finish(denied, WEB_CLIENT_SECRET)
    assert server.token_requests == []
    # The real callback still works: nothing above used it up.
    assert request.finish(callback, WEB_CLIENT_SECRET).get_token()


def test_unknown_tampered_or_logged_out_sessions_and_wrong_secrets_are_misses(
    server: AuthServer,
) -> None:
    request = begin(server)
    auth = request.finish(log_in_at_authorize(request, "alice@example.com"), WEB_CLIENT_SECRET)
    session_id = auth.session_id
    assert session_id is not None
    sent = len(server.token_requests)

    def resume(session: str, secret: str = WEB_CLIENT_SECRET) -> AuthorizationCodeAuth:
        return AuthorizationCodeAuth.resume(session, WEB_CLIENT_ID, secret, domain=server.domain)

    for wrong in ("", "unknown", session_id[:-1], session_id + "x", session_id.upper()):
        with pytest.raises(NotLoggedInError, match="no such web session"):
            resume(wrong)
    with pytest.raises(NotLoggedInError):
        resume(session_id, "not-the-client-secret")
    assert len(server.token_requests) == sent

    resume(session_id).logout()
    assert len(server.revoke_requests) == 1
    with pytest.raises(NotLoggedInError):
        resume(session_id)


def test_two_logins_of_one_user_are_two_sessions(server: AuthServer) -> None:
    def log_in() -> AuthorizationCodeAuth:
        request = begin(server)
        callback = log_in_at_authorize(request, "alice@example.com")
        return request.finish(callback, WEB_CLIENT_SECRET)

    laptop, phone = log_in(), log_in()
    assert laptop.session_id != phone.session_id
    for session in (laptop.session_id, phone.session_id):
        assert session is not None
        assert sub_of_user(server, "alice@example.com") not in session
    laptop.logout()
    resumed = AuthorizationCodeAuth.resume(
        phone.session_id or "", WEB_CLIENT_ID, WEB_CLIENT_SECRET, domain=server.domain
    )
    resumed.invalidate()
    assert sub_of(resumed.get_token()) == sub_of_user(server, "alice@example.com")
    assert server.reuse_detected == 0


# -- many worker processes, file cache and Redis ----------------------------------------


@pytest.fixture(params=["file", "redis"])
def cache_args(request: pytest.FixtureRequest, isolated_cache: Path) -> dict[str, Any]:
    """How workers open the shared cache."""
    if request.param == "file":
        return {"cache": str(isolated_cache)}
    url = request.getfixturevalue("redis_url")
    return {"redis": url, "prefix": f"test-{uuid.uuid4().hex}:"}


def open_cache(args: dict[str, Any]) -> TokenCache:
    if "redis" in args:
        return RedisTokenCache(args["redis"], prefix=args["prefix"])
    return FileTokenCache(args["cache"])


def test_begin_finish_resume_across_workers_renew_once_and_log_out_for_all(
    server: AuthServer, spawn: Spawn, cache_args: dict[str, Any], tmp_path: Path
) -> None:
    common = {**cache_args, "client_id": WEB_CLIENT_ID, "domain": server.domain}
    secret = {"client_secret": WEB_CLIENT_SECRET}
    sessions: dict[str, Path] = {}
    for number, username in enumerate(USERS):
        request = begin(server)  # this process begins...
        request_file = tmp_path / f"request-{number}.json"
        request_file.write_text(request.to_json())
        sessions[username] = tmp_path / f"session-{number}"
        finish = {
            **common,
            **secret,
            "step": "finish",
            "request_file": str(request_file),
            "callback_url": log_in_at_authorize(request, username),
            "session_file": str(sessions[username]),
        }
        # ...two workers finish the same callback at once (a replay): one wins.
        results = release_together([spawn("web", finish), spawn("web", finish)])
        assert [r for r in results if "error" in r] == [{"error": "LoginError"}]
        (won,) = [r for r in results if "sub" in r]
        assert won["sub"] == sub_of_user(server, username)
    assert server.count("authorization_code") == len(USERS)

    # Every access token is dropped: the next get_token of each session is a refresh.
    cache = open_cache(common)
    for session_file in sessions.values():
        AuthorizationCodeAuth.resume(
            session_file.read_text(), WEB_CLIENT_ID, cache=cache, domain=server.domain, **secret
        ).invalidate()

    resume = {**common, **secret, "step": "resume"}
    workers = [
        spawn("web", {**resume, "session_file": str(sessions[username])})
        for username in USERS
        for _ in range(WORKERS_PER_USER)
    ]
    results = release_together(workers)
    for index, username in enumerate(USERS):
        mine = results[index * WORKERS_PER_USER : (index + 1) * WORKERS_PER_USER]
        assert {r["sub"] for r in mine} == {sub_of_user(server, username)}  # never another's
        assert len({r["access"] for r in mine}) == 1  # one renewal, shared
    assert server.count("refresh_token") == len(USERS)
    assert server.reuse_detected == 0

    alice, bob = (str(sessions[username]) for username in USERS)
    tampered = release_together([spawn("web", {**resume, "session_file": alice, "tamper": "x"})])
    assert tampered == [{"error": "NotLoggedInError"}]
    logout = release_together([spawn("web", {**resume, "session_file": alice, "logout": True})])
    assert logout[0]["sub"] == sub_of_user(server, "alice@example.com")
    sent = len(server.token_requests)
    after = release_together(
        [
            spawn("web", {**resume, "session_file": alice}),
            spawn("web", {**resume, "session_file": bob}),
        ]
    )
    assert after[0] == {"error": "NotLoggedInError"}
    assert after[1]["sub"] == sub_of_user(server, "bob@example.com")
    assert len(server.token_requests) == sent  # bob's token was fresh; alice's is gone


def test_status_lists_web_sessions_but_not_used_login_states(
    server: AuthServer, isolated_cache: Path
) -> None:
    import subprocess
    import sys

    request = begin(server)
    request.finish(log_in_at_authorize(request, "alice@example.com"), WEB_CLIENT_SECRET)
    assert len(FileTokenCache(isolated_cache).entries()) == 2  # the session and the used state

    status = subprocess.run(
        [sys.executable, "-m", "hoxton_auth", "status", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    (entry,) = json.loads(status.stdout)["entries"]
    assert entry["grant"] == "authorization_code (web-session)"
    assert entry["refresh_token"] is True
