"""The four grants: their fields, and exactly what the token endpoint receives.

The first half checks ``fields()`` directly. The second half sends each grant
through a real local server (pytest-httpserver) in both body formats and with
every transport, and parses what arrived: form or JSON, field by field.

pytest-httpserver, not ``AuthServer``, because these tests need the raw
request (body bytes, Content-Type, headers) as it came over the wire; the
test server parses form and JSON bodies into the same fields on purpose.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request

from hoxton_auth import (
    AuthorizationCodeAuth,
    ClientCredentialsAuth,
    ConfigError,
    HoxtonAuth,
    PasswordAuth,
    RefreshTokenAuth,
)
from hoxton_auth._config import ClientConfig
from hoxton_auth._grants import (
    AuthorizationCode,
    ClientCredentials,
    Password,
    RefreshToken,
    revocation_fields,
)

if TYPE_CHECKING:
    from hoxton_auth._types import RequestFormat

CLIENT_SECRET = "grant-client-secret-91f2"
PASSWORD = "grant-user-password-77ad"
CODE = "grant-auth-code-4c3e"
VERIFIER = "grant-pkce-verifier-0123456789abcdefghijklmnopq"
REFRESH = "grant-refresh-token-8e8e"
AUDIENCE = "https://api.hoxton.cloud"
REDIRECT = "http://127.0.0.1:8765/callback"


def cfg(secret: str | None = CLIENT_SECRET, scope: str | None = None) -> ClientConfig:
    return ClientConfig("cid", secret, scope=scope)


# -- fields() -----------------------------------------------------------------


def test_client_credentials_fields() -> None:
    assert ClientCredentials().fields(cfg()) == {
        "grant_type": "client_credentials",
        "client_id": "cid",
        "client_secret": CLIENT_SECRET,
        "audience": AUDIENCE,
    }
    assert ClientCredentials().fields(cfg(scope="read:x write:x"))["scope"] == "read:x write:x"


def test_password_fields() -> None:
    grant = Password("ann@example.com", PASSWORD)
    assert grant.fields(cfg(scope="openid offline_access")) == {
        "grant_type": "password",
        "client_id": "cid",
        "client_secret": CLIENT_SECRET,
        "username": "ann@example.com",
        "password": PASSWORD,
        "audience": AUDIENCE,
        "scope": "openid offline_access",
    }
    fields = grant.fields(cfg(secret=None))
    assert "client_secret" not in fields
    assert "scope" not in fields


def test_authorization_code_fields() -> None:
    grant = AuthorizationCode(CODE, REDIRECT, VERIFIER)
    assert grant.fields(cfg(scope="openid")) == {
        "grant_type": "authorization_code",
        "client_id": "cid",
        "client_secret": CLIENT_SECRET,
        "code": CODE,
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
    }
    # A public client (PKCE only) sends no secret; no verifier -> no field.
    assert AuthorizationCode(CODE, REDIRECT).fields(cfg(secret=None)) == {
        "grant_type": "authorization_code",
        "client_id": "cid",
        "code": CODE,
        "redirect_uri": REDIRECT,
    }


def test_refresh_token_fields() -> None:
    assert RefreshToken(REFRESH).fields(cfg(secret=None)) == {
        "grant_type": "refresh_token",
        "client_id": "cid",
        "refresh_token": REFRESH,
    }
    with_all = RefreshToken(REFRESH).fields(cfg(scope="openid offline_access"))
    assert with_all["client_secret"] == CLIENT_SECRET
    assert with_all["scope"] == "openid offline_access"
    assert "audience" not in with_all


def test_revocation_fields() -> None:
    assert revocation_fields(cfg(), REFRESH) == {
        "client_id": "cid",
        "client_secret": CLIENT_SECRET,
        "token": REFRESH,
    }
    assert revocation_fields(cfg(secret=None), REFRESH) == {"client_id": "cid", "token": REFRESH}


def test_grant_properties() -> None:
    assert (ClientCredentials.repeatable, Password.repeatable) == (True, True)
    assert (AuthorizationCode.repeatable, RefreshToken.repeatable) == (False, False)


@pytest.mark.parametrize(
    "grant",
    [
        Password("ann", PASSWORD),
        AuthorizationCode(CODE, REDIRECT, VERIFIER),
        RefreshToken(REFRESH),
        ClientCredentials(),
    ],
)
def test_repr_and_frozen(grant: Any) -> None:
    for secret in (PASSWORD, CODE, VERIFIER, REFRESH, CLIENT_SECRET):
        assert secret not in repr(grant)
    with pytest.raises(dataclasses.FrozenInstanceError):
        grant.extra = 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"realm": "db"}, "realm and otp belong to the password grant"),
        ({"username": "ann", "password": PASSWORD, "realm": ""}, "realm must be a non-empty"),
        ({"username": "ann", "password": PASSWORD, "otp": "123456"}, "otp must be a callable"),
    ],
)
def test_password_grant_extras_are_checked(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HoxtonAuth("cid", CLIENT_SECRET, cache=None, **arguments)


# -- what the server receives -------------------------------------------------------

FORMATS: list[RequestFormat] = ["form", "json"]


def sent_fields(request: Request, token_format: RequestFormat) -> dict[str, str]:
    """The fields of a token request, parsed as the server would."""
    body = request.get_data()
    assert request.headers.get("Accept") == "application/json"
    # client_secret_post: credentials in the body, never HTTP Basic.
    assert "Authorization" not in request.headers
    if token_format == "json":
        assert request.headers.get("Content-Type") == "application/json"
        data = json.loads(body)
        assert isinstance(data, dict)
        assert all(isinstance(v, str) for v in data.values())
        return data
    assert request.headers.get("Content-Type") == "application/x-www-form-urlencoded"
    pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    assert len(pairs) == len(dict(pairs)), "a field was sent twice"
    return dict(pairs)


def token_requests(httpserver: HTTPServer) -> list[Request]:
    return [request for request, _ in httpserver.log if request.path == "/oauth/token"]


@pytest.fixture
def idp(httpserver: HTTPServer) -> HTTPServer:
    """A token endpoint that always issues an opaque token, and a 200 API."""
    httpserver.expect_request("/oauth/token", method="POST").respond_with_json(
        {"access_token": "opaque-at-1", "token_type": "Bearer", "expires_in": 86400}
    )
    httpserver.expect_request("/api").respond_with_data("ok")
    return httpserver


def domain_of(httpserver: HTTPServer) -> str:
    return httpserver.url_for("/").rstrip("/")


def fetch_with_requests(auth: HoxtonAuth, httpserver: HTTPServer) -> None:
    assert auth.get_token() == "opaque-at-1"


def fetch_with_httpx(auth: HoxtonAuth, httpserver: HTTPServer) -> None:
    with httpx.Client(auth=auth) as client:
        response = client.get(httpserver.url_for("/api"))
    assert response.request.headers["Authorization"] == "Bearer opaque-at-1"


def fetch_with_httpx_async(auth: HoxtonAuth, httpserver: HTTPServer) -> None:
    async def main() -> None:
        async with httpx.AsyncClient(auth=auth) as client:
            response = await client.get(httpserver.url_for("/api"))
        assert response.request.headers["Authorization"] == "Bearer opaque-at-1"
        assert await auth.aget_token() == "opaque-at-1"

    asyncio.run(main())


SENDERS: dict[str, Callable[[HoxtonAuth, HTTPServer], None]] = {
    "requests": fetch_with_requests,
    "httpx": fetch_with_httpx,
    "httpx-async": fetch_with_httpx_async,
}

# (class, constructor arguments, fields the server must receive, exactly)
CASES: dict[str, tuple[type[HoxtonAuth], dict[str, Any], dict[str, str]]] = {
    "client_credentials": (
        ClientCredentialsAuth,
        {"client_secret": CLIENT_SECRET},
        {
            "grant_type": "client_credentials",
            "client_id": "cid",
            "client_secret": CLIENT_SECRET,
            "audience": AUDIENCE,
        },
    ),
    "client_credentials+scope+audience": (
        ClientCredentialsAuth,
        {"client_secret": CLIENT_SECRET, "scope": ["read:a", "write:a"], "audience": "urn:x"},
        {
            "grant_type": "client_credentials",
            "client_id": "cid",
            "client_secret": CLIENT_SECRET,
            "audience": "urn:x",
            "scope": "read:a write:a",
        },
    ),
    "password": (
        PasswordAuth,
        {"client_secret": CLIENT_SECRET, "username": "ann@example.com", "password": PASSWORD},
        {
            "grant_type": "password",
            "client_id": "cid",
            "client_secret": CLIENT_SECRET,
            "username": "ann@example.com",
            "password": PASSWORD,
            "audience": AUDIENCE,
        },
    ),
    "password+scope": (
        PasswordAuth,
        {
            "client_secret": CLIENT_SECRET,
            "username": "ann@example.com",
            "password": PASSWORD,
            "scope": "openid offline_access",
        },
        {
            "grant_type": "password",
            "client_id": "cid",
            "client_secret": CLIENT_SECRET,
            "username": "ann@example.com",
            "password": PASSWORD,
            "audience": AUDIENCE,
            "scope": "openid offline_access",
        },
    ),
    "password, public client": (
        PasswordAuth,
        {"username": "ann@example.com", "password": PASSWORD},
        {
            "grant_type": "password",
            "client_id": "cid",
            "username": "ann@example.com",
            "password": PASSWORD,
            "audience": AUDIENCE,
        },
    ),
    "authorization_code": (
        AuthorizationCodeAuth,
        {"client_secret": CLIENT_SECRET, "code": CODE, "redirect_uri": REDIRECT},
        {
            "grant_type": "authorization_code",
            "client_id": "cid",
            "client_secret": CLIENT_SECRET,
            "code": CODE,
            "redirect_uri": REDIRECT,
        },
    ),
    "authorization_code+pkce, public client": (
        AuthorizationCodeAuth,
        {"code": CODE, "redirect_uri": REDIRECT, "code_verifier": VERIFIER},
        {
            "grant_type": "authorization_code",
            "client_id": "cid",
            "code": CODE,
            "redirect_uri": REDIRECT,
            "code_verifier": VERIFIER,
        },
    ),
    "refresh_token": (
        RefreshTokenAuth,
        {"refresh_token": REFRESH},
        {"grant_type": "refresh_token", "client_id": "cid", "refresh_token": REFRESH},
    ),
    "refresh_token+secret+scope": (
        RefreshTokenAuth,
        {"client_secret": CLIENT_SECRET, "refresh_token": REFRESH, "scope": "openid"},
        {
            "grant_type": "refresh_token",
            "client_id": "cid",
            "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH,
            "scope": "openid",
        },
    ),
}


@pytest.mark.parametrize("token_format", FORMATS)
@pytest.mark.parametrize("case", list(CASES))
def test_exact_body(idp: HTTPServer, case: str, token_format: RequestFormat) -> None:
    cls, arguments, expected = CASES[case]
    auth = HoxtonAuth(
        "cid", domain=domain_of(idp), cache=None, token_request_format=token_format, **arguments
    )
    assert type(auth) is cls
    assert auth.get_token() == "opaque-at-1"
    (request,) = token_requests(idp)
    assert request.method == "POST"
    assert sent_fields(request, token_format) == expected


@pytest.mark.parametrize("token_format", FORMATS)
@pytest.mark.parametrize("sender", list(SENDERS))
@pytest.mark.parametrize(
    "case", ["client_credentials", "password+scope", "authorization_code", "refresh_token"]
)
def test_every_transport_sends_the_same_body(
    idp: HTTPServer, case: str, sender: str, token_format: RequestFormat
) -> None:
    cls, arguments, expected = CASES[case]
    auth = cls(
        "cid", domain=domain_of(idp), cache=None, token_request_format=token_format, **arguments
    )
    SENDERS[sender](auth, idp)
    (request,) = token_requests(idp)
    assert sent_fields(request, token_format) == expected


def test_json_body_matches_the_hoxton_docs(idp: HTTPServer) -> None:
    # The docs' curl example for client credentials, field for field.
    auth = HoxtonAuth("cid", CLIENT_SECRET, domain=domain_of(idp), token_request_format="json")
    auth.get_token()
    (request,) = token_requests(idp)
    assert json.loads(request.get_data()) == {
        "grant_type": "client_credentials",
        "audience": "https://api.hoxton.cloud",
        "client_id": "cid",
        "client_secret": CLIENT_SECRET,
    }
