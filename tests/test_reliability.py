"""Issue 5: the token endpoint fails, answers garbage or rate-limits: ride it out or fail clearly.

Every test runs against a real local server (``hoxton_auth.testing.AuthServer``
with its fault injection: ``fail_next``, ``fail_always``) that misbehaves on
cue, through the real transports (requests, httpx, httpx
async). Backoff is made tiny through ``ClientConfig`` so retries are fast;
``Retry-After`` waits are real and checked by when the server saw requests
arrive (a lower bound, which a slow machine cannot break).
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import hashlib
import json
import random
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import requests
from _worker import Worker
from conftest import TEST_JWT_KEY, free_port, release_together

from hoxton_auth import (
    CacheEntry,
    FileTokenCache,
    HoxtonAuth,
    HoxtonAuthError,
    HoxtonAuthWarning,
    InvalidGrantError,
    LoginRequiredError,
    MemoryTokenCache,
    MfaRequiredError,
    PasswordAuth,
    Token,
    TokenEndpointUnreachableError,
    TokenRequestError,
)
from hoxton_auth._config import ClientConfig
from hoxton_auth._flow import request_token
from hoxton_auth._grants import ClientCredentials, Grant, Password
from hoxton_auth._httpx import send_with_httpx
from hoxton_auth._identity import Identity
from hoxton_auth._outage import FAILURE_META, during_cooldown, failure_note, shared_failure
from hoxton_auth._requests import send_with_requests
from hoxton_auth._session import TokenManager
from hoxton_auth._wire import (
    Backoff,
    TokenRequest,
    TokenResponse,
    TransportFailure,
    error_from_response,
)
from hoxton_auth.testing import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    AuthServer,
    cache_key,
    cached_entry,
)

CLIENT_ID = "reliability-client"
SECRET = "reliability-client-secret-7f3a9c"
REFRESH = "reliability-refresh-token-51d0e8"

Fetch = Callable[[TokenManager], str]


def _fetch_requests(manager: TokenManager) -> str:
    return manager.get_token(send_with_requests)


def _fetch_httpx(manager: TokenManager) -> str:
    return manager.get_token(send_with_httpx)


def _fetch_httpx_async(manager: TokenManager) -> str:
    return asyncio.run(manager.aget_token(send_with_httpx))


TRANSPORTS = pytest.mark.parametrize(
    "fetch",
    [_fetch_requests, _fetch_httpx, _fetch_httpx_async],
    ids=["requests", "httpx", "httpx-async"],
)
TIMEOUT_ERRORS: dict[Fetch, tuple[type[BaseException], ...]] = {
    _fetch_requests: (requests.Timeout,),
    _fetch_httpx: (httpx.TimeoutException,),
    _fetch_httpx_async: (httpx.TimeoutException,),
}
REFUSED_ERRORS: dict[Fetch, tuple[type[BaseException], ...]] = {
    _fetch_requests: (requests.ConnectionError,),
    _fetch_httpx: (httpx.ConnectError,),
    _fetch_httpx_async: (httpx.ConnectError,),
}


JSON = {"Content-Type": "application/json"}
Spawn = Callable[[str, "dict[str, Any]"], Worker]


@pytest.fixture
def server() -> Iterator[AuthServer]:
    """The test server, knowing this module's client; faults are queued per test."""
    with AuthServer() as running:
        running.add_client(CLIENT_ID, SECRET)
        yield running


def error_body(error: str, description: str) -> dict[str, str]:
    """An Auth0-shaped JSON error."""
    return {"error": error, "error_description": description}


def token_body(server: AuthServer) -> dict[str, Any]:
    """A token answer with a fresh access token of this module's client."""
    access_token = server.mint_access_token(subject=f"{CLIENT_ID}@clients")
    return {"access_token": access_token, "token_type": "Bearer", "expires_in": 3600}


def wall_times(server: AuthServer) -> list[float]:
    """``time.time()`` of each token request's arrival (from its monotonic time)."""
    offset = time.time() - time.monotonic()
    return [arrived + offset for arrived in server.token_request_times]


def make_manager(
    domain: str, *, grant: Grant | None = None, seed: str | None = None, **settings: Any
) -> TokenManager:
    """A token manager with fast backoff (what ``HoxtonAuth`` builds, minus the adapters)."""
    options: dict[str, Any] = {
        "timeout": 5.0,
        "retry_deadline": 30.0,
        "max_attempts": 5,
        "backoff_base": 0.01,
        "backoff_cap": 0.02,
    }
    options.update(settings)
    config = ClientConfig(CLIENT_ID, SECRET, domain=domain, **options)
    if grant is None and seed is None:
        grant = ClientCredentials()
    meta = {"token_url": config.token_url, "client_id": CLIENT_ID}
    identity = Identity(hashlib.sha256(domain.encode()).hexdigest(), meta)  # any key will do
    return TokenManager(config, grant, MemoryTokenCache(), identity, seed)


def assert_clear(message: str, *parts: str) -> None:
    """Every part is in the message, and no secret is."""
    for part in parts:
        assert part in message, (part, message)
    for secret in (SECRET, REFRESH):
        assert secret not in message


def seeded() -> random.Random:
    return random.Random(0)  # noqa: S311  backoff jitter, not cryptography


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


# -- riding it out -----------------------------------------------------------


@TRANSPORTS
def test_503s_then_success_gives_the_token(server: AuthServer, fetch: Fetch) -> None:
    server.fail_next(3, status=503, body=error_body("temporarily_unavailable", "Try later"))

    token = fetch(make_manager(server.domain))

    assert claims(token)["sub"] == f"{CLIENT_ID}@clients"
    assert server.count() == 4
    assert all(r["grant_type"] == "client_credentials" for r in server.token_requests)


