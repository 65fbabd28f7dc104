"""Issue 5, point 4: a server clock minutes ahead or behind ours.

A token must neither look expired forever (a fetch on every call) nor stay
in use long after it died; and when the API says 401, the API is right,
whatever our clock thinks.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from conftest import TEST_JWT_KEY

from hoxton_auth import FileTokenCache, HoxtonAuth, Token
from hoxton_auth._token import UNKNOWN_LIFETIME
from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer

NOW = 1_800_000_000.0  # our clock, in the pure tests
MINUTES = [-30, -10, -3, 0, 3, 10, 30]
SKEWS = pytest.mark.parametrize(
    "skew", [m * 60.0 for m in MINUTES], ids=[f"{m}min" for m in MINUTES]
)


def mint(**claims: Any) -> str:
    return jwt.encode(claims, TEST_JWT_KEY, algorithm="HS256")


def fingerprint(token: str) -> str:
    """Compare tokens by hash: a failing assertion must not print a token."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def lifetime(token: Token) -> float:
    return token.expires_at - token.obtained_at


# -- pure: how a token's life is read -----------------------------------------------


@SKEWS
def test_exp_minus_iat_is_immune_to_skew(skew: float) -> None:
    server_now = NOW + skew
    access = mint(iat=int(server_now), exp=int(server_now) + 3600)

    token = Token.from_response({"access_token": access}, NOW)

    assert lifetime(token) == 3600
    assert token.is_fresh(NOW + 3000, leeway=60)
    assert not token.is_fresh(NOW + 3550, leeway=60)


@SKEWS
def test_expires_in_wins_over_a_skewed_exp(skew: float) -> None:
    server_now = NOW + skew
    access = mint(exp=int(server_now) + 3600)  # no iat: exp alone would carry the skew

    token = Token.from_response({"access_token": access, "expires_in": 3600}, NOW)

    assert lifetime(token) <= 3600
    assert lifetime(token) > 0


@SKEWS
def test_exp_alone_never_means_expired_forever(skew: float) -> None:
    server_now = NOW + skew
    access = mint(exp=int(server_now) + 300)  # a 5-minute token, no iat, no expires_in

    token = Token.from_response({"access_token": access}, NOW)

    assert lifetime(token) > 0
    assert token.is_fresh(NOW, leeway=60)
    # Our clock is all we have here: at most the server's claim plus its skew,
    # or a short default when that is already past.
    assert lifetime(token) == (300 + skew if 300 + skew > 0 else UNKNOWN_LIFETIME)


def test_the_shortest_estimate_wins() -> None:
    access = mint(iat=int(NOW) + 600, exp=int(NOW) + 600 + 86400)

    token = Token.from_response({"access_token": access, "expires_in": 7200}, NOW)

    assert lifetime(token) == 7200


@pytest.mark.parametrize(
    "claims",
    [
        {"iat": int(NOW), "exp": int(NOW) - 10},  # exp before iat
        {"iat": int(NOW) + 10**9, "exp": int(NOW)},  # iat absurdly in the future
        {"iat": "yesterday", "exp": "tomorrow"},
        {"iat": None, "exp": [1]},
    ],
)
def test_nonsense_times_fall_back_to_expires_in(claims: dict[str, Any]) -> None:
    token = Token.from_response({"access_token": mint(**claims), "expires_in": 600}, NOW)

    assert lifetime(token) == 600


# -- end to end with a skewed Auth0-like server ---------------------------------------


@pytest.fixture
def skewed() -> Iterator[AuthServer]:
    with AuthServer(token_lifetime=300) as server:
        yield server


def cached_token(path: Path) -> Token:
    (entry,) = FileTokenCache(path).entries().values()
    return entry.token


@SKEWS
def test_skewed_server_token_is_used_for_its_real_life(
    skewed: AuthServer, skew: float, isolated_cache: Path
) -> None:
    skewed.clock_skew = skew
    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=skewed.domain)

    tokens = {fingerprint(auth.get_token()) for _ in range(3)}
    response = requests.get(skewed.api_url, auth=auth, timeout=10)

    assert response.status_code == 200
    assert len(tokens) == 1
    assert skewed.count() == 1  # not "expired" on every call
    # Not longer than the server meant either: 300 s from when it arrived.
    assert lifetime(cached_token(isolated_cache)) == 300


def test_no_iat_no_expires_in_server_far_behind(isolated_cache: Path) -> None:
    """exp is already past by our clock: use a short default, not "expired forever"."""
    expired = mint(exp=int(time.time()) - 600)  # a server clock 10+ minutes behind ours
    with AuthServer() as server:
        # A canned answer: the test server itself always sends expires_in.
        server.fail_always(status=200, body={"access_token": expired, "token_type": "Bearer"})
        auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)

        assert auth.get_token() == auth.get_token()
        assert server.count() == 1
        assert lifetime(cached_token(isolated_cache)) == UNKNOWN_LIFETIME


# -- the API's 401 beats our clock ---------------------------------------------------------


# The API's 401 to a token our clock calls fresh, on every transport:
# ``AdapterCases.test_401_is_trusted_over_the_clock`` in test_adapters.py.


def test_a_401_shared_through_the_cache_reaches_other_processes_objects(
    skewed: AuthServer,
) -> None:
    """Two auth objects (as two processes would) share the cache: one 401 renews for both."""
    skewed.clock_skew = 600.0
    one = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=skewed.domain)
    other = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=skewed.domain)
    stale = fingerprint(one.get_token())
    assert fingerprint(other.get_token()) == stale
    skewed.expire_access_tokens()

    assert requests.get(skewed.api_url, auth=one, timeout=10).status_code == 200
    # `other` still holds the stale token in memory: its 401 drops just that
    # one and finds the token `one` already fetched, without a request.
    assert requests.get(skewed.api_url, auth=other, timeout=10).status_code == 200

    assert fingerprint(other.get_token()) == fingerprint(one.get_token()) != stale
    assert skewed.count() == 2
