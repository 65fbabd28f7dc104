"""Tests of `hoxton_auth.testing`, the local Auth0-compatible server.

They talk to the server with plain requests/httpx, never through the rest of
hoxton_auth, so the server can be trusted as a fixture for the library.
"""

from __future__ import annotations

import io
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import requests
from conftest import pkce_challenge

from hoxton_auth.testing import (
    AUDIENCE,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    PUBLIC_CLIENT_ID,
    AuthServer,
    _endpoints,
)
from hoxton_auth.testing.__main__ import _parser, main, serve

if TYPE_CHECKING:
    from collections.abc import Iterator

pytest_plugins = ["pytester"]

REPO_ROOT = Path(__file__).resolve().parent.parent
REDIRECT_URI = "http://127.0.0.1:9999/callback"
CC = {
    "grant_type": "client_credentials",
    "client_id": DEFAULT_CLIENT_ID,
    "client_secret": DEFAULT_CLIENT_SECRET,
    "audience": AUDIENCE,
}
PASSWORD = {
    "grant_type": "password",
    "client_id": DEFAULT_CLIENT_ID,
    "client_secret": DEFAULT_CLIENT_SECRET,
    "username": DEFAULT_USERNAME,
    "password": DEFAULT_PASSWORD,
    "audience": AUDIENCE,
    "scope": "openid profile email offline_access",
}


@pytest.fixture
def server() -> Iterator[AuthServer]:
    with AuthServer() as srv:
        yield srv


def post_token(
    server: AuthServer, fields: dict[str, str], *, as_json: bool = False
) -> requests.Response:
    if as_json:
        return requests.post(server.token_url, json=fields, timeout=10)
    return requests.post(server.token_url, data=fields, timeout=10)


def error_of(response: requests.Response | httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error"], body["error_description"]


def decode(server: AuthServer, token: str, *, audience: str = AUDIENCE) -> dict[str, Any]:
    """Verify a JWT the way an API would: key from the served JWKS."""
    keys = jwt.PyJWKSet.from_dict(
        requests.get(server.domain + "/.well-known/jwks.json", timeout=10).json()
    )
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=["RS256"], audience=audience, issuer=server.domain + "/"
    )
    return claims


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, pkce_challenge(verifier)


def authorize(server: AuthServer, **params: str) -> requests.Response:
    query = {
        "response_type": "code",
        "client_id": PUBLIC_CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "audience": AUDIENCE,
        "scope": "openid offline_access",
        "state": "xyz",
        **params,
    }
    query = {k: v for k, v in query.items() if v}
    return requests.get(
        server.domain + "/authorize", params=query, allow_redirects=False, timeout=10
    )