@TRANSPORTS
def test_5xx_of_every_shape_then_success(server: AuthServer, fetch: Fetch) -> None:
    html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    server.fail_next(status=502, body=html, headers={"Content-Type": "text/html"})
    server.fail_next(
        status=500, body=b"Internal Server Error", headers={"Content-Type": "text/plain"}
    )
    server.fail_next(status=504, body=b"", headers=JSON)
    server.fail_next(status=520, body=b"origin error", headers=JSON)
    server.fail_next(status=408, body=b"", headers=JSON)

    fetch(make_manager(server.domain, max_attempts=6))

    assert server.count() == 6


@TRANSPORTS
def test_truncated_body_is_a_network_failure_and_is_retried(
    server: AuthServer, fetch: Fetch
) -> None:
    server.fail_next(2, status=200, body=token_body(server), truncate=True)

    token = fetch(make_manager(server.domain))

    assert claims(token)["exp"] > time.time()
    assert server.count() == 3


@TRANSPORTS
def test_hang_up_without_an_answer_is_retried(server: AuthServer, fetch: Fetch) -> None:
    server.fail_next(2, disconnect=True)

    fetch(make_manager(server.domain))

    assert server.count() == 3


@TRANSPORTS
def test_429_retry_after_seconds_is_honoured(server: AuthServer, fetch: Fetch) -> None:
    server.fail_next(
        status=429,
        body=error_body("too_many_requests", "Slow down"),
        headers={"Retry-After": "1"},
    )

    fetch(make_manager(server.domain))

    first, second = server.token_request_times
    # The client waited at least Retry-After after the 429 arrived, so the
    # retry reached the server at least 1 s after the first request did.
    assert second - first >= 1.0


def test_429_retry_after_http_date_is_honoured(server: AuthServer) -> None:
    not_before = float(int(time.time()) + 2)  # an HTTP-date has whole seconds
    date = email.utils.formatdate(not_before, usegmt=True)
    server.fail_next(status=429, body=b"{}", headers={**JSON, "Retry-After": date})

    _fetch_requests(make_manager(server.domain))

    _, second = wall_times(server)
    assert second >= not_before


def test_retry_after_beyond_the_deadline_fails_at_once(server: AuthServer) -> None:
    server.fail_next(
        status=429,
        body=error_body("too_many_requests", "Quota used up"),
        headers={"Retry-After": "3600"},
    )

    with pytest.raises(TokenRequestError) as caught:
        _fetch_requests(make_manager(server.domain, retry_deadline=30.0))

    assert server.count() == 1
    assert caught.value.status_code == 429
    assert caught.value.error == "too_many_requests"
    assert_clear(
        str(caught.value),
        "too_many_requests: Quota used up",
        "HTTP 429",
        server.token_url,
        "1 attempt",
        "Retry-After 3600s would pass the 30s retry_deadline",
    )


def test_hoxton_auth_retries_with_its_default_backoff(server: AuthServer) -> None:
    server.fail_next(status=503, body=error_body("temporarily_unavailable", "Try later"))
    auth = HoxtonAuth(CLIENT_ID, SECRET, domain=server.domain, cache=None)

    token = auth.get_token()

    assert claims(token)["sub"] == f"{CLIENT_ID}@clients"
    assert server.count() == 2


# -- failing clearly --------------------------------------------------------------


@TRANSPORTS
def test_503_until_max_attempts_says_everything(server: AuthServer, fetch: Fetch) -> None:
    server.fail_always(
        status=503, body=error_body("temporarily_unavailable", "The tenant is being upgraded")
    )

    with pytest.raises(TokenRequestError) as caught:
        fetch(make_manager(server.domain, max_attempts=4))

    error = caught.value
    assert server.count() == 4
    assert (error.status_code, error.error, error.attempts) == (503, "temporarily_unavailable", 4)
    assert error.error_description == "The tenant is being upgraded"
    assert error.url == server.token_url
    assert_clear(
        str(error),
        "temporarily_unavailable: The tenant is being upgraded",
        "HTTP 503",
        server.token_url,
        "4 attempts",
        "max_attempts=4",
    )


def test_the_deadline_stops_retries(server: AuthServer) -> None:
    server.fail_always(status=503, body=error_body("temporarily_unavailable", "Down"))
    manager = make_manager(
        server.domain, retry_deadline=0.5, max_attempts=1000, backoff_base=0.1, backoff_cap=0.2
    )

    with pytest.raises(TokenRequestError) as caught:
        _fetch_requests(manager)

    assert 1 <= caught.value.attempts < 1000
    assert caught.value.attempts == server.count()
    assert_clear(str(caught.value), "would pass the 0.5s retry_deadline", "HTTP 503")


@TRANSPORTS
def test_slow_endpoint_beyond_timeout(server: AuthServer, fetch: Fetch) -> None:
    server.token_delay = 30.0  # ended when the server stops

    with pytest.raises(TokenEndpointUnreachableError) as caught:
        fetch(make_manager(server.domain, timeout=0.3, max_attempts=2))

    error = caught.value
    assert error.attempts == 2
    assert isinstance(error.__cause__, TIMEOUT_ERRORS[fetch])
    assert isinstance(error, HoxtonAuthError)
    assert server.wait_for_token_requests(2)
    assert_clear(str(error), server.token_url, "after 2 attempts", "max_attempts=2")


@TRANSPORTS
def test_connection_refused(fetch: Fetch) -> None:
    domain = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(TokenEndpointUnreachableError) as caught:
        fetch(make_manager(domain, max_attempts=3))

    error = caught.value
    assert (error.attempts, error.url) == (3, domain + "/oauth/token")
    assert isinstance(error.__cause__, REFUSED_ERRORS[fetch])
    assert_clear(str(error), domain + "/oauth/token", "after 3 attempts")


