"""The four grant classes of ``HoxtonAuth``: the arguments each takes, the grant it builds.

``HoxtonAuth(...)`` itself returns one of them, picked by ``infer_class``
from the grant arguments given. ``HoxtonAuth.__new__`` imports this module
when it runs, not at the top of ``_auth.py``: these classes subclass ``HoxtonAuth``.
"""

from __future__ import annotations

from typing import Any

from ._auth import HoxtonAuth
from ._errors import ConfigError
from ._grants import AuthorizationCode, ClientCredentials, Grant, Password

__all__ = [
    "GRANT_ARGUMENTS",
    "AuthorizationCodeAuth",
    "ClientCredentialsAuth",
    "PasswordAuth",
    "RefreshTokenAuth",
    "infer_class",
]

#: The constructor arguments that choose and carry a grant.
GRANT_ARGUMENTS = ("username", "password", "code", "redirect_uri", "code_verifier", "refresh_token")


def infer_class(kwargs: dict[str, Any]) -> type[HoxtonAuth]:
    """The grant class ``HoxtonAuth(**kwargs)`` stands for."""
    given = {name for name in GRANT_ARGUMENTS if kwargs.get(name) is not None}
    if given & {"username", "password"}:
        return PasswordAuth
    if given & {"code", "redirect_uri", "code_verifier"}:
        return AuthorizationCodeAuth
    if "refresh_token" in given:
        return RefreshTokenAuth
    return ClientCredentialsAuth


class ClientCredentialsAuth(HoxtonAuth):
    """Machine-to-machine tokens with the client's id and secret."""

    grant_kind = "client_credentials"

    def _grant(self, **arguments: str | None) -> Grant:
        if self.config.client_secret is None:
            raise ConfigError(
                "client_secret is required for the client_credentials grant "
                "(or pass username/password, code/redirect_uri or refresh_token)"
            )
        return ClientCredentials()


class PasswordAuth(HoxtonAuth):
    """A user's tokens from their username and password (resource owner grant)."""

    grant_kind = "password"
    _allowed = frozenset({"username", "password"})

    def _grant(self, **arguments: str | None) -> Grant:
        username, password = arguments["username"], arguments["password"]
        if username is None:
            raise ConfigError("username is required with password")
        if password is None:
            raise ConfigError("password is required with username")
        if self._realm is not None and (not isinstance(self._realm, str) or not self._realm):
            raise ConfigError("realm must be a non-empty string")
        if self._otp is not None and not callable(self._otp):
            raise ConfigError("otp must be a callable returning the one-time code")
        return Password(username, password, self._realm, self._otp)


class AuthorizationCodeAuth(HoxtonAuth):
    """A user's tokens from an authorization code (or an earlier login in the cache).

    With ``code``, the code is always exchanged (once) and the session is
    filed under the user's ``sub``. Without ``code`` it uses this OS user's
    logged-in session (the last ``login()``), whatever the scope.
    """

    grant_kind = "authorization_code"
    _allowed = frozenset({"code", "redirect_uri", "code_verifier"})

    def _grant(self, **arguments: str | None) -> Grant | None:
        code, redirect_uri = arguments["code"], arguments["redirect_uri"]
        verifier = arguments["code_verifier"]
        if code is None:
            if verifier is not None:
                raise ConfigError("code_verifier needs code")
            if redirect_uri is not None:
                raise ConfigError("code is required with redirect_uri")
            return None
        if redirect_uri is None:
            raise ConfigError("redirect_uri is required with code (the one sent to /authorize)")
        return AuthorizationCode(code, redirect_uri, verifier)


class RefreshTokenAuth(HoxtonAuth):
    """A user's tokens from a refresh token, which starts a lineage in the cache.

    The lineage's entry is keyed by a hash of this token; once the server
    rotates it, the newest refresh token of that entry is used, so passing
    the same original token on every run keeps working. Another refresh
    token is another session.
    """

    grant_kind = "refresh_token"
    _allowed = frozenset({"refresh_token"})

    def _grant(self, **arguments: str | None) -> Grant | None:
        if arguments["refresh_token"] is None:
            raise ConfigError("refresh_token is required for RefreshTokenAuth")
        return None