def redirect_params(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def get_code(server: AuthServer, **params: str) -> str:
    return redirect_params(authorize(server, **params))["code"]


def code_grant(code: str, **fields: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "client_id": PUBLIC_CLIENT_ID,
        "code": code,
        "redirect_uri": REDIRECT_URI,
        **fields,
    }


def refresh(server: AuthServer, token: str, **fields: str) -> requests.Response:
    form = {
        "grant_type": "refresh_token",
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "refresh_token": token,
        **fields,
    }
    return post_token(server, form)


def call_api(server: AuthServer, token: str, method: str = "GET", **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.request(method, server.api_url, headers=headers, timeout=10, **kw)


# -- client_credentials ------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_client_credentials_grant(server: AuthServer, as_json: bool) -> None:
    response = post_token(server, CC, as_json=as_json)

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 86400
    assert "refresh_token" not in body
    assert "scope" not in body
    claims = decode(server, body["access_token"])
    assert claims["sub"] == f"{DEFAULT_CLIENT_ID}@clients"
    assert claims["azp"] == DEFAULT_CLIENT_ID
    assert claims["gty"] == "client-credentials"
    assert claims["exp"] - claims["iat"] == 86400
    assert server.token_requests == [CC]
    assert server.count() == server.count("client_credentials") == 1


def test_client_credentials_echoes_scope(server: AuthServer) -> None:
    body = post_token(server, {**CC, "scope": "read:things"}).json()

    assert body["scope"] == "read:things"
    assert decode(server, body["access_token"])["scope"] == "read:things"


@pytest.mark.parametrize(
    "fields",
    [
        {"client_id": "nobody"},
        {"client_secret": "wrong"},
        {"client_secret": ""},
    ],
    ids=["unknown-client", "wrong-secret", "missing-secret"],
)
def test_client_authentication_failures(server: AuthServer, fields: dict[str, str]) -> None:
    response = post_token(server, {**CC, **fields})

    assert error_of(response) == (401, "invalid_client", "Unauthorized")
    assert server.count("client_credentials") == 1


@pytest.mark.parametrize(
    ("secret", "status"), [(DEFAULT_CLIENT_SECRET, 200), ("wrong", 401)], ids=["right", "wrong"]
)
def test_client_secret_basic_is_accepted(server: AuthServer, secret: str, status: int) -> None:
    # Auth0 takes client_secret_basic as well as client_secret_post.
    form = {k: v for k, v in CC.items() if k not in ("client_id", "client_secret")}
    response = requests.post(
        server.token_url, data=form, auth=(DEFAULT_CLIENT_ID, secret), timeout=10
    )

    assert response.status_code == status
    assert server.token_requests[0]["client_id"] == DEFAULT_CLIENT_ID


def test_a_malformed_basic_header_is_a_bad_request(server: AuthServer) -> None:
    response = requests.post(
        server.token_url, data=CC, headers={"Authorization": "Basic %%%"}, timeout=10
    )

    assert error_of(response)[:2] == (400, "invalid_request")


def test_client_credentials_needs_a_confidential_client(server: AuthServer) -> None:
    response = post_token(server, {**CC, "client_id": PUBLIC_CLIENT_ID})

    assert response.status_code == 403
    assert response.json()["error"] == "unauthorized_client"


def test_client_credentials_audience(server: AuthServer) -> None:
    wrong = post_token(server, {**CC, "audience": "https://elsewhere"})
    missing = post_token(server, {k: v for k, v in CC.items() if k != "audience"})

    assert error_of(wrong) == (403, "access_denied", "Service not found: https://elsewhere")
    assert error_of(missing)[:2] == (403, "access_denied")
    assert "audience" in error_of(missing)[2]


# -- password ----------------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_password_grant(server: AuthServer, as_json: bool) -> None:
    body = post_token(server, PASSWORD, as_json=as_json).json()

    assert body["scope"] == PASSWORD["scope"]
    assert body["refresh_token"].startswith("v1.")
    claims = decode(server, body["access_token"])
    assert claims["sub"].startswith("auth0|")
    assert claims["gty"] == "password"
    assert claims["scope"] == PASSWORD["scope"]
    id_claims = decode(server, body["id_token"], audience=DEFAULT_CLIENT_ID)
    assert id_claims["sub"] == claims["sub"]
    assert id_claims["email"] == DEFAULT_USERNAME
    assert id_claims["name"] == DEFAULT_USERNAME
    assert server.token_requests == [PASSWORD]


def test_password_grant_without_offline_access_or_openid(server: AuthServer) -> None:
    body = post_token(server, {**PASSWORD, "scope": "read:things"}).json()

    assert "refresh_token" not in body
    assert "id_token" not in body


def test_password_grant_wrong_password(server: AuthServer) -> None:
    response = post_token(server, {**PASSWORD, "password": "nope"})

    assert response.status_code == 403
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "Wrong email or password.",
    }


def test_password_grant_public_client_and_added_user(server: AuthServer) -> None:
    server.add_user("other@example.com", "pw")
    form = {**PASSWORD, "client_id": PUBLIC_CLIENT_ID, "username": "other@example.com"}
    del form["client_secret"]

    body = post_token(server, {**form, "password": "pw"}).json()

    assert decode(server, body["access_token"])["azp"] == PUBLIC_CLIENT_ID


def test_password_grant_without_audience_gives_an_opaque_token(server: AuthServer) -> None:
    form = {k: v for k, v in PASSWORD.items() if k != "audience"}
    body = post_token(server, form).json()

    assert body["access_token"].count(".") != 2
    assert call_api(server, body["access_token"]).status_code == 401


# -- errors common to all grants ---------------------------------------------


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({**CC, "grant_type": ""}, "grant_type"),
        ({**CC, "client_id": ""}, "client_id"),
        ({**PASSWORD, "username": ""}, "username"),
        ({**PASSWORD, "password": ""}, "password"),
        (code_grant(""), "code"),
        (code_grant("abc", redirect_uri=""), "redirect_uri"),
        ({"grant_type": "refresh_token", "client_id": PUBLIC_CLIENT_ID}, "refresh_token"),
    ],
)
def test_missing_parameter(server: AuthServer, fields: dict[str, str], missing: str) -> None:
    response = post_token(server, {k: v for k, v in fields.items() if v})

    assert error_of(response) == (
        400,
        "invalid_request",
        f"Missing required parameter: {missing}",
    )


def test_unsupported_grant_type(server: AuthServer) -> None:
    response = post_token(server, {**CC, "grant_type": "urn:ietf:params:oauth:grant-type:x"})

    assert error_of(response)[:2] == (403, "unsupported_grant_type")
    assert server.count("urn:ietf:params:oauth:grant-type:x") == 1


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"{not json"),
        ("application/json", b"[1, 2]"),
        ("application/json", b'{"grant_type": ["password"]}'),
        ("application/x-www-form-urlencoded", b"grant_type"),
        ("application/x-www-form-urlencoded", b"grant_type=password&grant_type=password"),
        ("application/x-www-form-urlencoded", b"grant_type=\xff"),
        ("text/plain", b"grant_type=password"),
    ],
)
def test_malformed_bodies_are_invalid_requests(
    server: AuthServer, content_type: str, body: bytes
) -> None:
    response = requests.post(
        server.token_url, data=body, headers={"Content-Type": content_type}, timeout=10
    )

    assert error_of(response)[:2] == (400, "invalid_request")
    assert server.count() == 1


def test_json_scalars_are_read_as_strings(server: AuthServer) -> None:
    response = post_token(server, {**CC, "extra": 5, "other": None}, as_json=True)  # type: ignore[dict-item]  # JSON may hold numbers and nulls

    assert response.status_code == 200
    assert server.token_requests[0]["extra"] == "5"
    assert "other" not in server.token_requests[0]


# -- /authorize and authorization_code ----------------------------------------


@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_authorization_code_with_pkce(server: AuthServer, as_json: bool) -> None:
    verifier, challenge = pkce_pair()
    code = get_code(server, code_challenge=challenge, code_challenge_method="S256", nonce="n-1")

    response = post_token(server, code_grant(code, code_verifier=verifier), as_json=as_json)

    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"access_token", "refresh_token", "id_token"}
    assert "gty" not in decode(server, body["access_token"])
    assert decode(server, body["id_token"], audience=PUBLIC_CLIENT_ID)["nonce"] == "n-1"
    assert server.authorize_requests[0]["code_challenge"] == challenge


