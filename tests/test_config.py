"""``ClientConfig``: validation, defaults, derived URLs and scope handling."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from hoxton_auth import ConfigError, HoxtonAuthWarning, InsecureTransportError
from hoxton_auth._config import (
    DEFAULT_AUDIENCE,
    DEFAULT_DOMAIN,
    ClientConfig,
    NetworkSettings,
    normalize_scope,
)

SECRET = "cfg-client-secret-5b1e"


def config(**overrides: Any) -> ClientConfig:
    arguments: dict[str, Any] = {"client_id": "cid", "client_secret": SECRET}
    arguments.update(overrides)
    return ClientConfig(**arguments)


def test_defaults() -> None:
    c = ClientConfig("cid")
    assert c.client_secret is None
    assert c.domain == DEFAULT_DOMAIN == "https://auth.hoxton.ai"
    assert c.audience == DEFAULT_AUDIENCE == "https://api.hoxton.cloud"
    assert c.scope is None
    assert c.leeway == 60.0
    assert c.timeout == 30.0
    assert c.retry_deadline == 60.0
    assert c.max_attempts == 5
    assert c.token_request_format == "form"


def test_urls() -> None:
    c = config()
    assert c.token_url == "https://auth.hoxton.ai/oauth/token"
    assert c.revoke_url == "https://auth.hoxton.ai/oauth/revoke"
    assert c.authorize_url == "https://auth.hoxton.ai/authorize"


@pytest.mark.parametrize(
    ("domain", "token_url"),
    [
        ("https://tenant.example/", "https://tenant.example/oauth/token"),
        ("https://tenant.example/base/", "https://tenant.example/base/oauth/token"),
        ("https://tenant.example:8443", "https://tenant.example:8443/oauth/token"),
    ],
)
def test_domain_trailing_slash_and_path(domain: str, token_url: str) -> None:
    assert config(domain=domain).token_url == token_url


def test_frozen() -> None:
    c = config()
    with pytest.raises(AttributeError, match="immutable"):
        c.client_id = "other"
    with pytest.raises(AttributeError, match="immutable"):
        del c.client_id


def test_network_settings_are_frozen_too() -> None:
    settings = NetworkSettings()
    with pytest.raises(AttributeError, match="immutable"):
        settings.proxy = "http://proxy.example:3128"
    with pytest.raises(AttributeError, match="immutable"):
        del settings.verify


def test_values_compare_hash_and_pickle_by_their_fields(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    network = NetworkSettings(tmp_path / "ca.pem", proxy="http://proxy.example:3128")
    same_network = NetworkSettings(str(tmp_path / "ca.pem"), proxy="http://proxy.example:3128")
    assert network == same_network
    assert hash(network) == hash(same_network)
    assert network != NetworkSettings(tmp_path / "ca.pem")
    c = config(scope="read write", network=network)
    same = config(scope=["read", "write"], network=same_network)
    assert c == same
    assert hash(c) == hash(same)
    assert len({c, same}) == 1
    assert c != config(scope="read")
    assert c != config(scope="read write", network=network, leeway=30)
    assert c != network
    for value in (network, c):
        copy = pickle.loads(pickle.dumps(value))  # noqa: S301  our own bytes
        assert copy == value
        assert hash(copy) == hash(value)
    assert pickle.loads(pickle.dumps(c)).client_secret == SECRET  # noqa: S301  our own bytes


def test_repr_hides_the_secret() -> None:
    c = config()
    assert SECRET not in repr(c)
    assert "cid" in repr(c)


@pytest.mark.parametrize(
    "domain",
    [
        "http://127.0.0.1:8080",
        "http://127.0.0.2",
        "http://localhost:1234",
        "HTTP://LOCALHOST:1234/",
        "http://[::1]:8080",
        "https://auth.hoxton.ai",
    ],
)
def test_loopback_http_and_https_allowed(domain: str) -> None:
    assert config(domain=domain).token_url.endswith("/oauth/token")


@pytest.mark.parametrize(
    "domain",
    [
        "http://auth.hoxton.ai",
        "http://10.0.0.1",
        "http://0.0.0.0",
        "http://localhost.evil.example",
        "http://127.0.0.1.nip.io",
    ],
)
def test_plain_http_refused_off_loopback(domain: str) -> None:
    with pytest.raises(ConfigError, match=r"domain .*http://.*loopback"):
        config(domain=domain)


@pytest.mark.parametrize(
    ("domain", "words"),
    [
        ("auth.hoxton.ai", "domain must be an https:// URL"),
        ("ftp://auth.hoxton.ai", "domain must be an https:// URL"),
        ("https://", "domain must be an https:// URL"),
        ("https://auth.hoxton.ai/?x=1", "domain must not carry a query"),
        ("https://auth.hoxton.ai/#top", "domain must not carry a query"),
        ("https://auth.hoxton.ai:port", "domain has an invalid port"),
        (None, "domain must be an https:// URL"),
        (443, "domain must be an https:// URL string, got int"),
    ],
)
def test_bad_domain(domain: object, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        config(domain=domain)


def test_domain_with_credentials_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigError, match="domain must not carry a user name") as info:
        config(domain="https://admin:hunter2-pw@auth.hoxton.ai")
    assert "hunter2-pw" not in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "argument"),
    [
        ({"client_id": ""}, "client_id"),
        ({"client_id": "   "}, "client_id"),
        ({"client_id": None}, "client_id"),
        ({"client_id": 7}, "client_id"),
        ({"client_secret": ""}, "client_secret"),
        ({"client_secret": 7}, "client_secret"),
        ({"audience": ""}, "audience"),
        ({"audience": None}, "audience"),
        ({"leeway": -1}, "leeway"),
        ({"leeway": float("nan")}, "leeway"),
        ({"leeway": float("inf")}, "leeway"),
        ({"leeway": "60"}, "leeway"),
        ({"leeway": True}, "leeway"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -3}, "timeout"),
        ({"retry_deadline": -1}, "retry_deadline"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"token_request_format": "xml"}, "token_request_format"),
        ({"scope": 5}, "scope"),
        ({"scope": ["read", 5]}, "scope"),
        ({"scope": b"read"}, "scope"),
    ],
)
def test_bad_values_name_the_argument(overrides: dict[str, Any], argument: str) -> None:
    with pytest.raises(ConfigError, match=argument) as info:
        config(**overrides)
    assert isinstance(info.value, ValueError)
    assert SECRET not in str(info.value)


def test_zero_leeway_and_deadline_allowed() -> None:
    c = config(leeway=0, retry_deadline=0, max_attempts=1, token_request_format="json")
    assert (c.leeway, c.retry_deadline, c.max_attempts) == (0, 0, 1)
    assert c.token_request_format == "json"


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ([], None),
        ("read", "read"),
        ("  read   write ", "read write"),
        ("read write read", "read write"),
        (["read", "write"], "read write"),
        (("openid", "offline_access openid"), "openid offline_access"),
    ],
)
def test_normalize_scope(scope: Any, expected: str | None) -> None:
    assert normalize_scope(scope) == expected
    assert config(scope=scope).scope == expected


@pytest.mark.parametrize(
    ("scope", "wants"),
    [(None, False), ("openid", False), ("openid offline_access", True), ("offline", False)],
)
def test_wants_refresh_token(scope: str | None, wants: bool) -> None:
    assert config(scope=scope).wants_refresh_token is wants


# -- where the token goes (issue 21) ----------------------------------------------------------


def test_the_audiences_origin_and_the_allowed_ones_get_the_token() -> None:
    c = config(allowed_origins=["https://Files.Example:443", "https://other.example:8443"])
    assert c.allowed_origins == (
        "https://api.hoxton.cloud",
        "https://files.example",
        "https://other.example:8443",
    )
    assert c.may_send_token("https://api.hoxton.cloud/v1/x?q=1")
    assert c.may_send_token("https://API.hoxton.cloud:443/v1")
    assert c.may_send_token("https://files.example/blob")
    assert c.may_send_token("http://127.0.0.1:8080/api")  # loopback, for local testing
    assert c.may_send_token("https://[::1]:9443/api")


def test_the_variable_adds_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOXTON_ALLOWED_ORIGINS", "https://a.example, https://b.example:8443")
    assert config().allowed_origins[1:] == ("https://a.example", "https://b.example:8443")
    assert config(allowed_origins=()).allowed_origins == ("https://api.hoxton.cloud",)


@pytest.mark.parametrize(
    "origin", ["files.example", "https://files.example/path", "ftp://files.example", "https://"]
)
def test_an_allowed_origin_must_be_an_origin(origin: str) -> None:
    with pytest.raises(ConfigError, match="allowed_origins"):
        config(allowed_origins=[origin])


def test_an_audience_that_is_no_url_pins_nothing_and_says_so_once() -> None:
    c = config(audience="urn:hoxton-api-test-unpinned")
    assert c.allowed_origins == ()
    assert c.may_send_token("http://127.0.0.1:8080/")  # loopback: nothing to say
    with pytest.warns(HoxtonAuthWarning, match="allowed_origins"):
        assert c.may_send_token("https://anywhere.example/x")
    assert c.may_send_token("https://elsewhere.example/x")  # said once
    with pytest.raises(InsecureTransportError):
        c.may_send_token("http://anywhere.example/x")  # never cleartext


def test_other_origins_must_be_warn_or_raise() -> None:
    with pytest.raises(ConfigError, match="other_origins"):
        config(other_origins="ignore")