CLIENT_ERRORS = [
    (400, "invalid_request", "Missing required parameter: audience"),
    (400, "invalid_scope", "Scope not allowed"),
    (401, "invalid_client", "Client authentication failed"),
    (403, "access_denied", "Unauthorized"),
    (403, "unauthorized_client", "Grant type not allowed for this client"),
]


@TRANSPORTS
@pytest.mark.parametrize(("status", "code", "description"), CLIENT_ERRORS)
def test_client_errors_are_never_retried(
    server: AuthServer, fetch: Fetch, status: int, code: str, description: str
) -> None:
    # The server echoes the secret back: the message must mask it.
    server.fail_always(
        status=status, body=error_body(code, f"{description} (client_secret={SECRET})")
    )

    with pytest.raises(TokenRequestError) as caught:
        fetch(make_manager(server.domain))

    error = caught.value
    assert server.count() == 1
    assert (error.status_code, error.error, error.attempts) == (status, code, 1)
    assert error.error_description == f"{description} (client_secret=***)"
    assert_clear(
        str(error), f"{code}: {description}", f"HTTP {status}", server.token_url, "1 attempt"
    )


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 501, 505])
def test_other_final_statuses_are_not_retried(server: AuthServer, status: int) -> None:
    server.fail_always(
        status=status,
        body=b"<html><title>Nope</title></html>",
        headers={"Content-Type": "text/html"},
    )

    with pytest.raises(TokenRequestError) as caught:
        _fetch_requests(make_manager(server.domain))

    assert server.count() == 1
    assert caught.value.status_code == status
    assert caught.value.error is None
    assert_clear(str(caught.value), f"HTTP {status}", "text/html", "Nope", server.token_url)


def test_invalid_grant_is_final_and_says_so(server: AuthServer) -> None:
    server.fail_always(status=403, body=error_body("invalid_grant", "Wrong email or password."))

    with pytest.raises(InvalidGrantError) as caught:
        _fetch_requests(make_manager(server.domain))

    assert server.count() == 1
    assert str(caught.value).startswith("invalid_grant: Wrong email or password. (HTTP 403)")


def test_rejected_refresh_token_means_log_in_again(server: AuthServer) -> None:
    server.fail_always(
        status=403, body=error_body("invalid_grant", f"Unknown or invalid refresh token {REFRESH}")
    )

    with pytest.raises(LoginRequiredError) as caught:
        _fetch_requests(make_manager(server.domain, seed=REFRESH))

    assert server.count() == 1
    assert server.token_requests[0]["refresh_token"] == REFRESH
    assert_clear(str(caught.value), "invalid_grant", "HTTP 403", "log in again")


def test_html_error_page_after_retries(server: AuthServer) -> None:
    page = b"<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head></html>"
    server.fail_always(status=503, body=page, headers={"Content-Type": "text/html; charset=utf-8"})

    with pytest.raises(TokenRequestError) as caught:
        _fetch_requests(make_manager(server.domain, max_attempts=2))

    assert caught.value.error is None
    assert_clear(
        str(caught.value),
        "HTTP 503",
        "text/html",
        "503 Service Unavailable",
        server.token_url,
        "2 attempts",
    )


# -- malformed 2xx answers: never retried, always a TokenRequestError -------------

ACCESS_TOKEN_FRAGMENT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0cnVuY2F0ZWQifQ"
GARBAGE_200 = {
    "empty": b"",
    "text": b"OK",
    "html": b"<html><body>Welcome to the hotel wifi</body></html>",
    "cut-json": b'{"access_token": "' + ACCESS_TOKEN_FRAGMENT.encode(),
    "list": b"[1, 2, 3]",
    "string": b'"token"',
    "no-access-token": b'{"token_type": "Bearer", "expires_in": 3600}',
    "mac-token": b'{"access_token": "abc", "token_type": "mac"}',
    "number-token": b'{"access_token": 12345}',
    "header-injection": b'{"access_token": "abc\\r\\nX-Evil: 1"}',
    "deep": b"[" * 100_000,
    "huge": b'{"access_token": "' + b"a" * (2 * 1024 * 1024) + b'"}',
    "latin-1": b'{"access_token": "caf\xe9"}',
}


@TRANSPORTS
@pytest.mark.parametrize("body", GARBAGE_200.values(), ids=GARBAGE_200.keys())
def test_garbage_200_is_a_clear_error(server: AuthServer, fetch: Fetch, body: bytes) -> None:
    server.fail_always(status=200, body=body, headers=JSON)

    with pytest.raises(TokenRequestError) as caught:
        fetch(make_manager(server.domain))

    assert server.count() == 1
    assert caught.value.status_code == 200
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ or caught.value.__context__ is None
    assert_clear(str(caught.value), server.token_url, "HTTP 200", "1 attempt")
    assert ACCESS_TOKEN_FRAGMENT not in str(caught.value)


USABLE_200 = {
    "expires-in-string": {"expires_in": "3600"},
    "expires-in-negative": {"expires_in": -5},
    "expires-in-absurd": {"expires_in": 10**30},
    "expires-in-huge-int": {"expires_in": 10**400},
    "expires-in-null": {"expires_in": None},
    "lower-case-bearer": {"token_type": "bearer"},
    "jwt-without-exp": {"access_token": jwt.encode({"sub": "x"}, TEST_JWT_KEY, algorithm="HS256")},
    "jwt-broken-payload": {"access_token": "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln"},
    "jwt-exp-a-string": {
        "access_token": jwt.encode({"exp": "tomorrow"}, TEST_JWT_KEY, algorithm="HS256")
    },
    "opaque-token": {"access_token": "opaque-0123456789abcdef"},
    "unknown-fields": {"x-extra": [1, {"a": None}]},
}


