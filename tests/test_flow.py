"""The sans-I/O flow, driven by hand: ``next``, ``.send`` and ``StopIteration``.

No network, no clock, no disk: every reply is built here and every time is a
number we choose, so retries, deadlines, fallbacks and error parsing are all
checked exactly.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import pytest

from hoxton_auth import (
    InvalidGrantError,
    LoginError,
    LoginRequiredError,
    MfaRequiredError,
    NotLoggedInError,
    Token,
    TokenEndpointUnreachableError,
    TokenRequestError,
)
from hoxton_auth._config import ClientConfig
from hoxton_auth._flow import (
    MIN_RETRY_TIMEOUT,
    DeviceAuthorization,
    obtain_token,
    plan_grants,
    poll_device_code,
    request_device_code,
    request_token,
    revoke_refresh_token,
)
from hoxton_auth._grants import AuthorizationCode, ClientCredentials, Grant, Password, RefreshToken
from hoxton_auth._wire import (
    MAX_RESPONSE_BYTES,
    SNIPPET_CHARS,
    Backoff,
    Flow,
    TokenRequest,
    TokenResponse,
    TransportFailure,
    wait_seconds,
)

NOW = 1_700_000_000.0
SECRET = "flow-client-secret-1a2b"
PASSWORD = "flow-user-password-3c4d"
CODE = "flow-auth-code-5e6f"
REFRESH = "flow-refresh-token-7a8b"
SEED = "flow-seed-refresh-9c0d"
TOKEN_URL = "https://auth.example/oauth/token"
BACKOFF_BASE = ClientConfig("cid").backoff_base
BACKOFF_CAP = ClientConfig("cid").backoff_cap
MintJwt = Callable[..., str]
Reply = TokenResponse | TransportFailure | float


def config(**overrides: Any) -> ClientConfig:
    arguments: dict[str, Any] = {
        "client_id": "cid",
        "client_secret": SECRET,
        "domain": "https://auth.example",
    }
    arguments.update(overrides)
    return ClientConfig(**arguments)


def rng(value: float = 0.0) -> random.Random:
    """A Random whose uniform(a, b) returns a + value * (b - a): jitter we choose."""

    class Fixed(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return a + value * (b - a)

    return Fixed()


def reply(
    body: Any = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    at: float = NOW,
) -> TokenResponse:
    if body is None:
        body = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 3600}
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
        headers = {"content-type": "application/json", **(headers or {})}
    # Transports hand the flow lower-case header names.
    return TokenResponse(status, body, {k.lower(): v for k, v in (headers or {}).items()}, at)


def auth0_error(error: str, description: str, status: int = 403) -> TokenResponse:
    return reply({"error": error, "error_description": description}, status)


def unavailable(at: float = NOW, headers: Mapping[str, str] | None = None) -> TokenResponse:
    return reply(
        {"error": "temporarily_unavailable", "error_description": "busy"}, 503, headers, at
    )


def run(flow: Flow[Any], replies: list[Reply]) -> tuple[list[Any], Any]:
    """Answer the flow's actions with ``replies`` in order; return (actions, value).

    Every reply must be used: a flow that stops early or asks for more fails.
    """
    actions: list[Any] = []
    pending = list(replies)
    try:
        action = next(flow)
        while True:
            actions.append(action)
            assert pending, f"the flow asked for more than {len(replies)} replies: {action!r}"
            answer = pending.pop(0)
            if isinstance(action, Backoff):
                assert isinstance(answer, float), "a Backoff is answered with the time"
            else:
                assert not isinstance(answer, float), "a TokenRequest is answered with a reply"
            action = flow.send(answer)
    except StopIteration as stop:
        assert not pending, f"{len(pending)} replies unused"
        return actions, stop.value


def fail(flow: Flow[Any], replies: list[Reply]) -> tuple[list[Any], Exception]:
    """Like ``run`` for a flow that must raise; return (actions, error)."""
    actions: list[Any] = []
    pending = list(replies)
    try:
        action = next(flow)
        while True:
            actions.append(action)
            assert pending, f"the flow asked for more than {len(replies)} replies: {action!r}"
            action = flow.send(pending.pop(0))
    except StopIteration:
        pytest.fail("the flow returned instead of raising")
    except AssertionError:
        raise
    except Exception as exc:  # any error: the callers check which
        assert not pending, f"{len(pending)} replies unused"
        return actions, exc


def obtain(plan: list[Grant], **overrides: Any) -> Flow[Token]:
    return obtain_token(config(**overrides), plan, NOW, rng(0.5))


def sent(action: TokenRequest) -> dict[str, str]:
    """What the server would parse from the request's encoded body."""
    body, content_type = action.encode()
    if content_type == "application/json":
        data = json.loads(body)
        assert isinstance(data, dict)
        return data
    assert content_type == "application/x-www-form-urlencoded"
    return dict(parse_qsl(body.decode(), strict_parsing=True))


# -- the small types ------------------------------------------------------------------


