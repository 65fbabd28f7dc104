"""The public API: exactly these names, importable from ``hoxton_auth``.

Adding a public name? Add it to ``PUBLIC`` below, in the same order as
``hoxton_auth.__all__`` (ruff's RUF022 order: CONSTANTS, then Classes, then
the rest, each group alphabetical).
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import httpx
import pytest
import requests.auth

import hoxton_auth

PUBLIC = [
    "DEFAULT",
    "AuthorizationCodeAuth",
    "CacheEntry",
    "CacheError",
    "CacheLockTimeoutError",
    "CacheUnavailableError",
    "ClientCredentialsAuth",
    "ConfigError",
    "FileTokenCache",
    "HoxtonAuth",
    "HoxtonAuthError",
    "HoxtonAuthWarning",
    "InsecureTransportError",
    "InvalidGrantError",
    "LoginError",
    "LoginRequest",
    "LoginRequiredError",
    "MemoryTokenCache",
    "MfaRequiredError",
    "NotLoggedInError",
    "PasswordAuth",
    "RedisTokenCache",
    "RefreshTokenAuth",
    "Token",
    "TokenCache",
    "TokenEndpointUnreachableError",
    "TokenInfo",
    "TokenRequestError",
    "__version__",
]


def _ruff_order(name: str) -> tuple[int, str]:
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def test_all_is_pinned() -> None:
    assert hoxton_auth.__all__ == PUBLIC


def test_pin_is_sorted_and_unique() -> None:
    assert sorted(PUBLIC, key=_ruff_order) == PUBLIC
    assert len(set(PUBLIC)) == len(PUBLIC)


@pytest.mark.parametrize("name", PUBLIC)
def test_each_name_is_importable(name: str) -> None:
    module = importlib.import_module("hoxton_auth")
    value = getattr(module, name)
    assert value is not None
    namespace: dict[str, object] = {}
    exec(f"from hoxton_auth import {name}", namespace)  # noqa: S102  the import statement itself is under test
    assert namespace[name] is value


@pytest.mark.parametrize("name", [n for n in PUBLIC if n[:1].isupper() and not n.isupper()])
def test_public_classes_are_documented_and_ours(name: str) -> None:
    value = getattr(hoxton_auth, name)
    assert inspect.isclass(value)
    assert value.__module__.startswith("hoxton_auth.")
    assert inspect.getdoc(value)


def test_default_reads_as_its_name() -> None:
    assert repr(hoxton_auth.DEFAULT) == "DEFAULT"


def test_version() -> None:
    # A PEP 440 release, pre-release or development release: 0.1.0, 0.2.0rc1, 0.2.0.dev0.
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", hoxton_auth.__version__)


def test_auth_classes_are_both_libraries_auths() -> None:
    for name in (
        "ClientCredentialsAuth",
        "PasswordAuth",
        "AuthorizationCodeAuth",
        "RefreshTokenAuth",
    ):
        cls = getattr(hoxton_auth, name)
        assert issubclass(cls, hoxton_auth.HoxtonAuth)
        assert issubclass(cls, requests.auth.AuthBase)
        assert issubclass(cls, httpx.Auth)


def test_unknown_names_raise_attribute_error() -> None:
    missing = "NoSuchThing"
    with pytest.raises(AttributeError, match=missing):
        getattr(hoxton_auth, missing)


def test_package_is_typed() -> None:
    assert (Path(hoxton_auth.__file__).parent / "py.typed").is_file()
