"""One frozen dataclass per OAuth grant, each turning itself into token-request fields.

Also the fields of the protocol's other requests: the browser's ``/authorize``
URL with its PKCE pair, device authorization and revocation. Only this module
writes a ``grant_type``. Field sets follow the Hoxton docs and
RFC 6749: client credentials travel in the body (``client_secret_post``).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import secrets
from collections.abc import Callable
from typing import ClassVar
from urllib.parse import urlencode

from ._config import ClientConfig

__all__ = [
    "AuthorizationCode",
    "ClientCredentials",
    "DeviceCode",
    "Grant",
    "MfaOtp",
    "Password",
    "RefreshToken",
    "authorize_url",
    "device_authorization_fields",
    "pkce_pair",
    "revocation_fields",
]


def _client_fields(config: ClientConfig) -> dict[str, str]:
    fields = {"client_id": config.client_id}
    if config.client_secret is not None:
        fields["client_secret"] = config.client_secret
    return fields


@dataclasses.dataclass(frozen=True)
class ClientCredentials:
    """Machine-to-machine: the client authenticates as itself (RFC 6749 §4.4)."""

    grant_type: ClassVar[str] = "client_credentials"
    repeatable: ClassVar[bool] = True

    def fields(self, config: ClientConfig) -> dict[str, str]:
        """Token-request fields for this grant."""
        fields = {"grant_type": self.grant_type, **_client_fields(config)}
        fields["audience"] = config.audience
        if config.scope:
            fields["scope"] = config.scope
        if config.organization:
            fields["organization"] = config.organization  # Auth0 Organizations (M2M)
        return fields


PASSWORD_REALM = "http://auth0.com/oauth/grant-type/password-realm"  # noqa: S105  a grant name
MFA_OTP = "http://auth0.com/oauth/grant-type/mfa-otp"


@dataclasses.dataclass(frozen=True)
class Password:
    """Resource owner password credentials (RFC 6749 §4.3).

    With ``realm``: Auth0's password-realm grant, for tenants without a
    default directory (the realm names the connection). ``otp``: a callable
    returning the current one-time code, to answer ``mfa_required``.
    """

    grant_type: ClassVar[str] = "password"
    repeatable: ClassVar[bool] = True

    username: str
    password: str = dataclasses.field(repr=False)
    realm: str | None = None
    otp: Callable[[], str] | None = dataclasses.field(default=None, repr=False, compare=False)

    def fields(self, config: ClientConfig) -> dict[str, str]:
        """Token-request fields for this grant."""
        grant_type = PASSWORD_REALM if self.realm else self.grant_type
        fields = {"grant_type": grant_type, **_client_fields(config)}
        fields.update(username=self.username, password=self.password)
        if self.realm:
            fields["realm"] = self.realm
        fields["audience"] = config.audience
        if config.scope:
            fields["scope"] = config.scope
        return fields

    def headers(self, config: ClientConfig) -> dict[str, str]:
        """Extra request headers: Auth0's ``auth0-forwarded-for``, if configured."""
        return {"auth0-forwarded-for": config.forwarded_for} if config.forwarded_for else {}


@dataclasses.dataclass(frozen=True)
class MfaOtp:
    """Auth0's answer to ``mfa_required``: the ``mfa_token`` and a one-time code."""

    grant_type: ClassVar[str] = MFA_OTP
    repeatable: ClassVar[bool] = False
    cache_identity: ClassVar[str] = "mfa"  # never planned: it follows a Password grant

    mfa_token: str = dataclasses.field(repr=False)
    otp: str = dataclasses.field(repr=False)

    def fields(self, config: ClientConfig) -> dict[str, str]:
        """Token-request fields for this grant."""
        fields = {"grant_type": self.grant_type, **_client_fields(config)}
        fields.update(mfa_token=self.mfa_token, otp=self.otp)
        return fields


