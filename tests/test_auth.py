"""``HoxtonAuth``: construction, tokens, caches, renewal, fallbacks, single flight, secrets.

End to end against real local servers: ``hoxton_auth.testing.AuthServer``
(an Auth0-like provider with refresh token rotation and reuse detection, and
canned answers through its fault injection); pytest-httpserver only for the
held endpoint of the event-loop tests (see ``HeldTokenEndpoint``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import requests.auth
from conftest import OFFLINE, REDIRECT_URI, authorization_code, free_port
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from hoxton_auth import (
    DEFAULT,
    AuthorizationCodeAuth,
    CacheEntry,
    ClientCredentialsAuth,
    ConfigError,
    FileTokenCache,
    HoxtonAuth,
    HoxtonAuthError,
    InvalidGrantError,
    LoginRequiredError,
    MemoryTokenCache,
    NotLoggedInError,
    PasswordAuth,
    RefreshTokenAuth,
    Token,
    TokenCache,
    TokenEndpointUnreachableError,
    TokenRequestError,
)
from hoxton_auth._wire import MAX_RESPONSE_BYTES
from hoxton_auth.testing import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    PUBLIC_CLIENT_ID,
    AuthServer,
    cache_key,
    cached_entry,
)

MintJwt = Callable[..., str]
REDIRECT = REDIRECT_URI
# The delay of a real identity provider (DESIGN.md, "Notes for measuring"):
# without it, races that exist in production stay hidden.
PROVIDER_DELAY = 0.1
INVALID_GRANT = {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."}


@pytest.fixture
def server(hoxton_auth_server: AuthServer) -> AuthServer:
    return hoxton_auth_server


def password_auth(server: AuthServer, **overrides: Any) -> HoxtonAuth:
    arguments: dict[str, Any] = {
        "username": DEFAULT_USERNAME,
        "password": DEFAULT_PASSWORD,
        "scope": OFFLINE,
        "domain": server.domain,
        "cache": None,
    }
    arguments.update(overrides)
    made: HoxtonAuth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, **arguments)
    return made


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def own_entry(auth: HoxtonAuth) -> CacheEntry:
    entry = cached_entry(auth)
    assert entry is not None
    return entry


def entry_of(auth: HoxtonAuth) -> CacheEntry:
    entries = list(auth.cache.entries().values())
    assert len(entries) == 1
    return entries[0]


# -- which class, and what it is ------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "cls"),
    [
        ({"client_secret": "s"}, ClientCredentialsAuth),
        ({"client_secret": "s", "scope": "read"}, ClientCredentialsAuth),
        ({"username": "u", "password": "p"}, PasswordAuth),
        ({"client_secret": "s", "username": "u", "password": "p"}, PasswordAuth),
        ({"code": "c", "redirect_uri": REDIRECT}, AuthorizationCodeAuth),
        ({"code": "c", "redirect_uri": REDIRECT, "code_verifier": "v" * 43}, AuthorizationCodeAuth),
        ({"refresh_token": "r"}, RefreshTokenAuth),
        ({"client_secret": "s", "refresh_token": "r"}, RefreshTokenAuth),
    ],
)
def test_grant_inferred_from_arguments(arguments: dict[str, Any], cls: type[HoxtonAuth]) -> None:
    auth = HoxtonAuth("cid", cache=None, **arguments)
    assert type(auth) is cls
    assert isinstance(auth, HoxtonAuth)
    assert isinstance(auth, requests.auth.AuthBase)
    assert isinstance(auth, httpx.Auth)
    assert auth.grant_kind == cls.grant_kind != ""


def test_subclasses_can_be_built_directly() -> None:
    assert type(ClientCredentialsAuth("cid", "s", cache=None)) is ClientCredentialsAuth
    assert type(PasswordAuth("cid", username="u", password="p", cache=None)) is PasswordAuth
    assert type(RefreshTokenAuth("cid", refresh_token="r", cache=None)) is RefreshTokenAuth
    # Without a code: the session a login() left in the cache.
    assert type(AuthorizationCodeAuth("cid", cache=None)) is AuthorizationCodeAuth


@pytest.mark.parametrize("cls", [HoxtonAuth, ClientCredentialsAuth, PasswordAuth])
def test_signature_shows_every_keyword_with_the_default_applied(cls: type[HoxtonAuth]) -> None:
    parameters = inspect.signature(cls).parameters
    assert list(parameters)[:2] == ["client_id", "client_secret"]
    assert {"username", "code", "refresh_token", "realm", "otp", "cache", "on_token"} < set(
        parameters
    )
    assert parameters["cache"].default is DEFAULT
    assert inspect.signature(cls.__init__).parameters.keys() == {"self", *parameters}
    # A keyword left out gets the default the signature shows.
    config = HoxtonAuth("cid", "s", cache=None).config
    for name in ("audience", "domain", "leeway", "timeout", "retry_deadline", "max_attempts"):
        assert getattr(config, name) == parameters[name].default, name
    for name in ("token_request_format", "organization", "other_origins", "allow_insecure_http"):
        assert getattr(config, name) == parameters[name].default, name
    for name in ("verify", "cert", "proxy", "trust_env"):
        assert getattr(config.network, name) == parameters[name].default, name


def test_an_unknown_keyword_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="'leewy'"):
        HoxtonAuth("cid", "s", cache=None, leewy=30)  # type: ignore[call-overload]  # on purpose
    # A field of the configuration that is no argument of the constructor.
    with pytest.raises(TypeError, match="'backoff_base'"):
        PasswordAuth("cid", username="u", password="p", backoff_base=0.1)  # type: ignore[call-arg]  # on purpose


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({}, "client_secret"),
        ({"client_id": ""}, "client_id"),
        ({"client_id": None, "client_secret": "s"}, "client_id"),
        ({"username": "u"}, "password"),
        ({"password": "p"}, "username"),
        ({"username": "", "password": "p"}, "username"),
        ({"username": 5, "password": "p"}, "username"),
        ({"code": "c"}, "redirect_uri"),
        ({"code_verifier": "v"}, "code"),
        ({"redirect_uri": REDIRECT}, "code"),
        ({"refresh_token": ""}, "refresh_token"),
        ({"username": "u", "password": "p", "code": "c", "redirect_uri": REDIRECT}, "code"),
        ({"username": "u", "password": "p", "refresh_token": "r"}, "refresh_token"),
        ({"code": "c", "redirect_uri": REDIRECT, "refresh_token": "r"}, "refresh_token"),
        ({"client_secret": "s", "domain": "http://auth.example"}, "domain"),
        ({"client_secret": "s", "domain": "auth.hoxton.ai"}, "domain"),
        ({"client_secret": "s", "audience": ""}, "audience"),
        ({"client_secret": "s", "scope": 3}, "scope"),
        ({"client_secret": "s", "leeway": -1}, "leeway"),
        ({"client_secret": "s", "timeout": 0}, "timeout"),
        ({"client_secret": "s", "retry_deadline": float("nan")}, "retry_deadline"),
        ({"client_secret": "s", "max_attempts": 0}, "max_attempts"),
        ({"client_secret": "s", "token_request_format": "xml"}, "token_request_format"),
        ({"client_secret": "s", "cache": 42}, "cache"),
    ],
)
def test_bad_arguments_raise_config_error_naming_the_argument(
    arguments: dict[str, Any], named: str
) -> None:
    arguments = {"client_id": "cid", "cache": None, **arguments}
    with pytest.raises(ConfigError, match=named) as info:
        HoxtonAuth(**arguments)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("cls", "arguments", "named"),
    [
        (
            ClientCredentialsAuth,
            {"client_secret": "s", "username": "u", "password": "p"},
            "username",
        ),
        (ClientCredentialsAuth, {"client_secret": "s", "refresh_token": "r"}, "refresh_token"),
        (PasswordAuth, {"client_secret": "s"}, "username"),
        (RefreshTokenAuth, {"client_secret": "s"}, "refresh_token"),
        (RefreshTokenAuth, {"refresh_token": "r", "code": "c"}, "code"),
        (AuthorizationCodeAuth, {"username": "u", "password": "p"}, "password"),
    ],
)
def test_subclass_refuses_other_grants_arguments(
    cls: type[HoxtonAuth], arguments: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        cls("cid", cache=None, **arguments)


def test_config_errors_never_echo_secrets() -> None:
    secrets: dict[str, Any] = {
        "client_secret": "cs-8d8d8d",
        "password": "pw-9e9e9e",
        "code": "code-7f7f7f",
    }
    with pytest.raises(ConfigError) as info:
        HoxtonAuth("cid", username="u", cache=None, **secrets)
    for value in secrets.values():
        assert value not in str(info.value)


@pytest.mark.parametrize(
    "domain", ["http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9", "https://a.example"]
)
def test_loopback_http_allowed(domain: str) -> None:
    auth = HoxtonAuth("cid", "s", domain=domain, cache=None)
    assert auth.config.token_url == domain + "/oauth/token"


def test_refused_http_domain_is_named() -> None:
    with pytest.raises(ConfigError, match=r"domain 'http://auth\.example\.com' uses plain http"):
        HoxtonAuth("cid", "s", domain="http://auth.example.com")


# -- the cache argument ----------------------------------------------------------------------


def test_default_cache_is_the_shared_file(isolated_cache: Path) -> None:
    for auth in (HoxtonAuth("cid", "s"), HoxtonAuth("cid", "s", cache=DEFAULT)):
        assert isinstance(auth.cache, FileTokenCache)
        assert auth.cache.path == isolated_cache


def test_cache_kinds(tmp_path: Path) -> None:
    shared = MemoryTokenCache()
    assert HoxtonAuth("cid", "s", cache=shared).cache is shared
    path_cache = HoxtonAuth("cid", "s", cache=tmp_path / "t.json").cache
    assert isinstance(path_cache, FileTokenCache)
    assert path_cache.path == tmp_path / "t.json"
    assert isinstance(HoxtonAuth("cid", "s", cache=str(tmp_path / "u.json")).cache, FileTokenCache)
    private = HoxtonAuth("cid", "s", cache=None).cache
    assert isinstance(private, MemoryTokenCache)
    assert private is not HoxtonAuth("cid", "s", cache=None).cache
    assert isinstance(private, TokenCache)


# -- get_token, aget_token, invalidate ------------------------------------------------------------


def test_get_token_fetches_once_then_serves_from_memory(server: AuthServer) -> None:
    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=None)
    token = auth.get_token()
    assert auth.get_token() == token
    assert asyncio.run(auth.aget_token()) == token
    assert server.count() == 1
    with requests.get(server.api_url, headers=bearer(token), timeout=30) as r:
        assert r.status_code == 200


def test_aget_token_fetches_once(server: AuthServer) -> None:
    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=None)

    async def main() -> list[str]:
        return [await auth.aget_token() for _ in range(3)]

    tokens = asyncio.run(main())
    assert len(set(tokens)) == 1
    assert auth.get_token() == tokens[0]
    assert server.count("client_credentials") == 1


def test_invalidate_forces_a_new_token(server: AuthServer, isolated_cache: Path) -> None:
    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)
    first = auth.get_token()
    auth.invalidate()
    # Gone from the shared cache too: a new object (another process) must fetch.
    assert (
        HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain).get_token()
        != first
    )
    assert server.count() == 2
    assert first not in isolated_cache.read_text()


def test_invalidate_with_nothing_cached_is_harmless(server: AuthServer) -> None:
    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)
    auth.invalidate()
    auth.get_token()
    assert server.count() == 1


def test_memory_cache_shared_by_two_auth_objects(server: AuthServer) -> None:
    shared = MemoryTokenCache()
    one = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=shared)
    two = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=shared)
    assert one.get_token() == two.get_token()
    assert server.count() == 1
    # Another identity (other scope) is another entry.
    three = HoxtonAuth(
        DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, scope="read", domain=server.domain, cache=shared
    )
    assert three.get_token() != one.get_token()
    assert server.count() == 2
    assert len(shared.entries()) == 2


def test_cache_entry_is_per_identity_not_per_spelling(server: AuthServer) -> None:
    shared = MemoryTokenCache()

    def auth(**arguments: Any) -> HoxtonAuth:
        made: HoxtonAuth = HoxtonAuth(
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
            domain=server.domain,
            cache=shared,
            **arguments,
        )
        return made

    assert auth(scope="read write").get_token() == auth(scope=["write", "read"]).get_token()
    assert server.count() == 1
    auth(scope="read write", leeway=5, timeout=3).get_token()  # tuning is not identity
    assert server.count() == 1
    auth(scope="read").get_token()
    auth(scope="read write", username=DEFAULT_USERNAME, password=DEFAULT_PASSWORD).get_token()
    assert server.count() == 3
    assert len(shared.entries()) == 3


def test_cache_none_keeps_tokens_in_the_object(server: AuthServer, isolated_cache: Path) -> None:
    one = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=None)
    two = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=None)
    assert one.get_token() != two.get_token()
    one.get_token()
    assert server.count() == 2
    assert not isolated_cache.exists()


def test_default_file_cache_shared_by_two_auth_objects(server: AuthServer) -> None:
    one = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)
    two = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)
    assert one.get_token() == two.get_token()
    assert server.count() == 1


# -- expiry and leeway, end to end ----------------------------------------------------------------


@pytest.fixture
def token_endpoint(server: AuthServer) -> Callable[[dict[str, Any]], str]:
    """Serve the given token response (a canned answer); return the domain to use."""

    def serve(body: dict[str, Any]) -> str:
        server.fail_always(status=200, body=body)
        return server.domain

    return serve


def test_expiry_from_the_jwt_exp(
    token_endpoint: Callable[[dict[str, Any]], str], make_jwt: MintJwt
) -> None:
    exp = int(time.time()) + 600
    domain = token_endpoint({"access_token": make_jwt(exp=exp), "expires_in": 86400})
    cache = MemoryTokenCache()
    HoxtonAuth("cid", "s", domain=domain, cache=cache).get_token()
    (entry,) = cache.entries().values()
    assert entry.token.expires_at == pytest.approx(exp, abs=1e-3)


def test_expiry_from_expires_in_for_opaque_tokens(
    token_endpoint: Callable[[dict[str, Any]], str],
) -> None:
    domain = token_endpoint({"access_token": "opaque-abc", "expires_in": 900})
    cache = MemoryTokenCache()
    assert HoxtonAuth("cid", "s", domain=domain, cache=cache).get_token() == "opaque-abc"
    (entry,) = cache.entries().values()
    assert entry.token.expires_at - entry.token.obtained_at == 900


@pytest.mark.parametrize(("leeway", "fetches"), [(10.0, 0), (60.0, 1)])
def test_leeway_decides_when_a_cached_token_is_renewed(
    server: AuthServer, leeway: float, fetches: int
) -> None:
    # A cached token with 30 s left of an hour: stale with 60 s leeway, fresh with 10 s.
    cache = MemoryTokenCache()
    auth = HoxtonAuth(
        DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=cache, leeway=leeway
    )
    seeded = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=cache)
    seeded.get_token()
    (key, entry) = next(iter(cache.entries().items()))
    now = time.time()
    old = Token(entry.token.access_token, expires_at=now + 30, obtained_at=now - 3570)
    cache.store(key, CacheEntry(old, entry.meta))
    token = auth.get_token()
    assert server.count() == 1 + fetches
    assert (token == old.access_token) is (fetches == 0)


# -- refresh tokens: rotation and fallbacks -------------------------------------------------------


def test_refresh_with_rotation_keeps_and_uses_the_newest(server: AuthServer) -> None:
    auth = password_auth(server)
    first = auth.get_token()
    rt1 = entry_of(auth).token.refresh_token
    assert rt1
    auth.invalidate()
    second = auth.get_token()
    rt2 = entry_of(auth).token.refresh_token
    assert rt2
    assert rt2 != rt1
    auth.invalidate()
    third = auth.get_token()
    assert len({first, second, third}) == 3
    grants = [r["grant_type"] for r in server.token_requests]
    assert grants == ["password", "refresh_token", "refresh_token"]
    assert [r.get("refresh_token") for r in server.token_requests[1:]] == [rt1, rt2]
    assert server.reuse_detected == 0
    # The refresh grant sends the scope it was configured with.
    assert server.token_requests[1]["scope"] == OFFLINE


def test_rejected_refresh_token_password_logs_in_again(server: AuthServer) -> None:
    auth = password_auth(server)
    auth.get_token()
    auth.invalidate()
    server.fail_next(1, status=403, body=INVALID_GRANT)
    auth.get_token()
    grants = [r["grant_type"] for r in server.token_requests]
    assert grants == ["password", "refresh_token", "password"]


def test_wrong_password_is_invalid_grant_not_login_required(server: AuthServer) -> None:
    auth = password_auth(server, password="wrong-password-1f1f")
    with pytest.raises(InvalidGrantError) as info:
        auth.get_token()
    error = info.value
    assert not isinstance(error, LoginRequiredError)
    assert error.status_code == 403
    assert error.error == "invalid_grant"
    assert error.error_description == "Wrong email or password."
    assert "invalid_grant: Wrong email or password. (HTTP 403)" in str(error)
    assert "wrong-password-1f1f" not in str(error)


def test_refresh_token_auth_rejected_means_login_required(server: AuthServer) -> None:
    auth = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        refresh_token="rt-unknown-2a2a",
        domain=server.domain,
    )
    with pytest.raises(LoginRequiredError) as info:
        auth.get_token()
    assert info.value.error == "invalid_grant"
    assert info.value.error_description == "Unknown or invalid refresh token."
    assert "rt-unknown-2a2a" not in str(info.value)
    assert server.count() == 1


def test_refresh_token_auth_uses_and_rotates_the_seed(server: AuthServer) -> None:
    seed = server.mint_refresh_token()
    cache = MemoryTokenCache()
    auth = RefreshTokenAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        refresh_token=seed,
        domain=server.domain,
        cache=cache,
    )
    token = auth.get_token()
    assert server.token_requests[0]["refresh_token"] == seed
    assert server.token_requests[0]["grant_type"] == "refresh_token"
    rotated = entry_of(auth).token.refresh_token
    assert rotated
    assert rotated != seed
    with requests.get(server.api_url, headers=bearer(token), timeout=30) as r:
        assert r.status_code == 200


def test_newest_refresh_token_in_the_cache_wins_over_the_seed(server: AuthServer) -> None:
    # A cron job passes the same original refresh token on every run.
    seed = server.mint_refresh_token()
    cache = MemoryTokenCache()

    def run() -> str:
        auth = HoxtonAuth(
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
            refresh_token=seed,
            domain=server.domain,
            cache=cache,
        )
        token = auth.get_token()
        auth.invalidate()  # as if the access token had expired before the next run
        return token

    tokens = [run() for _ in range(3)]
    assert len(set(tokens)) == 3
    sent = [r["refresh_token"] for r in server.token_requests]
    assert sent[0] == seed
    assert seed not in sent[1:]
    assert server.reuse_detected == 0


def test_a_different_seed_is_a_different_session(server: AuthServer) -> None:
    # Issue 10: a refresh token given to the constructor starts a lineage; a
    # different seed never gets (nor renews with) another lineage's tokens.
    cache = MemoryTokenCache()
    old_seed = server.mint_refresh_token()
    first = RefreshTokenAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        refresh_token=old_seed,
        domain=server.domain,
        cache=cache,
    )
    first_token = first.get_token()
    cached = own_entry(first).token.refresh_token
    new_seed = server.mint_refresh_token()
    second = RefreshTokenAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        refresh_token=new_seed,
        domain=server.domain,
        cache=cache,
    )
    assert second.get_token() != first_token
    sent = [r["refresh_token"] for r in server.token_requests]
    assert sent == [old_seed, new_seed]
    assert cache_key(second) != cache_key(first)
    assert own_entry(first).token.refresh_token == cached  # untouched
    assert own_entry(second).token.refresh_token not in (cached, new_seed, None)
    assert len(cache.entries()) == 2


def test_seed_not_retried_when_it_is_the_rejected_one(server: AuthServer) -> None:
    seed = "rt-unknown-3b3b"
    cache = MemoryTokenCache()
    auth = RefreshTokenAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        refresh_token=seed,
        domain=server.domain,
        cache=cache,
    )
    with pytest.raises(LoginRequiredError):
        auth.get_token()
    assert server.count() == 1


def test_authorization_code_exchanged_once(server: AuthServer) -> None:
    verifier = "v" * 50
    code = authorization_code(server, scope="openid", verifier=verifier)
    auth = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
        domain=server.domain,
        cache=None,
    )
    token = auth.get_token()
    with requests.get(server.api_url, headers=bearer(token), timeout=30) as r:
        assert r.status_code == 200
    auth.invalidate()
    # No refresh token (no offline_access) and the code is spent: never send it again.
    with pytest.raises(NotLoggedInError, match="log in again"):
        auth.get_token()
    assert server.count("authorization_code") == 1
    assert server.count() == 1


def test_failed_code_exchange_is_not_repeated(server: AuthServer) -> None:
    code = authorization_code(server)
    auth = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        code=code,
        redirect_uri=REDIRECT,
        domain=server.domain,
        cache=None,
        max_attempts=1,
    )
    server.fail_next(1, status=502)
    with pytest.raises(TokenRequestError):
        auth.get_token()
    # Within the failure's cooldown (issue 12) the 502 is raised again without a
    # request; after it, NotLoggedInError. Either way the code is never resent.
    with pytest.raises((TokenRequestError, NotLoggedInError)):
        auth.get_token()
    assert server.count("authorization_code") == 1


def test_public_client_with_pkce(server: AuthServer) -> None:
    verifier = "pkce-verifier-" + "x" * 40
    code = authorization_code(server, client_id=PUBLIC_CLIENT_ID, verifier=verifier)
    auth = HoxtonAuth(
        PUBLIC_CLIENT_ID,
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
        domain=server.domain,
        cache=None,
    )
    auth.get_token()
    (request,) = server.token_requests
    assert request["code_verifier"] == verifier
    assert "client_secret" not in request
    assert entry_of(auth).token.refresh_token


def test_authorization_code_then_refresh_then_login_required(server: AuthServer) -> None:
    auth = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        code=authorization_code(server),
        redirect_uri=REDIRECT,
        scope=OFFLINE,
        domain=server.domain,
        cache=None,
    )
    auth.get_token()
    auth.invalidate()
    auth.get_token()  # with the refresh token
    auth.invalidate()
    server.fail_next(1, status=403, body=INVALID_GRANT)
    with pytest.raises(LoginRequiredError) as info:
        auth.get_token()
    assert info.value.error_description == "Unknown or invalid refresh token."
    grants = [r["grant_type"] for r in server.token_requests]
    assert grants == ["authorization_code", "refresh_token", "refresh_token"]


def test_logout_revokes_the_refresh_token_and_forgets_the_entry(server: AuthServer) -> None:
    auth = password_auth(server, cache=MemoryTokenCache())
    token = auth.get_token()
    refresh = entry_of(auth).token.refresh_token
    auth.logout()
    assert [r["token"] for r in server.revoke_requests] == [refresh]
    assert auth.cache.entries() == {}
    # The family is revoked at the server: a new login is a password grant.
    assert auth.get_token() != token
    assert [r["grant_type"] for r in server.token_requests] == ["password", "password"]


# -- single flight --------------------------------------------------------------------------------


CACHES: dict[str, Callable[[], Any]] = {
    "file": lambda: DEFAULT,
    "memory": MemoryTokenCache,
    "none": lambda: None,
}


@pytest.mark.parametrize("cache", list(CACHES))
def test_32_threads_make_one_token_request(server: AuthServer, cache: str) -> None:
    server.token_delay = PROVIDER_DELAY
    auth = HoxtonAuth(
        DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=CACHES[cache]()
    )
    barrier = threading.Barrier(32)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            barrier.wait()
            with requests.get(server.api_url, auth=auth, timeout=30) as response:
                statuses.append(response.status_code)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert statuses == [200] * 32
    assert server.count() == 1


@pytest.mark.parametrize("cache", list(CACHES))
def test_100_tasks_on_one_async_client_make_one_token_request(
    server: AuthServer, cache: str
) -> None:
    server.token_delay = PROVIDER_DELAY
    auth = HoxtonAuth(
        DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=CACHES[cache]()
    )

    async def main() -> list[int]:
        async with httpx.AsyncClient(auth=auth, timeout=30) as client:
            responses = await asyncio.gather(*(client.get(server.api_url) for _ in range(100)))
        return [r.status_code for r in responses]

    assert asyncio.run(main()) == [200] * 100
    assert server.count() == 1


class HeldTokenEndpoint:
    """A token endpoint on ``httpserver`` that answers only once ``ticked`` is set.

    pytest-httpserver, not AuthServer: the handler gives up after 10 s and
    records whether the event came in time (AuthServer's ``hold`` waits for
    good, which would hang the test instead of failing it).

    ``loop_ran`` records, per request, whether ``ticked`` came within 10 s:
    the test sets it from the event loop, so ``[True]`` proves the loop ran
    while the fetch was waiting for its answer.
    """

    def __init__(self, httpserver: HTTPServer, access_token: str) -> None:
        self.arrived, self.ticked = threading.Event(), threading.Event()
        self.loop_ran: list[bool] = []
        self.access_token = access_token
        httpserver.expect_request("/oauth/token").respond_with_handler(self._answer)
        self.domain = httpserver.url_for("/").rstrip("/")

    def _answer(self, request: Request) -> Response:
        self.arrived.set()
        self.loop_ran.append(self.ticked.wait(10))
        body = {"access_token": self.access_token, "expires_in": 3600, "token_type": "Bearer"}
        return Response(json.dumps(body), content_type="application/json")


@pytest.mark.parametrize("cache", list(CACHES))
def test_event_loop_keeps_running_while_a_token_is_fetched(
    httpserver: HTTPServer, cache: str
) -> None:
    # The token endpoint answers only once the event loop has run other tasks
    # during the fetch. A fetch that blocked the loop would stall the ticker,
    # and the endpoint would give up waiting for it (10 s) and report False.
    endpoint = HeldTokenEndpoint(httpserver, "opaque-tick")
    auth = HoxtonAuth("cid", "s", domain=endpoint.domain, cache=CACHES[cache]())

    async def ticker() -> int:
        while not endpoint.arrived.is_set():
            await asyncio.sleep(0.001)
        ticks = 0
        for _ in range(3):
            await asyncio.sleep(0)
            ticks += 1
        endpoint.ticked.set()
        return ticks

    async def main() -> tuple[str, int]:
        ticks = asyncio.ensure_future(ticker())
        token = await auth.aget_token()
        return token, await ticks

    assert asyncio.run(main()) == ("opaque-tick", 3)
    assert endpoint.loop_ran == [True]


@pytest.mark.parametrize("cache", list(CACHES))
def test_event_loop_keeps_running_while_another_thread_fetches(
    httpserver: HTTPServer, cache: str
) -> None:
    # A thread is fetching the token; a task wants the same token and must
    # wait for it (the cache lock) without blocking the loop. As above, the
    # endpoint answers only once the loop has run other code meanwhile.
    endpoint = HeldTokenEndpoint(httpserver, "opaque-shared")
    auth = HoxtonAuth("cid", "s", domain=endpoint.domain, cache=CACHES[cache]())
    from_thread: list[str] = []
    thread = threading.Thread(target=lambda: from_thread.append(auth.get_token()))
    thread.start()
    assert endpoint.arrived.wait(10)

    async def main() -> str:
        waiter = asyncio.ensure_future(auth.aget_token())
        # Each sleep returns only if the waiter lets go of the loop. The waiter
        # reads the cache first (in a worker thread for a file), so give it a
        # while to reach the lock; no timing is asserted.
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert not waiter.done()
        endpoint.ticked.set()
        return await waiter

    assert asyncio.run(main()) == "opaque-shared"
    thread.join()
    assert from_thread == ["opaque-shared"]
    assert endpoint.loop_ran == [True]
    assert len(httpserver.log) == 1


def test_threads_and_tasks_together_make_one_token_request(server: AuthServer) -> None:
    server.token_delay = PROVIDER_DELAY
    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)
    barrier = threading.Barrier(9)
    tokens: list[str] = []

    def in_thread() -> None:
        barrier.wait()
        tokens.append(auth.get_token())

    async def in_loop() -> None:
        await asyncio.to_thread(barrier.wait)
        found = await asyncio.gather(*(auth.aget_token() for _ in range(10)))
        tokens.extend(found)

    threads = [threading.Thread(target=in_thread) for _ in range(8)]
    for thread in threads:
        thread.start()
    asyncio.run(in_loop())
    for thread in threads:
        thread.join()
    assert len(tokens) == 18
    assert len(set(tokens)) == 1
    assert server.count() == 1


# -- the token endpoint's failures, end to end ----------------------------------------------------


def fetch_requests(auth: HoxtonAuth) -> str:
    return auth.get_token()


def fetch_httpx_async(auth: HoxtonAuth) -> str:
    return asyncio.run(auth.aget_token())


def fetch_httpx_sync(auth: HoxtonAuth) -> str:
    # The httpx sync transport runs when an httpx.Client sends a request.
    with httpx.Client(auth=auth) as client:
        response = client.get(auth.config.domain + "/api")
    return response.request.headers["Authorization"]


FETCHERS: dict[str, Callable[[HoxtonAuth], str]] = {
    "requests": fetch_requests,
    "httpx": fetch_httpx_sync,
    "httpx-async": fetch_httpx_async,
}

MALFORMED: dict[str, tuple[int, bytes, str, str]] = {
    "html 200": (
        200,
        b"<html><body>Sign in</body></html>",
        "text/html",
        "not JSON (HTTP 200, text/html",
    ),
    # A non-JSON 2xx is never quoted (issue 12): it may be a form-encoded token.
    "text 200": (200, b"Service OK", "text/plain", "10 bytes, not shown"),
    "empty 200": (200, b"", "application/json", "0 bytes, not shown"),
    "broken json 200": (200, b'{"access_token": "abc', "application/json", "truncated JSON"),
    "json without access_token": (
        200,
        b'{"token_type": "Bearer"}',
        "application/json",
        "no access_token",
    ),
    "json list": (200, b"[1, 2]", "application/json", "expected a JSON object"),
    "numeric token": (200, b'{"access_token": 12}', "application/json", "access_token must be"),
    "html 404": (404, b"<h1>Not Found</h1>", "text/html", "HTTP 404 (text/html)"),
    "text 500": (500, b"Internal Server Error", "text/plain", "Internal Server Error"),
    "json 400 without error": (
        400,
        b'{"message": "bad"}',
        "application/json",
        '{"message": "bad"}',
    ),
    "huge 200": (200, b"[" + b" " * MAX_RESPONSE_BYTES + b"]", "application/json", "larger than"),
}


@pytest.mark.parametrize("fetch", list(FETCHERS))
@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_token_responses(server: AuthServer, case: str, fetch: str) -> None:
    status, body, content_type, words = MALFORMED[case]
    server.fail_always(status=status, body=body, headers={"Content-Type": content_type})
    auth = HoxtonAuth("cid", "cs-4d4d4d", domain=server.domain, cache=None, max_attempts=1)
    with pytest.raises(TokenRequestError) as info:
        FETCHERS[fetch](auth)
    error = info.value
    assert type(error) is TokenRequestError
    assert error.status_code == status
    assert error.error is None
    assert words in str(error)
    assert server.token_url in str(error)
    assert "cs-4d4d4d" not in str(error)


@pytest.mark.parametrize("fetch", list(FETCHERS))
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_token_endpoint_redirects_are_not_followed(
    server: AuthServer, fetch: str, status: int
) -> None:
    # Following would POST the client secret (or password) to wherever it points.
    with AuthServer() as elsewhere:
        server.fail_always(status=status, body=b"", headers={"Location": elsewhere.token_url})
        auth = HoxtonAuth("cid", "cs-redirect-1b1b", domain=server.domain, cache=None)
        with pytest.raises(TokenRequestError) as info:
            FETCHERS[fetch](auth)
        assert info.value.status_code == status
        assert elsewhere.token_requests == []


@pytest.mark.parametrize("fetch", list(FETCHERS))
def test_auth0_refusal_carries_the_servers_words(server: AuthServer, fetch: str) -> None:
    auth = HoxtonAuth(DEFAULT_CLIENT_ID, "wrong-secret-5e5e", domain=server.domain, cache=None)
    with pytest.raises(TokenRequestError) as info:
        FETCHERS[fetch](auth)
    error = info.value
    assert (error.status_code, error.error, error.error_description) == (
        401,
        "invalid_client",
        "Unauthorized",
    )
    assert str(error).startswith("invalid_client: Unauthorized (HTTP 401)")
    assert "wrong-secret-5e5e" not in str(error)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on."""
    return free_port()


