"""Issue 5, point 6: whatever bytes arrive, the library works or raises a HoxtonAuthError.

Two sources of bytes we do not control: the token endpoint's answers and the
cache file. Token answers are fed to the sans-I/O flow by hand (fast: no
network); cache files are real files read by a real ``FileTokenCache`` under
its real lock, behind a ``TokenManager`` whose transport is a plain function.
Nothing else may escape: no ``KeyError``, ``ValueError``,
``JSONDecodeError``, ``OverflowError``, ``RecursionError`` or PyJWT error.
"""

from __future__ import annotations

import base64
import json
import math
import os
import random
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import requests
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hoxton_auth import FileTokenCache, HoxtonAuthError, HoxtonAuthWarning, Token
from hoxton_auth._cache import cache_key
from hoxton_auth._config import ClientConfig
from hoxton_auth._flow import obtain_token
from hoxton_auth._grants import ClientCredentials, Grant, RefreshToken
from hoxton_auth._identity import Identity
from hoxton_auth._session import TokenManager
from hoxton_auth._token import MAX_LIFETIME, TokenFormatError
from hoxton_auth._wire import Backoff, Reply, TokenRequest, TokenResponse

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KEY = "property-test-signing-key-not-a-secret-0123456789"
NOW = 1_800_000_000.0
CONFIG = ClientConfig(
    "property-client", "property-secret", max_attempts=3, retry_deadline=600.0, backoff_cap=1.0
)

# -- strategies ------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**500), max_value=10**500)
    | st.floats()
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
times = (
    st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.integers(int(NOW) - 10**6, int(NOW) + 10**6)
    | json_values
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@st.composite
def jwts(draw: st.DrawFn) -> str:
    """Signed JWTs with odd claims, and hand-made ones with broken segments."""
    if draw(st.booleans()):
        claims = draw(
            st.fixed_dictionaries(
                {}, optional={"exp": times, "iat": times, "nbf": times, "x": json_values}
            )
        )
        try:
            return jwt.encode(claims, KEY, algorithm="HS256")
        except (TypeError, ValueError, jwt.PyJWTError):
            assume(False)
    header = draw(st.binary(max_size=30) | st.just(b'{"alg":"HS256","typ":"JWT"}'))
    payload = draw(
        st.binary(max_size=60)
        | json_values.map(lambda value: json.dumps(value).encode())
        | st.fixed_dictionaries({"exp": times}).map(lambda c: json.dumps(c).encode())
    )
    return ".".join([_b64(header), _b64(payload), _b64(draw(st.binary(max_size=8)))])


token_strings = jwts() | st.text(max_size=30) | json_values
token_dicts = st.fixed_dictionaries(
    {},
    optional={
        "access_token": token_strings,
        "token_type": st.sampled_from(["Bearer", "bearer", "mac", ""]) | json_values,
        "expires_in": times | st.text(max_size=8),
        "refresh_token": token_strings,
        "id_token": token_strings,
        "scope": json_values,
    },
)
good_token_dicts = token_dicts.map(lambda d: {"access_token": "a.b.c", **d})
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    token_dicts.map(lambda value: json.dumps(value).encode()),
    good_token_dicts.map(lambda value: json.dumps(value).encode()),
    st.integers(1, 200_000).map(lambda depth: b"[" * depth),
    good_token_dicts.map(lambda value: json.dumps(value).encode()[:-3]),  # cut short
)
statuses = st.sampled_from([200, 201, 204, 400, 401, 403, 404, 408, 429, 500, 501, 503]) | (
    st.integers(100, 599)
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "retry-after": st.text(max_size=40) | st.integers(0, 10**30).map(str),
        "content-type": st.text(max_size=30),
    },
)


# -- what "works" means -------------------------------------------------------------------


def header_safe(value: str) -> bool:
    return bool(value) and value.isascii() and value.isprintable() and " " not in value


def assert_usable(token: Token, now: float) -> None:
    """A token we return can be sent, has a sane life, and survives the cache."""
    assert header_safe(token.access_token)
    assert token.refresh_token is None or header_safe(token.refresh_token)
    assert token.id_token is None or header_safe(token.id_token)
    assert math.isfinite(token.expires_at)
    assert 0 < token.expires_at - token.obtained_at <= MAX_LIFETIME
    assert token.is_fresh(now, leeway=60.0)
    assert Token.from_dict(json.loads(json.dumps(token.to_dict()))) == token
    bearer = {"Authorization": "Bearer " + token.access_token}
    requests.Request("GET", "https://api.example/", headers=bearer).prepare()
    httpx.Request("GET", "https://api.example/", headers=bearer)