@pytest.mark.parametrize("extra", USABLE_200.values(), ids=USABLE_200.keys())
def test_odd_but_usable_answers_give_a_token(server: AuthServer, extra: dict[str, Any]) -> None:
    data = token_body(server)
    data.update(extra)
    server.fail_always(status=200, body=json.dumps(data).encode(), headers=JSON)

    token = _fetch_requests(make_manager(server.domain))

    same = token == data["access_token"]  # not compared in the assert: no token in output
    assert same


# -- the flow's own arithmetic --------------------------------------------------------


def test_a_retry_never_outlives_the_deadline() -> None:
    config = ClientConfig(CLIENT_ID, SECRET, timeout=30.0, retry_deadline=60.0, backoff_cap=0.1)
    flow = request_token(config, ClientCredentials(), 1060.0, seeded())

    first = next(flow)
    assert isinstance(first, TokenRequest)
    assert first.timeout == 30.0
    backoff = flow.send(TransportFailure(OSError("refused"), 1040.0))
    assert isinstance(backoff, Backoff)
    retry = flow.send(1050.0)  # 10 s left before the deadline
    assert isinstance(retry, TokenRequest)
    assert retry.timeout == 10.0
    backoff = flow.send(TokenResponse(503, b"", {}, 1059.0))
    assert isinstance(backoff, Backoff)
    last = flow.send(1059.6)  # almost no time left: a short try, not a zero timeout
    assert isinstance(last, TokenRequest)
    assert last.timeout == 1.0


@pytest.mark.parametrize(
    "value", ["\xb2", "1.5", "-1", "soon", "Wed, 99 Foo 2024 00:00:00 GMT", "Mon, 01 Jan 10000"]
)
def test_unusable_retry_after_falls_back_to_backoff(value: str) -> None:
    config = ClientConfig(CLIENT_ID, SECRET, backoff_base=0.5, backoff_cap=0.5)
    flow = request_token(config, ClientCredentials(), 1000.0, seeded())
    next(flow)

    backoff = flow.send(TokenResponse(429, b"", {"retry-after": value}, 0.0))

    assert isinstance(backoff, Backoff)
    assert 0.0 <= backoff.delay <= 0.5


def test_huge_retry_after_is_ignored_without_overflow() -> None:
    config = ClientConfig(CLIENT_ID, SECRET)
    flow = request_token(config, ClientCredentials(), 1000.0, seeded())
    next(flow)

    backoff = flow.send(TokenResponse(503, b"", {"retry-after": "9" * 400}, 0.0))
    assert isinstance(backoff, Backoff)
    assert backoff.delay <= config.backoff_base


# -- many processes, one backing-off fetch ------------------------------------------

CHILD: dict[str, Any] = {"client_id": CLIENT_ID, "client_secret": SECRET, "timeout": 5}
CHILD.update(retry_deadline=20)


def run_held_children(
    spawn: Spawn, args: dict[str, Any], release: threading.Event
) -> list[dict[str, Any]]:
    """Run 8 ``_worker.py token`` processes; set ``release`` once each is about to ask.

    They share the default file cache (``$HOXTON_AUTH_CACHE``, set per test).
    An exit status other than 0 fails the test, showing the process's stderr.
    """
    children = [spawn("token", args) for _ in range(8)]
    for child in children:
        child.expect("ready")
    released_at = repr(time.time())
    for child in children:
        child.send(released_at)
    release.set()
    results = [child.read() for child in children]
    for child in children:
        assert child.finish() == 0, child.stderr()
    return results


@pytest.mark.slow
def test_processes_waiting_on_a_backing_off_fetch_do_not_hammer(
    server: AuthServer, spawn: Spawn
) -> None:
    """8 processes, one shared file cache: the server sees one request per attempt."""
    release = threading.Event()
    busy: dict[str, Any] = {"status": 503, "headers": {"Retry-After": "1"}}
    busy["body"] = error_body("temporarily_unavailable", "Busy")
    # The first request is held until every process is about to ask for a
    # token, so all of them are queued on the cache lock while the one that
    # got there first backs off (twice, at least 1 s each), then succeeds.
    body = token_body(server)
    server.fail_next(**busy, hold=release)
    server.fail_next(**busy)
    server.fail_next(status=200, body=body, headers=JSON)
    try:
        results = run_held_children(spawn, {"auth": {**CHILD, "domain": server.domain}}, release)
    finally:
        release.set()

    issued = hashlib.sha256(body["access_token"].encode()).hexdigest()
    # Every process got the one token that was fetched...
    assert [result["token"] for result in results] == [issued] * 8
    # ...with one request per attempt (503, 503, 200), not one per process.
    assert server.count() == 3
    first, second, third = server.token_request_times
    assert second - first >= 1.0
    assert third - second >= 1.0


@pytest.mark.slow
def test_processes_waiting_on_a_failing_fetch_share_its_error(
    server: AuthServer, spawn: Spawn
) -> None:
    """The endpoint stays down: waiters get the holder's error, not a round of retries each."""
    release = threading.Event()
    busy: dict[str, Any] = {"status": 503, "headers": {"Retry-After": "1"}}
    busy["body"] = error_body("temporarily_unavailable", "Down")
    server.fail_next(**busy, hold=release)
    server.fail_always(**busy)
    failing = {"auth": {**CHILD, "domain": server.domain, "max_attempts": 2}, "catch": True}
    try:
        results = run_held_children(spawn, failing, release)
    finally:
        release.set()

    lines = sorted(result["error"] for result in results)
    # One process made the fetch (2 attempts); the 7 that waited got its error.
    assert lines == ["503 temporarily_unavailable own"] + ["503 temporarily_unavailable waited"] * 7
    assert server.count() == 2

    # Once the shared cooldown (Retry-After: 1, issue 12) has passed, a call tries
    # again: the endpoint may be back. (Calls within a cooldown make no request:
    # test_quota_cooldown_is_shared_by_8_processes, where it lasts an hour.)
    server.clear_faults()
    auth = HoxtonAuth(CLIENT_ID, SECRET, domain=server.domain, max_attempts=2)
    time.sleep(1.0)  # not a timing assertion: the cooldown must pass
    assert claims(auth.get_token())["sub"] == f"{CLIENT_ID}@clients"
    assert server.count() == 3