@pytest.mark.parametrize("fetch", list(FETCHERS))
def test_unreachable_token_endpoint(closed_port: int, fetch: str) -> None:
    auth = HoxtonAuth(
        "cid", "cs-6f6f6f", domain=f"http://127.0.0.1:{closed_port}", cache=None, max_attempts=1
    )
    with pytest.raises(TokenEndpointUnreachableError) as info:
        FETCHERS[fetch](auth)
    error = info.value
    assert isinstance(error.__cause__, (requests.ConnectionError, httpx.ConnectError))
    assert error.attempts == 1
    assert f"127.0.0.1:{closed_port}/oauth/token" in str(error)
    assert "cs-6f6f6f" not in str(error)


def test_retries_then_succeeds(server: AuthServer) -> None:
    server.fail_next(2, status=503, headers={"Retry-After": "0"})
    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=None)
    assert auth.get_token()
    assert server.count() == 3


def test_cache_file_holds_no_client_secret_or_password(
    server: AuthServer, isolated_cache: Path
) -> None:
    server.add_client(CLIENT, CLIENT_SECRET)
    server.add_user(USER, USER_PASSWORD)
    auth = HoxtonAuth(
        CLIENT,
        CLIENT_SECRET,
        username=USER,
        password=USER_PASSWORD,
        scope=OFFLINE,
        domain=server.domain,
    )
    auth.get_token()
    text = isolated_cache.read_text()
    assert auth.get_token() in text  # it is the token cache...
    assert CLIENT_SECRET not in text  # ...and holds nothing that mints tokens anew
    assert USER_PASSWORD not in text


