"""Client configuration: where to ask for tokens, who is asking, and how patiently."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from collections.abc import Sequence
from typing import Literal, Union
from urllib.parse import urlencode, urlsplit

from ._errors import ConfigError

__all__ = ["DEFAULT_AUDIENCE", "DEFAULT_DOMAIN", "ClientConfig", "normalize_scope"]

DEFAULT_AUDIENCE = "https://api.hoxton.cloud"
DEFAULT_DOMAIN = "https://auth.hoxton.ai"

ScopeArg = Union[str, Sequence[str], None]
RequestFormat = Literal["form", "json"]


def normalize_scope(scope: ScopeArg) -> str | None:
    """Return scope as one space separated string, duplicates dropped, order kept.

    Raises:
        ConfigError: If ``scope`` is neither a string nor a sequence of strings.
    """
    if scope is None:
        return None
    if isinstance(scope, str):
        parts = scope.split()
    elif isinstance(scope, Sequence) and all(isinstance(s, str) for s in scope):
        parts = [word for item in scope for word in item.split()]
    else:
        raise ConfigError("scope must be a space separated string or a sequence of strings")
    return " ".join(dict.fromkeys(parts)) or None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_domain(domain: object) -> str:
    if not isinstance(domain, str):
        raise ConfigError(f"domain must be an https:// URL string, got {type(domain).__name__}")
    parts = urlsplit(domain)
    if "@" in parts.netloc:
        # Not echoed: a user:password in the URL would reach logs and messages.
        raise ConfigError("domain must not carry a user name or password")
    try:
        parts.port  # noqa: B018  urlsplit checks the port only when it is read
    except ValueError:
        raise ConfigError(f"domain has an invalid port: {domain!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"domain must be an https:// URL, got {domain!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"domain {domain!r} uses plain http://; only loopback hosts may "
            "(127.0.0.1, ::1, localhost): secrets would cross the network in clear"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"domain must not carry a query or fragment, got {domain!r}")
    return domain.rstrip("/")


def _check_positive(name: str, value: float) -> None:
    bad_type = isinstance(value, bool) or not isinstance(value, (int, float))
    if bad_type or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """Everything about the OAuth client that is the same for every grant.

    Built by ``HoxtonAuth``; validated on construction.
    """

    client_id: str
    client_secret: str | None = dataclasses.field(default=None, repr=False)
    domain: str = DEFAULT_DOMAIN
    audience: str = DEFAULT_AUDIENCE
    scope: str | None = None
    leeway: float = 60.0
    timeout: float = 30.0
    retry_deadline: float = 60.0
    max_attempts: int = 5
    token_request_format: RequestFormat = "form"  # noqa: S105  a format name, not a secret
    # Full-jitter backoff: the n-th retry waits a random 0..min(cap, base * 2**(n-1))
    # seconds. Tunable (e.g. tiny in tests); the deadline and max_attempts still bound it.
    backoff_base: float = 0.5
    backoff_cap: float = 10.0
    # Auth0 parameters (issue 12). organization: the Auth0 Organization the
    # token is for (sent with client credentials; part of the cache identity).
    # forwarded_for: the end user's IP, sent as ``auth0-forwarded-for`` with
    # password grants made by a server, so that brute-force protection counts
    # the user's address, not the server's.
    organization: str | None = None
    forwarded_for: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.client_id, str) or not self.client_id.strip():
            raise ConfigError("client_id is required and must be a non-empty string")
        if self.client_secret is not None and (
            not isinstance(self.client_secret, str) or not self.client_secret
        ):
            raise ConfigError("client_secret must be a non-empty string or None")
        if not isinstance(self.audience, str) or not self.audience:
            raise ConfigError("audience must be a non-empty string")
        for name in ("organization", "forwarded_for"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{name} must be a non-empty string or None")
        object.__setattr__(self, "domain", _check_domain(self.domain))
        object.__setattr__(self, "scope", normalize_scope(self.scope))
        _check_positive("leeway", self.leeway)
        _check_positive("retry_deadline", self.retry_deadline)
        _check_positive("timeout", self.timeout)
        _check_positive("backoff_base", self.backoff_base)
        _check_positive("backoff_cap", self.backoff_cap)
        if self.timeout == 0:
            raise ConfigError("timeout must be greater than 0")
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise ConfigError(f"max_attempts must be an int >= 1, got {self.max_attempts!r}")
        if self.token_request_format not in ("form", "json"):
            raise ConfigError(
                f"token_request_format must be 'form' or 'json', got {self.token_request_format!r}"
            )

    @property
    def token_url(self) -> str:
        """The token endpoint, ``domain + "/oauth/token"``."""
        return self.domain + "/oauth/token"

    @property
    def revoke_url(self) -> str:
        """The revocation endpoint, ``domain + "/oauth/revoke"``."""
        return self.domain + "/oauth/revoke"

    @property
    def device_code_url(self) -> str:
        """The device authorization endpoint (RFC 8628 §3.1), Auth0's ``/oauth/device/code``."""
        return self.domain + "/oauth/device/code"

    @property
    def logout_url(self) -> str:
        """Auth0's logout page for this client: it ends the browser's session at the tenant."""
        return f"{self.domain}/v2/logout?{urlencode({'client_id': self.client_id})}"

    @property
    def authorize_url(self) -> str:
        """The browser step of the authorization code flow."""
        return self.domain + "/authorize"

    @property
    def wants_refresh_token(self) -> bool:
        """Whether ``offline_access`` was asked for."""
        return self.scope is not None and "offline_access" in self.scope.split()