@pytest.mark.parametrize("verifier", ["wrong", ""], ids=["wrong", "missing"])
def test_authorization_code_bad_verifier(server: AuthServer, verifier: str) -> None:
    _, challenge = pkce_pair()
    code = get_code(server, code_challenge=challenge, code_challenge_method="S256")

    response = post_token(server, code_grant(code, code_verifier=verifier))

    assert error_of(response) == (403, "invalid_grant", "Failed to verify code verifier")


def test_authorization_code_plain_challenge(server: AuthServer) -> None:
    code = get_code(server, code_challenge="v" * 43, code_challenge_method="plain")

    assert post_token(server, code_grant(code, code_verifier="v" * 43)).status_code == 200


def test_authorization_code_reuse_revokes_its_refresh_tokens(server: AuthServer) -> None:
    verifier, challenge = pkce_pair()
    code = get_code(server, code_challenge=challenge, code_challenge_method="S256")
    form = code_grant(code, code_verifier=verifier)
    first = post_token(server, form).json()

    again = post_token(server, form)
    after = refresh(server, first["refresh_token"], client_id=PUBLIC_CLIENT_ID)

    assert error_of(again) == (403, "invalid_grant", "Invalid authorization code")
    assert error_of(after) == (403, "invalid_grant", "Unknown or invalid refresh token.")
    assert server.count("authorization_code") == 2


def test_authorization_code_confidential_client(server: AuthServer) -> None:
    code = get_code(server, client_id=DEFAULT_CLIENT_ID)
    form = code_grant(code, client_id=DEFAULT_CLIENT_ID)

    without_secret = post_token(server, form)
    with_secret = post_token(server, {**form, "client_secret": DEFAULT_CLIENT_SECRET})

    assert error_of(without_secret) == (401, "invalid_client", "Unauthorized")
    assert with_secret.status_code == 200


def test_authorization_code_public_client_needs_pkce(server: AuthServer) -> None:
    code = get_code(server)

    assert error_of(post_token(server, code_grant(code)))[:2] == (401, "invalid_client")


def test_authorization_code_redirect_uri_must_match(server: AuthServer) -> None:
    verifier, challenge = pkce_pair()
    code = get_code(server, code_challenge=challenge, code_challenge_method="S256")
    other = "http://127.0.0.1:9999/other"

    response = post_token(server, code_grant(code, code_verifier=verifier, redirect_uri=other))

    assert error_of(response)[:2] == (403, "invalid_grant")
    # A failed attempt does not use the code up.
    assert post_token(server, code_grant(code, code_verifier=verifier)).status_code == 200


def test_authorization_code_belongs_to_its_client(server: AuthServer) -> None:
    code = get_code(server)
    form = code_grant(code, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET)

    assert error_of(post_token(server, form)) == (
        403,
        "invalid_grant",
        "Invalid authorization code",
    )


def test_authorization_code_expires_after_ten_minutes(server: AuthServer) -> None:
    verifier, challenge = pkce_pair()
    code = get_code(server, code_challenge=challenge, code_challenge_method="S256")
    server.clock_skew = 601

    response = post_token(server, code_grant(code, code_verifier=verifier))

    assert error_of(response) == (403, "invalid_grant", "Invalid authorization code")


def test_authorize_keeps_existing_query_and_state(server: AuthServer) -> None:
    response = authorize(server, redirect_uri="http://localhost:1234/cb?x=1", state="a b&c")

    location = response.headers["Location"]
    assert location.startswith("http://localhost:1234/cb?x=1&code=")
    assert redirect_params(response)["state"] == "a b&c"
    assert response.headers["Content-Length"] == "0"


def test_authorize_denied(server: AuthServer) -> None:
    server.deny_authorization = True

    response = authorize(server)

    assert response.headers["Location"] == (
        f"{REDIRECT_URI}?error=access_denied"
        "&error_description=User%20did%20not%20authorize%20the%20request&state=xyz"
    )
    assert server.deny_authorization


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"audience": "https://elsewhere"}, "access_denied"),
        ({"code_challenge": "c", "code_challenge_method": "S512"}, "invalid_request"),
        ({"code_challenge_method": "S256"}, "invalid_request"),
    ],
)
def test_authorize_errors_are_redirected(
    server: AuthServer, params: dict[str, str], error: str
) -> None:
    answer = redirect_params(authorize(server, **params))

    assert answer["error"] == error
    assert answer["state"] == "xyz"
    assert "code" not in answer


@pytest.mark.parametrize(
    "params",
    [
        {"client_id": "nobody"},
        {"redirect_uri": "https://evil.example/cb"},
        {"redirect_uri": "not a url"},
        {"redirect_uri": ""},
    ],
)
def test_authorize_untrusted_requests_get_an_error_page(
    server: AuthServer, params: dict[str, str]
) -> None:
    response = authorize(server, **params)

    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")


def test_authorize_honours_a_redirect_uri_allow_list(server: AuthServer) -> None:
    server.add_client("spa", redirect_uris=["https://app.example/cb"])

    allowed = authorize(server, client_id="spa", redirect_uri="https://app.example/cb")
    loopback = authorize(server, client_id="spa")

    assert allowed.status_code == 302
    assert loopback.status_code == 400


