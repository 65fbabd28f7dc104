"""``Token``: lifetime from JWT ``exp``/``iat`` and ``expires_in``, leeway, shapes.

Pure: every call passes ``now``; no clock, no network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hoxton_auth import Token
from hoxton_auth._token import (
    MAX_LIFETIME,
    MAX_TOKEN_LENGTH,
    UNKNOWN_LIFETIME,
    TokenFormatError,
    subject_of,
)

NOW = 1_700_000_000.0
MintJwt = Callable[..., str]


def response(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"access_token": "opaque-token", "token_type": "Bearer"}
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def lifetime(data: Any) -> float:
    token = Token.from_response(data, NOW)
    assert token.obtained_at == NOW
    return token.expires_at - NOW


# -- lifetime --------------------------------------------------------------------


def test_expires_in_for_an_opaque_token() -> None:
    assert lifetime(response(expires_in=86400)) == 86400


@pytest.mark.parametrize("value", ["3600", " 3600 ", 3600.0])
def test_expires_in_as_string_or_float(value: object) -> None:
    assert lifetime(response(expires_in=value)) == 3600


def test_exp_of_a_jwt(make_jwt: MintJwt) -> None:
    jwt = make_jwt(exp=int(NOW) + 7200, sub="x")
    assert lifetime(response(access_token=jwt)) == 7200


def test_exp_minus_iat_is_immune_to_clock_skew(make_jwt: MintJwt) -> None:
    # The server's clock is an hour ahead: exp - now would say 2 h, but the
    # token lives exp - iat = 1 h.
    skewed = int(NOW) + 3600
    jwt = make_jwt(iat=skewed, exp=skewed + 3600)
    assert lifetime(response(access_token=jwt)) == 3600


def test_shortest_estimate_wins(make_jwt: MintJwt) -> None:
    jwt = make_jwt(exp=int(NOW) + 600)
    assert lifetime(response(access_token=jwt, expires_in=86400)) == 600
    jwt = make_jwt(exp=int(NOW) + 86400)
    assert lifetime(response(access_token=jwt, expires_in=300)) == 300


def test_expired_jwt_falls_back_to_expires_in(make_jwt: MintJwt) -> None:
    jwt = make_jwt(exp=int(NOW) - 10)
    assert lifetime(response(access_token=jwt, expires_in=900)) == 900


@pytest.mark.parametrize(
    "claims",
    [{"exp": "soon"}, {"exp": True}, {"sub": "no-exp"}, {"exp": None}],
    ids=["string", "bool", "missing", "null"],
)
def test_unusable_exp_falls_back_to_expires_in(make_jwt: MintJwt, claims: dict[str, Any]) -> None:
    jwt = make_jwt(**claims)
    assert lifetime(response(access_token=jwt, expires_in=1234)) == 1234


@pytest.mark.parametrize(
    "access_token",
    [
        "aaa.bbb.ccc",  # three parts, not base64 JSON
        "eyJhbGciOiJub25lIn0.W10.",  # payload is a JSON list, not an object
        "opaque",
    ],
)
def test_non_jwt_tokens_use_expires_in(access_token: str) -> None:
    assert lifetime(response(access_token=access_token, expires_in=42)) == 42


@pytest.mark.parametrize(
    "expires_in",
    [None, 0, -5, "soon", "", True, float("nan"), float("inf"), [1], {"s": 1}],
)
def test_no_usable_expiry_means_short_lived(expires_in: object) -> None:
    assert lifetime(response(expires_in=expires_in)) == UNKNOWN_LIFETIME


def test_integer_beyond_float_range_is_no_expiry() -> None:
    assert lifetime(response(expires_in=10**400)) == UNKNOWN_LIFETIME


def test_absurd_lifetime_is_clamped(make_jwt: MintJwt) -> None:
    assert lifetime(response(expires_in=10**12)) == MAX_LIFETIME
    assert lifetime(response(access_token=make_jwt(exp=int(NOW) + 10**10))) == MAX_LIFETIME


# -- leeway --------------------------------------------------------------------------


def token(life: float = 3600.0) -> Token:
    return Token(access_token="at", expires_at=NOW + life, obtained_at=NOW)


def test_renew_leeway_seconds_early() -> None:
    t = token(3600)
    assert t.renew_at(60) == NOW + 3540
    assert t.is_fresh(NOW + 3539.9, 60)
    assert not t.is_fresh(NOW + 3540, 60)
    assert t.is_fresh(NOW + 3599, 0)
    assert not t.is_fresh(NOW + 3600, 0)


def test_leeway_never_more_than_half_the_life() -> None:
    t = token(100)
    assert t.renew_at(60) == NOW + 50
    assert t.is_fresh(NOW + 49, 60)
    assert not t.is_fresh(NOW + 50, 60)


def test_expired_at_birth_is_never_fresh() -> None:
    t = Token(access_token="at", expires_at=NOW - 1, obtained_at=NOW)
    assert t.renew_at(60) == NOW - 1
    assert not t.is_fresh(NOW, 60)


def test_without_access_token_keeps_the_refresh_token() -> None:
    t = dataclasses.replace(token(), refresh_token="rt-1")
    dropped = t.without_access_token()
    assert dropped.access_token == ""
    assert dropped.refresh_token == "rt-1"
    assert not dropped.is_fresh(NOW, 0)


@given(
    life=st.floats(min_value=0, max_value=MAX_LIFETIME),
    leeway=st.floats(min_value=0, max_value=MAX_LIFETIME),
)
def test_renew_time_is_within_the_life(life: float, leeway: float) -> None:
    t = token(life)
    slack = 1e-6  # float rounding of epoch-sized numbers
    assert NOW + life / 2 - slack <= t.renew_at(leeway) <= NOW + life + slack


# -- the response's other fields -------------------------------------------------------


def test_all_fields_kept() -> None:
    t = Token.from_response(
        response(
            refresh_token="rt-1",
            id_token="id.tok.en",
            scope="openid offline_access",
            token_type="bearer",
            expires_in=60,
        ),
        NOW,
    )
    assert t.access_token == "opaque-token"
    assert t.refresh_token == "rt-1"
    assert t.id_token == "id.tok.en"
    assert t.scope == "openid offline_access"
    assert t.token_type == "Bearer"


def test_rotated_refresh_token_replaces_the_kept_one() -> None:
    t = Token.from_response(response(refresh_token="rt-new"), NOW, kept_refresh_token="rt-old")
    assert t.refresh_token == "rt-new"


def test_refresh_token_kept_when_not_rotated() -> None:
    t = Token.from_response(response(), NOW, kept_refresh_token="rt-old")
    assert t.refresh_token == "rt-old"
    assert Token.from_response(response(), NOW).refresh_token is None


def test_non_string_scope_ignored() -> None:
    assert Token.from_response(response(scope=["a"]), NOW).scope is None


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ([], "expected a JSON object, got list"),
        ("token", "expected a JSON object, got str"),
        (None, "expected a JSON object, got NoneType"),
        ({"token_type": "Bearer"}, "no access_token"),
        ({"access_token": None}, "no access_token"),
        ({"access_token": ""}, "access_token must be a non-empty string"),
        ({"access_token": 12345}, "access_token must be a non-empty string"),
        ({"access_token": "a b"}, "not allowed in a header"),
        ({"access_token": "a\r\nX-Evil: 1"}, "not allowed in a header"),
        ({"access_token": "t\u00e9"}, "not allowed in a header"),
        ({"access_token": "x" * (MAX_TOKEN_LENGTH + 1)}, "longer than"),
        ({"access_token": "ok", "token_type": "mac"}, "token_type must be Bearer, got 'mac'"),
        ({"access_token": "ok", "token_type": 5}, "token_type must be Bearer"),
        (
            {"access_token": "ok", "token_type": "x" * 100},
            r"token_type must be Bearer, got '.*\.\.\.",
        ),
        ({"access_token": "ok", "refresh_token": 5}, "refresh_token must be a non-empty string"),
        ({"access_token": "ok", "id_token": ""}, "id_token must be a non-empty string"),
    ],
)
def test_malformed_responses(data: Any, words: str) -> None:
    with pytest.raises(TokenFormatError, match=words):
        Token.from_response(data, NOW)


def test_format_error_is_a_value_error() -> None:
    assert issubclass(TokenFormatError, ValueError)


# -- repr and the cache's dict form ----------------------------------------------------


def test_repr_hides_tokens() -> None:
    t = Token(
        access_token="secret-access-4a4a",
        expires_at=NOW + 1,
        obtained_at=NOW,
        refresh_token="secret-refresh-5b5b",
        id_token="secret-id-6c6c",
        scope="openid",
    )
    text = repr(t)
    for secret in ("secret-access-4a4a", "secret-refresh-5b5b", "secret-id-6c6c"):
        assert secret not in text
    assert "openid" in text


def test_dict_round_trip() -> None:
    t = Token("at", NOW + 5, NOW, refresh_token="rt", id_token="it", scope="s")
    assert Token.from_dict(t.to_dict()) == t
    minimal = {"access_token": "at", "expires_at": NOW, "obtained_at": NOW}
    assert Token.from_dict(minimal) == Token("at", NOW, NOW)
    # "" is an access token dropped by invalidate(); its refresh token lives on.
    dropped = t.without_access_token()
    assert Token.from_dict(dropped.to_dict()) == dropped


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ([], "must be a JSON object"),
        ({"expires_at": 1, "obtained_at": 1}, "lacks or mistypes"),
        ({"access_token": "a", "expires_at": "x", "obtained_at": 1}, "lacks or mistypes"),
        ({"access_token": "a", "expires_at": None, "obtained_at": 1}, "lacks or mistypes"),
        ({"access_token": 1, "expires_at": 1, "obtained_at": 1}, "access_token is not a string"),
        (
            {"access_token": "a", "expires_at": 1, "obtained_at": 1, "token_type": 1},
            "token_type is not a string",
        ),
        (
            {"access_token": "a", "expires_at": 1, "obtained_at": 1, "refresh_token": 1},
            "refresh_token is not a string",
        ),
        (
            {"access_token": "a", "expires_at": 1, "obtained_at": 1, "scope": []},
            "scope is not a string",
        ),
        ({"access_token": "a", "expires_at": 10**400, "obtained_at": 1}, "lacks or mistypes"),
        ({"access_token": "a b", "expires_at": 1, "obtained_at": 1}, "not allowed in a header"),
        (
            {"access_token": "", "expires_at": 1, "obtained_at": 1, "refresh_token": "r\n"},
            "not allowed in a header",
        ),
        ({"access_token": "a", "expires_at": "inf", "obtained_at": 1}, "not finite"),
        ({"access_token": "a", "expires_at": 1, "obtained_at": "nan"}, "not finite"),
    ],
)
def test_from_dict_rejects_bad_shapes(data: Any, words: str) -> None:
    with pytest.raises(TokenFormatError, match=words):
        Token.from_dict(data)


def test_subject_of_reads_the_id_token_then_the_access_token(
    make_jwt: Callable[..., str],
) -> None:
    both = Token(make_jwt(sub="from-access"), 1.0, 0.0, id_token=make_jwt(sub="from-id"))
    access_only = Token(make_jwt(sub="from-access"), 1.0, 0.0)
    id_without_sub = Token(make_jwt(sub="from-access"), 1.0, 0.0, id_token=make_jwt(aud="x"))
    opaque = Token("opaque-token", 1.0, 0.0, id_token="not.a.jwt")
    empty_sub = Token(make_jwt(sub=""), 1.0, 0.0)

    assert subject_of(both) == "from-id"
    assert subject_of(access_only) == "from-access"
    assert subject_of(id_without_sub) == "from-access"
    assert subject_of(opaque) is None
    assert subject_of(empty_sub) is None