def test_token_request_encodes_form_and_json() -> None:
    form = {"grant_type": "password", "username": "a@b.c", "password": "p w&=+"}
    body, content_type = TokenRequest(TOKEN_URL, form).encode()
    assert content_type == "application/x-www-form-urlencoded"
    assert dict(parse_qsl(body.decode(), strict_parsing=True)) == form
    body, content_type = TokenRequest(TOKEN_URL, form, as_json=True).encode()
    assert content_type == "application/json"
    assert json.loads(body) == form


def test_reprs_hide_form_and_body() -> None:
    request = TokenRequest(TOKEN_URL, {"client_secret": SECRET})
    response = TokenResponse(200, json.dumps({"access_token": SECRET}).encode(), {}, NOW)
    assert SECRET not in repr(request)
    assert SECRET not in repr(response)
    assert TOKEN_URL in repr(request)


# -- plan_grants ------------------------------------------------------------------------


def test_plan_newest_refresh_token_first_then_seed_then_primary() -> None:
    primary = Password("ann", PASSWORD)
    assert plan_grants(primary, REFRESH, SEED) == [
        RefreshToken(REFRESH),
        RefreshToken(SEED),
        primary,
    ]


@pytest.mark.parametrize(
    ("primary", "cached", "seed", "expected"),
    [
        (None, None, None, []),
        (ClientCredentials(), None, None, [ClientCredentials()]),
        (None, None, SEED, [RefreshToken(SEED)]),
        (None, REFRESH, None, [RefreshToken(REFRESH)]),
        # The seed was rotated into the cache already: don't try it twice.
        (None, SEED, SEED, [RefreshToken(SEED)]),
        (None, "", SEED, [RefreshToken(SEED)]),
        (ClientCredentials(), REFRESH, "", [RefreshToken(REFRESH), ClientCredentials()]),
    ],
)
def test_plan_variants(
    primary: Grant | None, cached: str | None, seed: str | None, expected: list[Grant]
) -> None:
    assert plan_grants(primary, cached, seed) == expected


# -- one grant, first time lucky ----------------------------------------------------------------


def test_success_yields_one_request_and_returns_the_token(make_jwt: MintJwt) -> None:
    access = make_jwt(exp=int(NOW) + 7200)
    flow = obtain([ClientCredentials()], timeout=12.5)
    action = next(flow)
    assert isinstance(action, TokenRequest)
    assert action.url == TOKEN_URL
    assert action.timeout == 12.5
    assert action.as_json is False
    assert sent(action) == {
        "grant_type": "client_credentials",
        "client_id": "cid",
        "client_secret": SECRET,
        "audience": "https://api.hoxton.cloud",
    }
    with pytest.raises(StopIteration) as stop:
        flow.send(reply({"access_token": access, "token_type": "Bearer"}, at=NOW + 2))
    token = stop.value.value
    assert isinstance(token, Token)
    assert token.access_token == access
    assert token.obtained_at == NOW + 2  # when the answer arrived
    assert token.expires_at == NOW + 7200  # from the JWT's exp


def test_json_format_sets_as_json() -> None:
    flow = obtain([Password("ann", PASSWORD)], token_request_format="json")
    action = next(flow)
    assert isinstance(action, TokenRequest)
    assert action.as_json is True
    assert sent(action)["password"] == PASSWORD


def test_any_2xx_is_success() -> None:
    _, token = run(obtain([ClientCredentials()]), [reply(status=201)])
    assert token.access_token == "at-1"


def test_refresh_keeps_the_old_refresh_token_when_not_rotated() -> None:
    _, token = run(obtain([RefreshToken(REFRESH)]), [reply()])
    assert token.refresh_token == REFRESH


def test_refresh_takes_the_rotated_refresh_token() -> None:
    body = {"access_token": "at-2", "refresh_token": "rt-rotated", "expires_in": 60}
    actions, token = run(obtain([RefreshToken(REFRESH)]), [reply(body)])
    assert sent(actions[0])["refresh_token"] == REFRESH
    assert token.refresh_token == "rt-rotated"


def test_request_token_directly() -> None:
    flow = request_token(config(), ClientCredentials(), NOW + 60, rng())
    _, token = run(flow, [reply()])
    assert token.expires_at == NOW + 3600


# -- retries -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status: int) -> None:
    flow = obtain([ClientCredentials()])
    actions, token = run(flow, [reply({"error": "x"}, status), NOW + 1, reply(at=NOW + 1)])
    assert [type(a) for a in actions] == [TokenRequest, Backoff, TokenRequest]
    assert token.access_token == "at-1"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 501, 505])
def test_final_statuses_are_not_retried(status: int) -> None:
    actions, error = fail(obtain([ClientCredentials()]), [reply({"error": "nope"}, status)])
    assert len(actions) == 1
    assert isinstance(error, TokenRequestError)
    assert error.status_code == status
    assert error.attempts == 1


def test_backoff_is_full_jitter_doubling_to_a_cap() -> None:
    delays = []
    flow = obtain_token(
        config(max_attempts=10, retry_deadline=1000), [ClientCredentials()], NOW, rng(1.0)
    )
    action = next(flow)
    now = NOW
    for _ in range(8):
        action = flow.send(unavailable(at=now))
        assert isinstance(action, Backoff)
        delays.append(action.delay)
        now += action.delay
        action = flow.send(now)
        assert isinstance(action, TokenRequest)
    assert delays == [min(BACKOFF_CAP, BACKOFF_BASE * 2**n) for n in range(8)]
    assert delays[-1] == BACKOFF_CAP