@dataclasses.dataclass(frozen=True)
class AuthorizationCode:
    """Exchange of a code from ``/authorize`` (RFC 6749 §4.1.3, PKCE RFC 7636 §4.5).

    A code is single-use: the caller must never send the same one twice.
    """

    grant_type: ClassVar[str] = "authorization_code"
    repeatable: ClassVar[bool] = False

    code: str = dataclasses.field(repr=False)
    redirect_uri: str
    code_verifier: str | None = dataclasses.field(default=None, repr=False)

    def fields(self, config: ClientConfig) -> dict[str, str]:
        """Token-request fields for this grant."""
        fields = {"grant_type": self.grant_type, **_client_fields(config)}
        fields.update(code=self.code, redirect_uri=self.redirect_uri)
        if self.code_verifier is not None:
            fields["code_verifier"] = self.code_verifier
        return fields


@dataclasses.dataclass(frozen=True)
class RefreshToken:
    """Renewal with a refresh token (RFC 6749 §6); Auth0 may rotate it."""

    grant_type: ClassVar[str] = "refresh_token"
    repeatable: ClassVar[bool] = False

    refresh_token: str = dataclasses.field(repr=False)

    def fields(self, config: ClientConfig) -> dict[str, str]:
        """Token-request fields for this grant."""
        fields = {"grant_type": self.grant_type, **_client_fields(config)}
        fields["refresh_token"] = self.refresh_token
        if config.scope:
            fields["scope"] = config.scope
        return fields


@dataclasses.dataclass(frozen=True)
class DeviceCode:
    """The device code grant (RFC 8628 §3.4), polled until the user approves.

    Auth0 answers it like any token request once approved, and with
    ``authorization_pending`` / ``slow_down`` before: ``_flow.poll_device_code``
    does the polling. The tokens are the user's, like a browser login's.
    """

    grant_type: ClassVar[str] = "urn:ietf:params:oauth:grant-type:device_code"
    repeatable: ClassVar[bool] = False

    device_code: str = dataclasses.field(repr=False)

    def fields(self, config: ClientConfig) -> dict[str, str]:
        """Token-request fields for this grant."""
        fields = {"grant_type": self.grant_type, **_client_fields(config)}
        fields["device_code"] = self.device_code
        return fields


Grant = ClientCredentials | Password | AuthorizationCode | RefreshToken | DeviceCode | MfaOtp


def device_authorization_fields(config: ClientConfig) -> dict[str, str]:
    """Fields of a device authorization request (RFC 8628 §3.1; Auth0 ``/oauth/device/code``).

    ``audience`` is sent because Auth0 issues an API token only when asked for one.
    """
    fields = {"client_id": config.client_id, "audience": config.audience}
    if config.scope:
        fields["scope"] = config.scope
    return fields


def revocation_fields(config: ClientConfig, refresh_token: str) -> dict[str, str]:
    """Fields of a ``/oauth/revoke`` request for a refresh token (RFC 7009 §2.1)."""
    return {**_client_fields(config), "token": refresh_token}


def pkce_pair() -> tuple[str, str]:
    """A PKCE ``(code_verifier, code_challenge)`` for the S256 method (RFC 7636 §4.1-4.2)."""
    # 64 random bytes -> 86 URL-safe characters, inside the 43..128 RFC 7636 allows.
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


def authorize_url(
    config: ClientConfig,
    redirect_uri: str,
    state: str,
    code_challenge: str,
    prompt: str | None = None,
) -> str:
    """The ``/authorize`` URL the browser opens.

    ``audience`` is sent because Auth0 issues an access token for the API
    only when it is asked for one; ``prompt=login`` makes Auth0 ask for the
    credentials even when the browser is still logged in (switching accounts);
    ``organization`` logs the user in to that Auth0 Organization.
    """
    params = {
        "response_type": "code",
        "client_id": config.client_id,
        "redirect_uri": redirect_uri,
        "audience": config.audience,
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
    }
    if config.scope:
        params["scope"] = config.scope
    if config.organization is not None:
        params["organization"] = config.organization
    if prompt is not None:
        params["prompt"] = prompt
    return f"{config.authorize_url}?{urlencode(params)}"