# -- refresh_token and /oauth/revoke -------------------------------------------


def test_refresh_rotation_and_reuse_detection(server: AuthServer) -> None:
    original = post_token(server, PASSWORD).json()["refresh_token"]
    second = refresh(server, original).json()
    third = refresh(server, second["refresh_token"]).json()
    assert len({original, second["refresh_token"], third["refresh_token"]}) == 3
    assert "id_token" in third

    reuse = refresh(server, original)
    newest = refresh(server, third["refresh_token"])

    assert error_of(reuse) == (403, "invalid_grant", "Unknown or invalid refresh token.")
    assert error_of(newest)[:2] == (403, "invalid_grant")
    assert server.reuse_detected == 1
    assert server.count("refresh_token") == 4
    # Other families are unaffected.
    other = post_token(server, PASSWORD).json()["refresh_token"]
    assert refresh(server, other).status_code == 200


def test_concurrent_refresh_with_one_token_trips_reuse_detection(server: AuthServer) -> None:
    token = post_token(server, PASSWORD).json()["refresh_token"]
    server.token_delay = 0.05
    statuses: list[int] = []

    def worker() -> None:
        statuses.append(refresh(server, token).status_code)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200, 403]
    assert server.reuse_detected == 1


def test_refresh_without_rotation(server: AuthServer) -> None:
    server.rotate_refresh_tokens = False
    token = post_token(server, PASSWORD).json()["refresh_token"]

    first = refresh(server, token)
    second = refresh(server, token)

    assert first.status_code == second.status_code == 200
    assert "refresh_token" not in first.json()
    assert server.reuse_detected == 0
    assert not server.rotate_refresh_tokens


def test_refresh_scope_may_narrow_but_not_widen(server: AuthServer) -> None:
    token = post_token(server, PASSWORD).json()["refresh_token"]

    narrow = refresh(server, token, scope="openid").json()
    wide = refresh(server, narrow["refresh_token"], scope="openid admin")

    assert narrow["scope"] == "openid"
    assert decode(server, narrow["access_token"])["scope"] == "openid"
    assert error_of(wide)[:2] == (403, "invalid_scope")
    # The family keeps its original scope.
    assert refresh(server, narrow["refresh_token"]).json()["scope"] == PASSWORD["scope"]


def test_refresh_client_checks(server: AuthServer) -> None:
    token = post_token(server, PASSWORD).json()["refresh_token"]

    no_secret = refresh(server, token, client_secret="")
    other_client = refresh(server, token, client_id=PUBLIC_CLIENT_ID)
    unknown = refresh(server, "v1.nope")

    assert error_of(no_secret)[:2] == (401, "invalid_client")
    assert error_of(other_client)[:2] == (403, "invalid_grant")
    assert error_of(unknown)[:2] == (403, "invalid_grant")
    assert refresh(server, token).status_code == 200


def test_mint_refresh_token(server: AuthServer) -> None:
    token = server.mint_refresh_token(scope="offline_access")

    body = refresh(server, token).json()

    assert body["scope"] == "offline_access"
    with pytest.raises(KeyError):
        server.mint_refresh_token(client_id="nobody")
    with pytest.raises(KeyError):
        server.mint_refresh_token(username="nobody")


def test_revoke_endpoint(server: AuthServer) -> None:
    token = post_token(server, PASSWORD).json()["refresh_token"]
    rotated = refresh(server, token).json()["refresh_token"]
    url = server.domain + "/oauth/revoke"
    creds = {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}

    wrong = requests.post(url, data={**creds, "client_secret": "x", "token": token}, timeout=10)
    missing = requests.post(url, json=creds, timeout=10)
    unknown = requests.post(url, json={**creds, "token": "v1.unknown"}, timeout=10)
    revoked = requests.post(url, json={**creds, "token": token}, timeout=10)
    malformed = requests.post(
        url, data=b"{", headers={"Content-Type": "application/json"}, timeout=10
    )

    assert error_of(wrong)[:2] == (401, "invalid_client")
    assert error_of(missing) == (400, "invalid_request", "Missing required parameter: token")
    assert error_of(malformed)[:2] == (400, "invalid_request")
    assert (unknown.status_code, unknown.content) == (200, b"")
    assert (revoked.status_code, revoked.content) == (200, b"")
    # Revoking any token of the family revokes the whole family.
    assert error_of(refresh(server, rotated))[:2] == (403, "invalid_grant")
    assert server.reuse_detected == 0
    assert len(server.revoke_requests) == 5
    assert server.revoke_requests[-1] == {}