def test_jitter_can_be_zero() -> None:
    flow = obtain_token(config(), [ClientCredentials()], NOW, rng(0.0))
    next(flow)
    backoff = flow.send(unavailable())
    assert backoff == Backoff(0.0)


def test_transport_failure_is_retried_then_succeeds() -> None:
    failure = TransportFailure(ConnectionResetError("reset"), NOW)
    actions, token = run(obtain([ClientCredentials()]), [failure, NOW + 1, reply(at=NOW + 1)])
    assert [type(a) for a in actions] == [TokenRequest, Backoff, TokenRequest]
    assert token.access_token == "at-1"


def test_retry_logs_a_warning_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    failure = TransportFailure(TimeoutError(f"timed out sending {SECRET}"), NOW)
    run(obtain([Password("ann", PASSWORD)]), [failure, NOW, unavailable(), NOW, reply()])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "TimeoutError" in warnings[0]
    assert "HTTP 503" in warnings[1]
    assert "retry 1 of 4" in warnings[0]
    for secret in (SECRET, PASSWORD, "at-1"):
        assert secret not in caplog.text


def test_retry_timeout_is_cut_to_the_time_left() -> None:
    flow = obtain_token(config(timeout=30, retry_deadline=10), [ClientCredentials()], NOW, rng())
    first = next(flow)
    assert isinstance(first, TokenRequest)
    assert first.timeout == 30  # the first try gets the full timeout
    assert isinstance(flow.send(unavailable(at=NOW + 1)), Backoff)
    second = flow.send(NOW + 4.0)
    assert isinstance(second, TokenRequest)
    assert second.timeout == 6.0
    assert isinstance(flow.send(unavailable(at=NOW + 9.8)), Backoff)
    third = flow.send(NOW + 9.8)
    assert isinstance(third, TokenRequest)
    assert third.timeout == MIN_RETRY_TIMEOUT


def test_max_attempts_gives_up_with_the_servers_words() -> None:
    replies: list[Reply] = []
    for _ in range(2):
        replies += [unavailable(), NOW]
    actions, error = fail(obtain([ClientCredentials()], max_attempts=3), [*replies, unavailable()])
    assert sum(isinstance(a, TokenRequest) for a in actions) == 3
    assert type(error) is TokenRequestError
    assert error.status_code == 503
    assert error.error == "temporarily_unavailable"
    assert error.error_description == "busy"
    assert error.attempts == 3
    assert "temporarily_unavailable: busy (HTTP 503)" in str(error)
    assert "3 attempts" in str(error)
    assert "max_attempts=3 reached" in str(error)


def test_max_attempts_one_means_no_retry() -> None:
    actions, error = fail(obtain([ClientCredentials()], max_attempts=1), [unavailable()])
    assert len(actions) == 1
    assert "1 attempt" in str(error)
    assert "1 attempts" not in str(error)


def test_retry_after_seconds_is_a_floor() -> None:
    flow = obtain([ClientCredentials()])
    next(flow)
    backoff = flow.send(unavailable(headers={"Retry-After": "7"}))
    assert backoff == Backoff(7.0)  # beyond BACKOFF_CAP: the server asked for it


def test_retry_after_http_date() -> None:
    flow = obtain([ClientCredentials()], retry_deadline=100)
    next(flow)
    # NOW is 2023-11-14 22:13:20 UTC; the server asks us to wait 40 s.
    backoff = flow.send(unavailable(headers={"Retry-After": "Tue, 14 Nov 2023 22:14:00 GMT"}))
    assert backoff == Backoff(40.0)


@pytest.mark.parametrize(
    "value",
    [
        "Tue, 14 Nov 2023 22:00:00 GMT",  # in the past
        "soon",
        "1.5",
        "-3",
        "\u00b2",  # a superscript two: str.isdigit() says yes, float() says no
        "Tue, 14 Nov 2023 22:14:00 -0000",  # no usable time zone
        "Tue, 14 Nov 99999999999 22:14:00 GMT",
        "",
    ],
)
def test_unusable_retry_after_falls_back_to_jitter(value: str) -> None:
    flow = obtain_token(config(), [ClientCredentials()], NOW, rng(1.0))
    next(flow)
    backoff = flow.send(unavailable(headers={"Retry-After": value}))
    assert backoff == Backoff(BACKOFF_BASE)


def test_retry_after_past_the_deadline_gives_up_at_once() -> None:
    flow = obtain([ClientCredentials()], retry_deadline=60)
    actions, error = fail(
        flow, [reply({"error": "too_many_requests"}, 429, {"Retry-After": "120"})]
    )
    assert len(actions) == 1
    assert isinstance(error, TokenRequestError)
    assert error.status_code == 429
    assert "Retry-After 120s would pass the 60s retry_deadline" in str(error)


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "9" * 400},
        {"Retry-After": "315360000"},  # ten years
        {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"},
        {"X-RateLimit-Reset": str(10**12)},
        {"Auth0-Client-Quota-Limit": "b=per_hour;q=10;r=0;t=999999999"},
    ],
)
def test_an_absurd_server_wait_is_ignored_and_the_normal_backoff_applies(
    headers: dict[str, str],
) -> None:
    # Issue 19: one 429 must not become a day-long cooldown for the whole fleet.
    assert wait_seconds(reply({"error": "slow"}, 429, headers)) is None
    flow = obtain([ClientCredentials()])
    assert isinstance(next(flow), TokenRequest)
    backoff = flow.send(reply({"error": "slow"}, 429, headers))
    assert isinstance(backoff, Backoff)
    assert backoff.delay <= BACKOFF_BASE