def run_flow(status: int, body: bytes, reply_headers: dict[str, str]) -> Token:
    """Answer every request of one fetch (refresh, then client credentials) the same way."""
    plan: list[Grant] = [RefreshToken("property-refresh-token"), ClientCredentials()]
    flow = obtain_token(CONFIG, plan, NOW, random.Random(0))  # noqa: S311  jitter only
    now = NOW
    action = next(flow)
    try:
        for _ in range(20):  # 2 grants x 3 attempts, with a wide margin
            if isinstance(action, Backoff):
                assert 0 <= action.delay < math.inf
                now += action.delay
                action = flow.send(now)
            else:
                assert isinstance(action, TokenRequest)
                assert 0 < action.timeout <= CONFIG.timeout
                action = flow.send(TokenResponse(status, body, reply_headers, now))
    except StopIteration as stop:
        token: Token = stop.value
        return token
    raise AssertionError("the flow did not end")


# -- token responses -----------------------------------------------------------------------


@PROPERTY
@given(status=statuses, body=bodies, reply_headers=headers)
def test_any_token_response_gives_a_token_or_our_error(
    status: int, body: bytes, reply_headers: dict[str, str]
) -> None:
    try:
        result: Token | HoxtonAuthError = run_flow(status, body, reply_headers)
    except HoxtonAuthError as exc:
        result = exc
    if isinstance(result, HoxtonAuthError):
        message = str(result)
        assert message
        assert "property-secret" not in message
        assert "property-refresh-token" not in message
        return
    assert 200 <= status < 300
    assert_usable(result, result.obtained_at)


@PROPERTY
@given(data=good_token_dicts)
def test_token_dicts_with_an_access_token_field(data: dict[str, Any]) -> None:
    try:
        token = Token.from_response(data, NOW)
    except TokenFormatError:  # which the flow turns into a TokenRequestError
        return
    assert_usable(token, NOW)


@PROPERTY
@given(access_token=jwts(), expires_in=times)
def test_any_jwt_gets_a_sane_lifetime(access_token: str, expires_in: Any) -> None:
    token = Token.from_response({"access_token": access_token, "expires_in": expires_in}, NOW)

    assert_usable(token, NOW)


# -- cache files -------------------------------------------------------------------------------

ENTRY_KEY = cache_key("property-test")
token_records = st.fixed_dictionaries(
    {},
    optional={
        "access_token": token_strings,
        "expires_at": times,
        "obtained_at": times,
        "token_type": json_values,
        "refresh_token": token_strings,
        "id_token": token_strings,
        "scope": json_values,
    },
)
entries = st.fixed_dictionaries({}, optional={"meta": json_values, "token": token_records})
documents = st.fixed_dictionaries(
    {},
    optional={
        "version": st.just(1) | json_values,
        "entries": st.dictionaries(
            st.just(ENTRY_KEY) | st.text(max_size=8), entries | json_values, max_size=3
        )
        | json_values,
    },
)
cache_bytes = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    documents.map(lambda value: json.dumps(value).encode()),
    documents.map(lambda value: json.dumps(value).encode()[:-2]),
    st.integers(1, 200_000).map(lambda depth: b'{"entries":' + b"[" * depth),
)


def fresh_token_reply(request: TokenRequest) -> Reply:
    """The token endpoint, as a plain function: always a good answer."""
    issued = int(time.time())
    access = jwt.encode({"iat": issued, "exp": issued + 3600}, KEY, algorithm="HS256")
    body = json.dumps({"access_token": access, "token_type": "Bearer", "expires_in": 3600})
    return TokenResponse(200, body.encode(), {}, time.time())


@PROPERTY
@given(content=cache_bytes, refresh=st.booleans())
def test_any_cache_file_gives_a_token_or_our_error(content: bytes, refresh: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "tokens.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(content)
        cache = FileTokenCache(path)
        grant = None if refresh else ClientCredentials()
        seed = "property-seed-refresh-token" if refresh else None
        identity = Identity(ENTRY_KEY, {"client_id": "p"})
        manager = TokenManager(CONFIG, grant, cache, identity, seed)

        try:
            with warnings.catch_warnings():
                # Damage and refusals warn (tested in test_cache.py); here: no crash.
                warnings.simplefilter("ignore", HoxtonAuthWarning)
                cache.entries()
                cache.load(ENTRY_KEY)
                token = manager.get_token(fresh_token_reply)
        except HoxtonAuthError:
            return
        assert header_safe(token)
        # The cache is whole again, and its entry is what we were given.
        entry = FileTokenCache(path).load(ENTRY_KEY)
        assert entry is not None
        assert entry.token.access_token == token or entry.token.is_fresh(time.time(), 60.0)


@pytest.mark.parametrize(
    "value",
    [
        {"access_token": "a", "expires_at": 10**400, "obtained_at": 0},
        {"access_token": "a\r\nX-Evil: 1", "expires_at": 9e9, "obtained_at": 0},
        {"access_token": "a", "expires_at": "NaN", "obtained_at": 0},
        {"access_token": "a", "expires_at": 1, "obtained_at": 0, "refresh_token": "r t"},
    ],
)
def test_cached_tokens_that_must_not_be_sent(value: dict[str, Any]) -> None:
    """Found by the property above: overflowing times and header-breaking tokens."""
    with pytest.raises(TokenFormatError, match=r"cached|mistypes|finite"):
        Token.from_dict(value)
