"""``HoxtonAuth.from_env``: the same arguments, read from ``HOXTON_*`` variables.

The CLI builds its auth objects here too, so a variable means the same thing
to a script and to ``hoxton-auth``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import ConfigError
from ._grant_auths import GRANT_ARGUMENTS

if TYPE_CHECKING:
    from ._auth import HoxtonAuth

__all__ = ["ENVIRONMENT", "from_env", "gather", "read_environment"]

_AuthT = TypeVar("_AuthT", bound="HoxtonAuth")

#: Constructor argument -> the variable it is read from.
ENVIRONMENT = {
    "client_id": "HOXTON_CLIENT_ID",
    "client_secret": "HOXTON_CLIENT_SECRET",
    "username": "HOXTON_USERNAME",
    "password": "HOXTON_PASSWORD",
    "refresh_token": "HOXTON_REFRESH_TOKEN",
    "scope": "HOXTON_SCOPE",
    "audience": "HOXTON_AUDIENCE",
    "domain": "HOXTON_AUTH_DOMAIN",
    "cache": "HOXTON_AUTH_CACHE",
}


def read_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The constructor arguments set in the environment (empty variables count as unset)."""
    environ = os.environ if environ is None else environ
    return {arg: environ[var] for arg, var in ENVIRONMENT.items() if environ.get(var)}


def gather(cls: type[HoxtonAuth], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments ``cls.from_env(**overrides)`` would use."""
    from ._auth import HoxtonAuth

    found = read_environment()
    # Grant arguments travel as a group: an explicit refresh_token must not be
    # mixed with a HOXTON_USERNAME left in the environment.
    if any(overrides.get(name) is not None for name in GRANT_ARGUMENTS):
        found = {k: v for k, v in found.items() if k not in GRANT_ARGUMENTS}
    if cls is not HoxtonAuth:
        # A grant class takes only its own grant arguments from the environment.
        allowed: frozenset[str] = cls._allowed
        found = {k: v for k, v in found.items() if k not in GRANT_ARGUMENTS or k in allowed}
    return {**found, **overrides}


def _check(cls: type[HoxtonAuth], kwargs: Mapping[str, Any]) -> None:
    """Name the missing or clashing variable before the constructor names the argument."""
    from ._auth import HoxtonAuth
    from ._grant_auths import ClientCredentialsAuth, PasswordAuth, RefreshTokenAuth

    def given(name: str) -> bool:
        return kwargs.get(name) is not None

    if not given("client_id"):
        raise ConfigError("HOXTON_CLIENT_ID is not set (nor client_id given)")
    if cls is HoxtonAuth and given("refresh_token") and (given("username") or given("password")):
        raise ConfigError(
            "HOXTON_REFRESH_TOKEN and HOXTON_USERNAME/HOXTON_PASSWORD are both set: "
            "they are two different grants, unset one"
        )
    password_grant = cls is PasswordAuth or (
        cls is HoxtonAuth and (given("username") or given("password"))
    )
    if password_grant:
        for name in ("username", "password"):
            if not given(name):
                raise ConfigError(f"{ENVIRONMENT[name]} is not set (nor {name} given)")
    if cls is RefreshTokenAuth and not given("refresh_token"):
        raise ConfigError("HOXTON_REFRESH_TOKEN is not set (nor refresh_token given)")
    no_grant = not any(given(name) for name in GRANT_ARGUMENTS)
    client_credentials = cls is ClientCredentialsAuth or (cls is HoxtonAuth and no_grant)
    if client_credentials and not given("client_secret"):
        raise ConfigError(
            "HOXTON_CLIENT_SECRET is not set (nor client_secret given): the "
            "client_credentials grant needs it; for a user's tokens set "
            "HOXTON_USERNAME and HOXTON_PASSWORD or HOXTON_REFRESH_TOKEN, or log in "
            "(`hoxton-auth login`) and use AuthorizationCodeAuth.from_env()"
        )


def from_env(cls: type[_AuthT], **overrides: Any) -> _AuthT:
    """``cls(**environment, **overrides)``; see ``HoxtonAuth.from_env``.

    Raises:
        ConfigError: A required variable is missing (named), or they clash.
    """
    kwargs = gather(cls, overrides)
    _check(cls, kwargs)
    client_id = kwargs.pop("client_id")
    return cls(client_id, **kwargs)
