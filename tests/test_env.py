"""``HoxtonAuth.from_env``: arguments from ``HOXTON_*`` variables, overrides winning."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from hoxton_auth import (
    AuthorizationCodeAuth,
    ClientCredentialsAuth,
    ConfigError,
    FileTokenCache,
    HoxtonAuth,
    PasswordAuth,
    RefreshTokenAuth,
)
from hoxton_auth.testing import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    AuthServer,
)

SECRET = "s3cret-value-never-shown"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A monkeypatch with HOXTON_CLIENT_ID set (conftest clears the rest)."""
    monkeypatch.setenv("HOXTON_CLIENT_ID", "my-client")
    return monkeypatch


def test_reads_every_variable(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("HOXTON_CLIENT_SECRET", SECRET)
    env.setenv("HOXTON_SCOPE", "read:things write:things")
    env.setenv("HOXTON_AUDIENCE", "https://api.example.test")
    env.setenv("HOXTON_AUTH_DOMAIN", "https://tenant.example.test")
    env.setenv("HOXTON_AUTH_CACHE", str(tmp_path / "elsewhere.json"))

    auth = HoxtonAuth.from_env()

    assert isinstance(auth, ClientCredentialsAuth)
    assert auth.config.client_id == "my-client"
    assert auth.config.client_secret == SECRET
    assert auth.config.scope == "read:things write:things"
    assert auth.config.audience == "https://api.example.test"
    assert auth.config.token_url == "https://tenant.example.test/oauth/token"
    assert isinstance(auth.cache, FileTokenCache)
    assert auth.cache.path == tmp_path / "elsewhere.json"
    assert SECRET not in repr(auth)


def test_password_variables_pick_the_password_grant(
    env: pytest.MonkeyPatch, hoxton_auth_server: AuthServer
) -> None:
    env.setenv("HOXTON_CLIENT_ID", DEFAULT_CLIENT_ID)
    env.setenv("HOXTON_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
    env.setenv("HOXTON_USERNAME", DEFAULT_USERNAME)
    env.setenv("HOXTON_PASSWORD", DEFAULT_PASSWORD)
    env.setenv("HOXTON_AUTH_DOMAIN", hoxton_auth_server.domain)

    auth = HoxtonAuth.from_env()

    assert isinstance(auth, PasswordAuth)
    assert requests.get(hoxton_auth_server.api_url, auth=auth, timeout=30).json()["sub"]
    (request,) = hoxton_auth_server.token_requests
    assert request["grant_type"] == "password"
    assert request["username"] == DEFAULT_USERNAME


def test_refresh_token_variable(env: pytest.MonkeyPatch, hoxton_auth_server: AuthServer) -> None:
    refresh_token = hoxton_auth_server.mint_refresh_token(client_id=DEFAULT_CLIENT_ID)
    env.setenv("HOXTON_CLIENT_ID", DEFAULT_CLIENT_ID)
    env.setenv("HOXTON_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
    env.setenv("HOXTON_REFRESH_TOKEN", refresh_token)
    env.setenv("HOXTON_AUTH_DOMAIN", hoxton_auth_server.domain)

    auth = HoxtonAuth.from_env()

    assert isinstance(auth, RefreshTokenAuth)
    auth.get_token()
    (request,) = hoxton_auth_server.token_requests
    assert request == {**request, "grant_type": "refresh_token", "refresh_token": refresh_token}


def test_overrides_win(env: pytest.MonkeyPatch, hoxton_auth_server: AuthServer) -> None:
    env.setenv("HOXTON_CLIENT_SECRET", "wrong-secret")
    env.setenv("HOXTON_AUTH_DOMAIN", "https://unreachable.example.test")

    auth = HoxtonAuth.from_env(
        client_id=DEFAULT_CLIENT_ID,
        client_secret=DEFAULT_CLIENT_SECRET,
        domain=hoxton_auth_server.domain,
        cache=None,
    )

    auth.get_token()
    assert hoxton_auth_server.count("client_credentials") == 1


def test_a_grant_override_replaces_the_grant_variables(env: pytest.MonkeyPatch) -> None:
    env.setenv("HOXTON_USERNAME", "someone")
    env.setenv("HOXTON_PASSWORD", SECRET)

    auth = HoxtonAuth.from_env(refresh_token="rt-from-the-caller")

    assert isinstance(auth, RefreshTokenAuth)


def test_a_grant_class_takes_only_its_own_variables(env: pytest.MonkeyPatch) -> None:
    env.setenv("HOXTON_USERNAME", "someone")
    env.setenv("HOXTON_PASSWORD", SECRET)
    env.setenv("HOXTON_CLIENT_SECRET", SECRET)

    assert type(AuthorizationCodeAuth.from_env()) is AuthorizationCodeAuth
    assert type(ClientCredentialsAuth.from_env()) is ClientCredentialsAuth
    assert type(PasswordAuth.from_env()) is PasswordAuth


def test_authorization_code_needs_no_secret(env: pytest.MonkeyPatch) -> None:
    auth = AuthorizationCodeAuth.from_env(scope="openid offline_access")

    assert auth.config.client_secret is None
    assert auth.config.scope == "openid offline_access"


@pytest.mark.parametrize(
    ("variables", "cls", "missing"),
    [
        ({}, HoxtonAuth, "HOXTON_CLIENT_SECRET"),
        ({"HOXTON_CLIENT_ID": ""}, HoxtonAuth, "HOXTON_CLIENT_ID"),
        ({"HOXTON_CLIENT_SECRET": ""}, HoxtonAuth, "HOXTON_CLIENT_SECRET"),
        ({"HOXTON_USERNAME": "someone"}, HoxtonAuth, "HOXTON_PASSWORD"),
        ({"HOXTON_PASSWORD": SECRET}, HoxtonAuth, "HOXTON_USERNAME"),
        ({"HOXTON_PASSWORD": SECRET}, PasswordAuth, "HOXTON_USERNAME"),
        ({}, RefreshTokenAuth, "HOXTON_REFRESH_TOKEN"),
        ({}, ClientCredentialsAuth, "HOXTON_CLIENT_SECRET"),
    ],
)
def test_a_missing_variable_is_named(
    env: pytest.MonkeyPatch, variables: dict[str, str], cls: type[HoxtonAuth], missing: str
) -> None:
    for name, value in variables.items():
        env.setenv(name, value)

    with pytest.raises(ConfigError, match=missing) as caught:
        cls.from_env()

    assert SECRET not in str(caught.value)


def test_missing_client_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOXTON_CLIENT_SECRET", SECRET)

    with pytest.raises(ConfigError, match="HOXTON_CLIENT_ID is not set"):
        HoxtonAuth.from_env()

    assert HoxtonAuth.from_env(client_id="given").config.client_id == "given"


def test_two_grants_in_the_environment_clash(env: pytest.MonkeyPatch) -> None:
    env.setenv("HOXTON_USERNAME", "someone")
    env.setenv("HOXTON_PASSWORD", SECRET)
    env.setenv("HOXTON_REFRESH_TOKEN", SECRET)

    with pytest.raises(ConfigError, match="HOXTON_REFRESH_TOKEN and HOXTON_USERNAME") as caught:
        HoxtonAuth.from_env()

    assert SECRET not in str(caught.value)


def test_constructor_validation_still_applies(env: pytest.MonkeyPatch) -> None:
    env.setenv("HOXTON_CLIENT_SECRET", SECRET)
    env.setenv("HOXTON_AUTH_DOMAIN", "http://auth.example.test")

    with pytest.raises(ConfigError, match="plain http"):
        HoxtonAuth.from_env()