def test_a_plausible_quota_wait_is_kept() -> None:
    day = {"Auth0-Client-Quota-Limit": "b=per_day;q=10;r=0;t=86000"}
    assert wait_seconds(reply({"error": "slow"}, 429, day)) == 86000


def test_next_try_past_the_deadline_gives_up() -> None:
    flow = obtain_token(config(retry_deadline=2), [ClientCredentials()], NOW, rng(1.0))
    replies: list[Reply] = [unavailable(at=NOW + 0.5), NOW + 1.0, unavailable(at=NOW + 1.5)]
    actions, error = fail(flow, replies)
    assert [type(a) for a in actions] == [TokenRequest, Backoff, TokenRequest]
    assert "the next try would pass the 2s retry_deadline" in str(error)
    assert isinstance(error, TokenRequestError)
    assert error.attempts == 2


def test_one_deadline_covers_the_whole_plan() -> None:
    # The refresh token used up the time; the password grant gets no retry.
    flow = obtain_token(
        config(retry_deadline=10),
        [RefreshToken(REFRESH), Password("ann", PASSWORD)],
        NOW,
        rng(1.0),
    )
    replies: list[Reply] = [
        auth0_error("invalid_grant", "Unknown or invalid refresh token.", 403),
        unavailable(at=NOW + 9.9),
    ]
    actions, error = fail(flow, replies)
    assert len(actions) == 2
    assert "retry_deadline" in str(error)


def test_network_down_gives_unreachable_with_the_cause() -> None:
    cause = ConnectionRefusedError(f"refused while sending password={PASSWORD}")
    replies: list[Reply] = []
    for _ in range(4):
        replies += [TransportFailure(cause, NOW), NOW]
    flow = obtain([Password("ann", PASSWORD)])
    actions, error = fail(flow, [*replies, TransportFailure(cause, NOW)])
    assert sum(isinstance(a, TokenRequest) for a in actions) == 5
    assert isinstance(error, TokenEndpointUnreachableError)
    assert error.__cause__ is cause
    assert error.url == TOKEN_URL
    assert error.attempts == 5
    text = str(error)
    assert "ConnectionRefusedError" in text
    assert "5 attempts" in text
    assert TOKEN_URL in text
    assert PASSWORD not in text
    assert "***" in text


# -- refusals, in the server's words ---------------------------------------------------------------


def test_auth0_error_fields_and_message() -> None:
    _, error = fail(
        obtain([ClientCredentials()]),
        [auth0_error("access_denied", "Service not found: https://api.example", 403)],
    )
    assert type(error) is TokenRequestError
    assert error.status_code == 403
    assert error.error == "access_denied"
    assert error.error_description == "Service not found: https://api.example"
    assert error.url == TOKEN_URL
    assert str(error).startswith("access_denied: Service not found: https://api.example (HTTP 403)")


def test_error_without_description() -> None:
    _, error = fail(obtain([ClientCredentials()]), [reply({"error": "invalid_client"}, 401)])
    assert isinstance(error, TokenRequestError)
    assert error.error == "invalid_client"
    assert error.error_description is None
    assert str(error).startswith("invalid_client (HTTP 401)")


def test_non_string_description_is_dropped() -> None:
    body = {"error": "invalid_request", "error_description": {"nested": 1}}
    _, error = fail(obtain([ClientCredentials()]), [reply(body, 400)])
    assert isinstance(error, TokenRequestError)
    assert error.error_description is None


def test_long_server_words_are_clipped_to_one_line() -> None:
    body = {"error": "e" * 300, "error_description": "word\n" * 400}
    _, error = fail(obtain([ClientCredentials()]), [reply(body, 400)])
    text = str(error)
    assert "\n" not in text
    assert "e" * 100 + "...: " in text
    assert len(text) < 800