# -- the echo API ----------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Basic dXNlcjpwdw==", "Bearer not-a-jwt", "Bearer a.b.c"],
)
def test_api_rejects_missing_or_bad_tokens(server: AuthServer, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = requests.get(server.api_url, headers=headers, timeout=10)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert response.json()["error"] == "invalid_token"
    assert server.api_requests == 1


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_api_echoes_the_request(server: AuthServer, method: str) -> None:
    token = post_token(server, CC).json()["access_token"]

    response = call_api(server, token, method, data="payload \u00e9", params={"q": "1"})

    assert response.status_code == 200
    assert response.json() == {
        "method": method,
        "path": "/api/echo",
        "query": "q=1",
        "sub": f"{DEFAULT_CLIENT_ID}@clients",
        "scope": "",
        "body": "payload \u00e9",
    }


def test_api_reads_chunked_bodies(server: AuthServer) -> None:
    token = server.mint_access_token()

    response = call_api(server, token, "POST", data=iter([b"one ", b"two"]))

    assert response.json()["body"] == "one two"


def test_revoke_and_expire_access_tokens(server: AuthServer) -> None:
    first = post_token(server, CC).json()["access_token"]
    server.revoke_access_tokens()
    second = post_token(server, CC).json()["access_token"]

    assert call_api(server, first).json()["error_description"] == (
        "The access token has been revoked"
    )
    assert call_api(server, second).status_code == 200

    server.expire_access_tokens()

    assert call_api(server, second).json()["error_description"] == "The access token expired"
    assert call_api(server, server.mint_access_token()).status_code == 200
    assert server.api_requests == 4


def test_api_checks_expiry_against_the_server_clock(server: AuthServer) -> None:
    expired = server.mint_access_token(lifetime=-1)
    fresh = server.mint_access_token(lifetime=60, subject="someone", scope="a b")

    assert call_api(server, expired).status_code == 401
    assert call_api(server, fresh).json()["sub"] == "someone"
    server.clock_skew = 61
    assert call_api(server, fresh).status_code == 401


def test_api_rejects_foreign_tokens(server: AuthServer) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = decode(server, server.mint_access_token())
    forged = jwt.encode(claims, other_key, algorithm="RS256")
    with AuthServer() as other_server:
        from_other_server = other_server.mint_access_token()

    assert call_api(server, forged).status_code == 401
    assert call_api(server, from_other_server).status_code == 401


# -- fault injection and timing --------------------------------------------------


def test_fail_next_default(server: AuthServer) -> None:
    server.fail_next()

    failed = post_token(server, CC)
    succeeded = post_token(server, CC)

    assert error_of(failed)[:2] == (503, "temporarily_unavailable")
    assert succeeded.status_code == 200
    assert server.count() == 2


@pytest.mark.parametrize(
    ("body", "headers", "content_type", "content"),
    [
        ({"error": "x"}, None, "application/json; charset=utf-8", b'{"error": "x"}'),
        ("<html>bad gateway</html>", {"Content-Type": "text/html"}, "text/html", b"<html>"),
        (b"\x00\x01", None, "application/octet-stream", b"\x00\x01"),
    ],
)
def test_fail_next_custom(
    server: AuthServer,
    body: Any,
    headers: dict[str, str] | None,
    content_type: str,
    content: bytes,
) -> None:
    server.fail_next(2, status=502, body=body, headers=headers)

    responses = [post_token(server, CC) for _ in range(3)]

    assert [r.status_code for r in responses] == [502, 502, 200]
    assert responses[0].headers["Content-Type"] == content_type
    assert responses[0].content.startswith(content)


def test_fail_next_rate_limit_with_headers(server: AuthServer) -> None:
    server.fail_next(status=429, headers={"Retry-After": "3"})

    response = post_token(server, PASSWORD)

    assert error_of(response)[:2] == (429, "too_many_requests")
    assert response.headers["Retry-After"] == "3"
    assert server.count("password") == 1


def test_fail_next_disconnect(server: AuthServer) -> None:
    server.fail_next(disconnect=True)

    with pytest.raises(requests.ConnectionError):
        post_token(server, CC)
    assert post_token(server, CC).status_code == 200
    assert server.count() == 2


def test_delays_trip_client_timeouts(server: AuthServer) -> None:
    server.fail_next(delay=0.3)

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.token_url, data=CC, timeout=0.05)
    server.token_delay = 0.1
    started = time.monotonic()
    assert post_token(server, CC).status_code == 200
    assert time.monotonic() - started >= 0.1
    assert server.token_delay == 0.1


# -- documents, routing, lifecycle ------------------------------------------------


def test_discovery_and_jwks(server: AuthServer) -> None:
    config = requests.get(server.domain + "/.well-known/openid-configuration", timeout=10).json()
    keys = requests.get(config["jwks_uri"], timeout=10).json()

    assert config["issuer"] == server.domain + "/"
    assert config["token_endpoint"] == server.token_url
    assert keys == server.jwks
    assert keys["keys"][0]["kty"] == "RSA"
    assert jwt.get_unverified_header(server.mint_access_token())["kid"] == keys["keys"][0]["kid"]


def test_token_ids_are_unique(server: AuthServer) -> None:
    assert len({decode(server, server.mint_access_token())["jti"] for _ in range(3)}) == 3


def test_token_claims_follow_the_server_clock(server: AuthServer) -> None:
    server.clock_skew = 3600
    server.token_lifetime = 120

    body = post_token(server, CC).json()
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})

    assert body["expires_in"] == 120
    assert claims["exp"] - claims["iat"] == 120
    assert abs(claims["iat"] - (time.time() + 3600)) < 60
    assert server.clock_skew == 3600
    assert server.token_lifetime == 120


def test_routing_errors(server: AuthServer) -> None:
    missing = requests.get(server.domain + "/nope", timeout=10)
    wrong_method = requests.get(server.token_url, timeout=10)
    bad_length = requests.post(
        server.token_url, headers={"Content-Length": "x"}, data=b"", timeout=10
    )

    assert missing.status_code == 404
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "POST"
    assert bad_length.status_code == 400