def test_failure_notes_are_only_for_trouble_and_only_for_waiters() -> None:
    url = "https://auth.example/oauth/token"
    down = TokenEndpointUnreachableError("could not reach it", url=url, attempts=5)
    busy = TokenRequestError("busy", status_code=503, error="e", url=url, attempts=3)
    limited = TokenRequestError("slow down", status_code=429, url=url, attempts=2)
    refused = InvalidGrantError("invalid_grant", status_code=403, error="invalid_grant", url=url)

    assert failure_note(refused, 100.0) is None
    assert failure_note(TokenRequestError("no", status_code=400), 100.0) is None
    for error in (down, busy, limited):
        note = failure_note(error, 100.0)
        assert note is not None
        shared = shared_failure({FAILURE_META: note}, since=99.0, now=101.0)
        assert type(shared) is type(error)
        assert shared is not None
        assert (shared.url, shared.attempts) == (url, error.attempts)
        assert str(shared).startswith(str(error))
        assert shared_failure({FAILURE_META: note}, since=100.5, now=101.0) is None  # came later
        # A note dated in the future (another host's clock runs ahead) stops nobody.
        assert shared_failure({FAILURE_META: note}, since=-300.0, now=-200.0) is None

    shared = shared_failure({FAILURE_META: failure_note(busy, 100.0) or ""}, since=0.0, now=101.0)
    assert isinstance(shared, TokenRequestError)
    assert (shared.status_code, shared.error) == (503, "e")


@pytest.mark.parametrize(
    "note",
    [
        "",
        "{",
        "[]",
        '"x"',
        "{}",
        '{"at": "NaN", "message": "m", "url": "u", "attempts": 1}',
        '{"at": 1e400, "kind": "unreachable", "message": "m", "url": "u", "attempts": 1}',
        '{"at": 200, "kind": "other", "message": "m", "url": "u", "attempts": 1}',
        '{"at": 200, "kind": "refused", "message": "m", "url": "u", "attempts": 1}',
        '{"at": 200, "kind": "refused", "message": "m", "url": "u", "attempts": "x"}',
    ],
)
def test_damaged_failure_notes_are_ignored(note: str) -> None:
    assert shared_failure({FAILURE_META: note}, since=100.0, now=300.0) is None


def test_threads_waiting_on_a_failing_fetch_share_its_error(server: AuthServer) -> None:
    release = threading.Event()
    busy: dict[str, Any] = {"status": 503, "headers": {"Retry-After": "1"}}
    busy["body"] = error_body("temporarily_unavailable", "Down")
    server.fail_next(**busy, hold=release)
    server.fail_always(**busy)
    auth = HoxtonAuth(CLIENT_ID, SECRET, domain=server.domain, cache=None, max_attempts=2)
    errors: list[BaseException] = []
    started = [threading.Event() for _ in range(4)]

    def worker(ready: threading.Event) -> None:
        ready.set()
        try:
            auth.get_token()
        except TokenRequestError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(ready,)) for ready in started]
    for thread in threads:
        thread.start()
    for ready in started:
        ready.wait()
    assert server.wait_for_token_requests(
        1
    )  # the fetch is under way; the others wait (1 s backoff to come)
    release.set()
    for thread in threads:
        thread.join()

    assert server.count() == 2  # one fetch, two attempts
    assert len(errors) == 4
    assert all(isinstance(e, TokenRequestError) and e.status_code == 503 for e in errors)
    assert sum("waited for that fetch" in str(e) for e in errors) == 3


def test_tasks_waiting_on_a_failing_fetch_share_its_error(server: AuthServer) -> None:
    release = threading.Event()
    server.fail_next(disconnect=True, hold=release)
    server.fail_always(disconnect=True)
    auth = HoxtonAuth(CLIENT_ID, SECRET, domain=server.domain, cache=None, max_attempts=2)

    async def main() -> list[BaseException | str]:
        tasks = [asyncio.create_task(auth.aget_token()) for _ in range(4)]
        assert await asyncio.to_thread(
            server.wait_for_token_requests, 1
        )  # every task has started by now
        release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        results = asyncio.run(main())
    finally:
        release.set()

    assert server.count() == 2
    assert all(isinstance(r, TokenEndpointUnreachableError) for r in results)
    assert sum("waited for that fetch" in str(r) for r in results) == 3


# -- issue 12: Auth0's bad days, against hoxton_auth.testing's server ------------------------

FAST: dict[str, Any] = {"max_attempts": 2, "retry_deadline": 3.0, "timeout": 2.0}


@pytest.fixture
def idp() -> Iterator[AuthServer]:
    with AuthServer() as server:
        yield server


def _age_cached_token(auth: HoxtonAuth, expires_in: float) -> None:
    """Move the cached token into its renewal window: ``expires_in`` seconds left."""
    entry = cached_entry(auth)
    assert entry is not None
    now = time.time()
    old = dataclasses.replace(entry.token, obtained_at=now - 86400, expires_at=now + expires_in)
    auth.cache.store(cache_key(auth), CacheEntry(old, entry.meta))