@pytest.mark.parametrize(
    ("body", "content_type", "shown"),
    [
        (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html", "<h1>502 Bad"),
        (b"", "text/plain", "empty body"),
        (b"   \n  ", None, "empty body"),
        (b'["not", "an", "object"]', "application/json", '["not", "an", "object"]'),
        (b'{"error": 42}', "application/json", '{"error": 42}'),
        (b"\xff\xfe garbage", "application/octet-stream", "garbage"),
    ],
)
def test_refusal_that_is_not_auth0_json(body: bytes, content_type: str | None, shown: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    _, error = fail(obtain([ClientCredentials()]), [TokenResponse(400, body, headers, NOW)])
    assert type(error) is TokenRequestError
    assert error.error is None
    assert error.status_code == 400
    text = str(error)
    assert "HTTP 400" in text
    assert (content_type or "no content type") in text
    assert shown in text


def test_refusal_snippet_is_bounded() -> None:
    body = ("x" * 50 + "\n") * 100
    _, error = fail(
        obtain([ClientCredentials()]), [reply(body.encode(), 418, {"content-type": "text/plain"})]
    )
    text = str(error)
    assert "x" * 50 + " " + "x" * 10 in text  # whitespace collapsed
    assert text.endswith("...")
    assert len(text) < SNIPPET_CHARS + 200


def test_oversized_refusal_is_not_parsed() -> None:
    body = b'{"error": "invalid_grant", "pad": "' + b"x" * MAX_RESPONSE_BYTES + b'"}'
    _, error = fail(
        obtain([ClientCredentials()]), [reply(body, 403, {"content-type": "application/json"})]
    )
    assert type(error) is TokenRequestError
    assert error.error is None


def test_deeply_nested_refusal_is_not_a_recursion_error() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    _, error = fail(
        obtain([ClientCredentials()]), [reply(body, 400, {"content-type": "application/json"})]
    )
    assert type(error) is TokenRequestError


def test_echoed_secrets_are_masked() -> None:
    # A server (or proxy) that quotes the request back must not leak it.
    description = f"bad password {PASSWORD} for client secret {SECRET}"
    _, error = fail(
        obtain([Password("ann", PASSWORD)]), [auth0_error("invalid_request", description, 400)]
    )
    assert isinstance(error, TokenRequestError)
    text = str(error)
    assert PASSWORD not in text
    assert SECRET not in text
    assert error.error_description == "bad password *** for client secret ***"
    html = f"<p>you sent password={PASSWORD}&client_secret={SECRET}</p>".encode()
    _, error = fail(
        obtain([Password("ann", PASSWORD)]), [reply(html, 400, {"content-type": "text/html"})]
    )
    assert PASSWORD not in str(error)
    assert SECRET not in str(error)


def test_url_encoded_echo_is_masked_too() -> None:
    password = "p@ss word+1"
    echo = "grant_type=password&password=p%40ss+word%2B1&client_secret=" + SECRET
    for status in (400, 200):
        flow = obtain([Password("ann", password)], max_attempts=1)
        _, error = fail(flow, [reply(echo.encode(), status, {"content-type": "text/plain"})])
        assert "p%40ss+word%2B1" not in str(error), status
        assert SECRET not in str(error), status


@pytest.mark.parametrize("status", [400, 200])
def test_secret_masked_before_the_snippet_is_cut_or_collapsed(status: int) -> None:
    password = "two  spaces\tand-more-secret"
    for prefix in ("", "x" * (SNIPPET_CHARS - 8)):
        echo = f"{prefix} you sent {password} and {SECRET}"
        flow = obtain([Password("ann", password)], max_attempts=1)
        _, error = fail(flow, [reply(echo.encode(), status, {"content-type": "text/plain"})])
        text = str(error)
        assert "and-more" not in text
        assert "two spaces" not in text
        assert SECRET[:8] not in text


def test_json_escaped_echo_is_masked() -> None:
    password = 'quote"back\\slash'
    echo = "echo: " + json.dumps({"you_sent": {"password": password}})
    flow = obtain([Password("ann", password)])
    _, error = fail(flow, [reply(echo.encode(), 400, {"content-type": "text/plain"})])
    assert json.dumps(password)[1:-1] not in str(error)
    assert "slash" not in str(error)


def test_short_values_are_not_masked() -> None:
    # Masking a 3-character value would garble the message and protect nothing.
    _, error = fail(
        obtain([Password("ann", "abc")]), [auth0_error("invalid_request", "abc is short", 400)]
    )
    assert "abc is short" in str(error)


# -- 2xx that is not a token ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "words"),
    [
        # Never quoted (issue 12): a non-JSON 2xx may be a form-encoded token.
        (b"<!DOCTYPE html><title>Sign in</title>", "text/html", "37 bytes, not shown"),
        (b"OK", "text/plain", "not JSON (HTTP 200, text/plain, 1 attempt): 2 bytes, not shown"),
        (b"", None, "not JSON (HTTP 200, no content type, 1 attempt): 0 bytes, not shown"),
        (b"\xff\xfe\xfd", "application/json", "not JSON"),
    ],
)
def test_2xx_not_json(body: bytes, content_type: str | None, words: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    _, error = fail(obtain([ClientCredentials()]), [TokenResponse(200, body, headers, NOW)])
    assert type(error) is TokenRequestError
    assert error.status_code == 200
    assert TOKEN_URL in str(error)
    assert words in str(error)


def test_truncated_json_is_not_quoted() -> None:
    # A cut-off token response holds part of a real token: never show it.
    body = b'{"access_token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.sig-abcdef'
    _, error = fail(
        obtain([ClientCredentials()]), [reply(body, 200, {"content-type": "application/json"})]
    )
    text = str(error)
    assert "invalid or truncated JSON" in text
    assert f"{len(body)} bytes" in text
    assert "eyJ" not in text


def test_deeply_nested_2xx_is_a_token_request_error() -> None:
    body = b"[" * 100_000
    _, error = fail(
        obtain([ClientCredentials()]), [reply(body, 200, {"content-type": "application/json"})]
    )
    assert type(error) is TokenRequestError
    assert "not JSON" in str(error)


def test_oversized_2xx() -> None:
    body = b" " * (MAX_RESPONSE_BYTES + 1)
    _, error = fail(
        obtain([ClientCredentials()]), [reply(body, 200, {"content-type": "application/json"})]
    )
    assert type(error) is TokenRequestError
    assert f"larger than {MAX_RESPONSE_BYTES} bytes" in str(error)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"token_type": "Bearer", "expires_in": 3600}, "no access_token"),
        ({"access_token": "x", "token_type": "MAC"}, "token_type must be Bearer"),
        ([{"access_token": "x"}], "expected a JSON object, got list"),
        ({"access_token": 7}, "access_token must be a non-empty string"),
    ],
)
def test_2xx_json_that_is_not_a_token(body: Any, words: str) -> None:
    _, error = fail(obtain([ClientCredentials()]), [reply(body, 200)])
    assert type(error) is TokenRequestError
    assert error.status_code == 200
    assert error.error is None
    assert "malformed token response" in str(error)
    assert words in str(error)
    assert error.__cause__ is None
    assert error.__suppress_context__


