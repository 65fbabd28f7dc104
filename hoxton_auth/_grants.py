"""The OAuth grants: one frozen dataclass each, turning itself into token-request fields.

Also the checks of the constructor arguments that carry each grant
(``_config.GRANT_KINDS``), the grant they build (``grant_for``), and the fields of the
protocol's other requests: the ``/authorize`` URL, device authorization and
revocation. Only this module writes a ``grant_type``, and it names the fields
whose values are secrets (``SECRET_FIELDS``; ``mask_secrets`` hides them from
``repr``). Field sets follow the Hoxton docs and RFC 6749: client credentials
travel in the body (``client_secret_post``), or, with a private key, as a
signed client assertion (``private_key_jwt``, RFC 7523 §2.2), fresh for every
request sent (``with_fresh_assertion``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import ClassVar
from urllib.parse import urlencode

from ._config import GRANT_KINDS, ClientConfig
from ._errors import ConfigError

__all__ = [
    "CLIENT_ASSERTION_TYPE",
    "PROMPTS",
    "SECRET_FIELDS",
    "AuthorizationCode",
    "ClientCredentials",
    "DeviceCode",
    "Grant",
    "MfaOtp",
    "Password",
    "RefreshToken",
    "Secret",
    "authorize_url",
    "check_grant_arguments",
    "device_authorization_fields",
    "grant_for",
    "grant_type_sent",
    "mask_secrets",
    "revocation_fields",
    "with_fresh_assertion",
]


def grant_type_sent(form: Mapping[str, str]) -> str:
    """The ``grant_type`` a token request's ``form`` sends ("" if none): a protocol
    name, never a secret (for telemetry, ``_telemetry.py``)."""
    return str(form.get("grant_type", ""))


# Form fields whose values are secrets (issue 12, item 8).
SECRET_FIELDS = (
    "client_secret",
    "password",
    "refresh_token",
    "code",
    "code_verifier",
    "otp",
    "mfa_token",
    "token",  # /oauth/revoke's refresh token
    "device_code",
    "client_assertion",  # a signed, single-use proof of the client's key (issue 24)
)


class Secret(str):
    """A secret form value: a ``str`` whose ``repr`` is masked.

    Error trackers such as Sentry record the ``repr`` of every frame's locals
    when an exception passes through; a form dict of these shows ``'***'``.
    The value itself is used only where the body is encoded.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


def mask_secrets(form: Mapping[str, str]) -> dict[str, str]:
    """``form`` with every secret value wrapped in ``Secret``."""
    return {
        name: Secret(value) if name in SECRET_FIELDS and isinstance(value, str) else value
        for name, value in form.items()
    }


#: ``client_assertion_type`` of Private Key JWT (RFC 7523 §2.2); Auth0 spells it so.
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _client_fields(config: ClientConfig) -> dict[str, str]:
    fields = {"client_id": config.client_id}
    if config.client_secret is not None:
        fields["client_secret"] = config.client_secret
    elif config.private_key is not None:
        fields["client_assertion_type"] = CLIENT_ASSERTION_TYPE
        fields["client_assertion"] = Secret(
            config.private_key.assertion(config.client_id, config.assertion_audience)
        )
    return fields


def with_fresh_assertion(config: ClientConfig, form: Mapping[str, str]) -> Mapping[str, str]:
    """``form`` with a new client assertion, if it carries one; else ``form`` itself.

    An assertion is single-use (its ``jti``): every request sent, a retry
    or a device-code poll included, gets its own.
    """
    if "client_assertion" not in form or config.private_key is None:
        return form
    assertion = config.private_key.assertion(config.client_id, config.assertion_audience)
    return {**form, "client_assertion": Secret(assertion)}


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