def _client(idp: AuthServer, **extra: Any) -> HoxtonAuth:
    made: HoxtonAuth = HoxtonAuth(
        DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=idp.domain, **FAST, **extra
    )
    return made


@pytest.mark.parametrize(
    "call",
    [
        lambda auth: auth.get_token(),
        lambda auth: asyncio.run(auth.aget_token()),
    ],
    ids=["sync", "async"],
)
def test_outage_serves_a_token_that_has_not_expired(
    idp: AuthServer, call: Callable[[HoxtonAuth], str]
) -> None:
    token = _client(idp).get_token()
    auth = _client(idp)  # a new object: nothing in memory, the cache's token is due
    _age_cached_token(auth, expires_in=30)
    idp.outage = True
    with pytest.warns(HoxtonAuthWarning, match="using the cached one"):
        assert call(auth) == token
    requests_made = idp.count()
    # Once per outage, and the next renewal waits for the shared cooldown: no request.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert call(_client(idp)) == token
    assert idp.count() == requests_made


def test_outage_with_an_expired_token_raises(idp: AuthServer) -> None:
    _client(idp).get_token()
    auth = _client(idp)
    _age_cached_token(auth, expires_in=2)  # within STALE_MARGIN: too old to send
    idp.outage = True
    with pytest.raises(TokenRequestError) as caught:
        auth.get_token()
    assert caught.value.status_code == 503
    assert caught.value.error == "temporarily_unavailable"


def test_stale_token_is_served_for_every_grant(idp: AuthServer) -> None:
    auth = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        username=DEFAULT_USERNAME,
        password=DEFAULT_PASSWORD,
        scope="openid offline_access",
        domain=idp.domain,
        **FAST,
    )
    token = auth.get_token()
    auth = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        username=DEFAULT_USERNAME,
        password=DEFAULT_PASSWORD,
        scope="openid offline_access",
        domain=idp.domain,
        **FAST,
    )
    _age_cached_token(auth, expires_in=30)
    idp.outage = True
    with pytest.warns(HoxtonAuthWarning):
        assert auth.get_token() == token  # the refresh grant failed: the token is served


QUOTA_PHRASE = "client's token quota per hour: 0 of 100"


@pytest.mark.slow
def test_quota_cooldown_is_shared_by_8_processes(idp: AuthServer, spawn: Spawn) -> None:
    """A spent M2M quota costs one token request, whatever the number of processes."""
    idp.exhaust_quota(reset_in=3540)
    auth: dict[str, Any] = {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}
    auth.update(domain=idp.domain, retry_deadline=30)
    child = {"auth": auth, "catch": True, "look_for": [QUOTA_PHRASE]}

    results = release_together([spawn("token", child) for _ in range(8)])

    seen = [
        f"{r['status']} {round(r['retry_after'] / 100)} {'quota' if r['found'] else 'no words'}"
        for r in results
    ]
    assert sorted(seen) == ["429 35 quota"] * 8
    assert idp.count() == 1
    # And later calls in this process too: no request until the quota resets.
    with pytest.raises(TokenRequestError) as caught:
        _client(idp).get_token()
    assert caught.value.retry_after is not None
    # X-RateLimit-Reset is a whole epoch second (rounded by the server): up to 0.5 s more.
    assert 3400 < caught.value.retry_after <= 3540.5
    assert idp.count() == 1


def test_attack_protection_is_never_retried_and_says_the_account_is_blocked(
    idp: AuthServer,
) -> None:
    idp.block_after_failed_logins = 2

    def login(password: str) -> HoxtonAuth:
        made: HoxtonAuth = HoxtonAuth(
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
            username=DEFAULT_USERNAME,
            password=password,
            domain=idp.domain,
            cache=None,
            **FAST,
        )
        return made

    for _ in range(2):
        with pytest.raises(InvalidGrantError):
            login("wrong-password").get_token()
    before = idp.count()
    with pytest.raises(TokenRequestError) as caught:
        login(DEFAULT_PASSWORD).get_token()
    assert idp.count() == before + 1  # the password went once, not max_attempts times
    assert caught.value.status_code == 429
    assert caught.value.error == "too_many_attempts"
    assert "brute-force protection blocked this login" in str(caught.value)
    # The same login from a shared cache is not tried again for a while: no request.
    shared = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        username=DEFAULT_USERNAME,
        password=DEFAULT_PASSWORD,
        domain=idp.domain,
        **FAST,
    )
    with pytest.raises(TokenRequestError):
        shared.get_token()
    requests_after = idp.count()
    with pytest.raises(TokenRequestError) as again:
        shared.get_token()
    assert idp.count() == requests_after
    assert again.value.error == "too_many_attempts"
    assert again.value.retry_after is not None
    assert again.value.retry_after > 250


def test_mfa_required_and_the_otp_exchange(idp: AuthServer) -> None:
    idp.require_mfa(DEFAULT_USERNAME, otp="246810")
    common: dict[str, Any] = {"domain": idp.domain, "cache": None, **FAST}
    plain = PasswordAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        username=DEFAULT_USERNAME,
        password=DEFAULT_PASSWORD,
        **common,
    )
    with pytest.raises(MfaRequiredError) as caught:
        plain.get_token()
    error = caught.value
    assert error.mfa_token is not None
    assert error.mfa_token.startswith("mfa.")
    assert error.mfa_requirements == {"challenge": [{"type": "otp"}]}
    assert error.mfa_token not in repr(error)
    assert error.mfa_token not in str(error)
    assert isinstance(error, TokenRequestError)

    with_otp = PasswordAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        username=DEFAULT_USERNAME,
        password=DEFAULT_PASSWORD,
        otp=lambda: "246810",
        **common,
    )
    assert claims(with_otp.get_token())["sub"]
    sent = idp.token_requests[-1]
    assert sent["grant_type"] == "http://auth0.com/oauth/grant-type/mfa-otp"
    assert sent["otp"] == "246810"
    assert sent["client_secret"] == DEFAULT_CLIENT_SECRET