# -- several grants: fallbacks -------------------------------------------------------------------


def test_empty_plan_means_not_logged_in() -> None:
    # Nothing to send: no request was made, so no TokenRequestError (STYLE.md section 5).
    flow = obtain([])
    with pytest.raises(NotLoggedInError, match="log in again") as info:
        next(flow)
    assert not isinstance(info.value, TokenRequestError)


def test_rejected_refresh_token_falls_back_to_the_password_grant(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    flow = obtain([RefreshToken(REFRESH), Password("ann", PASSWORD)], scope="offline_access")
    rejected = auth0_error("invalid_grant", "Unknown or invalid refresh token.")
    fresh = reply({"access_token": "at-2", "refresh_token": "rt-new", "expires_in": 60})
    actions, token = run(flow, [rejected, fresh])
    assert [sent(a)["grant_type"] for a in actions] == ["refresh_token", "password"]
    assert sent(actions[0])["refresh_token"] == REFRESH
    assert sent(actions[1])["password"] == PASSWORD
    assert token.refresh_token == "rt-new"
    assert "refresh_token grant rejected (Unknown or invalid refresh token.)" in caplog.text
    assert "trying the password grant" in caplog.text
    for secret in (REFRESH, PASSWORD, SECRET, "at-2", "rt-new"):
        assert secret not in caplog.text


def test_rejected_cached_refresh_token_then_seed() -> None:
    flow = obtain(plan_grants(None, REFRESH, SEED))
    rejected = auth0_error("invalid_grant", "Unknown or invalid refresh token.")
    actions, token = run(flow, [rejected, reply()])
    assert [sent(a)["refresh_token"] for a in actions] == [REFRESH, SEED]
    assert token.refresh_token == SEED


def test_every_refresh_token_rejected_means_login_required() -> None:
    flow = obtain(plan_grants(None, REFRESH, SEED))
    rejected = auth0_error("invalid_grant", "Unknown or invalid refresh token.")
    actions, error = fail(flow, [rejected, rejected])
    assert len(actions) == 2
    assert type(error) is LoginRequiredError
    assert isinstance(error.__cause__, InvalidGrantError)
    assert error.error == "invalid_grant"
    assert error.error_description == "Unknown or invalid refresh token."
    assert error.status_code == 403
    assert error.url == TOKEN_URL
    assert "Unknown or invalid refresh token." in str(error)
    assert "log in again" in str(error)


def test_rejected_code_means_login_required() -> None:
    flow = obtain([AuthorizationCode(CODE, "http://127.0.0.1/callback")])
    _, error = fail(flow, [auth0_error("invalid_grant", "Invalid authorization code")])
    assert type(error) is LoginRequiredError
    assert CODE not in str(error)


def test_rejected_password_is_not_login_required() -> None:
    # Wrong credentials in the program: logging in interactively won't fix them.
    flow = obtain([RefreshToken(REFRESH), Password("ann", PASSWORD)])
    rejected = auth0_error("invalid_grant", "Unknown or invalid refresh token.")
    wrong = auth0_error("invalid_grant", "Wrong email or password.")
    actions, error = fail(flow, [rejected, wrong])
    assert len(actions) == 2
    assert type(error) is InvalidGrantError
    assert str(error).startswith("invalid_grant: Wrong email or password. (HTTP 403)")


def test_other_refusals_do_not_fall_back() -> None:
    # Only invalid_grant says "this grant is dead"; anything else is final.
    flow = obtain([RefreshToken(REFRESH), Password("ann", PASSWORD)])
    actions, error = fail(flow, [auth0_error("invalid_client", "Unauthorized", 401)])
    assert len(actions) == 1
    assert type(error) is TokenRequestError
    assert error.error == "invalid_client"


def test_unreachable_does_not_fall_back() -> None:
    flow = obtain([RefreshToken(REFRESH), Password("ann", PASSWORD)], max_attempts=1)
    actions, error = fail(flow, [TransportFailure(OSError("down"), NOW)])
    assert len(actions) == 1
    assert isinstance(error, TokenEndpointUnreachableError)


# -- revocation ---------------------------------------------------------------------------


def test_revoke_posts_the_refresh_token() -> None:
    flow = revoke_refresh_token(config(), REFRESH, NOW, rng())
    actions, value = run(flow, [TokenResponse(200, b"", {}, NOW)])
    assert value is None
    (action,) = actions
    assert action.url == "https://auth.example/oauth/revoke"
    assert sent(action) == {"client_id": "cid", "client_secret": SECRET, "token": REFRESH}


def test_revoke_retries_and_reports_refusals() -> None:
    flow = revoke_refresh_token(config(), REFRESH, NOW, rng())
    actions, value = run(flow, [unavailable(), NOW, TokenResponse(200, b"", {}, NOW)])
    assert value is None
    assert len(actions) == 3
    flow = revoke_refresh_token(config(), REFRESH, NOW, rng())
    _, error = fail(flow, [auth0_error("invalid_client", "Unauthorized", 401)])
    assert isinstance(error, TokenRequestError)
    assert error.url == "https://auth.example/oauth/revoke"
    assert REFRESH not in str(error)


# -- the device flow (RFC 8628) ---------------------------------------------------------

DEVICE = "flow-device-code-1d2e"


def device_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "device_code": DEVICE,
        "user_code": "BCDF-GHJK",
        "verification_uri": "https://auth.example/activate",
        "verification_uri_complete": "https://auth.example/activate?user_code=BCDF-GHJK",
        "expires_in": 900,
        "interval": 5,
    }
    body.update(overrides)
    return body