def check_grant_arguments(
    kind: str,
    owner: str,
    arguments: Mapping[str, str | None],
    *,
    realm: str | None = None,
    otp: Callable[[], str] | None = None,
) -> None:
    """The checks any grant makes first: only its own arguments, each a non-empty string.

    Raises:
        ConfigError: An argument of another grant, or not a non-empty string.
    """
    # issue 12: grant extras of the password grant only
    if (realm is not None or otp is not None) and kind != "password":
        raise ConfigError("realm and otp belong to the password grant (username/password)")
    allowed = GRANT_KINDS[kind]
    foreign = sorted(n for n, v in arguments.items() if v is not None and n not in allowed)
    if foreign:
        raise ConfigError(
            f"{owner} does not take {', '.join(foreign)}: those arguments belong to another grant"
        )
    for name, value in arguments.items():
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{name} must be a non-empty string")


def grant_for(
    kind: str,
    owner: str,
    arguments: Mapping[str, str | None],
    *,
    client_credential: str | None,
    realm: str | None = None,
    otp: Callable[[], str] | None = None,
) -> Grant | None:
    """Check the grant arguments of ``kind`` and build its grant.

    Args:
        kind: One of ``GRANT_KINDS``.
        owner: The class name, for messages.
        arguments: Every grant argument (``None`` when not given).
        client_credential: What authenticates the client (a secret or a
            private key: ``ClientConfig.client_credential``), if anything.
        realm: Password grant only: Auth0's password-realm connection.
        otp: Password grant only: a callable returning a one-time code.

    Returns:
        The grant, or ``None`` when the grant comes from the cache (a
        refresh-token lineage, or the logged-in session).

    Raises:
        ConfigError: Arguments missing, of another grant, or not strings.
    """
    check_grant_arguments(kind, owner, arguments, realm=realm, otp=otp)
    if kind == "client_credentials":
        if client_credential is None:
            raise ConfigError(
                "client_secret (or private_key) is required for the client_credentials grant "
                "(or pass username/password, code/redirect_uri or refresh_token)"
            )
        return ClientCredentials()
    if kind == "password":
        username, password = arguments.get("username"), arguments.get("password")
        if username is None:
            raise ConfigError("username is required with password")
        if password is None:
            raise ConfigError("password is required with username")
        if realm is not None and (not isinstance(realm, str) or not realm):
            raise ConfigError("realm must be a non-empty string")
        if otp is not None and not callable(otp):
            raise ConfigError("otp must be a callable returning the one-time code")
        return Password(username, password, realm, otp)
    if kind == "authorization_code":
        code, redirect_uri = arguments.get("code"), arguments.get("redirect_uri")
        verifier = arguments.get("code_verifier")
        if code is None:
            if verifier is not None:
                raise ConfigError("code_verifier needs code")
            if redirect_uri is not None:
                raise ConfigError("code is required with redirect_uri")
            return None  # the logged-in session
        if redirect_uri is None:
            raise ConfigError("redirect_uri is required with code (the one sent to /authorize)")
        return AuthorizationCode(code, redirect_uri, verifier)
    if arguments.get("refresh_token") is None:
        raise ConfigError(f"refresh_token is required for {owner}")
    return None  # the lineage's refresh token comes from the cache (or the seed)


def device_authorization_fields(config: ClientConfig) -> dict[str, str]:
    """Fields of a device authorization request (RFC 8628 §3.1; Auth0 ``/oauth/device/code``).

    ``audience`` is sent because Auth0 issues an API token only when asked for one.
    """
    fields = {"client_id": config.client_id, "audience": config.audience}
    if config.private_key is not None:  # a key's client proves itself here too (issue 24)
        fields.update(_client_fields(config))
    if config.scope:
        fields["scope"] = config.scope
    return fields


def revocation_fields(config: ClientConfig, refresh_token: str) -> dict[str, str]:
    """Fields of a ``/oauth/revoke`` request for a refresh token (RFC 7009 §2.1)."""
    return {**_client_fields(config), "token": refresh_token}


#: Values of Auth0's ``prompt`` parameter; ``login`` asks for the password
#: again even when the browser still has a session at the tenant.
PROMPTS = ("login", "consent", "select_account", "none")


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