def test_realm_forwarded_for_and_organization_are_sent(idp: AuthServer) -> None:
    auth = PasswordAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        username=DEFAULT_USERNAME,
        password=DEFAULT_PASSWORD,
        realm="Username-Password-Authentication",
        forwarded_for="203.0.113.7",
        domain=idp.domain,
        cache=None,
    )
    auth.get_token()
    sent = idp.token_requests[-1]
    assert sent["grant_type"] == "http://auth0.com/oauth/grant-type/password-realm"
    assert sent["realm"] == "Username-Password-Authentication"
    assert idp.forwarded_for[-1] == "203.0.113.7"

    org = _client(idp, organization="org_abc123", cache=None)
    org.get_token()
    assert idp.token_requests[-1]["organization"] == "org_abc123"
    assert idp.forwarded_for[-1] is None
    # Another organization, another cache entry.
    assert cache_key(_client(idp, organization="org_other")) != cache_key(
        _client(idp, organization="org_abc123")
    )


@TRANSPORTS
def test_a_dripping_endpoint_is_cut_off_at_the_timeout(idp: AuthServer, fetch: Fetch) -> None:
    idp.drip = 0.05  # a ~900-byte token answer would take ~45 s
    config = ClientConfig(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        domain=idp.domain,
        timeout=1.0,
        retry_deadline=2.0,
        max_attempts=2,
        backoff_base=0.01,
    )
    meta = {"grant": "client_credentials"}
    manager = TokenManager(config, ClientCredentials(), MemoryTokenCache(), Identity("k", meta))
    started = time.monotonic()
    with pytest.raises(TokenEndpointUnreachableError):
        fetch(manager)
    # Two attempts of at most ~1 s each (plus one read's 1 s of silence at worst);
    # generous for a loaded machine, far below the 45 s the drip would take.
    assert time.monotonic() - started < 15


def _locals_in(error: BaseException) -> str:
    """The repr of every local of every frame an error tracker would record."""
    seen: list[str] = []
    link: BaseException | None = error
    while link is not None:
        for frame, _ in traceback.walk_tb(link.__traceback__):
            if frame.f_code.co_filename != __file__:  # this test's own frames hold the secret
                seen.extend(repr(value) for value in frame.f_locals.values())
        seen.append(repr(link))
        seen.append(str(link))
        link = link.__cause__ or link.__context__
    return "\n".join(seen)


@TRANSPORTS
def test_no_secret_in_traceback_locals(idp: AuthServer, fetch: Fetch) -> None:
    password = "tb-locals-password-5d1c"
    idp.add_user("tb@example.com", password + "-not")
    config = ClientConfig(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=idp.domain)
    grant = Password("tb@example.com", password)
    manager = TokenManager(config, grant, MemoryTokenCache(), Identity("k", {"grant": "password"}))
    with pytest.raises(InvalidGrantError) as refused:
        fetch(manager)
    seen = _locals_in(refused.value)
    assert password not in seen
    assert DEFAULT_CLIENT_SECRET not in seen

    down = ClientConfig(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        domain=f"http://127.0.0.1:{free_port()}",
        max_attempts=1,
    )
    manager = TokenManager(down, grant, MemoryTokenCache(), Identity("k", {"grant": "password"}))
    with pytest.raises(TokenEndpointUnreachableError) as unreachable:
        fetch(manager)
    seen = _locals_in(unreachable.value)
    assert password not in seen
    assert DEFAULT_CLIENT_SECRET not in seen
    cause = unreachable.value.__cause__
    assert cause is not None
    # requests keeps .request, httpx ._request: the PreparedRequest/Request holds the body.
    assert vars(cause).get("request") is None
    assert vars(cause).get("_request") is None


def _quota_response(**headers: str) -> TokenResponse:
    body = json.dumps({"error": "too_many_requests", "error_description": "Quota exceeded"})
    return TokenResponse(429, body.encode(), headers, 1000.0)


def test_429_waits_from_every_header_auth0_sends() -> None:
    url = "https://auth.example/oauth/token"
    quota = "b=per_hour;q=100;r=0;t=3540,b=per_day;q=1000;r=400;t=80000"
    error = error_from_response(_quota_response(**{"auth0-client-quota-limit": quota}), url, {}, 1)
    assert error.retry_after == 3540
    assert "the client's token quota per hour: 0 of 100 tokens left, resets in 3540s" in str(error)
    assert "per day: 400 of 1000 tokens left" in str(error)
    org = "b=per_day;q=10;r=0;t=600"
    error = error_from_response(
        _quota_response(**{"auth0-organization-quota-limit": org}), url, {}, 1
    )
    assert error.retry_after == 600
    assert "organization's token quota" in str(error)
    error = error_from_response(_quota_response(**{"x-ratelimit-reset": "1042"}), url, {}, 1)
    assert error.retry_after == 42
    date = email.utils.formatdate(1090.0, usegmt=True)
    error = error_from_response(_quota_response(**{"retry-after": date}), url, {}, 1)
    assert error.retry_after == 90
    assert error_from_response(_quota_response(), url, {}, 1).retry_after is None