def authorization(expires_at: float = NOW + 900, interval: float = 5.0) -> DeviceAuthorization:
    return DeviceAuthorization(
        DEVICE, "BCDF-GHJK", "https://auth.example/activate", None, expires_at, interval
    )


def test_request_device_code() -> None:
    actions, result = run(
        request_device_code(config(scope="openid"), NOW, rng()), [reply(device_body())]
    )

    (request,) = actions
    assert request.url == "https://auth.example/oauth/device/code"
    assert dict(request.form) == {
        "client_id": "cid",
        "audience": "https://api.hoxton.cloud",
        "scope": "openid",
    }
    assert result.user_code == "BCDF-GHJK"
    assert result.expires_at == NOW + 900
    assert result.interval == 5.0
    assert DEVICE not in repr(result)


def test_request_device_code_defaults_and_auth0_spelling() -> None:
    body = device_body(interval=None, verification_uri_complete=None)
    body["verification_url"] = body.pop("verification_uri")
    _, result = run(request_device_code(config(), NOW, rng()), [reply(body)])

    assert result.interval == 5.0
    assert result.verification_uri == "https://auth.example/activate"
    assert result.verification_uri_complete is None


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        device_body(device_code=""),
        device_body(expires_in="soon"),
        {"user_code": "X"},
        device_body(interval=-1),
        device_body(expires_in=float("inf")),
    ],
)
def test_request_device_code_malformed(body: Any) -> None:
    _, error = fail(request_device_code(config(), NOW, rng()), [reply(body)])

    assert isinstance(error, TokenRequestError)
    assert "device authorization response" in str(error)
    assert DEVICE not in str(error)


def test_request_device_code_refused_in_the_servers_words() -> None:
    refused = auth0_error("unauthorized_client", "Grant type not allowed for the client.")
    _, error = fail(request_device_code(config(), NOW, rng()), [refused])

    assert isinstance(error, TokenRequestError)
    assert error.error == "unauthorized_client"


def test_poll_waits_keeps_waiting_slows_down_then_returns_the_answer() -> None:
    approved = reply({"access_token": "at-1", "expires_in": 3600, "refresh_token": "rt"})
    actions, result = run(
        poll_device_code(config(client_secret=None), authorization()),
        [
            NOW + 5,
            auth0_error("authorization_pending", "User has yet to authorize device code."),
            NOW + 10,
            auth0_error("slow_down", "You are polling faster than allowed.", 429),
            NOW + 20,
            TransportFailure(OSError("reset"), NOW + 20),
            NOW + 40,
            reply({"error": "temporarily_unavailable"}, 503),
            NOW + 80,
            approved,
        ],
    )

    waits = [a.delay for a in actions if isinstance(a, Backoff)]
    # 5; 5 after pending; 5 + 5 after slow_down; doubled after a network error and a 5xx.
    assert waits == [5.0, 5.0, 10.0, 20.0, 40.0]
    request = actions[1]
    assert dict(request.form) == {
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "client_id": "cid",
        "device_code": DEVICE,
    }
    assert (result.access_token, result.refresh_token) == ("at-1", "rt")


def test_poll_interval_is_capped() -> None:
    actions, _ = run(
        poll_device_code(config(), authorization(interval=50.0)),
        [NOW + 50, TransportFailure(OSError("x"), NOW), NOW + 60, reply()],
    )
    assert [a.delay for a in actions if isinstance(a, Backoff)] == [50.0, 60.0]


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (auth0_error("expired_token", "Device code expired"), "device code expired"),
        (auth0_error("access_denied", "User cancelled the confirmation prompt"), "was denied"),
    ],
)
def test_poll_stops_cleanly(answer: TokenResponse, words: str) -> None:
    _, error = fail(poll_device_code(config(), authorization()), [NOW + 5, answer])

    assert isinstance(error, LoginError)
    assert words in str(error)
    assert isinstance(error.__cause__, TokenRequestError)