# -- secrets: repr, logs, messages ----------------------------------------------------------------


CLIENT = "masking-client"
CLIENT_SECRET = "cs-masking-7a7a7a7a"
USER = "ann@example.com"
USER_PASSWORD = "pw-masking-8b8b8b8b"


def test_no_secret_in_repr_logs_or_messages(
    server: AuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.add_client(CLIENT, CLIENT_SECRET)
    server.add_user(USER, USER_PASSWORD)
    cache = MemoryTokenCache()
    secrets = [CLIENT_SECRET, USER_PASSWORD]
    messages: list[str] = []
    objects: list[Any] = []

    def keep(auth: HoxtonAuth) -> None:
        for entry in auth.cache.entries().values():
            token = entry.token
            secrets.extend(
                t for t in (token.access_token, token.refresh_token, token.id_token) if t
            )
            objects.extend([entry, entry.token])

    auth = HoxtonAuth(
        CLIENT,
        CLIENT_SECRET,
        username=USER,
        password=USER_PASSWORD,
        scope=OFFLINE,
        domain=server.domain,
        cache=cache,
    )
    objects.extend([auth, auth.config, cache])
    with requests.Session() as session:
        session.auth = auth
        session.get(server.api_url).raise_for_status()
        keep(auth)
        server.revoke_access_tokens()  # a 401, a refresh and a retry
        session.post(server.api_url, data=b"x").raise_for_status()
    keep(auth)
    with httpx.Client(auth=auth) as client:
        server.expire_access_tokens()
        client.get(server.api_url).raise_for_status()
    keep(auth)

    async def use_async() -> None:
        async with httpx.AsyncClient(auth=auth) as client:
            server.revoke_access_tokens()
            (await client.get(server.api_url)).raise_for_status()

    asyncio.run(use_async())
    keep(auth)
    # Failures: a refused refresh, a wrong password, an echoing server.
    auth.invalidate()
    server.fail_next(1, status=403, body=INVALID_GRANT)
    auth.get_token()
    keep(auth)
    auth.invalidate()
    auth.invalidate()
    sent = entry_of(auth).token.refresh_token
    server.fail_next(1, status=400, body=f"you sent {CLIENT_SECRET} and {sent}")
    with pytest.raises(HoxtonAuthError) as info:
        auth.get_token()
    messages.extend([str(info.value), repr(info.value)])
    wrong = HoxtonAuth(
        CLIENT,
        CLIENT_SECRET,
        username=USER,
        password=USER_PASSWORD + "-x",
        domain=server.domain,
        cache=None,
    )
    with pytest.raises(InvalidGrantError) as info2:
        wrong.get_token()
    messages.extend([str(info2.value), repr(info2.value)])
    auth.logout()
    refresh = RefreshTokenAuth(
        CLIENT, CLIENT_SECRET, refresh_token="rt-masking-9c9c9c9c", domain=server.domain, cache=None
    )
    secrets.append("rt-masking-9c9c9c9c")
    with pytest.raises(LoginRequiredError) as info3:
        refresh.get_token()
    messages.extend([str(info3.value), repr(info3.value)])
    code = authorization_code(server, client_id=CLIENT, scope="openid")
    secrets.append(code)
    coded = HoxtonAuth(
        CLIENT,
        CLIENT_SECRET,
        code=code,
        redirect_uri=REDIRECT,
        code_verifier="v" * 43,
        domain=server.domain,
        cache=None,
    )
    objects.extend([coded, refresh, wrong, coded.config, refresh.config])
    coded.get_token()
    keep(coded)
    coded.invalidate()
    with pytest.raises(NotLoggedInError) as info4:
        coded.get_token()  # the code is spent and there is no refresh token here
    messages.extend([str(info4.value), repr(info4.value)])

    assert len(set(secrets)) >= 8, "the flow should have produced several tokens"
    assert "requesting a token" in caplog.text  # DEBUG logging was on
    texts = {"log": caplog.text, **{f"message {i}": m for i, m in enumerate(messages)}}
    texts.update({f"repr {type(o).__name__}": repr(o) for o in objects})
    for where, text in texts.items():
        for secret in set(secrets):
            assert secret not in text, f"a secret leaked into the {where}"


# -- event loops: asyncio and trio run the one slow path in a worker thread ----------------


def test_httpx_async_client_works_under_trio(server: AuthServer) -> None:
    trio = pytest.importorskip("trio")
    server.token_delay = PROVIDER_DELAY
    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)
    statuses: list[int] = []
    ticks = 0

    async def ticker(done: Any) -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await trio.sleep(0.001)

    async def call(client: httpx.AsyncClient) -> None:
        statuses.append((await client.get(server.api_url)).status_code)

    async def main() -> str:
        done = trio.Event()
        async with trio.open_nursery() as outer:
            outer.start_soon(ticker, done)
            async with (
                httpx.AsyncClient(auth=auth, timeout=30) as client,
                trio.open_nursery() as calls,
            ):
                for _ in range(20):
                    calls.start_soon(call, client)
            token = await auth.aget_token()
            done.set()
        return str(token)

    token = trio.run(main)
    assert statuses == [200] * 20
    assert token
    assert server.count() == 1
    assert ticks > 0  # the loop ran while the token was fetched (no timing asserted)