def test_internal_errors_become_500(server: AuthServer, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(state: object) -> dict[str, object]:
        raise RuntimeError("bug")

    monkeypatch.setattr(_endpoints, "discovery", broken)
    response = requests.get(server.domain + "/.well-known/openid-configuration", timeout=10)

    assert error_of(response)[:2] == (500, "server_error")


def test_bad_chunked_body_is_rejected(server: AuthServer) -> None:
    port = urlsplit(server.domain).port
    assert port is not None
    request = b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        reply = b""
        while chunk := conn.recv(4096):
            reply += chunk

    assert reply.startswith(b"HTTP/1.1 400 ")
    assert b"Connection: close" in reply


def test_logs_hold_no_secrets(server: AuthServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="hoxton_auth.testing")
    body = post_token(server, PASSWORD).json()
    refresh(server, body["refresh_token"])
    call_api(server, body["access_token"], "POST", data="x")
    code = get_code(server, client_id=DEFAULT_CLIENT_ID)

    assert "POST /oauth/token -> 200" in caplog.text
    tokens = [body["access_token"], body["refresh_token"], body["id_token"]]
    for secret in (DEFAULT_CLIENT_SECRET, DEFAULT_PASSWORD, code, *tokens):
        assert secret not in caplog.text


def test_keep_alive_connections_are_reused(server: AuthServer) -> None:
    with httpx.Client() as client:
        ports = set()
        for _ in range(3):
            response = client.post(server.token_url, data=CC)
            assert response.status_code == 200
            stream = response.extensions["network_stream"]
            ports.add(stream.get_extra_info("socket").getsockname()[1])
        client.get(server.api_url, headers={"Authorization": "Bearer x"})

    assert len(ports) == 1


def test_stop_closes_idle_connections() -> None:
    server = AuthServer().start()
    session = requests.Session()
    try:
        assert session.post(server.token_url, data=CC).status_code == 200
        server.stop()
        with pytest.raises(requests.ConnectionError):
            session.post(server.token_url, data=CC)
    finally:
        session.close()


def test_lifecycle() -> None:
    server = AuthServer(token_delay=0.0)
    with pytest.raises(RuntimeError, match="not started"):
        server.domain  # noqa: B018 - the property access is the test
    assert repr(server) == "<AuthServer stopped>"

    assert server.start() is server.start()
    first_domain = server.domain
    assert repr(server) == f"<AuthServer {first_domain}>"
    assert DEFAULT_CLIENT_SECRET not in repr(server)
    server.stop()
    server.stop()
    assert repr(server) == "<AuthServer stopped>"

    with server:
        assert requests.post(server.token_url, data=CC, timeout=10).status_code == 200


# -- pytest plugin and command line ------------------------------------------------


def test_pytest_plugin_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import requests

        SEEN = []

        def test_first(hoxton_auth_server):
            SEEN.append(hoxton_auth_server)
            form = {"grant_type": "client_credentials", "client_id": "test-client",
                    "client_secret": "test-secret", "audience": "https://api.hoxton.cloud"}
            assert requests.post(hoxton_auth_server.token_url, data=form).status_code == 200

        def test_second(hoxton_auth_server):
            assert hoxton_auth_server is not SEEN[0]
            assert repr(SEEN[0]) == "<AuthServer stopped>"
            assert hoxton_auth_server.count() == 0
        """
    )
    # Load the plugin by module name whether or not the pytest11 entry point
    # (named "hoxton_auth") is installed.
    result = pytester.runpytest(
        "-p", "no:hoxton_auth", "-p", "hoxton_auth.testing.pytest_plugin", "-W", "error"
    )

    result.assert_outcomes(passed=2)


def _subprocess_env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_serve(sig: signal.Signals) -> None:
    command = [sys.executable, "-m", "hoxton_auth.testing", "serve", "--port", "0", "--delay", "0"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env=_subprocess_env(), cwd=REPO_ROOT
    ) as process:
        assert process.stdout is not None
        try:
            banner = process.stdout.readline()
            usage = process.stdout.readline()
            match = re.fullmatch(
                r"Hoxton test auth server on (http://127\.0\.0\.1:(\d+)) "
                r"\(client_id=test-client client_secret=test-secret\)\n",
                banner,
            )
            assert match, banner
            domain = match.group(1)
            assert int(match.group(2)) != 0
            assert usage == (
                f"export HOXTON_AUTH_DOMAIN={domain} "
                "HOXTON_CLIENT_ID=test-client HOXTON_CLIENT_SECRET=test-secret\n"
            )
            response = requests.post(domain + "/oauth/token", json=CC, timeout=10)
            assert response.status_code == 200
            process.send_signal(sig)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()


class _FlushSignal(io.StringIO):
    """A text stream that reports its first flush."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed = threading.Event()

    def flush(self) -> None:
        super().flush()
        self.flushed.set()


def test_serve_in_process() -> None:
    args = _parser().parse_args(["serve", "--port", "0", "--token-lifetime", "60"])
    stop, out = threading.Event(), _FlushSignal()
    results: list[int] = []
    thread = threading.Thread(target=lambda: results.append(serve(args, stop=stop, out=out)))
    thread.start()
    try:
        assert out.flushed.wait(10)
        domain = out.getvalue().split()[5]
        body = requests.post(domain + "/oauth/token", data=CC, timeout=10).json()
        assert body["expires_in"] == 60
    finally:
        stop.set()
        thread.join()
    assert results == [0]


def test_cli_reports_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        status = main(["serve", "--port", str(port)])

    assert status == 1
    assert "cannot listen" in capsys.readouterr().err


# -- the device flow (RFC 8628) ------------------------------------------------------------

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def device_code(server: AuthServer, **fields: str) -> dict[str, Any]:
    form = {
        "client_id": PUBLIC_CLIENT_ID,
        "scope": "openid offline_access",
        "audience": AUDIENCE,
        **fields,
    }
    response = requests.post(server.domain + "/oauth/device/code", data=form, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def poll(server: AuthServer, code: str, client_id: str = PUBLIC_CLIENT_ID) -> requests.Response:
    form = {"grant_type": DEVICE_GRANT, "client_id": client_id, "device_code": code}
    return post_token(server, form)


def test_device_code_response(server: AuthServer) -> None:
    server.device_interval = 5
    body = device_code(server)

    assert set(body) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    assert re.fullmatch(r"[A-Z]{4}-[A-Z]{4}", body["user_code"])
    assert body["verification_uri"] == server.domain + "/activate"
    assert body["verification_uri_complete"].endswith(f"?user_code={body['user_code']}")
    assert body["expires_in"] == 900
    assert body["interval"] == 5
    assert server.wait_for_device_code(timeout=1) == body["user_code"]


def test_device_code_unknown_client(server: AuthServer) -> None:
    response = requests.post(
        server.domain + "/oauth/device/code", data={"client_id": "nobody"}, timeout=10
    )
    assert response.status_code == 401


def test_device_grant_pending_slow_down_then_approved(server: AuthServer) -> None:
    server.device_interval = 60  # any second poll is too fast
    body = device_code(server)

    assert error_of(poll(server, body["device_code"]))[:2] == (403, "authorization_pending")
    assert error_of(poll(server, body["device_code"]))[:2] == (429, "slow_down")
    server.approve_device(body["user_code"])
    tokens = poll(server, body["device_code"]).json()

    assert decode(server, tokens["access_token"])["sub"].startswith("auth0|")
    assert "refresh_token" in tokens
    assert "id_token" in tokens
    assert server.device_polls(body["user_code"]) == 3
    # Single use: the code is spent.
    assert error_of(poll(server, body["device_code"]))[:2] == (403, "invalid_grant")


def test_device_grant_approved_as_another_user(server: AuthServer) -> None:
    server.add_user("other@example.com", "other-password")
    body = device_code(server)
    default = device_code(server)
    server.approve_device(body["user_code"], username="other@example.com")
    server.approve_device(default["user_code"])

    other_sub = decode(server, poll(server, body["device_code"]).json()["access_token"])["sub"]
    default_sub = decode(server, poll(server, default["device_code"]).json()["access_token"])["sub"]
    assert other_sub != default_sub
    with pytest.raises(LookupError):
        server.approve_device(device_code(server)["user_code"], username="nobody@example.com")


@pytest.mark.parametrize(
    ("control", "status", "error"),
    [("deny_device", 403, "access_denied"), ("expire_device", 403, "expired_token")],
)
def test_device_grant_denied_or_expired(
    server: AuthServer, control: str, status: int, error: str
) -> None:
    body = device_code(server)
    getattr(server, control)(body["user_code"])

    assert error_of(poll(server, body["device_code"]))[:2] == (status, error)
    with pytest.raises(LookupError):
        server.approve_device(body["user_code"])  # no longer pending


def test_device_code_expires_by_the_clock(server: AuthServer) -> None:
    server.device_code_lifetime = 0
    body = device_code(server)

    assert error_of(poll(server, body["device_code"]))[:2] == (403, "expired_token")


def test_device_grant_wrong_client_or_code(server: AuthServer) -> None:
    body = device_code(server)

    assert error_of(poll(server, "not-a-device-code"))[:2] == (403, "invalid_grant")
    wrong = post_token(
        server,
        {
            "grant_type": DEVICE_GRANT,
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "device_code": body["device_code"],
        },
    )
    assert error_of(wrong)[:2] == (403, "invalid_grant")


def test_wait_for_device_code_times_out(server: AuthServer) -> None:
    with pytest.raises(TimeoutError):
        server.wait_for_device_code(timeout=0.01)


def test_activate_page_approves_and_denies(server: AuthServer) -> None:
    first, second = device_code(server), device_code(server)
    page = requests.get(
        server.domain + "/activate", params={"user_code": first["user_code"]}, timeout=10
    )
    assert page.status_code == 200
    assert f'value="{first["user_code"]}"' in page.text

    approved = requests.post(
        server.domain + "/activate",
        data={"user_code": first["user_code"].lower().replace("-", ""), "action": "approve"},
        timeout=10,
    )
    denied = requests.post(
        server.domain + "/activate",
        data={"user_code": second["user_code"], "action": "deny"},
        timeout=10,
    )
    unknown = requests.post(
        server.domain + "/activate", data={"user_code": "NOPE-NOPE"}, timeout=10
    )
    again = requests.post(
        server.domain + "/activate", data={"user_code": first["user_code"]}, timeout=10
    )

    assert "Approved" in approved.text
    assert "Denied" in denied.text
    assert "Unknown user code" in unknown.text
    assert "already approved" in again.text
    assert poll(server, first["device_code"]).status_code == 200
    assert error_of(poll(server, second["device_code"]))[1] == "access_denied"


def test_activate_page_escapes_what_it_echoes(server: AuthServer) -> None:
    page = requests.get(
        server.domain + "/activate", params={"user_code": '"><script>x</script>'}, timeout=10
    )
    assert "<script>x" not in page.text


# -- Auth0's bad days (issue 12) ------------------------------------------------------


def test_rotation_overlap_period_allows_the_previous_refresh_token(server: AuthServer) -> None:
    server.rotation_overlap = 60
    original = post_token(server, PASSWORD).json()["refresh_token"]
    first = refresh(server, original)
    assert first.status_code == 200
    # The answer was lost in transit: the same token again, within the overlap.
    again = refresh(server, original)
    assert again.status_code == 200
    assert server.reuse_detected == 0
    server.rotation_overlap = 0
    newest = again.json()["refresh_token"]
    assert refresh(server, first.json()["refresh_token"]).status_code == 403  # two behind
    assert server.reuse_detected == 1
    assert refresh(server, newest).status_code == 403  # the family is revoked


def test_outage_switch(server: AuthServer) -> None:
    server.outage = True
    assert error_of(post_token(server, CC))[:2] == (503, "temporarily_unavailable")
    server.outage = False
    assert post_token(server, CC).status_code == 200


def test_exhausted_quota_answers_with_auth0s_headers(server: AuthServer) -> None:
    server.exhaust_quota(reset_in=1800)
    response = post_token(server, CC)
    assert error_of(response)[:2] == (429, "too_many_requests")
    assert response.headers["Retry-After"] == "1800"
    assert response.headers["Auth0-Client-Quota-Limit"].startswith("b=per_hour;q=100;r=0;t=1800")
    assert int(response.headers["X-RateLimit-Reset"]) >= int(time.time()) + 1790
    assert post_token(server, PASSWORD).status_code == 200  # users' grants are not M2M quota
    server.restore_quota()
    assert post_token(server, CC).status_code == 200


def test_attack_protection_blocks_after_n_wrong_passwords(server: AuthServer) -> None:
    server.block_after_failed_logins = 3
    wrong = {**PASSWORD, "password": "nope"}
    for _ in range(3):
        assert error_of(post_token(server, wrong))[:2] == (403, "invalid_grant")
    status, error, description = error_of(post_token(server, PASSWORD))
    assert (status, error) == (429, "too_many_attempts")
    assert "blocked" in description


def test_mfa_required_and_otp_grant(server: AuthServer) -> None:
    server.require_mfa(DEFAULT_USERNAME, otp="135790")
    challenge = post_token(server, PASSWORD)
    assert challenge.status_code == 403
    body = challenge.json()
    assert body["error"] == "mfa_required"
    assert body["mfa_requirements"] == {"challenge": [{"type": "otp"}]}
    otp = {
        "grant_type": "http://auth0.com/oauth/grant-type/mfa-otp",
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "mfa_token": body["mfa_token"],
    }
    assert error_of(post_token(server, {**otp, "otp": "000000"}))[:2] == (403, "invalid_grant")
    answer = post_token(server, {**otp, "otp": "135790"})
    assert answer.status_code == 200
    assert decode(server, answer.json()["access_token"])["sub"]
    assert "refresh_token" in answer.json()  # offline_access of the first request


def test_password_realm_and_forwarded_for(server: AuthServer) -> None:
    realm = {**PASSWORD, "grant_type": "http://auth0.com/oauth/grant-type/password-realm"}
    assert post_token(server, realm).status_code == 400  # no realm
    realm["realm"] = "Username-Password-Authentication"
    response = requests.post(
        server.token_url, data=realm, headers={"auth0-forwarded-for": "198.51.100.4"}, timeout=10
    )
    assert response.status_code == 200
    assert server.forwarded_for[-1] == "198.51.100.4"
    assert server.token_requests[-1]["realm"] == "Username-Password-Authentication"


def test_dripping_endpoint_trickles_the_answer(server: AuthServer) -> None:
    server.drip = 0.001
    with requests.post(server.token_url, data=CC, timeout=10, stream=True) as response:
        pieces = list(iter(lambda: response.raw.read1(65536), b""))  # as they arrive
    assert len(pieces) > 10  # byte by byte, not one write
    assert b"".join(pieces).startswith(b"{")


# -- looking at an auth object's cache entry ------------------------------------------


def test_the_entry_helpers_show_an_auth_objects_entry_and_no_secret(
    hoxton_auth_server: AuthServer,
) -> None:
    import json

    from hoxton_auth import CacheEntry, HoxtonAuth, MemoryTokenCache, Token
    from hoxton_auth.testing import cache_key, cached_entry, lock_timeout, owner_meta

    cache = MemoryTokenCache()
    options: dict[str, Any] = {
        "username": DEFAULT_USERNAME,
        "password": DEFAULT_PASSWORD,
        "domain": hoxton_auth_server.domain,
        "cache": cache,
    }
    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, **options)
    assert cached_entry(auth) is None
    token = auth.get_token()

    entry = cached_entry(auth)
    assert entry is not None
    assert entry.token.access_token == token
    assert set(cache.entries()) == {cache_key(auth)}
    assert cache_key(HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, **options)) == (
        cache_key(auth)
    )
    assert lock_timeout(auth) > 0
    meta = owner_meta(auth)
    for secret in (DEFAULT_CLIENT_SECRET, DEFAULT_PASSWORD):
        assert secret not in cache_key(auth) + json.dumps(meta)
    # A token planted with the owner's metadata is served to a new object of that identity.
    now = time.time()
    planted = Token("planted-access-token", now + 3600, now)
    cache.store(cache_key(auth), CacheEntry(planted, meta))
    assert HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, **options).get_token() == (
        "planted-access-token"
    )
    assert hoxton_auth_server.count() == 1