def test_poll_stops_at_the_deadline_without_asking() -> None:
    actions, error = fail(poll_device_code(config(), authorization(expires_at=NOW + 4)), [NOW + 5])

    assert isinstance(error, LoginError)
    assert len(actions) == 1  # the Backoff only: no request after the code expired


def test_poll_other_refusals_are_token_request_errors() -> None:
    _, error = fail(
        poll_device_code(config(), authorization()),
        [NOW + 5, auth0_error("invalid_grant", "Invalid or expired device code.")],
    )
    assert isinstance(error, InvalidGrantError)
    assert DEVICE not in str(error)


def test_poll_a_malformed_token_fails() -> None:
    _, error = fail(poll_device_code(config(), authorization()), [NOW + 5, reply({"nope": 1})])
    assert isinstance(error, TokenRequestError)


# -- issue 12: Auth0's bad days, in the core ------------------------------------------------


def test_too_many_attempts_is_never_retried() -> None:
    blocked = auth0_error("too_many_attempts", "User is blocked", 429)
    actions, error = fail(obtain([Password("ann", PASSWORD)]), [blocked])
    assert len(actions) == 1
    assert isinstance(error, TokenRequestError)
    assert "brute-force protection blocked this login" in str(error)
    assert PASSWORD not in str(error)


@pytest.mark.parametrize(
    "error", ["invalid_client", "unauthorized_client", "access_denied", "mfa_required"]
)
def test_refusals_are_never_retried(error: str) -> None:
    actions, raised = fail(obtain([ClientCredentials()]), [auth0_error(error, "no", 403)])
    assert len(actions) == 1
    assert isinstance(raised, TokenRequestError)
    assert raised.error == error


def test_mfa_required_without_otp_raises_with_the_mfa_token() -> None:
    challenge = reply(
        {
            "error": "mfa_required",
            "error_description": "Multifactor authentication required",
            "mfa_token": "mfa-token-secret-1234",
            "mfa_requirements": {"challenge": [{"type": "otp"}]},
        },
        403,
    )
    _, error = fail(obtain([Password("ann", PASSWORD)]), [challenge])
    assert isinstance(error, MfaRequiredError)
    assert error.mfa_token == "mfa-token-secret-1234"
    assert error.mfa_requirements == {"challenge": [{"type": "otp"}]}
    assert "mfa-token-secret-1234" not in repr(error) + str(error)


def test_mfa_required_with_otp_sends_the_mfa_otp_grant() -> None:
    challenge = reply({"error": "mfa_required", "mfa_token": "mfa-tok-5678"}, 403)
    codes = iter(["112233"])
    grant = Password("ann", PASSWORD, otp=lambda: next(codes))
    actions, token = run(obtain([grant]), [challenge, reply()])
    assert token.access_token == "at-1"
    assert sent(actions[1]) == {
        "grant_type": "http://auth0.com/oauth/grant-type/mfa-otp",
        "client_id": "cid",
        "client_secret": SECRET,
        "mfa_token": "mfa-tok-5678",
        "otp": "112233",
    }
    assert "112233" not in repr(actions[1].form)
    assert "mfa-tok-5678" not in repr(actions[1].form)


def test_password_realm_and_forwarded_for() -> None:
    grant = Password("ann", PASSWORD, realm="corp-ldap")
    actions, _ = run(obtain([grant], forwarded_for="203.0.113.9"), [reply()])
    form = sent(actions[0])
    assert form["grant_type"] == "http://auth0.com/oauth/grant-type/password-realm"
    assert form["realm"] == "corp-ldap"
    assert actions[0].headers == {"auth0-forwarded-for": "203.0.113.9"}
    actions, _ = run(obtain([ClientCredentials()], organization="org_1"), [reply()])
    assert sent(actions[0])["organization"] == "org_1"
    assert actions[0].headers == {}


def test_secrets_in_the_form_are_masked_in_repr() -> None:
    actions, _ = run(obtain([Password("ann", PASSWORD)]), [reply()])
    form = actions[0].form
    assert PASSWORD not in repr(form)
    assert SECRET not in repr(form)
    assert "ann" in repr(form)
    assert sent(actions[0])["password"] == PASSWORD  # the bytes on the wire are the real ones


def test_quota_429_past_the_deadline_gives_up_at_once_with_retry_after() -> None:
    quota = reply(
        {"error": "too_many_requests", "error_description": "Quota exceeded"},
        429,
        {"Retry-After": "3540", "Auth0-Client-Quota-Limit": "b=per_hour;q=10;r=0;t=3540"},
    )
    actions, error = fail(obtain([ClientCredentials()]), [quota])
    assert len(actions) == 1
    assert isinstance(error, TokenRequestError)
    assert error.retry_after == 3540
    assert "0 of 10 tokens left" in str(error)