def test_100_asyncio_tasks_make_one_request_while_the_loop_keeps_ticking(
    server: AuthServer,
) -> None:
    server.token_delay = PROVIDER_DELAY
    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)

    async def main() -> tuple[set[str], int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        ticking = asyncio.ensure_future(ticker())
        tokens = await asyncio.gather(*(auth.aget_token() for _ in range(100)))
        done.set()
        await ticking
        return set(tokens), ticks

    tokens, ticks = asyncio.run(main())
    assert len(tokens) == 1
    assert server.count() == 1
    assert ticks > 1  # the loop ran other tasks while the token was fetched


def test_a_cancelled_waiter_does_not_leave_the_loop_lock_held(server: AuthServer) -> None:
    server.token_delay = PROVIDER_DELAY
    auth = HoxtonAuth(
        DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=MemoryTokenCache()
    )

    async def main() -> str:
        holder = asyncio.ensure_future(auth.aget_token())
        waiters = [asyncio.ensure_future(auth.aget_token()) for _ in range(5)]
        await asyncio.sleep(0)  # every task is queued on the loop's lock now
        for waiter in waiters:
            waiter.cancel()
        holder.cancel()  # the holder's thread finishes its fetch first
        for task in (*waiters, holder):
            with pytest.raises(asyncio.CancelledError):
                await task
        await asyncio.wait_for(asyncio.to_thread(auth.invalidate), 30)
        # Nothing in memory now: this takes the loop's lock, and hangs if it was left held.
        return await asyncio.wait_for(auth.aget_token(), 30)

    assert asyncio.run(main())
    # The holder's fetch may or may not have started before its cancellation;
    # either way no task hung on a lock left held.
    assert server.count() in (1, 2)