def test_cooldown_notes_from_a_clock_ahead_are_ignored() -> None:
    url = "https://auth.example/oauth/token"
    limited = TokenRequestError("slow down", status_code=429, url=url, retry_after=600)
    expired = Token("", 0.0, 0.0)
    note = failure_note(limited, 10_000.0)
    assert note is not None
    entry = CacheEntry(expired, {FAILURE_META: note})
    with pytest.raises(TokenRequestError) as caught:
        during_cooldown(entry, 10_100.0, since=10_050.0)
    assert caught.value.retry_after == 500
    assert during_cooldown(entry, 10_700.0, since=0.0) is None  # the cooldown passed
    assert during_cooldown(entry, 9_000.0, since=0.0) is None  # dated in our future
    # A note claiming a cooldown longer than a day is nonsense (or hostile): ignored.
    absurd = json.loads(note)
    absurd["until"] = absurd["at"] + 10**9
    entry = CacheEntry(expired, {FAILURE_META: json.dumps(absurd)})
    assert during_cooldown(entry, 10_001.0, since=0.0) is None


def _end_cooldown(auth: HoxtonAuth) -> None:
    """Date the cache's failure note back so that its cooldown has passed."""
    entry = cached_entry(auth)
    assert entry is not None
    note = json.loads(entry.meta[FAILURE_META])
    note["at"] = note["until"] = time.time() - 1
    auth.cache.store(
        cache_key(auth), CacheEntry(entry.token, {**entry.meta, FAILURE_META: json.dumps(note)})
    )


def test_during_an_outage_nobody_queues_behind_a_renewal(idp: AuthServer) -> None:
    token = _client(idp).get_token()
    auth = _client(idp)
    _age_cached_token(auth, expires_in=60)
    idp.outage = True
    with pytest.warns(HoxtonAuthWarning):
        assert auth.get_token() == token
    _end_cooldown(auth)
    idp.token_delay = 1.0  # the next renewal attempt is slow and fails
    before = idp.count()
    renewing = threading.Thread(target=auth.get_token)
    renewing.start()
    try:
        while idp.count() == before:  # the renewal has reached the server
            time.sleep(0.01)
        # Another thread and another process (a new object on the same cache)
        # get the valid token at once instead of waiting for that renewal.
        assert auth.get_token() == token
        assert _client(idp).get_token() == token
        assert renewing.is_alive()  # ordering, not timing: the renewal is still running
    finally:
        renewing.join()


# -- clocks that run ahead (issue 19) ------------------------------------------------------


@pytest.mark.parametrize("ahead", [300.0, 8 * 3600.0])
def test_a_failure_note_from_a_clock_ahead_stops_nobody(
    idp: AuthServer, spawn: Spawn, ahead: float
) -> None:
    """A note written by a host whose clock runs ahead is dated in everyone's future:
    it must neither share its error with a caller nor impose its cooldown."""
    idp.fail_always(status=503)
    auth: dict[str, Any] = {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}
    auth.update(domain=idp.domain, max_attempts=1)
    writer = spawn("token", {"auth": auth, "catch": True, "clock_ahead": ahead})
    (failed,) = release_together([writer])
    assert failed["status"] == 503  # its note is in the shared file now
    idp.clear_faults()

    assert _client(idp).get_token()  # this process asks the server itself
    assert idp.count() == 2


def test_a_clock_a_year_ahead_does_not_prune_other_users_sessions(
    idp: AuthServer, spawn: Spawn, isolated_cache: Path
) -> None:
    seed = idp.mint_refresh_token()
    user = HoxtonAuth(
        DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, refresh_token=seed, domain=idp.domain, **FAST
    )
    user.get_token()  # a user's session with a refresh token in the shared file
    auth: dict[str, Any] = {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}
    auth.update(domain=idp.domain)
    ahead = spawn("token", {"auth": auth, "clock_ahead": 401 * 24 * 3600.0})

    release_together([ahead])  # writes its own entry, dated 401 days from now

    kept = [e.token.refresh_token for e in FileTokenCache(isolated_cache).entries().values()]
    assert any(kept), "the user's refresh token was pruned by a clock a year ahead"
    user.invalidate()
    user.get_token()  # and the session still renews, with no reuse
    assert idp.reuse_detected == 0


class PausingCache(FileTokenCache):
    """A file cache whose next ``load`` waits until the test lets it go on."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.pause_next = threading.Event()
        self.paused = threading.Event()
        self.go_on = threading.Event()

    def load(self, key: str) -> CacheEntry | None:
        if self.pause_next.is_set():
            self.pause_next.clear()
            self.paused.set()
            self.go_on.wait(30)
        return super().load(key)


def test_a_token_declared_dead_is_never_served_stale_to_another_thread(
    idp: AuthServer, isolated_cache: Path
) -> None:
    """Issue 19: after a 401 (or logout), a thread that finds a renewal under way must
    not be handed the dead token as the outage's stale one."""
    dead = _client(idp).get_token()
    cache = PausingCache(isolated_cache)
    auth = _client(idp, cache=cache)
    _age_cached_token(auth, expires_in=30)
    idp.outage = True
    with pytest.warns(HoxtonAuthWarning, match="using the cached one"):
        assert auth.get_token() == dead, "not served stale"  # during the outage
    auth.invalidate()  # as after the API's 401 to it

    got: dict[str, str] = {}

    def call(name: str) -> None:
        try:  # labels only: a token never reaches the test's output
            got[name] = "the dead token" if auth.get_token() == dead else "another token"
        except HoxtonAuthError as exc:
            got[name] = type(exc).__name__

    renewing = threading.Thread(target=call, args=("renewing",))
    cache.pause_next.set()
    renewing.start()
    assert cache.paused.wait(30)  # the renewal is under way, holding the session's lock
    waiting = threading.Thread(target=call, args=("waiting",))
    waiting.start()
    waiting.join(2)  # handed the dead token at once, or waits for the renewal
    cache.go_on.set()
    renewing.join(30)
    waiting.join(30)

    assert set(got) == {"renewing", "waiting"}
    assert "the dead token" not in got.values()
